/**
 * Tiny, seeded models in Hugging Face folder form for the families added after Llama/Qwen2/BERT:
 * Qwen3 (`Qwen3ForCausalLM`), Gemma 2 (`Gemma2ForCausalLM`), Gemma 3 text (`Gemma3ForCausalLM`, model_type
 * `gemma3_text`) and Phi-3 (`Phi3ForCausalLM`). They return the same {@link TinyModel} as `makeTinyLlama`, so
 * `writeTinyModel` / `tensorMap` work on them unchanged.
 *
 * Tensor names are exactly those of the HF checkpoints; config.json carries the keys a real checkpoint of the
 * family carries (transformers 4.x layout by default: `rope_theta`, `rope_scaling`, `rope_local_base_freq`,
 * `partial_rotary_factor`; with `configStyle: "v5"` the transformers 5 layout: `rope_parameters`, flat for
 * Qwen3 / Gemma 2 / Phi-3 and keyed by layer type for Gemma 3, plus explicit `layer_types`).
 *
 * Weights are N(0, 0.1)-ish. Norm weights are 1 + small noise for x̂·w norms (Qwen3, Phi-3) and small noise
 * around 0 for Gemma's x̂·(1 + w) norms, so that both forms are exercised with non-trivial numbers. Per-layer
 * widths (heads, KV heads, FFN channels) can differ, as in a pruned model; the widths are then also stated in
 * `config.pare_layer_widths`.
 *
 * Token ids: bos 1, eos 2, pad 0 for every family (matching `makeByteBpeTokenizerJson`'s `<s>` / `</s>` /
 * `<unk>`), not the real checkpoints' ids.
 */
import { Rng } from "./rng.ts";
import type { TinyModel, TinyTensor } from "./tinyModels.ts";

export type LayerType = "sliding_attention" | "full_attention";

/** Options every family builder accepts. */
export interface TinyFamilyOptions {
  seed?: number;
  vocab?: number;
  hidden?: number;
  layers?: number;
  heads?: number;
  kvHeads?: number;
  headDim?: number;
  intermediate?: number;
  /** tie_word_embeddings (then no lm_head.weight). Default: false for Qwen3 / Phi-3, true for Gemma. */
  tie?: boolean;
  /** Per-layer widths (a pruned model); each array has one entry per layer. Also writes pare_layer_widths. */
  perLayer?: { heads?: number[]; kvHeads?: number[]; intermediate?: number[] };
  /** config.sliding_window (default 4, so that 10+ token inputs exceed it); null = none. */
  slidingWindow?: number | null;
  /** "v4" (default): rope_theta / rope_scaling / … at the top level; "v5": rope_parameters. */
  configStyle?: "v4" | "v5";
}

export interface TinyQwen3Options extends TinyFamilyOptions {
  /** attention_bias: q, k, v and o_proj biases (Qwen3 gives o_proj a bias too). Default false. */
  attentionBias?: boolean;
  /** use_sliding_window (default false: then sliding_window must be ignored, as in HF). */
  useSlidingWindow?: boolean;
  /** max_window_layers (default: the number of layers, as real Qwen3 checkpoints). */
  maxWindowLayers?: number;
  /** explicit layer_types (overrides max_window_layers in HF). */
  layerTypes?: LayerType[];
}

export interface TinyGemma2Options extends TinyFamilyOptions {
  /** attention_bias: q, k, v, o biases. Default false. */
  attentionBias?: boolean;
  /** query_pre_attn_scalar (default 24, ≠ head_dim 16 so that the scale matters). */
  queryPreAttnScalar?: number;
  /**
   * attn_logit_softcapping (default 5.0: active on the tiny random weights, whose q/k are drawn a little larger
   * for that; switching it off moves the logits by ~8% of their scale).
   */
  attnSoftcap?: number | null;
  /**
   * final_logit_softcapping (default 8.0: the raw logits reach ~13, so capping is active without saturating;
   * 3.0 would squash every top logit to ≈ 3 and leave argmax gaps of ~1e-3).
   */
  finalSoftcap?: number | null;
  /** explicit layer_types (default: not written; HF's default is sliding on even layers). */
  layerTypes?: LayerType[];
}

