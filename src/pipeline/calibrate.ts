/**
 * The calibrate stage's inputs: the calibration windows (decoders: seeded windows of the token stream;
 * encoders: seeded lines) and their embeddings, the first calibration stream.
 */
import type { Model } from "../arch/model.ts";
import { type CalibSet, decoderCalibrationFromText, encoderCalibration } from "../calib/sampling.ts";
import { readCalibrationText } from "../io/datasets.ts";
import { loadTokenizer } from "../io/tokenizer.ts";
import type { Ops } from "../ops/index.ts";
import type { RunContext } from "./context.ts";
import type { Recipe } from "./recipe.ts";

export async function calibrationWindows(
  model: Model,
  dir: string,
  recipe: Recipe,
  run: RunContext,
  ops: Ops,
): Promise<{ calib: CalibSet; embedded: Float32Array[] }> {
  run.phase("calibration", "reading and tokenizing calibration text");
  const text = readCalibrationText(recipe.calib);
  const tok = loadTokenizer(dir);
  const maxLen = Math.min(recipe.seqLen, model.dims.maxPos);
  if (maxLen < recipe.seqLen)
    run.notes.push(`--seq-len ${recipe.seqLen} exceeds max_position_embeddings; calibration uses ${maxLen}`);
  const calib =
    model.spec.kind === "decoder"
      ? decoderCalibrationFromText(text, tok, recipe.samples, maxLen, recipe.seed, recipe.batchSize)
      : encoderCalibration(text, tok, recipe.samples, maxLen, recipe.seed, recipe.batchSize);
  run.checkAborted();
  const embedded = await run.timed("forward", () => ops.layers.embed(model, calib.batches));
  return { calib, embedded };
}
