/** `generate`: text generation with the KV cache from a model folder (or a Hugging Face cache id). */
import path from "node:path";
import { type LoadedModel, loadModel } from "../arch/load.ts";
import {
  assertGenerative,
  defaultEosIds,
  type GenerateOptions,
  type GenerateResult,
  generate as generateWith,
} from "../eval/generate.ts";
import { readJsonObject } from "../io/modelFolder.ts";
import { fileInsideFolder } from "../io/safetensors.ts";
import { loadTokenizer, type PareTokenizer } from "../io/tokenizer.ts";

export type { GenerateOptions, GenerateResult };

/** A decoder ready to generate: the model, its tokenizer and its stop ids. */
export interface Generator {
  model: LoadedModel;
  tokenizer: PareTokenizer;
  eosIds: number[];
}

/** The stop ids: the tokenizer's and config.json's EOS, plus generation_config.json's eos_token_id when present. */
export function eosIdsOf(model: LoadedModel, tokenizer: PareTokenizer): number[] {
  const ids = new Set(defaultEosIds(model, tokenizer));
  if (fileInsideFolder(model.dir, "generation_config.json")) {
    const g = readJsonObject(path.join(model.dir, "generation_config.json"), "E_CONFIG_INVALID");
    const e = g.eos_token_id;
    for (const v of Array.isArray(e) ? e : [e])
      if (Number.isInteger(v) && (v as number) >= 0 && (v as number) < model.dims.vocab) ids.add(v as number);
  }
  return [...ids];
}

/** Open a decoder for generation (the caller closes `model`); a coded error for encoders or a missing tokenizer. */
export function openGenerator(dir: string): Generator {
  const model = loadModel(dir);
  try {
    assertGenerative(model);
    const tokenizer = loadTokenizer(model.dir);
    return { model, tokenizer, eosIds: eosIdsOf(model, tokenizer) };
  } catch (e) {
    model.close();
    throw e;
  }
}

/**
 * Continue `options.prompt` with the model in `dir`: greedy by default, or sampled (temperature, top-k, top-p,
 * seed); `onToken` streams the text; `signal` stops between tokens. The model is closed before it returns.
 */
export async function generate(dir: string, options: GenerateOptions = {}): Promise<GenerateResult> {
  const g = openGenerator(dir);
  try {
    return await generateWith(g.model, g.tokenizer, { eosIds: g.eosIds, ...options });
  } finally {
    g.model.close();
  }
}
