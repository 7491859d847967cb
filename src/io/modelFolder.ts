/**
 * A Hugging Face model folder: config.json + safetensors weights (+ tokenizer files).
 */
import fs from "node:fs";
import path from "node:path";
import { type ErrorCode, PareError } from "../errors.ts";
import { resolveModelPath } from "./hubCache.ts";
import { fileInsideFolder, openRegularFile, q, TensorStore, topLevelKeys } from "./safetensors.ts";

export interface ModelFolder {
  dir: string;
  config: Record<string, unknown>;
  store: TensorStore;
  hasTokenizer: boolean;
}

/** Largest JSON file read by default (config.json files are a few kB; tokenizer.json passes its own limit). */
export const MAX_JSON_BYTES = 64 * 1024 * 1024;

export interface ReadJsonOptions {
  /** refuse files larger than this (default MAX_JSON_BYTES) */
  maxBytes?: number;
  /** refuse a key that appears twice at the top level (a reader would see one value, pare another) */
  uniqueKeys?: boolean;
}

/**
 * Reads a JSON file that must hold an object: a regular file (never a pipe or device), at most `maxBytes`,
 * UTF-8 (a BOM is allowed); parse errors carry line:column.
 */
export function readJsonObject(
  file: string,
  code: ErrorCode,
  opts: ReadJsonOptions = {},
): Record<string, unknown> {
  const hint = `fix or re-download ${path.basename(file)}`;
  const maxBytes = opts.maxBytes ?? MAX_JSON_BYTES;
  let text: string;
  let fd = -1;
  try {
    let size: number;
    try {
      ({ fd, size } = openRegularFile(file, path.basename(file)));
    } catch (e) {
      const errno = e instanceof PareError ? e.context.errno : undefined;
      if (!errno) throw e; // not a regular file
      throw new PareError("E_IO", `${file}: cannot read (${errno})`, "check the path and permissions", {
        file,
      });
    }
    if (size > maxBytes) {
      throw new PareError(
        code,
        `${file} is ${size} bytes, absurd for a ${path.basename(file)} (limit ${maxBytes})`,
        hint,
        {
          file,
          size,
        },
      );
    }
    const bytes = Buffer.alloc(size);
    let done = 0;
    while (done < size) {
      const n = fs.readSync(fd, bytes, done, size - done, done);
      if (n === 0) break;
      done += n;
    }
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(0, done)).replace(/^\uFEFF/, "");
    } catch {
      throw new PareError(code, `${file}: not UTF-8 text (binary or another encoding)`, hint, { file });
    }
  } catch (e) {
    if (e instanceof PareError) throw e;
    const err = e as NodeJS.ErrnoException;
    throw new PareError(
      "E_IO",
      `${file}: cannot read (${err.code ?? err.message})`,
      "check the path and permissions",
      {
        file,
      },
    );
  } finally {
    if (fd >= 0) fs.closeSync(fd);
  }
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
  if (opts.uniqueKeys) {
    const seen = new Set<string>();
    for (const k of topLevelKeys(text)) {
      if (seen.has(k)) {
        throw new PareError(code, `${file}: key ${q(k)} appears twice (which one holds?)`, hint, {
          file,
          key: k,
        });
      }
      seen.add(k);
    }
  }
  return value as Record<string, unknown>;
}

/**
 * Opens a model folder: a local path, or a Hugging Face model id (`org/name`, `org/name@revision`) resolved
 * offline in the local hub cache (io/hubCache.ts; a local path always wins). `dir` of the result is the folder
 * read (for an id: its snapshot folder).
 */
export function openModelFolder(dir: string): ModelFolder {
  dir = path.resolve(resolveModelPath(dir));
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
        "save_pretrained, or the id (org/name[@revision]) of a model in the local Hugging Face cache, e.g. one " +
        "downloaded with `hf download org/name`",
      { dir },
    );
  }
  // every file pare may read or copy must stay inside the folder (symlinks included)
  const present = new Set<string>();
  for (const name of ["config.json", ...AUX_FILES]) if (fileInsideFolder(dir, name)) present.add(name);
  if (!present.has("config.json")) {
    throw new PareError(
      "E_FOLDER_INCOMPLETE",
      `${dir}: no config.json`,
      "a Hugging Face model folder needs its config.json: download or copy it too",
      { dir },
    );
  }
  const config = readJsonObject(path.join(dir, "config.json"), "E_CONFIG_INVALID", { uniqueKeys: true });
  const store = TensorStore.openFolder(dir);
  return { dir, config, store, hasTokenizer: present.has("tokenizer.json") };
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
      // refuses symlinks that lead outside the source folder: their target would be copied into the output
      const src = fileInsideFolder(srcDir, name);
      if (!src) continue;
      if (!fs.statSync(src).isFile()) {
        throw new PareError(
          "E_IO",
          `${path.join(srcDir, name)} is not a regular file`,
          "replace it with the real file",
          {
            file: path.join(srcDir, name),
          },
        );
      }
      fs.copyFileSync(src, path.join(dstDir, name));
      copied.push(name);
    }
  } catch (e) {
    if (e instanceof PareError) throw e;
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
