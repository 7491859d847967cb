/**
 * Naive float64 reference forward passes for Qwen3, Gemma 2, Gemma 3 (text) and Phi-3, with the semantics of
 * Hugging Face `transformers` (eager attention). Same style and contract as `forward.ts`: plain loops, no
 * K/V cache, per-layer widths taken from the weight shapes (pruned models work), taps of the inputs of o_proj
 * and down_proj per layer.
 *
 * Read from transformers' sources (models/qwen3, gemma2, gemma3, phi3: modeling_*.py, modular_*.py,
 * configuration_*.py; masking_utils.py; modeling_rope_utils.py):
 *
 * qwen3 (Qwen3ForCausalLM): Llama's block (RMSNorm x̂·w, pre-norm, SiLU-gated MLP, GQA, non-interleaved RoPE)
 *   plus per-head RMSNorm `q_norm` / `k_norm` (weight [head_dim], eps rms_norm_eps) on q and k after the
 *   projection and before RoPE. head_dim from config (default 128). attention_bias gives q, k, v AND o_proj
 *   biases. Windows: `Qwen3Config` sets sliding_window = None unless use_sliding_window; layer_types defaults to
 *   "sliding_attention" for i ≥ max_window_layers when the window survives; explicit layer_types win.
 * gemma2 (Gemma2ForCausalLM): RMSNorm x̂·(1 + w) (computed in float32 in HF); embeddings × √hidden_size (HF
 *   makes the normaliser a tensor of the hidden dtype: in float32 √H is rounded to float32, in bfloat16
 *   √3072 = 55.43 becomes 55.5; this reference keeps float64); MLP down(gelu_tanh(gate x) · up x) with
 *   hidden_activation (default gelu_pytorch_tanh; `hidden_act` is not read); block
 *   h += post_attention_layernorm(attn(input_layernorm h)); h += post_feedforward_layernorm(mlp(
 *   pre_feedforward_layernorm h)); scores · query_pre_attn_scalar^−½, then cap·tanh(s / cap) with
 *   attn_logit_softcapping (default 50), then the mask; final logits cap·tanh(l / cap) with
 *   final_logit_softcapping (default 30); layer_types default: layer i slides iff (i + 1) % 2 ≠ 0 (even i);
 *   tie_word_embeddings default true.
 * gemma3_text (Gemma3ForCausalLM): Gemma 2's block plus q_norm / k_norm, (1 + w) RMSNorms over head_dim before
 *   RoPE; layer_types default: layer i slides iff (i + 1) % sliding_window_pattern ≠ 0 (pattern default 6);
 *   global layers use rope_theta (default 1e6) with rope_scaling, sliding layers rope_local_base_freq (default
 *   1e4) without scaling; final_logit_softcapping applied when set (default None). attn_logit_softcapping is
 *   NOT applied: Gemma3Attention stores it but never passes `softcap` to the attention function.
 * phi3 (Phi3ForCausalLM): fused qkv_proj rows q | k | v (nH·hd, nKv·hd, nKv·hd), fused gate_up_proj rows
 *   gate | up, out = up · silu(gate); RMSNorm x̂·w (eps default 1e-5); head_dim = hidden / heads unless the
 *   config states head_dim; RoPE on the first rot = ⌊head_dim · partial_rotary_factor⌋ dims of each head, with
 *   inv_freq over rot (1 / θ^(2i/rot)) and rotate_half within those dims, the rest passed through; no biases;
 *   when config.sliding_window is set, Phi3Model builds the sliding-window mask for EVERY layer.
 * Masks (masking_utils): key j is visible to query i iff j ≤ i, i − j < window on sliding layers, and
 *   attention_mask[j] = 1 (indices, not position ids). Eager attention adds finfo.min to hidden keys after the
 *   scaling (and after soft-capping), so a query row with every key hidden (a left pad) gets uniform weights.
 * RoPE parameters: transformers 4.x top-level keys (rope_theta, rope_scaling {rope_type|type, factor},
 *   rope_local_base_freq, partial_rotary_factor) or transformers 5 `rope_parameters` (flat {rope_type,
 *   rope_theta, factor?, partial_rotary_factor?}; Gemma 3 keyed by layer type: {full_attention: {…},
 *   sliding_attention: {…}}). Supported rope types: default, linear (inv_freq / factor; Phi-3: default only).
 */
