/**
 * The ORT-backed float64 SPD kernels against slow, obvious references: gemm64 against a triple loop for
 * every transpose combination (and alpha/beta/C), choleskyInverse against the identities Linv·L = I and
 * Linv·A·Linvᵀ = I (small `base` so that several recursion levels and odd splits run), spdSolve (blocked
 * Cholesky + triangular solves) against Gaussian elimination and the JS Cholesky solve, and the refusal of
 * matrices that are not positive definite, at the base case and at recursive levels.
 */
import { afterAll, describe, expect, it } from "vitest";
import { closeSharedOps, sharedOps } from "../../src/ops/index.ts";
import { cholesky, choleskySolve } from "../../src/tensor/linalg.ts";
import { maxAbs, maxDiff, randMat, randSpd } from "../helpers/matrices.ts";
import { Rng } from "../helpers/rng.ts";
import { gaussSolve, naiveMatmul } from "../reference/pipeline.ts";

const ops = sharedOps();
const gemm64 = ops.gemm64.bind(ops);
const spdSolve = ops.spdSolve.bind(ops);
const choleskyInverse = ops.choleskyInverse.bind(ops);
afterAll(closeSharedOps);

/** Mᵀ of M [r, c]. */
function transpose(M: ArrayLike<number>, r: number, c: number): Float64Array {
  const T = new Float64Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) T[j * r + i] = M[i * c + j];
  return T;
}

/** XᵀX + δ I for X [rows, n]. */
function gram(X: Float64Array, rows: number, n: number, delta: number): Float64Array {
  const A = naiveMatmul(transpose(X, rows, n), X, n, rows, n);
  for (let i = 0; i < n; i++) A[i * n + i] += delta;
  return A;
}

/** A = Bᵀ B / n + I with B [2n, n]: condition number ≲ 35. */
function wellConditioned(rng: Rng, n: number): Float64Array {
  const A = gram(randMat(rng, 2 * n, n), 2 * n, n, 0);
  for (let i = 0; i < A.length; i++) A[i] /= n;
  for (let i = 0; i < n; i++) A[i * n + i] += 1;
  return A;
}

function identity(n: number): Float64Array {
  const I = new Float64Array(n * n);
  for (let i = 0; i < n; i++) I[i * n + i] = 1;
  return I;
}

