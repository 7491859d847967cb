/**
 * Emits the forward graph of a model from its spec and weights. The same layer emitter
 * builds the evaluation graph (weights as initializers), calibration graphs with taps,
 * and (later) exported models. Blocks are assembled from the spec's data fields.
 */
import type { LayerDims, Model, RopeScaling } from "../arch/model.ts";
import { GraphBuilder } from "./graph.ts";

export interface EmitOptions {
  /** expose the consumer inputs of every layer as outputs `attn_in.{i}` and `mlp_in.{i}` */
  taps?: boolean;
  /** decoders: take `labels` [B,T] and output per-token `nll` [B,T] (label < 0 gives 0) */
  nll?: boolean;
  /** decoders: output `logits` [B,T,V] (default true unless nll) */
  logits?: boolean;
  /** decoders: output `logp` [B,T,V] (log-softmax of the logits) */
  logprobs?: boolean;
  /** decoders: take `ref_logp` [B,T,V] (a reference model's log-probs) and output `kl` = KL(ref‖this) and `agree` = top-1 equal, per token [B,T] */
  compare?: boolean;
}

const NEG = -1e30;

/** Emission context: the builder and how weights enter the graph. */
export class Emitter {
  private weightValues = new Map<string, string>();
  private transposed = new Map<string, string>();

  /** weights fed as graph inputs (tensor name → input name), when emitting a reusable layer graph */
  readonly weightInputs = new Map<string, string>();

  constructor(
    readonly g: GraphBuilder,
    readonly model: Model,
    /** when set, weights become graph inputs named by this function (same name for equal-shape layers) */
    private readonly inputName?: (tensor: string) => string,
  ) {}

  /** Graph value holding tensor `name` (an initializer or an input, created on first use). */
  w(name: string): string {
    let v = this.weightValues.get(name);
    if (!v) {
      const ws = this.model.weights;
      if (this.inputName) {
        v = this.g.input(this.inputName(name), "float32", ws.shape(name));
        this.weightInputs.set(name, v);
      } else {
        v = this.g.initializer(name, "float32", ws.shape(name), ws.get(name));
      }
      this.weightValues.set(name, v);
    }
    return v;
  }

  /** y = x Wᵀ + b for module path `mod` ([.., d_in] → [.., d_out]). */
  linear(x: string, mod: string, bias: boolean): string {
    const wn = `${mod}.weight`;
    let wt = this.transposed.get(wn);
    if (!wt) {
      wt = this.g.op("Transpose", [this.w(wn)], { perm: [1, 0] }); // [d_in, d_out]
      this.transposed.set(wn, wt);
    }
    const y = this.g.op("MatMul", [x, wt]);
    return bias ? this.g.op("Add", [y, this.w(`${mod}.bias`)]) : y;
  }

  norm(x: string, mod: string): string {
    const { g, model } = this;
    const eps = model.dims.eps;
    if (model.spec.block.norm === "layer") {
      return g.op("LayerNormalization", [x, this.w(`${mod}.weight`), this.w(`${mod}.bias`)], {
        axis: -1,
        epsilon: { float: eps },
      });
    }
    const ms = g.op("ReduceMean", [g.op("Mul", [x, x])], { axes: [-1], keepdims: 1 }); // [B,T,1]
    const inv = g.op("Reciprocal", [g.op("Sqrt", [g.op("Add", [ms, g.scalar(eps)])])]);
    return g.op("Mul", [g.op("Mul", [x, inv]), this.w(`${mod}.weight`)]);
  }

  act(x: string): string {
    const g = this.g;
    if (this.model.spec.block.act === "silu") return g.op("Mul", [x, g.op("Sigmoid", [x])]);
    // exact GELU: 0.5 x (1 + erf(x / √2))
    const e = g.op("Erf", [g.op("Mul", [x, g.scalar(Math.SQRT1_2)])]);
    return g.op("Mul", [g.op("Mul", [x, g.scalar(0.5)]), g.op("Add", [e, g.scalar(1)])]);
  }
}

/** Values shared by all layers of one forward pass. */
export interface LayerContext {
  /** additive attention mask broadcastable to [B, nKv, g, T, T] */
  mask: string;
  /** rope values broadcastable to [B, n, T, headDim] (decoders) */
  cos?: string;
  sin?: string;
  /** KV cache: past keys/values per layer [B, nKv, P, hd] (exported decoders) */
  past?: { k: string; v: string }[];
}

