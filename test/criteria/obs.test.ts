/**
 * Structured OBS (src/criteria/obs.ts) against a float64 reference that never inverts H incrementally: for a set
 * S of removed channels it solves the kept weights' least-squares problem from scratch (normal equations of the
 * raw rows, Gaussian elimination) and measures the error directly on the rows,
 *
 *   err(S) = ‖X̃ (W' − W̃)ᵀ‖² + λ ‖(W' − W̃)_reg‖²,   W'_S = 0,  W'_u = argmin
 *
 * (λ = 0: the plain residual of the explicit least-squares reconstruction). Checked:
 *  (a) the OBS cost of removing one group, tr(W_G [(H⁻¹)_GG]⁻¹ W_Gᵀ), equals err({G});
 *  (b) greedy removal with H⁻¹ downdates and compensated weights takes the same path as greedy on err() recomputed
 *      from scratch, and each step's cost equals err(S ∪ G) − err(S); the survivors' costs likewise.
 */
import { afterAll, describe, expect, it } from "vitest";
import { obsOrder } from "../../src/criteria/obs.ts";
import { closeSharedOps, sharedOps } from "../../src/ops/index.ts";
import { Rng } from "../helpers/rng.ts";
import { gaussSolve } from "../reference/pipeline.ts";

afterAll(() => closeSharedOps());

interface Layer {
  N: number;
  d: number;
  dOut: number;
  X: Float64Array; // [N, d]
  W: Float32Array; // [dOut, d]
  b: Float32Array; // [dOut]
}

/** Correlated channels (a few latent factors + noise, different scales and offsets): removal order matters. */
function layer(seed: number, N: number, d: number, dOut: number): Layer {
  const rng = new Rng(seed);
  const F = 4;
  const mix = Float64Array.from({ length: F * d }, () => rng.normal());
  const X = new Float64Array(N * d);
  for (let t = 0; t < N; t++) {
    const z = Float64Array.from({ length: F }, () => rng.normal());
    for (let j = 0; j < d; j++) {
      let v = 0.3 * rng.normal() * (1 + (j % 3));
      for (let f = 0; f < F; f++) v += z[f] * mix[f * d + j];
      X[t * d + j] = v + 0.2 * (j % 4);
    }
  }
  const W = Float32Array.from({ length: dOut * d }, () => rng.normal() * 0.5);
  const b = Float32Array.from({ length: dOut }, () => rng.normal() * 0.1);
  return { N, d, dOut, X, W, b };
}

function gramOf({ N, d, X }: Layer): Float64Array {
  const D = d + 1;
  const G = new Float64Array(D * D);
  for (let t = 0; t < N; t++)
    for (let a = 0; a < D; a++) {
      const xa = a === d ? 1 : X[t * d + a];
      for (let c = 0; c < D; c++) G[a * D + c] += xa * (c === d ? 1 : X[t * d + c]);
    }
  return G;
}

/** err(S) by an explicit least-squares fit of the kept columns (from the rows), see the header. */
function refErr(L: Layer, removed: number[], intercept: boolean, alpha: number): number {
  const { N, d, dOut, X } = L;
  const D = intercept ? d + 1 : d;
  const row = (t: number, a: number) => (a === d ? 1 : X[t * d + a]);
  const w = (i: number, a: number) => (a === d ? L.b[i] : L.W[i * d + a]);
  let diag = 0;
  for (let t = 0; t < N; t++) for (let j = 0; j < d; j++) diag += X[t * d + j] ** 2;
  const lambda = alpha * (diag / d);
  const gone = new Set(removed);
  const u = Array.from({ length: D }, (_, a) => a).filter((a) => !gone.has(a));
  const k = u.length;
  // (X̃_uᵀX̃_u + λĨ) Θ = X̃_uᵀ X̃ W̃ᵀ + λĨ W̃_uᵀ     Θ [k, dOut]
  const A = new Float64Array(k * k);
  const B = new Float64Array(k * dOut);
  for (let t = 0; t < N; t++) {
    const y = new Float64Array(dOut);
    for (let i = 0; i < dOut; i++) for (let a = 0; a < D; a++) y[i] += w(i, a) * row(t, a);
    for (let p = 0; p < k; p++) {
      const xp = row(t, u[p]);
      for (let q = 0; q < k; q++) A[p * k + q] += xp * row(t, u[q]);
      for (let i = 0; i < dOut; i++) B[p * dOut + i] += xp * y[i];
    }
  }
  for (let p = 0; p < k; p++) {
    if (u[p] === d) continue;
    A[p * k + p] += lambda;
    for (let i = 0; i < dOut; i++) B[p * dOut + i] += lambda * w(i, u[p]);
  }
  const Th = gaussSolve(A, k, B, dOut);
  // ‖X̃ (W' − W̃)ᵀ‖² + λ ‖(W' − W̃)_reg‖²
  const delta = (i: number, a: number) => {
    const p = u.indexOf(a);
    return (p >= 0 ? Th[p * dOut + i] : 0) - w(i, a);
  };
  let err = 0;
  for (let t = 0; t < N; t++)
    for (let i = 0; i < dOut; i++) {
      let e = 0;
      for (let a = 0; a < D; a++) e += delta(i, a) * row(t, a);
      err += e * e;
    }
  for (let i = 0; i < dOut; i++) for (let a = 0; a < d; a++) err += lambda * delta(i, a) ** 2;
  return err;
}

