/**
 * Float64 SPD solves for large systems (n ≈ 4000), with the O(n³) work in ONNX Runtime.
 *
 * The JS kernels in linalg.ts (`cholesky`, `choleskySolve`, `matmul`) run at ~0.5 GFLOP/s; an ORT
 * f64 `Gemm` runs at tens of GFLOP/s. So the factorizations are arranged as matrix products.
 *
 * spdSolve(A, B): a recursive blocked Cholesky factor A = L Lᵀ, then L Y = B and Lᵀ Z = Y.
 *
 *   A = [A11 A21ᵀ; A21 A22],  n = n1 + n2,   L = [L11 0; L21 L22]
 *     L11 = chol(A11)                               // recursion
 *     U12 = L21ᵀ = L11⁻¹ · A21ᵀ                      // [n1, n2]  triangular solve (below); L21 = U12ᵀ
 *     S   = A22 − L21 · U12                          // [n2, n2]  only the blocks the next level reads
 *     L22 = chol(S)                                 // recursion
 *
 *   L is kept as that tree (`Factor`): a leaf (n ≤ base) holds −L⁻¹ and −L⁻ᵀ of its block (computed
 *   like choleskyInverse below, in JS at ≤ base/4), an inner node L21 and U12. A triangular solve with
 *   m right-hand sides then needs only contiguous row blocks of B:
 *
 *     L  X = B:  X1 = solve(L11, B1);   X2 = solve(L22, B2 − L21 X1)
 *     Lᵀ X = Y:  X2 = solveᵀ(L22, Y2);  X1 = solveᵀ(L11, Y1 − U12 X2)
 *     leaf:      X = L⁻¹ B  or  L⁻ᵀ Y    // one ORT product, 2·b²·m flops (no JS loop over m)
 *
 *   Flops: the factor ≈ 0.42·n³ (the Schur update skips the block above the next split, not the whole
 *   upper triangle), each solve ≈ n²·m + 2·n·b·m: for n = 3943, m = 1690, base 256 ≈ 84 GFLOP against
 *   4/3·n³ + 4·n²·m ≈ 187 GFLOP when L⁻¹ is formed and applied explicitly. Every product is the one
 *   Gemm variant C − A·B (see `gemmSub`: one ORT session, one thread pool).
 *
 * choleskyInverse(A) returns Linv = L⁻¹ by the recursive 2×2 block algorithm
 *
 *     Linv11 = rec(A11)                      // [n1, n1]
 *     L21    = A21 · Linv11ᵀ                 // [n2, n1]   (ORT)
 *     S      = A22 − L21 · L21ᵀ              // [n2, n2]   (ORT)
 *     Linv22 = rec(S)                        // [n2, n2]
 *     Linv21 = −Linv22 · (L21 · Linv11)      // [n2, n1]   (ORT, two products)
 *     Linv   = [Linv11 0; Linv21 Linv22]
 *
 *   with a JS base case (n ≤ base: `cholesky` from linalg.ts and a triangular inverse); ≈ 4/3·n³ flops
 *   (the triangles are not exploited). It runs on negated inverses N = −L⁻¹ internally, so that its
 *   products are also C − A·B.
 *
 * Positive definiteness uses the test of `cholesky` (a pivot must keep more than 1e-10 of its
 * diagonal), always measured against the diagonal of the ORIGINAL matrix: inside a Schur
 * complement S the pivot is also compared with the entry of A, so that a singular direction
 * (whose S-diagonal is only rounding noise) is refused exactly as the non-blocked `cholesky` would.
 * Only the lower triangle of A is read (as with `cholesky`); A (and B) are never modified.
 */
import { GraphBuilder } from "../onnx/graph.ts";
import { f64, Session } from "../runtime/ort.ts";
import { cholesky } from "./linalg.ts";

/**
 * Default base: the size at and below which choleskyInverse runs in JS, and the largest diagonal block
 * that spdSolve keeps as an explicit inverse (its JS runs at ≤ base/4).
 */
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
// gemmSub: the one Gemm variant of the factorizations