function rope(e: Emitter, x: string, ctx: LayerContext): string {
  // x: [B, n, T, hd]; rotate_half(x) = concat(-x2, x1)
  const g = e.g;
  const [x1, x2] = g.opN("Split", [x], 2, { axis: -1 });
  const rot = g.op("Concat", [g.op("Neg", [x2]), x1], { axis: -1 });
  return g.op("Add", [g.op("Mul", [x, ctx.cos!]), g.op("Mul", [rot, ctx.sin!])]);
}

/**
 * One transformer layer. x: [B, T, D] → [B, T, D]; returns the taps too:
 * attnIn [B, T, nHeads·hd] (input of the attention output projection),
 * mlpIn [B, T, ffn] (input of the FFN down projection).
 */
export function emitLayer(
  e: Emitter,
  i: number,
  x: string,
  ctx: LayerContext,
): { out: string; attnIn: string; mlpIn: string; presentK?: string; presentV?: string } {
  const { g, model } = e;
  const N = model.spec.names;
  const blk = model.spec.block;
  const L: LayerDims = model.dims.layers[i];
  const hd = model.dims.headDim;
  const grp = L.nHeads / L.nKv;
  const p = (t: string) => model.path(t, i);

  const h = blk.placement === "pre" ? e.norm(x, p(N.norm1)) : x;
  let q = e.linear(h, p(N.q), L.bias.q); // [B,T,nH·hd]
  let k = e.linear(h, p(N.k), L.bias.k); // [B,T,nKv·hd]
  const v0 = e.linear(h, p(N.v), L.bias.v);
  q = g.op("Transpose", [g.op("Reshape", [q, g.constI64([0, 0, L.nHeads, hd])])], { perm: [0, 2, 1, 3] }); // [B,nH,T,hd]
  k = g.op("Transpose", [g.op("Reshape", [k, g.constI64([0, 0, L.nKv, hd])])], { perm: [0, 2, 1, 3] }); // [B,nKv,T,hd]
  let v = g.op("Transpose", [g.op("Reshape", [v0, g.constI64([0, 0, L.nKv, hd])])], { perm: [0, 2, 1, 3] });
  if (blk.positional === "rope") {
    q = rope(e, q, ctx);
    k = rope(e, k, ctx);
  }
  let presentK: string | undefined;
  let presentV: string | undefined;
  if (ctx.past) {
    k = presentK = g.op("Concat", [ctx.past[i].k, k], { axis: 2 }); // [B,nKv,P+T,hd]
    v = presentV = g.op("Concat", [ctx.past[i].v, v], { axis: 2 });
  }
  // GQA by broadcasting: q [B,nKv,g,T,hd] · k [B,nKv,1,hd,T]
  const q5 = g.op("Reshape", [q, g.constI64([0, L.nKv, grp, -1, hd])]);
  const k5 = g.op("Unsqueeze", [g.op("Transpose", [k], { perm: [0, 1, 3, 2] }), g.constI64([2])]);
  const v5 = g.op("Unsqueeze", [v, g.constI64([2])]);
  let s = g.op("Mul", [g.op("MatMul", [q5, k5]), g.scalar(1 / Math.sqrt(hd))]); // [B,nKv,g,T,T]
  s = g.op("Add", [s, ctx.mask]);
  const probs = g.op("Softmax", [s], { axis: -1 });
  const c5 = g.op("MatMul", [probs, v5]); // [B,nKv,g,T,hd]
  const c4 = g.op("Reshape", [c5, g.constI64([0, L.nHeads, -1, hd])]); // [B,nH,T,hd]
  const attnIn = g.op("Reshape", [
    g.op("Transpose", [c4], { perm: [0, 2, 1, 3] }),
    g.constI64([0, 0, L.nHeads * hd]),
  ]);
  const o = e.linear(attnIn, p(N.o), L.bias.o); // [B,T,D]

  let x1: string;
  if (blk.placement === "pre") x1 = g.op("Add", [x, o]);
  else x1 = e.norm(g.op("Add", [x, o]), p(N.norm1));

  const h2 = blk.placement === "pre" ? e.norm(x1, p(N.norm2)) : x1;
  let mlpIn: string;
  if (blk.mlp === "gated") {
    const gate = e.linear(h2, p(N.gate!), L.bias.gate);
    const up = e.linear(h2, p(N.up), L.bias.up);
    mlpIn = g.op("Mul", [e.act(gate), up]); // [B,T,ffn]
  } else {
    mlpIn = e.act(e.linear(h2, p(N.up), L.bias.up));
  }
  const down = e.linear(mlpIn, p(N.down), L.bias.down);
  const out = blk.placement === "pre" ? g.op("Add", [x1, down]) : e.norm(g.op("Add", [x1, down]), p(N.norm2));
  return { out, attnIn, mlpIn, presentK, presentV };
}

