/**
 * Runs single layers (and the embedding) of a model on calibration batches. Layer graphs
 * take their weights as inputs, so one ORT session serves every layer of the same shape.
 */
import type { Model } from "../arch/model.ts";
import { emitEmbedGraph, emitLayerGraph } from "../onnx/emit.ts";
import { f32, type HostTensor, i64From, Session } from "../runtime/ort.ts";
import type { CalibBatch } from "./sampling.ts";

export interface LayerOutputs {
  out: Float32Array; // [b, T, D]
  attnIn: Float32Array; // [b, T, nHeads·hd]
  mlpIn: Float32Array; // [b, T, ffn]
}

export class LayerRunner {
  private sessions = new Map<string, Promise<{ session: Session; inputs: string[] }>>();
  constructor(readonly threads?: number) {}

  private session(model: Model, i: number) {
    // layers of equal widths and attention kind (full / sliding window) share one graph
    const key = JSON.stringify([model.dims.layers[i], model.dims.layerTypes[i]]);
    let s = this.sessions.get(key);
    if (!s) {
      const { bytes, weightInputs } = emitLayerGraph(model, i);
      s = Session.create(bytes, { threads: this.threads }).then((session) => ({
        session,
        inputs: [...weightInputs.values()],
      }));
      this.sessions.set(key, s);
    }
    return s;
  }

  async run(model: Model, i: number, x: Float32Array, batch: CalibBatch): Promise<LayerOutputs> {
    const { session, inputs } = await this.session(model, i);
    const feeds: Record<string, HostTensor> = { x: f32([batch.b, batch.T, model.dims.hidden], x) };
    if (model.spec.kind === "encoder") feeds.attention_mask = i64From([batch.b, batch.T], batch.mask);
    for (const name of inputs) {
      const tensor = name.replace(".L.", `.${i}.`);
      feeds[name] = f32(model.weights.shape(tensor), model.weights.get(tensor));
    }
    const r = await session.run(feeds);
    return {
      out: r.out.data as Float32Array,
      attnIn: r.attn_in.data as Float32Array,
      mlpIn: r.mlp_in.data as Float32Array,
    };
  }

  async close(): Promise<void> {
    for (const s of this.sessions.values()) await (await s).session.release();
    this.sessions.clear();
  }
}

export async function embedBatches(
  model: Model,
  batches: CalibBatch[],
  threads?: number,
): Promise<Float32Array[]> {
  const s = await Session.create(emitEmbedGraph(model), { threads });
  const out: Float32Array[] = [];
  for (const b of batches) {
    const feeds: Record<string, HostTensor> = { input_ids: i64From([b.b, b.T], b.ids) };
    if (model.spec.names.typeEmbed) feeds.token_type_ids = i64From([b.b, b.T], new Array(b.b * b.T).fill(0));
    out.push((await s.run(feeds)).x.data as Float32Array);
  }
  await s.release();
  return out;
}

/** Rows of a [b·T, d] tap where mask = 1 (padding excluded); the input itself when nothing is padded. */
export function validRows(x: Float32Array, d: number, mask: number[]): { rows: Float32Array; n: number } {
  let n = 0;
  for (const m of mask) n += m;
  if (n === mask.length) return { rows: x, n };
  const rows = new Float32Array(n * d);
  let r = 0;
  mask.forEach((m, t) => {
    if (m) rows.set(x.subarray(t * d, (t + 1) * d), r++ * d);
  });
  return { rows, n };
}