export interface TinyGemma3Options extends TinyFamilyOptions {
  attentionBias?: boolean;
  /** query_pre_attn_scalar (default 24). */
  queryPreAttnScalar?: number;
  /** attn_logit_softcapping (default null; HF's Gemma 3 does not apply it even when set). */
  attnSoftcap?: number | null;
  /** final_logit_softcapping (default null, as in the real checkpoints). */
  finalSoftcap?: number | null;
  /** sliding_window_pattern (default 3: with 4 layers, layers 0, 1, 3 slide and layer 2 is global). */
  slidingWindowPattern?: number;
  /** explicit layer_types (written in addition to sliding_window_pattern; wins in HF). */
  layerTypes?: LayerType[];
  /** rope_theta of the global layers (default 1e6). */
  ropeTheta?: number;
  /** rope_local_base_freq of the sliding layers (default 1e4). */
  ropeLocalBaseFreq?: number;
  /** rope_scaling of the global layers (default linear × 8, as gemma-3-4b and larger; null for none). */
  ropeScaling?: { rope_type: "linear"; factor: number } | null;
}

export interface TinyPhi3Options extends TinyFamilyOptions {
  /** partial_rotary_factor (default 0.5: RoPE on the first half of each head). */
  partialRotaryFactor?: number;
}

// ---------------------------------------------------------------------------------------------------------
// shared plumbing

interface Dims {
  V: number;
  H: number;
  L: number;
  nH: number;
  nKv: number;
  hd: number;
  F: number;
  headsL: number[];
  kvL: number[];
  ffnL: number[];
}

function perLayerValues(
  values: number[] | undefined,
  layers: number,
  fallback: number,
  what: string,
): number[] {
  if (!values) return new Array(layers).fill(fallback);
  if (values.length !== layers) throw new Error(`tinyFamilies: perLayer.${what} needs ${layers} entries`);
  return values;
}

function dimsOf(opts: TinyFamilyOptions, defaults: { layers: number; headDim: number }): Dims {
  const L = opts.layers ?? defaults.layers;
  const nH = opts.heads ?? 4;
  const nKv = opts.kvHeads ?? 2;
  const F = opts.intermediate ?? 48;
  const d: Dims = {
    V: opts.vocab ?? 300,
    H: opts.hidden ?? 32,
    L,
    nH,
    nKv,
    hd: opts.headDim ?? defaults.headDim,
    F,
    headsL: perLayerValues(opts.perLayer?.heads, L, nH, "heads"),
    kvL: perLayerValues(opts.perLayer?.kvHeads, L, nKv, "kvHeads"),
    ffnL: perLayerValues(opts.perLayer?.intermediate, L, F, "intermediate"),
  };
  for (let l = 0; l < L; l++) {
    if (d.kvL[l] > 0 ? d.headsL[l] % d.kvL[l] !== 0 : d.headsL[l] !== 0) {
      throw new Error(
        `tinyFamilies: layer ${l}: ${d.headsL[l]} heads not a multiple of ${d.kvL[l]} kv heads`,
      );
    }
  }
  return d;
}

/** A tensor list with seeded N(mean, std²) initialisers. */
class TensorBuilder {
  readonly tensors: TinyTensor[] = [];
  private readonly rng: Rng;
  constructor(seed: number) {
    this.rng = new Rng(seed);
  }
  add(name: string, shape: number[], std = 0.1, mean = 0): void {
    const n = shape.reduce((a, b) => a * b, 1);
    this.tensors.push({ name, shape, data: this.rng.randn(n, std, mean) });
  }
}

/** pare_layer_widths, as a pruned model's config states them (only when perLayer was given). */
function layerWidths(d: Dims): Record<string, number>[] {
  return d.headsL.map((h, l) => ({
    num_attention_heads: h,
    num_key_value_heads: d.kvL[l],
    intermediate_size: d.ffnL[l],
  }));
}

