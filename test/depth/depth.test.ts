/**
 * Depth pruning (--depth): the criteria and the least-squares compensation against float64 references on
 * tiny seeded models, the renumbered output (config lists, sliding-window patterns, fused tensors) read by the
 * reference twins as "the input without those blocks", depth + width, errors before any work, and
 * bit-identical reruns and resume.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel } from "../../src/arch/load.ts";
import { decoderCalibrationFromText } from "../../src/calib/sampling.ts";
import { chooseByInfluence, chooseSpan, cosineSums, removedRuns } from "../../src/depth/criteria.ts";
import { fitFold } from "../../src/depth/fit.ts";
import { isPareError } from "../../src/errors.ts";
import { Runner } from "../../src/eval/runner.ts";
import { readCalibrationText } from "../../src/io/datasets.ts";
import { openModelFolder } from "../../src/io/modelFolder.ts";
import { loadTokenizer } from "../../src/io/tokenizer.ts";
import { sharedOps } from "../../src/ops/index.ts";
import { type PruneEvent, type PruneReport, runPrune } from "../../src/pipeline/prune.ts";
import { type Recipe, resolveRecipe } from "../../src/pipeline/recipe.ts";
import { makeTinyGemma2, makeTinyGemma3, makeTinyPhi3, makeTinyQwen3 } from "../helpers/tinyFamilies.ts";
import {
  makeByteBpeTokenizerJson,
  makeTinyBert,
  makeTinyLlama,
  makeWordPieceTokenizerJson,
  nonUniformLlama,
  type TinyModel,
  writeTinyModel,
} from "../helpers/tinyModels.ts";
import { referenceFamilyForward } from "../reference/families.ts";
import {
  type DecoderReferenceOutput,
  type RefTensor,
  referenceDecoderForward,
} from "../reference/forward.ts";
import { calibrationSequences, gaussSolve } from "../reference/pipeline.ts";

let root: string;
let calib: string;
const models: Record<string, string> = {};

function write(name: string, m: TinyModel): string {
  const dir = path.join(root, name);
  writeTinyModel(dir, m, makeByteBpeTokenizerJson(300));
  models[name] = dir;
  return dir;
}

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-depth-"));
  calib = path.join(root, "calib.txt");
  fs.writeFileSync(
    calib,
    "the quick brown fox jumps over the lazy dog; a stitch in time saves nine, they said. ".repeat(120),
  );
  write("llama", makeTinyLlama({ seed: 21, layers: 5, intermediate: 40 }));
  write("gemma3", makeTinyGemma3({ seed: 22, layers: 5 }));
  write(
    "qwen3",
    makeTinyQwen3({ seed: 23, layers: 5, useSlidingWindow: true, maxWindowLayers: 2, slidingWindow: 4 }),
  );
  write("phi3", makeTinyPhi3({ seed: 24, layers: 4 }));
  write("llama-widths", nonUniformLlama(26)); // an already width-pruned model: pare_layer_widths
  write("qwen2", makeTinyLlama({ seed: 28, layers: 4, modelType: "qwen2" }));
  write("gemma2", makeTinyGemma2({ seed: 29, layers: 4 }));
  const mistral = makeTinyLlama({ seed: 27, layers: 4, modelType: "mistral" });
  mistral.config.sliding_window = 5;
  write("mistral", mistral);
  const bertDir = path.join(root, "bert");
  writeTinyModel(bertDir, makeTinyBert({ seed: 25 }), makeWordPieceTokenizerJson(["the", "fox", "dog"]));
  models.bert = bertDir;
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const SAMPLES = 6;
const SEQ = 24;
const recipe = (model: string, out: string, extra: Partial<Recipe> = {}) =>
  resolveRecipe({ model, out, calib: [calib], samples: SAMPLES, seqLen: SEQ, ...extra } as Recipe);

/** The calibration sequences a prune of `dir` reads (same sampling call as the calibrate stage). */
function sequences(dir: string): number[][] {
  const tok = loadTokenizer(dir);
  const c = decoderCalibrationFromText(readCalibrationText([calib]), tok, SAMPLES, SEQ, 0, 8);
  return calibrationSequences(c.batches);
}

