/**
 * Holds large arrays between the moment they are made and the moment they are used — the
 * calibration activations between layers and, under dense calibration, every layer's Gram matrices
 * until reconstruction (global allocation needs all scores before the first layer is cut). An array
 * stays in memory while the held arrays fit the byte budget and is otherwise written to a temporary
 * file in `dir`, read back (and the file removed) when it is taken. Raw bytes go out and come back:
 * spilling changes no number. The folder is a hidden sibling of the output named after this process
 * (`.<out>.spill-<pid>`): a killed run's is removed by the next run writing that output (export/atomic.ts
 * cleanLeftovers). Spilled data is never published, so it is not fsynced; a full disk gives E_NO_SPACE.
 *
 * The pipeline sees typed views: `Streams` (one `BatchStream` per kind of activation, one array per
 * calibration batch) and `WaitingGrams` (per layer and module); the keys below are this file's business.
 */
import fs from "node:fs";
import path from "node:path";
import { PareError } from "../errors.ts";
import { trackTemporary, untrackTemporary } from "../export/atomic.ts";
import { diskFailure } from "../io/durable.ts";

type Arr = Float32Array | Float64Array;

interface Held {
  data?: Arr;
  file?: string;
  kind: "f32" | "f64";
  length: number;
}

class SpillStore {
  private held = new Map<string, Held>();
  private inMemory = 0;
  /** bytes written to disk so far */
  spilledBytes = 0;
  /** most bytes held in memory at once */
  peakBytes = 0;
  private dirMade = false;
  private seq = 0;

  constructor(
    /** temporary folder for spilled arrays (created on first use, removed by close) */
    readonly dir: string,
    /** bytes of arrays kept in memory at most */
    readonly budgetBytes: number,
  ) {}

  put(key: string, data: Arr): void {
    this.drop(key);
    const kind = data instanceof Float64Array ? "f64" : "f32";
    if (this.inMemory + data.byteLength <= this.budgetBytes) {
      this.held.set(key, { data, kind, length: data.length });
      this.inMemory += data.byteLength;
      this.peakBytes = Math.max(this.peakBytes, this.inMemory);
      return;
    }
    if (!this.dirMade) {
      trackTemporary(this.dir);
      try {
        fs.mkdirSync(this.dir, { recursive: true });
      } catch (e) {
        untrackTemporary(this.dir);
        throw spillError(this.dir, e, data.byteLength, 0);
      }
      this.dirMade = true;
    }
    const file = path.join(this.dir, `${this.seq++}.bin`);
    try {
      const fd = fs.openSync(file, "w");
      try {
        const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
        for (let at = 0; at < bytes.length; )
          at += fs.writeSync(fd, bytes, at, Math.min(1 << 28, bytes.length - at));
      } finally {
        fs.closeSync(fd);
      }
    } catch (e) {
      fs.rmSync(file, { force: true });
      throw spillError(this.dir, e, data.byteLength, this.spilledBytes);
    }
    this.spilledBytes += data.byteLength;
    this.held.set(key, { file, kind, length: data.length });
  }

  has(key: string): boolean {
    return this.held.has(key);
  }

  /** Forget `key` (its file, if spilled, is removed). */
  drop(key: string): void {
    const h = this.held.get(key);
    if (!h) return;
    this.held.delete(key);
    if (h.data) this.inMemory -= h.data.byteLength;
    else fs.rmSync(h.file!, { force: true });
  }

  /** The array stored under `key` (read back from disk if it was spilled); the store forgets it. */
  take<T extends Arr = Float32Array>(key: string): T {
    const out = this.peek<T>(key);
    this.drop(key);
    return out;
  }

  /** The array stored under `key`, which stays stored (a spilled one is read back into a new array). */
  peek<T extends Arr = Float32Array>(key: string): T {
    const h = this.entry(key);
    if (h.data) return h.data as T;
    const out = h.kind === "f64" ? new Float64Array(h.length) : new Float32Array(h.length);
    const bytes = new Uint8Array(out.buffer);
    try {
      const fd = fs.openSync(h.file!, "r");
      try {
        for (let at = 0; at < bytes.length; ) {
          const n = fs.readSync(fd, bytes, at, Math.min(1 << 28, bytes.length - at), at);
          if (n === 0) throw new Error("short read");
          at += n;
        }
      } finally {
        fs.closeSync(fd);
      }
    } catch (e) {
      throw spillError(this.dir, e);
    }
    return out as T;
  }