/** The config keys every family writes (HF names). */
function commonConfig(d: Dims, arch: string, modelType: string, tie: boolean): Record<string, unknown> {
  return {
    architectures: [arch],
    model_type: modelType,
    vocab_size: d.V,
    hidden_size: d.H,
    intermediate_size: d.F,
    num_hidden_layers: d.L,
    num_attention_heads: d.nH,
    num_key_value_heads: d.nKv,
    max_position_embeddings: 128,
    initializer_range: 0.02,
    attention_dropout: 0.0,
    tie_word_embeddings: tie,
    bos_token_id: 1,
    eos_token_id: 2,
    pad_token_id: 0,
    torch_dtype: "float32",
    use_cache: true,
  };
}

function checkLayerTypes(types: LayerType[] | undefined, L: number): void {
  if (types && types.length !== L) throw new Error(`tinyFamilies: layerTypes needs ${L} entries`);
}

// ---------------------------------------------------------------------------------------------------------
// Qwen3

/**
 * A seeded Qwen3ForCausalLM. Defaults: vocab 300, hidden 32, 2 layers, 4 heads, 2 KV heads, head_dim 8,
 * FFN 48, untied, no attention bias, sliding_window 4 with use_sliding_window false (so: no window).
 * Tensors: Llama's plus `model.layers.{i}.self_attn.q_norm.weight` / `k_norm.weight` ([head_dim], around 1).
 */
export function makeTinyQwen3(opts: TinyQwen3Options = {}): TinyModel {
  const d = dimsOf(opts, { layers: 2, headDim: 8 });
  const tie = opts.tie ?? false;
  const bias = opts.attentionBias ?? false;
  checkLayerTypes(opts.layerTypes, d.L);
  const b = new TensorBuilder(opts.seed ?? 0);
  const norm = (name: string, n = d.H) => b.add(name, [n], 0.1, 1);

  b.add("model.embed_tokens.weight", [d.V, d.H], 0.5);
  for (let l = 0; l < d.L; l++) {
    const p = `model.layers.${l}.`;
    const q = d.headsL[l] * d.hd;
    const kv = d.kvL[l] * d.hd;
    norm(`${p}input_layernorm.weight`);
    b.add(`${p}self_attn.q_proj.weight`, [q, d.H]);
    b.add(`${p}self_attn.k_proj.weight`, [kv, d.H]);
    b.add(`${p}self_attn.v_proj.weight`, [kv, d.H]);
    if (bias) {
      b.add(`${p}self_attn.q_proj.bias`, [q], 0.05);
      b.add(`${p}self_attn.k_proj.bias`, [kv], 0.05);
      b.add(`${p}self_attn.v_proj.bias`, [kv], 0.05);
    }
    norm(`${p}self_attn.q_norm.weight`, d.hd);
    norm(`${p}self_attn.k_norm.weight`, d.hd);
    b.add(`${p}self_attn.o_proj.weight`, [d.H, q]);
    if (bias) b.add(`${p}self_attn.o_proj.bias`, [d.H], 0.05);
    norm(`${p}post_attention_layernorm.weight`);
    b.add(`${p}mlp.gate_proj.weight`, [d.ffnL[l], d.H]);
    b.add(`${p}mlp.up_proj.weight`, [d.ffnL[l], d.H]);
    b.add(`${p}mlp.down_proj.weight`, [d.H, d.ffnL[l]]);
  }
  norm("model.norm.weight");
  if (!tie) b.add("lm_head.weight", [d.V, d.H]);

  const useSW = opts.useSlidingWindow ?? false;
  const window = opts.slidingWindow === undefined ? 4 : opts.slidingWindow;
  const maxWindowLayers = opts.maxWindowLayers ?? d.L;
  const config: Record<string, unknown> = {
    ...commonConfig(d, "Qwen3ForCausalLM", "qwen3", tie),
    hidden_act: "silu",
    head_dim: d.hd,
    rms_norm_eps: 1e-6,
    attention_bias: bias,
    use_sliding_window: useSW,
    sliding_window: window,
    max_window_layers: maxWindowLayers,
    transformers_version: "4.51.0",
  };
  if (opts.layerTypes) config.layer_types = [...opts.layerTypes];
  const theta = 1_000_000.0;
  if (opts.configStyle === "v5") {
    // transformers 5 saves the window as None when use_sliding_window is false, and the resolved layer_types
    const effective = useSW ? window : null;
    config.sliding_window = effective;
    config.layer_types =
      opts.layerTypes ??
      Array.from({ length: d.L }, (_, i) =>
        effective !== null && i >= maxWindowLayers ? "sliding_attention" : "full_attention",
      );
    config.rope_parameters = { rope_type: "default", rope_theta: theta };
    config.transformers_version = "5.0.0";
  } else {
    config.rope_theta = theta;
    config.rope_scaling = null;
  }
  if (opts.perLayer) config.pare_layer_widths = layerWidths(d);
  return { config, tensors: b.tensors };
}

