/**
 * Tokenizer adapter over @huggingface/tokenizers (pure JS, reads tokenizer.json).
 */
import path from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
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
const MODEL_TYPES = ["BPE", "WordPiece", "Unigram"];

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
    if (type === "BPE" || "merges" in model) {
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
  let tok: Tokenizer;
  let vocabSize = 0;
  try {
    tok = new Tokenizer(tokJson, tokConfig);
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
      throw broken(e, "encoding");
    }
    return checkIds(ids, textPair === null ? text : `${text} | ${textPair}`);
  };
  const decodeIds = (ids: number[], skipSpecialTokens: boolean): string => {
    if (ids.length === 0) return "";
    let out: unknown;
    try {
      out = tok.decode(ids, { skip_special_tokens: skipSpecialTokens });
    } catch (e) {
      throw broken(e, "decoding");
    }
    if (typeof out !== "string") throw broken(new Error("decode did not return text"), "decoding");
    return out;
  };
  // some failures (regexes, missing parts, ids the library makes up) only show when encoding
  for (const probe of ["Hello world 123.", "the cat sat on the mat"]) {
    for (const special of [true, false]) {
      const ids = rawEncode(probe, special, null);
      // e.g. a post-processor template without $A drops the text
      if (ids.length === 0) throw broken(new Error(`${q(probe)} encodes to no tokens at all`), "encoding");
      decodeIds(ids, !special);
    }
  }
  if (rawEncode("first", true, "second").length === 0) {
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
