/**
 * Naive float64 reference forward passes with Hugging Face `transformers` semantics.
 *
 * These are deliberately slow and obvious (plain loops, no batching, no caching of K/V): they exist so that
 * pare's ONNX forward pass (and anything else numeric) can be checked against something that is easy to read.
 * They are themselves checked against the float64 references shipped with the fixture models
 * (`/work/shared/models/*\/reference/*.json`) in `forward.test.ts`.
 *
 * Weights: a {@link WeightSource} — either a `Map` from HF tensor name to `{ shape, data }` or a lookup function
 * returning the same (or `undefined` when absent). `data` may be a Float32Array or a Float64Array (row-major,
 * PyTorch layout: a Linear weight is `[out, in]`). All arithmetic is done in float64; float32 weights are
 * converted once per array (cached in a WeakMap keyed by the array).
 *
 * Per-layer widths are derived from the weight shapes, never from the config, so pruned models with different
 * numbers of heads / FFN channels per layer work:
 *  - decoder: nHeads_l = rows(q_proj) / head_dim, nKv_l = rows(k_proj) / head_dim, ffn_l = cols(down_proj);
 *  - BERT: heads_l = rows(query) / head_dim (head_dim = hidden / num_attention_heads from the config),
 *    intermediate_l = cols(output.dense).
 */

/** One tensor: row-major data with its shape. */
export interface RefTensor {
  shape: readonly number[];
  data: Float32Array | Float64Array;
}

/** Where the reference gets its weights from: a map or a lookup (undefined = absent). */
export type WeightSource = ReadonlyMap<string, RefTensor> | ((name: string) => RefTensor | undefined);

export interface DecoderReferenceOutput {
  /** [T, V] row-major. */
  logits: Float64Array;
  /** Per layer, [T, nHeads_l * headDim]: the input of o_proj. */
  attnTaps: Float64Array[];
  /** Per layer, [T, ffn_l]: the input of down_proj. */
  mlpTaps: Float64Array[];
  /** [T, H] per layer: the input of layer l; the last entry: the last layer's output (before the final norm). */
  hidden: Float64Array[];
}

/** Options of the decoder references. */
export interface DecoderReferenceOptions {
  /** layers to skip (the stream passes them unchanged; their taps are empty): a model with blocks removed */
  skipLayers?: ReadonlySet<number>;
}

export interface BertReferenceOutput {
  /** [T, H] row-major: the last encoder layer's output. */
  lastHidden: Float64Array;
  /** [H]: tanh(pooler.dense(lastHidden[0])); empty when the checkpoint has no pooler. */
  pooled: Float64Array;
  /** [numLabels]: classifier(pooled), when the checkpoint has a classifier. */
  logits?: Float64Array;
  /** Per layer, [T, heads_l * headDim]: the input of attention.output.dense. */
  attnTaps: Float64Array[];
  /** Per layer, [T, intermediate_l]: the input of output.dense. */
  mlpTaps: Float64Array[];
}

type Config = Record<string, unknown>;

// ---------------------------------------------------------------------------------------------------------
// weight access

const f64Cache = new WeakMap<object, Float64Array>();

function toF64(data: Float32Array | Float64Array): Float64Array {
  if (data instanceof Float64Array) return data;
  let out = f64Cache.get(data);
  if (!out) {
    out = Float64Array.from(data);
    f64Cache.set(data, out);
  }
  return out;
}

interface W64 {
  shape: readonly number[];
  data: Float64Array;
}

function lookup(src: WeightSource, name: string): RefTensor | undefined {
  return typeof src === "function" ? src(name) : src.get(name);
}

function getOpt(src: WeightSource, name: string): W64 | undefined {
  const t = lookup(src, name);
  if (!t) return undefined;
  const n = t.shape.reduce((a, b) => a * b, 1);
  if (n !== t.data.length) {
    throw new Error(`reference: tensor ${name} has shape [${t.shape}] but ${t.data.length} elements`);
  }
  return { shape: t.shape, data: toF64(t.data) };
}

