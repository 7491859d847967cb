/**
 * Tokenizer adapter over @huggingface/tokenizers (pure JS, reads tokenizer.json), made to encode and decode as the
 * reference library (Rust Hugging Face `tokenizers`) does where the JS library differs: the WordLevel model (which
 * the JS library lacks) and the ByteFallback decoder are pare's own (see the classes below), and decoding skips
 * ids that are not in the vocabulary.
 */
import path from "node:path";
import * as tokenizersJs from "@huggingface/tokenizers";
import { PareError } from "../errors.ts";
import { readJsonObject } from "./modelFolder.ts";
import { fileInsideFolder, q } from "./safetensors.ts";

export interface PareTokenizer {
  /** Token ids; special tokens (e.g. <s>, [CLS] … [SEP]) are added unless addSpecialTokens is false. */
  encode(text: string, opts?: { addSpecialTokens?: boolean; textPair?: string }): number[];
  /** ids and token type ids (segment ids: 0 for the first text, 1 for the pair, as the post-processor's template says) */
  encodeWithTypes(text: string, textPair?: string): { ids: number[]; typeIds: number[] };
  decode(ids: number[], skipSpecialTokens?: boolean): string;
  tokenToId(t: string): number | undefined;
  readonly bosId?: number;
  readonly eosId?: number;
  readonly padId?: number;
  /** 1 + the largest token id (added tokens included). */
  readonly vocabSize: number;
}

const TOKENIZER_HINT =
  "pare needs a valid fast-tokenizer file tokenizer.json: re-create it with transformers' " +
  "AutoTokenizer.from_pretrained(...).save_pretrained(dir)";

/** A special token in tokenizer_config.json / special_tokens_map.json: "<s>" or {content: "<s>", …}. */
function tokenContent(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (typeof v === "object" && v !== null && typeof (v as { content?: unknown }).content === "string") {
    return (v as { content: string }).content;
  }
  return undefined;
}

/** tokenizer.json files of real models stay below ~40 MB. */
const MAX_TOKENIZER_BYTES = 256 * 1024 * 1024;
/** Largest token id accepted (the model side allows vocab_size up to 2^24 as well). */
const MAX_TOKEN_ID = (1 << 24) - 1;
const MODEL_TYPES = ["BPE", "WordPiece", "Unigram", "WordLevel"];