/**
 * Y = C − A·B for A [n, k], B [k, p] and C [n, p] or broadcast [1, 1] (a zero C gives −A·B) through ONE
 * cached ORT session (Gemm alpha = −1, beta = 1, no transposes).
 *
 * Every product of `spdSolve` and `choleskyInverse` goes through this one variant, and that matters:
 * each ORT session has its own intra-op thread pool, whose threads keep spinning for a while after a
 * run; alternating between two sessions (say a plain and a transposed Gemm) makes the two pools fight
 * for the cores, which halved the throughput on a 2-core machine.
 */
async function gemmSub(
  C: Float64Array,
  cDims: [number, number],
  A: Float64Array,
  B: Float64Array,
  n: number,
  k: number,
  p: number,
): Promise<Float64Array> {
  const s = await cached("sub", () => {
    const g = new GraphBuilder("pare-gemm64-sub");
    const a = g.input("a", "float64", ["n", "k"]);
    const b = g.input("b", "float64", ["k", "p"]);
    const c = g.input("c", "float64", ["cn", "cp"]);
    g.output(g.op("Gemm", [a, b, c], { alpha: { float: -1 }, beta: { float: 1 } }, "y"), "float64", [
      "n",
      "p",
    ]);
    return g.toModel();
  });
  const out = await s.run({ a: f64([n, k], A), b: f64([k, p], B), c: f64(cDims, C) }, ["y"]);
  return out.y.data as Float64Array;
}

const ZERO = new Float64Array(1); // broadcast [1, 1] C of gemmSub: Y = −A·B

/** −A·B for A [n, k], B [k, p] (n, k, p ≥ 1). */
function gemmNeg(A: Float64Array, B: Float64Array, n: number, k: number, p: number): Promise<Float64Array> {
  return gemmSub(ZERO, [1, 1], A, B, n, k, p);
}

// ---------------------------------------------------------------------------------------------------------
// Blocks, views and transposes

/** Rows [r0, r1) × columns [c0, c1) of a row-major [?, cols] matrix, as a new array. */
function block(M: Float64Array, cols: number, r0: number, r1: number, c0: number, c1: number): Float64Array {
  const w = c1 - c0;
  const out = new Float64Array((r1 - r0) * w);
  for (let i = r0; i < r1; i++) out.set(M.subarray(i * cols + c0, i * cols + c1), (i - r0) * w);
  return out;
}

/**
 * Mᵀ of the block rows [r0, r1) × columns [c0, c1) of a row-major matrix with row length `ld`: a new
 * [c1 − c0, r1 − r0] array. Tiled, eight source rows at a time (≈ 3 ns per element, about a copy's cost).
 */
function transposedBlock(
  M: Float64Array,
  ld: number,
  r0: number,
  r1: number,
  c0: number,
  c1: number,
): Float64Array {
  const rows = r1 - r0;
  const cols = c1 - c0;
  const T = new Float64Array(rows * cols);
  const tile = 32;
  for (let ib = 0; ib < rows; ib += tile) {
    const ie = Math.min(ib + tile, rows);
    for (let jb = 0; jb < cols; jb += tile) {
      const je = Math.min(jb + tile, cols);
      let i = ib;
      for (; i + 8 <= ie; i += 8) {
        const s0 = (r0 + i) * ld + c0;
        const s1 = s0 + ld;
        const s2 = s1 + ld;
        const s3 = s2 + ld;
        const s4 = s3 + ld;
        const s5 = s4 + ld;
        const s6 = s5 + ld;
        const s7 = s6 + ld;
        for (let j = jb; j < je; j++) {
          const d = j * rows + i;
          T[d] = M[s0 + j];
          T[d + 1] = M[s1 + j];
          T[d + 2] = M[s2 + j];
          T[d + 3] = M[s3 + j];
          T[d + 4] = M[s4 + j];
          T[d + 5] = M[s5 + j];
          T[d + 6] = M[s6 + j];
          T[d + 7] = M[s7 + j];
        }
      }
      for (; i < ie; i++) {
        const src = (r0 + i) * ld + c0;
        for (let j = jb; j < je; j++) T[j * rows + i] = M[src + j];
      }
    }
  }
  return T;
}

/** Mᵀ of a row-major [rows, cols] matrix. */
function transposed(M: Float64Array, rows: number, cols: number): Float64Array {
  return transposedBlock(M, cols, 0, rows, 0, cols);
}