function get(src: WeightSource, name: string): W64 {
  const t = getOpt(src, name);
  if (!t) throw new Error(`reference: missing tensor ${name}`);
  return t;
}

function num(config: Config, key: string, fallback?: number): number {
  const v = config[key];
  if (typeof v === "number") return v;
  if (fallback !== undefined) return fallback;
  throw new Error(`reference: config.${key} missing or not a number`);
}

// ---------------------------------------------------------------------------------------------------------
// primitives (all float64, row-major)

/** y[T, out] = x[T, in] · Wᵀ + b, W is [out, in]. */
function linear(x: Float64Array, T: number, w: W64, b?: W64): Float64Array {
  if (w.shape.length !== 2) throw new Error("reference: linear weight must be 2-D");
  const [outF, inF] = w.shape;
  if (x.length !== T * inF) throw new Error(`reference: linear expects ${T}x${inF} input, got ${x.length}`);
  if (b && b.data.length !== outF) throw new Error("reference: bias length mismatch");
  const W = w.data;
  const y = new Float64Array(T * outF);
  for (let t = 0; t < T; t++) {
    const xo = t * inF;
    for (let o = 0; o < outF; o++) {
      const wo = o * inF;
      let s = 0;
      for (let i = 0; i < inF; i++) s += x[xo + i] * W[wo + i];
      y[t * outF + o] = b ? s + b.data[o] : s;
    }
  }
  return y;
}

function rmsNorm(x: Float64Array, T: number, H: number, w: W64, eps: number): Float64Array {
  const y = new Float64Array(T * H);
  for (let t = 0; t < T; t++) {
    let ss = 0;
    for (let i = 0; i < H; i++) ss += x[t * H + i] * x[t * H + i];
    const inv = 1 / Math.sqrt(ss / H + eps);
    for (let i = 0; i < H; i++) y[t * H + i] = x[t * H + i] * inv * w.data[i];
  }
  return y;
}

function layerNorm(x: Float64Array, T: number, H: number, w: W64, b: W64, eps: number): Float64Array {
  const y = new Float64Array(T * H);
  for (let t = 0; t < T; t++) {
    let mean = 0;
    for (let i = 0; i < H; i++) mean += x[t * H + i];
    mean /= H;
    let v = 0;
    for (let i = 0; i < H; i++) {
      const d = x[t * H + i] - mean;
      v += d * d;
    }
    v /= H;
    const inv = 1 / Math.sqrt(v + eps);
    for (let i = 0; i < H; i++) y[t * H + i] = (x[t * H + i] - mean) * inv * w.data[i] + b.data[i];
  }
  return y;
}

function addInPlace(a: Float64Array, b: Float64Array): void {
  for (let i = 0; i < a.length; i++) a[i] += b[i];
}

function silu(x: number): number {
  return x / (1 + Math.exp(-x));
}

/**
 * erf(x) in float64, within 2 ulp (max absolute error 4.4e-16 against 50-digit mpmath on 4400 points).
 * |x| < 1: the everywhere-convergent series with only positive terms (no cancellation),
 *   erf(x) = 2/√π · e^{-x²} · Σ_{n≥0} (2x²)ⁿ · x / (1·3·5···(2n+1));
 * 1 ≤ |x| < 6: erf = 1 − erfc with erfc from its continued fraction (modified Lentz),
 *   erfc(x) = e^{-x²}/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + …)))));
 * |x| ≥ 6: ±1 (erfc(6) ≈ 2e-17, below half an ulp of 1).
 */
export function erf(x: number): number {
  if (Number.isNaN(x)) return Number.NaN;
  const ax = Math.abs(x);
  if (ax === 0) return x; // keeps the sign of zero
  let r: number;
  if (ax >= 6) {
    r = 1;
  } else if (ax >= 1) {
    r = 1 - erfcContinuedFraction(ax);
  } else {
    const x2 = ax * ax;
    let term = ax;
    let sum = ax;
    for (let n = 0; n < 200; n++) {
      term *= (2 * x2) / (2 * n + 3);
      sum += term;
      if (term < sum * 1e-17) break;
    }
    r = Math.min(1, (2 / Math.sqrt(Math.PI)) * Math.exp(-x2) * sum);
  }
  return x < 0 ? -r : r;
}