type Ref = (dir: string, ids: number[], skip?: ReadonlySet<number>) => DecoderReferenceOutput;
function folder(dir: string): { config: Record<string, unknown>; get: (n: string) => RefTensor | undefined } {
  const f = openModelFolder(dir);
  const cache = new Map<string, RefTensor>();
  return {
    config: f.config,
    get: (n) => {
      if (!f.store.has(n)) return undefined;
      let t = cache.get(n);
      if (!t) {
        t = { shape: f.store.info(n).shape, data: f.store.readF32(n) };
        cache.set(n, t);
      }
      return t;
    },
  };
}
const refLlama: Ref = (dir, ids, skip) => {
  const f = folder(dir);
  return referenceDecoderForward(f.config, f.get, ids, { skipLayers: skip });
};
const refFamily: Ref = (dir, ids, skip) => {
  const f = folder(dir);
  return referenceFamilyForward(f.config, f.get, ids, { skipLayers: skip });
};

const report = (out: string): PruneReport =>
  JSON.parse(fs.readFileSync(path.join(out, "pare-pruning.json"), "utf8"));

function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    m = Math.max(m, Math.abs(a[i] - b[i]));
    s = Math.max(s, Math.abs(b[i]));
  }
  return m / Math.max(s, 1e-12);
}

describe("criteria and fit kernels", () => {
  it("cosineSums equals a float64 computation, skipping masked rows", () => {
    const D = 5;
    const a = Float32Array.from({ length: 4 * D }, (_, i) => Math.sin(i * 1.3));
    const b = Float32Array.from({ length: 4 * D }, (_, i) => Math.cos(i * 0.7));
    const mask = [1, 0, 1, 1];
    let cos = 0;
    let angle = 0;
    for (const t of [0, 2, 3]) {
      let ab = 0;
      let aa = 0;
      let bb = 0;
      for (let k = 0; k < D; k++) {
        ab += a[t * D + k] * b[t * D + k];
        aa += a[t * D + k] ** 2;
        bb += b[t * D + k] ** 2;
      }
      cos += ab / Math.sqrt(aa * bb);
      angle += Math.acos(ab / Math.sqrt(aa * bb));
    }
    const s = cosineSums(a, b, D, mask);
    expect(s.n).toBe(3);
    expect(s.cos).toBeCloseTo(cos, 12);
    expect(s.angle).toBeCloseTo(angle, 12);
  });

  it("bi removes the least influential allowed blocks; angular the best allowed span; runs", () => {
    const allAllowed = () => true;
    expect(chooseByInfluence([0.9, 0.1, 0.3, 0.05, 0.2], 2, allAllowed).removed).toEqual([1, 3]);
    expect(chooseByInfluence([0.9, 0.1, 0.3, 0.05, 0.2], 2, (l) => l !== 3).removed).toEqual([1, 4]);
    expect(chooseSpan([0.5, 0.2, 0.1, 0.4], 2, allAllowed).removed).toEqual([2, 3]);
    expect(chooseSpan([0.5, 0.2, 0.1, 0.4], 2, (l) => l !== 3).removed).toEqual([1, 2]);
    expect(removedRuns([4, 1, 2, 6])).toEqual([
      [1, 2],
      [4, 4],
      [6, 6],
    ]);
  });

  it.each([true, false])("fitFold equals the float64 ridge normal equations (intercept %s)", async (icpt) => {
    const N = 60;
    const dIn = 6;
    const dOut = 4;
    let s = 7;
    const rnd = () => {
      s = (s * 16807) % 2147483647;
      return 2 * (s / 2147483647) - 1;
    };
    const a = Float64Array.from({ length: N * dIn }, rnd);
    const Y = Float64Array.from({ length: N * dOut }, rnd);
    const W = Float32Array.from({ length: dOut * dIn }, rnd);
    const D = dIn + 1;
    const gram = new Float64Array(D * D);
    const cross = new Float64Array(D * (dOut + 1));
    for (let r = 0; r < N; r++) {
      const x = [...a.subarray(r * dIn, (r + 1) * dIn), 1];
      const y = [...Y.subarray(r * dOut, (r + 1) * dOut), 1];
      for (let i = 0; i < D; i++) {
        for (let j = 0; j < D; j++) gram[i * D + j] += x[i] * x[j];
        for (let j = 0; j <= dOut; j++) cross[i * (dOut + 1) + j] += x[i] * y[j];
      }
    }
    const alpha = 0.05;
    const got = await fitFold({
      gram,
      cross,
      W,
      dOut,
      dIn,
      alpha,
      intercept: icpt,
      where: "test",
      ops: sharedOps(),
    });
    // reference: (ãᵀã + λĨ) Θ = ãᵀY + λĨ Wᵀ, λ = α · mean diag(aᵀa)
    const n = icpt ? D : dIn;
    let diag = 0;
    for (let i = 0; i < dIn; i++) diag += gram[i * D + i];
    const lambda = (alpha * diag) / dIn;
    const A = new Float64Array(n * n);
    const B = new Float64Array(n * dOut);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) A[i * n + j] = gram[i * D + j] + (i === j && i < dIn ? lambda : 0);
      for (let o = 0; o < dOut; o++)
        B[i * dOut + o] = cross[i * (dOut + 1) + o] + (i < dIn ? lambda * W[o * dIn + i] : 0);
    }
    const Z = gaussSolve(A, n, B, dOut);
    const Wref = Float64Array.from(
      { length: dOut * dIn },
      (_, k) => Z[(k % dIn) * dOut + Math.floor(k / dIn)],
    );
    expect(maxRelDiff(got.W, Wref)).toBeLessThan(1e-6); // float32 weights
    if (icpt) {
      const bref = Float64Array.from({ length: dOut }, (_, o) => Z[dIn * dOut + o]);
      expect(maxRelDiff(got.b!, bref)).toBeLessThan(1e-6);
    } else expect(got.b).toBeUndefined();
    // a huge ridge returns the original weights (plain removal)
    const hold = await fitFold({
      gram,
      cross,
      W,
      dOut,
      dIn,
      alpha: 1e12,
      intercept: false,
      where: "t",
      ops: sharedOps(),
    });
    expect(maxRelDiff(hold.W, W)).toBeLessThan(1e-6);
  });
});

