/**
 * The normalization gains behind `--obs-normalization stream` (src/ops/layers.ts attnGain / mlpGain,
 * Emitter.normGain): per token, 1/(var + ε) (LayerNorm) or 1/(mean square + ε) (RMSNorm) of the input of the
 * first norm that an error of o_proj's / down_proj's output passes through — checked against a float64
 * recomputation from the layer's own taps: BERT (post-norm: the norm after the residual add), Gemma 2 and 3
 * (sandwich norms: the sublayer-output norm, before the residual add). Pre-norm families have no such norm.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel } from "../../src/arch/load.ts";
import { hasNormGain, Ops } from "../../src/ops/index.ts";
import { makeTinyGemma2, makeTinyGemma3, makeTinyPhi3, makeTinyQwen3 } from "../helpers/tinyFamilies.ts";
import { makeTinyBert, makeTinyLlama, type TinyModel, writeTinyModel } from "../helpers/tinyModels.ts";

let root: string;
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-normgain-"));
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** y = x Wᵀ + b in float64: x [n, dIn], W [dOut, dIn] → [n, dOut] */
function linear64(x: Float32Array, n: number, W: Float32Array, dOut: number, b?: Float32Array): Float64Array {
  const dIn = W.length / dOut;
  const y = new Float64Array(n * dOut);
  for (let t = 0; t < n; t++)
    for (let o = 0; o < dOut; o++) {
      let s = b ? b[o] : 0;
      for (let j = 0; j < dIn; j++) s += x[t * dIn + j] * W[o * dIn + j];
      y[t * dOut + o] = s;
    }
  return y;
}

/** per row of u [n, D]: 1/(var + ε) (LayerNorm) or 1/(mean square + ε) (RMSNorm) */
function gain64(u: Float64Array, n: number, D: number, layer: boolean, eps: number): Float64Array {
  const g = new Float64Array(n);
  for (let t = 0; t < n; t++) {
    let mean = 0;
    if (layer) {
      for (let j = 0; j < D; j++) mean += u[t * D + j];
      mean /= D;
    }
    let v = 0;
    for (let j = 0; j < D; j++) v += (u[t * D + j] - mean) ** 2;
    g[t] = 1 / (v / D + eps);
  }
  return g;
}

const CASES: [string, () => TinyModel, boolean][] = [
  ["bert (post-norm)", () => makeTinyBert({ seed: 22, layers: 2 }), true],
  ["gemma2 (sandwich norms)", () => makeTinyGemma2({ seed: 201 }), true],
  ["gemma3_text (sandwich norms)", () => makeTinyGemma3({ seed: 301 }), true],
  ["llama (pre-norm)", () => makeTinyLlama({ seed: 21, layers: 2 }), false],
  ["qwen3 (pre-norm)", () => makeTinyQwen3({ seed: 102, layers: 2 }), false],
  ["phi3 (pre-norm, fused)", () => makeTinyPhi3({ seed: 401 }), false],
];

describe.each(CASES)("%s", (name, tiny, gains) => {
  it(
    gains ? "attnGain / mlpGain equal the float64 gains of the norms' inputs" : "has no norm gain",
    async () => {
      const dir = path.join(root, name.replace(/[^a-z0-9]+/g, "-"));
      writeTinyModel(dir, tiny());
      const model = loadModel(dir);
      expect(hasNormGain(model, "attn")).toBe(gains);
      expect(hasNormGain(model, "mlp")).toBe(gains);
      if (!gains) return model.close();
      const ops = new Ops();
      try {
        const D = model.dims.hidden;
        const b = 2;
        const T = 7;
        let s = 11;
        const x = Float32Array.from({ length: b * T * D }, () => {
          s = (s * 16807) % 2147483647;
          return 2 * (s / 2147483647) - 1;
        });
        const batch = { ids: new Array(b * T).fill(1), mask: new Array(b * T).fill(1), b, T };
        const N = model.spec.names;
        const post = model.spec.block.placement === "post";
        const layerNorm = model.spec.block.norm === "layer";
        for (let i = 0; i < model.dims.nLayers; i++) {
          const r = await ops.layers.run(
            model,
            i,
            { from: "x", outputs: ["attnIn", "mlpIn", "out", "attnGain", "mlpGain"] },
            { x },
            batch,
          );
          const n = b * T;
          const w = (t: string) => model.weights.get(`${model.path(t, i)}.weight`);
          const bias = (t: string) =>
            model.weights.has(`${model.path(t, i)}.bias`)
              ? model.weights.get(`${model.path(t, i)}.bias`)
              : undefined;
          // the consumers' outputs, in float64 from the graph's own taps
          const o = linear64(r.attnIn!, n, w(N.o), D, bias(N.o));
          const down = linear64(r.mlpIn!, n, w(N.down), D, bias(N.down));
          let uA: Float64Array;
          let uM: Float64Array;
          if (post) {
            // norm₁(x + o) and norm₂(mid + down), mid = norm₁(x + o) (LayerNorm, float64)
            uA = o.map((v, k) => v + x[k]);
            const g1 = gain64(uA, n, D, true, model.dims.eps);
            const w1 = w(N.norm1);
            const b1 = bias(N.norm1)!;
            const mid = new Float64Array(n * D);
            for (let t = 0; t < n; t++) {
              let mean = 0;
              for (let j = 0; j < D; j++) mean += uA[t * D + j] / D;
              for (let j = 0; j < D; j++)
                mid[t * D + j] = (uA[t * D + j] - mean) * Math.sqrt(g1[t]) * w1[j] + b1[j];
            }
            uM = down.map((v, k) => v + mid[k]);
          } else {
            uA = o; // the sublayer-output norms read o and down themselves
            uM = down;
          }
          const eps = model.dims.eps;
          const gA = gain64(uA, n, D, layerNorm, eps);
          const gM = gain64(uM, n, D, layerNorm, eps);
          for (let t = 0; t < n; t++) {
            expect(Math.abs(r.attnGain![t] - gA[t]) / gA[t]).toBeLessThan(2e-4);
            expect(Math.abs(r.mlpGain![t] - gM[t]) / gM[t]).toBeLessThan(2e-4);
          }
          // and they are not a constant: the feature measures the tokens
          expect(Math.max(...gA) / Math.min(...gA)).toBeGreaterThan(1.001);
        }
      } finally {
        await ops.close();
        model.close();
      }
    },
  );
});
