/**
 * Whole-pipeline parity: `runPrune` on tiny seeded models (a GQA llama and a BERT classifier) against the naive
 * float64 reference pipeline of test/reference/pipeline.ts, on the very same calibration sequences (pare's own
 * sampling is reused; it is not under test here). Checked: kept KV groups / heads / channels per layer (report
 * and pare-pruning.json), the written tensor set and shapes, and every tensor's values — sliced / untouched ones
 * bit-exact, reconstructed consumers within 1e-5 relative (max |Δ| / max |ref| per tensor; observed ≤ 2.5e-6,
 * the gap between ORT's float32 forward and the float64 reference).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decoderCalibration, encoderCalibration } from "../../src/calib/sampling.ts";
import { readCalibrationText } from "../../src/io/datasets.ts";
import { TensorStore } from "../../src/io/safetensors.ts";
import { loadTokenizer } from "../../src/io/tokenizer.ts";
import { type PruneReport, runPrune } from "../../src/pipeline/prune.ts";
import { resolveRecipe } from "../../src/pipeline/recipe.ts";
import {
  makeByteBpeTokenizerJson,
  makeTinyBert,
  makeTinyLlama,
  makeWordPieceTokenizerJson,
  type TinyModel,
  tensorMap,
  writeTinyModel,
} from "../helpers/tinyModels.ts";
import {
  calibrationSequences,
  type Family,
  type RefCriterion,
  type RefReconstruct,
  type RefResult,
  referencePrune,
} from "../reference/pipeline.ts";

const STORY = `Once upon a time there was a cat that sat on the mat. The cat was the best of cats, and the mat
was the worst of mats. It was the age of wisdom, it was the age of foolishness; the cat did not care.
In the morning the cat went to the garden and looked at the birds in the trees, and the birds looked back
at the cat. Nobody in the house knew what the cat was thinking, but everybody agreed that it was thinking
of something important. At noon the rain started and the cat ran back to the mat, where it sat again.
`;

const LINES = [
  "the cat sat on the mat",
  "a dog",
  "the movie was good and the story was great",
  "it was the best of times, it was the worst of times, it was the age of wisdom and of foolishness",
  "boring",
  "the birds looked back at the cat in the garden",
  "nobody knew what the cat was thinking",
  "rain",
  "the mat was the worst of mats",
  "at noon the rain started and the cat ran back to the mat where it sat again",
  "a charming story",
  "the best of cats",
].join("\n");

const WORDS = ["the", "cat", "sat", "mat", "was", "of", "and", "a", "it", "best", "worst", "story"];

/** calibration settings shared by pare and the reference */
const CAL = { samples: 8, seqLen: 24, batchSize: 3, seed: 3 };

let root: string;
const fam: Record<Family, { dir: string; model: TinyModel; calib: string; sequences: number[][] }> =
  {} as never;

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-parity-"));
  const llama = makeTinyLlama({
    seed: 11,
    hidden: 32,
    heads: 8,
    kvHeads: 4,
    headDim: 4,
    intermediate: 40,
    layers: 3,
  });
  const bert = makeTinyBert({ seed: 12, hidden: 32, heads: 4, intermediate: 48, layers: 2 });
  const dl = path.join(root, "llama");
  const db = path.join(root, "bert");
  writeTinyModel(dl, llama, makeByteBpeTokenizerJson(300));
  writeTinyModel(db, bert, makeWordPieceTokenizerJson(WORDS));
  const cl = path.join(root, "story.txt");
  const cb = path.join(root, "lines.txt");
  fs.writeFileSync(cl, STORY);
  fs.writeFileSync(cb, `${LINES}\n`);
  // pare's calibration sequences, reproduced with pare's own sampling (not under test)
  const tl = loadTokenizer(dl);
  const tb = loadTokenizer(db);
  const sl = decoderCalibration(
    tl.encode(readCalibrationText([cl])),
    CAL.samples,
    CAL.seqLen,
    CAL.seed,
    CAL.batchSize,
  );
  const sb = encoderCalibration(
    readCalibrationText([cb]),
    tb,
    CAL.samples,
    CAL.seqLen,
    CAL.seed,
    CAL.batchSize,
  );
  fam.decoder = { dir: dl, model: llama, calib: cl, sequences: calibrationSequences(sl.batches) };
  fam.encoder = { dir: db, model: bert, calib: cb, sequences: calibrationSequences(sb.batches) };
});

