/**
 * obsOrderV0: src/criteria/obs.ts before blocking (commit 705f0ed), verbatim but for the name of obsOrder — the
 * byte-parity reference of test/criteria/obs.test.ts and the "before" of bench/obs-scale.ts.
 */
import type { ObsInput, ObsOrder } from "../../src/criteria/obs.ts";
import { PareError } from "../../src/errors.ts";
import type { Ops } from "../../src/ops/index.ts";

/** Rows/columns `idx` of a row-major [?, ld] matrix: [|rows|, |cols|]. */
function sub2(M: Float64Array, ld: number, rows: ArrayLike<number>, cols: ArrayLike<number>): Float64Array {
  const out = new Float64Array(rows.length * cols.length);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i] * ld;
    for (let j = 0; j < cols.length; j++) out[i * cols.length + j] = M[r + cols[j]];
  }
  return out;
}

/** H = X̃ᵀX̃ (+ intercept or not) + λĨ and its inverse; retries with α×10 when H is not positive definite. */
async function inverseHessian(x: ObsInput): Promise<{ Hinv: Float64Array; D: number; alphaUsed: number }> {
  const D = x.intercept ? x.d + 1 : x.d;
  const all = Int32Array.from({ length: D }, (_, j) => j);
  const G = sub2(x.gram, x.d + 1, all, all); // [D, D]
  let diag = 0;
  for (let j = 0; j < x.d; j++) diag += G[j * D + j];
  const scale = x.d > 0 ? diag / x.d : 1;
  let a = x.alpha;
  for (let retry = 0; retry <= 8; retry++) {
    const H = G.slice();
    for (let j = 0; j < x.d; j++) H[j * D + j] += a * scale;
    const Linv = await x.ops.choleskyInverse(H, D); // [D, D] L⁻¹, H = L Lᵀ
    if (Linv?.every(Number.isFinite)) {
      const Hinv = await x.ops.gemm64(Linv, Linv, D, D, D, { transA: true }); // L⁻ᵀ L⁻¹
      return { Hinv, D, alphaUsed: a };
    }
    a = a > 0 ? a * 10 : 1e-6;
  }
  throw new PareError(
    "E_NUMERIC",
    `${x.where}: the Gram matrix stays singular even with a large ridge`,
    "use more calibration samples or a larger --ridge",
  );
}

/** tr(Wc M⁻¹ Wcᵀ) for Wc [dOut, g] given as Wcᵀ [g, dOut] and M [g, g] SPD (ORT solve for g > 1). */
async function groupCost(
  ops: Ops,
  M: Float64Array,
  g: number,
  WcT: Float64Array,
  dOut: number,
): Promise<number> {
  if (g === 1) {
    let s = 0;
    for (let i = 0; i < dOut; i++) s += WcT[i] * WcT[i];
    return s / M[0];
  }
  const Z = await ops.spdSolve(M, g, WcT, dOut); // [g, dOut] M⁻¹ Wcᵀ
  if (!Z) return Number.POSITIVE_INFINITY; // (H⁻¹)_GG is SPD in exact arithmetic; refuse to remove on failure
  let s = 0;
  for (let k = 0; k < Z.length; k++) s += Z[k] * WcT[k];
  return s;
}

/**
 * Remove position p (one channel): K = (H⁻¹)_{p,:} / (H⁻¹)_pp; H⁻¹ − (H⁻¹)_{:,p} K and W̃ − W̃_{:,p} K, written
 * straight into the compacted [D−1] arrays. A rank-1 update costs what the compacting copy costs (O(D²), one
 * pass), so it is fused with it here; the O(D³) work (the inverse) and rank-g updates run in ORT.
 */
function downdateOne(
  Hinv: Float64Array,
  Wt: Float64Array,
  D: number,
  dOut: number,
  p: number,
): [Float64Array, Float64Array] {
  const n = D - 1;
  const K = new Float64Array(D); // [D]
  const hpp = Hinv[p * D + p];
  for (let b = 0; b < D; b++) K[b] = Hinv[p * D + b] / hpp;
  const H2 = new Float64Array(n * n);
  for (let a = 0, ra = 0; a < D; a++) {
    if (a === p) continue;
    const ha = Hinv[a * D + p];
    const src = a * D;
    const dst = ra * n;
    for (let b = 0, cb = 0; b < D; b++) {
      if (b === p) continue;
      H2[dst + cb++] = Hinv[src + b] - ha * K[b];
    }
    ra++;
  }
  const W2 = new Float64Array(dOut * n);
  for (let i = 0; i < dOut; i++) {
    const wp = Wt[i * D + p];
    const src = i * D;
    const dst = i * n;
    for (let b = 0, cb = 0; b < D; b++) {
      if (b === p) continue;
      W2[dst + cb++] = Wt[src + b] - wp * K[b];
    }
  }
  return [H2, W2];
}

