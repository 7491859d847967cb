/**
 * quantizeLayer (src/quant/sequential.ts) builds each linear's GPTQ Hessian from its input on the QUANTIZED stream:
 * o_proj from the attention output of the layer with q/k/v already quantized, gate/up from the second norm after
 * the quantized attention, down_proj from the gated activation of the quantized gate/up. Checked against a float64
 * Gram of the taps that the test computes itself on the model with the result's dequantized earlier linears (and,
 * for contrast, on the float model, which must give other integers). Damping: 1% of mean(diag H).
 */
import { afterAll, expect, it } from "vitest";
import { buildModel, type Model } from "../../src/arch/model.ts";
import type { LayerValue, TokenBatch } from "../../src/ops/index.ts";
import { closeSharedOps, sharedOps } from "../../src/ops/index.ts";
import { gptqQuantize } from "../../src/quant/gptq.ts";
import { dequantize } from "../../src/quant/linear.ts";
import { layerLinears, quantizeLayer } from "../../src/quant/sequential.ts";
import { checkQuantSettings } from "../../src/quant/settings.ts";
import { OverlayWeights } from "../../src/surgery/surgery.ts";
import { Rng } from "../helpers/rng.ts";
import { makeTinyLlama, tensorMap } from "../helpers/tinyModels.ts";

afterAll(() => closeSharedOps());

function tinyModel(): Model {
  const tiny = makeTinyLlama({ seed: 43, hidden: 32, heads: 4, kvHeads: 2, headDim: 8, intermediate: 48 });
  const t = tensorMap(tiny);
  return buildModel(tiny.config, {
    names: () => [...t.keys()],
    has: (n) => t.has(n),
    shape: (n) => t.get(n)!.shape,
    get: (n) => t.get(n)!.data,
  });
}

/** Σ xᵀx over the rows of a tap [n, d], float64 */
function gram(rows: Float32Array[], d: number): Float64Array {
  const H = new Float64Array(d * d);
  for (const x of rows)
    for (let r = 0; r < x.length / d; r++)
      for (let a = 0; a < d; a++) {
        const xa = x[r * d + a];
        for (let b = 0; b < d; b++) H[a * d + b] += xa * x[r * d + b];
      }
  return H;
}

it("GPTQ's H of every linear is the Gram of its input with the earlier linears quantized", async () => {
  const model = tinyModel();
  const D = model.dims.hidden;
  const T = 40;
  const rng = new Rng(5);
  const batches: TokenBatch[] = [0, 1].map(() => ({
    ids: Array.from({ length: T }, () => 3 + Math.floor(rng.uniform() * 200)),
    mask: new Array(T).fill(1),
    b: 1,
    T,
  }));
  const xs = batches.map(() => Float32Array.from({ length: T * D }, () => rng.normal()));
  const s = checkQuantSettings({ groupSize: 16 });
  const ops = sharedOps();
  const overlay = new OverlayWeights(model.weights);
  const r = await quantizeLayer(ops, model, overlay, 0, (b) => xs[b], batches, s);
  expect(r.out).toHaveLength(2);

  // the tap of each group on a model whose linears quantized so far are the result's dequantized ones
  const groups = layerLinears(model, 0);
  const applied = new OverlayWeights(model.weights);
  let mids: Float32Array[] = [];
  const tapRows = async (m: Model, tap: LayerValue): Promise<Float32Array[]> => {
    const out: Float32Array[] = [];
    const newMids: Float32Array[] = [];
    for (let b = 0; b < 2; b++) {
      const res =
        tap === "mlpIn"
          ? await ops.layers.run(
              m,
              0,
              { from: "mid", outputs: ["mlpIn"] },
              { x: xs[b], mid: mids[b] },
              batches[b],
            )
          : await ops.layers.run(m, 0, { from: "x", outputs: ["mid", tap] }, { x: xs[b] }, batches[b]);
      out.push(res[tap]!);
      if (res.mid) newMids.push(res.mid);
    }
    if (tap !== "mlpIn") mids = newMids;
    return out;
  };
  for (const g of groups) {
    const d = model.weights.shape(g.names[0])[1];
    const Hq = gram(await tapRows({ ...model, weights: applied }, g.tap), d);
    const Hf = g.tap === "qkvIn" ? undefined : gram(await tapRows(model, g.tap), d);
    if (Hf) await tapRows({ ...model, weights: applied }, g.tap); // restore the quantized stream's mid
    for (const name of g.names) {
      const [rows, cols] = model.weights.shape(name);
      const W = model.weights.get(name);
      const got = r.quantized.get(name)!;
      const want = await gptqQuantize(ops, name, W, rows, cols, Hq, s);
      expect(want.damp).toBe(0.01);
      // the same integers up to a rare rounding tie flipped by the Gram's summation order
      let diff = 0;
      for (let k = 0; k < got.q.length; k++) if (got.q[k] !== want.linear.q[k]) diff++;
      expect(diff / got.q.length).toBeLessThan(0.002);
      if (Hf) {
        // the float stream's Hessian gives other integers: the check above can tell the streams apart
        const wrong = await gptqQuantize(ops, name, W, rows, cols, Hf, s);
        let wd = 0;
        for (let k = 0; k < got.q.length; k++) if (got.q[k] !== wrong.linear.q[k]) wd++;
        expect(wd / got.q.length).toBeGreaterThan(0.02);
      }
      applied.set(name, { shape: [rows, cols], data: dequantize(got) });
    }
  }
  // the propagated output is the layer with every linear quantized
  for (let b = 0; b < 2; b++) {
    const o = await ops.layers.run(
      { ...model, weights: applied },
      0,
      { from: "x", outputs: ["out"] },
      { x: xs[b] },
      batches[b],
    );
    for (let k = 0; k < o.out!.length; k++) expect(Math.abs(r.out![b][k] - o.out![k])).toBeLessThan(1e-5);
  }
});