/** A matrix inside a row-major array: element (i, j) is d[(r + i)·ld + c + j]. */
interface View {
  readonly d: Float64Array;
  readonly ld: number;
  readonly r: number;
  readonly c: number;
}

function copyOf(v: View, rows: number, cols: number): Float64Array {
  return block(v.d, v.ld, v.r, v.r + rows, v.c, v.c + cols);
}

function transposedOf(v: View, rows: number, cols: number): Float64Array {
  return transposedBlock(v.d, v.ld, v.r, v.r + rows, v.c, v.c + cols);
}

/** Block size of the leading part: a multiple of 64 near n/2 (or ⌊n/2⌋ when that is 0 or n). */
function splitPoint(n: number): number {
  const n1 = Math.round(n / 128) * 64;
  return n1 >= 1 && n1 < n ? n1 : n >> 1;
}

function checkBase(base: number): void {
  if (!Number.isInteger(base) || base < 1) throw new Error(`base must be a positive integer, got ${base}`);
}

// ---------------------------------------------------------------------------------------------------------
// Negated inverse Cholesky factor N = −L⁻¹ (choleskyInverse, and the leaves of spdSolve's factor)

/** −L⁻ᵀ (upper triangular, zeros below the diagonal) of lower-triangular L [n, n] (upper triangle ignored). */
function negUpperInverse(L: Float64Array, n: number): Float64Array {
  const U = new Float64Array(n * n); // row j of L⁻ᵀ = column j of L⁻¹
  for (let j = 0; j < n; j++) {
    // column j of L·L⁻¹ = e_j:  x_j = 1 / L[j,j],  x_i = −(Σ_{j≤k<i} L[i,k] x_k) / L[i,i] for i > j
    const rj = j * n;
    U[rj + j] = 1 / L[rj + j];
    for (let i = j + 1; i < n; i++) {
      const ri = i * n;
      let s = 0;
      for (let k = j; k < i; k++) s += L[ri + k] * U[rj + k];
      U[rj + i] = -s / L[ri + i];
    }
    for (let i = j; i < n; i++) U[rj + i] = -U[rj + i];
  }
  return U;
}

/**
 * N = −L⁻¹ (lower triangular, zeros above the diagonal) of M = L Lᵀ [n, n] (read-only, lower triangle
 * only), or null when M is not positive definite. `diag0` holds the diagonal of the original matrix at
 * these indices (for the relative pivot test), or null when M is itself a principal block of the
 * original matrix. Recursive 2×2 blocks (≈ 4/3·n³ flops), in JS at n ≤ base:
 *
 *   N11 = rec(A11);  L21 = A21·L11⁻ᵀ = −A21·N11ᵀ;  S = A22 − L21·L21ᵀ;  N22 = rec(S);
 *   N21 = −(L⁻¹)21 = L22⁻¹·L21·L11⁻¹ = N22·L21·N11
 */
async function negInverseFactor(
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
    return transposed(negUpperInverse(L, n), n, n);
  }

  const n1 = splitPoint(n);
  const n2 = n - n1;
  const n11 = await negInverseFactor(
    block(M, n, 0, n1, 0, n1),
    n1,
    diag0 ? diag0.subarray(0, n1) : null,
    base,
  ); // [n1, n1]
  if (!n11) return null;
  const l21 = await gemmNeg(block(M, n, n1, n, 0, n1), transposed(n11, n1, n1), n2, n1, n1); // [n2, n1]
  // S = A22 − L21·L21ᵀ (Schur complement) [n2, n2]
  const s = await gemmSub(block(M, n, n1, n, n1, n), [n2, n2], l21, transposed(l21, n2, n1), n2, n1, n2);
  let d2: Float64Array; // original diagonal at indices n1..n [n2]
  if (diag0) d2 = diag0.subarray(n1);
  else {
    d2 = new Float64Array(n2);
    for (let i = 0; i < n2; i++) d2[i] = M[(n1 + i) * n + n1 + i];
  }
  const n22 = await negInverseFactor(s, n2, d2, base); // [n2, n2]
  if (!n22) return null;
  const p = await gemmNeg(l21, n11, n2, n1, n1); // −L21·N11 [n2, n1]
  const n21 = await gemmNeg(n22, p, n2, n2, n1); // N22·L21·N11 [n2, n1]

  const out = new Float64Array(n * n); // [n, n]
  for (let i = 0; i < n1; i++) out.set(n11.subarray(i * n1, (i + 1) * n1), i * n);
  for (let i = 0; i < n2; i++) {
    const r = (n1 + i) * n;
    out.set(n21.subarray(i * n1, (i + 1) * n1), r);
    out.set(n22.subarray(i * n2, (i + 1) * n2), r + n1);
  }
  return out;
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
  const N = await negInverseFactor(A, n, null, base);
  if (!N) return null;
  for (let i = 0; i < N.length; i++) N[i] = 0 - N[i]; // 0 − x: the zeros above the diagonal stay +0
  return N;
}