// ---------------------------------------------------------------------------------------------------------
// Gemma 2 / Gemma 3

function gemmaTensors(d: Dims, opts: TinyGemma2Options | TinyGemma3Options, qkNorm: boolean, tie: boolean) {
  const b = new TensorBuilder(opts.seed ?? 0);
  const bias = opts.attentionBias ?? false;
  // Gemma norms are x̂·(1 + w): weights around 0
  const norm = (name: string, n = d.H) => b.add(name, [n], 0.1, 0);
  b.add("model.embed_tokens.weight", [d.V, d.H], 0.5);
  for (let l = 0; l < d.L; l++) {
    const p = `model.layers.${l}.`;
    const q = d.headsL[l] * d.hd;
    const kv = d.kvL[l] * d.hd;
    norm(`${p}input_layernorm.weight`);
    // q/k a little larger than the rest so that attention-logit soft-capping is active on random weights
    b.add(`${p}self_attn.q_proj.weight`, [q, d.H], 0.25);
    b.add(`${p}self_attn.k_proj.weight`, [kv, d.H], 0.25);
    b.add(`${p}self_attn.v_proj.weight`, [kv, d.H]);
    if (bias) {
      b.add(`${p}self_attn.q_proj.bias`, [q], 0.05);
      b.add(`${p}self_attn.k_proj.bias`, [kv], 0.05);
      b.add(`${p}self_attn.v_proj.bias`, [kv], 0.05);
    }
    if (qkNorm) {
      norm(`${p}self_attn.q_norm.weight`, d.hd);
      norm(`${p}self_attn.k_norm.weight`, d.hd);
    }
    b.add(`${p}self_attn.o_proj.weight`, [d.H, q]);
    if (bias) b.add(`${p}self_attn.o_proj.bias`, [d.H], 0.05);
    norm(`${p}post_attention_layernorm.weight`);
    norm(`${p}pre_feedforward_layernorm.weight`);
    b.add(`${p}mlp.gate_proj.weight`, [d.ffnL[l], d.H]);
    b.add(`${p}mlp.up_proj.weight`, [d.ffnL[l], d.H]);
    b.add(`${p}mlp.down_proj.weight`, [d.H, d.ffnL[l]]);
    norm(`${p}post_feedforward_layernorm.weight`);
  }
  norm("model.norm.weight");
  if (!tie) b.add("lm_head.weight", [d.V, d.H], 0.5);
  return b.tensors;
}

function checkGemmaHeads(d: Dims): void {
  // Gemma2Config / Gemma3TextConfig.validate_architecture
  if (d.H % d.nH !== 0)
    throw new Error("tinyFamilies: Gemma needs hidden_size divisible by num_attention_heads");
}

/**
 * A seeded Gemma2ForCausalLM. Defaults: vocab 300, hidden 32, 3 layers (layers 0 and 2 sliding, 1 global:
 * HF's default layer_types), 4 heads, 2 KV heads, head_dim 16, FFN 48, tied, query_pre_attn_scalar 24,
 * attn_logit_softcapping 5.0, final_logit_softcapping 8.0, sliding_window 4.
 */
