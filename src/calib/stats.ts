/**
 * Streaming statistics of a tap X [N, d] (docs/methods.md §1), accumulated in float64 inside ONNX
 * graphs: moments (count, Σx, Σx²) and, when a plugin needs it, the Gram matrix of
 * X̃ = [X, 1] (its last row/column hold the sums and the count). The cross-Gram
 * X̃_aᵀ X̃_b of two taps serves liar-seq. Rows are buffered into chunks; each chunk is
 * one ORT call (src/ops/gram.ts; `Gemm` with beta = 1 adds it to the running matrix).
 *
 * Precision of the Gram: "f64" multiplies in float64 (≈ 27 GFLOP/s here); "mixed" multiplies each
 * chunk in float32 (≈ 150–200 GFLOP/s) and adds the chunk products into a float64 total in
 * JavaScript, computing only the lower block triangle (X̃ᵀX̃ is symmetric: with B column blocks,
 * (B+1)/2B of the full product). "auto" = f64 up to GRAM_F64_MAX_WIDTH channels, mixed above.
 */
import { type Ops, sharedOps } from "../ops/index.ts";

export { gramBlocks } from "../ops/index.ts";
export { mean, type StatKind, type TapStats, variance } from "./moments.ts";

import type { StatKind, TapStats } from "./moments.ts";

export type GramPrecision = "auto" | "f64" | "mixed";
/** widths up to this use the f64 Gram under "auto" (cheap there; every shared model's taps) */
export const GRAM_F64_MAX_WIDTH = 1024;
/** Is the Gram of a d-channel tap computed in mixed precision (f32 products, f64 sums)? */
export function gramIsMixed(precision: GramPrecision, d: number): boolean {
  return precision === "mixed" || (precision === "auto" && d > GRAM_F64_MAX_WIDTH);
}

/** Rows of a [b·T, d] tap where mask = 1 (padding excluded); the input itself when nothing is padded. */
export function validRows(x: Float32Array, d: number, mask: number[]): { rows: Float32Array; n: number } {
  let n = 0;
  for (const m of mask) n += m;
  if (n === mask.length) return { rows: x, n };
  const rows = new Float32Array(n * d);
  let r = 0;
  mask.forEach((m, t) => {
    if (m) rows.set(x.subarray(t * d, (t + 1) * d), r++ * d);
  });
  return { rows, n };
}

/** Buffers rows of a [·, d] tap (and optionally a second tap for a cross-Gram). */
class RowBuffer {
  private buf: Float32Array;
  rows = 0;
  constructor(
    readonly d: number,
    readonly cap: number,
  ) {
    this.buf = new Float32Array(cap * d);
  }
  /** copy rows [from, to) of x; returns how many rows were taken */
  take(x: Float32Array, from: number, to: number): number {
    const n = Math.min(to - from, this.cap - this.rows);
    this.buf.set(x.subarray(from * this.d, (from + n) * this.d), this.rows * this.d);
    this.rows += n;
    return n;
  }
  full(): boolean {
    return this.rows === this.cap;
  }
  view(): Float32Array {
    return this.buf.subarray(0, this.rows * this.d);
  }
}

export function chunkRowsFor(d: number, mixed = false): number {
  // ≈ 32 MiB of f32 rows per ORT call (64 MiB for the mixed Gram, amortizing its f64 additions), ≥ 256 rows
  return Math.max(256, Math.floor(((mixed ? 64 : 32) << 20) / (4 * d)));
}

/** Accumulates moments (and the Gram, if asked) of one tap. */
export class TapAccumulator {
  private n = 0;
  private sum: Float64Array;
  private sumsq: Float64Array;
  private gram?: Float64Array;
  private buffer: RowBuffer;
  /** the Gram is multiplied in f32 per chunk and summed in f64 (see the file comment) */
  readonly mixed: boolean;

  constructor(
    readonly d: number,
    readonly kinds: ReadonlySet<StatKind>,
    chunkRows?: number,
    precision: GramPrecision = "f64",
    private readonly ops: Ops = sharedOps(),
  ) {
    this.sum = new Float64Array(d);
    this.sumsq = new Float64Array(d);
    this.mixed = kinds.has("gram") && gramIsMixed(precision, d);
    if (kinds.has("gram")) this.gram = new Float64Array((d + 1) * (d + 1));
    this.buffer = new RowBuffer(d, chunkRows ?? chunkRowsFor(d, this.mixed));
  }

  /** x: [rows, d] */
  async add(x: Float32Array, rows: number): Promise<void> {
    let at = 0;
    while (at < rows) {
      at += this.buffer.take(x, at, rows);
      if (this.buffer.full()) await this.flush();
    }
  }

  private async flush(): Promise<void> {
    const r = this.buffer.rows;
    if (r === 0) return;
    const x = this.buffer.view(); // [r, d]
    if (this.gram && this.mixed) await this.ops.stats.gramMixedAdd(x, this.d, this.gram);
    else if (this.gram) this.gram = await this.ops.stats.gramAdd(x, this.d, this.gram);
    else {
      const m = await this.ops.stats.moments(x, this.d);
      for (let j = 0; j < this.d; j++) {
        this.sum[j] += m.sum[j];
        this.sumsq[j] += m.sumsq[j];
      }
    }
    this.n += r;
    this.buffer.rows = 0;
  }

  async finish(): Promise<TapStats> {
    await this.flush();
    const d = this.d;
    if (this.gram) {
      const G = this.gram;
      const D = d + 1;
      if (this.mixed) {
        // only the lower block triangle was accumulated: mirror it (diagonal blocks from their lower half)
        // (in 64 × 64 tiles: a plain column-order read of a 250 MB matrix misses the cache on every element)
        for (let i0 = 0; i0 < D; i0 += 64)
          for (let j0 = i0; j0 < D; j0 += 64)
            for (let i = i0; i < Math.min(i0 + 64, D); i++)
              for (let j = Math.max(j0, i + 1); j < Math.min(j0 + 64, D); j++) G[i * D + j] = G[j * D + i];
      }
      for (let j = 0; j < d; j++) {
        this.sum[j] = G[j * D + d];
        this.sumsq[j] = G[j * D + j];
      }
    }
    return { d, n: this.n, sum: this.sum, sumsq: this.sumsq, gram: this.gram };
  }
}

/** Accumulates the cross-Gram X̃_aᵀ X̃_b [(da+1)·(db+1)] of two row-aligned taps. */
export class CrossAccumulator {
  private c: Float64Array;
  private a: RowBuffer;
  private b: RowBuffer;
  constructor(
    readonly da: number,
    readonly db: number,
    chunkRows = chunkRowsFor(Math.max(da, db)),
    private readonly ops: Ops = sharedOps(),
  ) {
    this.c = new Float64Array((da + 1) * (db + 1));
    this.a = new RowBuffer(da, chunkRows);
    this.b = new RowBuffer(db, chunkRows);
  }
  async add(xa: Float32Array, xb: Float32Array, rows: number): Promise<void> {
    let at = 0;
    while (at < rows) {
      const n = this.a.take(xa, at, rows);
      this.b.take(xb, at, at + n);
      at += n;
      if (this.a.full()) await this.flush();
    }
  }
  private async flush(): Promise<void> {
    const r = this.a.rows;
    if (r === 0) return;
    this.c = await this.ops.stats.crossAdd(this.a.view(), this.da, this.b.view(), this.db, this.c);
    this.a.rows = 0;
    this.b.rows = 0;
  }
  async finish(): Promise<Float64Array> {
    await this.flush();
    return this.c;
  }
}