afterAll(() => {
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

interface Case {
  family: Family;
  criterion: RefCriterion;
  reconstruct: RefReconstruct;
  allocation: "uniform" | "global";
  calibration: "dense" | "sequential";
}

const cases: Case[] = [];
for (const family of ["decoder", "encoder"] as const)
  for (const criterion of ["flap-wifv", "wanda-sp"] as const)
    for (const reconstruct of ["none", "bias", "liar"] as const)
      for (const allocation of ["uniform", "global"] as const)
        cases.push({ family, criterion, reconstruct, allocation, calibration: "dense" });
for (const family of ["decoder", "encoder"] as const) {
  cases.push({
    family,
    criterion: "flap-wifv",
    reconstruct: "liar",
    allocation: "uniform",
    calibration: "sequential",
  });
  cases.push({
    family,
    criterion: "wanda-sp",
    reconstruct: "liar",
    allocation: "global",
    calibration: "sequential",
  });
  cases.push({
    family,
    criterion: "flap-wifv",
    reconstruct: "bias",
    allocation: "uniform",
    calibration: "sequential",
  });
}

/** consumer tensors that reconstruction rewrites (weights and biases of o_proj / down_proj and BERT's equivalents) */
const isConsumer = (name: string) =>
  /(self_attn\.o_proj|mlp\.down_proj|attention\.output\.dense|\.output\.dense)\.(weight|bias)$/.test(name) &&
  !name.includes("LayerNorm");

function compare(out: string, ref: RefResult, reconstructed: boolean): { maxRel: number } {
  const st = TensorStore.openFolder(out);
  try {
    expect(st.names().sort()).toEqual([...ref.weights.keys()].sort());
    let maxRel = 0;
    for (const name of st.names()) {
      const r = ref.weights.get(name)!;
      expect(st.info(name).shape, name).toEqual(r.shape);
      const got = st.readF32(name);
      let diff = 0;
      let mag = 0;
      for (let i = 0; i < got.length; i++) {
        diff = Math.max(diff, Math.abs(got[i] - r.data[i]));
        mag = Math.max(mag, Math.abs(r.data[i]));
      }
      if (reconstructed && isConsumer(name)) {
        const rel = diff / Math.max(mag, 1e-30);
        maxRel = Math.max(maxRel, rel);
        expect(rel, name).toBeLessThan(1e-5);
      } else {
        expect(diff, `${name} (sliced or untouched: bit-exact)`).toBe(0);
      }
    }
    return { maxRel };
  } finally {
    st.close();
  }
}

describe("runPrune matches the float64 reference pipeline", () => {
  for (const c of cases) {
    const label = `${c.family === "decoder" ? "llama (GQA 8q/4kv)" : "bert"} · ${c.criterion} · ${c.allocation} · ${c.reconstruct} · ${c.calibration}`;
    it(label, async () => {
      const f = fam[c.family];
      const out = path.join(root, `out-${cases.indexOf(c)}`);
      const report: PruneReport = await runPrune(
        resolveRecipe({
          model: f.dir,
          out,
          calib: [f.calib],
          ...CAL,
          ratio: 0.3,
          criterion: c.criterion,
          allocation: c.allocation,
          reconstruct: c.reconstruct,
          calibration: c.calibration,
          ridge: 0.01,
        }),
      );
      const ref = referencePrune(c.family, f.model.config, tensorMap(f.model), f.sequences, {
        ratio: 0.3,
        criterion: c.criterion,
        allocation: c.allocation,
        reconstruct: c.reconstruct,
        calibration: c.calibration,
        ridge: 0.01,
      });
      // kept units, from the returned report and the written pare-pruning.json
      const written = JSON.parse(fs.readFileSync(path.join(out, "pare-pruning.json"), "utf8")) as PruneReport;
      for (const rep of [report, written]) {
        expect(rep.layers.map((l) => l.keptKvGroups)).toEqual(ref.layers.map((l) => l.keptGroups));
        expect(rep.layers.map((l) => l.keptHeads)).toEqual(ref.layers.map((l) => l.keptHeads));
        expect(rep.layers.map((l) => l.keptChannels)).toEqual(ref.layers.map((l) => l.keptChannels));
      }
      // the unit scores the report states (4 significant digits) are the reference's
      report.layers.forEach((l, i) => {
        const got = (l as { scores?: { attn: number[]; mlp: number[] } }).scores;
        if (!got) return; // (an optional report field)
        for (const m of ["attn", "mlp"] as const) {
          const want = ref.layers[i].scores[m];
          const scale = Math.max(...Array.from(want, Math.abs));
          expect(got[m].length).toBe(want.length);
          got[m].forEach((v, k) => {
            expect(Math.abs(v - want[k]), `layer ${i} ${m} unit ${k}`).toBeLessThanOrEqual(
              6e-4 * Math.abs(want[k]) + 1e-5 * scale,
            );
          });
        }
      });
      // something was pruned, and the report's widths agree with the kept sets
      expect(report.achievedRatio).toBeGreaterThan(0.1);
      report.layers.forEach((l) => {
        expect(l.heads[1]).toBe(l.keptHeads.length);
        expect(l.kvHeads[1]).toBe(l.keptKvGroups.length);
        expect(l.ffn[1]).toBe(l.keptChannels.length);
      });
      const { maxRel } = compare(out, ref, c.reconstruct !== "none");
      if (c.reconstruct !== "none") expect(maxRel).toBeGreaterThan(0); // really went through a float32 forward
      // parameter counts: the written tensors add up to the reported total
      const st = TensorStore.openFolder(out);
      const total = st.names().reduce((s, n) => s + st.info(n).shape.reduce((a, b) => a * b, 1), 0);
      st.close();
      expect(report.params.after.total).toBe(total);
      expect(report.params.before.total).toBe(f.model.tensors.reduce((s, t) => s + t.data.length, 0));
    });
  }
});
