/**
 * Tokenizer adapter over @huggingface/tokenizers (pure JS, reads tokenizer.json), made to encode and decode exactly
 * as the reference library, Rust Hugging Face `tokenizers` (what transformers' fast tokenizers run), does. Where the
 * JS library differs, pare does the step itself (test/io/tokenizer-families.test.ts compares the two):
 * - the WordLevel model, which the JS library lacks;
 * - finding added tokens in the text (single_word, lstrip / rstrip with Unicode whitespace, normalized tokens by
 *   their normalized form) and the ids added tokens get (the reference ignores the ids written in the file);
 * - the pre-tokenizers Whitespace, WhitespaceSplit, Digits (Unicode \w, \s and digits; JavaScript's are ASCII)
 *   and Metaspace (split, prepend_scheme), the Lowercase normalizer (no final-sigma rule), the ByteFallback and
 *   Metaspace decoders;
 * - TemplateProcessing (the listed special-token ids), lone surrogates (U+FFFD), decoding of unknown ids (skipped).
 * Long texts: a BPE model gets a long pre-token (e.g. a whole text under a tokenizer without pre-tokenizer, as
 * Llama 2's) as its pieces between places no merge can join (bpeWordSplitter): the same tokens, in linear time,
 * where the library's BPE over one huge word is slow (its time per character grows with the word).
 * Known limit: characters assigned in Unicode versions newer than the reference's tables can split differently.
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
      const prefix =
        typeof model.continuing_subword_prefix === "string" ? model.continuing_subword_prefix : "";
      merges.forEach((m, i) => {
        const pair = typeof m === "string" ? m.split(" ") : m;
        const ok = Array.isArray(pair) && pair.length === 2 && pair.every((x) => typeof x === "string");
        if (!ok)
          throw bad(`merge ${i} (${String(JSON.stringify(m)).slice(0, 60)}) is not "a b" or ["a", "b"]`);
        // as the reference library refuses to load: both parts and the merged token must be in the vocab
        const [a, b] = pair as [string, string];
        for (const t of [a, b, a + b.slice(prefix.length)]) {
          if (!Object.hasOwn(vocab, t))
            throw bad(`merge ${i} (${q(`${a} ${b}`)}) uses ${q(t)}, which is not in the vocab`);
        }
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
  /** the BPE model */
  BPE: abstract new (
    config: Config,
  ) => LibModel;
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
  Metaspace: (config) => new MetaspaceDecoder(config),
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
  Metaspace: (config) => new MetaspacePreTokenizer(config),
  // char::is_numeric (Nd, Nl, No) one by one, or runs of them, and the runs of other characters
  Digits: (config) =>
    new MatchPreTokenizer(config.individual_digits === true ? /\P{N}+|\p{N}/gu : /\P{N}+|\p{N}+/gu),
};

/** Metaspace's prepend_scheme; a file from before it existed says add_prefix_space (true: "always"). */
const prependScheme = (config: Config): string =>
  typeof config.prepend_scheme === "string"
    ? config.prepend_scheme
    : config.add_prefix_space === false
      ? "never"
      : "always";
/** The replacement character of a Metaspace config (one character; "▁" by default). */
const metaspaceChar = (config: Config): string =>
  typeof config.replacement === "string" && Array.from(config.replacement).length === 1
    ? config.replacement
    : "\u2581";

/**
 * The Metaspace pre-tokenizer as the reference library has it: spaces become the replacement character, which is
 * prepended to a piece that does not start with it (every piece for prepend_scheme "always"; for "first", the
 * piece at the start of the text: the first piece of the first part between added tokens); with split (the
 * default) each piece is then cut before every replacement character. (The JS library ignores split and
 * add_prefix_space.)
 */