/** HF's inverse frequencies θ^(−2i/d), with linear or llama3 rope scaling applied. */
export function invFreq(headDim: number, theta: number, scaling?: RopeScaling): Float64Array {
  const half = headDim / 2;
  const f = Float64Array.from({ length: half }, (_, j) => 1 / theta ** ((2 * j) / headDim));
  if (scaling?.type === "linear") return f.map((v) => v / scaling.factor);
  if (scaling?.type === "llama3") {
    const { factor, lowFreqFactor: lo, highFreqFactor: hi, originalMax: old } = scaling;
    const lowWl = old / lo;
    const highWl = old / hi;
    return f.map((v) => {
      const wl = (2 * Math.PI) / v;
      if (wl < highWl) return v;
      if (wl > lowWl) return v / factor;
      const smooth = (old / wl - lo) / (hi - lo);
      return (1 - smooth) * (v / factor) + smooth * v;
    });
  }
  return f;
}

/** RoPE tables [maxPos, headDim], computed in float64 (HF: angle = position · inv_freq, halves duplicated). */
export function ropeTables(
  maxPos: number,
  headDim: number,
  theta: number,
  scaling?: RopeScaling,
): { cos: Float32Array; sin: Float32Array } {
  const half = headDim / 2;
  const inv = invFreq(headDim, theta, scaling);
  const cos = new Float32Array(maxPos * headDim);
  const sin = new Float32Array(maxPos * headDim);
  for (let pos = 0; pos < maxPos; pos++) {
    for (let j = 0; j < half; j++) {
      const a = pos * inv[j];
      const c = Math.cos(a);
      const s = Math.sin(a);
      cos[pos * headDim + j] = c;
      cos[pos * headDim + j + half] = c;
      sin[pos * headDim + j] = s;
      sin[pos * headDim + j + half] = s;
    }
  }
  return { cos, sin };
}

/** Token (+ position, type) embeddings for a [B, T] batch of ids → [B, T, D]. */
export function emitEmbedding(e: Emitter, ids: string, tokenTypeIds?: string): string {
  const { g, model } = e;
  const N = model.spec.names;
  let x = g.op("Gather", [e.w(`${model.path(N.embed)}.weight`), ids], { axis: 0 }); // [B,T,D]
  if (N.posEmbed) {
    const T = g.op("Gather", [g.op("Shape", [ids]), g.scalarI64(1)], { axis: 0 });
    const pos = g.op("Range", [g.scalarI64(0), T, g.scalarI64(1)]); // [T]
    x = g.op("Add", [x, g.op("Gather", [e.w(`${model.path(N.posEmbed)}.weight`), pos], { axis: 0 })]);
  }
  if (N.typeEmbed) {
    const tt = tokenTypeIds ?? g.op("Mul", [ids, g.scalarI64(0)]);
    x = g.op("Add", [x, g.op("Gather", [e.w(`${model.path(N.typeEmbed)}.weight`), tt], { axis: 0 })]);
  }
  if (N.embedNorm) x = e.norm(x, model.path(N.embedNorm));
  return x;
}

