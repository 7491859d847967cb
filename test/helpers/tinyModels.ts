/**
 * Tiny, seeded models in Hugging Face folder format for tests: LLaMA-style decoders (llama / qwen2 / mistral)
 * and BertForSequenceClassification, plus minimal tokenizer.json builders (byte-level BPE, WordPiece).
 *
 * Weights are N(0, 0.1)-ish, norm weights 1 + small noise, so that numbers are non-trivial; per-layer widths
 * (heads, kv heads, FFN channels) can differ, as in a pruned model.
 */
import fs from "node:fs";
import path from "node:path";
import { writeSafetensors } from "../../src/io/safetensors.ts";
import { Rng } from "./rng.ts";

export interface TinyTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

export interface TinyModel {
  config: Record<string, unknown>;
  tensors: TinyTensor[];
}

export interface TinyLlamaOptions {
  seed?: number;
  vocab?: number;
  hidden?: number;
  layers?: number;
  heads?: number;
  kvHeads?: number;
  headDim?: number;
  intermediate?: number;
  /** tie_word_embeddings (no lm_head.weight tensor). Default false. */
  tie?: boolean;
  /** q/k/v biases. Default true for qwen2 (which always has them), false otherwise. For llama this sets
   * `attention_bias: true`, which in HF also gives o_proj a bias, so o_proj.bias is emitted too. */
  qkvBias?: boolean;
  modelType?: "llama" | "qwen2" | "mistral";
  /** Per-layer widths (a pruned model); each array has one entry per layer. */
  perLayer?: { heads?: number[]; kvHeads?: number[]; intermediate?: number[] };
  /** Emit o_proj.bias and mlp.down_proj.bias (the bias a pruning compensation adds to the consumers). */
  consumerBias?: boolean;
}

export interface TinyBertOptions {
  seed?: number;
  vocab?: number;
  hidden?: number;
  layers?: number;
  heads?: number;
  intermediate?: number;
  numLabels?: number;
  maxPos?: number;
  /** Per-layer widths (a pruned model); each array has one entry per layer. */
  perLayer?: { heads?: number[]; intermediate?: number[] };
}

const ARCH = { llama: "LlamaForCausalLM", qwen2: "Qwen2ForCausalLM", mistral: "MistralForCausalLM" } as const;

function perLayer(values: number[] | undefined, layers: number, fallback: number, what: string): number[] {
  if (!values) return new Array(layers).fill(fallback);
  if (values.length !== layers) throw new Error(`tinyModels: perLayer.${what} needs ${layers} entries`);
  return values;
}

