/**
 * The products behind the calibration statistics (calib/stats.ts), one ORT call per chunk of rows of a
 * tap X [n, d] (f32):
 *
 *   moments     Σx, Σx² per channel, in float64                                    (Cast, ReduceSum)
 *   gramAdd     G + X̃ᵀX̃ in float64, X̃ = [X, 1] [n, d+1]                          (Gemm, beta = 1)
 *   gramMixedAdd  G += the lower block triangle of X̃ᵀX̃, each block product in float32, summed into the
 *               float64 G in JavaScript (blocks of ≤ 1024 columns, `gramBlocks`)
 *   crossAdd    C + X̃_aᵀX̃_b in float64 (two row-aligned taps; liar-seq)
 *
 * Sessions come from the ops session cache, optimized at level "basic" (f64 graphs) with ORT's default
 * threads.
 */
import { GraphBuilder } from "../onnx/graph.ts";
import { f32, f64, type SessionOptions } from "../runtime/ort.ts";
import type { SessionCache } from "./sessions.ts";

const BLOCK_WIDTH = 1024;

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

export class GramOps {
  constructor(
    private readonly sessions: SessionCache,
    private readonly opts: SessionOptions = {},
  ) {}

  private session(key: string, build: () => Uint8Array) {
    // f64 graphs need level "basic" (docs/runtime-notes.md: QuickGelu fusion breaks f64 graphs)
    return this.sessions.get(`stats:${key}`, build, { ...this.opts, optLevel: "basic" });
  }

  /** Σx and Σx² per channel of X [n, d] (n = x.length / d), float64. */
  async moments(x: Float32Array, d: number): Promise<{ sum: Float64Array; sumsq: Float64Array }> {
    const s = await this.session(`moments:${d}`, () => momentsGraph(d));
    const out = await s.run({ x: f32([x.length / d, d], x) });
    return { sum: out.sum.data as Float64Array, sumsq: out.sumsq.data as Float64Array };
  }

  /** G + X̃ᵀX̃ [(d+1)·(d+1)] in float64 (a new array). */
  async gramAdd(x: Float32Array, d: number, G: Float64Array): Promise<Float64Array> {
    const s = await this.session(`gram:${d}`, () => gramGraph(d, null));
    const out = await s.run({ a: f32([x.length / d, d], x), prev: f64([d + 1, d + 1], G) });
    return out.gram.data as Float64Array;
  }

  /** G += the lower block triangle of X̃ᵀX̃ (products in float32, sums in float64), in place. */
  async gramMixedAdd(x: Float32Array, d: number, G: Float64Array): Promise<void> {
    const s = await this.session(`gram-mixed:${d}`, () => mixedGramGraph(d));
    const out = await s.run({ x: f32([x.length / d, d], x) });
    const D = d + 1;
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
  }

  /** C + X̃_aᵀX̃_b [(da+1)·(db+1)] in float64 for row-aligned A [n, da], B [n, db] (a new array). */
  async crossAdd(
    a: Float32Array,
    da: number,
    b: Float32Array,
    db: number,
    C: Float64Array,
  ): Promise<Float64Array> {
    const s = await this.session(`cross:${da}:${db}`, () => gramGraph(da, db));
    const n = a.length / da;
    const out = await s.run({ a: f32([n, da], a), b: f32([n, db], b), prev: f64([da + 1, db + 1], C) });
    return out.gram.data as Float64Array;
  }
}
