/**
 * Reconstruction identities (docs/methods.md §4) on random X [n, d] and a random consumer W [dOut, d], b:
 *  (a) liar with α = 0 restores the dense output exactly when the removed channels are linear in the kept ones
 *      (plus a constant), and in general is the least-squares fit of the dense output from [X_u, 1];
 *      with α > 0 it is the ridge solution with λ = α·mean(diag(X_uᵀX_u)) and an unregularized intercept;
 *  (b) bias is the intercept-only regression: W' = W_u, b' = b + W_m·mean(X_m) (liar with Q ≡ 0);
 *  (c) none is the plain column slice;
 *  (d) liar-seq with identical pruned / dense streams equals liar (any α); with different streams it is the
 *      ridge regression of the dense output on the pruned inputs, regularized towards the unpruned weights;
 *  (e) a singular Gram (duplicated channel, constant channel) with α = 0 triggers the ridge retry.
 */
import { describe, expect, it } from "vitest";
import type { TapStats } from "../../src/calib/stats.ts";
import { complement, RECONSTRUCTORS, type ReconInput } from "../../src/reconstruct/index.ts";
import { Rng } from "../helpers/rng.ts";
import { gaussSolve } from "../reference/pipeline.ts";

interface Data {
  n: number;
  d: number;
  X: Float64Array; // [n, d]
}

function randData(rng: Rng, n: number, d: number): Data {
  const X = new Float64Array(n * d);
  for (let t = 0; t < n; t++)
    for (let j = 0; j < d; j++) X[t * d + j] = rng.normal() * (0.5 + (j % 3)) + 0.3 * (j % 5);
  return { n, d, X };
}

/** TapStats with the Gram of [X, 1], all by plain loops */
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

/** X̃_pᵀ X̃_d by plain loops */
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

/** Y [n, dOut] = X[:, cols] Wᵀ + b, W [dOut, |cols|] */
function output(
  data: Data,
  cols: ArrayLike<number>,
  W: ArrayLike<number>,
  dOut: number,
  b?: ArrayLike<number>,
): Float64Array {
  const { n, d, X } = data;
  const k = cols.length;
  const Y = new Float64Array(n * dOut);
  for (let t = 0; t < n; t++)
    for (let i = 0; i < dOut; i++) {
      let s = b ? b[i] : 0;
      for (let j = 0; j < k; j++) s += X[t * d + cols[j]] * W[i * k + j];
      Y[t * dOut + i] = s;
    }
  return Y;
}

function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  expect(got.length).toBe(want.length);
  let e = 0;
  let m = 0;
  for (let i = 0; i < want.length; i++) {
    e = Math.max(e, Math.abs(got[i] - want[i]));
    m = Math.max(m, Math.abs(want[i]));
  }
  return e / Math.max(m, 1e-300);
}

const all = (d: number) => Int32Array.from({ length: d }, (_, j) => j);

/**
 * Direct ridge least squares from the rows: Θ = argmin ‖[Xin_u, 1] Θ − Y‖² + λ‖Ĩ(Θ − Θ0)‖², Ĩ = I with a 0 on
 * the intercept, solved by Gaussian elimination on the normal equations. Returns [|u|+1, dOut].
 */
