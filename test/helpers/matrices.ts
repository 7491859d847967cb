/** Seeded random matrices and comparisons for the float64 linear-algebra tests (row-major arrays). */
import { expect } from "vitest";
import type { Rng } from "./rng.ts";

export function randMat(rng: Rng, r: number, c: number, std = 1): Float64Array {
  return Float64Array.from({ length: r * c }, () => rng.normal() * std);
}

/** A = Bᵀ B + δ I with B [n + 3, n]: symmetric positive definite (condition number up to ~10⁴). */
export function randSpd(rng: Rng, n: number, delta = 0.1): Float64Array {
  const B = randMat(rng, n + 3, n);
  const A = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let t = 0; t < n + 3; t++) s += B[t * n + i] * B[t * n + j];
      A[i * n + j] = s + (i === j ? delta : 0);
    }
  return A;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** max |a − b| (the lengths must agree) */
export function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
