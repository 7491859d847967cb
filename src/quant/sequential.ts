/**
 * Quantizing a model layer by layer on its calibration stream (GPTQ's "true sequential" order): in each layer
 * the linears are quantized in the order the data flows through them, and every later statistic is gathered
 * on the layer with its already quantized linears, so that later layers calibrate on what the quantized model
 * computes:
 *
 *   qkvIn ──► q, k, v      (one H: they read the same normed input)
 *   attnIn ─► o_proj
 *   upIn ───► gate, up
 *   mlpIn ──► down_proj
 *   out ────► the next layer's input
 *
 * RTN reads no statistics (no layer runs). The float weights of the layer are replaced by their dequantized
 * values in an overlay (surgery/OverlayWeights), which is what a loader of the GPTQ folder computes with.
 */
import type { Model } from "../arch/model.ts";
import { TapAccumulator, validRows } from "../calib/stats.ts";
import { PareError } from "../errors.ts";
import type { LayerValue, Ops, TokenBatch } from "../ops/index.ts";
import type { OverlayWeights } from "../surgery/surgery.ts";
import { gptqQuantize } from "./gptq.ts";
import { dequantize, type QuantizedLinear } from "./linear.ts";
import { rtnQuantize } from "./rtn.ts";
import { checkLinearShape, perInt32, type QuantSettings } from "./settings.ts";

export interface LinearQuantReport {
  name: string;
  rows: number;
  cols: number;
  /** ‖(W − Ŵ) Xᵀ‖² / ‖W Xᵀ‖² on the calibration inputs (GPTQ only) */
  relError?: number;
  damp?: number;
  retries?: number;
  dead?: number;
}

/** The linears of layer i, grouped by the layer value that is their input. */
export function layerLinears(model: Model, i: number): { tap: LayerValue; names: string[] }[] {
  const N = model.spec.names;
  const w = (t: string | undefined) => (t ? [`${model.path(t, i)}.weight`] : []);
  return [
    { tap: "qkvIn", names: [...w(N.q), ...w(N.k), ...w(N.v)] },
    { tap: "attnIn", names: w(N.o) },
    { tap: "upIn", names: [...w(N.gate), ...w(N.up)] },
    { tap: "mlpIn", names: w(N.down) },
  ];
}

/** Refuses, before any work, a model whose linears cannot be quantized with `s`. */
export function checkQuantizable(model: Model, s: QuantSettings): void {
  if (model.spec.fused.length)
    throw new PareError(
      "E_ARCH_UNSUPPORTED",
      `quantizing ${model.spec.family} (fused ${model.spec.fused.map((f) => f.path).join(", ")}) is not supported yet`,
      "quantize a family with separate q/k/v and gate/up projections",
      { family: model.spec.family },
    );
  for (let i = 0; i < model.dims.nLayers; i++)
    for (const g of layerLinears(model, i))
      for (const n of g.names) {
        const [rows, cols] = model.weights.shape(n);
        checkLinearShape(n, rows, cols, s);
      }
}

export interface QuantizeLayerHooks {
  /** also compute the layer's output on the quantized layer (default true; a prune's propagate step does it) */
  propagate?: boolean;
  /** after each linear */
  onLinear?: (layer: number, r: LinearQuantReport) => void;
  checkAborted?: () => void;
}

/**
 * Quantizes every linear of layer i of `model` (whose weights are `overlay`: the quantized layers so far are
 * in it), given the layer input of each batch (`x(b)`: [b, T, D]; GPTQ only). Returns the quantized linears and
 * (GPTQ, unless `propagate: false`) the layer's outputs on the quantized layer.
 */