import {
  argmax,
  type DecoderReferenceOutput,
  erf,
  type RefTensor,
  ropeInvFreq,
  type WeightSource,
} from "./forward.ts";

type Config = Record<string, unknown>;

export type Family = "qwen3" | "gemma2" | "gemma3_text" | "phi3";

/**
 * A semantic feature of a family. Switching one off (`opts.off`) replaces it by the plain-Llama behaviour:
 * - qkNorm: no q_norm / k_norm;
 * - normOffset: Gemma norms x̂·w instead of x̂·(1 + w) (every norm, q/k norms included);
 * - embedScale: embeddings not multiplied by √hidden_size;
 * - attnSoftcap / finalSoftcap: no tanh soft-capping of attention logits / final logits;
 * - queryPreAttnScalar: attention scale head_dim^−½;
 * - sandwichNorms: no post_attention_layernorm / post_feedforward_layernorm (pre_feedforward_layernorm stays as
 *   the norm before the MLP);
 * - slidingWindow: every layer attends to the full causal prefix;
 * - localRopeBase: Gemma 3's sliding layers use the global layers' RoPE (rope_theta and rope_scaling);
 * - ropeScaling: Gemma 3's rope_scaling (linear factor of the global layers) ignored;
 * - partialRotary: RoPE over the whole head (inv_freq over head_dim);
 * - geluTanh: exact (erf) GELU instead of the tanh approximation.
 */
export type Feature =
  | "qkNorm"
  | "normOffset"
  | "embedScale"
  | "attnSoftcap"
  | "finalSoftcap"
  | "queryPreAttnScalar"
  | "sandwichNorms"
  | "slidingWindow"
  | "localRopeBase"
  | "ropeScaling"
  | "partialRotary"
  | "geluTanh";

/** The features each family has (the ones `opts.off` may name for it). */
export const FAMILY_FEATURES: Readonly<Record<Family, readonly Feature[]>> = {
  qwen3: ["qkNorm", "slidingWindow"],
  gemma2: [
    "normOffset",
    "embedScale",
    "sandwichNorms",
    "geluTanh",
    "queryPreAttnScalar",
    "attnSoftcap",
    "finalSoftcap",
    "slidingWindow",
  ],
  gemma3_text: [
    "normOffset",
    "embedScale",
    "sandwichNorms",
    "geluTanh",
    "queryPreAttnScalar",
    "qkNorm",
    "finalSoftcap",
    "slidingWindow",
    "localRopeBase",
    "ropeScaling",
  ],
  phi3: ["partialRotary", "slidingWindow"],
};

export interface FamilyForwardOptions {
  /** Features switched off (see {@link Feature}); naming one the family does not have throws. */
  off?: ReadonlySet<Feature>;
  /** 0/1 per position (HF attention_mask): keys with 0 are hidden from every query. Default all ones. */
  attentionMask?: readonly number[];
  /**
   * Position ids used by RoPE. Default 0..T−1 (what a plain HF forward uses, even with an attention mask);
   * for left-padded generation pass {@link hfGeneratePositionIds}(mask).
   */
  positionIds?: readonly number[];
  /** layers to skip (the stream passes them unchanged; their taps are empty): a model with blocks removed */
  skipLayers?: ReadonlySet<number>;
}

/** HF `generate`'s position ids for a padded row: cumsum(mask) − 1, with 1 at masked positions. */
export function hfGeneratePositionIds(mask: readonly number[]): number[] {
  let c = 0;
  return mask.map((m) => {
    c += m;
    return m === 0 ? 1 : c - 1;
  });
}

// ---------------------------------------------------------------------------------------------------------
// config and weights

/** The family of a config (by model_type); throws for anything else. */
export function familyOf(config: Config): Family {
  const mt = config.model_type;
  if (mt === "qwen3" || mt === "gemma2" || mt === "gemma3_text" || mt === "phi3") return mt;
  throw new Error(`reference: model_type ${String(mt)} is not one of ${Object.keys(FAMILY_FEATURES)}`);
}

/** config[key] when the key is present (null included), else the HF class default. */
function cfg<T>(config: Config, key: string, dflt: T): T | number | string | null {
  const v = config[key];
  return v === undefined ? dflt : (v as T | number | string | null);
}

function num(config: Config, key: string, dflt?: number): number {
  const v = config[key];
  if (typeof v === "number") return v;
  if (v === undefined && dflt !== undefined) return dflt;
  throw new Error(`reference: config.${key} missing or not a number`);
}