describe("gemm64", () => {
  const shapes = [
    [1, 1, 1],
    [3, 4, 5],
    [7, 1, 9],
    [1, 6, 1],
    [17, 13, 8],
  ];

  it("equals the triple loop for every transA/transB combination", async () => {
    const rng = new Rng(11);
    for (const [n, k, p] of shapes) {
      const A = randMat(rng, n, k); // [n, k]
      const B = randMat(rng, k, p); // [k, p]
      const want = naiveMatmul(A, B, n, k, p);
      for (const transA of [false, true])
        for (const transB of [false, true]) {
          const a = transA ? transpose(A, n, k) : A;
          const b = transB ? transpose(B, k, p) : B;
          const aCopy = a.slice();
          const got = await gemm64(a, b, n, k, p, { transA, transB });
          expect(got.length).toBe(n * p);
          expect(maxDiff(got, want) / maxAbs(want)).toBeLessThan(1e-14);
          expect(Array.from(a)).toEqual(Array.from(aCopy));
        }
    }
  });

  it("computes alpha·op(A)op(B) + beta·C, with alpha/beta that float32 cannot hold kept exact", async () => {
    const rng = new Rng(12);
    for (const [n, k, p] of shapes) {
      const A = randMat(rng, n, k);
      const B = randMat(rng, k, p);
      const C = randMat(rng, n, p);
      const C0 = C.slice();
      const AB = naiveMatmul(A, B, n, k, p);
      for (const [alpha, beta] of [
        [-1, 1],
        [2, 0.5],
        [0.1, -2.3], // not float32-exact: a rounded coefficient would show as ~1e-8 relative error
        [1, 0],
        [0, 3],
      ]) {
        const want = AB.map((v, i) => alpha * v + beta * C[i]);
        const scale = Math.max(maxAbs(want), 1);
        for (const transB of [false, true]) {
          const b = transB ? transpose(B, k, p) : B;
          const got = await gemm64(transpose(A, n, k), b, n, k, p, { transA: true, transB, alpha, beta, C });
          expect(maxDiff(got, want) / scale).toBeLessThan(1e-14);
        }
      }
      // alpha alone (no C) and C with the default beta = 1
      const got1 = await gemm64(A, B, n, k, p, { alpha: 0.1 });
      expect(
        maxDiff(
          got1,
          AB.map((v) => 0.1 * v),
        ) / Math.max(maxAbs(AB), 1),
      ).toBeLessThan(1e-14);
      const got2 = await gemm64(A, B, n, k, p, { C });
      expect(
        maxDiff(
          got2,
          AB.map((v, i) => v + C[i]),
        ) / Math.max(maxAbs(AB), 1),
      ).toBeLessThan(1e-14);
      expect(Array.from(C)).toEqual(Array.from(C0));
    }
  });

  it("handles 0-size dimensions without ORT (k = 0 gives beta·C or zeros)", async () => {
    const C = Float64Array.from([1, 2, 3, 4, 5, 6]);
    expect(Array.from(await gemm64(new Float64Array(0), new Float64Array(0), 2, 0, 3))).toEqual([
      0, 0, 0, 0, 0, 0,
    ]);
    expect(
      Array.from(await gemm64(new Float64Array(0), new Float64Array(0), 2, 0, 3, { C, beta: 2, alpha: 5 })),
    ).toEqual([2, 4, 6, 8, 10, 12]);
    expect((await gemm64(new Float64Array(0), new Float64Array(12), 0, 4, 3)).length).toBe(0);
    expect((await gemm64(new Float64Array(8), new Float64Array(0), 2, 4, 0, { transA: true })).length).toBe(
      0,
    );
  });

  it("accepts subarray views and rejects arrays of the wrong length", async () => {
    const big = Float64Array.from([9, 9, 1, 2, 3, 4]);
    const got = await gemm64(big.subarray(2), Float64Array.from([1, 0, 0, 1]), 2, 2, 2);
    expect(Array.from(got)).toEqual([1, 2, 3, 4]);
    await expect(gemm64(new Float64Array(5), new Float64Array(6), 2, 3, 2)).rejects.toThrow(/A has 5 values/);
    await expect(
      gemm64(new Float64Array(6), new Float64Array(6), 2, 3, 2, { C: new Float64Array(3) }),
    ).rejects.toThrow(/C has 3 values/);
  });
});