/** Mean over every calibration token of f(h[l][t], h[l+span][t]) by the reference, per l. */
function refScores(refs: DecoderReferenceOutput[], H: number, span: number, f: (c: number) => number) {
  const L = refs[0].hidden.length - 1;
  return Array.from({ length: L - span + 1 }, (_, l) => {
    let s = 0;
    let n = 0;
    for (const r of refs) {
      const a = r.hidden[l];
      const b = r.hidden[l + span];
      for (let t = 0; t < a.length / H; t++) {
        let ab = 0;
        let aa = 0;
        let bb = 0;
        for (let k = 0; k < H; k++) {
          ab += a[t * H + k] * b[t * H + k];
          aa += a[t * H + k] ** 2;
          bb += b[t * H + k] ** 2;
        }
        s += f(Math.min(1, ab / Math.sqrt(aa * bb)));
        n++;
      }
    }
    return s / n;
  });
}

/** NLL per predicted token of the reference logits. */
function refLoss(outs: DecoderReferenceOutput[], seqs: number[][], V: number): number {
  let s = 0;
  let n = 0;
  outs.forEach((o, k) => {
    const ids = seqs[k];
    for (let t = 0; t + 1 < ids.length; t++) {
      const row = o.logits.subarray(t * V, (t + 1) * V);
      let m = Number.NEGATIVE_INFINITY;
      for (const v of row) m = Math.max(m, v);
      let z = 0;
      for (const v of row) z += Math.exp(v - m);
      s += -(row[ids[t + 1]] - m - Math.log(z));
      n++;
    }
  });
  return s / n;
}

