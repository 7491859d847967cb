/**
 * The float64 kernels of the reconstruction solves against slow, obvious references: Cholesky + solve against
 * Gaussian elimination with partial pivoting on random SPD matrices, matmul against a triple loop, gather2d
 * against index arithmetic.
 */
import { describe, expect, it } from "vitest";
import { cholesky, choleskySolve, gather2d, matmul } from "../../src/tensor/linalg.ts";
import { maxAbs, maxDiff, randMat, randSpd } from "../helpers/matrices.ts";
import { Rng } from "../helpers/rng.ts";
import { gaussSolve, naiveMatmul } from "../reference/pipeline.ts";

describe("cholesky", () => {
  it("writes L with L Lᵀ = A in the lower triangle (random SPD, n = 1..12)", () => {
    const rng = new Rng(1);
    for (let n = 1; n <= 12; n++) {
      const A = randSpd(rng, n);
      const L = A.slice();
      expect(cholesky(L, n)).toBe(true);
      const LLt = new Float64Array(n * n);
      for (let i = 0; i < n; i++)
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let k = 0; k <= Math.min(i, j); k++) s += L[i * n + k] * L[j * n + k];
          LLt[i * n + j] = s;
        }
      expect(maxDiff(LLt, A) / maxAbs(A)).toBeLessThan(1e-13);
      for (let i = 0; i < n; i++) expect(L[i * n + i]).toBeGreaterThan(0);
    }
  });

  it("reports false for indefinite, negative-definite, zero and NaN matrices", () => {
    expect(cholesky(Float64Array.from([1, 2, 2, 1]), 2)).toBe(false); // eigenvalues 3, −1
    expect(cholesky(Float64Array.from([-1]), 1)).toBe(false);
    expect(cholesky(new Float64Array(9), 3)).toBe(false);
    expect(cholesky(Float64Array.from([1, 0, 0, Number.NaN]), 2)).toBe(false);
    // an exactly singular matrix whose pivot cancels to exactly zero
    expect(cholesky(Float64Array.from([1, 1, 1, 1]), 2)).toBe(false);
  });
});

describe("choleskySolve", () => {
  it("equals Gaussian elimination on random SPD systems with several right-hand sides", () => {
    const rng = new Rng(2);
    for (const [n, m] of [
      [1, 1],
      [2, 3],
      [5, 1],
      [9, 4],
      [17, 6],
    ]) {
      const A = randSpd(rng, n);
      const B = randMat(rng, n, m);
      const want = gaussSolve(A, n, B, m);
      const L = A.slice();
      expect(cholesky(L, n)).toBe(true);
      const X = B.slice();
      choleskySolve(L, n, X, m);
      expect(maxDiff(X, want) / maxAbs(want)).toBeLessThan(1e-10);
      // and the residual is small
      const AX = naiveMatmul(A, X, n, n, m);
      expect(maxDiff(AX, B) / maxAbs(B)).toBeLessThan(1e-10);
    }
  });

  it("only reads the lower triangle (garbage above the diagonal is ignored)", () => {
    const rng = new Rng(3);
    const n = 6;
    const A = randSpd(rng, n);
    const B = randMat(rng, n, 2);
    const L = A.slice();
    cholesky(L, n);
    const dirty = L.slice();
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) dirty[i * n + j] = 1e6 * rng.normal();
    const x1 = B.slice();
    const x2 = B.slice();
    choleskySolve(L, n, x1, 2);
    choleskySolve(dirty, n, x2, 2);
    expect(Array.from(x2)).toEqual(Array.from(x1));
  });
});

describe("matmul / gather2d", () => {
  it("matmul equals the triple loop (with zeros in A, which the kernel skips)", () => {
    const rng = new Rng(4);
    for (const [n, k, p] of [
      [1, 1, 1],
      [3, 4, 5],
      [7, 2, 9],
      [8, 13, 3],
    ]) {
      const A = randMat(rng, n, k);
      for (let i = 0; i < A.length; i += 3) A[i] = 0;
      const B = randMat(rng, k, p);
      expect(maxDiff(matmul(A, B, n, k, p), naiveMatmul(A, B, n, k, p))).toBeLessThan(1e-13);
    }
  });

  it("gather2d picks M[r_i, c_j] (repeated and unsorted indices allowed)", () => {
    const rng = new Rng(5);
    const rows = 6;
    const cols = 7;
    const M = randMat(rng, rows, cols);
    const r = [5, 0, 3, 3];
    const c = [6, 1, 1, 0, 4];
    const G = gather2d(M, cols, r, c);
    expect(G.length).toBe(r.length * c.length);
    for (let i = 0; i < r.length; i++)
      for (let j = 0; j < c.length; j++) expect(G[i * c.length + j]).toBe(M[r[i] * cols + c[j]]);
    expect(gather2d(M, cols, [], c).length).toBe(0);
  });
});

describe("gaussSolve (the reference itself)", () => {
  it("solves a hand-checked system and refuses a singular one", () => {
    // 2x + y = 5, x + 3y = 10 → x = 1, y = 3
    expect(
      Array.from(gaussSolve([2, 1, 1, 3], 2, [5, 10], 1)).map((v) => Math.round(v * 1e12) / 1e12),
    ).toEqual([1, 3]);
    expect(() => gaussSolve([1, 2, 2, 4], 2, [1, 2], 1)).toThrow(/singular/);
  });
});
