/**
 * Single layers (and the embedding) of a model on calibration batches, run as parts.
 *
 * A layer is emitted once by `emitLayer` (weights as graph inputs, so that one ORT session serves every
 * layer of the same shape) and cut at `mid`, the stream between its attention and its MLP: the value that
 * every path from the layer input x to the MLP tap and to the layer output passes through (x + o_proj(…)
 * for pre-norm blocks, norm₁(x + o_proj(…)) for BERT's post-norm blocks). A part starts at x or at mid and
 * computes only what its outputs need:
 *
 *   x ──[attention]──► attnIn ──o_proj, + x──► mid ──[MLP]──► mlpIn ──down_proj, + mid──► out
 *
 *   { from: "x",   outputs: ["attnIn"] }               the attention taps: no o_proj, no MLP
 *   { from: "x",   outputs: ["mid", "mlpIn"] }         the MLP taps after the attention cut: no down_proj
 *   { from: "mid", outputs: ["out"], nextAttnIn }      the rest of the layer, and (optionally) the
 *                                                      attention taps of layer i+1 on its output
 *
 * The parts are the very nodes of the whole layer graph, so they compute the very same numbers (the
 * pruning tests check bit-identical outputs). A block without such a cut (an MLP that does not read the
 * attention, e.g. a parallel block) gets mid = x: its parts then recompute from the layer input.
 */
import type { Model } from "../arch/model.ts";
import { Emitter, emitContext, emitEmbedGraph, emitLayer } from "../onnx/emit.ts";
import { f32, type HostTensor, i64From } from "../runtime/ort.ts";
import type { SessionCache } from "./sessions.ts";
import { extract, type Port, TracingBuilder } from "./subgraph.ts";

/** A calibration batch as the layer graphs see it: [b, T] token ids and mask (1 = token, 0 = padding). */
export interface TokenBatch {
  ids: number[];
  mask: number[];
  b: number;
  T: number;
}

/**
 * attnIn / mlpIn: inputs of o_proj / down_proj; qkvIn / upIn: inputs of q/k/v and gate/up (quantization);
 * attnGain / mlpGain [b, T]: per token, the gain of the first norm an error of o_proj's / down_proj's output
 * passes through (`Emitter.normGain`; only where the block has such a norm, see `hasNormGain`)
 */
export type LayerValue = "attnIn" | "mid" | "mlpIn" | "out" | "qkvIn" | "upIn" | "attnGain" | "mlpGain";

/** Whether module m's consumer output passes a normalization before it joins the residual stream. */
export function hasNormGain(model: Model, m: "attn" | "mlp"): boolean {
  const N = model.spec.names;
  return model.spec.block.placement === "post" || Boolean(m === "attn" ? N.attnOutNorm : N.mlpOutNorm);
}

export interface LayerPart {
  from: "x" | "mid";
  outputs: LayerValue[];
  /** also run layer i+1's attention on this layer's output and return its tap as `nextAttnIn` */
  nextAttnIn?: boolean;
}

/** The whole layer (dense calibration passes). */
export const WHOLE_LAYER: LayerPart = { from: "x", outputs: ["attnIn", "mlpIn", "out"] };

export type LayerRun = Partial<Record<LayerValue | "nextAttnIn", Float32Array>>;

const START = "start";

/** Weight input names: `.L.` stands for layer i, `.N.` for layer i + 1. */
function genericInput(tensor: string, i: number): string {
  return tensor.replace(new RegExp(`\\.${i}\\.`), ".L.").replace(new RegExp(`\\.${i + 1}\\.`), ".N.");
}
function tensorOf(input: string, i: number): string {
  return input.replace(".L.", `.${i}.`).replace(".N.", `.${i + 1}.`);
}

/**
 * The part `part` of layer i as a graph (see the file comment). Inputs: `start` (x or mid [b, T, D]), the
 * encoder's `attention_mask`, and the weights it reads (named for layer i with `.L.`, for layer i + 1 with `.N.`).
 */