describe("criteria on a tiny Llama match the float64 reference", () => {
  it("bi: the block influences and the chosen blocks", async () => {
    const dir = models.llama;
    const out = path.join(root, "bi");
    await runPrune(recipe(dir, out, { depth: 2, reconstruct: "none", depthCriterion: "bi" }));
    const r = report(out).depth!;
    const seqs = sequences(dir);
    const H = Number(folder(dir).config.hidden_size);
    const ref = refScores(
      seqs.map((s) => refLlama(dir, s)),
      H,
      1,
      (c) => 1 - c,
    );
    for (let l = 0; l < ref.length; l++) expect(r.scores[l]!).toBeCloseTo(ref[l], 3);
    const order = ref.map((v, l) => [v, l]).sort((x, y) => x[0] - y[0]);
    expect(r.removed).toEqual([order[0][1], order[1][1]].sort());
    expect(r.kept.length).toBe(3);
  });

  it("angular: the span distances and the chosen span", async () => {
    const dir = models.llama;
    const out = path.join(root, "angular");
    await runPrune(recipe(dir, out, { depth: 2, reconstruct: "none", depthCriterion: "angular" }));
    const r = report(out).depth!;
    const H = Number(folder(dir).config.hidden_size);
    const ref = refScores(
      sequences(dir).map((s) => refLlama(dir, s)),
      H,
      2,
      (c) => Math.acos(c) / Math.PI,
    );
    for (let l = 0; l < ref.length; l++) expect(r.scores[l]!).toBeCloseTo(ref[l], 3);
    const best = ref.indexOf(Math.min(...ref));
    expect(r.removed).toEqual([best, best + 1]);
  });

  it("sleb: each round's losses are the reference calibration losses without the candidate", async () => {
    const dir = models.llama;
    const out = path.join(root, "sleb");
    await runPrune(recipe(dir, out, { depth: 2, reconstruct: "none", depthCriterion: "sleb" }));
    const r = report(out).depth!;
    const seqs = sequences(dir);
    const V = Number(folder(dir).config.vocab_size);
    const loss = (skip: number[]) =>
      refLoss(
        seqs.map((s) => refLlama(dir, s, new Set(skip))),
        seqs,
        V,
      );
    const first = Array.from({ length: 5 }, (_, k) => loss([k]));
    for (let k = 0; k < 5; k++) expect(r.scores[k]!).toBeCloseTo(first[k], 2);
    const k0 = first.indexOf(Math.min(...first));
    expect(r.rounds![0].removed).toBe(k0);
    const second = Array.from({ length: 5 }, (_, k) => (k === k0 ? Infinity : loss([k0, k])));
    const k1 = second.indexOf(Math.min(...second));
    expect(r.rounds![1].removed).toBe(k1);
    expect(r.rounds![1].loss).toBeCloseTo(second[k1], 3);
    expect(r.removed).toEqual([k0, k1].sort());
  });
});

describe("the output is the input without the removed blocks", () => {
  it.each([
    ["llama", refLlama, "bi"],
    ["gemma3", refFamily, "angular"],
    ["qwen3", refFamily, "bi"],
    ["phi3", refFamily, "sleb"],
    ["llama-widths", refLlama, "bi"],
    ["mistral", refLlama, "angular"],
  ] as [string, Ref, Recipe["depthCriterion"]][])(
    "%s (--reconstruct none): reference(output) = reference(input skipping them)",
    async (name, ref, criterion) => {
      const dir = models[name];
      const out = path.join(root, `none-${name}`);
      await runPrune(recipe(dir, out, { depth: 2, reconstruct: "none", depthCriterion: criterion }));
      const r = report(out).depth!;
      const cfgIn = folder(dir).config;
      const cfg = folder(out).config;
      expect(cfg.num_hidden_layers).toBe(Number(cfgIn.num_hidden_layers) - 2);
      const ids = sequences(dir)[0].slice(0, 12);
      const a = ref(out, ids).logits;
      const b = ref(dir, ids, new Set(r.removed)).logits;
      expect(maxRelDiff(a, b)).toBeLessThan(1e-6);
      // and pare's own forward of the output agrees with the reference
      await expectPareMatches(out, ids, a);
    },
  );

  it("sliding-window patterns of the kept layers are listed in layer_types", async () => {
    const out = path.join(root, "none-gemma3");
    const r = report(out).depth!;
    const cfg = folder(out).config;
    const before = loadModel(models.gemma3);
    const after = loadModel(out);
    expect(after.dims.layerTypes).toEqual(r.kept.map((k) => before.dims.layerTypes[k]));
    expect(cfg.layer_types).toHaveLength(3);
    before.close();
    after.close();
  });
});