class MetaspacePreTokenizer extends lib.PreTokenizer {
  private readonly replacement: string;
  private readonly scheme: string;
  private readonly splitter: RegExp | null;
  constructor(config: Config) {
    super();
    this.replacement = metaspaceChar(config);
    this.scheme = prependScheme(config);
    const r = this.replacement.replace(/[\\^$.*+?()[\]{}|/-]/g, "\\$&");
    this.splitter = config.split === false ? null : new RegExp(`${r}[^${r}]*|[^${r}]+`, "gu");
  }
  override pre_tokenize(text: string | string[], options?: PreTokenizeOptions): string[] {
    const pieces = Array.isArray(text) ? text : [text];
    return pieces.flatMap((piece, i) => this.piece(piece, options?.section_index === 0 && i === 0));
  }
  override pre_tokenize_text(text: string, options?: PreTokenizeOptions): string[] {
    return this.pre_tokenize([text], options);
  }
  private piece(text: string, atStart: boolean): string[] {
    let t = text.replaceAll(" ", this.replacement);
    const prepend = this.scheme === "always" || (this.scheme === "first" && atStart);
    if (prepend && !t.startsWith(this.replacement)) t = this.replacement + t;
    if (this.splitter === null) return t === "" ? [] : [t];
    return t.match(this.splitter) ?? [];
  }
}

/**
 * The Metaspace decoder as the reference library has it: the replacement character becomes a space, except in
 * the first token, where it is dropped (unless prepend_scheme is "never"). (The JS library drops just one leading
 * space of the first token, whatever the scheme.)
 */
class MetaspaceDecoder extends lib.Decoder {
  private readonly replacement: string;
  private readonly dropInFirst: boolean;
  constructor(config: Config) {
    super(config);
    this.replacement = metaspaceChar(config);
    this.dropInFirst = prependScheme(config) !== "never";
  }
  override decode_chain(tokens: string[]): string[] {
    return tokens.map((t, i) => t.replaceAll(this.replacement, i === 0 && this.dropInFirst ? "" : " "));
  }
}

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

/** An added token as the library keeps it (AddedToken). */
interface LibAddedToken {
  content: string;
  id: number;
  normalized: boolean;
  lstrip: boolean;
  rstrip: boolean;
  single_word: boolean;
}
/** The library's added-token bookkeeping (private there). */
interface AddedTokenState {
  added_tokens: LibAddedToken[];
  added_tokens_map: Map<string, LibAddedToken>;
}

const isSpace = (c: string) => /\p{White_Space}/u.test(c);
/** Rust's char::is_alphanumeric, or "_": what single_word tokens must not touch */
const isWordChar = (c: string) => c === "_" || /[\p{Alphabetic}\p{N}]/u.test(c);

/** One part of a text split at added tokens: text, or an added token (`key`: how the library names it). */
type AddedSplit = { start: number; text: string; key?: string };

/**
 * Finds added tokens in a text as the reference library's AddedVocabulary does: leftmost-longest matches, left to
 * right; a single_word token only where no word character (alphanumeric or "_") touches it (else it is text); an
 * lstrip / rstrip token also takes the whitespace (Unicode White_Space) on its left / right. (The library's own
 * splitting uses JavaScript's whitespace, which takes U+FEFF and misses U+0085, and ignores single_word.)
 */
class AddedTokenFinder {
  /** a trie of the patterns by UTF-16 unit; a node's `end`: the pattern that ends there */
  private readonly root: TrieNode = { next: new Map() };

  constructor(patterns: AddedPattern[]) {
    for (const p of patterns) {
      let node = this.root;
      for (let k = 0; k < p.pattern.length; k++) {
        let child = node.next.get(p.pattern[k]);
        if (child === undefined) {
          child = { next: new Map() };
          node.next.set(p.pattern[k], child);
        }
        node = child;
      }
      node.end = p;
    }
  }