/** A seeded LLaMA-style causal LM. Defaults: vocab 300, hidden 32, 2 layers, 4 heads, 2 kv heads, head_dim 8, FFN 48. */
export function makeTinyLlama(opts: TinyLlamaOptions = {}): TinyModel {
  const modelType = opts.modelType ?? "llama";
  const V = opts.vocab ?? 300;
  const H = opts.hidden ?? 32;
  const L = opts.layers ?? 2;
  const nH = opts.heads ?? 4;
  const nKv = opts.kvHeads ?? 2;
  const hd = opts.headDim ?? 8;
  const F = opts.intermediate ?? 48;
  const tie = opts.tie ?? false;
  const qkvBias = opts.qkvBias ?? modelType === "qwen2";
  const oBias = (modelType === "llama" && qkvBias) || (opts.consumerBias ?? false);
  const downBias = opts.consumerBias ?? false;
  const headsL = perLayer(opts.perLayer?.heads, L, nH, "heads");
  const kvL = perLayer(opts.perLayer?.kvHeads, L, nKv, "kvHeads");
  const ffnL = perLayer(opts.perLayer?.intermediate, L, F, "intermediate");
  for (let l = 0; l < L; l++) {
    if (kvL[l] > 0 ? headsL[l] % kvL[l] !== 0 : headsL[l] !== 0) {
      throw new Error(`tinyModels: layer ${l}: ${headsL[l]} heads not a multiple of ${kvL[l]} kv heads`);
    }
  }
  const rng = new Rng(opts.seed ?? 0);
  const tensors: TinyTensor[] = [];
  const w = (name: string, shape: number[], std = 0.1) =>
    tensors.push({
      name,
      shape,
      data: rng.randn(
        shape.reduce((a, b) => a * b, 1),
        std,
      ),
    });
  const norm = (name: string) => tensors.push({ name, shape: [H], data: rng.randn(H, 0.1, 1) });

  w("model.embed_tokens.weight", [V, H], 0.5);
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}.`;
    const q = headsL[l] * hd;
    const kv = kvL[l] * hd;
    norm(`${p}input_layernorm.weight`);
    w(`${p}self_attn.q_proj.weight`, [q, H]);
    w(`${p}self_attn.k_proj.weight`, [kv, H]);
    w(`${p}self_attn.v_proj.weight`, [kv, H]);
    if (qkvBias) {
      w(`${p}self_attn.q_proj.bias`, [q], 0.05);
      w(`${p}self_attn.k_proj.bias`, [kv], 0.05);
      w(`${p}self_attn.v_proj.bias`, [kv], 0.05);
    }
    w(`${p}self_attn.o_proj.weight`, [H, q]);
    if (oBias) w(`${p}self_attn.o_proj.bias`, [H], 0.05);
    norm(`${p}post_attention_layernorm.weight`);
    w(`${p}mlp.gate_proj.weight`, [ffnL[l], H]);
    w(`${p}mlp.up_proj.weight`, [ffnL[l], H]);
    w(`${p}mlp.down_proj.weight`, [H, ffnL[l]]);
    if (downBias) w(`${p}mlp.down_proj.bias`, [H], 0.05);
  }
  norm("model.norm.weight");
  if (!tie) w("lm_head.weight", [V, H]);

  const config: Record<string, unknown> = {
    architectures: [ARCH[modelType]],
    model_type: modelType,
    hidden_act: "silu",
    hidden_size: H,
    intermediate_size: F,
    num_attention_heads: nH,
    num_key_value_heads: nKv,
    num_hidden_layers: L,
    head_dim: hd,
    rms_norm_eps: 1e-6,
    rope_theta: 10000.0,
    rope_scaling: null,
    vocab_size: V,
    max_position_embeddings: 128,
    tie_word_embeddings: tie,
    attention_dropout: 0.0,
    initializer_range: 0.02,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: "float32",
    use_cache: true,
    transformers_version: "4.44.2",
  };
  if (modelType === "llama") {
    config.attention_bias = qkvBias;
    config.mlp_bias = false;
    config.pretraining_tp = 1;
  } else if (modelType === "mistral") {
    config.sliding_window = null;
  } else {
    config.use_sliding_window = false;
    config.sliding_window = 4096;
    config.max_window_layers = L;
  }
  return { config, tensors };
}

/** A seeded BertForSequenceClassification. Defaults: vocab 300, hidden 32, 2 layers, 4 heads, FFN 64, 2 labels. */
export function makeTinyBert(opts: TinyBertOptions = {}): TinyModel {
  const V = opts.vocab ?? 300;
  const H = opts.hidden ?? 32;
  const L = opts.layers ?? 2;
  const nH = opts.heads ?? 4;
  const F = opts.intermediate ?? 64;
  const C = opts.numLabels ?? 2;
  const P = opts.maxPos ?? 64;
  if (H % nH !== 0) throw new Error("tinyModels: hidden must be a multiple of heads");
  const hd = H / nH;
  const headsL = perLayer(opts.perLayer?.heads, L, nH, "heads");
  const ffnL = perLayer(opts.perLayer?.intermediate, L, F, "intermediate");
  const rng = new Rng(opts.seed ?? 0);
  const tensors: TinyTensor[] = [];
  const w = (name: string, shape: number[], std = 0.1, mean = 0) =>
    tensors.push({
      name,
      shape,
      data: rng.randn(
        shape.reduce((a, b) => a * b, 1),
        std,
        mean,
      ),
    });
  const ln = (prefix: string) => {
    w(`${prefix}.weight`, [H], 0.1, 1);
    w(`${prefix}.bias`, [H], 0.05);
  };
  const lin = (prefix: string, out: number, inp: number) => {
    w(`${prefix}.weight`, [out, inp]);
    w(`${prefix}.bias`, [out], 0.05);
  };

  w("bert.embeddings.word_embeddings.weight", [V, H], 0.5);
  w("bert.embeddings.position_embeddings.weight", [P, H], 0.2);
  w("bert.embeddings.token_type_embeddings.weight", [2, H], 0.2);
  ln("bert.embeddings.LayerNorm");
  for (let l = 0; l < L; l++) {
    const p = `bert.encoder.layer.${l}.`;
    const a = headsL[l] * hd;
    lin(`${p}attention.self.query`, a, H);
    lin(`${p}attention.self.key`, a, H);
    lin(`${p}attention.self.value`, a, H);
    lin(`${p}attention.output.dense`, H, a);
    ln(`${p}attention.output.LayerNorm`);
    lin(`${p}intermediate.dense`, ffnL[l], H);
    lin(`${p}output.dense`, H, ffnL[l]);
    ln(`${p}output.LayerNorm`);
  }
  lin("bert.pooler.dense", H, H);
  w("classifier.weight", [C, H], 0.3);
  w("classifier.bias", [C], 0.05);

  const id2label: Record<string, string> = {};
  const label2id: Record<string, number> = {};
  for (let c = 0; c < C; c++) {
    id2label[String(c)] = `LABEL_${c}`;
    label2id[`LABEL_${c}`] = c;
  }
  const config: Record<string, unknown> = {
    architectures: ["BertForSequenceClassification"],
    model_type: "bert",
    attention_probs_dropout_prob: 0.1,
    classifier_dropout: null,
    hidden_act: "gelu",
    hidden_dropout_prob: 0.1,
    hidden_size: H,
    id2label,
    label2id,
    initializer_range: 0.02,
    intermediate_size: F,
    layer_norm_eps: 1e-12,
    max_position_embeddings: P,
    num_attention_heads: nH,
    num_hidden_layers: L,
    pad_token_id: 0,
    position_embedding_type: "absolute",
    problem_type: "single_label_classification",
    torch_dtype: "float32",
    type_vocab_size: 2,
    use_cache: true,
    vocab_size: V,
    transformers_version: "4.44.2",
  };
  return { config, tensors };
}

/** The tensors as a Map (the form the reference forward passes accept). */
export function tensorMap(model: TinyModel): Map<string, TinyTensor> {
  return new Map(model.tensors.map((t) => [t.name, t]));
}

// ---------------------------------------------------------------------------------------------------------
// tokenizers

/** GPT-2's bytes_to_unicode: the printable character standing for each byte in byte-level BPE. */
export function bytesToUnicode(): string[] {
  const map: string[] = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    map[b] = String.fromCodePoint(printable ? b : 256 + n++);
  }
  return map;
}

/** Common English pairs, in merge order; each pair's parts exist by the time it is merged. */
const BPE_MERGES: [string, string][] = [
  ["Ġ", "t"],
  ["Ġ", "a"],
  ["h", "e"],
  ["i", "n"],
  ["r", "e"],
  ["o", "n"],
  ["Ġt", "he"],
  ["e", "r"],
  ["Ġ", "s"],
  ["a", "t"],
  ["Ġ", "w"],
  ["Ġ", "o"],
  ["e", "n"],
  ["Ġ", "c"],
  ["i", "t"],
  ["i", "s"],
  ["a", "n"],
  ["o", "r"],
  ["e", "s"],
  ["Ġ", "b"],
  ["e", "d"],
  ["Ġ", "f"],
  ["in", "g"],
  ["Ġ", "p"],
  ["o", "u"],
  ["Ġa", "n"],
  ["a", "l"],
  ["a", "r"],
  ["Ġt", "o"],
  ["Ġ", "m"],
  ["Ġo", "f"],
  ["Ġ", "in"],
  ["Ġ", "d"],
  ["Ġ", "h"],
  ["Ġan", "d"],
  ["i", "c"],
  ["a", "s"],
  ["l", "e"],
  ["Ġt", "h"],
  ["i", "on"],
  ["o", "m"],
  ["l", "l"],
  ["en", "t"],
  ["Ġ", "n"],
  ["Ġ", "l"],
  ["s", "t"],
  ["Ġ", "re"],
  ["v", "e"],
  ["Ġ", "e"],
  ["r", "o"],
  ["l", "y"],
  ["Ġb", "e"],
  ["Ġ", "g"],
  ["Ġ", "T"],
  ["c", "t"],
  ["Ġ", "y"],
  ["Ġs", "t"],
  ["o", "t"],
  ["Ġ", "on"],
  ["e", "t"],
  ["Ġ", "u"],
  ["i", "m"],
  ["Ġc", "at"],
  ["Ġs", "at"],
  ["Ġ", "is"],
  ["Ġw", "as"],
];

/**
 * A valid HF tokenizer.json for byte-level BPE: ids 0,1,2 = `<unk>`, `<s>`, `</s>` (special), ids 3..258 the 256
 * byte tokens (GPT-2 byte-to-unicode alphabet), then as many merges of a fixed English list as fit in
 * `vocabSize` (all ids < vocabSize). ByteLevel pre-tokenizer (no prefix space) and decoder; TemplateProcessing
 * prepends `<s>`.
 */
export function makeByteBpeTokenizerJson(vocabSize: number): Record<string, unknown> {
  if (vocabSize < 259) throw new Error("tinyModels: byte-level BPE needs vocabSize >= 259");
  const vocab: Record<string, number> = { "<unk>": 0, "<s>": 1, "</s>": 2 };
  let next = 3;
  for (const ch of bytesToUnicode()) vocab[ch] = next++;
  const merges: string[] = [];
  for (const [a, b] of BPE_MERGES) {
    if (next >= vocabSize) break;
    const m = a + b;
    if (vocab[a] === undefined || vocab[b] === undefined || vocab[m] !== undefined) continue;
    vocab[m] = next++;
    merges.push(`${a} ${b}`);
  }
  const special = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")],
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [
        { SpecialToken: { id: "<s>", type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "<s>", type_id: 1 } },
        { Sequence: { id: "B", type_id: 1 } },
      ],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } },
    },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
}

const WP_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/**
 * A valid HF tokenizer.json for lowercase WordPiece (BERT): [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4, then
 * the given words (lowercased, deduplicated), then single characters a–z, 0–9 and common punctuation, and their
 * `##` continuations, so that any ASCII word can be spelled. BertNormalizer (lowercase), BertPreTokenizer,
 * TemplateProcessing `[CLS] $A [SEP]` / `[CLS] $A [SEP] $B:1 [SEP]:1`, WordPiece decoder.
 */