describe("liar: the removed span is compensated in the block before it", () => {
  it("the refitted down projection equals the float64 least-squares fit", async () => {
    const dir = models.llama;
    const out = path.join(root, "liar");
    // block 0 is kept so that the removed span has a block before it
    await runPrune(recipe(dir, out, { depth: 1, skipLayers: [0], depthCriterion: "bi" }));
    const r = report(out).depth!;
    expect(r.folds).toHaveLength(1);
    const [s, e] = r.folds[0].span;
    const p = s - 1;
    expect(r.folds[0].layer).toBe(p);
    expect(r.folds[0].relError.fitted!).toBeLessThan(r.folds[0].relError.dropped!);
    // reference: ã = [a_p, 1], Y = h_{e+1} − h_{p+1} + a_p W_pᵀ (the dense stream: nothing is folded before p)
    const f = folder(dir);
    const H = Number(f.config.hidden_size);
    const Wt = f.get(`model.layers.${p}.mlp.down_proj.weight`)!;
    const F = Wt.shape[1];
    const D = F + 1;
    const G = new Float64Array(D * D);
    const C = new Float64Array(D * H);
    for (const ids of sequences(dir)) {
      const o = refLlama(dir, ids);
      const a = o.mlpTaps[p];
      for (let t = 0; t < ids.length; t++) {
        const x = [...a.subarray(t * F, (t + 1) * F), 1];
        const y = new Float64Array(H);
        for (let c = 0; c < H; c++) {
          let down = 0;
          for (let k = 0; k < F; k++) down += x[k] * Wt.data[c * F + k];
          y[c] = o.hidden[e + 1][t * H + c] - o.hidden[p + 1][t * H + c] + down;
        }
        for (let i = 0; i < D; i++) {
          for (let j = 0; j < D; j++) G[i * D + j] += x[i] * x[j];
          for (let c = 0; c < H; c++) C[i * H + c] += x[i] * y[c];
        }
      }
    }
    let diag = 0;
    for (let i = 0; i < F; i++) diag += G[i * D + i];
    const lambda = (0.01 * diag) / F;
    for (let i = 0; i < F; i++) {
      G[i * D + i] += lambda;
      for (let c = 0; c < H; c++) C[i * H + c] += lambda * Wt.data[c * F + i];
    }
    const Z = gaussSolve(G, D, C, H);
    const o = folder(out);
    expect(o.config.mlp_bias).toBe(true); // the fitted intercept is declared
    const Wn = o.get(`model.layers.${p}.mlp.down_proj.weight`)!;
    const bn = o.get(`model.layers.${p}.mlp.down_proj.bias`)!;
    const Wref = Float64Array.from({ length: H * F }, (_, k) => Z[(k % F) * H + Math.floor(k / F)]);
    expect(maxRelDiff(Wn.data, Wref)).toBeLessThan(1e-4);
    expect(maxRelDiff(bn.data, Z.subarray(F * H))).toBeLessThan(1e-4);
    // the compensated model is closer to the dense one than plain removal on the calibration text
    const none = path.join(root, "liar-none");
    await runPrune(
      recipe(dir, none, { depth: 1, skipLayers: [0], reconstruct: "none", depthCriterion: "bi" }),
    );
    const seqs = sequences(dir);
    const V = Number(f.config.vocab_size);
    const kl = (m: string) =>
      seqs.reduce((acc, ids) => {
        const q = refLlama(dir, ids).logits;
        const pl = refLlama(m, ids).logits;
        return acc + klRows(q, pl, V);
      }, 0);
    expect(kl(out)).toBeLessThan(kl(none));
  });

  it("Gemma (FFN output normalized before the residual): the norm's scale is refitted per channel", async () => {
    const dir = models.gemma3;
    const out = path.join(root, "liar-gemma3");
    await runPrune(recipe(dir, out, { depth: 1, skipLayers: [0], depthCriterion: "bi" }));
    const r = report(out).depth!;
    expect(r.folds).toHaveLength(1);
    const [, e] = r.folds[0].span;
    const p = r.folds[0].layer;
    expect(r.folds[0].relError.fitted!).toBeLessThan(r.folds[0].relError.dropped!);
    // reference: n̂ = RMS-normalized down projection output, s = 1 + w, Y = h_{e+1} − (h_{p+1} − n̂ s)
    const f = folder(dir);
    const H = Number(f.config.hidden_size);
    const eps = Number(f.config.rms_norm_eps ?? 1e-6);
    const dW = f.get(`model.layers.${p}.mlp.down_proj.weight`)!;
    const w = f.get(`model.layers.${p}.post_feedforward_layernorm.weight`)!.data;
    const F = dW.shape[1];
    const nn = new Float64Array(H);
    const ny = new Float64Array(H);
    for (const ids of sequences(dir)) {
      const o = refFamily(dir, ids);
      const a = o.mlpTaps[p];
      for (let t = 0; t < ids.length; t++) {
        const down = new Float64Array(H);
        for (let c = 0; c < H; c++) for (let k = 0; k < F; k++) down[c] += a[t * F + k] * dW.data[c * F + k];
        let ms = 0;
        for (const v of down) ms += (v * v) / H;
        for (let c = 0; c < H; c++) {
          const n = down[c] / Math.sqrt(ms + eps);
          const mid = o.hidden[p + 1][t * H + c] - n * (1 + w[c]);
          const y = o.hidden[e + 1][t * H + c] - mid;
          nn[c] += n * n;
          ny[c] += n * y;
        }
      }
    }
    let mean = 0;
    for (const v of nn) mean += v / H;
    const lambda = 0.01 * mean;
    const want = Float64Array.from(
      { length: H },
      (_, c) => (ny[c] + lambda * (1 + w[c])) / (nn[c] + lambda) - 1,
    );
    const got = folder(out).get(`model.layers.${p}.post_feedforward_layernorm.weight`)!.data;
    expect(maxRelDiff(got, want)).toBeLessThan(1e-4);
    expect(maxRelDiff(got, w)).toBeGreaterThan(1e-3); // it did change
  });

  it.each([
    ["qwen2", refLlama],
    ["mistral", refLlama],
    ["qwen3", refFamily],
    ["gemma2", refFamily],
    ["phi3", refFamily],
  ] as [string, Ref][])(
    "%s: the compensated output reads back in the reference as pare runs it",
    async (name, ref) => {
      const out = path.join(root, `liar-${name}`);
      await runPrune(recipe(models[name], out, { depth: 1, skipLayers: [0] }));
      const r = report(out).depth!;
      expect(r.compensation).toBe("liar");
      expect(r.folds).toHaveLength(1);
      expect(r.folds[0].relError.fitted!).toBeLessThan(r.folds[0].relError.dropped!);
      const ids = sequences(models[name])[2].slice(0, 12);
      await expectPareMatches(out, ids, ref(out, ids).logits);
    },
  );

  it("--create-bias never fits without an intercept and creates no bias", async () => {
    const out = path.join(root, "liar-nobias");
    await runPrune(recipe(models.llama, out, { depth: 1, skipLayers: [0], createBias: "never" }));
    const o = folder(out);
    expect(o.config.mlp_bias).toBe(false);
    const names = openModelFolder(out).store.names();
    expect(names.some((n) => n.endsWith(".bias"))).toBe(false);
  });
});

