/**
 * Streaming statistics of a tap X [N, d] (METHODS §1), accumulated in float64 inside ONNX
 * graphs: moments (count, Σx, Σx²) and, when a plugin needs it, the Gram matrix of
 * X̃ = [X, 1] (its last row/column hold the sums and the count). The cross-Gram
 * X̃_aᵀ X̃_b of two taps serves liar-seq. Rows are buffered into chunks; each chunk is
 * one ORT call (`Gemm` with beta = 1 adds it to the running matrix).
 *
 * Precision of the Gram: "f64" multiplies in float64 (≈ 27 GFLOP/s here); "mixed" multiplies each
 * chunk in float32 (≈ 150–200 GFLOP/s) and adds the chunk products into a float64 total in
 * JavaScript, computing only the lower block triangle (X̃ᵀX̃ is symmetric: with B column blocks,
 * (B+1)/2B of the full product). "auto" = f64 up to GRAM_F64_MAX_WIDTH channels, mixed above.
 */
import { GraphBuilder } from "../onnx/graph.ts";
import { f32, f64, Session } from "../runtime/ort.ts";

export { mean, type StatKind, type TapStats, variance } from "./moments.ts";

import type { StatKind, TapStats } from "./moments.ts";

const sessions = new Map<string, Promise<Session>>();

function cached(key: string, build: () => Uint8Array): Promise<Session> {
  let s = sessions.get(key);
  if (!s) {
    // f64 graphs need level "basic" (ENVIRONMENT.md: QuickGelu fusion breaks f64 graphs)
    s = Session.create(build(), { optLevel: "basic" });
    sessions.set(key, s);
  }
  return s;
}

/** X [n, d] f32 → X̃ [n, d+1] f64 with a ones column. */
function augmented(g: GraphBuilder, x: string): string {
  const xd = g.op("Cast", [x], { to: 11 });
  const rows = g.op("Slice", [g.op("Shape", [x]), g.constI64([0]), g.constI64([1])]); // [1]
  const shape = g.op("Concat", [rows, g.constI64([1])], { axis: 0 });
  const ones = g.op("Expand", [g.scalar(1, "float64"), shape]); // [n,1]
  return g.op("Concat", [xd, ones], { axis: 1 });
}

function momentsGraph(d: number): Uint8Array {
  const g = new GraphBuilder("pare-moments");
  const x = g.input("x", "float32", ["n", d]);
  const xd = g.op("Cast", [x], { to: 11 });
  g.output(g.op("ReduceSum", [xd, g.constI64([0])], { keepdims: 0 }, "sum"), "float64", [d]);
  g.output(g.op("ReduceSum", [g.op("Mul", [xd, xd]), g.constI64([0])], { keepdims: 0 }, "sumsq"), "float64", [
    d,
  ]);
  return g.toModel();
}

function gramGraph(da: number, db: number | null): Uint8Array {
  const g = new GraphBuilder("pare-gram");
  const a = augmented(g, g.input("a", "float32", ["n", da]));
  const b = db === null ? a : augmented(g, g.input("b", "float32", ["n", db]));
  const prev = g.input("prev", "float64", [da + 1, (db ?? da) + 1]);
  g.output(g.op("Gemm", [a, b, prev], { transA: 1, beta: { float: 1 } }, "gram"), "float64", [
    da + 1,
    (db ?? da) + 1,
  ]);
  return g.toModel();
}

export type GramPrecision = "auto" | "f64" | "mixed";
/** widths up to this use the f64 Gram under "auto" (cheap there; every shared model's taps) */
export const GRAM_F64_MAX_WIDTH = 1024;
const BLOCK_WIDTH = 1024;

/** Is the Gram of a d-channel tap computed in mixed precision (f32 products, f64 sums)? */
export function gramIsMixed(precision: GramPrecision, d: number): boolean {
  return precision === "mixed" || (precision === "auto" && d > GRAM_F64_MAX_WIDTH);
}

/** Column blocks [start, width) of X̃ [n, D] for the mixed Gram: ⌈D / 1024⌉ near-equal blocks. */
export function gramBlocks(D: number): [number, number][] {
  const B = Math.max(1, Math.ceil(D / BLOCK_WIDTH));
  const out: [number, number][] = [];
  for (let b = 0, at = 0; b < B; b++) {
    const w = Math.floor(D / B) + (b < D % B ? 1 : 0);
    out.push([at, w]);
    at += w;
  }
  return out;
}

/** X [n, d] f32 → the lower block triangle of X̃ᵀX̃ in f32: outputs g_i_j = X̃_iᵀ X̃_j (i ≥ j), [w_i, w_j]. */
function mixedGramGraph(d: number): Uint8Array {
  const g = new GraphBuilder("pare-gram-mixed");
  const x = g.input("x", "float32", ["n", d]);
  const rows = g.op("Slice", [g.op("Shape", [x]), g.constI64([0]), g.constI64([1])]); // [1]
  const ones = g.op("Expand", [g.scalar(1, "float32"), g.op("Concat", [rows, g.constI64([1])], { axis: 0 })]);
  const xt = g.op("Concat", [x, ones], { axis: 1 }); // [n, d+1]
  const blocks = gramBlocks(d + 1);
  const cols = blocks.map(([s, w]) =>
    blocks.length === 1 ? xt : g.op("Slice", [xt, g.constI64([s]), g.constI64([s + w]), g.constI64([1])]),
  );
  blocks.forEach(([, wi], i) => {
    for (let j = 0; j <= i; j++) {
      g.output(g.op("Gemm", [cols[i], cols[j]], { transA: 1 }, `g_${i}_${j}`), "float32", [wi, blocks[j][1]]);
    }
  });
  return g.toModel();
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
    const x = f32([r, this.d], this.buffer.view());
    if (this.gram && this.mixed) {
      const s = await cached(`gram-mixed:${this.d}`, () => mixedGramGraph(this.d));
      const out = await s.run({ x });
      const G = this.gram;
      const D = this.d + 1;
      const blocks = gramBlocks(D);
      blocks.forEach(([si, wi], i) => {
        for (let j = 0; j <= i; j++) {
          const [sj, wj] = blocks[j];
          const part = out[`g_${i}_${j}`].data as Float32Array; // [wi, wj]
          for (let a = 0; a < wi; a++) {
            const o = (si + a) * D + sj;
            const p = a * wj;
            for (let b = 0; b < wj; b++) G[o + b] += part[p + b];
          }
        }
      });
    } else if (this.gram) {
      const s = await cached(`gram:${this.d}`, () => gramGraph(this.d, null));
      const out = await s.run({ a: x, prev: f64([this.d + 1, this.d + 1], this.gram) });
      this.gram = out.gram.data as Float64Array;
    } else {
      const s = await cached(`moments:${this.d}`, () => momentsGraph(this.d));
      const out = await s.run({ x });
      const a = out.sum.data as Float64Array;
      const b = out.sumsq.data as Float64Array;
      for (let j = 0; j < this.d; j++) {
        this.sum[j] += a[j];
        this.sumsq[j] += b[j];
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
    const s = await cached(`cross:${this.da}:${this.db}`, () => gramGraph(this.da, this.db));
    const out = await s.run({
      a: f32([r, this.da], this.a.view()),
      b: f32([r, this.db], this.b.view()),
      prev: f64([this.da + 1, this.db + 1], this.c),
    });
    this.c = out.gram.data as Float64Array;
    this.a.rows = 0;
    this.b.rows = 0;
  }
  async finish(): Promise<Float64Array> {
    await this.flush();
    return this.c;
  }
}
