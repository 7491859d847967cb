/**
 * Per-layer checkpoints of a prune, kept in a hidden sibling of the output (`.<out>.partial/`): the cut tensors
 * of every finished layer (`layer-<i>.safetensors`), the calibration streams after the last one
 * (`streams-<i>.safetensors`), and progress.json — written last, fsynced and renamed into place: the commit
 * point. progress.json names every file it relies on with its size and SHA-256; a file written for a layer
 * that progress.json does not name yet is ignored, and the streams of the previous layer are removed only
 * after the commit, so a run killed at any instant leaves checkpoints that are either the previous or the new
 * state, never a mix. `pare prune --resume` continues from them and gives the same result as an uninterrupted
 * run. Checkpoints of other settings or another input (E_RECIPE_INVALID), of another format, or with a
 * missing, truncated or altered file (E_CHECKPOINT_INVALID) are refused, never trusted. A finished prune
 * removes them; a failed or aborted one keeps them; a run without --resume removes old ones (reported).
 *
 * The checkpoints and the spill folder are removed just before the output is published (export/atomic.ts
 * onBeforePublish): a kill after that rename leaves the finished output alone.
 *
 * The prune holds the output's lock (src/io/lock.ts) from the moment its checkpoints are opened until
 * `releaseCheckpointLock` (runPrune's end), so that a second run cannot remove or overwrite them meanwhile.
 */
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { PareError } from "../errors.ts";
import { cleanLeftovers, onBeforePublish, reportLeftovers, staleLock } from "../export/atomic.ts";
import { diskFailure, fsyncDir, fsyncFile } from "../io/durable.ts";
import { acquireLock, isAlive, type OutputLock } from "../io/lock.ts";
import { type NamedTensor, SafetensorsFile, writeSafetensors } from "../io/safetensors.ts";

/** The checkpoint format; progress.json of another one is refused. */
const FORMAT = 2;

/** The spill folder of this process's prune of `out` (as pipeline/prune.ts names it). */
function spillDirOf(out: string): string {
  return `${checkpointDir(out).replace(/\.partial$/, "")}.spill-${process.pid}`;
}

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

interface FileDigest {
  size: number;
  sha256: string;
}

interface Progress<R> {
  format: number;
  key: string;
  layerDone: number;
  state: R;
  /** the streams file of layerDone */
  streams: string;
  /** every file the checkpoint relies on: name → size and hash */
  files: Record<string, FileDigest>;
}

/** What a resume finds: the last finished layer, its state, and readers for the saved tensors and streams. */
export interface Restored<R> {
  layerDone: number;
  state: R;
  layerTensors(layer: number): NamedTensor[];
  streams(name: keyof CheckpointStreams, count: number): Float32Array[];
}