/** The layer context (mask, rope tables) for sequences shaped like `seqSource` ([B, T, …], positions 0..T−1). */
export function emitContext(e: Emitter, seqSource: string, attentionMask?: string): LayerContext {
  const { g, model } = e;
  const d = model.dims;
  const T = g.op("Gather", [g.op("Shape", [seqSource]), g.scalarI64(1)], { axis: 0 }); // scalar
  const pos = g.op("Range", [g.scalarI64(0), T, g.scalarI64(1)]); // [T]
  const ctx: LayerContext = { mask: "" };
  if (model.spec.block.positional === "rope") {
    const { cos, sin } = ropeTables(d.maxPos, d.headDim, d.ropeTheta, d.ropeScaling);
    const cosT = g.initializer("rope.cos", "float32", [d.maxPos, d.headDim], cos);
    const sinT = g.initializer("rope.sin", "float32", [d.maxPos, d.headDim], sin);
    const end = g.op("Unsqueeze", [T, g.constI64([0])]);
    ctx.cos = g.op("Slice", [cosT, g.constI64([0]), end, g.constI64([0])]); // [T, hd]
    ctx.sin = g.op("Slice", [sinT, g.constI64([0]), end, g.constI64([0])]);
  }
  const zero = g.scalar(0);
  const neg = g.scalar(NEG);
  let mask = zero;
  if (model.spec.block.causal) {
    const rows = g.op("Unsqueeze", [pos, g.constI64([1])]); // [T,1]
    const cols = g.op("Unsqueeze", [pos, g.constI64([0])]); // [1,T]
    let hide = g.op("Greater", [cols, rows]); // [T,T]
    if (d.slidingWindow) {
      const far = g.op("GreaterOrEqual", [g.op("Sub", [rows, cols]), g.scalarI64(d.slidingWindow)]);
      hide = g.op("Or", [hide, far]);
    }
    mask = g.op("Where", [hide, neg, zero]);
  }
  if (attentionMask) {
    // [B,T] → [B,1,1,1,T] additive: 0 where attended, NEG where padded
    const keep = g.op("Cast", [attentionMask], { to: 9 }); // bool
    const add = g.op("Where", [keep, zero, neg]);
    const add5 = g.op("Unsqueeze", [add, g.constI64([1, 2, 3])]);
    mask = g.op("Add", [mask, add5]);
  }
  ctx.mask = mask;
  return ctx;
}

/** The whole model as one graph with weights as initializers. */
export function emitModelGraph(model: Model, opts: EmitOptions = {}): Uint8Array {
  return buildModelGraph(model, opts).toModel();
}

export function buildModelGraph(model: Model, opts: EmitOptions = {}): GraphBuilder {
  const g = new GraphBuilder(`pare-${model.spec.family}`);
  const e = new Emitter(g, model);
  const N = model.spec.names;
  const d = model.dims;
  const isEnc = model.spec.kind === "encoder";
  const ids = g.input("input_ids", "int64", ["batch", "seq"]);
  const extra: { attentionMask?: string; tokenTypeIds?: string } = {};
  if (isEnc) {
    extra.attentionMask = g.input("attention_mask", "int64", ["batch", "seq"]);
    if (N.typeEmbed) extra.tokenTypeIds = g.input("token_type_ids", "int64", ["batch", "seq"]);
  }
  let x = emitEmbedding(e, ids, extra.tokenTypeIds);
  const ctx = emitContext(e, ids, extra.attentionMask);
  for (let i = 0; i < d.nLayers; i++) {
    const r = emitLayer(e, i, x, ctx);
    x = r.out;
    if (opts.taps) {
      g.output(g.alias(r.attnIn, `attn_in.${i}`), "float32", [
        "batch",
        "seq",
        d.layers[i].nHeads * d.headDim,
      ]);
      g.output(g.alias(r.mlpIn, `mlp_in.${i}`), "float32", ["batch", "seq", d.layers[i].ffn]);
    }
  }
  if (N.finalNorm) x = e.norm(x, model.path(N.finalNorm));

  if (isEnc) {
    g.output(g.alias(x, "last_hidden_state"), "float32", ["batch", "seq", d.hidden]);
    if (d.head === "classifier") {
      const cls = g.op("Gather", [x, g.scalarI64(0)], { axis: 1 }); // [B,D]
      const pooled = g.op("Tanh", [e.linear(cls, model.path(N.pooler!), true)]);
      g.output(g.alias(pooled, "pooled"), "float32", ["batch", d.hidden]);
      g.output(g.alias(e.linear(pooled, model.path(N.classifier!), true), "logits"), "float32", [
        "batch",
        d.numLabels,
      ]);
    }
  } else if (d.head === "lm") {
    const headName = d.tiedHead ? model.path(N.embed) : model.path(N.lmHead!);
    const logits = e.linear(x, headName, false); // [B,T,V]
    if (opts.logits ?? !(opts.nll || opts.logprobs || opts.compare))
      g.output(g.alias(logits, "logits"), "float32", ["batch", "seq", d.vocab]);
    if (opts.logprobs || opts.compare) {
      const lsm = g.op("LogSoftmax", [logits], { axis: -1 });
      if (opts.logprobs) g.output(g.alias(lsm, "logp"), "float32", ["batch", "seq", d.vocab]);
      if (opts.compare) {
        const ref = g.input("ref_logp", "float32", ["batch", "seq", d.vocab]);
        const kl = g.op(
          "ReduceSum",
          [g.op("Mul", [g.op("Exp", [ref]), g.op("Sub", [ref, lsm])]), g.constI64([-1])],
          { keepdims: 0 },
        );
        g.output(g.alias(kl, "kl"), "float32", ["batch", "seq"]);
        const same = g.op("Equal", [
          g.op("ArgMax", [ref], { axis: -1, keepdims: 0 }),
          g.op("ArgMax", [lsm], { axis: -1, keepdims: 0 }),
        ]);
        g.output(g.op("Cast", [same], { to: 1 }, "agree"), "float32", ["batch", "seq"]);
      }
    }
    if (opts.nll) {
      const labels = g.input("labels", "int64", ["batch", "seq"]);
      const valid = g.op("GreaterOrEqual", [labels, g.scalarI64(0)]);
      const safe = g.op("Where", [valid, labels, g.scalarI64(0)]);
      const lsm = g.op("LogSoftmax", [logits], { axis: -1 });
      const picked = g.op("GatherElements", [lsm, g.op("Unsqueeze", [safe, g.constI64([2])])], { axis: 2 });
      const nll = g.op("Neg", [g.op("Squeeze", [picked, g.constI64([2])])]);
      g.output(g.op("Where", [valid, nll, g.scalar(0)], {}, "nll"), "float32", ["batch", "seq"]);
    }
  } else {
    g.output(g.alias(x, "last_hidden_state"), "float32", ["batch", "seq", d.hidden]);
  }
  return g;
}

