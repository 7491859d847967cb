/**
 * Architectures as data. A family is described by its block structure (norm kind and
 * placement, positional encoding, MLP form, activation, causality), its tensor names and
 * its head. Algorithms read these fields; no code switches on a family name.
 */

export interface BlockSpec {
  norm: "rms" | "layer";
  placement: "pre" | "post";
  positional: "rope" | "absolute";
  mlp: "gated" | "plain";
  act: "silu" | "gelu";
  causal: boolean;
}

/** Module paths (without `.weight` / `.bias`); `{i}` is the layer index. */
export interface TensorNames {
  embed: string;
  posEmbed?: string;
  typeEmbed?: string;
  embedNorm?: string;
  q: string;
  k: string;
  v: string;
  o: string;
  norm1: string;
  norm2: string;
  gate?: string;
  up: string;
  down: string;
  finalNorm?: string;
  lmHead?: string;
  pooler?: string;
  classifier?: string;
}

export interface ArchSpec {
  family: string;
  /** config.architectures values this spec accepts, mapped to the head they carry. */
  architectures: Record<string, "lm" | "classifier" | "none">;
  modelTypes: string[];
  kind: "decoder" | "encoder";
  block: BlockSpec;
  names: TensorNames;
  /** config key holding the norm epsilon */
  epsKey: string;
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
}

export interface BiasFlag {
  key: string;
  modules: (keyof TensorNames)[];
}

const decoderNames: TensorNames = {
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

const decoderBlock: BlockSpec = {
  norm: "rms",
  placement: "pre",
  positional: "rope",
  mlp: "gated",
  act: "silu",
  causal: true,
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
  block: decoderBlock,
  names: decoderNames,
  epsKey: "rms_norm_eps",
  prefixes: [""],
  biasFlags: {
    attention: { key: "attention_bias", modules: ["q", "k", "v", "o"] },
    mlp: { key: "mlp_bias", modules: ["gate", "up", "down"] },
  },
  headsInConfig: "counts",
};

export const QWEN2: ArchSpec = {
  ...LLAMA,
  family: "qwen2",
  architectures: { Qwen2ForCausalLM: "lm", Qwen2Model: "none" },
  modelTypes: ["qwen2"],
  biasFlags: undefined,
};

export const BERT: ArchSpec = {
  family: "bert",
  architectures: { BertForSequenceClassification: "classifier", BertModel: "none" },
  modelTypes: ["bert"],
  kind: "encoder",
  block: {
    norm: "layer",
    placement: "post",
    positional: "absolute",
    mlp: "plain",
    act: "gelu",
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
  epsKey: "layer_norm_eps",
  prefixes: ["bert.", ""],
  headsInConfig: "pruned_heads",
};

/** The registry of supported families (plain data). */
export const SPECS: readonly ArchSpec[] = [LLAMA, QWEN2, BERT];

export function supportedArchitectures(): string[] {
  return SPECS.flatMap((s) => Object.keys(s.architectures));
}