const channels = (units: number[], g: number) =>
  units.flatMap((k) => Array.from({ length: g }, (_, j) => k * g + j));

const CASES = [
  { name: "FFN channels (unit 1), intercept, α = 0", d: 10, g: 1, intercept: true, alpha: 0 },
  { name: "FFN channels (unit 1), no intercept, α = 0.05", d: 10, g: 1, intercept: false, alpha: 0.05 },
  { name: "KV groups (unit 3), intercept, α = 0.01", d: 12, g: 3, intercept: true, alpha: 0.01 },
  { name: "KV groups (unit 4), no intercept, α = 0", d: 12, g: 4, intercept: false, alpha: 0 },
];

describe("structured OBS", () => {
  for (const c of CASES) {
    const L = layer(c.d * 7 + c.g, 60, c.d, 5);
    const gram = gramOf(L);
    const n = c.d / c.g;
    const base = {
      gram,
      d: c.d,
      W: L.W,
      dOut: L.dOut,
      b: L.b,
      unit: c.g,
      intercept: c.intercept,
      alpha: c.alpha,
      ops: sharedOps(),
      where: "test",
    };
    const rel = (got: number, want: number) => Math.abs(got - want) / Math.max(1e-12, Math.abs(want));

    it(`${c.name}: one group's cost tr(W_G [(H⁻¹)_GG]⁻¹ W_Gᵀ) = error of the explicit fit without it`, async () => {
      const r = await obsOrder({ ...base, keep: n });
      expect(r.order.length).toBe(0);
      for (let k = 0; k < n; k++) {
        const want = refErr(L, channels([k], c.g), c.intercept, c.alpha);
        expect(want).toBeGreaterThan(0);
        expect(rel(r.cost[k], want)).toBeLessThan(1e-8);
      }
      expect(r.alphaUsed).toBe(c.alpha);
    });

    it(`${c.name}: greedy with downdates = greedy recomputed from scratch`, async () => {
      const keep = c.g === 1 ? 3 : 1;
      const r = await obsOrder({ ...base, keep });
      // reference greedy: at each step the unit whose removal (from scratch) adds the least error
      const removed: number[] = [];
      let errS = 0;
      for (let t = 0; t < n - keep; t++) {
        const cand = Array.from({ length: n }, (_, k) => k).filter((k) => !removed.includes(k));
        const inc = cand.map((k) => refErr(L, channels([...removed, k], c.g), c.intercept, c.alpha) - errS);
        const best = inc.indexOf(Math.min(...inc));
        expect(r.order[t], `step ${t}`).toBe(cand[best]);
        expect(rel(r.cost[cand[best]], inc[best])).toBeLessThan(1e-7);
        removed.push(cand[best]);
        errS += inc[best];
      }
      // the survivors: the cost of removing each next, on the downdated inverse and compensated weights
      const survivors = Array.from({ length: n }, (_, k) => k).filter((k) => !removed.includes(k));
      for (const k of survivors) {
        const want = refErr(L, channels([...removed, k], c.g), c.intercept, c.alpha) - errS;
        expect(rel(r.cost[k], want)).toBeLessThan(1e-7);
        for (const m of removed) expect(r.score[k]).toBeGreaterThan(r.score[m]);
      }
      // scores rank removal order: topK of the score = the survivors for every count along the path
      for (let t = 1; t < r.order.length; t++)
        expect(r.score[r.order[t]]).toBeGreaterThan(r.score[r.order[t - 1]]);
    });
  }

  it("a singular Gram with α = 0 retries with a ridge (reported)", async () => {
    const L = layer(3, 40, 6, 4);
    for (let t = 0; t < L.N; t++) L.X[t * 6 + 5] = L.X[t * 6 + 4]; // a duplicated channel
    const r = await obsOrder({
      gram: gramOf(L),
      d: 6,
      W: L.W,
      dOut: 4,
      b: L.b,
      unit: 1,
      intercept: true,
      alpha: 0,
      keep: 3,
      ops: sharedOps(),
      where: "test",
    });
    expect(r.alphaUsed).toBeGreaterThan(0);
    expect(r.order.length).toBe(3);
    // one of the twins goes first: the other carries everything it did (cost ≈ λ-sized only)
    expect([4, 5]).toContain(r.order[0]);
  });
});