/** A tensor name with its layer index replaced, so equal-shape layers share one graph. */
export function genericName(name: string, layer: number): string {
  return name.replace(new RegExp(`\\.${layer}\\.`), ".L.");
}

/**
 * One layer as a reusable graph: inputs `x` [B,T,D] (+ `attention_mask` [B,T] for encoders)
 * and the layer's weights (as inputs, see `weightInputs`); outputs `out`, `attn_in`, `mlp_in`.
 */
export function emitLayerGraph(
  model: Model,
  layer: number,
): { bytes: Uint8Array; weightInputs: Map<string, string> } {
  const g = new GraphBuilder(`pare-${model.spec.family}-layer`);
  const e = new Emitter(g, model, (n) => genericName(n, layer));
  const D = model.dims.hidden;
  const L = model.dims.layers[layer];
  const x = g.input("x", "float32", ["batch", "seq", D]);
  const mask =
    model.spec.kind === "encoder" ? g.input("attention_mask", "int64", ["batch", "seq"]) : undefined;
  const ctx = emitContext(e, x, mask);
  const r = emitLayer(e, layer, x, ctx);
  g.output(g.alias(r.out, "out"), "float32", ["batch", "seq", D]);
  g.output(g.alias(r.attnIn, "attn_in"), "float32", ["batch", "seq", L.nHeads * model.dims.headDim]);
  g.output(g.alias(r.mlpIn, "mlp_in"), "float32", ["batch", "seq", L.ffn]);
  return { bytes: g.toModel(), weightInputs: e.weightInputs };
}

/** The embedding as a graph: `input_ids` (+ `token_type_ids`) → `x` [B,T,D]. */
export function emitEmbedGraph(model: Model): Uint8Array {
  const g = new GraphBuilder(`pare-${model.spec.family}-embed`);
  const e = new Emitter(g, model);
  const ids = g.input("input_ids", "int64", ["batch", "seq"]);
  const tt = model.spec.names.typeEmbed ? g.input("token_type_ids", "int64", ["batch", "seq"]) : undefined;
  g.output(g.alias(emitEmbedding(e, ids, tt), "x"), "float32", ["batch", "seq", model.dims.hidden]);
  return g.toModel();
}

/**
 * A decoder with a KV cache, as transformers.js and ORT-GenAI-style runtimes expect:
 * inputs `input_ids` [B,T], `attention_mask` [B,P+T], `position_ids` [B,T],
 * `past_key_values.{i}.key|value` [B,nKv_i,P,hd]; outputs `logits` [B,T,V] and
 * `present.{i}.key|value` [B,nKv_i,P+T,hd]. Per-layer KV-head counts are declared per input.
 */
