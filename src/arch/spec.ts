/**
 * Architectures as data. A family is a spec: its config keys, tensor names (with fused tensors and
 * their offsets), pruning groups (which tensors a unit cuts by rows, which by columns), norms,
 * activation and semantics flags. Model building, graph emission, surgery, parameter counting and the
 * cost model read these fields; nothing else in pare names a family. docs/adding-a-family.md walks
 * through adding one.
 */

/** The modules of a block that pruning and the forward know by role. */
export type ModuleRole = "q" | "k" | "v" | "o" | "gate" | "up" | "down";

export interface BlockSpec {
  norm: "rms" | "layer";
  /** RMSNorm scales by (offset + w): 0 for Llama-style `x̂·w`, 1 for Gemma's `x̂·(1 + w)` */
  normOffset: 0 | 1;
  placement: "pre" | "post";
  positional: "rope" | "absolute";
  mlp: "gated" | "plain";
  causal: boolean;
}

/** Module paths (without `.weight` / `.bias`); `{i}` is the layer index, `{p}` the checkpoint prefix. */
export interface TensorNames {
  embed: string;
  posEmbed?: string;
  typeEmbed?: string;
  embedNorm?: string;
  q: string;
  k: string;
  v: string;
  o: string;
  /** before attention (pre-norm) or after the attention residual (post-norm) */
  norm1: string;
  /** before the MLP (pre-norm) or after the MLP residual (post-norm) */
  norm2: string;
  /** per-head norms of queries and keys over head_dim, before RoPE (Qwen3, Gemma 3) */
  qNorm?: string;
  kNorm?: string;
  /** norm of the attention output before its residual add (Gemma's post_attention_layernorm) */
  attnOutNorm?: string;
  /** norm of the MLP output before its residual add (Gemma's post_feedforward_layernorm) */
  mlpOutNorm?: string;
  gate?: string;
  up: string;
  down: string;
  finalNorm?: string;
  lmHead?: string;
  pooler?: string;
  classifier?: string;
}

/** How many rows a unit owns in a producer, or columns in a consumer. */
export type RowUnit = "head" | "kv" | "channel";

/**
 * A tensor stored fused: its rows are the concatenation of several roles' rows (Phi-3's qkv_proj =
 * q | k | v, gate_up_proj = gate | up). The roles' names in `names` are views `<path>[<role>]`; pare
 * reads the parts through them and writes the fused tensor back. Part widths follow the layer's dims.
 */
export interface FusedTensor {
  path: string;
  parts: { role: ModuleRole; rows: RowUnit }[];
}

/**
 * One pruning group: the unit (KV group of attention heads, or FFN channel), the producers cut by
 * rows (per unit: a head's head_dim rows for each query head of the group, one KV head's rows, or one
 * channel's row), and the consumer cut by columns, whose output reconstruction repairs.
 */
export interface PruneGroup {
  producers: { role: ModuleRole; rows: RowUnit }[];
  consumer: ModuleRole;
  /** the consumer's columns per unit */
  consumerCols: RowUnit;
}

/**
 * Which layers use a sliding attention window. `layer_types` in config.json ("sliding_attention" /
 * "full_attention" per layer) wins when present; otherwise the family's rule:
 * - `all`: every layer when `sliding_window` is a positive number (and `enableKey` is not false);
 * - `from`: layers i ≥ config[fromKey], only when config[enableKey] is true (Qwen2/Qwen3's max_window_layers);
 * - `period`: layer i is sliding unless (i + 1) is a multiple of the period (config[periodKey] or the default;
 *   Gemma 2 alternates with period 2, Gemma 3 uses sliding_window_pattern 6).
 */
export type WindowRule =
  | { kind: "none" }
  | { kind: "all"; enableKey?: string }
  | { kind: "from"; enableKey: string; fromKey: string }
  | { kind: "period"; periodKey?: string; period: number };

/** config.json keys (the Hugging Face names; a family overrides those it spells differently). */
export interface ConfigKeys {
  hidden: string;
  heads: string;
  kvHeads: string;
  headDim: string;
  ffn: string;
  layers: string;
  vocab: string;
  maxPos: string;
  eps: string;
  ropeTheta: string;
  /** keys holding the activation name, first present wins */
  act: string[];
}

