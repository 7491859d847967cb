/**
 * Pruning a quantized (GPTQ) folder: pare reads the weights dequantized and writes the pruned model in float —
 * so the output's config.json must not keep the input's quantization_config (Python loaders would read the float
 * tensors as GPTQ), and the output reads back equal to a prune of the dequantized weights.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { quantize } from "../../src/api/quantize.ts";
import { loadModel } from "../../src/arch/load.ts";
import { runPrune } from "../../src/pipeline/prune.ts";
import { resolveRecipe } from "../../src/pipeline/recipe.ts";
import { makeByteBpeTokenizerJson, makeTinyLlama, writeTinyModel } from "../helpers/tinyModels.ts";

let root: string;
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-qin-"));
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

it("a pruned GPTQ folder is a float folder without quantization_config", async () => {
  const dense = path.join(root, "dense");
  writeTinyModel(
    dense,
    makeTinyLlama({ seed: 41, layers: 3, hidden: 32, intermediate: 64 }),
    makeByteBpeTokenizerJson(300),
  );
  const calib = path.join(root, "calib.txt");
  fs.writeFileSync(calib, "a stitch in time saves nine; the early bird catches the worm. ".repeat(100));
  const q = path.join(root, "q4");
  await quantize({
    model: dense,
    out: q,
    bits: 4,
    groupSize: 32,
    method: "rtn",
    calib: [calib],
    samples: 4,
    seqLen: 16,
  });
  expect(JSON.parse(fs.readFileSync(path.join(q, "config.json"), "utf8")).quantization_config).toBeDefined();
  const out = path.join(root, "pruned");
  const rep = await runPrune(
    resolveRecipe({ model: q, out, ratio: 0.25, calib: [calib], samples: 4, seqLen: 16, depth: 1 }),
  );
  const cfg = JSON.parse(fs.readFileSync(path.join(out, "config.json"), "utf8"));
  expect(cfg.quantization_config).toBeUndefined();
  expect(rep.notes.some((n) => n.includes("dequantized"))).toBe(true);
  const m = loadModel(out);
  expect(m.dims.nLayers).toBe(2);
  expect(m.weights.names().some((n) => n.endsWith("qweight"))).toBe(false);
  m.close();
});
