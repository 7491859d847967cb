/**
 * A Hugging Face model folder: config.json + safetensors weights (+ tokenizer files).
 */
import fs from "node:fs";
import path from "node:path";
import { type ErrorCode, PareError } from "../errors.ts";
import { TensorStore } from "./safetensors.ts";

export interface ModelFolder {
  dir: string;
  config: Record<string, unknown>;
  store: TensorStore;
  hasTokenizer: boolean;
}

/** Reads a JSON file that must hold an object; parse errors carry line:column. */
export function readJsonObject(file: string, code: ErrorCode): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8").replace(/^\uFEFF/, "");
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new PareError(
      "E_IO",
      `${file}: cannot read (${err.code ?? err.message})`,
      "check the path and permissions",
      {
        file,
      },
    );
  }
  const hint = `fix or re-download ${path.basename(file)}`;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    const msg = (e as Error).message;
    const pos = Number(/at position (\d+)/.exec(msg)?.[1] ?? text.length);
    const before = text.slice(0, pos).split("\n");
    const [line, column] = [before.length, before[before.length - 1].length + 1];
    throw new PareError(code, `${file}:${line}:${column}: not valid JSON (${msg})`, hint, {
      file,
      line,
      column,
    });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new PareError(code, `${file}: expected a JSON object`, hint, { file });
  }
  return value as Record<string, unknown>;
}

export function openModelFolder(dir: string): ModelFolder {
  dir = path.resolve(dir);
  let stat: fs.Stats | undefined;
  try {
    stat = fs.statSync(dir);
  } catch {
    stat = undefined;
  }
  if (!stat?.isDirectory()) {
    throw new PareError(
      "E_FOLDER_MISSING",
      stat ? `${dir} is a file, not a model folder` : `${dir}: no such folder`,
      "give the path of a local Hugging Face model folder (config.json + *.safetensors), e.g. one saved with " +
        "save_pretrained or downloaded with `hf download`",
      { dir },
    );
  }
  const configPath = path.join(dir, "config.json");
  if (!fs.existsSync(configPath)) {
    throw new PareError(
      "E_FOLDER_INCOMPLETE",
      `${dir}: no config.json`,
      "a Hugging Face model folder needs its config.json: download or copy it too",
      { dir },
    );
  }
  const config = readJsonObject(configPath, "E_CONFIG_INVALID");
  const store = TensorStore.openFolder(dir);
  return { dir, config, store, hasTokenizer: fs.existsSync(path.join(dir, "tokenizer.json")) };
}

/** Files besides config.json and weights that a pruned model folder keeps. */
export const AUX_FILES = [
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "vocab.txt",
  "tokenizer.model",
  "generation_config.json",
  "vocab.json",
  "merges.txt",
  "added_tokens.json",
];

/** Copies the tokenizer/generation files of srcDir that exist into dstDir; returns their names. */
export function copyAuxFiles(srcDir: string, dstDir: string): string[] {
  const copied: string[] = [];
  try {
    fs.mkdirSync(dstDir, { recursive: true });
    for (const name of AUX_FILES) {
      const src = path.join(srcDir, name);
      if (!fs.existsSync(src)) continue;
      fs.copyFileSync(src, path.join(dstDir, name));
      copied.push(name);
    }
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new PareError(
      "E_IO",
      `cannot copy files to ${dstDir} (${err.code ?? err.message})`,
      "check permissions",
      {
        dir: dstDir,
        error: err.message,
      },
    );
  }
  return copied;
}