export interface Semantics {
  /** activation when config.json names none */
  defaultAct: "silu" | "gelu" | "gelu_tanh";
  /** embeddings are multiplied by √hidden_size (Gemma) */
  embedScale: boolean;
  /** attention scale = config[key]^−½ instead of head_dim^−½ (Gemma's query_pre_attn_scalar) */
  attnScaleKey?: string;
  /** attention logits soft-capped: cap·tanh(s / cap), cap = config[key] when set (Gemma 2) */
  attnSoftcapKey?: string;
  /** final logits soft-capped likewise (Gemma 2) */
  finalSoftcapKey?: string;
  /** RoPE on the first ⌊head_dim · config[key]⌋ dimensions of each head only (Phi-3) */
  partialRotaryKey?: string;
  /** sliding layers use config[key] as their RoPE base, without rope_scaling (Gemma 3) */
  localRopeThetaKey?: string;
  window: WindowRule;
}

export interface ArchSpec {
  family: string;
  /** config.architectures values this spec accepts, mapped to the head they carry. */
  architectures: Record<string, "lm" | "classifier" | "none">;
  modelTypes: string[];
  kind: "decoder" | "encoder";
  block: BlockSpec;
  names: TensorNames;
  fused: FusedTensor[];
  groups: { attn: PruneGroup; mlp: PruneGroup };
  keys: ConfigKeys;
  /**
   * Values the family's Hugging Face config class uses when config.json omits a key (read, never
   * written back): e.g. Gemma's head_dim 256 and sliding_window 4096.
   */
  configDefaults: Record<string, unknown>;
  semantics: Semantics;
  /** default norm epsilon when config.json has none */
  epsDefault: number;
  /** prefixes under which a checkpoint may store the names (first that matches wins) */
  prefixes: string[];
  /**
   * How stock loaders learn that projections carry biases: the config flag and the modules it
   * switches on together (a consumer bias created by reconstruction sets the flag and zero biases
   * for the rest). Absent: the family cannot express a created bias in its config.
   */
  biasFlags?: { attention?: BiasFlag; mlp?: BiasFlag };
  /** how a pruned model states its attention widths: per-layer head counts in config, or HF's `pruned_heads` */
  headsInConfig: "counts" | "pruned_heads";
  /** the families table: where a pruned model of this family loads besides pare */
  loads?: string;
}

export interface BiasFlag {
  key: string;
  modules: ModuleRole[];
}

const HF_KEYS: ConfigKeys = {
  hidden: "hidden_size",
  heads: "num_attention_heads",
  kvHeads: "num_key_value_heads",
  headDim: "head_dim",
  ffn: "intermediate_size",
  layers: "num_hidden_layers",
  vocab: "vocab_size",
  maxPos: "max_position_embeddings",
  eps: "rms_norm_eps",
  ropeTheta: "rope_theta",
  act: ["hidden_act"],
};

/** GQA attention: q rows per query head, k/v rows per KV head, o columns per query head. */
const GQA_GROUP: PruneGroup = {
  producers: [
    { role: "q", rows: "head" },
    { role: "k", rows: "kv" },
    { role: "v", rows: "kv" },
  ],
  consumer: "o",
  consumerCols: "head",
};
const GATED_MLP_GROUP: PruneGroup = {
  producers: [
    { role: "gate", rows: "channel" },
    { role: "up", rows: "channel" },
  ],
  consumer: "down",
  consumerCols: "channel",
};

const LLAMA_NAMES: TensorNames = {
  embed: "model.embed_tokens",
  q: "model.layers.{i}.self_attn.q_proj",
  k: "model.layers.{i}.self_attn.k_proj",
  v: "model.layers.{i}.self_attn.v_proj",
  o: "model.layers.{i}.self_attn.o_proj",
  norm1: "model.layers.{i}.input_layernorm",
  norm2: "model.layers.{i}.post_attention_layernorm",
  gate: "model.layers.{i}.mlp.gate_proj",
  up: "model.layers.{i}.mlp.up_proj",
  down: "model.layers.{i}.mlp.down_proj",
  finalNorm: "model.norm",
  lmHead: "lm_head",
};

const PRE_RMS_BLOCK: BlockSpec = {
  norm: "rms",
  normOffset: 0,
  placement: "pre",
  positional: "rope",
  mlp: "gated",
  causal: true,
};

const LLAMA_SEMANTICS: Semantics = {
  defaultAct: "silu",
  embedScale: false,
  window: { kind: "all" },
};

