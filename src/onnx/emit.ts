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

/**
 * A linear's weight as ONNX Runtime's com.microsoft MatMulNBits takes it (quant/matmulNBits.ts): B [N, K/bs,
 * bs·bits/8] codes, scales [N · K/bs], optional zero points [N · ⌈K/bs/2⌉] (absent: 2^(bits−1)).
 */
export interface NBitsWeight {
  K: number;
  N: number;
  bits: number;
  blockSize: number;
  B: Uint8Array;
  scales: Float32Array;
  zeroPoints?: Uint8Array;
}

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
    /** linears whose weight this returns are emitted as MatMulNBits (a q4 export) */
    private readonly nbits?: (weight: string) => NBitsWeight | undefined,
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
    const nb = this.nbits?.(wn);
    if (nb) {
      const g = this.g;
      const blocks = nb.K / nb.blockSize;
      const ins = [
        x,
        g.initializer(`${wn}.nbits_b`, "uint8", [nb.N, blocks, (nb.blockSize * nb.bits) / 8], nb.B),
        g.initializer(`${wn}.nbits_scales`, "float32", [nb.N * blocks], nb.scales),
      ];
      if (nb.zeroPoints)
        ins.push(g.initializer(`${wn}.nbits_zp`, "uint8", [nb.zeroPoints.length], nb.zeroPoints));
      const attrs = { K: nb.K, N: nb.N, bits: nb.bits, block_size: nb.blockSize };
      const y = g.op("MatMulNBits", ins, attrs, undefined, "com.microsoft"); // [.., N]
      return bias ? g.op("Add", [y, this.w(`${mod}.bias`)]) : y;
    }
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
    const ms = g.op("ReduceMean", [g.op("Mul", [x, x])], { axes: [-1], keepdims: 1 }); // [.., 1]
    const inv = g.op("Reciprocal", [g.op("Sqrt", [g.op("Add", [ms, g.scalar(eps)])])]);
    const w = this.w(`${mod}.weight`);
    // Gemma: x̂·(1 + w); Llama-style: x̂·w
    const scale = model.spec.block.normOffset ? g.op("Add", [w, g.scalar(model.spec.block.normOffset)]) : w;
    return g.op("Mul", [g.op("Mul", [x, inv]), scale]);
  }

  /**
   * Per token, the factor by which the normalization of layer-norm module `mod` scales a small change of its
   * input x [.., D]: 1/(var + ε) for LayerNorm (the change's component along the mean is removed too), 1/(ms + ε)
   * for RMSNorm → [..] (the last axis reduced). The norm's weight is applied by the caller.
   */
  normGain(x: string): string {
    const { g, model } = this;
    const eps = g.scalar(model.dims.eps);
    let c = x;
    if (model.spec.block.norm === "layer")
      c = g.op("Sub", [x, g.op("ReduceMean", [x], { axes: [-1], keepdims: 1 })]);
    const v = g.op("ReduceMean", [g.op("Mul", [c, c])], { axes: [-1], keepdims: 0 }); // [..]
    return g.op("Reciprocal", [g.op("Add", [v, eps])]);
  }

  act(x: string): string {
    const g = this.g;
    const act = this.model.dims.act;
    if (act === "silu") return g.op("Mul", [x, g.op("Sigmoid", [x])]);
    let inner: string;
    if (act === "gelu_tanh") {
      // tanh approximation: 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))
      const x3 = g.op("Mul", [g.op("Mul", [x, x]), x]);
      const u = g.op("Add", [x, g.op("Mul", [x3, g.scalar(0.044715)])]);
      inner = g.op("Tanh", [g.op("Mul", [u, g.scalar(Math.sqrt(2 / Math.PI))])]);
    } else {
      // exact GELU: 0.5 x (1 + erf(x / √2))
      inner = g.op("Erf", [g.op("Mul", [x, g.scalar(Math.SQRT1_2)])]);
    }
    return g.op("Mul", [g.op("Mul", [x, g.scalar(0.5)]), g.op("Add", [inner, g.scalar(1)])]);
  }

  /** cap · tanh(x / cap) (Gemma's soft-capping) */
  softcap(x: string, cap: number): string {
    const g = this.g;
    return g.op("Mul", [g.op("Tanh", [g.op("Mul", [x, g.scalar(1 / cap)])]), g.scalar(cap)]);
  }
}

export type LayerKind = "full" | "sliding";

