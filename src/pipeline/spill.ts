/**
 * Holds the calibration statistics of every layer between the dense pass and reconstruction
 * (dense calibration with global allocation needs all of them before the first layer is cut).
 * Moments stay in memory; a Gram matrix [(d+1)²] f64 stays in memory while the held Grams fit
 * the byte budget and is otherwise written to a temporary file in `dir` and read back when its
 * layer is reconstructed. Raw float64 bytes go out and come back: spilling changes no number.
 */
import fs from "node:fs";
import path from "node:path";
import type { TapStats } from "../calib/moments.ts";
import { PareError } from "../errors.ts";
import { trackTemporary, untrackTemporary } from "../export/atomic.ts";

interface Held {
  stats: TapStats; // gram omitted when spilled
  file?: string;
  gramLength?: number;
}

export class StatsStore {
  private held = new Map<string, Held>();
  private inMemory = 0;
  /** bytes of Gram matrices written to disk so far */
  spilledBytes = 0;
  private dirMade = false;

  constructor(
    /** temporary folder for spilled Grams (created on first use, removed by close) */
    readonly dir: string,
    /** bytes of Gram matrices kept in memory at most */
    readonly budgetBytes: number,
  ) {}

  put(key: string, stats: TapStats): void {
    const g = stats.gram;
    if (!g || this.inMemory + g.byteLength <= this.budgetBytes) {
      this.held.set(key, { stats });
      this.inMemory += g?.byteLength ?? 0;
      return;
    }
    if (!this.dirMade) {
      fs.mkdirSync(this.dir, { recursive: true });
      trackTemporary(this.dir);
      this.dirMade = true;
    }
    const file = path.join(this.dir, `${key.replace(/[^A-Za-z0-9_-]/g, "_")}.f64`);
    try {
      const fd = fs.openSync(file, "w");
      try {
        const bytes = new Uint8Array(g.buffer, g.byteOffset, g.byteLength);
        for (let at = 0; at < bytes.length; )
          at += fs.writeSync(fd, bytes, at, Math.min(1 << 28, bytes.length - at));
      } finally {
        fs.closeSync(fd);
      }
    } catch (e) {
      throw spillError(this.dir, e);
    }
    this.spilledBytes += g.byteLength;
    this.held.set(key, { stats: { ...stats, gram: undefined }, file, gramLength: g.length });
  }

  /** The statistics stored under `key`; a spilled Gram is read back (and its file removed). */
  take(key: string): TapStats | undefined {
    const h = this.held.get(key);
    if (!h) return undefined;
    this.held.delete(key);
    if (!h.file) {
      this.inMemory -= h.stats.gram?.byteLength ?? 0;
      return h.stats;
    }
    const gram = new Float64Array(h.gramLength ?? 0);
    const bytes = new Uint8Array(gram.buffer);
    try {
      const fd = fs.openSync(h.file, "r");
      try {
        for (let at = 0; at < bytes.length; ) {
          const n = fs.readSync(fd, bytes, at, Math.min(1 << 28, bytes.length - at), at);
          if (n === 0) throw new Error("short read");
          at += n;
        }
      } finally {
        fs.closeSync(fd);
      }
      fs.rmSync(h.file, { force: true });
    } catch (e) {
      throw spillError(this.dir, e);
    }
    return { ...h.stats, gram };
  }

  close(): void {
    this.held.clear();
    this.inMemory = 0;
    if (this.dirMade) {
      fs.rmSync(this.dir, { recursive: true, force: true });
      untrackTemporary(this.dir);
      this.dirMade = false;
    }
  }
}

function spillError(dir: string, e: unknown): PareError {
  const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
  return new PareError(
    "E_IO",
    `cannot spill calibration statistics to ${dir}: ${code}`,
    code === "ENOSPC"
      ? "free disk space next to the output folder, or raise --max-memory so that they stay in memory"
      : "check that the output's parent folder is writable",
  );
}