export function makeWordPieceTokenizerJson(words: string[]): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  let next = 0;
  const add = (tok: string) => {
    if (vocab[tok] === undefined) vocab[tok] = next++;
  };
  for (const s of WP_SPECIALS) add(s);
  for (const w of words) add(w.toLowerCase());
  const chars = [..."abcdefghijklmnopqrstuvwxyz0123456789", ...".,!?;:'\"()-"];
  for (const c of chars) add(c);
  for (const c of chars) add(`##${c}`);
  const special = (content: string) => ({
    id: vocab[content],
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  const st = (id: string, typeId: number) => ({ SpecialToken: { id, type_id: typeId } });
  const seq = (id: string, typeId: number) => ({ Sequence: { id, type_id: typeId } });
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: WP_SPECIALS.map(special),
    normalizer: {
      type: "BertNormalizer",
      clean_text: true,
      handle_chinese_chars: true,
      strip_accents: null,
      lowercase: true,
    },
    pre_tokenizer: { type: "BertPreTokenizer" },
    post_processor: {
      type: "TemplateProcessing",
      single: [st("[CLS]", 0), seq("A", 0), st("[SEP]", 0)],
      pair: [st("[CLS]", 0), seq("A", 0), st("[SEP]", 0), seq("B", 1), st("[SEP]", 1)],
      special_tokens: {
        "[CLS]": { id: "[CLS]", ids: [vocab["[CLS]"]], tokens: ["[CLS]"] },
        "[SEP]": { id: "[SEP]", ids: [vocab["[SEP]"]], tokens: ["[SEP]"] },
      },
    },
    decoder: { type: "WordPiece", prefix: "##", cleanup: true },
    model: {
      type: "WordPiece",
      unk_token: "[UNK]",
      continuing_subword_prefix: "##",
      max_input_chars_per_word: 100,
      vocab,
    },
  };
}