export function emitLayerPart(model: Model, i: number, part: LayerPart): Uint8Array {
  const t = new TracingBuilder(`pare-${model.spec.family}-layer`);
  const e = new Emitter(t, model, (n) => genericInput(n, i));
  const d = model.dims;
  const D = d.hidden;
  const seq = ["batch", "seq"];
  const x = t.input("x", "float32", [...seq, D]);
  // the masks and RoPE tables read only the sequence shape: from whichever input the part starts at
  const shape = t.input("shape_source", "float32", [...seq, D]);
  const mask = model.spec.kind === "encoder" ? t.input("attention_mask", "int64", seq) : undefined;
  const ctx = emitContext(e, shape, mask);
  const r = emitLayer(e, i, x, ctx);
  const next = part.nextAttnIn ? emitLayer(e, i + 1, r.out, ctx) : undefined;
  const mid = midOf(t, x, r);
  const L = d.layers[i];
  const value: Record<Exclude<LayerValue, "attnGain" | "mlpGain">, Port> = {
    attnIn: { value: r.attnIn, name: "attn_in", type: "float32", shape: [...seq, L.nHeads * d.headDim] },
    mid: { value: mid, name: "mid", type: "float32", shape: [...seq, D] },
    mlpIn: { value: r.mlpIn, name: "mlp_in", type: "float32", shape: [...seq, L.ffn] },
    out: { value: r.out, name: "out", type: "float32", shape: [...seq, D] },
    qkvIn: { value: r.qkvIn, name: "qkv_in", type: "float32", shape: [...seq, D] },
    upIn: { value: r.upIn, name: "up_in", type: "float32", shape: [...seq, D] },
  };
  const gain = (o: "attnGain" | "mlpGain", normIn: string | undefined): Port => {
    if (!normIn) throw new Error(`internal: layer ${i} has no norm after its ${o.slice(0, -4)} output`);
    return { value: e.normGain(normIn), name: OUTPUT_NAMES[o], type: "float32", shape: seq };
  };
  const outputs = part.outputs.map((o) =>
    o === "attnGain" ? gain(o, r.attnNormIn) : o === "mlpGain" ? gain(o, r.mlpNormIn) : value[o],
  );
  if (next) {
    const N = d.layers[i + 1];
    outputs.push({
      value: next.attnIn,
      name: "next_attn_in",
      type: "float32",
      shape: [...seq, N.nHeads * d.headDim],
    });
  }
  const start = part.from === "x" ? x : mid;
  const { graph, originalInputs } = extract(
    t,
    `pare-${model.spec.family}-layer`,
    [{ value: start, name: START, type: "float32", shape: [...seq, D] }],
    outputs,
    new Map([[shape, start]]),
  );
  if (originalInputs.includes(x)) throw new Error(`internal: layer part ${JSON.stringify(part)} reads x`);
  return graph.toModel();
}

/**
 * The stream between attention and MLP: the last value after the attention tap through which every path
 * from x to the MLP tap and to the output passes; x itself when there is none.
 */
function midOf(t: TracingBuilder, x: string, r: { attnIn: string; mlpIn: string; out: string }): string {
  const afterAttention = t.descendants(r.attnIn);
  const mlpNeeds = new Set([...t.ancestors([r.mlpIn])].flatMap((n) => t.traced[n].outputs));
  let mid = x;
  for (const v of t.values()) {
    if (!afterAttention.has(v) || !mlpNeeds.has(v) || v === r.mlpIn) continue;
    if (!t.reaches(x, r.out, v) && !t.reaches(x, r.mlpIn, v)) mid = v;
  }
  return mid;
}

const OUTPUT_NAMES: Record<LayerValue | "nextAttnIn", string> = {
  attnIn: "attn_in",
  mid: "mid",
  mlpIn: "mlp_in",
  out: "out",
  qkvIn: "qkv_in",
  upIn: "up_in",
  attnGain: "attn_gain",
  mlpGain: "mlp_gain",
  nextAttnIn: "next_attn_in",
};