  private entry(key: string): Held {
    const h = this.held.get(key);
    if (!h) {
      throw new PareError(
        "E_INTERNAL",
        `internal: nothing stored under ${key}`,
        "this is a bug in pare; please report it",
      );
    }
    return h;
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

function spillError(dir: string, e: unknown, pending?: number, written?: number): unknown {
  const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
  if (code === "ENOSPC" || code === "EDQUOT") {
    const err = diskFailure(e, dir, { pending, written }) as PareError;
    return new PareError(
      err.code,
      `${err.message} — calibration data spilled beyond the memory budget`,
      "free disk space next to the output folder, or raise --max-memory so that it stays in memory; nothing partial was left behind",
      err.context,
    );
  }
  return new PareError(
    "E_IO",
    `cannot spill calibration data to ${dir}: ${code}`,
    "check that the output's parent folder is writable",
    { errno: code },
  );
}

/** One array per calibration batch (activations [b, T, D]) in a spill store. */
export class BatchStream {
  constructor(
    private readonly store: SpillStore,
    readonly name: string,
    readonly batches: number,
  ) {}

  private key(b: number): string {
    return `${this.name}:${b}`;
  }

  put(b: number, x: Float32Array): void {
    this.store.put(this.key(b), x);
  }

  /** batch b's array (stays stored) */
  peek(b: number): Float32Array {
    return this.store.peek(this.key(b));
  }

  /** batch b's array, which the stream forgets */
  take(b: number): Float32Array {
    return this.store.take(this.key(b));
  }

  has(b: number): boolean {
    return this.store.has(this.key(b));
  }

  /** every batch's array (spilled ones read back) */
  all(): Float32Array[] {
    return Array.from({ length: this.batches }, (_, b) => this.peek(b));
  }

  /** store these arrays, one per batch */
  fill(xs: Float32Array[]): void {
    xs.forEach((x, b) => {
      this.put(b, x);
    });
  }

  /** store a copy of each of `other`'s arrays */
  copyFrom(other: BatchStream): void {
    for (let b = 0; b < this.batches; b++) this.put(b, other.peek(b).slice());
  }

  clear(): void {
    for (let b = 0; b < this.batches; b++) this.store.drop(this.key(b));
  }
}

/** Gram matrices computed ahead of their layer's reconstruction (dense calibration). */
export class WaitingGrams {
  constructor(private readonly store: SpillStore) {}

  private key(layer: number, module: "attn" | "mlp"): string {
    return `gram:${layer}:${module}`;
  }

  put(layer: number, module: "attn" | "mlp", gram: Float64Array): void {
    this.store.put(this.key(layer, module), gram);
  }

  /** the layer's Gram (forgotten by the store), or undefined when none was computed */
  take(layer: number, module: "attn" | "mlp"): Float64Array | undefined {
    const k = this.key(layer, module);
    return this.store.has(k) ? this.store.take<Float64Array>(k) : undefined;
  }
}

/**
 * The calibration data of a prune that waits between steps, batch by batch (one budget, one temporary
 * folder for what does not fit):
 *   model     the input of the next layer to prune: the embeddings, then the outputs of the pruned layers
 *   modelMid  the pruned model's stream between attention and MLP of the layer being pruned
 *   dense     liar-seq: the unpruned model's input of that layer (targets)
 *   denseMid  liar-seq: the unpruned model's stream between its attention and MLP
 *   next      a dense pass: the next layer's input
 *   grams     dense calibration: every layer's Gram matrices until its reconstruction
 */
export class Streams {
  private readonly store: SpillStore;
  readonly model: BatchStream;
  readonly modelMid: BatchStream;
  readonly dense: BatchStream;
  readonly denseMid: BatchStream;
  readonly next: BatchStream;
  readonly grams: WaitingGrams;

  constructor(dir: string, budgetBytes: number, batches: number) {
    this.store = new SpillStore(dir, budgetBytes);
    this.model = new BatchStream(this.store, "model", batches);
    this.modelMid = new BatchStream(this.store, "model-mid", batches);
    this.dense = new BatchStream(this.store, "dense", batches);
    this.denseMid = new BatchStream(this.store, "dense-mid", batches);
    this.next = new BatchStream(this.store, "next", batches);
    this.grams = new WaitingGrams(this.store);
  }

  /** bytes written to the temporary file so far */
  get spilledBytes(): number {
    return this.store.spilledBytes;
  }

  /** Forget everything and remove the temporary folder. */
  close(): void {
    this.store.close();
  }
}
