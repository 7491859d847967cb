/**
 * Per-layer checkpoints of a prune, kept in a hidden sibling of the output (`.<out>.partial/`):
 * the cut tensors of every finished layer, the calibration streams after it, and progress.json
 * (written last: the commit point). `pare prune --resume` continues from them and gives the same
 * result as an uninterrupted run; a finished prune removes them; a failed or aborted one keeps them.
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
export function resumeKey(recipe: object, inputFiles: Record<string, string>): string {
  const { force: _f, resume: _r, threads: _t, maxMemory: _m, ...rest } = recipe as Record<string, unknown>;
  return crypto.createHash("sha256").update(JSON.stringify({ rest, inputFiles })).digest("hex");
}

/** The calibration streams after a layer: the pruned model's input of the next layer (+ liar-seq: the dense one's). */
export interface CheckpointStreams {
  stream?: Float32Array[];
  dense?: Float32Array[];
}

interface Progress<R> {
  key: string;
  layerDone: number;
  state: R;
}

/** What a resume finds: the last finished layer, its state, and readers for the saved tensors and streams. */
export interface Restored<R> {
  layerDone: number;
  state: R;
  layerTensors(layer: number): NamedTensor[];
  streams(name: keyof CheckpointStreams, count: number): Float32Array[];
}

export class Checkpoints<R> {
  private constructor(
    readonly dir: string,
    private readonly key: string,
  ) {}

  /**
   * The checkpoints of the prune writing `out`. With `resume`, what a previous run left (undefined when
   * nothing; E_RECIPE_INVALID when it belongs to other settings); without, old checkpoints are removed.
   */
  static open<R>(
    out: string,
    key: string,
    resume: boolean,
  ): { checkpoints: Checkpoints<R>; restored?: Restored<R> } {
    const checkpoints = new Checkpoints<R>(checkpointDir(out), key);
    if (!resume) {
      checkpoints.remove();
      return { checkpoints };
    }
    return { checkpoints, restored: checkpoints.load() };
  }

  /** Layer `layer` is done: its cut tensors, the streams after it and the state to resume with. */
  save(layer: number, layerTensors: NamedTensor[], streams: CheckpointStreams, state: R): void {
    const dir = this.dir;
    fs.mkdirSync(dir, { recursive: true });
    writeSafetensors(path.join(dir, `layer-${layer}.safetensors`), layerTensors);
    const st: NamedTensor[] = [];
    for (const [k, arr] of Object.entries(streams) as [string, Float32Array[] | undefined][])
      arr?.forEach((a, b) => {
        st.push({ name: `${k}.${b}`, shape: [a.length], data: a });
      });
    writeSafetensors(path.join(dir, "streams.safetensors"), st);
    const progress: Progress<R> = { key: this.key, layerDone: layer, state };
    const tmp = path.join(dir, "progress.json.tmp");
    fs.writeFileSync(tmp, JSON.stringify(progress));
    fs.renameSync(tmp, path.join(dir, "progress.json"));
  }

  remove(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  private load(): Restored<R> | undefined {
    const dir = this.dir;
    const pfile = path.join(dir, "progress.json");
    if (!fs.existsSync(pfile)) return undefined;
    let progress: Progress<R>;
    try {
      progress = JSON.parse(fs.readFileSync(pfile, "utf8"));
    } catch {
      return undefined;
    }
    if (progress.key !== this.key) {
      throw new PareError(
        "E_RECIPE_INVALID",
        `the checkpoints in ${dir} belong to other settings or another input model`,
        "run without --resume to start over (the old checkpoints are then removed)",
      );
    }
    return {
      layerDone: progress.layerDone,
      state: progress.state,
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
}
