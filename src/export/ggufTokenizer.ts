/**
 * Tokenizer metadata of the GGUF export, from tokenizer.json (+ tokenizer_config.json), in the two forms llama.cpp
 * tokenizes exactly as Hugging Face `tokenizers` does:
 *
 * - SentencePiece-style BPE (Llama 1/2, Mistral v0.1, TinyLlama, Gemma: BPE with byte_fallback over the whole text,
 *   spaces written "▁") as llama.cpp's `llama` (SPM) tokenizer: tokens, scores, token types (byte tokens <0xNN>
 *   BYTE, special tokens CONTROL, other added tokens USER_DEFINED). llama.cpp merges by the score of the merged
 *   piece, where `tokenizers` merges by the rank of the pair; the two agree when every way of splitting a piece
 *   into two vocabulary pieces is a listed merge and each piece's merges are consecutive in rank order (what
 *   transformers' SentencePiece conversion writes). The score of a piece is then minus the rank of its first
 *   merge. A tokenizer.json that breaks this is refused: llama.cpp would tokenize it differently.
 * - byte-level BPE (GPT-2, Llama 3, Qwen2) as llama.cpp's `gpt2` tokenizer: tokens, merges and the pre-tokenizer
 *   type whose regular expression is the one in tokenizer.json (`gpt-2`, `llama-bpe`, `qwen2`).
 *
 * BOS / EOS / UNK / PAD ids and whether BOS / EOS are added come from the tokenizer as pare loads it (which reads
 * tokenizer_config.json and the post-processor). Anything else is refused before a byte is written.
 */
import path from "node:path";
import { PareError } from "../errors.ts";
import { readJsonObject } from "../io/modelFolder.ts";
import { fileInsideFolder } from "../io/safetensors.ts";
import { loadTokenizer } from "../io/tokenizer.ts";
import type { GgufMetadata } from "./ggufWriter.ts";

/** llama_token_type */
export const TokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

export interface GgufVocab {
  model: "llama" | "gpt2";
  pre: string;
  tokens: string[];
  scores?: Float32Array;
  types: Int32Array;
  merges?: string[];
  bosId?: number;
  eosId?: number;
  unkId?: number;
  padId?: number;
  addBos: boolean;
  addEos: boolean;
  addSpacePrefix?: boolean;
  notes: string[];
}

const SP = "\u2581";
type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/** The regexes of tokenizer.json Split pre-tokenizers that llama.cpp implements, by its pre-tokenizer name. */
const BPE_REGEXES: Record<string, string> = {
  "llama-bpe":
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  qwen2:
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};

function unrepresentable(file: string, what: string): PareError {
  return new PareError(
    "E_TOKENIZER_INVALID",
    `${file}: llama.cpp cannot tokenize this tokenizer as Hugging Face does (${what}); nothing was written`,
    "GGUF export supports SentencePiece-style BPE with byte fallback (Llama 2, Mistral, Gemma) and byte-level BPE " +
      "with the GPT-2, Llama 3 or Qwen2 pre-tokenizer; use --format onnx for other tokenizers",
    { file },
  );
}

/** What the text goes through before the BPE model in an SPM-style tokenizer.json; undefined if not SPM-style. */
function spmPrefix(tok: Obj): { addSpacePrefix: boolean } | string {
  const norm = tok.normalizer;
  const pre = tok.pre_tokenizer;
  const isReplaceSpace = (n: unknown) =>
    isObj(n) &&
    n.type === "Replace" &&
    isObj(n.pattern) &&
    (n.pattern as Obj).String === " " &&
    n.content === SP;
  const isPrepend = (n: unknown) => isObj(n) && n.type === "Prepend" && n.prepend === SP;
  // legacy Llama: Prepend ▁ + Replace " " → ▁; Gemma: Replace only
  if (isObj(norm)) {
    const parts = norm.type === "Sequence" && Array.isArray(norm.normalizers) ? norm.normalizers : [norm];
    let prepend = false;
    let replace = false;
    for (const p of parts) {
      if (isPrepend(p) && !replace && !prepend) prepend = true;
      else if (isReplaceSpace(p)) replace = true;
      else return `normalizer ${JSON.stringify(isObj(p) ? p.type : p)}`;
    }
    if (!replace) return "a normalizer that keeps spaces";
    // Gemma 3's Split(" ", MergedWithPrevious) sees no spaces after the Replace: a no-op
    const noopSplit =
      pre == null ||
      (isObj(pre) && pre.type === "Split" && isObj(pre.pattern) && (pre.pattern as Obj).String === " ");
    if (!noopSplit) return `pre-tokenizer ${JSON.stringify(isObj(pre) ? pre.type : pre)}`;
    return { addSpacePrefix: prepend };
  }
  if (norm != null) return "normalizer";
  // newer Llama conversions: Metaspace(▁, prepend_scheme first, split false)
  if (isObj(pre) && pre.type === "Metaspace" && (pre.replacement ?? SP) === SP) {
    if (pre.split !== false) return "Metaspace pre-tokenizer with split (each word tokenized alone)";
    const scheme = pre.prepend_scheme ?? (pre.add_prefix_space === false ? "never" : "always");
    if (scheme !== "first" && scheme !== "always" && scheme !== "never")
      return `Metaspace prepend_scheme ${JSON.stringify(scheme)}`;
    return { addSpacePrefix: scheme !== "never" };
  }
  return "no SentencePiece-style normalizer or pre-tokenizer";
}

