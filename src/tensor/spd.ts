/**
 * Float64 SPD solves for large systems (n ≈ 4000), with the O(n³) work in ONNX Runtime.
 *
 * The JS kernels in linalg.ts (`cholesky`, `choleskySolve`, `matmul`) run at ~0.5 GFLOP/s; an ORT
 * f64 `Gemm` runs at tens of GFLOP/s. So the factorization is arranged as matrix products:
 *
 *   choleskyInverse(A) returns Linv = L⁻¹ of A = L Lᵀ by the recursive 2×2 block algorithm
 *
 *     A = [A11 A21ᵀ; A21 A22],  n = n1 + n2
 *     Linv11 = rec(A11)                      // [n1, n1]
 *     L21    = A21 · Linv11ᵀ                 // [n2, n1]   (ORT)
 *     S      = A22 − L21 · L21ᵀ              // [n2, n2]   (ORT, Gemm alpha = −1, beta = 1)
 *     Linv22 = rec(S)                        // [n2, n2]
 *     Linv21 = −Linv22 · (L21 · Linv11)      // [n2, n1]   (ORT, two products)
 *     Linv   = [Linv11 0; Linv21 Linv22]
 *
 *   with a JS base case (n ≤ base): `cholesky` from linalg.ts and a lower-triangular inverse.
 *   Each level does four dense products of 2·(n/2)³ flops, i.e. n³ per level and
 *   n³·(1 + 1/4 + 1/16 + …) ≈ 4/3·n³ flops in all (the triangles are not exploited).
 *
 *   spdSolve(A, B) = Linvᵀ · (Linv · B): two dense products, 4·n²·m flops on top of the factor.
 *
 * Positive definiteness uses the test of `cholesky` (a pivot must keep more than 1e-10 of its
 * diagonal), always measured against the diagonal of the ORIGINAL matrix: inside a Schur
 * complement S the pivot is also compared with the entry of A, so that a singular direction
 * (whose S-diagonal is only rounding noise) is refused exactly as the non-blocked `cholesky` would.
 * Only the lower triangle of A is read (as with `cholesky`); A is never modified.
 */
import { GraphBuilder } from "../onnx/graph.ts";
import { f64, Session } from "../runtime/ort.ts";
import { cholesky } from "./linalg.ts";

/** Default size at and below which the factorization runs in JS. */
export const SPD_BASE = 256;

// ---------------------------------------------------------------------------------------------------------
// gemm64: one cached ORT session per variant

const sessions = new Map<string, Promise<Session>>();