export const LLAMA: ArchSpec = {
  family: "llama",
  architectures: {
    LlamaForCausalLM: "lm",
    MistralForCausalLM: "lm",
    LlamaModel: "none",
    MistralModel: "none",
  },
  modelTypes: ["llama", "mistral"],
  kind: "decoder",
  block: PRE_RMS_BLOCK,
  names: LLAMA_NAMES,
  fused: [],
  groups: { attn: GQA_GROUP, mlp: GATED_MLP_GROUP },
  keys: HF_KEYS,
  configDefaults: {},
  semantics: LLAMA_SEMANTICS,
  epsDefault: 1e-6,
  prefixes: [""],
  biasFlags: {
    attention: { key: "attention_bias", modules: ["q", "k", "v", "o"] },
    mlp: { key: "mlp_bias", modules: ["gate", "up", "down"] },
  },
  headsInConfig: "counts",
  loads: "transformers.js, Python transformers (uniform widths)",
};

export const QWEN2: ArchSpec = {
  ...LLAMA,
  family: "qwen2",
  architectures: { Qwen2ForCausalLM: "lm", Qwen2Model: "none" },
  modelTypes: ["qwen2"],
  semantics: {
    ...LLAMA_SEMANTICS,
    window: { kind: "from", enableKey: "use_sliding_window", fromKey: "max_window_layers" },
  },
  biasFlags: undefined,
};

export const QWEN3: ArchSpec = {
  ...LLAMA,
  family: "qwen3",
  architectures: { Qwen3ForCausalLM: "lm", Qwen3Model: "none" },
  modelTypes: ["qwen3"],
  names: {
    ...LLAMA_NAMES,
    qNorm: "model.layers.{i}.self_attn.q_norm",
    kNorm: "model.layers.{i}.self_attn.k_norm",
  },
  semantics: {
    ...LLAMA_SEMANTICS,
    window: { kind: "from", enableKey: "use_sliding_window", fromKey: "max_window_layers" },
  },
  biasFlags: { attention: { key: "attention_bias", modules: ["q", "k", "v", "o"] } },
  configDefaults: { head_dim: 128, sliding_window: 4096, max_window_layers: 28 },
};

const GEMMA_NAMES: TensorNames = {
  ...LLAMA_NAMES,
  norm2: "model.layers.{i}.pre_feedforward_layernorm",
  attnOutNorm: "model.layers.{i}.post_attention_layernorm",
  mlpOutNorm: "model.layers.{i}.post_feedforward_layernorm",
};

export const GEMMA2: ArchSpec = {
  ...LLAMA,
  family: "gemma2",
  architectures: { Gemma2ForCausalLM: "lm", Gemma2Model: "none" },
  modelTypes: ["gemma2"],
  block: { ...PRE_RMS_BLOCK, normOffset: 1 },
  names: GEMMA_NAMES,
  // transformers' Gemma MLP reads hidden_activation only
  keys: { ...HF_KEYS, act: ["hidden_activation"] },
  semantics: {
    defaultAct: "gelu_tanh",
    embedScale: true,
    attnScaleKey: "query_pre_attn_scalar",
    attnSoftcapKey: "attn_logit_softcapping",
    finalSoftcapKey: "final_logit_softcapping",
    window: { kind: "period", period: 2 },
  },
  biasFlags: { attention: { key: "attention_bias", modules: ["q", "k", "v", "o"] } },
  configDefaults: {
    head_dim: 256,
    query_pre_attn_scalar: 256,
    sliding_window: 4096,
    attn_logit_softcapping: 50.0,
    final_logit_softcapping: 30.0,
  },
};

export const GEMMA3: ArchSpec = {
  ...GEMMA2,
  family: "gemma3_text",
  architectures: { Gemma3ForCausalLM: "lm", Gemma3TextModel: "none" },
  modelTypes: ["gemma3_text"],
  names: {
    ...GEMMA_NAMES,
    qNorm: "model.layers.{i}.self_attn.q_norm",
    kNorm: "model.layers.{i}.self_attn.k_norm",
  },
  semantics: {
    ...GEMMA2.semantics,
    // transformers' Gemma 3 attention does not soft-cap its logits, whatever the config says
    attnSoftcapKey: undefined,
    localRopeThetaKey: "rope_local_base_freq",
    window: { kind: "period", periodKey: "sliding_window_pattern", period: 6 },
  },
  configDefaults: {
    head_dim: 256,
    query_pre_attn_scalar: 256,
    sliding_window: 4096,
    rope_theta: 1_000_000.0,
    rope_local_base_freq: 10_000.0,
    final_logit_softcapping: null,
  },
};