/** The llama.cpp pre-tokenizer name for a byte-level BPE tokenizer.json, or why there is none. */
function byteLevelPre(tok: Obj): string | { reason: string } {
  const pre = tok.pre_tokenizer;
  const norm = tok.normalizer;
  if (norm != null && !(isObj(norm) && norm.type === "NFC")) return { reason: "a normalizer" };
  if (isObj(pre) && pre.type === "ByteLevel") {
    if (pre.add_prefix_space === true) return { reason: "ByteLevel add_prefix_space" };
    if (pre.use_regex === false) return { reason: "ByteLevel without its regex" };
    return "gpt-2";
  }
  if (isObj(pre) && pre.type === "Sequence" && Array.isArray(pre.pretokenizers)) {
    const [split, bl, ...rest] = pre.pretokenizers as Obj[];
    if (
      rest.length === 0 &&
      isObj(split) &&
      split.type === "Split" &&
      isObj(split.pattern) &&
      typeof (split.pattern as Obj).Regex === "string" &&
      split.behavior === "Isolated" &&
      split.invert === false &&
      isObj(bl) &&
      bl.type === "ByteLevel" &&
      bl.use_regex === false &&
      bl.add_prefix_space !== true
    ) {
      const re = (split.pattern as Obj).Regex as string;
      for (const [name, known] of Object.entries(BPE_REGEXES)) if (re === known) return name;
      return { reason: `the pre-tokenizer regex ${JSON.stringify(re.slice(0, 80))}` };
    }
  }
  return { reason: "its pre-tokenizer" };
}

/** Code-point boundaries of a string (UTF-16 indices). */
function cpBoundaries(s: string): number[] {
  const out: number[] = [];
  let i = 0;
  for (const ch of s) {
    i += ch.length;
    if (i < s.length) out.push(i);
  }
  return out;
}

/**
 * GGUF tokenizer metadata for the model folder `dir` whose embedding has `nVocab` rows. Throws E_TOKENIZER_INVALID
 * (llama.cpp cannot express it) or E_TOKENIZER_MISMATCH (ids beyond the embedding) before anything is written.
 */