export async function quantizeLayer(
  ops: Ops,
  model: Model,
  overlay: OverlayWeights,
  i: number,
  x: ((b: number) => Float32Array) | undefined,
  batches: TokenBatch[],
  s: QuantSettings,
  hooks: QuantizeLayerHooks = {},
): Promise<{ quantized: Map<string, QuantizedLinear>; reports: LinearQuantReport[]; out?: Float32Array[] }> {
  const quantized = new Map<string, QuantizedLinear>();
  const reports: LinearQuantReport[] = [];
  const m: Model = { ...model, weights: overlay };
  let mids: Float32Array[] | undefined;
  for (const group of layerLinears(model, i)) {
    let H: Float64Array | undefined;
    let d = 0;
    if (s.method === "gptq") {
      if (!x) throw new Error("internal: GPTQ needs the layer inputs");
      d =
        group.tap === "mlpIn"
          ? model.weights.shape(group.names[0])[1]
          : model.weights.shape(group.names[0])[1];
      const acc = new TapAccumulator(d, new Set(["gram"]), undefined, "auto", ops);
      const newMids: Float32Array[] = [];
      for (let b = 0; b < batches.length; b++) {
        hooks.checkAborted?.();
        const r =
          group.tap === "upIn"
            ? await ops.layers.run(m, i, { from: "x", outputs: ["mid", "upIn"] }, { x: x(b) }, batches[b])
            : group.tap === "mlpIn"
              ? await ops.layers.run(
                  m,
                  i,
                  { from: "mid", outputs: ["mlpIn"] },
                  { x: x(b), mid: mids?.[b] },
                  batches[b],
                )
              : await ops.layers.run(m, i, { from: "x", outputs: [group.tap] }, { x: x(b) }, batches[b]);
        if (r.mid) newMids.push(r.mid);
        const rows = validRows(r[group.tap]!, d, batches[b].mask);
        await acc.add(rows.rows, rows.n);
      }
      if (group.tap === "upIn") mids = newMids.length === batches.length ? newMids : undefined;
      const G = (await acc.finish()).gram!; // [(d+1)², X̃ = [X, 1]]
      H = new Float64Array(d * d);
      for (let a = 0; a < d; a++) H.set(G.subarray(a * (d + 1), a * (d + 1) + d), a * d);
    }
    for (const name of group.names) {
      hooks.checkAborted?.();
      const [rows, cols] = model.weights.shape(name);
      const W = overlay.get(name);
      const rep: LinearQuantReport = { name, rows, cols };
      let ql: QuantizedLinear;
      if (H) {
        const g = await gptqQuantize(ops, name, W, rows, cols, H, s);
        ql = g.linear;
        Object.assign(rep, { damp: g.damp, retries: g.retries, dead: g.dead });
      } else ql = rtnQuantize(name, W, rows, cols, s);
      const deq = dequantize(ql);
      if (H) rep.relError = await relativeError(ops, W, deq, rows, cols, H);
      overlay.set(name, { shape: [rows, cols], data: deq });
      quantized.set(name, ql);
      reports.push(rep);
      hooks.onLinear?.(i, rep);
    }
  }
  if (s.method !== "gptq" || !x || hooks.propagate === false) return { quantized, reports };
  const out: Float32Array[] = [];
  for (let b = 0; b < batches.length; b++) {
    hooks.checkAborted?.();
    const r = await ops.layers.run(
      m,
      i,
      { from: "mid", outputs: ["out"] },
      { x: x(b), mid: mids?.[b] },
      batches[b],
    );
    out.push(r.out!);
  }
  return { quantized, reports, out };
}

/** tr(Δ H Δᵀ) / tr(W H Wᵀ) with Δ = W − Ŵ [rows, cols] */
async function relativeError(
  ops: Ops,
  W: Float32Array,
  deq: Float32Array,
  rows: number,
  cols: number,
  H: Float64Array,
): Promise<number> {
  const quad = async (A: Float64Array) => {
    const AH = await ops.gemm64(A, H, rows, cols, cols); // [rows, cols]
    let t = 0;
    for (let k = 0; k < A.length; k++) t += AH[k] * A[k];
    return t;
  };
  const Wd = Float64Array.from(W);
  const D = Wd.map((w, k) => w - deq[k]);
  const base = await quad(Wd);
  return base > 0 ? (await quad(D)) / base : 0;
}

/**
 * A prune with --quantize, before any work: the dense linears quantizable, and every width the prune can
 * leave too — the attention keeps whole KV groups, so one group's query width (heads per group × head_dim)
 * must be a multiple of the group size and head_dim of the packing (the FFN widths are kept a multiple of the
 * group size by the recipe's round-to).
 */
export function checkQuantizablePrune(model: Model, s: QuantSettings): void {
  checkQuantizable(model, s);
  const hd = model.dims.headDim;
  for (const L of model.dims.layers) {
    const unit = (L.nHeads / L.nKv) * hd;
    if (unit % s.groupSize !== 0 || hd % perInt32(s.bits) !== 0)
      throw new PareError(
        "E_CONFIG_MISMATCH",
        `--quantize with group size ${s.groupSize}: a pruned attention keeps whole KV groups of ${unit} query channels, not a multiple of ${s.groupSize}`,
        `use --group-size ${largestPowerOfTwoDividing(unit)} (or smaller)`,
        { groupSize: s.groupSize, kvGroupWidth: unit },
      );
  }
}

function largestPowerOfTwoDividing(n: number): number {
  return n & -n;
}