describe("choleskyInverse", () => {
  it("gives Linv with Linv·L = I and Linv·A·Linvᵀ = I (n below, at and above base; odd splits)", async () => {
    const rng = new Rng(21);
    for (const [n, base] of [
      [1, 16],
      [7, 16],
      [16, 16],
      [17, 16],
      [50, 16],
      [130, 16],
      [131, 1],
      [300, 256],
    ]) {
      const A = randSpd(rng, n);
      const A0 = A.slice();
      const Linv = await choleskyInverse(A, n, base);
      expect(Linv).not.toBeNull();
      if (!Linv) continue;
      expect(Linv.length).toBe(n * n);
      expect(Array.from(A)).toEqual(Array.from(A0)); // A not modified
      for (let i = 0; i < n; i++) {
        expect(Linv[i * n + i]).toBeGreaterThan(0);
        for (let j = i + 1; j < n; j++) expect(Linv[i * n + j]).toBe(0);
      }
      const L = A.slice();
      expect(cholesky(L, n)).toBe(true);
      for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) L[i * n + j] = 0;
      expect(maxDiff(naiveMatmul(Linv, L, n, n, n), identity(n))).toBeLessThan(1e-9);
      const LAL = naiveMatmul(naiveMatmul(Linv, A, n, n, n), transpose(Linv, n, n), n, n, n);
      expect(maxDiff(LAL, identity(n))).toBeLessThan(1e-9);
    }
  });

  it("uses the default base (256) and reads only the lower triangle", async () => {
    const rng = new Rng(22);
    const n = 300;
    const A = wellConditioned(rng, n);
    const Linv = await choleskyInverse(A, n);
    expect(Linv).not.toBeNull();
    const dirty = A.slice();
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) dirty[i * n + j] = 1e6 * rng.normal();
    const Linv2 = await choleskyInverse(dirty, n, 16);
    const Linv1 = await choleskyInverse(A, n, 16);
    expect(Linv1).not.toBeNull();
    expect(Array.from(Linv2 ?? [])).toEqual(Array.from(Linv1 ?? []));
    expect(maxDiff(Linv ?? [], Linv1 ?? [])).toBeLessThan(1e-12);
  });

  it("returns an empty matrix for n = 0", async () => {
    expect((await choleskyInverse(new Float64Array(0), 0))?.length).toBe(0);
  });

  it("returns null for an indefinite matrix, at the base case and at a recursive level", async () => {
    const rng = new Rng(23);
    for (const [n, base] of [
      [10, 16],
      [17, 16],
      [130, 16],
    ]) {
      // every leading principal block is PD; only the last pivot (deepest Schur complement) is negative
      const A = wellConditioned(rng, n);
      A[n * n - 1] = -0.5; // e_nᵀ A e_n < 0: indefinite
      const A0 = A.slice();
      expect(await choleskyInverse(A, n, base)).toBeNull();
      expect(await spdSolve(A, n, randMat(rng, n, 2), 2, base)).toBeNull();
      expect(Array.from(A)).toEqual(Array.from(A0));
      // and a single negative eigenvalue (Xᵀ D X, D = diag(1, …, 1, −1)) hidden anywhere
      const X = randMat(rng, n, n);
      const Xd = X.slice();
      for (let j = 0; j < n; j++) Xd[(n >> 1) * n + j] *= -1;
      expect(await choleskyInverse(naiveMatmul(transpose(X, n, n), Xd, n, n, n), n, base)).toBeNull();
    }
    expect(await choleskyInverse(Float64Array.from([1, 2, 2, 1]), 2)).toBeNull();
    expect(await choleskyInverse(Float64Array.from([1, 0, 0, Number.NaN]), 2)).toBeNull();
  });

  it("returns null for rank-deficient matrices, at the base case and at a recursive level", async () => {
    const rng = new Rng(24);
    for (const [n, base] of [
      [12, 16],
      [17, 16],
      [130, 16],
      [300, 256],
    ]) {
      // rank n − 1 (a duplicated column): the Schur complement of the last index is pure rounding noise,
      // which must be refused relative to the original diagonal, as the non-blocked cholesky does
      const X = randMat(rng, n + 5, n);
      for (let i = 0; i < n + 5; i++) X[i * n + n - 1] = X[i * n];
      const A = gram(X, n + 5, n, 0);
      expect(cholesky(A.slice(), n)).toBe(false);
      expect(await choleskyInverse(A, n, base)).toBeNull();
      // rank ~ 2n/3: the deficiency shows up in the trailing block
      const r = Math.ceil((2 * n) / 3);
      const Y = randMat(rng, r, n);
      expect(await choleskyInverse(gram(Y, r, n, 0), n, base)).toBeNull();
    }
  });

  it("rejects a bad base", async () => {
    await expect(choleskyInverse(identity(3), 3, 0)).rejects.toThrow(/base/);
  });
});

/** Relative residual max|A·Z − B| / (max|A|·max|Z| + max|B|): about machine ε for a backward-stable solve. */
function residual(A: Float64Array, n: number, Z: Float64Array, B: Float64Array, m: number): number {
  const AZ = naiveMatmul(A, Z, n, n, m);
  return maxDiff(AZ, B) / (maxAbs(A) * maxAbs(Z) + maxAbs(B));
}