/** A softcap value (null = none). */
function capOf(config: Config, key: string, dflt: number | null): number | null {
  const v = cfg(config, key, dflt);
  if (v === null) return null;
  if (typeof v !== "number" || !(v > 0))
    throw new Error(`reference: config.${key} must be a positive number`);
  return v;
}

interface W64 {
  shape: readonly number[];
  data: Float64Array;
}

const f64Cache = new WeakMap<object, Float64Array>();

function getOpt(src: WeightSource, name: string): W64 | undefined {
  const t: RefTensor | undefined = typeof src === "function" ? src(name) : src.get(name);
  if (!t) return undefined;
  const n = t.shape.reduce((a, b) => a * b, 1);
  if (n !== t.data.length)
    throw new Error(`reference: tensor ${name} has shape [${t.shape}] but ${t.data.length} elements`);
  let data = t.data instanceof Float64Array ? t.data : f64Cache.get(t.data);
  if (!data) {
    data = Float64Array.from(t.data);
    f64Cache.set(t.data, data);
  }
  return { shape: t.shape, data };
}

function get(src: WeightSource, name: string): W64 {
  const t = getOpt(src, name);
  if (!t) throw new Error(`reference: missing tensor ${name}`);
  return t;
}

// ---------------------------------------------------------------------------------------------------------
// primitives (float64, row-major)

/** y[T, out] = x[T, in] · Wᵀ (+ b); W is [out, in]. */
function linear(x: Float64Array, T: number, w: W64, b?: W64): Float64Array {
  const [outF, inF] = w.shape;
  if (w.shape.length !== 2 || x.length !== T * inF) {
    throw new Error(`reference: linear [${w.shape}] on ${x.length / T} features`);
  }
  if (b && b.data.length !== outF) throw new Error("reference: bias length mismatch");
  const W = w.data;
  const y = new Float64Array(T * outF);
  for (let t = 0; t < T; t++) {
    for (let o = 0; o < outF; o++) {
      let s = 0;
      for (let i = 0; i < inF; i++) s += x[t * inF + i] * W[o * inF + i];
      y[t * outF + o] = b ? s + b.data[o] : s;
    }
  }
  return y;
}

/**
 * RMSNorm over consecutive groups of `D` values: y = x · rsqrt(mean(x²) + eps) · (offset + w).
 * offset 0: Llama / Qwen3 / Phi-3 (x̂·w); offset 1: Gemma (x̂·(1 + w)). x has any multiple of D values
 * ([T, H] for a hidden state, [T, nHeads·hd] with D = hd for per-head q/k norms).
 */
function rmsNorm(x: Float64Array, D: number, w: W64, eps: number, offset: 0 | 1): Float64Array {
  if (w.data.length !== D) throw new Error(`reference: norm weight of ${w.data.length}, expected ${D}`);
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / D; r++) {
    let ss = 0;
    for (let i = 0; i < D; i++) ss += x[r * D + i] * x[r * D + i];
    const inv = 1 / Math.sqrt(ss / D + eps);
    for (let i = 0; i < D; i++) y[r * D + i] = x[r * D + i] * inv * (offset + w.data[i]);
  }
  return y;
}

function silu(x: number): number {
  return x / (1 + Math.exp(-x));
}

/** PyTorch's gelu(approximate="tanh") = HF "gelu_pytorch_tanh". */
function geluTanh(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
}

function geluExact(x: number): number {
  return 0.5 * x * (1 + erf(x * Math.SQRT1_2));
}

function activation(name: string): (x: number) => number {
  if (name === "silu" || name === "swish") return silu;
  if (name === "gelu_pytorch_tanh" || name === "gelu_new" || name === "gelu_fast") return geluTanh;
  if (name === "gelu") return geluExact;
  throw new Error(`reference: activation ${name} not supported`);
}

/** RoPE of one layer type: inv_freq (already divided by a linear factor) over the first `rotDim` dims. */
interface Rope {
  invFreq: Float64Array;
  rotDim: number;
}

/**
 * In place: for each head of x [T, nHeads·hd], x[:rot] ← x[:rot]·cos + rotate_half(x[:rot])·sin with HF's
 * non-interleaved layout (pairs (i, i + rot/2)); x[rot:] unchanged. Angle = pos[t] · invFreq[i].
 */