/** erfc(x) for x ≥ 1 by the continued fraction K(n/2 / x), evaluated with the modified Lentz method. */
function erfcContinuedFraction(x: number): number {
  const tiny = 1e-300;
  // f = x + a1/(x + a2/(x + ...)), a_n = n/2
  let f = x;
  let C = f;
  let D = 0;
  for (let n = 1; n < 5000; n++) {
    const a = n / 2;
    D = x + a * D;
    if (D === 0) D = tiny;
    C = x + a / C;
    if (C === 0) C = tiny;
    D = 1 / D;
    const delta = C * D;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return Math.exp(-x * x) / Math.sqrt(Math.PI) / f;
}

/** Exact (erf) GELU, as `torch.nn.functional.gelu(x)` / HF `hidden_act: "gelu"`. */
export function geluExact(x: number): number {
  return 0.5 * x * (1 + erf(x * Math.SQRT1_2));
}

/** Numerically stable softmax of a float64 vector. */
export function softmax(v: ArrayLike<number>): Float64Array {
  let m = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < v.length; i++) if (v[i] > m) m = v[i];
  const out = new Float64Array(v.length);
  let s = 0;
  for (let i = 0; i < v.length; i++) {
    out[i] = Math.exp(v[i] - m);
    s += out[i];
  }
  for (let i = 0; i < v.length; i++) out[i] /= s;
  return out;
}

/** Index of the largest value (first one on ties), like torch.argmax. */
export function argmax(v: ArrayLike<number>, offset = 0, length = v.length - offset): number {
  let best = 0;
  let bv = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < length; i++) {
    if (v[offset + i] > bv) {
      bv = v[offset + i];
      best = i;
    }
  }
  return best;
}

/**
 * Scaled-dot-product attention on projected q/k/v (no RoPE here; apply it before).
 * q: [T, nH*hd], k/v: [T, nKv*hd]; query head h uses kv head floor(h / (nH / nKv)).
 * `allowed(i, j)` says whether query i may attend to key j; `additive(j)` is added to the score (BERT mask).
 * Returns [T, nH*hd] (heads concatenated in order), the input of the output projection.
 */