describe("spdSolve", () => {
  /** spdSolve against gaussSolve and the JS Cholesky solve; A and B must stay unmodified. */
  async function checkSolve(rng: Rng, A: Float64Array, n: number, m: number, base?: number, tol = 1e-9) {
    const B = randMat(rng, n, m);
    const A0 = A.slice();
    const B0 = B.slice();
    const Z = await spdSolve(A, n, B, m, base);
    expect(Z).not.toBeNull();
    if (!Z) return;
    expect(Z.length).toBe(n * m);
    expect(Array.from(A)).toEqual(Array.from(A0));
    expect(Array.from(B)).toEqual(Array.from(B0));
    const want = gaussSolve(A, n, B, m);
    expect(maxDiff(Z, want) / maxAbs(want)).toBeLessThan(tol);
    const L = A.slice();
    expect(cholesky(L, n)).toBe(true);
    const X = B.slice();
    choleskySolve(L, n, X, m);
    expect(maxDiff(Z, X) / maxAbs(X)).toBeLessThan(tol);
    expect(residual(A, n, Z, B, m)).toBeLessThan(1e-14);
  }

  it("equals Gaussian elimination (rel. error < 1e-9) and the JS Cholesky solve on well-conditioned systems", async () => {
    const rng = new Rng(31);
    for (const [n, m, base] of [
      [1, 1, 16],
      [9, 4, 16],
      [17, 3, 16],
      [130, 5, 16],
      [300, 7, 256],
    ]) {
      const A = wellConditioned(rng, n);
      const B = randMat(rng, n, m);
      const A0 = A.slice();
      const B0 = B.slice();
      const Z = await spdSolve(A, n, B, m, base);
      expect(Z).not.toBeNull();
      if (!Z) continue;
      expect(Array.from(A)).toEqual(Array.from(A0));
      expect(Array.from(B)).toEqual(Array.from(B0));
      const want = gaussSolve(A, n, B, m);
      expect(maxDiff(Z, want) / maxAbs(want)).toBeLessThan(1e-9);
      const L = A.slice();
      expect(cholesky(L, n)).toBe(true);
      const X = B.slice();
      choleskySolve(L, n, X, m);
      expect(maxDiff(Z, X) / maxAbs(X)).toBeLessThan(1e-9);
    }
  });

  it("handles m = 0 and n = 0", async () => {
    const rng = new Rng(32);
    const A = wellConditioned(rng, 20);
    expect((await spdSolve(A, 20, new Float64Array(0), 0, 8))?.length).toBe(0);
    expect((await spdSolve(new Float64Array(0), 0, new Float64Array(0), 3))?.length).toBe(0);
  });

  it("matches at n below, at and above base, with several recursion levels, odd sizes, m = 1 and m > n", async () => {
    const rng = new Rng(33);
    for (const [n, m, base] of [
      [1, 1, 1],
      [2, 1, 1],
      [5, 1, 16],
      [16, 1, 16], // exactly base: one leaf
      [16, 40, 16],
      [17, 1, 16], // one split, a leaf of 1
      [33, 70, 1], // every leaf 1 × 1
      [47, 3, 4], // leaves ≤ 4, JS inside them at 1
      [65, 130, 16],
      [100, 1, 7],
      [129, 200, 16], // splits at 64 with n2 > base: the S11 / [S21 S22] path, several levels
      [131, 9, 32], // leaves ≤ 32 with an inner ORT level (JS at ≤ 8)
      [200, 301, 48],
    ]) {
      await checkSolve(rng, wellConditioned(rng, n), n, m, base);
    }
  });

  it("uses the default base (256) above it, and stays accurate on a worse-conditioned matrix", async () => {
    const rng = new Rng(34);
    await checkSolve(rng, wellConditioned(rng, 300), 300, 4);
    // A = BᵀB + 0.1 I, B [n + 3, n]: condition number ~10⁴; the residual stays at rounding level
    for (const [n, m, base] of [
      [120, 5, 16],
      [300, 30, 64],
    ]) {
      const A = randSpd(rng, n);
      await checkSolve(rng, A, n, m, base, 1e-7);
    }
  });

  it("reads only the lower triangle of A (the upper may hold anything, NaN included)", async () => {
    const rng = new Rng(35);
    for (const [n, base] of [
      [12, 16],
      [130, 16],
      [200, 32],
    ]) {
      const A = wellConditioned(rng, n);
      const B = randMat(rng, n, 6);
      const dirty = A.slice();
      for (let i = 0; i < n; i++)
        for (let j = i + 1; j < n; j++)
          dirty[i * n + j] = (i + j) % 7 === 0 ? Number.NaN : 1e6 * rng.normal();
      const Z1 = await spdSolve(A, n, B, 6, base);
      const Z2 = await spdSolve(dirty, n, B, 6, base);
      expect(Z1).not.toBeNull();
      expect(Array.from(Z2 ?? [])).toEqual(Array.from(Z1 ?? []));
    }
  });

  it("returns null for indefinite matrices, at the base case and at recursive levels", async () => {
    const rng = new Rng(36);
    for (const [n, base] of [
      [6, 16],
      [16, 16],
      [40, 16],
      [130, 16],
      [131, 32],
      [200, 48],
    ]) {
      const B = randMat(rng, n, 3);
      // a negative last pivot (deepest Schur complement), every leading block PD
      const A = wellConditioned(rng, n);
      A[n * n - 1] = -0.5;
      expect(await spdSolve(A, n, B, 3, base)).toBeNull();
      // a negative first pivot (the very first leaf)
      const A1 = wellConditioned(rng, n);
      A1[0] = -1;
      expect(await spdSolve(A1, n, B, 3, base)).toBeNull();
      // one negative eigenvalue: Xᵀ D X with D = diag(1, …, −1 (row n/2), …, 1)
      const X = randMat(rng, n, n);
      const Xd = X.slice();
      for (let j = 0; j < n; j++) Xd[(n >> 1) * n + j] *= -1;
      expect(await spdSolve(naiveMatmul(transpose(X, n, n), Xd, n, n, n), n, B, 3, base)).toBeNull();
      // NaN on the diagonal in the middle
      const An = wellConditioned(rng, n);
      An[(n >> 1) * (n + 1)] = Number.NaN;
      expect(await spdSolve(An, n, B, 3, base)).toBeNull();
    }
    expect(await spdSolve(Float64Array.from([1, 2, 2, 1]), 2, Float64Array.from([1, 1]), 1)).toBeNull();
    expect(await spdSolve(Float64Array.from([0]), 1, Float64Array.from([1]), 1)).toBeNull();
  });

  it("returns null for rank-deficient matrices, at the base case and at recursive levels", async () => {
    const rng = new Rng(37);
    for (const [n, base] of [
      [12, 16],
      [17, 16],
      [64, 8],
      [130, 16],
      [131, 32],
      [300, 256],
    ]) {
      const B = randMat(rng, n, 2);
      // rank n − 1 (last column = first): the last Schur complement is rounding noise, refused
      // against the ORIGINAL diagonal as the non-blocked cholesky does
      const X = randMat(rng, n + 5, n);
      for (let i = 0; i < n + 5; i++) X[i * n + n - 1] = X[i * n];
      const A = gram(X, n + 5, n, 0);
      expect(cholesky(A.slice(), n)).toBe(false);
      expect(await spdSolve(A, n, B, 2, base)).toBeNull();
      // a duplicated column in the middle (index n/2 + 1 = column 1): refused inside a deeper block
      const Xm = randMat(rng, n + 5, n);
      const jm = (n >> 1) + 1;
      for (let i = 0; i < n + 5; i++) Xm[i * n + jm] = Xm[i * n + 1];
      const Am = gram(Xm, n + 5, n, 0);
      expect(cholesky(Am.slice(), n)).toBe(false);
      expect(await spdSolve(Am, n, B, 2, base)).toBeNull();
      // rank ~ 2n/3: the deficiency shows up in the trailing block
      const r = Math.ceil((2 * n) / 3);
      const Y = randMat(rng, r, n);
      expect(await spdSolve(gram(Y, r, n, 0), n, B, 2, base)).toBeNull();
    }
  });

  it("rejects a bad base and inputs of the wrong length", async () => {
    await expect(spdSolve(identity(3), 3, new Float64Array(3), 1, 0)).rejects.toThrow(/base/);
    await expect(spdSolve(identity(3), 3, new Float64Array(4), 1)).rejects.toThrow(/B has 4 values/);
    await expect(spdSolve(new Float64Array(8), 3, new Float64Array(3), 1)).rejects.toThrow(/A has 8 values/);
  });
});
