/**
 * Per-layer checkpoints of a prune, kept in a hidden sibling of the output (`.<out>.partial/`):
 * the cut tensors of every finished layer, the calibration streams after it, and progress.json
 * (written last: the commit point). `pare prune --resume` continues from them and gives the same
 * result as an uninterrupted run; a finished prune removes them.
 */
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { PareError } from "../errors.ts";
import { type NamedTensor, SafetensorsFile, writeSafetensors } from "../io/safetensors.ts";

export function checkpointDir(out: string): string {
  const o = path.resolve(out);
  return path.join(path.dirname(o), `.${path.basename(o)}.partial`);
}

/** What must match for a resume: the settings that change the result, and the input files. */
export function resumeKey(recipe: Record<string, unknown>, inputFiles: Record<string, string>): string {
  const { force: _f, resume: _r, threads: _t, maxMemory: _m, ...rest } = recipe;
  return crypto.createHash("sha256").update(JSON.stringify({ rest, inputFiles })).digest("hex");
}

export interface Progress<R> {
  key: string;
  layerDone: number;
  state: R;
}

export function saveCheckpoint<R>(
  dir: string,
  layer: number,
  layerTensors: NamedTensor[],
  streams: Record<string, Float32Array[]>,
  progress: Progress<R>,
): void {
  fs.mkdirSync(dir, { recursive: true });
  writeSafetensors(path.join(dir, `layer-${layer}.safetensors`), layerTensors);
  const st: NamedTensor[] = [];
  for (const [k, arr] of Object.entries(streams))
    arr.forEach((a, b) => {
      st.push({ name: `${k}.${b}`, shape: [a.length], data: a });
    });
  writeSafetensors(path.join(dir, "streams.safetensors"), st);
  const tmp = path.join(dir, "progress.json.tmp");
  fs.writeFileSync(tmp, JSON.stringify(progress));
  fs.renameSync(tmp, path.join(dir, "progress.json"));
}

export interface Restored<R> {
  progress: Progress<R>;
  layerTensors(layer: number): { name: string; shape: number[]; data: Float32Array }[];
  streams(name: string, count: number): Float32Array[];
}

export function loadCheckpoint<R>(dir: string, key: string): Restored<R> | undefined {
  const pfile = path.join(dir, "progress.json");
  if (!fs.existsSync(pfile)) return undefined;
  let progress: Progress<R>;
  try {
    progress = JSON.parse(fs.readFileSync(pfile, "utf8"));
  } catch {
    return undefined;
  }
  if (progress.key !== key) {
    throw new PareError(
      "E_RECIPE_INVALID",
      `the checkpoints in ${dir} belong to other settings or another input model`,
      "run without --resume to start over (the old checkpoints are then removed)",
    );
  }
  return {
    progress,
    layerTensors(layer) {
      const f = SafetensorsFile.open(path.join(dir, `layer-${layer}.safetensors`));
      try {
        return [...f.tensors.values()].map((t) => ({
          name: t.name,
          shape: t.shape,
          data: f.readF32(t.name),
        }));
      } finally {
        f.close();
      }
    },
    streams(name, count) {
      const f = SafetensorsFile.open(path.join(dir, "streams.safetensors"));
      try {
        return Array.from({ length: count }, (_, b) => f.readF32(`${name}.${b}`));
      } finally {
        f.close();
      }
    },
  };
}