/** Values shared by all layers of one forward pass, built on first use (a layer graph emits only its own). */
export interface LayerContext {
  /** additive attention mask broadcastable to [B, nKv, g, T, S] for layers of this kind */
  mask(kind: LayerKind): string;
  /** RoPE tables broadcastable to [B, n, T, rotaryDim] for layers of this kind (decoders) */
  rope(kind: LayerKind): { cos: string; sin: string };
  /** KV cache: past keys/values per layer [B, nKv, P, hd] (exported decoders) */
  past?: { k: string; v: string }[];
}

/** Memoize a context's per-kind values. */
function perKind<T>(make: (kind: LayerKind) => T): (kind: LayerKind) => T {
  const made = new Map<LayerKind, T>();
  return (kind) => {
    let v = made.get(kind);
    if (v === undefined) {
      v = make(kind);
      made.set(kind, v);
    }
    return v;
  };
}

/** The RoPE base and scaling that layers of this kind use (Gemma 3: sliding layers have their own base). */
function ropeOf(model: Model, kind: LayerKind): { theta: number; scaling?: RopeScaling; key: string } {
  const d = model.dims;
  if (kind === "sliding" && d.ropeLocalTheta !== undefined)
    return { theta: d.ropeLocalTheta, scaling: undefined, key: "rope.local" };
  return { theta: d.ropeTheta, scaling: d.ropeScaling, key: "rope" };
}

/** [maxPos, rotaryDim] cos/sin initializers for layers of this kind. */
function ropeInitializers(e: Emitter, kind: LayerKind): { cos: string; sin: string } {
  const d = e.model.dims;
  const r = ropeOf(e.model, kind);
  const { cos, sin } = ropeTables(d.maxPos, d.rotaryDim, r.theta, r.scaling);
  return {
    cos: e.g.initializer(`${r.key}.cos`, "float32", [d.maxPos, d.rotaryDim], cos),
    sin: e.g.initializer(`${r.key}.sin`, "float32", [d.maxPos, d.rotaryDim], sin),
  };
}

/** Layers of the same kind share their RoPE tables when their settings agree. */
function sameRope(model: Model): boolean {
  return ropeOf(model, "sliding").key === ropeOf(model, "full").key;
}

function rope(e: Emitter, x: string, cs: { cos: string; sin: string }): string {
  // x: [B, n, T, hd]; rotate_half(r) = concat(−r2, r1) on the rotated part r = x[..., :rotaryDim]
  const g = e.g;
  const { headDim: hd, rotaryDim: rd } = e.model.dims;
  const r = rd < hd ? g.op("Slice", [x, g.constI64([0]), g.constI64([rd]), g.constI64([-1])]) : x;
  const [r1, r2] = g.opN("Split", [r], 2, { axis: -1 });
  const rot = g.op("Concat", [g.op("Neg", [r2]), r1], { axis: -1 });
  const out = g.op("Add", [g.op("Mul", [r, cs.cos]), g.op("Mul", [rot, cs.sin])]);
  if (rd === hd) return out;
  const pass = g.op("Slice", [x, g.constI64([rd]), g.constI64([hd]), g.constI64([-1])]);
  return g.op("Concat", [out, pass], { axis: -1 });
}

/**
 * One transformer layer. x: [B, T, D] → [B, T, D]; returns the taps too:
 * attnIn [B, T, nHeads·hd] (input of the attention output projection),
 * mlpIn [B, T, ffn] (input of the FFN down projection),
 * qkvIn [B, T, D] (input of the q/k/v projections) and upIn [B, T, D] (input of the gate/up projections).
 */