function digest(file: string): FileDigest {
  const h = crypto.createHash("sha256");
  const fd = fs.openSync(file, "r");
  let size = 0;
  try {
    const buf = Buffer.allocUnsafe(1 << 22);
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
      size += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return { size, sha256: h.digest("hex") };
}

const locks = new Map<string, { lock: OutputLock; unhook: () => void }>();

/** Release the output lock taken by `Checkpoints.open` for `out` (the end of a prune, whatever its outcome). */
export function releaseCheckpointLock(out: string): void {
  const key = path.resolve(out);
  const held = locks.get(key);
  locks.delete(key);
  held?.unhook();
  held?.lock.release();
}

export class Checkpoints<R> {
  private files: Record<string, FileDigest> = {};
  private streamsFile?: string;

  private constructor(
    readonly dir: string,
    private readonly key: string,
  ) {}

  /**
   * The checkpoints of the prune writing `out` (takes the output's lock: E_OUTPUT_LOCKED while another process
   * writes it). With `resume`, what a previous run left (undefined when nothing; E_RECIPE_INVALID when it
   * belongs to other settings; E_CHECKPOINT_INVALID when damaged); without, old checkpoints are removed.
   */
  static open<R>(
    out: string,
    key: string,
    resume: boolean,
  ): { checkpoints: Checkpoints<R>; restored?: Restored<R> } {
    const target = path.resolve(out);
    const lock = acquireLock(target);
    releaseCheckpointLock(target);
    // the prune's folders go just before its output is published: a kill after that finds the output only
    const unhook = onBeforePublish(target, () => {
      fs.rmSync(checkpointDir(target), { recursive: true, force: true });
      fs.rmSync(spillDirOf(target), { recursive: true, force: true });
      fsyncDir(path.dirname(target));
    });
    locks.set(target, { lock, unhook });
    try {
      staleLock(lock);
      cleanLeftovers(target);
      const checkpoints = new Checkpoints<R>(checkpointDir(out), key);
      if (!resume) {
        if (fs.existsSync(checkpoints.dir)) {
          checkpoints.remove();
          reportLeftovers([checkpoints.dir]);
        }
        return { checkpoints };
      }
      return { checkpoints, restored: checkpoints.load() };
    } catch (e) {
      releaseCheckpointLock(out);
      throw e;
    }
  }

  /** Layer `layer` is done: its cut tensors, the streams after it and the state to resume with. */
  save(layer: number, layerTensors: NamedTensor[], streams: CheckpointStreams, state: R): void {
    const dir = this.dir;
    // bytes these files need (f32 values), for E_NO_SPACE
    const pending =
      4 *
      (layerTensors.reduce((n, t) => n + t.data.length, 0) +
        [streams.stream, streams.dense].reduce(
          (n, arr) => n + (arr ?? []).reduce((m, a) => m + a.length, 0),
          0,
        ));
    const need = { written: Object.values(this.files).reduce((n, f) => n + f.size, 0), pending };
    try {
      fs.mkdirSync(dir, { recursive: true });
      const layerName = `layer-${layer}.safetensors`;
      const streamsName = `streams-${layer}.safetensors`;
      writeSafetensors(path.join(dir, layerName), layerTensors);
      fsyncFile(path.join(dir, layerName));
      const st: NamedTensor[] = [];
      for (const [k, arr] of Object.entries(streams) as [string, Float32Array[] | undefined][])
        arr?.forEach((a, b) => {
          st.push({ name: `${k}.${b}`, shape: [a.length], data: a });
        });
      writeSafetensors(path.join(dir, streamsName), st);
      fsyncFile(path.join(dir, streamsName));
      const files = { ...this.files };
      for (const n of Object.keys(files)) if (n.startsWith("streams-")) delete files[n];
      files[layerName] = digest(path.join(dir, layerName));
      files[streamsName] = digest(path.join(dir, streamsName));
      const progress: Progress<R> = {
        format: FORMAT,
        key: this.key,
        layerDone: layer,
        state,
        streams: streamsName,
        files,
      };
      const tmp = path.join(dir, `progress.json.tmp-${process.pid}`);
      const fd = fs.openSync(tmp, "w");
      try {
        fs.writeFileSync(fd, JSON.stringify(progress));
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      fs.renameSync(tmp, path.join(dir, "progress.json")); // the commit point
      fsyncDir(dir);
      // the previous streams are no longer named by progress.json
      if (this.streamsFile && this.streamsFile !== streamsName)
        fs.rmSync(path.join(dir, this.streamsFile), { force: true });
      this.files = files;
      this.streamsFile = streamsName;
    } catch (e) {
      for (const f of fs.existsSync(dir) ? fs.readdirSync(dir) : [])
        if (f.includes(`.tmp-${process.pid}`)) fs.rmSync(path.join(dir, f), { force: true });
      throw diskFailure(e, dir, need);
    }
  }

  remove(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  private invalid(what: string): PareError {
    return new PareError(
      "E_CHECKPOINT_INVALID",
      `the checkpoints in ${this.dir} cannot be trusted: ${what}`,
      "run without --resume to start over (the old checkpoints are then removed)",
      { dir: this.dir },
    );
  }

  private load(): Restored<R> | undefined {
    const dir = this.dir;
    const pfile = path.join(dir, "progress.json");
    if (!fs.existsSync(pfile)) return undefined;
    let progress: Progress<R>;
    try {
      progress = JSON.parse(fs.readFileSync(pfile, "utf8"));
    } catch {
      throw this.invalid("progress.json is not valid JSON (damaged)");
    }
    if (typeof progress !== "object" || progress === null || progress.format !== FORMAT) {
      throw this.invalid("progress.json is of another checkpoint format (an older pare?)");
    }
    if (progress.key !== this.key) {
      throw new PareError(
        "E_RECIPE_INVALID",
        `the checkpoints in ${dir} belong to other settings or another input model`,
        "run without --resume to start over (the old checkpoints are then removed)",
      );
    }
    const files = progress.files ?? {};
    const layerDone = progress.layerDone;
    if (!Number.isSafeInteger(layerDone) || layerDone < 0 || !files[progress.streams])
      throw this.invalid("progress.json does not describe its files");
    for (let i = 0; i <= layerDone; i++)
      if (!files[`layer-${i}.safetensors`]) throw this.invalid(`layer-${i}.safetensors is not recorded`);
    for (const [name, want] of Object.entries(files)) {
      const f = path.join(dir, name);
      if (path.basename(name) !== name || !fs.existsSync(f)) throw this.invalid(`${name} is missing`);
      const got = digest(f);
      if (got.size !== want.size)
        throw this.invalid(`${name} has ${got.size} bytes, ${want.size} were written (truncated?)`);
      if (got.sha256 !== want.sha256) throw this.invalid(`${name} was altered (SHA-256 differs)`);
    }
    // what a killed save left beyond the commit point: files progress.json does not name
    for (const f of fs.readdirSync(dir)) {
      if (f === "progress.json" || files[f]) continue;
      const m = /\.tmp-(\d+)/.exec(f);
      if (m && Number(m[1]) !== process.pid && isAlive(Number(m[1]))) continue;
      fs.rmSync(path.join(dir, f), { recursive: true, force: true });
    }
    this.files = { ...files };
    this.streamsFile = progress.streams;
    const streamsFile = progress.streams;
    return {
      layerDone,
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
        const f = SafetensorsFile.open(path.join(dir, streamsFile));
        try {
          return Array.from({ length: count }, (_, b) => f.readF32(`${name}.${b}`));
        } finally {
          f.close();
        }
      },
    };
  }
}