/** pare's ONNX forward of `dir` gives the reference's log-probabilities (≤ 1e-4 of their scale). */
async function expectPareMatches(dir: string, ids: number[], refLogits: Float64Array): Promise<void> {
  const m = loadModel(dir);
  const runner = await Runner.create(m, { mode: "logprobs" });
  try {
    const lp = await runner.windowLogprobs([ids]);
    const V = m.dims.vocab;
    const refLp = new Float64Array(refLogits.length);
    for (let t = 0; t < ids.length; t++) refLp.set(logSoftmax(refLogits.subarray(t * V, (t + 1) * V)), t * V);
    expect(maxRelDiff(lp, refLp)).toBeLessThan(1e-4);
  } finally {
    await runner.close();
    m.close();
  }
}

function klRows(p: Float64Array, q: Float64Array, V: number): number {
  let s = 0;
  for (let t = 0; t < p.length / V; t++) {
    const lp = logSoftmax(p.subarray(t * V, (t + 1) * V));
    const lq = logSoftmax(q.subarray(t * V, (t + 1) * V));
    for (let k = 0; k < V; k++) s += Math.exp(lp[k]) * (lp[k] - lq[k]);
  }
  return s;
}
function logSoftmax(v: Float64Array): Float64Array {
  let m = Number.NEGATIVE_INFINITY;
  for (const x of v) m = Math.max(m, x);
  let z = 0;
  for (const x of v) z += Math.exp(x - m);
  return v.map((x) => x - m - Math.log(z));
}