export function ggufVocab(dir: string, nVocab: number): GgufVocab {
  const file = path.join(dir, "tokenizer.json");
  if (!fileInsideFolder(dir, "tokenizer.json")) {
    throw new PareError(
      "E_FOLDER_INCOMPLETE",
      `${dir}: no tokenizer.json; a GGUF file carries its tokenizer`,
      "add the model's tokenizer.json (transformers: AutoTokenizer.from_pretrained(...).save_pretrained(dir))",
      { dir },
    );
  }
  const pare = loadTokenizer(dir); // validates the file and gives the special ids as pare encodes
  const tok = readJsonObject(file, "E_TOKENIZER_INVALID", { maxBytes: 256 * 1024 * 1024 });
  const model = tok.model as Obj;
  if (model.type !== "BPE") throw unrepresentable(file, `model type ${JSON.stringify(model.type)}`);
  if (model.dropout != null && model.dropout !== 0) throw unrepresentable(file, "BPE dropout");
  if (model.continuing_subword_prefix || model.end_of_word_suffix)
    throw unrepresentable(file, "continuing_subword_prefix / end_of_word_suffix");
  const vocab = model.vocab as Record<string, number>;
  const merges = (model.merges as (string | [string, string])[]).map((m) =>
    typeof m === "string" ? (m.split(" ") as [string, string]) : m,
  );
  const added = (Array.isArray(tok.added_tokens) ? tok.added_tokens : []) as {
    id: number;
    content: string;
    special?: boolean;
    lstrip?: boolean;
    rstrip?: boolean;
    single_word?: boolean;
    normalized?: boolean;
  }[];

  // tokens by id (added tokens override / extend the vocab), holes padded as llama.cpp's converter does
  const tokens: string[] = new Array(nVocab).fill(undefined);
  const types = new Int32Array(nVocab).fill(TokenType.UNUSED);
  const put = (id: number, text: string, type: number) => {
    if (id >= nVocab) {
      throw new PareError(
        "E_TOKENIZER_MISMATCH",
        `${file}: token ${JSON.stringify(text.slice(0, 40))} has id ${id}, beyond the model's ${nVocab} embedding rows`,
        "tokenizer.json does not belong to this model (or config.json's vocab_size is wrong)",
        { file, id },
      );
    }
    tokens[id] = text;
    types[id] = type;
  };
  const notes: string[] = [];
  const spm = spmPrefix(tok);
  const byteFallback = model.byte_fallback === true;
  const isSpm = typeof spm !== "string" && byteFallback;
  const pre = isSpm ? "default" : byteLevelPre(tok);
  if (!isSpm && typeof pre !== "string") {
    const why =
      typeof spm !== "string" && !byteFallback
        ? "SentencePiece-style BPE without byte_fallback"
        : `neither SentencePiece-style (${spm as string}) nor byte-level BPE (${pre.reason})`;
    throw unrepresentable(file, why);
  }
  for (const a of added) {
    if (a.lstrip || a.single_word)
      throw unrepresentable(file, `added token ${JSON.stringify(a.content)} with lstrip / single_word`);
  }

  const unkId = typeof model.unk_token === "string" ? vocab[model.unk_token] : undefined;
  for (const [text, id] of Object.entries(vocab)) {
    const byte = isSpm && /^<0x[0-9A-F]{2}>$/.test(text);
    put(id, text, byte ? TokenType.BYTE : id === unkId ? TokenType.UNKNOWN : TokenType.NORMAL);
  }
  const addedIds = new Set<number>();
  for (const a of added) {
    addedIds.add(a.id);
    // llama.cpp's converter stores user-defined SPM pieces with spaces, not ▁ (it matches them in raw text)
    const text = !a.special && isSpm ? a.content.replaceAll(SP, " ") : a.content;
    put(
      a.id,
      text,
      a.special ? (a.id === unkId ? TokenType.UNKNOWN : TokenType.CONTROL) : TokenType.USER_DEFINED,
    );
  }
  for (let i = 0; i < nVocab; i++) if (tokens[i] === undefined) tokens[i] = `[PAD${i}]`;
  const seen = new Map<string, number>();
  tokens.forEach((t, i) => {
    const j = seen.get(t);
    if (j !== undefined)
      throw unrepresentable(
        file,
        `the token text ${JSON.stringify(t.slice(0, 40))} has two ids (${j}, ${i})`,
      );
    seen.set(t, i);
  });

  let scores: Float32Array | undefined;
  if (isSpm) {
    // score of a piece = −(rank of its first merge); pieces no merge makes: below every merge
    const first = new Map<string, number>();
    const last = new Map<string, number>();
    merges.forEach(([a, b], r) => {
      const t = a + b;
      if (!first.has(t)) first.set(t, r);
      last.set(t, r);
    });
    // each piece's merges consecutive in rank (no other piece's merge in between)
    let prev: string | undefined;
    const done = new Set<string>();
    for (const [a, b] of merges) {
      const t = a + b;
      if (t !== prev) {
        if (done.has(t))
          throw unrepresentable(file, `the merges of ${JSON.stringify(t)} are not consecutive in rank order`);
        if (prev !== undefined) done.add(prev);
        prev = t;
      }
    }
    const mergeSet = new Set(merges.map(([a, b]) => `${a} ${b}`));
    // every split of a normal piece into two vocabulary pieces must be a merge (llama.cpp would take it)
    for (const [t, id] of Object.entries(vocab)) {
      if (addedIds.has(id) || types[id] === TokenType.BYTE) continue;
      for (const k of cpBoundaries(t)) {
        const l = t.slice(0, k);
        const r = t.slice(k);
        if (vocab[l] !== undefined && vocab[r] !== undefined && !mergeSet.has(`${l} ${r}`)) {
          throw unrepresentable(
            file,
            `llama.cpp would merge ${JSON.stringify(l)} + ${JSON.stringify(r)} into ${JSON.stringify(t)}, which tokenizer.json's merges never do`,
          );
        }
      }
    }
    scores = new Float32Array(nVocab);
    const bottom = -(merges.length + 1);
    tokens.forEach((t, i) => {
      const r = types[i] === TokenType.NORMAL ? first.get(t) : undefined;
      scores![i] = r !== undefined ? -r : types[i] === TokenType.NORMAL ? bottom : -1000 - merges.length;
    });
    // llama.cpp needs byte tokens for every byte (its byte fallback)
    for (let b = 0; b < 256; b++) {
      const t = `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`;
      if (vocab[t] === undefined) throw unrepresentable(file, `byte fallback without the byte token ${t}`);
    }
  } else if (model.ignore_merges === true && pre !== "llama-bpe") {
    throw unrepresentable(file, "ignore_merges with a pre-tokenizer other than Llama 3's");
  }

  // special ids and whether the post-processor adds BOS / EOS, as pare encodes
  const probe = "Hello world";
  const withSpecial = pare.encode(probe);
  const without = pare.encode(probe, { addSpecialTokens: false });
  const extraStart = withSpecial.length > without.length && withSpecial[0] !== without[0];
  const addBos = extraStart && withSpecial[0] === pare.bosId;
  const addEos =
    withSpecial.length > without.length &&
    withSpecial[withSpecial.length - 1] !== without[without.length - 1] &&
    withSpecial[withSpecial.length - 1] === pare.eosId;
  const expected = (addBos ? 1 : 0) + (addEos ? 1 : 0);
  if (withSpecial.length !== without.length + expected) {
    throw unrepresentable(file, "a post-processor that adds tokens other than BOS / EOS");
  }
  if (pare.bosId === undefined && addBos) throw unrepresentable(file, "BOS added but unknown");
  const inRange = (id: number | undefined) => (id !== undefined && id >= 0 && id < nVocab ? id : undefined);
  return {
    model: isSpm ? "llama" : "gpt2",
    pre: pre as string,
    tokens,
    scores,
    types,
    merges: isSpm ? undefined : merges.map(([a, b]) => `${a} ${b}`),
    bosId: inRange(pare.bosId),
    eosId: inRange(pare.eosId),
    unkId: inRange(unkId),
    padId: inRange(pare.padId),
    addBos,
    addEos,
    addSpacePrefix: isSpm ? (spm as { addSpacePrefix: boolean }).addSpacePrefix : undefined,
    notes,
  };
}