function tokenizerConfigFor(tokenizerJson: object, maxLen: number): Record<string, unknown> {
  const model = (tokenizerJson as { model?: unknown }).model as { type?: string } | undefined;
  if (model?.type === "WordPiece") {
    return {
      tokenizer_class: "BertTokenizer",
      do_lower_case: true,
      cls_token: "[CLS]",
      sep_token: "[SEP]",
      pad_token: "[PAD]",
      unk_token: "[UNK]",
      mask_token: "[MASK]",
      model_max_length: maxLen,
      clean_up_tokenization_spaces: true,
    };
  }
  return {
    tokenizer_class: "PreTrainedTokenizerFast",
    bos_token: "<s>",
    eos_token: "</s>",
    unk_token: "<unk>",
    add_bos_token: true,
    add_eos_token: false,
    model_max_length: maxLen,
    clean_up_tokenization_spaces: false,
  };
}

const TORCH_DTYPE = { F32: "float32", F16: "float16", BF16: "bfloat16" } as const;

/**
 * Writes an HF model folder: config.json (torch_dtype set from `dtype`), model.safetensors (tensors stored as
 * `dtype`, default F32), and — when `tokenizerJson` is given — tokenizer.json and a minimal tokenizer_config.json.
 * Creates `dir` if needed.
 */
