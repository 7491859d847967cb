/**
 * Quantizing the LM head (`--quantize-head`): its input on the calibration stream is the final norm of the last
 * layer's output, computed by a one-node-family ORT graph (the model's own norm, onnx/emit.ts), whose Gram is
 * GPTQ's Hessian. A tied head (the embedding matrix) cannot be quantized on its own and is refused.
 */
import type { Model } from "../arch/model.ts";
import { TapAccumulator, validRows } from "../calib/stats.ts";
import { PareError } from "../errors.ts";
import { Emitter } from "../onnx/emit.ts";
import { GraphBuilder } from "../onnx/graph.ts";
import type { Ops, TokenBatch } from "../ops/index.ts";
import { f32 } from "../runtime/ort.ts";
import type { OverlayWeights } from "../surgery/surgery.ts";
import { gptqQuantize } from "./gptq.ts";
import { dequantize, type QuantizedLinear } from "./linear.ts";
import { rtnQuantize } from "./rtn.ts";
import type { LinearQuantReport } from "./sequential.ts";
import { checkLinearShape, type QuantSettings } from "./settings.ts";

/** The LM head's weight name, or a PareError when it cannot be quantized with `s`. */
export function headName(model: Model, s: QuantSettings): string {
  const N = model.spec.names;
  if (model.dims.head !== "lm" || !N.lmHead || model.dims.tiedHead)
    throw new PareError(
      "E_USAGE",
      model.dims.tiedHead
        ? "--quantize-head: this model ties its LM head to the embeddings"
        : "--quantize-head: this model has no LM head",
      "drop --quantize-head (a tied head stays in float with the embeddings)",
    );
  const name = `${model.path(N.lmHead)}.weight`;
  const [rows, cols] = model.weights.shape(name);
  checkLinearShape(name, rows, cols, s);
  return name;
}

/** The final norm [n, D] → [n, D] as a graph (identity without one). */
function finalNormGraph(model: Model): Uint8Array {
  const g = new GraphBuilder("pare-final-norm");
  const e = new Emitter(g, model);
  const D = model.dims.hidden;
  const x = g.input("x", "float32", ["n", D]);
  const N = model.spec.names;
  const y = N.finalNorm ? e.norm(x, model.path(N.finalNorm)) : x;
  g.output(g.alias(y, "y"), "float32", ["n", D]);
  return g.toModel();
}

/**
 * Quantizes the LM head of `model` (weights `overlay`) given the last layer's output of each batch (`x(b)`,
 * [b, T, D]; GPTQ only); the dequantized head goes into the overlay.
 */
export async function quantizeHead(
  ops: Ops,
  model: Model,
  overlay: OverlayWeights,
  x: ((b: number) => Float32Array) | undefined,
  batches: TokenBatch[],
  s: QuantSettings,
): Promise<{ name: string; linear: QuantizedLinear; report: LinearQuantReport }> {
  const name = headName(model, s);
  const [rows, cols] = model.weights.shape(name);
  const W = overlay.get(name);
  const report: LinearQuantReport = { name, rows, cols };
  let linear: QuantizedLinear;
  if (s.method === "gptq") {
    if (!x) throw new Error("internal: GPTQ of the head needs the last layer's outputs");
    const D = model.dims.hidden;
    const acc = new TapAccumulator(D, new Set(["gram"]), undefined, "auto", ops);
    await ops.sessions.once(
      () => finalNormGraph({ ...model, weights: overlay }),
      {},
      async (sess) => {
        for (let b = 0; b < batches.length; b++) {
          const r = validRows(x(b), D, batches[b].mask);
          const y = (await sess.run({ x: f32([r.n, D], r.rows) })).y.data as Float32Array;
          await acc.add(y, r.n);
        }
      },
    );
    const G = (await acc.finish()).gram!; // [(D+1)²]
    const H = new Float64Array(D * D);
    for (let a = 0; a < D; a++) H.set(G.subarray(a * (D + 1), a * (D + 1) + D), a * D);
    const g = await gptqQuantize(ops, name, W, rows, cols, H, s);
    linear = g.linear;
    Object.assign(report, { damp: g.damp, retries: g.retries, dead: g.dead });
  } else linear = rtnQuantize(name, W, rows, cols, s);
  overlay.set(name, { shape: [rows, cols], data: dequantize(linear) });
  return { name, linear, report };
}
