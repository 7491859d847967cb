/**
 * Small dense float64 linear algebra for the reconstruction solves (row-major arrays).
 * Sizes here are (kept channels + 1)², solved once per consumer layer.
 */

/** In-place Cholesky A = L Lᵀ of an n×n SPD matrix (lower triangle written); false if not positive definite. */
export function cholesky(A: Float64Array, n: number): boolean {
  for (let j = 0; j < n; j++) {
    const rj = j * n;
    const orig = A[rj + j];
    let d = orig;
    for (let k = 0; k < j; k++) d -= A[rj + k] * A[rj + k];
    // relative pivot test: a pivot that lost all but ~1e-10 of its diagonal means (numerical) singularity
    if (!(d > 1e-10 * Math.abs(orig)) || !Number.isFinite(d)) return false;
    const ljj = Math.sqrt(d);
    A[rj + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      const ri = i * n;
      let s = A[ri + j];
      for (let k = 0; k < j; k++) s -= A[ri + k] * A[rj + k];
      A[ri + j] = s / ljj;
    }
  }
  return true;
}

/** Solve L Lᵀ X = B in place for B [n, m] (L from `cholesky`). */
export function choleskySolve(L: Float64Array, n: number, B: Float64Array, m: number): void {
  // forward: L Y = B
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    const bi = i * m;
    for (let k = 0; k < i; k++) {
      const l = L[ri + k];
      if (l === 0) continue;
      const bk = k * m;
      for (let c = 0; c < m; c++) B[bi + c] -= l * B[bk + c];
    }
    const d = L[ri + i];
    for (let c = 0; c < m; c++) B[bi + c] /= d;
  }
  // backward: Lᵀ X = Y
  for (let i = n - 1; i >= 0; i--) {
    const bi = i * m;
    for (let k = i + 1; k < n; k++) {
      const l = L[k * n + i];
      if (l === 0) continue;
      const bk = k * m;
      for (let c = 0; c < m; c++) B[bi + c] -= l * B[bk + c];
    }
    const d = L[i * n + i];
    for (let c = 0; c < m; c++) B[bi + c] /= d;
  }
}

/** Sub-matrix of a row-major [?, cols] matrix: rows r × columns c. */
export function gather2d(
  M: Float64Array,
  cols: number,
  r: ArrayLike<number>,
  c: ArrayLike<number>,
): Float64Array {
  const out = new Float64Array(r.length * c.length);
  for (let i = 0; i < r.length; i++) {
    const base = r[i] * cols;
    const o = i * c.length;
    for (let j = 0; j < c.length; j++) out[o + j] = M[base + c[j]];
  }
  return out;
}

/** C [n, p] = A [n, k] · B [k, p] (float64). */
export function matmul(A: Float64Array, B: Float64Array, n: number, k: number, p: number): Float64Array {
  const C = new Float64Array(n * p);
  for (let i = 0; i < n; i++) {
    const ci = i * p;
    for (let t = 0; t < k; t++) {
      const a = A[i * k + t];
      if (a === 0) continue;
      const bt = t * p;
      for (let j = 0; j < p; j++) C[ci + j] += a * B[bt + j];
    }
  }
  return C;
}
