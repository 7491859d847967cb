/**
 * Writes a model folder atomically: everything goes to a temporary sibling folder which is
 * renamed onto the target at the end (a replaced target is moved aside first, then removed).
 */
import fs from "node:fs";
import path from "node:path";
import type { WeightSource } from "../arch/model.ts";
import { PareError } from "../errors.ts";
import { copyAuxFiles } from "../io/modelFolder.ts";
import { type NamedTensor, writeShardedSafetensors } from "../io/safetensors.ts";

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

export function tempSibling(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.tmp-${process.pid}-${Date.now().toString(36)}`);
}

export function writeModelFolder(target: string, c: FolderContents, opts: { force?: boolean; tmp?: string } = {}): void {
  target = path.resolve(target);
  const tmp = opts.tmp ?? tempSibling(target);
  try {
    fs.mkdirSync(tmp, { recursive: true });
    const tensors: NamedTensor[] = c.weights
      .names()
      .sort()
      .map((name) => ({ name, shape: c.weights.shape(name), data: c.weights.get(name), dtype: c.dtype }));
    writeShardedSafetensors(tmp, tensors, c.maxShardBytes ?? 4 * 1024 ** 3);
    const config = { ...c.config, torch_dtype: { F32: "float32", F16: "float16", BF16: "bfloat16" }[c.dtype] };
    fs.writeFileSync(path.join(tmp, "config.json"), `${JSON.stringify(config, null, 2)}\n`);
    if (c.auxFrom) copyAuxFiles(c.auxFrom, tmp);
    for (const [name, obj] of Object.entries(c.json ?? {})) fs.writeFileSync(path.join(tmp, name), `${JSON.stringify(obj, null, 2)}\n`);
    if (fs.existsSync(target)) {
      if (!opts.force) throw new PareError("E_OUTPUT_EXISTS", `output folder ${target} already exists`, "choose another --out, or add --force");
      const old = `${tmp}.old`;
      fs.renameSync(target, old);
      fs.renameSync(tmp, target);
      fs.rmSync(old, { recursive: true, force: true });
    } else {
      fs.renameSync(tmp, target);
    }
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    const err = e as NodeJS.ErrnoException;
    if (err.code === "ENOSPC") throw new PareError("E_IO", `out of disk space while writing ${target}`, "free some disk space or write elsewhere; nothing was left behind");
    if (err.code && !(e instanceof PareError)) throw new PareError("E_IO", `cannot write ${target}: ${err.code}`, "check permissions and free space; nothing was left behind");
    throw e;
  }
}