  split(text: string): AddedSplit[] {
    const out: AddedSplit[] = [];
    let done = 0; // the end of the last token taken
    let i = 0;
    while (i < text.length) {
      // the longest pattern starting at i
      let match: { stop: number; p: AddedPattern } | undefined;
      let node: TrieNode | undefined = this.root;
      for (let j = i; j < text.length && node !== undefined; j++) {
        node = node.next.get(text[j]);
        if (node?.end !== undefined) match = { stop: j + 1, p: node.end };
      }
      if (match === undefined) {
        i++;
        continue;
      }
      let start = i;
      let stop = match.stop;
      i = stop;
      const t = match.p.token;
      if (
        t.single_word &&
        ((start > 0 && isWordChar(charBefore(text, start))) ||
          (stop < text.length && isWordChar(String.fromCodePoint(text.codePointAt(stop) as number))))
      ) {
        continue;
      }
      if (t.lstrip) while (start > done && isSpace(text[start - 1])) start--;
      if (t.rstrip) while (stop < text.length && isSpace(text[stop])) stop++;
      i = stop;
      if (done < start) out.push({ start: done, text: text.slice(done, start) });
      out.push({ start, text: text.slice(start, stop), key: match.p.key });
      done = stop;
    }
    if (done < text.length) out.push({ start: done, text: text.slice(done) });
    return out;
  }
}
type AddedPattern = { pattern: string; key: string; token: LibAddedToken };
interface TrieNode {
  next: Map<string, TrieNode>;
  end?: AddedPattern;
}
/** The character (code point) that ends at index i of s. */
function charBefore(s: string, i: number): string {
  const low = s.charCodeAt(i - 1);
  const high = i >= 2 ? s.charCodeAt(i - 2) : 0;
  return low >= 0xdc00 && low <= 0xdfff && high >= 0xd800 && high <= 0xdbff ? s.slice(i - 2, i) : s[i - 1];
}

/** The library's BPE model, as far as bpeWordSplitter reads it. */
interface LibBpe extends LibModel {
  /** [left, right] strings, in rank order */
  merges: [string, string][];
  end_of_word_suffix?: string;
  continuing_subword_suffix?: string | null;
  ignore_merges: boolean;
  config: Config;
}

/**
 * Where a long word may be cut for the library's BPE model without changing its tokens: a function giving the
 * pieces of a word, whose tokens (each encoded on its own, in order) are the word's, or null when no such rule is
 * known for the model (not the library's BPE class itself, or one with an end-of-word suffix or a continuing-
 * subword prefix / suffix, which mark a word's first or last character: a cut would move them).
 *
 * Why the tokens are the same: the library's BPE starts from the word's characters (code points) and repeatedly
 * joins the two adjacent symbols whose pair has the lowest merge rank, leftmost first; every symbol is a run of
 * the word's characters. Take a place between characters x and y such that no merge (a, b) has a ending in x and
 * b starting with y. No join can ever make a symbol that covers both x and y: the first one to do so would join
 * a symbol ending in x to one starting with y. So the symbols left of the place only ever join among themselves,
 * as do those right of it, each side in the order it would alone (lowest rank, then leftmost, within the side),
 * and the word's symbols are the left side's followed by the right side's. What comes after the joins works on
 * each final symbol alone (its id, or its bytes <0xNN> with byte_fallback, or unk_token), and the unknown tokens
 * are fused (fuse_unk) over the whole model call, which still gets all the pieces. With ignore_merges, a word
 * that is itself in the vocab is taken whole without merges: there every piece is made longer than the longest
 * token in the vocab (by keeping some cuts uncut), so that no piece can be one. The tests compare pieces with
 * whole words (test/io/tokenizer-long.test.ts).
 */
