/**
 * Tokenizer adapter over @huggingface/tokenizers (pure JS, reads tokenizer.json).
 */
import fs from "node:fs";
import path from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { PareError } from "../errors.ts";
import { readJsonObject } from "./modelFolder.ts";

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

function readOptional(
  file: string,
  code: "E_TOKENIZER_INVALID" | "E_CONFIG_INVALID",
): Record<string, unknown> {
  return fs.existsSync(file) ? readJsonObject(file, code) : {};
}

export function loadTokenizer(dir: string): PareTokenizer {
  const jsonPath = path.join(dir, "tokenizer.json");
  if (!fs.existsSync(jsonPath)) {
    throw new PareError(
      "E_FOLDER_INCOMPLETE",
      `${dir}: no tokenizer.json`,
      "pare needs the fast-tokenizer file tokenizer.json; tokenizer.model alone is not enough — convert it with " +
        "transformers' AutoTokenizer.from_pretrained(dir).save_pretrained(dir)",
      { dir },
    );
  }
  const tokJson = readJsonObject(jsonPath, "E_TOKENIZER_INVALID");
  const tokConfig = readOptional(path.join(dir, "tokenizer_config.json"), "E_TOKENIZER_INVALID");
  const specialMap = readOptional(path.join(dir, "special_tokens_map.json"), "E_TOKENIZER_INVALID");
  const modelConfig = readOptional(path.join(dir, "config.json"), "E_CONFIG_INVALID");

  let tok: Tokenizer;
  try {
    tok = new Tokenizer(tokJson, tokConfig);
    tok.encode("Hello world 123"); // some failures (regexes, missing parts) only show when encoding
  } catch (e) {
    throw new PareError(
      "E_TOKENIZER_INVALID",
      `${jsonPath}: unsupported or broken tokenizer (${(e as Error).message})`,
      TOKENIZER_HINT,
      { file: jsonPath },
    );
  }

  const special = (key: "bos" | "eos" | "pad"): number | undefined => {
    const content = tokenContent(tokConfig[`${key}_token`]) ?? tokenContent(specialMap[`${key}_token`]);
    const id = content === undefined ? undefined : tok.token_to_id(content);
    if (id !== undefined) return id;
    const fallback = modelConfig[`${key}_token_id`]; // an id, or a list of ids (e.g. several eos ids)
    const first = Array.isArray(fallback) ? fallback[0] : fallback;
    return Number.isInteger(first) ? (first as number) : undefined;
  };

  let vocabSize = 0;
  for (const id of tok.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1);

  const encode = (text: string, opts: { addSpecialTokens?: boolean; textPair?: string } = {}) =>
    tok.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true, text_pair: opts.textPair ?? null })
      .ids;
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
      return ids.length === 0 ? "" : tok.decode(ids, { skip_special_tokens: skipSpecialTokens });
    },
    tokenToId: (t) => tok.token_to_id(t),
    bosId: special("bos"),
    eosId: special("eos"),
    padId: special("pad"),
    vocabSize,
  };
}
