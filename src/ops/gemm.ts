/**
 * Float64 matrix products in ONNX Runtime (`Gemm`): the general `gemm` and `sub` (Y = C − A·B), the one
 * variant that every product of the blocked Cholesky uses (spd.ts). The sessions come from the ops
 * session cache; f64 graphs are optimized at level "basic" (docs/runtime-notes.md: QuickGelu fusion breaks f64
 * graphs) and use ORT's default threads.
 *
 * Why one variant: each ORT session has its own intra-op thread pool, whose threads keep spinning for a
 * while after a run; alternating between two sessions (say a plain and a transposed Gemm) makes the two
 * pools fight for the cores, which halved the throughput on a 2-core machine.
 */
import { GraphBuilder } from "../onnx/graph.ts";
import { f64, type SessionOptions } from "../runtime/ort.ts";
import type { SessionCache } from "./sessions.ts";

const F64: SessionOptions = { optLevel: "basic" };

/** A coefficient ORT can take as a (float32) Gemm attribute without rounding. */
function f32Exact(v: number): boolean {
  return Math.fround(v) === v;
}

/**
 * y = alpha·op(a)·op(b) [+ beta·c]. With `scaled`, alpha and beta are f64 scalar inputs applied after a
 * plain Gemm (ORT's Gemm attributes are float32, which would round e.g. 0.1).
 */
function gemmGraph(
  transA: boolean,
  transB: boolean,
  alpha: number,
  beta: number,
  hasC: boolean,
  scaled: boolean,
): Uint8Array {
  const g = new GraphBuilder("pare-gemm64");
  const a = g.input("a", "float64", transA ? ["k", "n"] : ["n", "k"]);
  const b = g.input("b", "float64", transB ? ["p", "k"] : ["k", "p"]);
  const c = hasC ? g.input("c", "float64", ["n", "p"]) : null;
  const attrs: Record<string, { float: number } | number> = {};
  if (transA) attrs.transA = 1;
  if (transB) attrs.transB = 1;
  let y: string;
  if (!scaled) {
    if (alpha !== 1) attrs.alpha = { float: alpha };
    if (c) attrs.beta = { float: beta };
    y = g.op("Gemm", c ? [a, b, c] : [a, b], attrs, "y");
  } else {
    const ab = g.op("Gemm", [a, b], attrs); // [n, p]
    const scaledAb = g.op("Mul", [ab, g.input("alpha", "float64", [])]);
    y = c
      ? g.op("Add", [scaledAb, g.op("Mul", [c, g.input("beta", "float64", [])])], {}, "y")
      : g.alias(scaledAb, "y");
  }
  g.output(y, "float64", ["n", "p"]);
  return g.toModel();
}

function subGraph(): Uint8Array {
  const g = new GraphBuilder("pare-gemm64-sub");
  const a = g.input("a", "float64", ["n", "k"]);
  const b = g.input("b", "float64", ["k", "p"]);
  const c = g.input("c", "float64", ["cn", "cp"]);
  g.output(g.op("Gemm", [a, b, c], { alpha: { float: -1 }, beta: { float: 1 } }, "y"), "float64", ["n", "p"]);
  return g.toModel();
}

export function checkLength(what: string, arr: Float64Array, want: number): void {
  if (arr.length !== want) throw new Error(`${what} has ${arr.length} values, expected ${want}`);
}

export interface GemmOptions {
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  beta?: number;
  C?: Float64Array;
}

const ZERO = new Float64Array(1); // broadcast [1, 1] C of `sub`: Y = −A·B

export class Gemm64 {
  constructor(private readonly sessions: SessionCache) {}

  /**
   * C = op(A)·op(B) in float64 (op = transpose when asked). A is [n,k] (or [k,n] if transA), B [k,p] (or
   * [p,k] if transB). Optional C0 [n,p] with alpha/beta: alpha·op(A)op(B) + beta·C0. Returns a new [n, p]
   * array; the inputs are not modified.
   */
  async gemm(
    A: Float64Array,
    B: Float64Array,
    n: number,
    k: number,
    p: number,
    opts: GemmOptions = {},
  ): Promise<Float64Array> {
    const transA = opts.transA ?? false;
    const transB = opts.transB ?? false;
    const alpha = opts.alpha ?? 1;
    const beta = opts.beta ?? 1;
    checkLength("gemm64: A", A, n * k);
    checkLength("gemm64: B", B, k * p);
    if (opts.C) checkLength("gemm64: C", opts.C, n * p);
    const C0 = opts.C && beta !== 0 ? opts.C : undefined; // [n, p]

    if (n === 0 || p === 0) return new Float64Array(0);
    if (k === 0) {
      // op(A)·op(B) is the zero matrix
      const out = new Float64Array(n * p);
      if (C0) for (let i = 0; i < out.length; i++) out[i] = beta * C0[i];
      return out;
    }

    const scaled = !f32Exact(alpha) || (C0 !== undefined && !f32Exact(beta));
    const key = scaled
      ? `gemm64:s:${+transA}${+transB}:${+!!C0}`
      : `gemm64:a:${+transA}${+transB}:${alpha}:${C0 ? beta : 0}:${+!!C0}`;
    const s = await this.sessions.get(
      key,
      () => gemmGraph(transA, transB, alpha, beta, C0 !== undefined, scaled),
      F64,
    );
    const feeds = {
      a: f64(transA ? [k, n] : [n, k], A),
      b: f64(transB ? [p, k] : [k, p], B),
      ...(C0 ? { c: f64([n, p], C0) } : {}),
      ...(scaled ? { alpha: f64([], Float64Array.of(alpha)) } : {}),
      ...(scaled && C0 ? { beta: f64([], Float64Array.of(beta)) } : {}),
    };
    const out = await s.run(feeds, ["y"]);
    return out.y.data as Float64Array;
  }

  /**
   * Y = C − A·B for A [n, k], B [k, p] and C [n, p] or broadcast [1, 1] (a zero C gives −A·B) through ONE
   * session (Gemm alpha = −1, beta = 1, no transposes).
   */
  async sub(
    C: Float64Array,
    cDims: [number, number],
    A: Float64Array,
    B: Float64Array,
    n: number,
    k: number,
    p: number,
  ): Promise<Float64Array> {
    const s = await this.sessions.get("gemm64:sub", subGraph, F64);
    const out = await s.run({ a: f64([n, k], A), b: f64([k, p], B), c: f64(cDims, C) }, ["y"]);
    return out.y.data as Float64Array;
  }

  /** −A·B for A [n, k], B [k, p] (n, k, p ≥ 1). */
  neg(A: Float64Array, B: Float64Array, n: number, k: number, p: number): Promise<Float64Array> {
    return this.sub(ZERO, [1, 1], A, B, n, k, p);
  }
}