// ---------------------------------------------------------------------------------------------------------
// spdSolve: Cholesky factor as a tree, and triangular solves with many right-hand sides

/**
 * L of A = L Lᵀ, recursively: a leaf keeps −L⁻¹ and −L⁻ᵀ of its block, an inner node both L21 and
 * U12 = L21ᵀ, so that every product is a plain (non-transposed) Gemm.
 */
type Factor =
  | {
      readonly leaf: true;
      readonly n: number;
      readonly nlinv: Float64Array; // −L⁻¹ [n, n]
      readonly nlinvT: Float64Array; // −L⁻ᵀ [n, n]
    }
  | {
      readonly leaf: false;
      readonly n: number;
      readonly n1: number;
      readonly t11: Factor;
      readonly l21: Float64Array; // [n − n1, n1]
      readonly u12: Float64Array; // L21ᵀ [n1, n − n1]
      readonly t22: Factor;
    };

/** JS base size inside the leaves of spdSolve's factor (of at most `base`). */
function leafJsBase(base: number): number {
  return Math.max(1, base >> 2);
}

/** Leaf of the factor tree for the block M [n, n] (read-only, lower triangle only); `diag0` as in `factor`. */
async function leafFactor(
  M: Float64Array,
  n: number,
  diag0: Float64Array | null,
  base: number,
): Promise<Factor | null> {
  const nlinv = await negInverseFactor(M, n, diag0, leafJsBase(base));
  return nlinv && { leaf: true, n, nlinv, nlinvT: transposed(nlinv, n, n) };
}

/**
 * Cholesky factor of the SPD matrix [n, n] at `v` (read-only, lower triangle only). `diag0` holds the
 * diagonal of the original matrix at these indices (for the relative pivot test), or null when `v`
 * is itself a principal block of the original matrix. Null when not positive definite.
 */
function factor(v: View, n: number, diag0: Float64Array | null, base: number): Promise<Factor | null> {
  if (n <= base) return leafFactor(copyOf(v, n, n), n, diag0, base);
  const n1 = splitPoint(n);
  return factorParts(v, { d: v.d, ld: v.ld, r: v.r + n1, c: v.c }, n, n1, diag0, base);
}

/**
 * Cholesky factor of the SPD matrix A [n, n] given as two pieces: `top` holds A11 = A[0:n1, 0:n1], `bot`
 * the rows A[n1:n, 0:n] (read-only, lower triangles only). `diag0` as in `factor`.
 *
 * The Schur complement S = A22 − L21·U12 is formed only where the next level reads it: with
 * S = [S11 ·; S21 S22] split at p = splitPoint(n2), as S11 (p × p) and the rows [S21 S22] (q × n2),
 * which skips the p × q block above the diagonal (a quarter of the product's flops at each level).
 */