/** Write the vocabulary into the metadata (the keys llama.cpp's converter writes). */
export function addVocab(meta: GgufMetadata, v: GgufVocab): void {
  meta.str("tokenizer.ggml.model", v.model);
  meta.str("tokenizer.ggml.pre", v.pre);
  meta.arrStr("tokenizer.ggml.tokens", v.tokens);
  if (v.scores) meta.arrF32("tokenizer.ggml.scores", v.scores);
  meta.arrI32("tokenizer.ggml.token_type", v.types);
  if (v.merges) meta.arrStr("tokenizer.ggml.merges", v.merges);
  if (v.bosId !== undefined) meta.u32("tokenizer.ggml.bos_token_id", v.bosId);
  if (v.eosId !== undefined) meta.u32("tokenizer.ggml.eos_token_id", v.eosId);
  if (v.unkId !== undefined) meta.u32("tokenizer.ggml.unknown_token_id", v.unkId);
  if (v.padId !== undefined) meta.u32("tokenizer.ggml.padding_token_id", v.padId);
  meta.bool("tokenizer.ggml.add_bos_token", v.addBos);
  meta.bool("tokenizer.ggml.add_eos_token", v.addEos);
  if (v.addSpacePrefix !== undefined) meta.bool("tokenizer.ggml.add_space_prefix", v.addSpacePrefix);
}