function bpeWordSplitter(model: LibModel): ((word: string) => string[]) | null {
  // the library's class itself (a subclass could encode otherwise)
  if (Object.getPrototypeOf(model) !== lib.BPE.prototype) return null;
  const bpe = model as LibBpe;
  const prefix = bpe.config.continuing_subword_prefix;
  if (
    bpe.end_of_word_suffix ||
    bpe.continuing_subword_suffix ||
    (typeof prefix === "string" && prefix !== "")
  ) {
    return null;
  }
  if (!Array.isArray(bpe.merges)) return null;
  /** the last character of a, then the first of b, for every merge (a, b): the joins that may cross */
  let joined: Set<string> | undefined;
  let minPiece = 0;
  return (word: string): string[] => {
    if (joined === undefined) {
      joined = new Set();
      for (const [a, b] of bpe.merges) {
        // a merge with an empty side joins nothing (symbols are never empty)
        if (typeof a !== "string" || typeof b !== "string" || a === "" || b === "") continue;
        joined.add(charBefore(a, a.length) + String.fromCodePoint(b.codePointAt(0) as number));
      }
      if (bpe.ignore_merges)
        for (const t of bpe.tokens_to_ids.keys()) minPiece = Math.max(minPiece, t.length + 1);
    }
    const pieces: string[] = [];
    let start = 0;
    let prev = "";
    for (let i = 0; i < word.length; ) {
      const c = String.fromCodePoint(word.codePointAt(i) as number);
      if (i > start && i - start >= minPiece && !joined.has(prev + c)) {
        pieces.push(word.slice(start, i));
        start = i;
      }
      prev = c;
      i += c.length;
    }
    const rest = word.slice(start);
    // a last piece too short for ignore_merges stays with the one before (a longer piece is as safe)
    if (pieces.length > 0 && rest.length < minPiece) pieces[pieces.length - 1] += rest;
    else pieces.push(rest);
    return pieces;
  };
}

/**
 * Replaces the library's first encoding steps (added tokens, normalizer, pre-tokenizer, model) by the reference
 * library's: the added tokens that are not normalized (normalized: false) are found in the text; each part between
 * them is normalized, and the normalized added tokens are found in it by their normalized form; each remaining part
 * is pre-tokenized (the part at the very start of the text is the first, for Metaspace's prepend_scheme "first")
 * and each pre-token goes through the model on its own (fuse_unk fuses unknown pieces of one word only). The
 * normalized form is also what a normalized added token's id decodes to, as in the reference library (a special
 * one is then not skipped by skip_special_tokens there either).
 */
function useReferenceSplitting(
  tok: LibTokenizer,
  splitLongWord: ((word: string) => string[]) | null,
  longWord: number,
): void {
  const state = tok as unknown as AddedTokenState;
  const normalizer = tok.normalizer;
  const raw: AddedPattern[] = [];
  const normalized: AddedPattern[] = [];
  for (const t of state.added_tokens) {
    if (!t.normalized) {
      raw.push({ pattern: t.content, key: t.content, token: t });
      continue;
    }
    const form = normalizer === null ? t.content : normalizer.normalize(t.content);
    if (form === "") continue;
    normalized.push({ pattern: form, key: form, token: t });
    // the library maps the key to the token's id
    state.added_tokens_map.set(form, t);
    tok.model.vocab[t.id] = form;
  }
  const rawFinder = new AddedTokenFinder(raw);
  const normalizedFinder = new AddedTokenFinder(normalized);
  const model = tok.model as unknown as (pieces: string[]) => string[];
  const encodeText = (text: string | null): string[] | null => {
    if (text === null) return null;
    const tokens: string[] = [];
    for (const part of rawFinder.split(text)) {
      if (part.key !== undefined) {
        tokens.push(part.key);
        continue;
      }
      const norm = normalizer === null ? part.text : normalizer.normalize(part.text);
      for (const sub of normalizedFinder.split(norm)) {
        if (sub.key !== undefined) {
          tokens.push(sub.key);
          continue;
        }
        const atStart = part.start === 0 && sub.start === 0;
        const pieces = tok.pre_tokenizer
          ? tok.pre_tokenizer.pre_tokenize(sub.text, { section_index: atStart ? 0 : 1 })
          : [sub.text];
        for (const piece of pieces) {
          if (piece === "") continue;
          // one model call per pre-token (fuse_unk fuses within it): a long one as its pieces that no merge joins
          const words = splitLongWord !== null && piece.length > longWord ? splitLongWord(piece) : [piece];
          // a loop, not push(...): a long text can give more tokens than a call takes arguments
          for (const t of model(words)) tokens.push(t);
        }
      }
    }
    return tokens;
  };
  (tok as unknown as { encode_text: typeof encodeText }).encode_text = encodeText;
}