export function emitLayer(
  e: Emitter,
  i: number,
  x: string,
  ctx: LayerContext,
): {
  out: string;
  attnIn: string;
  mlpIn: string;
  qkvIn: string;
  upIn: string;
  /**
   * [B, T, D] the input of the first normalization that an error of o_proj's / down_proj's output passes
   * through: the post-attention / post-MLP norm of post-norm blocks, the sublayer-output norm of sandwich-norm
   * blocks (Gemma); none where the output is added to the residual stream as it is (see Emitter.normGain)
   */
  attnNormIn?: string;
  mlpNormIn?: string;
  presentK?: string;
  presentV?: string;
} {
  const { g, model } = e;
  const N = model.spec.names;
  const blk = model.spec.block;
  const L: LayerDims = model.dims.layers[i];
  const hd = model.dims.headDim;
  const grp = L.nHeads / L.nKv;
  const p = (t: string) => model.path(t, i);

  const d = model.dims;
  const kind = d.layerTypes[i];

  const h = blk.placement === "pre" ? e.norm(x, p(N.norm1)) : x;
  let q = g.op("Reshape", [e.linear(h, p(N.q), L.bias.q), g.constI64([0, 0, L.nHeads, hd])]); // [B,T,nH,hd]
  let k = g.op("Reshape", [e.linear(h, p(N.k), L.bias.k), g.constI64([0, 0, L.nKv, hd])]); // [B,T,nKv,hd]
  const v0 = e.linear(h, p(N.v), L.bias.v);
  // per-head norms over head_dim (Qwen3, Gemma 3), before RoPE
  if (N.qNorm) q = e.norm(q, p(N.qNorm));
  if (N.kNorm) k = e.norm(k, p(N.kNorm));
  q = g.op("Transpose", [q], { perm: [0, 2, 1, 3] }); // [B,nH,T,hd]
  k = g.op("Transpose", [k], { perm: [0, 2, 1, 3] }); // [B,nKv,T,hd]
  let v = g.op("Transpose", [g.op("Reshape", [v0, g.constI64([0, 0, L.nKv, hd])])], { perm: [0, 2, 1, 3] });
  if (blk.positional === "rope") {
    const cs = ctx.rope(kind);
    q = rope(e, q, cs);
    k = rope(e, k, cs);
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
  let s = g.op("Mul", [g.op("MatMul", [q5, k5]), g.scalar(d.attnScale)]); // [B,nKv,g,T,S]
  if (d.attnSoftcap) s = e.softcap(s, d.attnSoftcap);
  s = g.op("Add", [s, ctx.mask(kind)]);
  const probs = g.op("Softmax", [s], { axis: -1 });
  const c5 = g.op("MatMul", [probs, v5]); // [B,nKv,g,T,hd]
  const c4 = g.op("Reshape", [c5, g.constI64([0, L.nHeads, -1, hd])]); // [B,nH,T,hd]
  const attnIn = g.op("Reshape", [
    g.op("Transpose", [c4], { perm: [0, 2, 1, 3] }),
    g.constI64([0, 0, L.nHeads * hd]),
  ]);
  let o = e.linear(attnIn, p(N.o), L.bias.o); // [B,T,D]
  // the input of the first normalization an error of o_proj's output passes through (none: the residual)
  let attnNormIn: string | undefined;
  if (N.attnOutNorm) {
    attnNormIn = o;
    o = e.norm(o, p(N.attnOutNorm));
  }

  let x1: string;
  if (blk.placement === "pre") x1 = g.op("Add", [x, o]);
  else {
    const sum = g.op("Add", [x, o]);
    attnNormIn ??= sum;
    x1 = e.norm(sum, p(N.norm1));
  }

  const h2 = blk.placement === "pre" ? e.norm(x1, p(N.norm2)) : x1;
  let mlpIn: string;
  if (blk.mlp === "gated") {
    const gate = e.linear(h2, p(N.gate!), L.bias.gate);
    const up = e.linear(h2, p(N.up), L.bias.up);
    mlpIn = g.op("Mul", [e.act(gate), up]); // [B,T,ffn]
  } else {
    mlpIn = e.act(e.linear(h2, p(N.up), L.bias.up));
  }
  let down = e.linear(mlpIn, p(N.down), L.bias.down);
  let mlpNormIn: string | undefined;
  if (N.mlpOutNorm) {
    mlpNormIn = down;
    down = e.norm(down, p(N.mlpOutNorm));
  }
  let out: string;
  if (blk.placement === "pre") out = g.op("Add", [x1, down]);
  else {
    const sum = g.op("Add", [x1, down]);
    mlpNormIn ??= sum;
    out = e.norm(sum, p(N.norm2));
  }
  return {
    out,
    attnIn,
    mlpIn,
    qkvIn: h,
    upIn: h2,
    attnNormIn,
    mlpNormIn,
    presentK,
    presentV,
  };
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

/** RoPE tables [maxPos, rotaryDim], computed in float64 (HF: angle = position · inv_freq, halves duplicated). */
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
  if (model.dims.embedScale) x = g.op("Mul", [x, g.scalar(model.dims.embedScale)]);
  return x;
}

/** The layer context (masks, rope tables) for sequences shaped like `seqSource` ([B, T, …], positions 0..T−1). */
export function emitContext(e: Emitter, seqSource: string, attentionMask?: string): LayerContext {
  const { g, model } = e;
  const d = model.dims;
  const T = g.op("Gather", [g.op("Shape", [seqSource]), g.scalarI64(1)], { axis: 0 }); // scalar
  const pos = g.op("Range", [g.scalarI64(0), T, g.scalarI64(1)]); // [T]
  const zero = g.scalar(0);
  const neg = g.scalar(NEG);
  const padding = perKind(() => {
    // [B,T] → [B,1,1,1,T] additive: 0 where attended, NEG where padded
    const keep = g.op("Cast", [attentionMask!], { to: 9 }); // bool
    return g.op("Unsqueeze", [g.op("Where", [keep, zero, neg]), g.constI64([1, 2, 3])]);
  });
  const mask = perKind((kind) => {
    let m = zero;
    if (model.spec.block.causal) {
      const rows = g.op("Unsqueeze", [pos, g.constI64([1])]); // [T,1]
      const cols = g.op("Unsqueeze", [pos, g.constI64([0])]); // [1,T]
      let hide = g.op("Greater", [cols, rows]); // [T,T]
      if (kind === "sliding" && d.slidingWindow) {
        const far = g.op("GreaterOrEqual", [g.op("Sub", [rows, cols]), g.scalarI64(d.slidingWindow)]);
        hide = g.op("Or", [hide, far]);
      }
      m = g.op("Where", [hide, neg, zero]);
    }
    return attentionMask ? g.op("Add", [m, padding("full")]) : m;
  });
  const tables = perKind((kind) => ropeInitializers(e, sameRope(model) ? "full" : kind));
  const ropeAt = perKind((kind) => {
    const t = tables(sameRope(model) ? "full" : kind);
    const end = g.op("Unsqueeze", [T, g.constI64([0])]);
    return {
      cos: g.op("Slice", [t.cos, g.constI64([0]), end, g.constI64([0])]), // [T, rd]
      sin: g.op("Slice", [t.sin, g.constI64([0]), end, g.constI64([0])]),
    };
  });
  return { mask, rope: (kind) => ropeAt(sameRope(model) ? "full" : kind) };
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
    let logits = e.linear(x, headName, false); // [B,T,V]
    if (d.finalSoftcap) logits = e.softcap(logits, d.finalSoftcap);
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

export function buildCachedDecoderGraph(
  model: Model,
  opts: { nbits?: (weight: string) => NBitsWeight | undefined } = {},
): GraphBuilder {
  const g = new GraphBuilder(`pare-${model.spec.family}-kv`);
  const e = new Emitter(g, model, undefined, opts.nbits);
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
  // causal mask with past: query t (absolute P+t) sees key j iff j ≤ P+t; plus padding from attention_mask
  const T = g.op("Gather", [g.op("Shape", [ids]), g.scalarI64(1)], { axis: 0 });
  const total = g.op("Gather", [g.op("Shape", [am]), g.scalarI64(1)], { axis: 0 });
  const P = g.op("Sub", [total, T]);
  const rows = g.op("Unsqueeze", [g.op("Range", [P, total, g.scalarI64(1)]), g.constI64([1])]); // [T,1]
  const cols = g.op("Unsqueeze", [g.op("Range", [g.scalarI64(0), total, g.scalarI64(1)]), g.constI64([0])]); // [1,P+T]
  const zero = g.scalar(0);
  const neg = g.scalar(NEG);
  const pad = g.op("Unsqueeze", [
    g.op("Where", [g.op("Cast", [am], { to: 9 }), zero, neg]),
    g.constI64([1, 2, 3]),
  ]); // [B,1,1,1,P+T]
  const mask = perKind((kind) => {
    let hide = g.op("Greater", [cols, rows]); // [T,P+T]
    if (kind === "sliding" && d.slidingWindow)
      hide = g.op("Or", [
        hide,
        g.op("GreaterOrEqual", [g.op("Sub", [rows, cols]), g.scalarI64(d.slidingWindow)]),
      ]);
    return g.op("Add", [g.op("Where", [hide, neg, zero]), pad]);
  });
  // rope at the given positions: [B,T,rd] → [B,1,T,rd]
  const ropeAt = perKind((kind) => {
    const t = ropeInitializers(e, kind);
    return {
      cos: g.op("Unsqueeze", [g.op("Gather", [t.cos, posIds], { axis: 0 }), g.constI64([1])]),
      sin: g.op("Unsqueeze", [g.op("Gather", [t.sin, posIds], { axis: 0 }), g.constI64([1])]),
    };
  });
  const ctx: LayerContext = {
    mask,
    rope: (kind) => ropeAt(sameRope(model) ? "full" : kind),
    past,
  };
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
  let logits = e.linear(x, head, false); // [B,T,V]
  if (d.finalSoftcap) logits = e.softcap(logits, d.finalSoftcap);
  g.output(g.alias(logits, "logits"), "float32", ["batch_size", "sequence_length", d.vocab]);
  return g;
}