/** Model-level settings that shape a layer graph besides the layer's own widths. */
const modelKeys = new WeakMap<Model["dims"], string>();
function modelKey(model: Model): string {
  let k = modelKeys.get(model.dims);
  if (k === undefined) {
    const { layers: _l, layerTypes: _t, nLayers: _n, ...rest } = model.dims;
    k = JSON.stringify([model.spec.family, rest]);
    modelKeys.set(model.dims, k);
  }
  return k;
}

/** The inputs of a part: the layer input x and, for parts from mid, mid when the caller has it. */
export interface LayerInputs {
  x: Float32Array; // [b, T, D]
  mid?: Float32Array; // [b, T, D]
}

/**
 * Whether a part computes what the whole layer computes, bit for bit. The parts are the whole layer's
 * nodes, but ONNX Runtime's graph optimizations see a smaller graph and may fuse differently (BERT: a
 * post-norm block's `mid + down_proj(…)` → LayerNorm becomes one SkipLayerNormalization kernel when mid is a
 * graph input, and not when it is computed in the same graph). So each part is checked on a small input
 * once per block structure (the model's settings, the layer's attention kind and biases: what decides which
 * nodes the graph has; the widths only size them), for the lifetime of the process; a part that differs is
 * replaced by the whole layer run on x.
 */
const verdicts = new Map<string, Promise<boolean>>();

export class LayerGraphs {
  constructor(
    private readonly sessions: SessionCache,
    private readonly opts: { threads?: number; keep?: number } = {},
  ) {}

  /** Runs `part` of layer i of `model` on one batch. */
  async run(
    model: Model,
    i: number,
    part: LayerPart,
    inputs: LayerInputs,
    batch: TokenBatch,
  ): Promise<LayerRun> {
    const start = part.from === "x" ? inputs.x : inputs.mid;
    if (start && (await this.isExact(model, i, part))) return this.runGraph(model, i, part, start, batch);
    if (part.nextAttnIn) {
      const r = await this.run(model, i, { ...part, nextAttnIn: false }, inputs, batch);
      const next = await this.run(model, i + 1, { from: "x", outputs: ["attnIn"] }, { x: r.out! }, batch);
      return { ...r, nextAttnIn: next.attnIn };
    }
    // the whole layer on x; no mid (the caller continues from x)
    const w = await this.runGraph(model, i, wholeWith(part), inputs.x, batch);
    const out: LayerRun = {};
    for (const o of part.outputs) if (o !== "mid") out[o] = w[o];
    return out;
  }

  private async runGraph(
    model: Model,
    i: number,
    part: LayerPart,
    input: Float32Array,
    batch: Pick<TokenBatch, "b" | "T" | "mask">,
  ): Promise<LayerRun> {
    const d = model.dims;
    const session = await this.sessions.get(
      partKey(model, i, part),
      () => emitLayerPart(model, i, part),
      { threads: this.opts.threads },
      { group: "layer", keep: this.opts.keep ?? 6 },
    );
    const feeds: Record<string, HostTensor> = {};
    for (const name of session.inputNames) {
      if (name === START) feeds[name] = f32([batch.b, batch.T, d.hidden], input);
      else if (name === "attention_mask") feeds[name] = i64From([batch.b, batch.T], batch.mask);
      else {
        const tensor = tensorOf(name, i);
        feeds[name] = f32(model.weights.shape(tensor), model.weights.get(tensor));
      }
    }
    const r = await session.run(feeds);
    const out: LayerRun = {};
    for (const o of [...part.outputs, ...(part.nextAttnIn ? (["nextAttnIn"] as const) : [])])
      out[o] = r[OUTPUT_NAMES[o]].data as Float32Array;
    return out;
  }