function applyRope(
  x: Float64Array,
  T: number,
  nHeads: number,
  hd: number,
  rope: Rope,
  pos: readonly number[],
) {
  const half = rope.rotDim / 2;
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < nHeads; h++) {
      const base = (t * nHeads + h) * hd;
      for (let i = 0; i < half; i++) {
        const ang = pos[t] * rope.invFreq[i];
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

/** HF's additive mask value for hidden keys (finfo.min; float64 here). */
const MASK_MIN = -Number.MAX_VALUE;

/**
 * Eager attention on projected, rotated q [T, nH·hd] and k / v [T, nKv·hd]; query head h reads KV head
 * ⌊h / (nH / nKv)⌋. score = q·k · scale; soft-capped (cap·tanh(score / cap)) when `softcap`; + finfo.min where
 * `visible(i, j)` is false; softmax; · v. Returns [T, nH·hd] (the input of o_proj).
 */
function attention(
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  T: number,
  nH: number,
  nKv: number,
  hd: number,
  scale: number,
  softcap: number | null,
  visible: (i: number, j: number) => boolean,
): Float64Array {
  if (nKv === 0 || nH % nKv !== 0) throw new Error(`reference: ${nH} query heads with ${nKv} kv heads`);
  const group = nH / nKv;
  const out = new Float64Array(T * nH * hd);
  const scores = new Float64Array(T);
  for (let h = 0; h < nH; h++) {
    const kvh = Math.floor(h / group);
    for (let i = 0; i < T; i++) {
      let m = Number.NEGATIVE_INFINITY;
      for (let j = 0; j < T; j++) {
        let s = 0;
        for (let d = 0; d < hd; d++) s += q[(i * nH + h) * hd + d] * k[(j * nKv + kvh) * hd + d];
        s *= scale;
        if (softcap !== null) s = Math.tanh(s / softcap) * softcap;
        if (!visible(i, j)) s += MASK_MIN; // rounds to MASK_MIN: a fully hidden row becomes uniform, as in HF
        scores[j] = s;
        if (s > m) m = s;
      }
      let z = 0;
      for (let j = 0; j < T; j++) {
        scores[j] = Math.exp(scores[j] - m);
        z += scores[j];
      }
      for (let j = 0; j < T; j++) {
        const p = scores[j] / z;
        if (p === 0) continue;
        for (let d = 0; d < hd; d++) out[(i * nH + h) * hd + d] += p * v[(j * nKv + kvh) * hd + d];
      }
    }
  }
  return out;
}

function addInPlace(a: Float64Array, b: Float64Array): void {
  for (let i = 0; i < a.length; i++) a[i] += b[i];
}

/** [T, H] filled with the bias (or zeros): the output of a Linear whose input width is 0. */
function broadcastBias(T: number, H: number, b?: W64): Float64Array {
  const y = new Float64Array(T * H);
  if (b) for (let t = 0; t < T; t++) y.set(b.data, t * H);
  return y;
}

// ---------------------------------------------------------------------------------------------------------
// per-family configuration, resolved once

interface Resolved {
  fam: Family;
  H: number;
  L: number;
  hd: number;
  eps: number;
  normOffset: 0 | 1;
  embedScale: number;
  sandwich: boolean;
  qkNorm: boolean;
  act: (x: number) => number;
  scale: number;
  attnSoftcap: number | null;
  finalSoftcap: number | null;
  /** per layer: the window (Infinity = full causal) and the RoPE */
  window: number[];
  rope: Rope[];
  tie: boolean;
  attentionBias: boolean;
}

function layerTypesOf(config: Config, fam: Family, L: number, window: number | null): string[] {
  const explicit = config.layer_types;
  if (Array.isArray(explicit)) {
    if (explicit.length < L)
      throw new Error(`reference: layer_types has ${explicit.length} entries for ${L} layers`);
    for (const t of explicit) {
      if (t !== "sliding_attention" && t !== "full_attention") throw new Error(`reference: layer type ${t}`);
    }
    return explicit.slice(0, L) as string[];
  }
  const types: string[] = [];
  for (let i = 0; i < L; i++) {
    let sliding: boolean;
    if (fam === "qwen3") sliding = window !== null && i >= num(config, "max_window_layers", 28);
    else if (fam === "gemma2") sliding = (i + 1) % 2 !== 0;
    else if (fam === "gemma3_text") sliding = (i + 1) % num(config, "sliding_window_pattern", 6) !== 0;
    else sliding = window !== null; // phi3: the sliding mask for every layer when sliding_window is set
    types.push(sliding ? "sliding_attention" : "full_attention");
  }
  return types;
}

/** The rope dict of a layer type: transformers 5 `rope_parameters` (flat or keyed by layer type), or null. */
function ropeParams(config: Config, layerType: string): Record<string, unknown> | null {
  const rp = config.rope_parameters;
  if (rp === undefined || rp === null) return null;
  if (typeof rp !== "object") throw new Error("reference: rope_parameters must be an object");
  const r = rp as Record<string, unknown>;
  const keys = Object.keys(r);
  const nested = keys.length > 0 && keys.every((k) => k === "full_attention" || k === "sliding_attention");
  if (!nested) {
    if (config.model_type === "gemma3_text") {
      throw new Error("reference: gemma3_text rope_parameters must be keyed by layer type");
    }
    return r;
  }
  const sub = r[layerType];
  if (sub === undefined || sub === null) return null;
  return sub as Record<string, unknown>;
}

/** Linear factor of a rope dict ({rope_type|type, factor}); 1 for default/null; throws for other types. */
function linearFactor(fam: Family, scaling: unknown): number {
  if (scaling === undefined || scaling === null) return 1;
  const s = scaling as Record<string, unknown>;
  const type = (s.rope_type ?? s.type ?? "default") as string;
  if (type === "default") return 1;
  if (type === "linear" && fam !== "phi3") {
    const f = Number(s.factor);
    if (!(f > 0)) throw new Error("reference: linear rope scaling needs a positive factor");
    return f;
  }
  throw new Error(`reference: rope type ${type} not supported for ${fam}`);
}

function resolve(config: Config, opts: FamilyForwardOptions): Resolved {
  const fam = familyOf(config);
  const off = opts.off ?? new Set<Feature>();
  for (const f of off) {
    if (!FAMILY_FEATURES[fam].includes(f))
      throw new Error(`reference: feature ${f} does not apply to ${fam}`);
  }
  const on = (f: Feature) => !off.has(f);
  const gemma = fam === "gemma2" || fam === "gemma3_text";
  if (gemma && config.use_bidirectional_attention === true) {
    throw new Error("reference: use_bidirectional_attention is not supported");
  }
  const H = num(config, "hidden_size");
  const L = num(config, "num_hidden_layers");
  const nHeadsCfg = num(config, "num_attention_heads");

  let hd: number;
  if (fam === "qwen3") hd = num(config, "head_dim", 128);
  else if (gemma) hd = num(config, "head_dim", 256);
  else hd = num(config, "head_dim", H / nHeadsCfg);
  if (!Number.isInteger(hd) || hd % 2 !== 0) throw new Error(`reference: bad head_dim ${hd}`);

  // activation: Gemma 2/3 read hidden_activation only (the MLP does ACT2FN[config.hidden_activation])
  const actName = gemma
    ? (cfg(config, "hidden_activation", "gelu_pytorch_tanh") as string)
    : (cfg(config, "hidden_act", "silu") as string);
  let act = activation(actName);
  if (gemma && act === geluTanh && !on("geluTanh")) act = geluExact;

  // sliding window: Qwen3Config drops it unless use_sliding_window
  let window = cfg(config, "sliding_window", fam === "phi3" ? null : 4096) as number | null;
  if (fam === "qwen3" && config.use_sliding_window !== true) window = null;
  if (window !== null && !(typeof window === "number" && window > 0)) {
    throw new Error("reference: sliding_window must be a positive number or null");
  }
  const types = layerTypesOf(config, fam, L, window);
  const windows = types.map((t) => {
    if (t !== "sliding_attention" || !on("slidingWindow")) return Number.POSITIVE_INFINITY;
    // HF's create_sliding_window_causal_mask raises without a window
    if (window === null) throw new Error("reference: a sliding_attention layer but no sliding_window");
    return window;
  });

  // RoPE per layer type
  const ropeFor = (layerType: string): Rope => {
    let theta: number;
    let scaling: unknown;
    const rp = ropeParams(config, layerType);
    if (fam === "gemma3_text" && layerType === "sliding_attention" && on("localRopeBase")) {
      theta = Number(rp?.rope_theta ?? cfg(config, "rope_local_base_freq", 10000));
      scaling = rp; // transformers 5 may scale local layers too; 4.x never does
    } else if (fam === "gemma3_text") {
      const full = ropeParams(config, "full_attention");
      theta = Number(full?.rope_theta ?? cfg(config, "rope_theta", 1_000_000));
      scaling = full ?? config.rope_scaling;
    } else {
      theta = Number(rp?.rope_theta ?? cfg(config, "rope_theta", 10000));
      scaling = rp ?? config.rope_scaling;
    }
    if (!(theta > 0)) throw new Error("reference: rope theta must be positive");
    let rotDim = hd;
    if (fam === "phi3") {
      const prf = Number(rp?.partial_rotary_factor ?? cfg(config, "partial_rotary_factor", 1.0));
      rotDim = on("partialRotary") ? Math.floor(hd * prf) : hd;
      if (rotDim <= 0 || rotDim % 2 !== 0 || rotDim > hd)
        throw new Error(`reference: bad rotary dim ${rotDim}`);
    }
    const invFreq = ropeInvFreq(rotDim, theta);
    const factor = on("ropeScaling") ? linearFactor(fam, scaling) : 1;
    for (let i = 0; i < invFreq.length; i++) invFreq[i] /= factor; // HF scales inv_freq, not positions
    return { invFreq, rotDim };
  };
  const ropeByType = new Map<string, Rope>();
  const rope = types.map((t) => {
    let r = ropeByType.get(t);
    if (!r) {
      r = ropeFor(t);
      ropeByType.set(t, r);
    }
    return r;
  });

  const qpas = gemma ? num(config, "query_pre_attn_scalar", 256) : hd;
  return {
    fam,
    H,
    L,
    hd,
    eps: num(config, "rms_norm_eps", fam === "phi3" ? 1e-5 : 1e-6),
    normOffset: gemma && on("normOffset") ? 1 : 0,
    embedScale: gemma && on("embedScale") ? Math.sqrt(H) : 1,
    sandwich: gemma && on("sandwichNorms"),
    qkNorm: (fam === "qwen3" || fam === "gemma3_text") && on("qkNorm"),
    act,
    scale: (on("queryPreAttnScalar") ? qpas : hd) ** -0.5,
    attnSoftcap: fam === "gemma2" && on("attnSoftcap") ? capOf(config, "attn_logit_softcapping", 50) : null,
    finalSoftcap:
      fam === "gemma2" && on("finalSoftcap")
        ? capOf(config, "final_logit_softcapping", 30)
        : fam === "gemma3_text" && on("finalSoftcap")
          ? capOf(config, "final_logit_softcapping", null)
          : null,
    window: windows,
    rope,
    tie: config.tie_word_embeddings === undefined ? gemma : config.tie_word_embeddings === true,
    attentionBias: fam !== "phi3" && config.attention_bias === true,
  };
}

/**
 * The bias of a projection as HF would load it: with attention_bias the q/k/v/o biases must be present; a
 * bias tensor HF has no parameter for (no attention_bias, any MLP bias, any Phi-3 bias) is an error rather
 * than silently used or dropped.
 */
function biasOf(weights: WeightSource, name: string, allowed: boolean): W64 | undefined {
  const b = getOpt(weights, name);
  if (allowed && !b) throw new Error(`reference: attention_bias is true but ${name} is missing`);
  if (!allowed && b) throw new Error(`reference: ${name} present but HF's model has no such parameter`);
  return b;
}

// ---------------------------------------------------------------------------------------------------------
// the forward pass

/**
 * Full (no KV cache) forward pass of a Qwen3 / Gemma 2 / Gemma 3 / Phi-3 causal LM on one sequence of token ids.
 * Per-layer widths come from the weight shapes: nH_l = cols(o_proj) / head_dim, nKv_l = rows(k_proj) / head_dim
 * (Phi-3: (rows(qkv_proj) / head_dim − nH_l) / 2), ffn_l = cols(down_proj).
 */
export function referenceFamilyForward(
  config: Config,
  weights: WeightSource,
  ids: readonly number[],
  opts: FamilyForwardOptions = {},
): DecoderReferenceOutput {
  const T = ids.length;
  if (T === 0) throw new Error("reference: empty input");
  const mask = opts.attentionMask ?? new Array<number>(T).fill(1);
  const pos = opts.positionIds ?? Array.from({ length: T }, (_, t) => t);
  if (mask.length !== T || pos.length !== T) throw new Error("reference: attentionMask / positionIds length");
  const r = resolve(config, opts);
  const { H, hd, eps, normOffset } = r;
  const norm = (x: Float64Array, name: string, D = H) => rmsNorm(x, D, get(weights, name), eps, normOffset);

  // embeddings [T, H]
  const emb = get(weights, "model.embed_tokens.weight");
  const V = emb.shape[0];
  if (emb.shape[1] !== H) throw new Error("reference: embed_tokens width != hidden_size");
  let h: Float64Array = new Float64Array(T * H);
  for (let t = 0; t < T; t++) {
    const id = ids[t];
    if (!(Number.isInteger(id) && id >= 0 && id < V))
      throw new Error(`reference: token id ${id} out of range`);
    for (let i = 0; i < H; i++) h[t * H + i] = emb.data[id * H + i] * r.embedScale;
  }

  const attnTaps: Float64Array[] = [];
  const mlpTaps: Float64Array[] = [];
  const hidden: Float64Array[] = [];
  for (let l = 0; l < r.L; l++) {
    hidden.push(h.slice());
    if (opts.skipLayers?.has(l)) {
      attnTaps.push(new Float64Array(0));
      mlpTaps.push(new Float64Array(0));
      continue;
    }
    const p = `model.layers.${l}.`;
    const a = norm(h, `${p}input_layernorm.weight`); // [T, H]

    // ---- attention
    const oW = get(weights, `${p}self_attn.o_proj.weight`);
    const nH = oW.shape[1] / hd;
    let q: Float64Array; // [T, nH*hd]
    let k: Float64Array; // [T, nKv*hd]
    let v: Float64Array; // [T, nKv*hd]
    let nKv: number;
    if (r.fam === "phi3") {
      const qkvW = get(weights, `${p}self_attn.qkv_proj.weight`);
      biasOf(weights, `${p}self_attn.qkv_proj.bias`, false);
      nKv = (qkvW.shape[0] / hd - nH) / 2;
      if (!Number.isInteger(nH) || !Number.isInteger(nKv) || nKv < 0) {
        throw new Error(
          `reference: layer ${l} qkv_proj rows ${qkvW.shape[0]} vs o_proj columns ${oW.shape[1]}`,
        );
      }
      const qkv = nH === 0 ? new Float64Array(0) : linear(a, T, qkvW); // [T, (nH + 2 nKv)*hd]
      const w = (nH + 2 * nKv) * hd;
      q = new Float64Array(T * nH * hd);
      k = new Float64Array(T * nKv * hd);
      v = new Float64Array(T * nKv * hd);
      for (let t = 0; t < T && nH > 0; t++) {
        q.set(qkv.subarray(t * w, t * w + nH * hd), t * nH * hd);
        k.set(qkv.subarray(t * w + nH * hd, t * w + (nH + nKv) * hd), t * nKv * hd);
        v.set(qkv.subarray(t * w + (nH + nKv) * hd, (t + 1) * w), t * nKv * hd);
      }
    } else {
      const qW = get(weights, `${p}self_attn.q_proj.weight`);
      const kW = get(weights, `${p}self_attn.k_proj.weight`);
      const vW = get(weights, `${p}self_attn.v_proj.weight`);
      nKv = kW.shape[0] / hd;
      if (qW.shape[0] !== nH * hd || !Number.isInteger(nKv) || vW.shape[0] !== kW.shape[0]) {
        throw new Error(`reference: layer ${l} q/k/v/o shapes disagree with head_dim ${hd}`);
      }
      const bq = biasOf(weights, `${p}self_attn.q_proj.bias`, r.attentionBias && nH > 0);
      const bk = biasOf(weights, `${p}self_attn.k_proj.bias`, r.attentionBias && nH > 0);
      const bv = biasOf(weights, `${p}self_attn.v_proj.bias`, r.attentionBias && nH > 0);
      q = nH === 0 ? new Float64Array(0) : linear(a, T, qW, bq);
      k = nH === 0 ? new Float64Array(0) : linear(a, T, kW, bk);
      v = nH === 0 ? new Float64Array(0) : linear(a, T, vW, bv);
    }
    let ctx: Float64Array; // [T, nH*hd]
    if (nH === 0) {
      ctx = new Float64Array(0);
    } else {
      if (r.qkNorm) {
        q = norm(q, `${p}self_attn.q_norm.weight`, hd);
        k = norm(k, `${p}self_attn.k_norm.weight`, hd);
      }
      applyRope(q, T, nH, hd, r.rope[l], pos);
      applyRope(k, T, nKv, hd, r.rope[l], pos);
      const W = r.window[l];
      const visible = (i: number, j: number) => j <= i && i - j < W && mask[j] === 1;
      ctx = attention(q, k, v, T, nH, nKv, hd, r.scale, r.attnSoftcap, visible);
    }
    attnTaps.push(ctx);
    const oB = biasOf(weights, `${p}self_attn.o_proj.bias`, r.attentionBias);
    let attnOut = nH === 0 ? broadcastBias(T, H, oB) : linear(ctx, T, oW, oB); // [T, H]
    if (r.sandwich) attnOut = norm(attnOut, `${p}post_attention_layernorm.weight`);
    addInPlace(h, attnOut);

    // ---- MLP
    const m = norm(
      h,
      r.fam.startsWith("gemma")
        ? `${p}pre_feedforward_layernorm.weight`
        : `${p}post_attention_layernorm.weight`,
    );
    const dW = get(weights, `${p}mlp.down_proj.weight`);
    biasOf(weights, `${p}mlp.down_proj.bias`, false);
    const F = dW.shape[1];
    let g: Float64Array; // [T, F]
    let u: Float64Array; // [T, F]
    if (r.fam === "phi3") {
      const guW = get(weights, `${p}mlp.gate_up_proj.weight`);
      biasOf(weights, `${p}mlp.gate_up_proj.bias`, false);
      if (guW.shape[0] !== 2 * F) throw new Error(`reference: layer ${l} gate_up_proj rows != 2 · ffn ${F}`);
      const gu = F === 0 ? new Float64Array(0) : linear(m, T, guW); // [T, 2F]: gate | up
      g = new Float64Array(T * F);
      u = new Float64Array(T * F);
      for (let t = 0; t < T && F > 0; t++) {
        g.set(gu.subarray(t * 2 * F, t * 2 * F + F), t * F);
        u.set(gu.subarray(t * 2 * F + F, (t + 1) * 2 * F), t * F);
      }
    } else {
      const gW = get(weights, `${p}mlp.gate_proj.weight`);
      const uW = get(weights, `${p}mlp.up_proj.weight`);
      biasOf(weights, `${p}mlp.gate_proj.bias`, false);
      biasOf(weights, `${p}mlp.up_proj.bias`, false);
      if (gW.shape[0] !== F || uW.shape[0] !== F)
        throw new Error(`reference: layer ${l} FFN widths disagree`);
      g = F === 0 ? new Float64Array(0) : linear(m, T, gW);
      u = F === 0 ? new Float64Array(0) : linear(m, T, uW);
    }
    const act = new Float64Array(T * F); // [T, F]: the input of down_proj
    for (let i = 0; i < act.length; i++) act[i] = r.act(g[i]) * u[i];
    mlpTaps.push(act);
    let mlpOut = F === 0 ? new Float64Array(T * H) : linear(act, T, dW); // [T, H]
    if (r.sandwich) mlpOut = norm(mlpOut, `${p}post_feedforward_layernorm.weight`);
    addInPlace(h, mlpOut);
  }

  hidden.push(h.slice());
  h = norm(h, "model.norm.weight");
  const lmHead = r.tie ? emb : (getOpt(weights, "lm_head.weight") ?? emb);
  const logits = linear(h, T, lmHead); // [T, V]
  const cap = r.finalSoftcap;
  if (cap !== null) for (let i = 0; i < logits.length; i++) logits[i] = Math.tanh(logits[i] / cap) * cap;
  return { logits, attnTaps, mlpTaps, hidden };
}

/**
 * Greedy decoding with the family reference: `steps` argmax tokens, recomputing the full sequence each step
 * (no EOS stopping, no padding). Returns only the new ids.
 */
export function referenceFamilyGreedy(
  config: Config,
  weights: WeightSource,
  prompt: readonly number[],
  steps: number,
  opts: Pick<FamilyForwardOptions, "off"> = {},
): number[] {
  const ids = [...prompt];
  const out: number[] = [];
  for (let s = 0; s < steps; s++) {
    const { logits } = referenceFamilyForward(config, weights, ids, opts);
    const V = logits.length / ids.length;
    const next = argmax(logits, (ids.length - 1) * V, V);
    ids.push(next);
    out.push(next);
  }
  return out;
}