export function emitCachedDecoderGraph(model: Model): Uint8Array {
  return buildCachedDecoderGraph(model).toModel();
}

export function buildCachedDecoderGraph(model: Model): GraphBuilder {
  const g = new GraphBuilder(`pare-${model.spec.family}-kv`);
  const e = new Emitter(g, model);
  const d = model.dims;
  const N = model.spec.names;
  const ids = g.input("input_ids", "int64", ["batch_size", "sequence_length"]);
  const am = g.input("attention_mask", "int64", ["batch_size", "total_sequence_length"]);
  const posIds = g.input("position_ids", "int64", ["batch_size", "sequence_length"]);
  const past = d.layers.map((L, i) => ({
    k: g.input(`past_key_values.${i}.key`, "float32", [
      "batch_size",
      L.nKv,
      "past_sequence_length",
      d.headDim,
    ]),
    v: g.input(`past_key_values.${i}.value`, "float32", [
      "batch_size",
      L.nKv,
      "past_sequence_length",
      d.headDim,
    ]),
  }));
  let x = emitEmbedding(e, ids);
  // rope at the given positions: [B,T,hd] → [B,1,T,hd]
  const { cos, sin } = ropeTables(d.maxPos, d.headDim, d.ropeTheta, d.ropeScaling);
  const cosT = g.initializer("rope.cos", "float32", [d.maxPos, d.headDim], cos);
  const sinT = g.initializer("rope.sin", "float32", [d.maxPos, d.headDim], sin);
  const ctx: LayerContext = {
    mask: "",
    cos: g.op("Unsqueeze", [g.op("Gather", [cosT, posIds], { axis: 0 }), g.constI64([1])]),
    sin: g.op("Unsqueeze", [g.op("Gather", [sinT, posIds], { axis: 0 }), g.constI64([1])]),
    past,
  };
  // causal mask with past: query t (absolute P+t) sees key j iff j ≤ P+t; plus padding from attention_mask
  const T = g.op("Gather", [g.op("Shape", [ids]), g.scalarI64(1)], { axis: 0 });
  const total = g.op("Gather", [g.op("Shape", [am]), g.scalarI64(1)], { axis: 0 });
  const P = g.op("Sub", [total, T]);
  const rows = g.op("Unsqueeze", [g.op("Range", [P, total, g.scalarI64(1)]), g.constI64([1])]); // [T,1]
  const cols = g.op("Unsqueeze", [g.op("Range", [g.scalarI64(0), total, g.scalarI64(1)]), g.constI64([0])]); // [1,P+T]
  const zero = g.scalar(0);
  const neg = g.scalar(NEG);
  let hide = g.op("Greater", [cols, rows]); // [T,P+T]
  if (d.slidingWindow)
    hide = g.op("Or", [
      hide,
      g.op("GreaterOrEqual", [g.op("Sub", [rows, cols]), g.scalarI64(d.slidingWindow)]),
    ]);
  const causal = g.op("Where", [hide, neg, zero]);
  const pad = g.op("Unsqueeze", [
    g.op("Where", [g.op("Cast", [am], { to: 9 }), zero, neg]),
    g.constI64([1, 2, 3]),
  ]); // [B,1,1,1,P+T]
  ctx.mask = g.op("Add", [causal, pad]);
  for (let i = 0; i < d.nLayers; i++) {
    const r = emitLayer(e, i, x, ctx);
    x = r.out;
    g.output(g.alias(r.presentK!, `present.${i}.key`), "float32", [
      "batch_size",
      d.layers[i].nKv,
      "total_sequence_length",
      d.headDim,
    ]);
    g.output(g.alias(r.presentV!, `present.${i}.value`), "float32", [
      "batch_size",
      d.layers[i].nKv,
      "total_sequence_length",
      d.headDim,
    ]);
  }
  if (N.finalNorm) x = e.norm(x, model.path(N.finalNorm));
  const head = d.tiedHead ? model.path(N.embed) : model.path(N.lmHead!);
  g.output(g.alias(e.linear(x, head, false), "logits"), "float32", [
    "batch_size",
    "sequence_length",
    d.vocab,
  ]);
  return g;
}