export function writeTinyModel(
  dir: string,
  model: TinyModel,
  tokenizerJson?: object,
  dtype: "F32" | "F16" | "BF16" = "F32",
): void {
  fs.mkdirSync(dir, { recursive: true });
  const config = { ...model.config, torch_dtype: TORCH_DTYPE[dtype] };
  fs.writeFileSync(path.join(dir, "config.json"), `${JSON.stringify(config, null, 2)}\n`);
  writeSafetensors(
    path.join(dir, "model.safetensors"),
    model.tensors.map((t) => ({ name: t.name, shape: t.shape, data: t.data, dtype })),
  );
  if (tokenizerJson) {
    fs.writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify(tokenizerJson));
    const maxLen = Number(model.config.max_position_embeddings ?? 512);
    fs.writeFileSync(
      path.join(dir, "tokenizer_config.json"),
      `${JSON.stringify(tokenizerConfigFor(tokenizerJson, maxLen), null, 2)}\n`,
    );
  }
}

/** Per-layer (heads, KV heads, FFN) of `nonUniformLlama`. */
export const NON_UNIFORM_WIDTHS: [number, number, number][] = [
  [4, 2, 48],
  [2, 1, 20],
  [6, 3, 33],
];

/**
 * A pruned-looking GQA llama (what global allocation produces): heads 4/2/6, KV heads 2/1/3, FFN 48/20/33,
 * head_dim 8 (≠ hidden/heads), with the widths stated in `pare_layer_widths`.
 */
export function nonUniformLlama(seed: number): TinyModel {
  const tiny = makeTinyLlama({
    seed,
    layers: 3,
    headDim: 8,
    perLayer: {
      heads: NON_UNIFORM_WIDTHS.map((w) => w[0]),
      kvHeads: NON_UNIFORM_WIDTHS.map((w) => w[1]),
      intermediate: NON_UNIFORM_WIDTHS.map((w) => w[2]),
    },
  });
  tiny.config.pare_layer_widths = NON_UNIFORM_WIDTHS.map(([h, kv, f]) => ({
    num_attention_heads: h,
    num_key_value_heads: kv,
    intermediate_size: f,
  }));
  return tiny;
}
