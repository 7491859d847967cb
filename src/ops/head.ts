/**
 * The language-model head on calibration batches: final norm → LM head (→ final soft-cap) → the negative
 * log-likelihood of each next token. Depth pruning's SLEB criterion measures the calibration loss of a model
 * without some blocks from the last hidden states that the layer graphs produce.
 */
import type { Model } from "../arch/model.ts";
import { Emitter } from "../onnx/emit.ts";
import { GraphBuilder } from "../onnx/graph.ts";
import { f32, i64From } from "../runtime/ort.ts";
import type { TokenBatch } from "./layers.ts";
import type { SessionCache } from "./sessions.ts";

/** x [B, T, D], labels [B, T] (−1: none) → nll [B, T] (0 where no label). Weights are initializers. */
export function emitHeadNll(model: Model): Uint8Array {
  const g = new GraphBuilder(`pare-${model.spec.family}-head`);
  const e = new Emitter(g, model);
  const N = model.spec.names;
  const d = model.dims;
  let x = g.input("x", "float32", ["batch", "seq", d.hidden]);
  const labels = g.input("labels", "int64", ["batch", "seq"]);
  if (N.finalNorm) x = e.norm(x, model.path(N.finalNorm));
  let logits = e.linear(x, d.tiedHead ? model.path(N.embed) : model.path(N.lmHead!), false); // [B,T,V]
  if (d.finalSoftcap) logits = e.softcap(logits, d.finalSoftcap);
  const valid = g.op("GreaterOrEqual", [labels, g.scalarI64(0)]);
  const safe = g.op("Where", [valid, labels, g.scalarI64(0)]);
  const lsm = g.op("LogSoftmax", [logits], { axis: -1 });
  const picked = g.op("GatherElements", [lsm, g.op("Unsqueeze", [safe, g.constI64([2])])], { axis: 2 });
  const nll = g.op("Neg", [g.op("Squeeze", [picked, g.constI64([2])])]);
  g.output(g.op("Where", [valid, nll, g.scalar(0)], {}, "nll"), "float32", ["batch", "seq"]);
  return g.toModel();
}

/** Next-token labels of a batch: ids shifted left, −1 after the last token and where the next is padding. */
export function nextTokenLabels(batch: TokenBatch): number[] {
  const { b, T, ids, mask } = batch;
  const out = new Array<number>(b * T).fill(-1);
  for (let r = 0; r < b; r++)
    for (let t = 0; t + 1 < T; t++)
      if (mask[r * T + t] && mask[r * T + t + 1]) out[r * T + t] = ids[r * T + t + 1];
  return out;
}

const ids = new WeakMap<object, number>();
let nextId = 0;
/** one head session per weight source (the final norm and LM head are initializers) */
function headKey(model: Model): string {
  let id = ids.get(model.weights);
  if (id === undefined) {
    id = ++nextId;
    ids.set(model.weights, id);
  }
  return `head:${model.spec.family}:${id}`;
}

/** Σ NLL and the number of predicted tokens of one batch, from the last hidden states x [b, T, D]. */
export async function headNll(
  sessions: SessionCache,
  model: Model,
  x: Float32Array,
  batch: TokenBatch,
  threads?: number,
): Promise<{ sum: number; n: number }> {
  const s = await sessions.get(headKey(model), () => emitHeadNll(model), { threads });
  const labels = nextTokenLabels(batch);
  const r = await s.run({
    x: f32([batch.b, batch.T, model.dims.hidden], x),
    labels: i64From([batch.b, batch.T], labels),
  });
  const nll = r.nll.data as Float32Array;
  let sum = 0;
  let n = 0;
  labels.forEach((l, k) => {
    if (l >= 0) {
      sum += nll[k];
      n++;
    }
  });
  return { sum, n };
}