export const PHI3: ArchSpec = {
  ...LLAMA,
  family: "phi3",
  architectures: { Phi3ForCausalLM: "lm", Phi3Model: "none" },
  modelTypes: ["phi3"],
  names: {
    ...LLAMA_NAMES,
    q: "model.layers.{i}.self_attn.qkv_proj[q]",
    k: "model.layers.{i}.self_attn.qkv_proj[k]",
    v: "model.layers.{i}.self_attn.qkv_proj[v]",
    gate: "model.layers.{i}.mlp.gate_up_proj[gate]",
    up: "model.layers.{i}.mlp.gate_up_proj[up]",
  },
  fused: [
    {
      path: "model.layers.{i}.self_attn.qkv_proj",
      parts: [
        { role: "q", rows: "head" },
        { role: "k", rows: "kv" },
        { role: "v", rows: "kv" },
      ],
    },
    {
      path: "model.layers.{i}.mlp.gate_up_proj",
      parts: [
        { role: "gate", rows: "channel" },
        { role: "up", rows: "channel" },
      ],
    },
  ],
  semantics: { ...LLAMA_SEMANTICS, partialRotaryKey: "partial_rotary_factor" },
  epsDefault: 1e-5,
  biasFlags: undefined,
};

export const BERT: ArchSpec = {
  family: "bert",
  architectures: { BertForSequenceClassification: "classifier", BertModel: "none" },
  modelTypes: ["bert"],
  kind: "encoder",
  block: {
    norm: "layer",
    normOffset: 0,
    placement: "post",
    positional: "absolute",
    mlp: "plain",
    causal: false,
  },
  names: {
    embed: "{p}embeddings.word_embeddings",
    posEmbed: "{p}embeddings.position_embeddings",
    typeEmbed: "{p}embeddings.token_type_embeddings",
    embedNorm: "{p}embeddings.LayerNorm",
    q: "{p}encoder.layer.{i}.attention.self.query",
    k: "{p}encoder.layer.{i}.attention.self.key",
    v: "{p}encoder.layer.{i}.attention.self.value",
    o: "{p}encoder.layer.{i}.attention.output.dense",
    norm1: "{p}encoder.layer.{i}.attention.output.LayerNorm",
    up: "{p}encoder.layer.{i}.intermediate.dense",
    down: "{p}encoder.layer.{i}.output.dense",
    norm2: "{p}encoder.layer.{i}.output.LayerNorm",
    pooler: "{p}pooler.dense",
    classifier: "classifier",
  },
  fused: [],
  groups: {
    // without GQA every head is its own KV group
    attn: {
      producers: [
        { role: "q", rows: "head" },
        { role: "k", rows: "head" },
        { role: "v", rows: "head" },
      ],
      consumer: "o",
      consumerCols: "head",
    },
    mlp: { producers: [{ role: "up", rows: "channel" }], consumer: "down", consumerCols: "channel" },
  },
  keys: { ...HF_KEYS, eps: "layer_norm_eps" },
  configDefaults: {},
  semantics: { defaultAct: "gelu", embedScale: false, window: { kind: "none" } },
  epsDefault: 1e-12,
  prefixes: ["bert.", ""],
  headsInConfig: "pruned_heads",
  loads: "transformers.js; Python transformers 4.x (pruned_heads)",
};

/** The registry of supported families (plain data). */
export const SPECS: readonly ArchSpec[] = [LLAMA, QWEN2, QWEN3, GEMMA2, GEMMA3, PHI3, BERT];

export function supportedArchitectures(): string[] {
  return SPECS.flatMap((s) => Object.keys(s.architectures));
}

/** The module paths that hold a layer's tensors (fused views replaced by their stored tensor). */
export function layerModulePaths(spec: ArchSpec): string[] {
  const views = new Set(spec.fused.flatMap((f) => f.parts.map((p) => spec.names[p.role])));
  return [
    ...Object.values(spec.names).filter(
      (t): t is string => typeof t === "string" && t.includes("{i}") && !views.has(t),
    ),
    ...spec.fused.map((f) => f.path),
  ];
}