export function makeTinyGemma2(opts: TinyGemma2Options = {}): TinyModel {
  const d = dimsOf(opts, { layers: 3, headDim: 16 });
  checkGemmaHeads(d);
  checkLayerTypes(opts.layerTypes, d.L);
  const tie = opts.tie ?? true;
  const tensors = gemmaTensors(d, opts, false, tie);
  const config: Record<string, unknown> = {
    ...commonConfig(d, "Gemma2ForCausalLM", "gemma2", tie),
    head_dim: d.hd,
    hidden_act: "gelu_pytorch_tanh",
    hidden_activation: "gelu_pytorch_tanh",
    rms_norm_eps: 1e-6,
    attention_bias: opts.attentionBias ?? false,
    query_pre_attn_scalar: opts.queryPreAttnScalar ?? 24,
    sliding_window: opts.slidingWindow === undefined ? 4 : opts.slidingWindow,
    attn_logit_softcapping: opts.attnSoftcap === undefined ? 5.0 : opts.attnSoftcap,
    final_logit_softcapping: opts.finalSoftcap === undefined ? 8.0 : opts.finalSoftcap,
    cache_implementation: "hybrid",
    transformers_version: "4.42.4",
  };
  if (opts.layerTypes) config.layer_types = [...opts.layerTypes];
  if (opts.configStyle === "v5") {
    config.layer_types =
      opts.layerTypes ??
      Array.from({ length: d.L }, (_, i) => ((i + 1) % 2 ? "sliding_attention" : "full_attention"));
    config.rope_parameters = { rope_type: "default", rope_theta: 10000.0 };
    delete config.cache_implementation;
    config.transformers_version = "5.0.0";
  } else {
    config.rope_theta = 10000.0;
  }
  if (opts.perLayer) config.pare_layer_widths = layerWidths(d);
  return { config, tensors };
}

/**
 * A seeded Gemma3ForCausalLM (model_type gemma3_text). Defaults: vocab 300, hidden 32, 4 layers with
 * sliding_window_pattern 3 (layers 0, 1, 3 sliding, layer 2 global), 4 heads, 2 KV heads, head_dim 16, FFN 48,
 * tied, query_pre_attn_scalar 24, sliding_window 4, rope_theta 1e6 with linear rope_scaling × 8 for the global
 * layers, rope_local_base_freq 1e4 for the sliding ones, no soft-capping. Tensors: Gemma 2's plus
 * `self_attn.q_norm.weight` / `k_norm.weight` ([head_dim], around 0: they are (1 + w) norms too).
 */
export function makeTinyGemma3(opts: TinyGemma3Options = {}): TinyModel {
  const d = dimsOf(opts, { layers: 4, headDim: 16 });
  checkGemmaHeads(d);
  checkLayerTypes(opts.layerTypes, d.L);
  const tie = opts.tie ?? true;
  const tensors = gemmaTensors(d, opts, true, tie);
  const pattern = opts.slidingWindowPattern ?? 3;
  const theta = opts.ropeTheta ?? 1_000_000.0;
  const localTheta = opts.ropeLocalBaseFreq ?? 10_000.0;
  const scaling = opts.ropeScaling === undefined ? { rope_type: "linear", factor: 8.0 } : opts.ropeScaling;
  const config: Record<string, unknown> = {
    ...commonConfig(d, "Gemma3ForCausalLM", "gemma3_text", tie),
    head_dim: d.hd,
    hidden_activation: "gelu_pytorch_tanh",
    rms_norm_eps: 1e-6,
    attention_bias: opts.attentionBias ?? false,
    query_pre_attn_scalar: opts.queryPreAttnScalar ?? 24,
    sliding_window: opts.slidingWindow === undefined ? 4 : opts.slidingWindow,
    sliding_window_pattern: pattern,
    attn_logit_softcapping: opts.attnSoftcap ?? null,
    final_logit_softcapping: opts.finalSoftcap ?? null,
    cache_implementation: "hybrid",
    transformers_version: "4.50.0",
  };
  if (opts.layerTypes) config.layer_types = [...opts.layerTypes];
  if (opts.configStyle === "v5") {
    config.layer_types =
      opts.layerTypes ??
      Array.from({ length: d.L }, (_, i) => ((i + 1) % pattern ? "sliding_attention" : "full_attention"));
    delete config.sliding_window_pattern;
    delete config.cache_implementation;
    config.rope_parameters = {
      full_attention: scaling
        ? { ...scaling, rope_theta: theta }
        : { rope_type: "default", rope_theta: theta },
      sliding_attention: { rope_type: "default", rope_theta: localTheta },
    };
    config.transformers_version = "5.0.0";
  } else {
    config.rope_theta = theta;
    config.rope_local_base_freq = localTheta;
    config.rope_scaling = scaling ? { ...scaling } : null;
  }
  if (opts.perLayer) config.pare_layer_widths = layerWidths(d);
  return { config, tensors };
}