function attention(
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  T: number,
  nH: number,
  nKv: number,
  hd: number,
  allowed: (i: number, j: number) => boolean,
  additive?: (j: number) => number,
): Float64Array {
  if (nH % nKv !== 0) throw new Error(`reference: ${nH} query heads not divisible by ${nKv} kv heads`);
  const group = nH / nKv;
  const qw = nH * hd;
  const kw = nKv * hd;
  const scale = 1 / Math.sqrt(hd);
  const out = new Float64Array(T * qw);
  const scores = new Float64Array(T);
  for (let h = 0; h < nH; h++) {
    const kvh = Math.floor(h / group);
    for (let i = 0; i < T; i++) {
      let m = Number.NEGATIVE_INFINITY;
      for (let j = 0; j < T; j++) {
        if (!allowed(i, j)) {
          scores[j] = Number.NEGATIVE_INFINITY;
          continue;
        }
        let s = 0;
        for (let d = 0; d < hd; d++) s += q[i * qw + h * hd + d] * k[j * kw + kvh * hd + d];
        s *= scale;
        if (additive) s += additive(j);
        scores[j] = s;
        if (s > m) m = s;
      }
      let z = 0;
      for (let j = 0; j < T; j++) {
        const e = scores[j] === Number.NEGATIVE_INFINITY ? 0 : Math.exp(scores[j] - m);
        scores[j] = e;
        z += e;
      }
      for (let j = 0; j < T; j++) {
        const p = scores[j] / z;
        if (p === 0) continue;
        for (let d = 0; d < hd; d++) out[i * qw + h * hd + d] += p * v[j * kw + kvh * hd + d];
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// LLaMA-style decoder (llama, mistral, qwen2)

/** HF rotary inverse frequencies: 1 / theta^(2i/headDim), i < headDim/2 (computed in float64). */
export function ropeInvFreq(headDim: number, theta: number): Float64Array {
  const half = headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / theta ** ((2 * i) / headDim);
  return inv;
}

/**
 * In place: x[T, nHeads*hd] ← x·cos + rotate_half(x)·sin per head, with HF Llama's non-interleaved layout
 * (rotate_half(x) = [-x2, x1] for halves x1 = x[:hd/2], x2 = x[hd/2:]; cos/sin duplicated over both halves).
 */
function applyRope(
  x: Float64Array,
  T: number,
  nHeads: number,
  hd: number,
  invFreq: Float64Array,
  posScale: number,
) {
  const half = hd / 2;
  const w = nHeads * hd;
  for (let t = 0; t < T; t++) {
    const p = t / posScale;
    for (let h = 0; h < nHeads; h++) {
      const base = t * w + h * hd;
      for (let i = 0; i < half; i++) {
        const ang = p * invFreq[i];
        const c = Math.cos(ang);
        const s = Math.sin(ang);
        const x1 = x[base + i];
        const x2 = x[base + half + i];
        x[base + i] = x1 * c - x2 * s;
        x[base + half + i] = x2 * c + x1 * s;
      }
    }
  }
}

function decoderHeadDim(config: Config): number {
  const hd = config.head_dim;
  if (typeof hd === "number") return hd;
  return num(config, "hidden_size") / num(config, "num_attention_heads");
}

/**
 * Full (no KV cache) forward pass of a LLaMA-style causal LM on one sequence of token ids (positions 0..T-1).
 *
 * Semantics (HF LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM, eager attention, no padding):
 * h = embed[ids]; per layer: a = RMSNorm(h)·w_in; q,k,v = proj(a) (+bias if present); RoPE on q,k;
 * causal softmax(q·kᵀ/√hd) v with GQA; h += o_proj(ctx) (+bias); m = RMSNorm(h)·w_post;
 * h += down(silu(gate(m)) * up(m)) (+biases if present); logits = lm_head(RMSNorm(h)·w_final).
 * lm_head is embed_tokens when `tie_word_embeddings` is true or `lm_head.weight` is absent.
 * Mistral with a numeric `sliding_window` masks keys with i - j ≥ window (HF's sliding mask); Qwen2 with
 * `use_sliding_window: true` is rejected.
 * Supported `rope_scaling`: null / "default" / "linear" (positions divided by factor).
 */
export function referenceDecoderForward(
  config: Config,
  weights: WeightSource,
  ids: number[],
  opts: DecoderReferenceOptions = {},
): DecoderReferenceOutput {
  const T = ids.length;
  if (T === 0) throw new Error("reference: empty input");
  const H = num(config, "hidden_size");
  const L = num(config, "num_hidden_layers");
  const eps = num(config, "rms_norm_eps", 1e-6);
  const theta = num(config, "rope_theta", 10000);
  const hd = decoderHeadDim(config);
  if (!Number.isInteger(hd) || hd % 2 !== 0) throw new Error(`reference: bad head_dim ${hd}`);

  let posScale = 1;
  const rs = config.rope_scaling as Record<string, unknown> | null | undefined;
  if (rs) {
    const type = (rs.rope_type ?? rs.type) as string | undefined;
    if (type === "linear") posScale = Number(rs.factor);
    else if (type !== "default") throw new Error(`reference: rope_scaling ${String(type)} not supported`);
  }
  let window = Number.POSITIVE_INFINITY;
  const mt = config.model_type;
  if (mt === "mistral" && typeof config.sliding_window === "number") window = config.sliding_window;
  if (mt === "qwen2" && config.use_sliding_window === true) {
    throw new Error("reference: qwen2 use_sliding_window (per-layer windows) not supported");
  }
  const invFreq = ropeInvFreq(hd, theta);

  const emb = get(weights, "model.embed_tokens.weight");
  const V = emb.shape[0];
  if (emb.shape[1] !== H) throw new Error("reference: embed_tokens width != hidden_size");

  let h: Float64Array = new Float64Array(T * H);
  for (let t = 0; t < T; t++) {
    const id = ids[t];
    if (!(id >= 0 && id < V)) throw new Error(`reference: token id ${id} out of range`);
    h.set(emb.data.subarray(id * H, (id + 1) * H), t * H);
  }

  const attnTaps: Float64Array[] = [];
  const mlpTaps: Float64Array[] = [];
  const causal = (i: number, j: number) => j <= i && i - j < window;

  const hidden: Float64Array[] = [];
  for (let l = 0; l < L; l++) {
    hidden.push(h.slice());
    if (opts.skipLayers?.has(l)) {
      attnTaps.push(new Float64Array(0));
      mlpTaps.push(new Float64Array(0));
      continue;
    }
    const p = `model.layers.${l}.`;
    const a = rmsNorm(h, T, H, get(weights, `${p}input_layernorm.weight`), eps);
    const qW = get(weights, `${p}self_attn.q_proj.weight`);
    const kW = get(weights, `${p}self_attn.k_proj.weight`);
    const vW = get(weights, `${p}self_attn.v_proj.weight`);
    const nH = qW.shape[0] / hd;
    const nKv = kW.shape[0] / hd;
    if (!Number.isInteger(nH) || !Number.isInteger(nKv) || vW.shape[0] !== kW.shape[0]) {
      throw new Error(`reference: layer ${l} q/k/v rows not multiples of head_dim ${hd}`);
    }
    let ctx: Float64Array;
    if (nH === 0) {
      ctx = new Float64Array(0);
    } else {
      const q = linear(a, T, qW, getOpt(weights, `${p}self_attn.q_proj.bias`));
      const k = linear(a, T, kW, getOpt(weights, `${p}self_attn.k_proj.bias`));
      const v = linear(a, T, vW, getOpt(weights, `${p}self_attn.v_proj.bias`));
      applyRope(q, T, nH, hd, invFreq, posScale);
      applyRope(k, T, nKv, hd, invFreq, posScale);
      ctx = attention(q, k, v, T, nH, nKv, hd, causal);
    }
    attnTaps.push(ctx);
    const oW = get(weights, `${p}self_attn.o_proj.weight`);
    const oB = getOpt(weights, `${p}self_attn.o_proj.bias`);
    if (oW.shape[1] !== nH * hd) throw new Error(`reference: layer ${l} o_proj columns != q_proj rows`);
    addInPlace(h, nH === 0 ? broadcastBias(T, H, oB) : linear(ctx, T, oW, oB));

    const m = rmsNorm(h, T, H, get(weights, `${p}post_attention_layernorm.weight`), eps);
    const gW = get(weights, `${p}mlp.gate_proj.weight`);
    const uW = get(weights, `${p}mlp.up_proj.weight`);
    const dW = get(weights, `${p}mlp.down_proj.weight`);
    const F = dW.shape[1];
    if (gW.shape[0] !== F || uW.shape[0] !== F) throw new Error(`reference: layer ${l} FFN widths disagree`);
    const dB = getOpt(weights, `${p}mlp.down_proj.bias`);
    let act: Float64Array;
    if (F === 0) {
      act = new Float64Array(0);
      addInPlace(h, broadcastBias(T, H, dB));
    } else {
      const g = linear(m, T, gW, getOpt(weights, `${p}mlp.gate_proj.bias`));
      const u = linear(m, T, uW, getOpt(weights, `${p}mlp.up_proj.bias`));
      act = new Float64Array(T * F);
      for (let i = 0; i < act.length; i++) act[i] = silu(g[i]) * u[i];
      addInPlace(h, linear(act, T, dW, dB));
    }
    mlpTaps.push(act);
  }

  hidden.push(h.slice());
  h = rmsNorm(h, T, H, get(weights, "model.norm.weight"), eps);
  const lmHead = config.tie_word_embeddings === true ? emb : (getOpt(weights, "lm_head.weight") ?? emb);
  const logits = linear(h, T, lmHead);
  return { logits, attnTaps, mlpTaps, hidden };
}

/** [T, H] filled with the bias (or zeros): the output of a Linear whose input width is 0. */
function broadcastBias(T: number, H: number, b?: W64): Float64Array {
  const y = new Float64Array(T * H);
  if (b) for (let t = 0; t < T; t++) y.set(b.data, t * H);
  return y;
}

/**
 * Greedy decoding with the reference: `steps` argmax tokens, recomputing the full sequence each step
 * (no EOS stopping). Returns only the new ids.
 */
export function referenceGreedy(
  config: Config,
  weights: WeightSource,
  promptIds: number[],
  steps: number,
): number[] {
  const ids = [...promptIds];
  const out: number[] = [];
  for (let s = 0; s < steps; s++) {
    const { logits } = referenceDecoderForward(config, weights, ids);
    const V = logits.length / ids.length;
    const next = argmax(logits, (ids.length - 1) * V, V);
    ids.push(next);
    out.push(next);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// BERT (BertModel / BertForSequenceClassification)

/** HF's additive mask value for masked keys: (1 - mask) · finfo(float64).min. */
const MASK_MIN = -Number.MAX_VALUE;

/**
 * Forward pass of BertModel / BertForSequenceClassification (absolute positions 0..T-1, post-LN, exact GELU,
 * eval mode) on one sequence. `tokenTypeIds` defaults to zeros; `attentionMask` to ones — keys whose mask is 0
 * get HF's additive finfo.min, so they receive zero weight (query rows of padded positions are still computed,
 * as in HF). Tensor names may carry the `bert.` prefix (ForSequenceClassification) or not (plain BertModel).
 */
export function referenceBertForward(
  config: Config,
  weights: WeightSource,
  ids: number[],
  tokenTypeIds?: number[],
  attentionMask?: number[],
): BertReferenceOutput {
  const T = ids.length;
  if (T === 0) throw new Error("reference: empty input");
  const H = num(config, "hidden_size");
  const L = num(config, "num_hidden_layers");
  const eps = num(config, "layer_norm_eps", 1e-12);
  const hd = H / num(config, "num_attention_heads");
  if (!Number.isInteger(hd)) throw new Error("reference: hidden_size not divisible by num_attention_heads");
  const act = config.hidden_act ?? "gelu";
  if (act !== "gelu") throw new Error(`reference: hidden_act ${String(act)} not supported (only exact gelu)`);
  const pe = config.position_embedding_type;
  if (pe !== undefined && pe !== "absolute")
    throw new Error(`reference: position_embedding_type ${String(pe)}`);
  if (tokenTypeIds && tokenTypeIds.length !== T) throw new Error("reference: token_type_ids length mismatch");
  if (attentionMask && attentionMask.length !== T)
    throw new Error("reference: attention_mask length mismatch");

  const prefix = lookup(weights, "bert.embeddings.word_embeddings.weight") ? "bert." : "";
  const g = (n: string) => get(weights, prefix + n);
  const gOpt = (n: string) => getOpt(weights, prefix + n);

  const word = g("embeddings.word_embeddings.weight");
  const pos = g("embeddings.position_embeddings.weight");
  const typ = g("embeddings.token_type_embeddings.weight");
  if (T > pos.shape[0]) throw new Error(`reference: sequence of ${T} exceeds ${pos.shape[0]} positions`);
  const emb = new Float64Array(T * H);
  for (let t = 0; t < T; t++) {
    const id = ids[t];
    const tt = tokenTypeIds ? tokenTypeIds[t] : 0;
    if (!(id >= 0 && id < word.shape[0])) throw new Error(`reference: token id ${id} out of range`);
    for (let i = 0; i < H; i++) {
      emb[t * H + i] = word.data[id * H + i] + typ.data[tt * H + i] + pos.data[t * H + i];
    }
  }
  let h: Float64Array = layerNorm(
    emb,
    T,
    H,
    g("embeddings.LayerNorm.weight"),
    g("embeddings.LayerNorm.bias"),
    eps,
  );

  const additive = attentionMask ? (j: number) => (1 - attentionMask[j]) * MASK_MIN : undefined;
  const all = () => true;
  const attnTaps: Float64Array[] = [];
  const mlpTaps: Float64Array[] = [];

  for (let l = 0; l < L; l++) {
    const p = `encoder.layer.${l}.`;
    const qW = g(`${p}attention.self.query.weight`);
    const kW = g(`${p}attention.self.key.weight`);
    const vW = g(`${p}attention.self.value.weight`);
    const nH = qW.shape[0] / hd;
    if (!Number.isInteger(nH) || kW.shape[0] !== qW.shape[0] || vW.shape[0] !== qW.shape[0]) {
      throw new Error(`reference: layer ${l} query/key/value rows must be equal multiples of ${hd}`);
    }
    const oW = g(`${p}attention.output.dense.weight`);
    const oB = gOpt(`${p}attention.output.dense.bias`);
    if (oW.shape[1] !== nH * hd)
      throw new Error(`reference: layer ${l} attention.output.dense columns mismatch`);
    let ctx: Float64Array;
    let attnOut: Float64Array;
    if (nH === 0) {
      ctx = new Float64Array(0);
      attnOut = broadcastBias(T, H, oB);
    } else {
      const q = linear(h, T, qW, gOpt(`${p}attention.self.query.bias`));
      const k = linear(h, T, kW, gOpt(`${p}attention.self.key.bias`));
      const v = linear(h, T, vW, gOpt(`${p}attention.self.value.bias`));
      ctx = attention(q, k, v, T, nH, nH, hd, all, additive);
      attnOut = linear(ctx, T, oW, oB);
    }
    attnTaps.push(ctx);
    addInPlace(attnOut, h);
    const a = layerNorm(
      attnOut,
      T,
      H,
      g(`${p}attention.output.LayerNorm.weight`),
      g(`${p}attention.output.LayerNorm.bias`),
      eps,
    );

    const iW = g(`${p}intermediate.dense.weight`);
    const dW = g(`${p}output.dense.weight`);
    const dB = gOpt(`${p}output.dense.bias`);
    const F = dW.shape[1];
    if (iW.shape[0] !== F) throw new Error(`reference: layer ${l} intermediate widths disagree`);
    let inter: Float64Array;
    let out: Float64Array;
    if (F === 0) {
      inter = new Float64Array(0);
      out = broadcastBias(T, H, dB);
    } else {
      inter = linear(a, T, iW, gOpt(`${p}intermediate.dense.bias`));
      for (let i = 0; i < inter.length; i++) inter[i] = geluExact(inter[i]);
      out = linear(inter, T, dW, dB);
    }
    mlpTaps.push(inter);
    addInPlace(out, a);
    h = layerNorm(out, T, H, g(`${p}output.LayerNorm.weight`), g(`${p}output.LayerNorm.bias`), eps);
  }

  let pooled: Float64Array = new Float64Array(0);
  const pW = gOpt("pooler.dense.weight");
  if (pW) {
    pooled = linear(h.subarray(0, H), 1, pW, gOpt("pooler.dense.bias"));
    for (let i = 0; i < pooled.length; i++) pooled[i] = Math.tanh(pooled[i]);
  }
  const cW = getOpt(weights, "classifier.weight");
  let logits: Float64Array | undefined;
  if (cW) {
    if (!pW) throw new Error("reference: classifier present but no pooler");
    logits = linear(pooled, 1, cW, getOpt(weights, "classifier.bias"));
  }
  return { lastHidden: h, pooled, logits, attnTaps, mlpTaps };
}