function readOptional(
  dir: string,
  name: string,
  code: "E_TOKENIZER_INVALID" | "E_CONFIG_INVALID",
): Record<string, unknown> {
  return fileInsideFolder(dir, name) ? readJsonObject(path.join(dir, name), code) : {};
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const isId = (v: unknown): v is number =>
  Number.isInteger(v) && (v as number) >= 0 && (v as number) <= MAX_TOKEN_ID;

/**
 * The parts of tokenizer.json that the tokenizer library trusts without checking (it would otherwise hand out
 * string, negative or missing ids): the model's type, vocabulary and merges, and the added tokens.
 */
function validateTokenizerJson(file: string, tok: Record<string, unknown>): void {
  const bad = (what: string) =>
    new PareError("E_TOKENIZER_INVALID", `${file}: ${what}`, TOKENIZER_HINT, { file });
  const model = tok.model;
  if (!isObject(model)) throw bad('no "model" object');
  const type = model.type;
  if (type !== undefined && !MODEL_TYPES.includes(type as string)) {
    throw bad(`model type ${q(String(type))} is not supported (pare reads ${MODEL_TYPES.join(", ")})`);
  }
  const vocab = model.vocab;
  if (type === "Unigram" || (type === undefined && Array.isArray(vocab))) {
    if (!Array.isArray(vocab) || vocab.length === 0 || vocab.length > MAX_TOKEN_ID + 1) {
      throw bad("a Unigram model needs a non-empty vocab list of [piece, score] pairs");
    }
    vocab.forEach((e, i) => {
      if (
        !Array.isArray(e) ||
        typeof e[0] !== "string" ||
        typeof e[1] !== "number" ||
        !Number.isFinite(e[1])
      ) {
        throw bad(`Unigram vocab entry ${i} is not a [piece, score] pair`);
      }
    });
    if (model.unk_id != null && !(isId(model.unk_id) && model.unk_id < vocab.length)) {
      throw bad(`unk_id ${JSON.stringify(model.unk_id)} is not an index into the vocab`);
    }
  } else {
    if (!isObject(vocab) || Object.keys(vocab).length === 0)
      throw bad("model.vocab is not a non-empty object");
    for (const [piece, id] of Object.entries(vocab)) {
      if (!isId(id))
        throw bad(`model.vocab gives ${q(piece)} the id ${JSON.stringify(id)}, not an integer in [0, 2^24)`);
    }
    if (type === "BPE" || (type === undefined && "merges" in model)) {
      const merges = model.merges;
      if (!Array.isArray(merges)) throw bad("model.merges is not a list");
      merges.forEach((m, i) => {
        const ok =
          (typeof m === "string" && m.split(" ").length === 2) ||
          (Array.isArray(m) && m.length === 2 && m.every((x) => typeof x === "string"));
        if (!ok)
          throw bad(`merge ${i} (${String(JSON.stringify(m)).slice(0, 60)}) is not "a b" or ["a", "b"]`);
      });
    }
    const unk = model.unk_token;
    if (type === "WordPiece" && (typeof unk !== "string" || !Object.hasOwn(vocab, unk))) {
      throw bad(`WordPiece unk_token ${q(String(unk))} is not in the vocab`);
    }
    // the reference library requires the field; an unk_token missing from the vocab is an error only when a
    // word is unknown (at encode time, see WordLevelModel), as there
    if (type === "WordLevel" && typeof unk !== "string") {
      throw bad(`a WordLevel model needs unk_token (a string), not ${String(JSON.stringify(unk))}`);
    }
  }
  const added = tok.added_tokens;
  if (added != null) {
    if (!Array.isArray(added)) throw bad("added_tokens is not a list");
    added.forEach((t, i) => {
      if (!isObject(t) || !isId(t.id) || typeof t.content !== "string" || t.content === "") {
        throw bad(`added_tokens[${i}] needs an integer id in [0, 2^24) and a non-empty content string`);
      }
    });
  }
}

type Config = Record<string, unknown>;

/** The library's base classes, as far as pare uses them (its type declarations do not resolve under NodeNext). */
interface LibModel {
  vocab: string[];
  tokens_to_ids: Map<string, number>;
  unk_token_id?: number;
  unk_token?: string;
  end_of_word_suffix?: string;
  fuse_unk: boolean;
}
interface LibDecoder {
  added_tokens: unknown[];
  end_of_word_suffix: string | null;
  decode_chain(tokens: string[]): string[];
}
const lib = tokenizersJs as unknown as {
  Tokenizer: new (tokenizerJson: Config, tokenizerConfig: Config) => LibTokenizer;
  /** a model: encode(pre-tokens) gives token strings, which the tokenizer maps to ids */
  Model: abstract new (
    config: Config,
  ) => LibModel;
  Decoder: abstract new (config: Config) => LibDecoder;
  SequenceDecoder: new (config: Config) => LibDecoder;
  /** pre_tokenize(text or pieces, {section_index}) splits each piece with pre_tokenize_text */
  PreTokenizer: abstract new () => LibPreTokenizer;
  SequencePreTokenizer: new (config: Config) => LibPreTokenizer;
  Normalizer: abstract new (config: Config) => LibNormalizer;
  SequenceNormalizer: new (config: Config) => LibNormalizer;
};
interface LibPreTokenizer {
  pre_tokenize(text: string | string[], options?: PreTokenizeOptions): string[];
  pre_tokenize_text(text: string, options?: PreTokenizeOptions): string[];
}
/** section_index: which part of the text, split at the added tokens, is pre-tokenized */
type PreTokenizeOptions = { section_index?: number };
interface LibNormalizer {
  (text: string): string;
  normalize(text: string): string;
}
interface LibTokenizer {
  model: LibModel;
  decoder: LibDecoder | null;
  pre_tokenizer: LibPreTokenizer | null;
  normalizer: LibNormalizer | null;
  encode(text: string, opts: { add_special_tokens: boolean; text_pair: string | null }): { ids: unknown };
  decode(ids: number[], opts: { skip_special_tokens: boolean }): unknown;
  get_vocab(withAddedTokens: boolean): Map<string, number>;
  get_added_tokens_decoder(): Map<number, { content: string; id: number }>;
  token_to_id(token: string): number | undefined;
  id_to_token(id: number): string | undefined;
}

/**
 * The WordLevel model of tokenizer.json as the reference library has it (the JS library has none): each pre-token
 * is one token, the vocab's entry for it, or unk_token when the vocab lacks it; when unk_token is not in the vocab
 * either, encoding fails at the first unknown word (the reference library's "Missing [UNK] token" error).
 */
class WordLevelModel extends lib.Model {
  /** model.vocab alone: the library adds the added tokens to tokens_to_ids, the reference's lookups do not see them */
  private readonly words: Map<string, number>;
  private readonly file: string;

  constructor(config: { vocab: Record<string, number>; unk_token: string }, file: string) {
    super(config);
    this.file = file;
    this.words = new Map(Object.entries(config.vocab));
    this.tokens_to_ids = new Map(this.words);
    this.vocab = [];
    for (const [word, id] of this.words) this.vocab[id] = word;
    this.unk_token = config.unk_token;
    this.unk_token_id = this.words.get(config.unk_token);
    this.fuse_unk = false;
  }

  encode(tokens: string[]): string[] {
    return tokens.map((word) => {
      if (this.words.has(word)) return word;
      if (this.unk_token_id !== undefined) return this.unk_token as string;
      throw new PareError(
        "E_TOKENIZER_INVALID",
        `${this.file}: the WordLevel vocab has no ${q(word.slice(0, 60))} and its unk_token ${q(String(this.unk_token))} is not in the vocab either, so the text cannot be encoded (the reference library refuses it too)`,
        "add the unk_token to model.vocab in tokenizer.json (or use the tokenizer the model was trained with)",
        { file: this.file, unknownWord: word.slice(0, 60) },
      );
    });
  }
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * The ByteFallback decoder as the reference library has it: a run of byte tokens <0xNN> becomes its UTF-8 text,
 * or one U+FFFD per byte when the run is not valid UTF-8. (The JS library's decoder drops a leading byte-order
 * mark and replaces each invalid subsequence by one U+FFFD.) A byte token is "<0x" + two hex digits (or "+" and
 * one, which Rust's u8::from_str_radix also reads) + ">".
 */
class ByteFallbackDecoder extends lib.Decoder {
  override decode_chain(tokens: string[]): string[] {
    const out: string[] = [];
    let run: number[] = [];
    const flush = () => {
      if (run.length === 0) return;
      try {
        out.push(strictUtf8.decode(Uint8Array.from(run)));
      } catch {
        for (let i = 0; i < run.length; i++) out.push("\uFFFD");
      }
      run = [];
    };
    for (const token of tokens) {
      const byte = /^<0x(?:[0-9A-Fa-f]{2}|\+[0-9A-Fa-f])>$/.test(token)
        ? Number.parseInt(token.slice(3, 5), 16)
        : -1;
      if (byte >= 0) run.push(byte);
      else {
        flush();
        out.push(token);
      }
    }
    flush();
    return out;
  }
}

/** A Sequence decoder over decoders built here (so that pare's own decoders can sit inside one). */
class DecoderChain extends lib.Decoder {
  private readonly parts: LibDecoder[];
  constructor(config: Config, parts: LibDecoder[]) {
    super(config);
    this.parts = parts;
  }
  override decode_chain(tokens: string[]): string[] {
    return this.parts.reduce((t, d) => d.decode_chain(t), tokens);
  }
}

/** Decoders pare implements itself, by tokenizer.json type. */
const OWN_DECODERS: Record<string, (config: Config) => LibDecoder> = {
  ByteFallback: (config) => new ByteFallbackDecoder(config),
};

/** The decoder for `config`: pare's own where it has one, the library's otherwise. */
function buildDecoder(config: Config): LibDecoder {
  const type = config.type as string;
  if (type === "Sequence" && Array.isArray(config.decoders)) {
    return new DecoderChain(config, (config.decoders as Config[]).map(buildDecoder));
  }
  if (Object.hasOwn(OWN_DECODERS, type)) return OWN_DECODERS[type](config);
  // the library builds any decoder it knows inside a one-element Sequence
  return new lib.SequenceDecoder({ type: "Sequence", decoders: [config] });
}

/** A pre-tokenizer that keeps the matches of a global regex (the others are dropped). */
class MatchPreTokenizer extends lib.PreTokenizer {
  private readonly re: RegExp;
  constructor(re: RegExp) {
    super();
    this.re = re;
  }
  override pre_tokenize_text(text: string): string[] {
    return text.match(this.re) ?? [];
  }
}

/** A Sequence pre-tokenizer over pre-tokenizers built here. */
class PreTokenizerChain extends lib.PreTokenizer {
  private readonly parts: LibPreTokenizer[];
  constructor(parts: LibPreTokenizer[]) {
    super();
    this.parts = parts;
  }
  override pre_tokenize_text(text: string, options?: PreTokenizeOptions): string[] {
    return this.parts.reduce<string[]>((pieces, p) => p.pre_tokenize(pieces, options), [text]);
  }
}

/**
 * The reference library's \w and \s (Unicode, UTS #18: alphabetic, marks, decimal digits, connector punctuation
 * and the joiners; White_Space); JavaScript's \w, \d and \s, which the JS library uses, are ASCII-only (\s also
 * takes U+FEFF and misses U+0085).
 */
const WORD = "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}";
/** Pre-tokenizers pare implements itself, by tokenizer.json type: the reference library's splits. */
const OWN_PRE_TOKENIZERS: Record<string, (config: Config) => LibPreTokenizer> = {
  // \w+|[^\w\s]+
  Whitespace: () => new MatchPreTokenizer(new RegExp(`[${WORD}]+|[^${WORD}\\p{White_Space}]+`, "gu")),
  // split at char::is_whitespace, which drops it
  WhitespaceSplit: () => new MatchPreTokenizer(/\P{White_Space}+/gu),
  // char::is_numeric (Nd, Nl, No) one by one, or runs of them, and the runs of other characters
  Digits: (config) =>
    new MatchPreTokenizer(config.individual_digits === true ? /\P{N}+|\p{N}/gu : /\P{N}+|\p{N}+/gu),
};

/** A normalizer from a function of the text. */
class FnNormalizer extends lib.Normalizer {
  private readonly fn: (text: string) => string;
  constructor(config: Config, fn: (text: string) => string) {
    super(config);
    this.fn = fn;
  }
  override normalize(text: string): string {
    return this.fn(text);
  }
}

/** Normalizers pare implements itself, by tokenizer.json type. */
const OWN_NORMALIZERS: Record<string, (config: Config) => LibNormalizer> = {
  // one character at a time (char::to_lowercase): no final-sigma rule, which String.toLowerCase applies
  Lowercase: (config) => new FnNormalizer(config, (t) => Array.from(t, (c) => c.toLowerCase()).join("")),
};

/** Whether a component config (or one inside its Sequence, under `listKey`) has a type in `own`. */
function usesOwn(config: unknown, own: Record<string, unknown>, listKey: string): boolean {
  if (!isObject(config)) return false;
  const list = config[listKey];
  if (config.type === "Sequence" && Array.isArray(list)) return list.some((c) => usesOwn(c, own, listKey));
  return typeof config.type === "string" && Object.hasOwn(own, config.type);
}

function buildPreTokenizer(config: Config): LibPreTokenizer {
  const type = config.type as string;
  if (type === "Sequence" && Array.isArray(config.pretokenizers)) {
    return new PreTokenizerChain((config.pretokenizers as Config[]).map(buildPreTokenizer));
  }
  if (Object.hasOwn(OWN_PRE_TOKENIZERS, type)) return OWN_PRE_TOKENIZERS[type](config);
  return new lib.SequencePreTokenizer({ type: "Sequence", pretokenizers: [config] });
}

function buildNormalizer(config: Config): LibNormalizer {
  const type = config.type as string;
  if (type === "Sequence" && Array.isArray(config.normalizers)) {
    const parts = (config.normalizers as Config[]).map(buildNormalizer);
    return new FnNormalizer(config, (t) => parts.reduce((x, n) => n.normalize(x), t));
  }
  if (Object.hasOwn(OWN_NORMALIZERS, type)) return OWN_NORMALIZERS[type](config);
  return new lib.SequenceNormalizer({ type: "Sequence", normalizers: [config] });
}

/** The library's added-token bookkeeping (private there), redone when pare replaces the normalizer. */
interface AddedTokenState {
  added_tokens: { content: string; normalized: boolean }[];
  added_tokens_map: Map<string, unknown>;
  splitter_normalized: object;
}

/**
 * Replaces the library's normalizer by `normalizer`: the contents of the normalized added tokens, which the
 * library matched in normalized text by their normalized form, are normalized again with it.
 */
function setNormalizer(tok: LibTokenizer, normalizer: LibNormalizer): void {
  const state = tok as unknown as AddedTokenState;
  const contents = new Set(state.added_tokens.map((t) => t.content));
  for (const key of [...state.added_tokens_map.keys()])
    if (!contents.has(key)) state.added_tokens_map.delete(key);
  const normalized: string[] = [];
  for (const t of state.added_tokens) {
    if (!t.normalized) continue;
    const n = normalizer.normalize(t.content);
    normalized.push(n);
    state.added_tokens_map.set(n, t);
  }
  const Splitter = state.splitter_normalized.constructor as new (words: string[]) => object;
  state.splitter_normalized = new Splitter(normalized);
  tok.normalizer = normalizer;
}

export function loadTokenizer(dir: string): PareTokenizer {
  const jsonPath = path.join(dir, "tokenizer.json");
  if (!fileInsideFolder(dir, "tokenizer.json")) {
    throw new PareError(
      "E_FOLDER_INCOMPLETE",
      `${dir}: no tokenizer.json`,
      "pare needs the fast-tokenizer file tokenizer.json; tokenizer.model alone is not enough — convert it with " +
        "transformers' AutoTokenizer.from_pretrained(dir).save_pretrained(dir)",
      { dir },
    );
  }
  const tokJson = readJsonObject(jsonPath, "E_TOKENIZER_INVALID", { maxBytes: MAX_TOKENIZER_BYTES });
  const tokConfig = readOptional(dir, "tokenizer_config.json", "E_TOKENIZER_INVALID");
  const specialMap = readOptional(dir, "special_tokens_map.json", "E_TOKENIZER_INVALID");
  const modelConfig = readOptional(dir, "config.json", "E_CONFIG_INVALID");
  validateTokenizerJson(jsonPath, tokJson);

  const broken = (e: unknown, what: string) =>
    new PareError(
      "E_TOKENIZER_INVALID",
      `${jsonPath}: unsupported or broken tokenizer (${what}: ${String((e as Error)?.message ?? e).split("\n")[0]})`,
      TOKENIZER_HINT,
      { file: jsonPath },
    );
  let tok: LibTokenizer;
  let vocabSize = 0;
  try {
    tok = new lib.Tokenizer(tokJson, tokConfig);
    const model = tokJson.model as Config;
    if (model.type === "WordLevel") {
      // the library made a stand-in model; the added tokens go into the real one as the library would add them
      const wordLevel = new WordLevelModel(
        model as { vocab: Record<string, number>; unk_token: string },
        jsonPath,
      );
      for (const t of tok.get_added_tokens_decoder().values()) {
        wordLevel.tokens_to_ids.set(t.content, t.id);
        wordLevel.vocab[t.id] = t.content;
      }
      tok.model = wordLevel;
    }
    if (usesOwn(tokJson.normalizer, OWN_NORMALIZERS, "normalizers")) {
      setNormalizer(tok, buildNormalizer(tokJson.normalizer as Config));
    }
    if (usesOwn(tokJson.pre_tokenizer, OWN_PRE_TOKENIZERS, "pretokenizers")) {
      tok.pre_tokenizer = buildPreTokenizer(tokJson.pre_tokenizer as Config);
    }
    if (usesOwn(tokJson.decoder, OWN_DECODERS, "decoders")) {
      const decoder = buildDecoder(tokJson.decoder as Config);
      // what the library gives its decoder (the ByteLevel decoder keeps added tokens whole)
      decoder.added_tokens = [...tok.get_added_tokens_decoder().values()];
      decoder.end_of_word_suffix = tok.model?.end_of_word_suffix ?? null;
      tok.decoder = decoder;
    }
    for (const id of tok.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1);
  } catch (e) {
    throw broken(e, "loading");
  }
  if (!isId(vocabSize - 1)) {
    throw new PareError(
      "E_TOKENIZER_INVALID",
      `${jsonPath}: the vocabulary is empty or its ids are not integers`,
      TOKENIZER_HINT,
      {
        file: jsonPath,
      },
    );
  }
  // the model's embedding rows: a token id at or beyond them would index past the embedding matrix
  const modelVocab =
    isId(modelConfig.vocab_size) && modelConfig.vocab_size > 0 ? modelConfig.vocab_size : undefined;

  /** Every id an integer in [0, vocabSize) and below the model's vocab_size; the library checks neither. */
  const checkIds = (ids: unknown, text: string): number[] => {
    if (!Array.isArray(ids)) throw broken(new Error("encode did not return a list of ids"), "encoding");
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
        throw broken(
          new Error(`it produced the id ${JSON.stringify(id) ?? "undefined"} for ${q(text.slice(0, 60))}`),
          "encoding",
        );
      }
      if (modelVocab !== undefined && id >= modelVocab) {
        throw new PareError(
          "E_TOKENIZER_MISMATCH",
          `${jsonPath}: token id ${id} (for ${q(text.slice(0, 60))}) is beyond the model's vocab_size ${modelVocab}`,
          "tokenizer.json does not belong to this model (or config.json's vocab_size is wrong): use the tokenizer the model was trained with",
          { file: jsonPath, id, vocabSize: modelVocab },
        );
      }
    }
    return ids as number[];
  };
  const rawEncode = (text: string, addSpecialTokens: boolean, textPair: string | null): number[] => {
    let ids: unknown;
    try {
      ids = tok.encode(text, { add_special_tokens: addSpecialTokens, text_pair: textPair }).ids;
    } catch (e) {
      if (e instanceof PareError) throw e; // e.g. a WordLevel word without unk_token
      throw broken(e, "encoding");
    }
    return checkIds(ids, textPair === null ? text : `${text} | ${textPair}`);
  };
  const decodeIds = (ids: number[], skipSpecialTokens: boolean): string => {
    // ids outside the vocabulary are skipped, as the reference library does (the JS library decodes them as
    // unk_token, or fails)
    const known = ids.filter((id) => tok.id_to_token(id) !== undefined);
    if (known.length === 0) return "";
    let out: unknown;
    try {
      out = tok.decode(known, { skip_special_tokens: skipSpecialTokens });
    } catch (e) {
      throw broken(e, "decoding");
    }
    if (typeof out !== "string") throw broken(new Error("decode did not return text"), "decoding");
    return out;
  };
  // some failures (regexes, missing parts, ids the library makes up) only show when encoding
  const probeEncode = (text: string, special: boolean, pair: string | null): number[] | undefined => {
    try {
      return rawEncode(text, special, pair);
    } catch (e) {
      // a WordLevel vocab without unk_token that lacks a probe word may still suit the texts it is used on
      if (e instanceof PareError && e.context.unknownWord !== undefined) return undefined;
      throw e;
    }
  };
  for (const probe of ["Hello world 123.", "the cat sat on the mat"]) {
    for (const special of [true, false]) {
      const ids = probeEncode(probe, special, null);
      // e.g. a post-processor template without $A drops the text
      if (ids?.length === 0) throw broken(new Error(`${q(probe)} encodes to no tokens at all`), "encoding");
      if (ids) decodeIds(ids, !special);
    }
  }
  if (probeEncode("first", true, "second")?.length === 0) {
    throw broken(new Error("a text pair encodes to no tokens at all"), "encoding");
  }

  const special = (key: "bos" | "eos" | "pad"): number | undefined => {
    const content = tokenContent(tokConfig[`${key}_token`]) ?? tokenContent(specialMap[`${key}_token`]);
    const id = content === undefined ? undefined : tok.token_to_id(content);
    if (id !== undefined) return id;
    const fallback = modelConfig[`${key}_token_id`]; // an id, or a list of ids (e.g. several eos ids)
    const first = Array.isArray(fallback) ? fallback[0] : fallback;
    return Number.isInteger(first) ? (first as number) : undefined;
  };

  const encode = (text: string, opts: { addSpecialTokens?: boolean; textPair?: string } = {}) =>
    rawEncode(text, opts.addSpecialTokens ?? true, opts.textPair ?? null);
  const template =
    (tokJson.post_processor as { type?: string; pair?: unknown[]; single?: unknown[] } | null | undefined) ??
    null;

  return {
    encode,
    encodeWithTypes(text, textPair) {
      const ids = encode(text, { textPair });
      if (textPair === undefined) return { ids, typeIds: ids.map(() => 0) };
      // walk the TemplateProcessing pair template: pieces are special tokens or sequences A / B, each with a type_id
      const pieces =
        template?.type === "TemplateProcessing" && Array.isArray(template.pair) ? template.pair : null;
      if (pieces) {
        const a = encode(text, { addSpecialTokens: false });
        const b = encode(textPair, { addSpecialTokens: false });
        const typeIds: number[] = [];
        for (const p of pieces as Record<string, { id: string; type_id: number }>[]) {
          if (p.Sequence) typeIds.push(...(p.Sequence.id === "A" ? a : b).map(() => p.Sequence.type_id));
          else if (p.SpecialToken) typeIds.push(p.SpecialToken.type_id);
        }
        if (typeIds.length === ids.length) return { ids, typeIds };
      }
      // fallback: the tokens of the first text (with its special tokens) are segment 0, the rest segment 1
      const nA = encode(text).length;
      return { ids, typeIds: ids.map((_: number, i: number) => (i < nA ? 0 : 1)) };
    },
    decode(ids, skipSpecialTokens = false) {
      return decodeIds(ids, skipSpecialTokens);
    },
    tokenToId: (t) => tok.token_to_id(t),
    bosId: special("bos"),
    eosId: special("eos"),
    padId: special("pad"),
    vocabSize,
  };
}
