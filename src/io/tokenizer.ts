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

  return {
    encode(text, opts = {}) {
      return tok.encode(text, {
        add_special_tokens: opts.addSpecialTokens ?? true,
        text_pair: opts.textPair ?? null,
      }).ids;
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