/**
 * The added tokens with the ids the reference library gives them: it ignores the ids written in tokenizer.json
 * and gives each added token, in order, the id its content already has (in the model's vocab, or from an earlier
 * added token), else the next free id: the model's vocab size (its number of entries), or one past the largest id
 * given so far when that is larger. Files the reference library wrote agree; the JS library would take the
 * written ids of a file that does not (a token inside the vocab's range, a gap after it).
 */
function referenceAddedTokens(tokJson: Config): Config[] {
  const added = tokJson.added_tokens as Config[];
  const vocab = (tokJson.model as Config).vocab;
  const modelIds = new Map<string, number>();
  const entries: [string, number][] = Array.isArray(vocab)
    ? (vocab as [string, number][]).map(([piece], i) => [piece, i])
    : Object.entries(vocab as Record<string, number>);
  for (const [piece, id] of entries) modelIds.set(piece, id);
  const modelSize = Array.isArray(vocab) ? vocab.length : modelIds.size;
  const given = new Map<string, number>();
  let largest = -1;
  return added.map((t) => {
    const content = t.content as string;
    let id = given.get(content) ?? modelIds.get(content);
    if (id === undefined)
      id = largest < 0 || (largest < modelSize && modelSize > 0) ? modelSize : largest + 1;
    given.set(content, id);
    largest = Math.max(largest, id);
    return id === t.id ? t : { ...t, id };
  });
}

/** One piece of a TemplateProcessing template: a sequence (A: the text, B: the pair) or a special token. */
type TemplatePiece = { sequence: "A" | "B"; typeId: number } | { special: string; typeId: number };
/** A TemplateProcessing post-processor: its templates and the ids of its special tokens (by key). */
interface Template {
  single: TemplatePiece[];
  pair: TemplatePiece[];
  specialIds: Map<string, number[]>;
}

/**
 * The TemplateProcessing that adds the special tokens: the post-processor itself, or the one in a Sequence whose
 * other processors are ByteLevel ones (which move offsets only; Llama 3 has one). undefined for other
 * post-processors, which the library applies.
 */
function templateConfig(postProcessor: unknown): Config | undefined {
  if (!isObject(postProcessor)) return undefined;
  if (postProcessor.type === "TemplateProcessing") return postProcessor;
  const parts = postProcessor.processors;
  if (postProcessor.type !== "Sequence" || !Array.isArray(parts)) return undefined;
  const templates = parts.filter((p) => isObject(p) && p.type === "TemplateProcessing");
  const others = parts.filter((p) => !(isObject(p) && p.type === "TemplateProcessing"));
  return templates.length === 1 && others.every((p) => isObject(p) && p.type === "ByteLevel")
    ? (templates[0] as Config)
    : undefined;
}

/**
 * The template, checked as the reference library needs it: pieces {Sequence: {id: "A" | "B", type_id}} or
 * {SpecialToken: {id, type_id}}, every special token listed in special_tokens with its ids (the reference library
 * panics when encoding with one that is not), no B in the single template (the same).
 */
