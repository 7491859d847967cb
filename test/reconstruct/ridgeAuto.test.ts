/**
 * --ridge auto (src/reconstruct/index.ts): each α of RIDGE_GRID is fitted on the fit rows and scored on held-out
 * rows. Checked against a float64 reference that fits each α by ridge least squares from the raw fit rows and
 * measures the squared output error on the raw held-out rows: the reported held-out errors equal the reference
 * (liar exactly; liar-seq up to the constant ‖Y_held‖² it leaves out), the chosen α is the grid's argmin so its
 * held-out error is never worse than the default α's, and the returned weights are the chosen α's fit on all rows.
 */
import { afterAll, describe, expect, it } from "vitest";
import type { TapStats } from "../../src/calib/stats.ts";
import { closeSharedOps } from "../../src/ops/index.ts";
import { RECONSTRUCTORS, type ReconInput, RIDGE_DEFAULT, RIDGE_GRID } from "../../src/reconstruct/index.ts";
import { Rng } from "../helpers/rng.ts";
import { gaussSolve } from "../reference/pipeline.ts";

afterAll(() => closeSharedOps());

interface Data {
  n: number;
  d: number;
  X: Float64Array; // [n, d]
}

function rows(data: Data, from: number, to: number): Data {
  return { n: to - from, d: data.d, X: data.X.slice(from * data.d, to * data.d) };
}

function statsOf({ n, d, X }: Data): TapStats {
  const D = d + 1;
  const gram = new Float64Array(D * D);
  for (let t = 0; t < n; t++)
    for (let a = 0; a < D; a++) {
      const xa = a === d ? 1 : X[t * d + a];
      for (let b = 0; b < D; b++) gram[a * D + b] += xa * (b === d ? 1 : X[t * d + b]);
    }
  const sum = new Float64Array(d);
  const sumsq = new Float64Array(d);
  for (let j = 0; j < d; j++) {
    sum[j] = gram[j * D + d];
    sumsq[j] = gram[j * D + j];
  }
  return { d, n, sum, sumsq, gram };
}

function crossOf(p: Data, q: Data): Float64Array {
  const D = p.d + 1;
  const C = new Float64Array(D * D);
  for (let t = 0; t < p.n; t++)
    for (let a = 0; a < D; a++) {
      const xa = a === p.d ? 1 : p.X[t * p.d + a];
      for (let b = 0; b < D; b++) C[a * D + b] += xa * (b === q.d ? 1 : q.X[t * q.d + b]);
    }
  return C;
}

/** Y [n, dOut] = X Wᵀ + b over all d columns */
function output(data: Data, W: Float32Array, b: Float32Array, dOut: number): Float64Array {
  const Y = new Float64Array(data.n * dOut);
  for (let t = 0; t < data.n; t++)
    for (let i = 0; i < dOut; i++) {
      let s = b[i];
      for (let j = 0; j < data.d; j++) s += data.X[t * data.d + j] * W[i * data.d + j];
      Y[t * dOut + i] = s;
    }
  return Y;
}

/** ridge LS of Y on [X_u, 1] (λ on the kept columns only; toward theta0 when given): Θ [|u|+1, dOut] */
function ridgeLS(
  x: Data,
  u: Int32Array,
  Y: Float64Array,
  dOut: number,
  lambda: number,
  theta0?: Float64Array,
) {
  const k = u.length + 1;
  const A = new Float64Array(k * k);
  const B = new Float64Array(k * dOut);
  const row = (t: number, a: number) => (a === u.length ? 1 : x.X[t * x.d + u[a]]);
  for (let t = 0; t < x.n; t++)
    for (let a = 0; a < k; a++) {
      for (let c = 0; c < k; c++) A[a * k + c] += row(t, a) * row(t, c);
      for (let o = 0; o < dOut; o++) B[a * dOut + o] += row(t, a) * Y[t * dOut + o];
    }
  for (let a = 0; a < k - 1; a++) {
    A[a * k + a] += lambda;
    if (theta0) for (let o = 0; o < dOut; o++) B[a * dOut + o] += lambda * theta0[a * dOut + o];
  }
  return gaussSolve(A, k, B, dOut);
}

/** ‖[X_u, 1] Θ − Y‖² */
function sqErr(x: Data, u: Int32Array, Th: Float64Array, Y: Float64Array, dOut: number): number {
  let e = 0;
  for (let t = 0; t < x.n; t++)
    for (let o = 0; o < dOut; o++) {
      let s = Th[u.length * dOut + o];
      for (let a = 0; a < u.length; a++) s += x.X[t * x.d + u[a]] * Th[a * dOut + o];
      e += (s - Y[t * dOut + o]) ** 2;
    }
  return e;
}

const lambdaOf = (x: Data, u: Int32Array, alpha: number) => {
  let s = 0;
  for (let t = 0; t < x.n; t++) for (const j of u) s += x.X[t * x.d + j] ** 2;
  return (alpha * s) / u.length;
};

/** few noisy rows for many channels, so that the ridge matters */
function noisy(rng: Rng, n: number, d: number, base?: Data): Data {
  const X = new Float64Array(n * d);
  for (let t = 0; t < n; t++) {
    const z = rng.normal();
    for (let j = 0; j < d; j++)
      X[t * d + j] = (base ? base.X[t * d + j] : z * (1 + (j % 3))) + rng.normal() * (base ? 0.3 : 0.8);
  }
  return { n, d, X };
}