describe("depth + width, reruns, resume", () => {
  it("--depth 1 --ratio 0.3: fewer layers, then narrower ones; pare's forward equals the reference", async () => {
    const out = path.join(root, "mixed");
    const rep = await runPrune(recipe(models.llama, out, { depth: 1, ratio: 0.3, allocation: "uniform" }));
    expect(rep.layers).toHaveLength(4);
    expect(rep.depth!.removed).toHaveLength(1);
    expect(rep.layers.some((l) => l.ffn[1] < l.ffn[0])).toBe(true);
    expect(rep.achievedRatio).toBeGreaterThan(0.3);
    const ids = sequences(models.llama)[1].slice(0, 10);
    await expectPareMatches(out, ids, refLlama(out, ids).logits);
  });

  it("a depth ratio that rounds to zero blocks is the plain prune, bit for bit", async () => {
    const a = path.join(root, "zero-a");
    const b = path.join(root, "zero-b");
    const r = await runPrune(recipe(models.llama, a, { depthRatio: 0.05, ratio: 0.3 }));
    expect(r.depth).toBeUndefined();
    await runPrune(recipe(models.llama, b, { ratio: 0.3 }));
    for (const f of ["model.safetensors", "config.json"])
      expect(fs.readFileSync(path.join(a, f)).equals(fs.readFileSync(path.join(b, f)))).toBe(true);
  });

  it("reruns are bit-identical, and a resumed depth + width prune equals the uninterrupted one", async () => {
    const extra: Partial<Recipe> = { depth: 1, ratio: 0.3, skipLayers: [0] };
    const a = path.join(root, "rerun-a");
    const b = path.join(root, "rerun-b");
    await runPrune(recipe(models.llama, a, extra));
    await runPrune(recipe(models.llama, b, extra));
    const same = (x: string, y: string) =>
      ["model.safetensors", "config.json"].every((f) =>
        fs.readFileSync(path.join(x, f)).equals(fs.readFileSync(path.join(y, f))),
      );
    expect(same(a, b)).toBe(true);
    const c = path.join(root, "rerun-c");
    const stopInWidth = (e: PruneEvent) => {
      if (e.type === "layer" && e.layer === 2 && (e.step === "attention" || e.step === "reconstruct"))
        throw new Error("interrupted");
    };
    await expect(runPrune(recipe(models.llama, c, extra), stopInWidth)).rejects.toThrow("interrupted");
    expect(fs.existsSync(c)).toBe(false);
    const phases: string[] = [];
    await runPrune(recipe(models.llama, c, { ...extra, resume: true }), (e) => {
      if (e.type === "phase") phases.push(e.phase);
    });
    expect(phases).toContain("resume");
    expect(same(a, c)).toBe(true);
  });
});

describe("bad settings fail before any work", () => {
  const fails = async (model: string, extra: Partial<Recipe>, pattern: RegExp) => {
    const out = path.join(root, `bad-${Math.random().toString(36).slice(2)}`);
    let err: unknown;
    try {
      await runPrune(recipe(model, out, extra));
    } catch (e) {
      err = e;
    }
    expect(isPareError(err), String(err)).toBe(true);
    expect((err as Error).message).toMatch(pattern);
    expect(fs.existsSync(out)).toBe(false);
  };
  it("too many blocks, an encoder, bias compensation, skip-layers", async () => {
    await fails(models.llama, { depth: 5 }, /has 5 blocks/);
    await fails(models.bert, { depth: 1 }, /encoder/);
    await fails(models.llama, { depth: 3, skipLayers: [0, 1, 2] }, /only 2 blocks may be removed/);
    expect(() => recipe(models.llama, path.join(root, "x"), { depth: 1, reconstruct: "bias" })).toThrow(
      /bias/,
    );
    expect(() => recipe(models.llama, path.join(root, "x"), { depth: 1, depthRatio: 0.2 })).toThrow(
      /alternatives/,
    );
  });
});