function parseTemplate(config: Config, bad: (what: string) => PareError): Template {
  const specialIds = new Map<string, number[]>();
  const specials = config.special_tokens;
  if (!isObject(specials)) throw bad("TemplateProcessing.special_tokens is not an object");
  for (const [key, v] of Object.entries(specials)) {
    const ids = isObject(v) ? v.ids : undefined;
    if (!Array.isArray(ids) || !ids.every(isId)) {
      throw bad(`TemplateProcessing special token ${q(key)} needs ids, a list of integers in [0, 2^24)`);
    }
    specialIds.set(key, ids as number[]);
  }
  const pieces = (which: "single" | "pair"): TemplatePiece[] => {
    const list = config[which];
    if (!Array.isArray(list)) throw bad(`TemplateProcessing.${which} is not a list`);
    return list.map((p, i) => {
      const where = `TemplateProcessing.${which}[${i}]`;
      const seq = isObject(p) ? p.Sequence : undefined;
      const st = isObject(p) ? p.SpecialToken : undefined;
      const body = isObject(seq) ? seq : isObject(st) ? st : undefined;
      if (body === undefined || !isId(body.type_id)) {
        throw bad(`${where} is not {Sequence: {id, type_id}} or {SpecialToken: {id, type_id}}`);
      }
      if (body === seq) {
        const id = body.id;
        if (id !== "A" && (id !== "B" || which === "single")) {
          throw bad(
            `${where} names the sequence ${q(String(id))}, not ${which === "single" ? "A" : "A or B"}`,
          );
        }
        return { sequence: id, typeId: body.type_id };
      }
      if (typeof body.id !== "string" || !specialIds.has(body.id)) {
        throw bad(
          `${where} uses the special token ${q(String(body.id))}, which special_tokens does not list`,
        );
      }
      return { special: body.id, typeId: body.type_id };
    });
  };
  return { single: pieces("single"), pair: pieces("pair"), specialIds };
}

/**
 * The template applied as the reference library does: its pieces in order, a special token's ids as listed; without
 * special tokens, the sequence pieces alone (so a pair template "$A $A" repeats the text even then).
 */
function applyTemplate(
  t: Template,
  a: number[],
  b: number[] | null,
  addSpecialTokens: boolean,
): { ids: number[]; typeIds: number[] } {
  const ids: number[] = [];
  const typeIds: number[] = [];
  for (const p of b === null ? t.single : t.pair) {
    if ("special" in p && !addSpecialTokens) continue;
    const part = "special" in p ? (t.specialIds.get(p.special) ?? []) : p.sequence === "A" ? a : (b ?? []);
    for (const id of part) {
      ids.push(id);
      typeIds.push(p.typeId);
    }
  }
  return { ids, typeIds };
}

/** Options of loadTokenizer. */
export interface TokenizerOptions {
  /**
   * A pre-token (what the model encodes as one word) longer than this many UTF-16 code units goes to a BPE model
   * as the pieces between the places where no merge can join its two sides (see bpeWordSplitter), which gives the
   * same tokens; default 256. Infinity encodes every pre-token whole, as the library does.
   */
  splitWordsLongerThan?: number;
}

/** Pre-tokens longer than this (UTF-16 code units) are split where no merge joins (the library caches shorter words). */
const LONG_WORD = 256;