function ridgeLS(
  xin: Data,
  u: ArrayLike<number>,
  Y: Float64Array,
  dOut: number,
  lambda: number,
  theta0?: Float64Array,
): Float64Array {
  const k = u.length + 1;
  const A = new Float64Array(k * k);
  const B = new Float64Array(k * dOut);
  const row = (t: number, a: number) => (a === u.length ? 1 : xin.X[t * xin.d + u[a]]);
  for (let t = 0; t < xin.n; t++)
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

/** W [dOut, |u|] and b from Θ [|u|+1, dOut] */
function fromTheta(Th: Float64Array, ku: number, dOut: number) {
  const W = new Float64Array(dOut * ku);
  const b = new Float64Array(dOut);
  for (let i = 0; i < dOut; i++) {
    for (let j = 0; j < ku; j++) W[i * ku + j] = Th[j * dOut + i];
    b[i] = Th[ku * dOut + i];
  }
  return { W, b };
}

function lambdaOf(st: TapStats, u: ArrayLike<number>, alpha: number): number {
  const D = st.d + 1;
  let s = 0;
  for (let j = 0; j < u.length; j++) s += st.gram![u[j] * D + u[j]];
  return alpha * (s / u.length);
}

const rng = new Rng(40);
const n = 150;
const d = 10;
const dOut = 6;
const W = rng.randn(dOut * d, 0.4);
const bias = rng.randn(dOut, 0.1);
const keep = Int32Array.from([0, 2, 3, 5, 7, 8]);
const removed = complement(keep, d);

function input(data: Data, extra: Partial<ReconInput> = {}): ReconInput {
  return { W, dOut, dIn: d, b: bias, keep, stats: statsOf(data), alpha: 0, where: "test layer", ...extra };
}

describe("complement", () => {
  it("lists the indices not kept, in order", async () => {
    expect(Array.from(complement(Int32Array.from([0, 2, 3, 5, 7, 8]), 10))).toEqual([1, 4, 6, 9]);
    expect(Array.from(complement(all(4), 4))).toEqual([]);
    expect(Array.from(complement(new Int32Array(0), 3))).toEqual([0, 1, 2]);
  });
});

describe("liar", () => {
  it("(a) α = 0 restores X Wᵀ + b exactly when X_m = X_u A + c", async () => {
    const data = randData(new Rng(41), n, d);
    const A = new Rng(42).randn(keep.length * removed.length);
    const c = new Rng(43).randn(removed.length);
    for (let t = 0; t < n; t++)
      removed.forEach((m, k) => {
        let s = c[k];
        keep.forEach((u, j) => {
          s += data.X[t * d + u] * A[j * removed.length + k];
        });
        data.X[t * d + m] = s;
      });
    const r = await RECONSTRUCTORS.liar.reconstruct(input(data));
    expect(r.retries).toBe(0);
    expect(r.alphaUsed).toBe(0);
    expect(r.W.length).toBe(dOut * keep.length);
    const dense = output(data, all(d), W, dOut, bias);
    const err = relErr(output(data, keep, r.W, dOut, r.b), dense);
    expect(err).toBeLessThan(1e-6);
    // while plain removal is far off
    expect(
      relErr(output(data, keep, (await RECONSTRUCTORS.none.reconstruct(input(data))).W, dOut, bias), dense),
    ).toBeGreaterThan(0.1);
  });

  it("α = 0 is the least-squares fit of the dense output from [X_u, 1] (generic X)", async () => {
    const data = randData(new Rng(44), n, d);
    const r = await RECONSTRUCTORS.liar.reconstruct(input(data));
    const Y = output(data, all(d), W, dOut, bias);
    const want = fromTheta(ridgeLS(data, keep, Y, dOut, 0), keep.length, dOut);
    expect(relErr(r.W, want.W)).toBeLessThan(1e-6);
    expect(relErr(r.b!, want.b)).toBeLessThan(1e-6);
  });

  it("α > 0 is the ridge solution with λ = α·mean(diag(X_uᵀX_u)), the intercept unregularized", async () => {
    const data = randData(new Rng(45), n, d);
    for (const alpha of [0.01, 0.5]) {
      const inp = input(data, { alpha });
      const r = await RECONSTRUCTORS.liar.reconstruct(inp);
      expect(r.alphaUsed).toBe(alpha);
      expect(r.retries).toBe(0);
      // ridge on the update: Θ = Θ_u + (A + λĨ)⁻¹ X̃_uᵀ X_m W_mᵀ  ⇔  regularize Θ towards [W_uᵀ; bᵀ]
      const Y = output(data, all(d), W, dOut, bias);
      const theta0 = new Float64Array((keep.length + 1) * dOut);
      keep.forEach((u, j) => {
        for (let i = 0; i < dOut; i++) theta0[j * dOut + i] = W[i * d + u];
      });
      for (let i = 0; i < dOut; i++) theta0[keep.length * dOut + i] = bias[i];
      const want = fromTheta(
        ridgeLS(data, keep, Y, dOut, lambdaOf(inp.stats!, keep, alpha), theta0),
        keep.length,
        dOut,
      );
      expect(relErr(r.W, want.W)).toBeLessThan(1e-6);
      expect(relErr(r.b!, want.b)).toBeLessThan(1e-6);
    }
  });

  it("keeping every channel returns the consumer unchanged (no bias is created)", async () => {
    const data = randData(new Rng(46), 30, d);
    const r = await RECONSTRUCTORS.liar.reconstruct(input(data, { keep: all(d), b: undefined }));
    expect(Array.from(r.W)).toEqual(Array.from(W));
    expect(r.b).toBeUndefined();
  });

  it("a removed channel that is identically zero leaves W_u and b unchanged", async () => {
    const data = randData(new Rng(47), 60, d);
    for (let t = 0; t < 60; t++) for (const m of removed) data.X[t * d + m] = 0;
    const r = await RECONSTRUCTORS.liar.reconstruct(input(data, { alpha: 0.01 }));
    expect(Array.from(r.W)).toEqual(Array.from((await RECONSTRUCTORS.none.reconstruct(input(data))).W));
    expect(Array.from(r.b!)).toEqual(Array.from(bias));
  });

  it("NaN in the statistics is E_NUMERIC", async () => {
    const data = randData(new Rng(48), 20, d);
    const st = statsOf(data);
    st.sum[3] = Number.NaN;
    for (const name of ["bias", "liar"] as const) {
      await expect(RECONSTRUCTORS[name].reconstruct(input(data, { stats: st }))).rejects.toThrow(
        expect.objectContaining({ code: "E_NUMERIC" }),
      );
    }
  });
});

describe("bias", () => {
  it("(b) W' = W_u and b' = b + W_m·mean(X_m): the intercept-only regression of the dense output", async () => {
    const data = randData(new Rng(50), n, d);
    const r = await RECONSTRUCTORS.bias.reconstruct(input(data));
    expect(Array.from(r.W)).toEqual(Array.from((await RECONSTRUCTORS.none.reconstruct(input(data))).W));
    // argmin_c ‖1cᵀ + X_u W_uᵀ − Y‖² = column means of Y − X_u W_uᵀ
    const Y = output(data, all(d), W, dOut, bias);
    const Yu = output(data, keep, r.W, dOut);
    const c = new Float64Array(dOut);
    for (let t = 0; t < n; t++)
      for (let i = 0; i < dOut; i++) c[i] += (Y[t * dOut + i] - Yu[t * dOut + i]) / n;
    expect(relErr(r.b!, c)).toBeLessThan(1e-6);
    // = liar with Q forced to 0: b + W_m p with p = mean(X_m)
    const p = Array.from(removed, (m) => {
      let s = 0;
      for (let t = 0; t < n; t++) s += data.X[t * d + m];
      return s / n;
    });
    const want = Float64Array.from(
      { length: dOut },
      (_, i) => bias[i] + removed.reduce((s, m, k) => s + W[i * d + m] * p[k], 0),
    );
    expect(relErr(r.b!, want)).toBeLessThan(1e-6);
    // and the mean output over the calibration rows is restored exactly
    const Yb = output(data, keep, r.W, dOut, r.b);
    for (let i = 0; i < dOut; i++) {
      let a = 0;
      let e = 0;
      for (let t = 0; t < n; t++) {
        a += Yb[t * dOut + i];
        e += Y[t * dOut + i];
      }
      expect(Math.abs(a - e) / n).toBeLessThan(1e-6);
    }
  });

  it("creates a bias when the consumer had none; keeping everything keeps b", async () => {
    const data = randData(new Rng(51), 40, d);
    const r = await RECONSTRUCTORS.bias.reconstruct(input(data, { b: undefined }));
    expect(r.b).toBeDefined();
    expect(r.b!.length).toBe(dOut);
    const same = await RECONSTRUCTORS.bias.reconstruct(input(data, { keep: all(d) }));
    expect(Array.from(same.b!)).toEqual(Array.from(bias));
  });
});

describe("none", () => {
  it("(c) is the plain column slice, bias copied (or absent), no statistics needed", async () => {
    const r = await RECONSTRUCTORS.none.reconstruct({ W, dOut, dIn: d, b: bias, keep, alpha: 0, where: "t" });
    for (let i = 0; i < dOut; i++)
      keep.forEach((u, j) => {
        expect(r.W[i * keep.length + j]).toBe(W[i * d + u]);
      });
    expect(Array.from(r.b!)).toEqual(Array.from(bias));
    expect(r.b).not.toBe(bias);
    expect(r.retries).toBe(0);
    expect(
      (await RECONSTRUCTORS.none.reconstruct({ W, dOut, dIn: d, keep, alpha: 0, where: "t" })).b,
    ).toBeUndefined();
    expect(RECONSTRUCTORS.none.needs).toEqual([]);
  });

  it("declared needs: bias moments, liar the Gram, liar-seq the Gram and the cross-Gram", async () => {
    expect(RECONSTRUCTORS.bias.needs).toContain("moments");
    expect(RECONSTRUCTORS.liar.needs).toContain("gram");
    expect(RECONSTRUCTORS["liar-seq"].needs).toContain("gram");
    expect(RECONSTRUCTORS["liar-seq"].needsCross).toBe(true);
    expect(RECONSTRUCTORS.liar.needsCross).toBe(false);
  });
});

describe("liar-seq", () => {
  it("(d) identical pruned and dense streams: equals liar (α = 0 and α = 0.01)", async () => {
    const data = randData(new Rng(60), n, d);
    for (const alpha of [0, 0.01]) {
      const seq = await RECONSTRUCTORS["liar-seq"].reconstruct(
        input(data, { alpha, cross: statsOf(data).gram }),
      );
      const liar = await RECONSTRUCTORS.liar.reconstruct(input(data, { alpha }));
      expect(relErr(seq.W, liar.W)).toBeLessThan(1e-6);
      expect(relErr(seq.b!, liar.b!)).toBeLessThan(1e-6);
      expect(seq.alphaUsed).toBe(alpha);
    }
  });

  it("different streams: the ridge regression of X^d Wᵀ + b on [X^p_u, 1], regularized towards [W_u; b]", async () => {
    const p = randData(new Rng(61), n, d);
    const dn = randData(new Rng(62), n, d);
    // the dense stream is the pruned one plus drift
    for (let i = 0; i < dn.X.length; i++) dn.X[i] = p.X[i] + 0.3 * dn.X[i];
    for (const alpha of [0, 0.01]) {
      const inp = input(p, { alpha, cross: crossOf(p, dn) });
      const r = await RECONSTRUCTORS["liar-seq"].reconstruct(inp);
      const Y = output(dn, all(d), W, dOut, bias);
      const theta0 = new Float64Array((keep.length + 1) * dOut);
      keep.forEach((u, j) => {
        for (let i = 0; i < dOut; i++) theta0[j * dOut + i] = W[i * d + u];
      });
      for (let i = 0; i < dOut; i++) theta0[keep.length * dOut + i] = bias[i];
      const want = fromTheta(
        ridgeLS(p, keep, Y, dOut, lambdaOf(inp.stats!, keep, alpha), theta0),
        keep.length,
        dOut,
      );
      expect(relErr(r.W, want.W)).toBeLessThan(1e-6);
      expect(relErr(r.b!, want.b)).toBeLessThan(1e-6);
    }
  });

  it("keeping every channel, a dense stream linear in the pruned one (X^d = X^p A + c) is corrected exactly", async () => {
    const p = randData(new Rng(63), n, d);
    const A = new Rng(64).randn(d * d, 0.3);
    const c = new Rng(65).randn(d);
    const dn: Data = { n, d, X: new Float64Array(n * d) };
    for (let t = 0; t < n; t++)
      for (let k = 0; k < d; k++) {
        let s = c[k] + p.X[t * d + k];
        for (let j = 0; j < d; j++) s += p.X[t * d + j] * A[j * d + k];
        dn.X[t * d + k] = s;
      }
    const r = await RECONSTRUCTORS["liar-seq"].reconstruct(input(p, { keep: all(d), cross: crossOf(p, dn) }));
    const err = relErr(output(p, all(d), r.W, dOut, r.b), output(dn, all(d), W, dOut, bias));
    expect(err).toBeLessThan(1e-6);
  });
});

describe("(e) singular Gram with α = 0", () => {
  /** channel 4 duplicates channel 1, channel 2 is constant (collinear with the intercept) */
  function singularData(seed: number): Data {
    const r = new Rng(seed);
    const data = randData(r, 50, 7);
    const c = r.normal() * 3;
    for (let t = 0; t < 50; t++) {
      data.X[t * 7 + 4] = data.X[t * 7 + 1];
      data.X[t * 7 + 2] = c;
    }
    return data;
  }
  const W7 = new Rng(70).randn(3 * 7);

  for (const kept of [
    [0, 1, 3, 4], // duplicated pair kept
    [0, 2, 3, 5], // constant channel kept
    [1, 2, 4, 6], // both
  ]) {
    it(`keep [${kept}]: the Cholesky solve fails, α is raised (retries > 0) and the fit stays the least-squares one`, async () => {
      const data = singularData(0);
      const u = Int32Array.from(kept);
      const r = await RECONSTRUCTORS.liar.reconstruct({
        W: W7,
        dOut: 3,
        dIn: 7,
        keep: u,
        stats: statsOf(data),
        alpha: 0,
        where: "t",
      });
      expect(r.retries).toBeGreaterThan(0);
      expect(r.alphaUsed).toBeGreaterThan(0);
      expect(r.alphaUsed).toBeLessThan(1e-3);
      expect(r.W.every(Number.isFinite) && r.b!.every(Number.isFinite)).toBe(true);
      // the fitted output equals the least-squares fit on a full-rank subset of the kept channels
      const basis = kept.filter((j) => j !== 2 && !(j === 4 && kept.includes(1)));
      const Y = output(data, all(7), W7, 3);
      const Th = ridgeLS(data, basis, Y, 3, 0);
      const ls = fromTheta(Th, basis.length, 3);
      expect(relErr(output(data, u, r.W, 3, r.b), output(data, basis, ls.W, 3, ls.b))).toBeLessThan(1e-4);
    });
  }

  // BUG (src/tensor/linalg.ts, cholesky): the positive-definiteness test `!(d > 0)` is absolute. For an exactly
  // singular Gram, rounding often leaves a tiny positive pivot (d ≈ 1e-13, L_jj ≈ 3e-7) instead of ≤ 0, so no
  // retry happens and the solve divides by it: about 1 case in 5 passes
  // unnoticed (first: seed 1, keep [0,2,3,5]); over 400 such cases weights came out up to ~10× larger than
  // normal. A relative test (d ≤ ε·A_jj) would catch them.
  it("α = 0 and an exactly singular Gram trigger the retry in every one of 20 random cases", async () => {
    for (let seed = 0; seed < 20; seed++) {
      const data = singularData(seed);
      for (const kept of [
        [0, 1, 3, 4],
        [0, 2, 3, 5],
        [1, 2, 4, 6],
      ]) {
        const r = await RECONSTRUCTORS.liar.reconstruct({
          W: W7,
          dOut: 3,
          dIn: 7,
          keep: Int32Array.from(kept),
          stats: statsOf(data),
          alpha: 0,
          where: "t",
        });
        expect(r.retries, `seed ${seed} keep [${kept}]`).toBeGreaterThan(0);
      }
    }
  });

  it("a Gram that stays singular even with a large ridge is E_NUMERIC", async () => {
    // all-zero kept channels and a zero count: nothing can make the system definite
    const st: TapStats = {
      d: 3,
      n: 0,
      sum: new Float64Array(3),
      sumsq: new Float64Array(3),
      gram: new Float64Array(16),
    };
    await expect(
      RECONSTRUCTORS.liar.reconstruct({
        W: new Float32Array(6),
        dOut: 2,
        dIn: 3,
        keep: Int32Array.from([0, 1]),
        stats: st,
        alpha: 0,
        where: "t",
      }),
    ).rejects.toThrow(expect.objectContaining({ code: "E_NUMERIC" }));
  });
});
