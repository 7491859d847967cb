/**
 * The quantization taps of the layer graphs (src/ops/layers.ts): qkvIn is the input of q/k/v (the first normed
 * residual) and upIn the input of gate/up (the second), checked against a float64 RMSNorm of the layer input and
 * of mid; asking for them does not change the other outputs (bit for bit).
 */
import { afterAll, expect, it } from "vitest";
import { buildModel } from "../../src/arch/model.ts";
import { closeSharedOps, sharedOps } from "../../src/ops/index.ts";
import { Rng } from "../helpers/rng.ts";
import { makeTinyLlama, tensorMap } from "../helpers/tinyModels.ts";

afterAll(() => closeSharedOps());

function rmsNorm(x: Float32Array, w: Float32Array, D: number, eps: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / D; r++) {
    let ms = 0;
    for (let j = 0; j < D; j++) ms += x[r * D + j] ** 2;
    const inv = 1 / Math.sqrt(ms / D + eps);
    for (let j = 0; j < D; j++) out[r * D + j] = x[r * D + j] * inv * w[j];
  }
  return out;
}

it("qkvIn = norm₁(x), upIn = norm₂(mid); the other outputs unchanged", async () => {
  const tiny = makeTinyLlama({ seed: 41 });
  const t = tensorMap(tiny);
  const model = buildModel(tiny.config, {
    names: () => [...t.keys()],
    has: (n) => t.has(n),
    shape: (n) => t.get(n)!.shape,
    get: (n) => t.get(n)!.data,
  });
  const D = model.dims.hidden;
  const T = 6;
  const rng = new Rng(2);
  const x = Float32Array.from({ length: T * D }, () => rng.normal());
  const batch = { ids: new Array(T).fill(1), mask: new Array(T).fill(1), b: 1, T };
  const ops = sharedOps();
  const a = await ops.layers.run(model, 1, { from: "x", outputs: ["qkvIn", "attnIn"] }, { x }, batch);
  const b = await ops.layers.run(model, 1, { from: "x", outputs: ["mid", "upIn", "mlpIn"] }, { x }, batch);
  const plain = await ops.layers.run(model, 1, { from: "x", outputs: ["mid", "mlpIn"] }, { x }, batch);
  const attn = await ops.layers.run(model, 1, { from: "x", outputs: ["attnIn"] }, { x }, batch);
  const eps = model.dims.eps;
  const n1 = rmsNorm(x, t.get("model.layers.1.input_layernorm.weight")!.data, D, eps);
  const n2 = rmsNorm(b.mid!, t.get("model.layers.1.post_attention_layernorm.weight")!.data, D, eps);
  for (let k = 0; k < n1.length; k++) {
    expect(Math.abs(a.qkvIn![k] - n1[k])).toBeLessThan(1e-5);
    expect(Math.abs(b.upIn![k] - n2[k])).toBeLessThan(1e-5);
  }
  expect(Array.from(a.attnIn!)).toEqual(Array.from(attn.attnIn!));
  expect(Array.from(b.mlpIn!)).toEqual(Array.from(plain.mlpIn!));
  expect(Array.from(b.mid!)).toEqual(Array.from(plain.mid!));
});