export function loadTokenizer(dir: string, options: TokenizerOptions = {}): PareTokenizer {
  const longWord = options.splitWordsLongerThan ?? LONG_WORD;
  if (!(longWord >= 0)) {
    throw new PareError(
      "E_USAGE",
      `splitWordsLongerThan must be a number ≥ 0 (or Infinity), not ${String(longWord)}`,
      `leave it out (default ${LONG_WORD}) or pass Infinity to encode every pre-token whole`,
      { splitWordsLongerThan: String(longWord) },
    );
  }
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
  const badJson = (what: string) =>
    new PareError("E_TOKENIZER_INVALID", `${jsonPath}: ${what}`, TOKENIZER_HINT, { file: jsonPath });
  const templateJson = templateConfig(tokJson.post_processor);
  // pare applies TemplateProcessing itself: the library looks its special tokens up by name instead of taking
  // the listed ids, and takes at most one id per special token
  const template = templateJson === undefined ? undefined : parseTemplate(templateJson, badJson);

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
    // tokenizer_config.json's remove_space and do_lowercase_and_remove_accent are options of transformers' slow
    // tokenizers, which the library applies but the reference library (which reads tokenizer.json alone) does
    // not; clean_up_tokenization_spaces (transformers' clean-up of " ." etc. after decoding) is off unless the
    // file turns it on, as in transformers today (the library defaults it to on)
    const { remove_space: _rs, do_lowercase_and_remove_accent: _dl, ...rest } = tokConfig;
    const libConfig = {
      ...rest,
      clean_up_tokenization_spaces: tokConfig.clean_up_tokenization_spaces === true,
    };
    const added = Array.isArray(tokJson.added_tokens) ? referenceAddedTokens(tokJson) : tokJson.added_tokens;
    const model = tokJson.model as Config;
    // WordLevel: the library gets an empty stand-in model, replaced below
    const libModel = model.type === "WordLevel" ? { type: "BPE", vocab: {}, merges: [] } : model;
    tok = new lib.Tokenizer({ ...tokJson, added_tokens: added, model: libModel }, libConfig);
    if (model.type === "WordLevel") {
      // the added tokens go into the real model as the library adds them to its own
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
      tok.normalizer = buildNormalizer(tokJson.normalizer as Config);
    }
    if (usesOwn(tokJson.pre_tokenizer, OWN_PRE_TOKENIZERS, "pretokenizers")) {
      tok.pre_tokenizer = buildPreTokenizer(tokJson.pre_tokenizer as Config);
    }
    useReferenceSplitting(tok, bpeWordSplitter(tok.model), longWord);
    if (usesOwn(tokJson.decoder, OWN_DECODERS, "decoders")) {
      const decoder = buildDecoder(tokJson.decoder as Config);
      // what the library gives its decoder (the ByteLevel decoder keeps added tokens whole)
      decoder.added_tokens = [...tok.get_added_tokens_decoder().values()];
      decoder.end_of_word_suffix = tok.model?.end_of_word_suffix ?? null;
      tok.decoder = decoder;
    }
    if (template !== undefined) (tok as unknown as { post_processor: null }).post_processor = null;
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
  /** The library's ids for a text (or a text and its pair, one after the other), checked. */
  const libEncode = (text: string, addSpecialTokens: boolean, textPair: string | null): number[] => {
    let ids: unknown;
    try {
      ids = tok.encode(text, { add_special_tokens: addSpecialTokens, text_pair: textPair }).ids;
    } catch (e) {
      if (e instanceof PareError) throw e; // e.g. a WordLevel word without unk_token
      throw broken(e, "encoding");
    }
    return checkIds(ids, textPair === null ? text : `${text} | ${textPair}`);
  };
  /** ids and type ids (0 for the text, 1 for the pair, or as the template says) */
  const encodeTyped = (
    text: string,
    addSpecialTokens: boolean,
    textPair: string | null,
  ): { ids: number[]; typeIds: number[] } | { ids: number[]; typeIds?: undefined } => {
    // a lone surrogate reaches the reference library (through Node's UTF-8 conversion) as U+FFFD
    text = text.replace(/\p{Cs}/gu, "\uFFFD");
    if (textPair !== null) textPair = textPair.replace(/\p{Cs}/gu, "\uFFFD");
    if (template === undefined) return { ids: libEncode(text, addSpecialTokens, textPair) };
    const a = libEncode(text, false, null);
    const b = textPair === null ? null : libEncode(textPair, false, null);
    const out = applyTemplate(template, a, b, addSpecialTokens);
    checkIds(out.ids, textPair === null ? text : `${text} | ${textPair}`);
    return out;
  };
  const rawEncode = (text: string, addSpecialTokens: boolean, textPair: string | null): number[] =>
    encodeTyped(text, addSpecialTokens, textPair).ids;
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
  return {
    encode,
    encodeWithTypes(text, textPair) {
      const out = encodeTyped(text, true, textPair ?? null);
      if (out.typeIds !== undefined) return out;
      const { ids } = out;
      if (textPair === undefined) return { ids, typeIds: ids.map(() => 0) };
      // another post-processor: the tokens of the first text (with its special tokens) are segment 0, the rest 1
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