  /** See `verdicts`: checked on 1 × 8 tokens of layer i the first time its structure is seen. */
  private isExact(model: Model, i: number, part: LayerPart): Promise<boolean> {
    if (JSON.stringify(part) === JSON.stringify(WHOLE_LAYER)) return Promise.resolve(true);
    const d = model.dims;
    const structure = (j: number) => [
      d.layerTypes[j],
      d.layers[j].bias,
      d.layers[j].nHeads / d.layers[j].nKv,
    ];
    const key = JSON.stringify([
      modelKey(model),
      structure(i),
      part.nextAttnIn ? structure(i + 1) : null,
      part,
    ]);
    let v = verdicts.get(key);
    if (!v) {
      const check = this.check(model, i, part);
      check.catch(() => {
        if (verdicts.get(key) === check) verdicts.delete(key);
      });
      verdicts.set(key, check);
      v = check;
    }
    return v;
  }

  private async check(model: Model, i: number, part: LayerPart): Promise<boolean> {
    const T = Math.min(8, model.dims.maxPos);
    const batch = { b: 1, T, mask: new Array(T).fill(1) };
    let s = 12345;
    const x = Float32Array.from({ length: T * model.dims.hidden }, () => {
      s = (s * 16807) % 2147483647;
      return 2 * (s / 2147483647) - 1;
    });
    const whole = await this.runGraph(model, i, wholeWith(part), x, batch);
    /** mid from the MLP-tap part, when that part and the rest of the layer from it are exact */
    const checkedMid = async () => {
      const m = await this.runGraph(model, i, { from: "x", outputs: ["mid", "mlpIn"] }, x, batch);
      const c = await this.runGraph(model, i, { from: "mid", outputs: ["out"] }, m.mid!, batch);
      return same(m.mlpIn!, whole.mlpIn!) && same(c.out!, whole.out!) ? m.mid : undefined;
    };
    let r: LayerRun;
    if (part.from === "x") r = await this.runGraph(model, i, part, x, batch);
    else {
      const mid = await checkedMid();
      if (!mid) return false;
      r = await this.runGraph(model, i, part, mid, batch);
    }
    for (const o of part.outputs) {
      if (o === "mid") {
        const mid = await checkedMid();
        if (!mid || !same(r.mid!, mid)) return false;
      } else if (!same(r[o]!, whole[o]!)) return false;
    }
    if (part.nextAttnIn) {
      const next = await this.runGraph(model, i + 1, WHOLE_LAYER, whole.out!, batch);
      if (!same(r.nextAttnIn!, next.attnIn!)) return false;
    }
    return true;
  }

  /** The embeddings [b, T, D] of each batch (the session, which holds the embedding table, is released after). */
  embed(model: Model, batches: TokenBatch[]): Promise<Float32Array[]> {
    return this.sessions.once(
      () => emitEmbedGraph(model),
      { threads: this.opts.threads },
      async (s) => {
        const out: Float32Array[] = [];
        for (const b of batches) {
          const feeds: Record<string, HostTensor> = { input_ids: i64From([b.b, b.T], b.ids) };
          if (model.spec.names.typeEmbed)
            feeds.token_type_ids = i64From([b.b, b.T], new Array(b.b * b.T).fill(0));
          out.push((await s.run(feeds)).x.data as Float32Array);
        }
        return out;
      },
    );
  }
}

/** The whole layer, with the other values `part` asks for too (quantization taps, norm gains). */
function wholeWith(part: LayerPart): LayerPart {
  const extra = part.outputs.filter((o) => !WHOLE_LAYER.outputs.includes(o) && o !== "mid");
  return extra.length ? { from: "x", outputs: [...WHOLE_LAYER.outputs, ...extra] } : WHOLE_LAYER;
}

/** The session key of a part: layers of equal widths and attention kind (full / sliding window) share one. */
function partKey(model: Model, i: number, part: LayerPart): string {
  const d = model.dims;
  const next = part.nextAttnIn ? [d.layers[i + 1], d.layerTypes[i + 1]] : null;
  return JSON.stringify(["layer", modelKey(model), d.layers[i], d.layerTypes[i], next, part]);
}

function same(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let k = 0; k < x.length; k++) if (x[k] !== y[k]) return false;
  return true;
}