// ---------------------------------------------------------------------------------------------------------
// Phi-3

/**
 * A seeded Phi3ForCausalLM. Defaults: vocab 300, hidden 32, 2 layers, 4 heads, 2 KV heads, head_dim 8
 * (= hidden / heads, as Phi-3 derives it; `head_dim` is written only when it differs), FFN 48, untied,
 * partial_rotary_factor 0.5, sliding_window 4 (applied to every layer by HF). Tensors: fused
 * `self_attn.qkv_proj.weight` [(heads + 2·kv_heads)·head_dim, hidden] (rows q | k | v) and
 * `mlp.gate_up_proj.weight` [2·ffn, hidden] (rows gate | up); no biases.
 */
export function makeTinyPhi3(opts: TinyPhi3Options = {}): TinyModel {
  const H = opts.hidden ?? 32;
  const nH = opts.heads ?? 4;
  const d = dimsOf(opts, { layers: 2, headDim: H / nH });
  if (!Number.isInteger(d.hd))
    throw new Error("tinyFamilies: Phi-3 needs head_dim (or hidden / heads) integral");
  const tie = opts.tie ?? false;
  const b = new TensorBuilder(opts.seed ?? 0);
  const norm = (name: string) => b.add(name, [d.H], 0.1, 1);

  b.add("model.embed_tokens.weight", [d.V, d.H], 0.5);
  for (let l = 0; l < d.L; l++) {
    const p = `model.layers.${l}.`;
    const q = d.headsL[l] * d.hd;
    const kv = d.kvL[l] * d.hd;
    norm(`${p}input_layernorm.weight`);
    b.add(`${p}self_attn.qkv_proj.weight`, [q + 2 * kv, d.H]);
    b.add(`${p}self_attn.o_proj.weight`, [d.H, q]);
    norm(`${p}post_attention_layernorm.weight`);
    b.add(`${p}mlp.gate_up_proj.weight`, [2 * d.ffnL[l], d.H]);
    b.add(`${p}mlp.down_proj.weight`, [d.H, d.ffnL[l]]);
  }
  norm("model.norm.weight");
  if (!tie) b.add("lm_head.weight", [d.V, d.H]);

  const prf = opts.partialRotaryFactor ?? 0.5;
  const config: Record<string, unknown> = {
    ...commonConfig(d, "Phi3ForCausalLM", "phi3", tie),
    hidden_act: "silu",
    rms_norm_eps: 1e-5,
    attention_bias: false,
    resid_pdrop: 0.0,
    embd_pdrop: 0.0,
    original_max_position_embeddings: 128,
    sliding_window: opts.slidingWindow === undefined ? 4 : opts.slidingWindow,
    transformers_version: "4.45.0",
  };
  if (d.hd !== d.H / d.nH) config.head_dim = d.hd;
  if (opts.configStyle === "v5") {
    config.rope_parameters = { rope_type: "default", rope_theta: 10000.0, partial_rotary_factor: prf };
    config.transformers_version = "5.0.0";
  } else {
    config.rope_theta = 10000.0;
    config.rope_scaling = null;
    config.partial_rotary_factor = prf;
  }
  if (opts.perLayer) config.pare_layer_widths = layerWidths(d);
  return { config, tensors: b.tensors };
}