function cached(key: string, build: () => Uint8Array): Promise<Session> {
  let s = sessions.get(key);
  if (!s) {
    // f64 graphs need level "basic" (ENVIRONMENT.md: QuickGelu fusion breaks f64 graphs)
    s = Session.create(build(), { optLevel: "basic" });
    s.catch(() => sessions.delete(key)); // a failed creation is not cached
    sessions.set(key, s);
  }
  return s;
}

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
) {
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

function checkLength(what: string, arr: Float64Array, want: number): void {
  if (arr.length !== want) throw new Error(`${what} has ${arr.length} values, expected ${want}`);
}

/**
 * C = op(A)·op(B) in float64 through ORT (Gemm; op = transpose when asked). A is [n,k] (or [k,n] if
 * transA), B [k,p] (or [p,k] if transB). Optional C0 [n,p] with alpha/beta: alpha·op(A)op(B) + beta·C0.
 * Returns a new [n, p] array; the inputs are not modified.
 */
export async function gemm64(
  A: Float64Array,
  B: Float64Array,
  n: number,
  k: number,
  p: number,
  opts: { transA?: boolean; transB?: boolean; alpha?: number; beta?: number; C?: Float64Array } = {},
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
    ? `s:${+transA}${+transB}:${+!!C0}`
    : `a:${+transA}${+transB}:${alpha}:${C0 ? beta : 0}:${+!!C0}`;
  const s = await cached(key, () => gemmGraph(transA, transB, alpha, beta, C0 !== undefined, scaled));
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

// ---------------------------------------------------------------------------------------------------------
// Cholesky inverse factor

/** Rows [r0, r1) × columns [c0, c1) of a row-major [?, cols] matrix, as a new array. */
function block(M: Float64Array, cols: number, r0: number, r1: number, c0: number, c1: number): Float64Array {
  const w = c1 - c0;
  const out = new Float64Array((r1 - r0) * w);
  for (let i = r0; i < r1; i++) out.set(M.subarray(i * cols + c0, i * cols + c1), (i - r0) * w);
  return out;
}

/** X = L⁻¹ for lower-triangular L [n, n] (upper triangle of L ignored; X has zeros above the diagonal). */
function lowerInverse(L: Float64Array, n: number): Float64Array {
  const X = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    // row i of L·X = e_i:  X[i, :] = (e_i − Σ_{k<i} L[i,k] X[k, :]) / L[i,i]   (X[k, :] is zero past column k)
    const ri = i * n;
    for (let k = 0; k < i; k++) {
      const l = L[ri + k];
      if (l === 0) continue;
      const rk = k * n;
      for (let j = 0; j <= k; j++) X[ri + j] -= l * X[rk + j];
    }
    const inv = 1 / L[ri + i];
    for (let j = 0; j < i; j++) X[ri + j] *= inv;
    X[ri + i] = inv;
  }
  return X;
}

/** Block size of the leading part: a multiple of 64 near n/2 (or ⌊n/2⌋ when that is 0 or n). */
function splitPoint(n: number): number {
  const n1 = Math.round(n / 128) * 64;
  return n1 >= 1 && n1 < n ? n1 : n >> 1;
}

/**
 * Linv of M [n, n] (read-only). `diag0` holds the diagonal of the original matrix at these indices
 * (for the relative pivot test), or null when M is itself a principal block of the original matrix.
 */
async function inverseFactor(
  M: Float64Array,
  n: number,
  diag0: Float64Array | null,
  base: number,
): Promise<Float64Array | null> {
  if (n <= base) {
    const L = M.slice(); // [n, n]
    if (!cholesky(L, n)) return null;
    if (diag0) {
      // the pivot d = L[j,j]² must also keep 1e-10 of the original diagonal entry
      for (let j = 0; j < n; j++) {
        const l = L[j * n + j];
        if (!(l * l > 1e-10 * Math.abs(diag0[j]))) return null;
      }
    }
    return lowerInverse(L, n);
  }

  const n1 = splitPoint(n);
  const n2 = n - n1;
  const linv11 = await inverseFactor(
    block(M, n, 0, n1, 0, n1),
    n1,
    diag0 ? diag0.subarray(0, n1) : null,
    base,
  ); // [n1, n1]
  if (!linv11) return null;
  const l21 = await gemm64(block(M, n, n1, n, 0, n1), linv11, n2, n1, n1, { transB: true }); // [n2, n1]
  // S = A22 − L21·L21ᵀ (Schur complement) [n2, n2]
  const s = await gemm64(l21, l21, n2, n1, n2, {
    transB: true,
    alpha: -1,
    beta: 1,
    C: block(M, n, n1, n, n1, n),
  });
  let d2: Float64Array; // original diagonal at indices n1..n [n2]
  if (diag0) d2 = diag0.subarray(n1);
  else {
    d2 = new Float64Array(n2);
    for (let i = 0; i < n2; i++) d2[i] = M[(n1 + i) * n + n1 + i];
  }
  const linv22 = await inverseFactor(s, n2, d2, base); // [n2, n2]
  if (!linv22) return null;
  const t = await gemm64(l21, linv11, n2, n1, n1); // L21·Linv11 [n2, n1]
  const linv21 = await gemm64(linv22, t, n2, n2, n1, { alpha: -1 }); // [n2, n1]

  const out = new Float64Array(n * n); // [n, n]
  for (let i = 0; i < n1; i++) out.set(linv11.subarray(i * n1, (i + 1) * n1), i * n);
  for (let i = 0; i < n2; i++) {
    const r = (n1 + i) * n;
    out.set(linv21.subarray(i * n1, (i + 1) * n1), r);
    out.set(linv22.subarray(i * n2, (i + 1) * n2), r + n1);
  }
  return out;
}

function checkBase(base: number): void {
  if (!Number.isInteger(base) || base < 1) throw new Error(`base must be a positive integer, got ${base}`);
}

/**
 * L⁻¹ (lower triangular, row-major n×n, zeros above the diagonal) of the Cholesky factor A = L Lᵀ of an
 * SPD matrix A [n, n], or null when A is not (numerically) positive definite. Only the lower triangle of
 * A is read; A is not modified. ≈ 4/3·n³ flops, all but the n ≤ base blocks in ORT.
 */
export async function choleskyInverse(
  A: Float64Array,
  n: number,
  base = SPD_BASE,
): Promise<Float64Array | null> {
  checkLength("choleskyInverse: A", A, n * n);
  checkBase(base);
  if (n === 0) return new Float64Array(0);
  return inverseFactor(A, n, null, base);
}

/**
 * Z = A⁻¹B [n, m] for SPD A [n, n] and B [n, m] via Z = Linvᵀ(Linv·B) (two ORT products), or null when A
 * is not positive definite. A and B are not modified. ≈ 4/3·n³ + 4·n²·m flops.
 */
export async function spdSolve(
  A: Float64Array,
  n: number,
  B: Float64Array,
  m: number,
  base = SPD_BASE,
): Promise<Float64Array | null> {
  checkLength("spdSolve: A", A, n * n);
  checkLength("spdSolve: B", B, n * m);
  const linv = await choleskyInverse(A, n, base); // [n, n]
  if (!linv) return null;
  if (m === 0 || n === 0) return new Float64Array(n * m);
  const y = await gemm64(linv, B, n, n, m); // Linv·B [n, m]
  return gemm64(linv, y, n, n, m, { transA: true }); // Linvᵀ·Y [n, m]
}