/** Remove the g positions of unit slot s: K = M⁻¹ (H⁻¹)_{G,:} [g, D]; the updates are ORT Gemms. */
async function downdateGroup(
  ops: Ops,
  Hinv: Float64Array,
  Wt: Float64Array,
  D: number,
  dOut: number,
  s: number,
  g: number,
  where: string,
): Promise<[Float64Array, Float64Array]> {
  const pos = Array.from({ length: g }, (_, j) => s * g + j);
  const allPos = Int32Array.from({ length: D }, (_, j) => j);
  const rows = Array.from({ length: dOut }, (_, i) => i);
  const M = sub2(Hinv, D, pos, pos); // [g, g]
  const R = sub2(Hinv, D, pos, allPos); // [g, D] (H⁻¹)_{G,:}
  const K = await ops.spdSolve(M, g, R, D); // [g, D]
  if (!K) throw new PareError("E_NUMERIC", `${where}: the OBS downdate failed`, "use a larger --ridge");
  const RT = sub2(Hinv, D, allPos, pos); // [D, g] (H⁻¹)_{:,G}
  const Wg = sub2(Wt, D, rows, pos); // [dOut, g]
  const Hn = await ops.f64.sub(Hinv, [D, D], RT, K, D, g, D); // H⁻¹ − (H⁻¹)_{:,G} K
  const Wn = await ops.f64.sub(Wt, [dOut, D], Wg, K, dOut, g, D); // W̃ − W̃_G K
  // drop G's rows and columns (now zero up to rounding)
  const keepPos = Int32Array.from({ length: D - g }, (_, j) => (j < s * g ? j : j + g));
  return [sub2(Hn, D, keepPos, keepPos), sub2(Wn, D, rows, keepPos)];
}

/**
 * Greedy structured OBS: remove units one at a time (cheapest post-compensation cost first) until `keep`
 * remain. Units are contiguous channel blocks of equal size; the intercept is never removed.
 */
export async function obsOrderV0(x: ObsInput): Promise<ObsOrder> {
  const n = Math.floor(x.d / x.unit);
  if (n * x.unit !== x.d) throw new Error(`obs: ${x.d} channels are not ${x.unit}-channel units`);
  const stop = Math.max(1, Math.min(n, x.keep));
  const { ops, dOut, unit: g } = x;
  const inv = await inverseHessian(x);
  let Hinv: Float64Array = inv.Hinv; // [D, D]
  let D = inv.D;
  const alphaUsed = inv.alphaUsed;
  // W̃ [dOut, D]: the consumer's weights (and bias column), compensated as units go
  let Wt: Float64Array = new Float64Array(dOut * D);
  for (let i = 0; i < dOut; i++) {
    for (let j = 0; j < x.d; j++) Wt[i * D + j] = x.W[i * x.d + j];
    if (x.intercept) Wt[i * D + x.d] = x.b ? x.b[i] : 0;
  }
  // active units in position order; unit k sits at positions [slot·g, (slot+1)·g) of the compacted matrices
  let active = Array.from({ length: n }, (_, k) => k);
  const cost = new Float64Array(n);
  const order: number[] = [];
  const costsOf = async (): Promise<Float64Array> => {
    const c = new Float64Array(active.length);
    if (g === 1) {
      // ‖W̃_{:,s}‖² / (H⁻¹)_ss, the column norms in one row-major pass
      for (let i = 0; i < dOut; i++)
        for (let s = 0; s < active.length; s++) {
          const w = Wt[i * D + s];
          c[s] += w * w;
        }
      for (let s = 0; s < active.length; s++) c[s] /= Hinv[s * D + s];
      return c;
    }
    for (let s = 0; s < active.length; s++) {
      const pos = Array.from({ length: g }, (_, j) => s * g + j);
      const M = sub2(Hinv, D, pos, pos); // [g, g] (H⁻¹)_GG
      const WcT = new Float64Array(g * dOut); // [g, dOut] W̃_Gᵀ
      for (let j = 0; j < g; j++) for (let i = 0; i < dOut; i++) WcT[j * dOut + i] = Wt[i * D + pos[j]];
      c[s] = await groupCost(ops, M, g, WcT, dOut);
    }
    return c;
  };
  for (;;) {
    const c = await costsOf();
    if (active.length <= stop) {
      c.forEach((v, s) => {
        cost[active[s]] = v;
      });
      break;
    }
    let best = 0;
    for (let s = 1; s < c.length; s++) if (c[s] < c[best]) best = s;
    cost[active[best]] = c[best];
    order.push(active[best]);
    if (g === 1) [Hinv, Wt] = downdateOne(Hinv, Wt, D, dOut, best);
    else [Hinv, Wt] = await downdateGroup(ops, Hinv, Wt, D, dOut, best, g, x.where);
    D -= g;
    active = active.filter((_, s) => s !== best);
  }
  const score = new Float64Array(n);
  order.forEach((k, t) => {
    score[k] = t;
  });
  const survivors = active.slice().sort((p, q) => cost[p] - cost[q] || p - q);
  survivors.forEach((k, r) => {
    score[k] = n + r;
  });
  return { order: Int32Array.from(order), cost, score, alphaUsed };
}