const d = 14;
const dOut = 6;
const nFit = 24;
const nHeld = 12;
const u = Int32Array.from([0, 2, 3, 5, 7, 8, 10, 11, 13]);
const rng = new Rng(61);
const W = Float32Array.from({ length: dOut * d }, () => rng.normal() * 0.5);
const b = Float32Array.from({ length: dOut }, () => rng.normal() * 0.1);

/** [W_uᵀ; ·] [|u|+1, dOut]: the original kept weights (the ridge's anchor) */
function theta0(): Float64Array {
  const t = new Float64Array((u.length + 1) * dOut);
  for (let a = 0; a < u.length; a++) for (let o = 0; o < dOut; o++) t[a * dOut + o] = W[o * d + u[a]];
  return t;
}

describe("--ridge auto", () => {
  it("liar: held-out errors equal the row-level reference; the chosen α is their argmin (never worse than the default)", async () => {
    const all = noisy(rng, nFit + nHeld, d);
    const fit = rows(all, 0, nFit);
    const held = rows(all, nFit, nFit + nHeld);
    const x: ReconInput = {
      W,
      dOut,
      dIn: d,
      b,
      keep: u,
      stats: statsOf(all),
      alpha: "auto",
      split: { fit: statsOf(fit), held: statsOf(held) },
      where: "test",
    };
    const r = await RECONSTRUCTORS.liar.reconstruct(x);
    const search = r.ridgeSearch!;
    expect(search.alpha).toEqual(RIDGE_GRID);
    const Yfit = output(fit, W, b, dOut);
    const Yheld = output(held, W, b, dOut);
    // liar's ridge acts on the compensation Q: a ridge toward the original kept weights
    const ref = RIDGE_GRID.map((a) =>
      sqErr(held, u, ridgeLS(fit, u, Yfit, dOut, lambdaOf(fit, u, a), theta0()), Yheld, dOut),
    );
    RIDGE_GRID.forEach((_, k) => {
      expect(Math.abs(search.heldOutError[k] - ref[k]) / ref[k]).toBeLessThan(1e-6); // f32 weights
    });
    const best = ref.indexOf(Math.min(...ref));
    expect(r.alphaUsed).toBe(RIDGE_GRID[best]);
    expect(ref[best]).toBeLessThanOrEqual(ref[RIDGE_GRID.indexOf(RIDGE_DEFAULT)]);
    // the errors differ across the grid (the choice is not vacuous on this data)
    expect(Math.max(...ref) / Math.min(...ref)).toBeGreaterThan(1.01);
    // refitted on all rows with the chosen α
    const again = await RECONSTRUCTORS.liar.reconstruct({ ...x, alpha: RIDGE_GRID[best], split: undefined });
    expect(Array.from(r.W)).toEqual(Array.from(again.W));
    expect(Array.from(r.b!)).toEqual(Array.from(again.b!));
  });

  it("liar-seq: held-out errors equal the reference up to ‖Y_held‖²; never worse than the default α", async () => {
    const dense = noisy(rng, nFit + nHeld, d);
    const pruned = noisy(rng, nFit + nHeld, d, dense); // the pruned stream: the dense one perturbed
    const [pf, ph] = [rows(pruned, 0, nFit), rows(pruned, nFit, nFit + nHeld)];
    const [df, dh] = [rows(dense, 0, nFit), rows(dense, nFit, nFit + nHeld)];
    const x: ReconInput = {
      W,
      dOut,
      dIn: d,
      b,
      keep: u,
      stats: statsOf(pruned),
      cross: crossOf(pruned, dense),
      alpha: "auto",
      split: { fit: statsOf(pf), fitCross: crossOf(pf, df), held: statsOf(ph), heldCross: crossOf(ph, dh) },
      where: "test",
    };
    const r = await RECONSTRUCTORS["liar-seq"].reconstruct(x);
    const search = r.ridgeSearch!;
    const Yfit = output(df, W, b, dOut);
    const Yheld = output(dh, W, b, dOut);
    const ref = RIDGE_GRID.map((a) =>
      sqErr(ph, u, ridgeLS(pf, u, Yfit, dOut, lambdaOf(pf, u, a), theta0()), Yheld, dOut),
    );
    const yy = Yheld.reduce((s, v) => s + v * v, 0);
    RIDGE_GRID.forEach((_, k) => {
      expect(Math.abs(search.heldOutError[k] + yy - ref[k]) / ref[k]).toBeLessThan(1e-7);
    });
    const best = ref.indexOf(Math.min(...ref));
    expect(r.alphaUsed).toBe(RIDGE_GRID[best]);
    expect(ref[best]).toBeLessThanOrEqual(ref[RIDGE_GRID.indexOf(RIDGE_DEFAULT)]);
  });

  it("without held-out statistics (dense calibration, too few batches) auto uses the default α", async () => {
    const all = noisy(rng, 30, d);
    const x: ReconInput = { W, dOut, dIn: d, b, keep: u, stats: statsOf(all), alpha: "auto", where: "test" };
    const r = await RECONSTRUCTORS.liar.reconstruct(x);
    expect(r.alphaUsed).toBe(RIDGE_DEFAULT);
    expect(r.ridgeSearch).toBeUndefined();
  });
});