async function factorParts(
  top: View,
  bot: View,
  n: number,
  n1: number,
  diag0: Float64Array | null,
  base: number,
): Promise<Factor | null> {
  const n2 = n - n1;
  const t11 = await factor(top, n1, diag0 ? diag0.subarray(0, n1) : null, base);
  if (!t11) return null;
  // U12 = L11⁻¹ A21ᵀ [n1, n2] (A21ᵀ from the lower triangle), L21 = U12ᵀ [n2, n1]
  const u12 = transposedOf(bot, n2, n1);
  await solveLower(t11, u12, n2);
  const l21 = transposed(u12, n1, n2);
  let d2: Float64Array; // original diagonal at indices n1..n [n2]
  if (diag0) d2 = diag0.subarray(n1);
  else {
    d2 = new Float64Array(n2);
    for (let i = 0; i < n2; i++) d2[i] = bot.d[(bot.r + i) * bot.ld + bot.c + n1 + i];
  }
  const a22: View = { d: bot.d, ld: bot.ld, r: bot.r, c: bot.c + n1 };
  let t22: Factor | null;
  if (n2 <= base) {
    const s = await gemmSub(copyOf(a22, n2, n2), [n2, n2], l21, u12, n2, n1, n2); // [n2, n2]
    t22 = await leafFactor(s, n2, d2, base);
  } else {
    const p = splitPoint(n2);
    const q = n2 - p;
    // S11 = A22[0:p, 0:p] − L21[0:p, :]·U12[:, 0:p]  [p, p]
    const s11 = await gemmSub(
      copyOf(a22, p, p),
      [p, p],
      l21.subarray(0, p * n1),
      block(u12, n2, 0, n1, 0, p),
      p,
      n1,
      p,
    );
    // [S21 S22] = A22[p:n2, :] − L21[p:n2, :]·U12  [q, n2]
    const sBot = await gemmSub(
      copyOf({ ...a22, r: a22.r + p }, q, n2),
      [q, n2],
      l21.subarray(p * n1),
      u12,
      q,
      n1,
      n2,
    );
    t22 = await factorParts({ d: s11, ld: p, r: 0, c: 0 }, { d: sBot, ld: n2, r: 0, c: 0 }, n2, p, d2, base);
  }
  if (!t22) return null;
  return { leaf: false, n, n1, t11, l21, u12, t22 };
}

/** Solves L X = B in place for B [t.n, m] (row-major; a subarray view is fine). */
async function solveLower(t: Factor, B: Float64Array, m: number): Promise<void> {
  if (t.leaf) {
    B.set(await gemmNeg(t.nlinv, B, t.n, t.n, m)); // L⁻¹ B
    return;
  }
  const { n, n1 } = t;
  const n2 = n - n1;
  const B1 = B.subarray(0, n1 * m);
  const B2 = B.subarray(n1 * m, n * m);
  await solveLower(t.t11, B1, m);
  B2.set(await gemmSub(B2, [n2, m], t.l21, B1, n2, n1, m)); // B2 − L21 X1
  await solveLower(t.t22, B2, m);
}

/** Solves Lᵀ X = Y in place for Y [t.n, m] (row-major; a subarray view is fine). */
async function solveUpper(t: Factor, Y: Float64Array, m: number): Promise<void> {
  if (t.leaf) {
    Y.set(await gemmNeg(t.nlinvT, Y, t.n, t.n, m)); // L⁻ᵀ Y
    return;
  }
  const { n, n1 } = t;
  const n2 = n - n1;
  const Y1 = Y.subarray(0, n1 * m);
  const Y2 = Y.subarray(n1 * m, n * m);
  await solveUpper(t.t22, Y2, m);
  Y1.set(await gemmSub(Y1, [n1, m], t.u12, Y2, n1, n2, m)); // Y1 − L21ᵀ X2
  await solveUpper(t.t11, Y1, m);
}

/**
 * Z = A⁻¹B [n, m] for SPD A [n, n] and B [n, m], or null when A is not positive definite: blocked
 * Cholesky A = L Lᵀ (≈ 0.42·n³ flops), then L Y = B and Lᵀ Z = Y (≈ n²·m flops each), all but the
 * small blocks in ORT. `base` is the largest diagonal block kept as an explicit inverse (JS runs at
 * ≤ base/4). Only the lower triangle of A is read; A and B are not modified.
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
  checkBase(base);
  if (n === 0) return new Float64Array(0);
  const t = await factor({ d: A, ld: n, r: 0, c: 0 }, n, null, base);
  if (!t) return null;
  const Z = B.slice(); // [n, m]
  if (m === 0) return Z;
  await solveLower(t, Z, m);
  await solveUpper(t, Z, m);
  return Z;
}
