/**
 * Float64 SPD solves for large systems (n ≈ 4000), with the O(n³) work in ONNX Runtime (gemm.ts).
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
 *   Gemm variant C − A·B (`Gemm64.sub`: one ORT session, one thread pool).
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
import { cholesky } from "../tensor/linalg.ts";
import { checkLength, type Gemm64 } from "./gemm.ts";

/**
 * Default base: the size at and below which choleskyInverse runs in JS, and the largest diagonal block
 * that spdSolve keeps as an explicit inverse (its JS runs at ≤ base/4).
 */
export const SPD_BASE = 256;

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
  g: Gemm64,
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
    g,
    block(M, n, 0, n1, 0, n1),
    n1,
    diag0 ? diag0.subarray(0, n1) : null,
    base,
  ); // [n1, n1]
  if (!n11) return null;
  const l21 = await g.neg(block(M, n, n1, n, 0, n1), transposed(n11, n1, n1), n2, n1, n1); // [n2, n1]
  // S = A22 − L21·L21ᵀ (Schur complement) [n2, n2]
  const s = await g.sub(block(M, n, n1, n, n1, n), [n2, n2], l21, transposed(l21, n2, n1), n2, n1, n2);
  let d2: Float64Array; // original diagonal at indices n1..n [n2]
  if (diag0) d2 = diag0.subarray(n1);
  else {
    d2 = new Float64Array(n2);
    for (let i = 0; i < n2; i++) d2[i] = M[(n1 + i) * n + n1 + i];
  }
  const n22 = await negInverseFactor(g, s, n2, d2, base); // [n2, n2]
  if (!n22) return null;
  const p = await g.neg(l21, n11, n2, n1, n1); // −L21·N11 [n2, n1]
  const n21 = await g.neg(n22, p, n2, n2, n1); // N22·L21·N11 [n2, n1]

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
  g: Gemm64,
  A: Float64Array,
  n: number,
  base = SPD_BASE,
): Promise<Float64Array | null> {
  checkLength("choleskyInverse: A", A, n * n);
  checkBase(base);
  if (n === 0) return new Float64Array(0);
  const N = await negInverseFactor(g, A, n, null, base);
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
  g: Gemm64,
  M: Float64Array,
  n: number,
  diag0: Float64Array | null,
  base: number,
): Promise<Factor | null> {
  const nlinv = await negInverseFactor(g, M, n, diag0, leafJsBase(base));
  return nlinv && { leaf: true, n, nlinv, nlinvT: transposed(nlinv, n, n) };
}

/**
 * Cholesky factor of the SPD matrix [n, n] at `v` (read-only, lower triangle only). `diag0` holds the
 * diagonal of the original matrix at these indices (for the relative pivot test), or null when `v`
 * is itself a principal block of the original matrix. Null when not positive definite.
 */
function factor(
  g: Gemm64,
  v: View,
  n: number,
  diag0: Float64Array | null,
  base: number,
): Promise<Factor | null> {
  if (n <= base) return leafFactor(g, copyOf(v, n, n), n, diag0, base);
  const n1 = splitPoint(n);
  return factorParts(g, v, { d: v.d, ld: v.ld, r: v.r + n1, c: v.c }, n, n1, diag0, base);
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
  g: Gemm64,
  top: View,
  bot: View,
  n: number,
  n1: number,
  diag0: Float64Array | null,
  base: number,
): Promise<Factor | null> {
  const n2 = n - n1;
  const t11 = await factor(g, top, n1, diag0 ? diag0.subarray(0, n1) : null, base);
  if (!t11) return null;
  // U12 = L11⁻¹ A21ᵀ [n1, n2] (A21ᵀ from the lower triangle), L21 = U12ᵀ [n2, n1]
  const u12 = transposedOf(bot, n2, n1);
  await solveLower(g, t11, u12, n2);
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
    const s = await g.sub(copyOf(a22, n2, n2), [n2, n2], l21, u12, n2, n1, n2); // [n2, n2]
    t22 = await leafFactor(g, s, n2, d2, base);
  } else {
    const p = splitPoint(n2);
    const q = n2 - p;
    // S11 = A22[0:p, 0:p] − L21[0:p, :]·U12[:, 0:p]  [p, p]
    const s11 = await g.sub(
      copyOf(a22, p, p),
      [p, p],
      l21.subarray(0, p * n1),
      block(u12, n2, 0, n1, 0, p),
      p,
      n1,
      p,
    );
    // [S21 S22] = A22[p:n2, :] − L21[p:n2, :]·U12  [q, n2]
    const sBot = await g.sub(
      copyOf({ ...a22, r: a22.r + p }, q, n2),
      [q, n2],
      l21.subarray(p * n1),
      u12,
      q,
      n1,
      n2,
    );
    t22 = await factorParts(
      g,
      { d: s11, ld: p, r: 0, c: 0 },
      { d: sBot, ld: n2, r: 0, c: 0 },
      n2,
      p,
      d2,
      base,
    );
  }
  if (!t22) return null;
  return { leaf: false, n, n1, t11, l21, u12, t22 };
}

/** Solves L X = B in place for B [t.n, m] (row-major; a subarray view is fine). */
async function solveLower(g: Gemm64, t: Factor, B: Float64Array, m: number): Promise<void> {
  if (t.leaf) {
    B.set(await g.neg(t.nlinv, B, t.n, t.n, m)); // L⁻¹ B
    return;
  }
  const { n, n1 } = t;
  const n2 = n - n1;
  const B1 = B.subarray(0, n1 * m);
  const B2 = B.subarray(n1 * m, n * m);
  await solveLower(g, t.t11, B1, m);
  B2.set(await g.sub(B2, [n2, m], t.l21, B1, n2, n1, m)); // B2 − L21 X1
  await solveLower(g, t.t22, B2, m);
}

/** Solves Lᵀ X = Y in place for Y [t.n, m] (row-major; a subarray view is fine). */
async function solveUpper(g: Gemm64, t: Factor, Y: Float64Array, m: number): Promise<void> {
  if (t.leaf) {
    Y.set(await g.neg(t.nlinvT, Y, t.n, t.n, m)); // L⁻ᵀ Y
    return;
  }
  const { n, n1 } = t;
  const n2 = n - n1;
  const Y1 = Y.subarray(0, n1 * m);
  const Y2 = Y.subarray(n1 * m, n * m);
  await solveUpper(g, t.t22, Y2, m);
  Y1.set(await g.sub(Y1, [n1, m], t.u12, Y2, n1, n2, m)); // Y1 − L21ᵀ X2
  await solveUpper(g, t.t11, Y1, m);
}

/**
 * Z = A⁻¹B [n, m] for SPD A [n, n] and B [n, m], or null when A is not positive definite: blocked
 * Cholesky A = L Lᵀ (≈ 0.42·n³ flops), then L Y = B and Lᵀ Z = Y (≈ n²·m flops each), all but the
 * small blocks in ORT. `base` is the largest diagonal block kept as an explicit inverse (JS runs at
 * ≤ base/4). Only the lower triangle of A is read; A and B are not modified.
 */
export async function spdSolve(
  g: Gemm64,
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
  const t = await factor(g, { d: A, ld: n, r: 0, c: 0 }, n, null, base);
  if (!t) return null;
  const Z = B.slice(); // [n, m]
  if (m === 0) return Z;
  await solveLower(g, t, Z, m);
  await solveUpper(g, t, Z, m);
  return Z;
}
