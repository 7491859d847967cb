/**
 * Writes a Hugging Face model folder (safetensors, config.json, tokenizer files) atomically.
 */
import fs from "node:fs";
import path from "node:path";
import type { WeightSource } from "../arch/model.ts";
import { copyAuxFiles } from "../io/modelFolder.ts";
import { type NamedTensor, writeShardedSafetensors } from "../io/safetensors.ts";
import { writeAtomically } from "./atomic.ts";

export interface FolderContents {
  config: Record<string, unknown>;
  weights: WeightSource;
  dtype: "F32" | "F16" | "BF16";
  /** folder to copy tokenizer / generation files from */
  auxFrom?: string;
  /** extra JSON files (name → object) */
  json?: Record<string, unknown>;
  maxShardBytes?: number;
}

export function writeModelFolder(target: string, c: FolderContents, opts: { force?: boolean } = {}): void {
  writeAtomically(target, opts.force ?? false, (tmp) => fillModelFolder(tmp, c));
}

/** Write the folder's files into `dir` (which exists). */
export function fillModelFolder(dir: string, c: FolderContents): void {
  const tensors: NamedTensor[] = c.weights
    .names()
    .sort()
    .map((name) => ({ name, shape: c.weights.shape(name), data: c.weights.get(name), dtype: c.dtype }));
  writeShardedSafetensors(dir, tensors, c.maxShardBytes ?? 4 * 1024 ** 3);
  fillFolderFiles(dir, c);
}

/** The folder's files besides the weights: config.json (with torch_dtype), tokenizer files, extra JSON. */
export function fillFolderFiles(dir: string, c: Omit<FolderContents, "weights" | "maxShardBytes">): void {
  const config = { ...c.config, torch_dtype: { F32: "float32", F16: "float16", BF16: "bfloat16" }[c.dtype] };
  fs.writeFileSync(path.join(dir, "config.json"), `${JSON.stringify(config, null, 2)}\n`);
  if (c.auxFrom) copyAuxFiles(c.auxFrom, dir);
  for (const [name, obj] of Object.entries(c.json ?? {}))
    fs.writeFileSync(path.join(dir, name), `${JSON.stringify(obj, null, 2)}\n`);
}
