/**
 * Structured Optimal Brain Surgeon (ZipLM, Kurtić et al. 2023; SlimGPT, Ling et al. 2024): which units of a
 * consumer's input (o_proj: KV groups, down_proj: FFN channels) to remove so that what remains after the optimal
 * least-squares compensation of the kept inputs is smallest.
 *
 * The consumer computes Y = X̃ W̃ᵀ with X̃ = [X, 1] [N, D] and W̃ = [W, b] [dOut, D] (D = d + 1; without an
 * intercept, D = d and X̃ = X). With H = X̃ᵀX̃ + λĨ (Ĩ: identity without the intercept; λ = α·mean(diag(XᵀX)))
 * the error of weights W' is f(W') = tr((W' − W̃) H (W' − W̃)ᵀ) = ‖X̃(W' − W̃)ᵀ‖² + λ‖(W' − W̃)_reg‖². Removing the
 * input channels G (W'_G = 0) and choosing the kept W' optimally costs
 *
 *     cost(G) = tr(W̃_G [(H⁻¹)_GG]⁻¹ W̃_Gᵀ)                      // W̃_G [dOut, |G|], (H⁻¹)_GG [|G|, |G|]
 *
 * and the optimal kept weights are W̃ − W̃_G [(H⁻¹)_GG]⁻¹ (H⁻¹)_{G,:} — exactly `liar`'s reconstruction
 * W_u + W_m Qᵀ with Q = (H_uu)⁻¹ X̃_uᵀX_m (same λ). Greedy (ZipLM's procedure): remove the cheapest unit, apply
 * that compensation to W̃ and downdate the inverse to the kept set,
 *
 *     H⁻¹ ← H⁻¹ − (H⁻¹)_{:,G} [(H⁻¹)_GG]⁻¹ (H⁻¹)_{G,:}            // = (H_keep)⁻¹ on the kept rows / columns
 *
 * then drop G's rows and columns, and repeat. The costs of later steps are measured on the compensated
 * weights, so the set that survives is the one whose liar reconstruction the greedy path predicts.
 *
 * Float64 throughout; H⁻¹ from the blocked Cholesky inverse (O(D³)) and the rank-g updates of KV groups are
 * ONNX Runtime Gemms (src/ops); a single channel's rank-1 update is fused with the compacting copy in JavaScript
 * (one O(D²) pass, what an ORT call would cost in copies alone), written in place into the same buffers.
 *
 * One channel at a time costs O(D²) per step, O(D³) in JavaScript for a whole path (a 1.1B model's FFN,
 * D = 5632, ~30 min per module). So while more than `exactBelow` units are active, the path is blocked: the
 * B = ⌈active / blockDivisor⌉ units of smallest current single-unit cost (never past the stop, nor below
 * `exactBelow`) go at once, with ONE rank-B downdate in ORT. With M = (H⁻¹)_BB = L Lᵀ (Cholesky), P = L⁻¹ (H⁻¹)_{B,:}
 * and Q = L⁻¹ W̃_Bᵀ,
 *
 *     H⁻¹ ← H⁻¹ − Pᵀ P,   W̃ ← W̃ − Qᵀ P                           // = the formulas above with G = B
 *
 * restricted to the kept rows / columns. The block's units are recorded cheapest (single cost) first, and each
 * records its exact incremental cost along that order, ‖row t of Q‖² (removing B one after another in that
 * order has exactly these costs, summing to cost(B)): the recorded costs stay the true step costs of the path,
 * and their sum is the reconstruction error of the kept set, as on the exact path. Below `exactBelow` active
 * units the path is the exact greedy one; a module with at most `exactBelow` units never blocks (bit for bit
 * the path of the one-at-a-time implementation, when D ≥ dOut — see below).
 *
 * The exact single-channel steps need W̃ only through its column norms ‖W̃_{:,s}‖² and the rank-1 update, so
 * when the module is narrower than its output where the exact tail starts (D < dOut: the tail of a wide FFN,
 * 1024 positions against a hidden size of 2048 and more) they run on A = W̃ᵀW̃ [D, D] instead (one ORT Gemm then;
 * decided once, so a module as wide as its output stays on W̃ to the end): each step
 * updates H⁻¹ and A, 2·D² instead of D² + dOut·D, and the costs are diag(A) / diag(H⁻¹). The same path up to
 * rounding (the costs' relative error grows as ‖W̃_{:,s}‖ shrinks relative to the weights: ≈ 1e-16 · ‖w‖²/‖w'‖²).
 */
import { PareError } from "../errors.ts";
import type { Ops } from "../ops/index.ts";

export interface ObsInput {
  /** X̃ᵀX̃ [(d+1)·(d+1)] row-major, X̃ = [X, 1] (the Gram pare collects for liar) */
  gram: Float64Array;
  /** consumer input width */
  d: number;
  W: Float32Array; // [dOut, d]
  dOut: number;
  b?: Float32Array; // [dOut]
  /** input channels per unit: unit k owns channels [k·unit, (k+1)·unit) */
  unit: number;
  /** fit an intercept (the consumer may hold / gain a bias) */
  intercept: boolean;
  /** ridge α: λ = α · mean(diag(XᵀX)) */
  alpha: number;
  /** stop when this many units remain (≥ 1) */
  keep: number;
  /**
   * blocked removal while more than this many units are active (default OBS_EXACT_BELOW = 1024: every module
   * with ≤ 1024 units takes the exact one-at-a-time path); Infinity = always exact
   */
  exactBelow?: number;
  /** blocked steps remove ⌈active / blockDivisor⌉ units (default OBS_BLOCK_DIVISOR = 32) */
  blockDivisor?: number;
  /**
   * exact single-channel steps on A = W̃ᵀW̃ [D, D] instead of W̃ [dOut, D] (see obsOrder): true / false force it,
   * undefined = when the module is narrower than its output (D < dOut), where A is the smaller
   */
  weightGram?: boolean;
  ops: Ops;
  where: string;
}

export interface ObsOrder {
  /** removed units, in removal order */
  order: Int32Array;
  /** [n] each unit's OBS cost when it was removed (kept units: the cost of removing it next) */
  cost: Float64Array;
  /** [n] higher = keep: a removed unit scores its removal step, a kept one n + its rank by cost */
  score: Float64Array;
  /** the ridge α used (×10 per failed factorization) */
  alphaUsed: number;
  /** units removed at each step of the path, in order (1 = an exact step; obsPathWork predicts it) */
  steps?: number[];
}

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

/** Default `exactBelow`: modules with at most this many units take the exact one-at-a-time path. */
export const OBS_EXACT_BELOW = 1024;
/** Default `blockDivisor`: a blocked step removes ⌈active / 32⌉ units. */
export const OBS_BLOCK_DIVISOR = 32;

/**
 * Remove position p (one channel): K = (H⁻¹)_{p,:} / (H⁻¹)_pp; H⁻¹ − (H⁻¹)_{:,p} K and W̃ − W̃_{:,p} K, written
 * compacted ([D−1]) IN PLACE into the leading entries of the same buffers (every write goes to an index at or
 * before the one just read, so nothing is overwritten before it is read). A rank-1 update costs what the
 * compacting copy costs (O(D²), one pass), so it is fused with it here; the O(D³) work (the inverse) and rank-g
 * updates run in ORT. The arithmetic is that of a copy into fresh arrays, bit for bit. `norms` [D−1, zeros]
 * receives the squared norms of the new columns, summed over the rows in order (the same bits as a
 * separate pass over the result: the next step's costs without reading W̃ again).
 */
function downdateOne(
  Hinv: Float64Array,
  Wt: Float64Array,
  D: number,
  dOut: number,
  p: number,
  norms: Float64Array,
): void {
  const n = D - 1;
  const K = new Float64Array(D); // [D]
  const hpp = Hinv[p * D + p];
  for (let b = 0; b < D; b++) K[b] = Hinv[p * D + b] / hpp;
  for (let a = 0, ra = 0; a < D; a++) {
    if (a === p) continue;
    const ha = Hinv[a * D + p];
    const src = a * D;
    const dst = ra * n;
    for (let b = 0, cb = 0; b < D; b++) {
      if (b === p) continue;
      Hinv[dst + cb++] = Hinv[src + b] - ha * K[b];
    }
    ra++;
  }
  for (let i = 0; i < dOut; i++) {
    const wp = Wt[i * D + p];
    const src = i * D;
    const dst = i * n;
    for (let b = 0, cb = 0; b < D; b++) {
      if (b === p) continue;
      const v = Wt[src + b] - wp * K[b];
      Wt[dst + cb] = v;
      norms[cb++] += v * v;
    }
  }
}

/**
 * downdateOne on A = W̃ᵀW̃ [D, D] instead of W̃: with W̃' = W̃ − W̃_{:,p} K, A' = A − K a_pᵀ − a_p Kᵀ + a_pp K Kᵀ
 * (a_p = A_{:,p}), i.e. A'_ab = A_ab − K_a a_pb − (a_pa − a_pp K_a) K_b; both H⁻¹ and A compacted in place as
 * there. O(D²) per step whatever dOut is; the next costs need only diag(A) (‖W̃_{:,s}‖² = A_ss).
 */
function downdateOneGram(Hinv: Float64Array, A: Float64Array, D: number, p: number): void {
  const n = D - 1;
  const K = new Float64Array(D); // [D]
  const hpp = Hinv[p * D + p];
  for (let b = 0; b < D; b++) K[b] = Hinv[p * D + b] / hpp;
  const ap = A.slice(p * D, p * D + D); // [D] row p = column p (A symmetric), before row p is overwritten
  const app = ap[p];
  for (let a = 0, ra = 0; a < D; a++) {
    if (a === p) continue;
    const ha = Hinv[a * D + p];
    const ka = K[a];
    const t = ap[a] - app * ka;
    const src = a * D;
    const dst = ra * n;
    for (let b = 0, cb = 0; b < D; b++) {
      if (b === p) continue;
      Hinv[dst + cb] = Hinv[src + b] - ha * K[b];
      A[dst + cb++] = A[src + b] - ka * ap[b] - t * K[b];
    }
    ra++;
  }
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
  const Hn = await ops.f64.sub(Hinv.subarray(0, D * D), [D, D], RT, K, D, g, D); // H⁻¹ − (H⁻¹)_{:,G} K
  const Wn = await ops.f64.sub(Wt.subarray(0, dOut * D), [dOut, D], Wg, K, dOut, g, D); // W̃ − W̃_G K
  // drop G's rows and columns (now zero up to rounding)
  const keepPos = Int32Array.from({ length: D - g }, (_, j) => (j < s * g ? j : j + g));
  return [sub2(Hn, D, keepPos, keepPos), sub2(Wn, D, rows, keepPos)];
}

/** Mᵀ of a row-major [rows, cols] matrix. */
function transpose(M: Float64Array, rows: number, cols: number): Float64Array {
  const T = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) T[j * rows + i] = M[i * cols + j];
  return T;
}

/**
 * Remove the positions `pos` (any set, in the order given) of H⁻¹ [D, D] and W̃ [dOut, D] at once: with
 * M = (H⁻¹)_BB = L Lᵀ, P = L⁻¹ (H⁻¹)_{B,keep} and Q = L⁻¹ W̃_Bᵀ, the kept part of H⁻¹ − (H⁻¹)_{:,B} M⁻¹ (H⁻¹)_{B,:}
 * is (H⁻¹)_{keep,keep} − PᵀP and that of W̃ − W̃_B M⁻¹ (H⁻¹)_{B,:} is W̃_{:,keep} − QᵀP (ORT Gemms, float64).
 * Returns the compacted [D−|B|] arrays (kept positions in their order) and inc[t] = ‖row t of Q‖², the cost of
 * removing pos[t] after pos[0..t) (their sum is tr(W̃_B M⁻¹ W̃_Bᵀ)); null when M is not numerically positive
 * definite. Only the leading D² / dOut·D entries of the buffers are read; they are not modified.
 */
export async function downdateBlock(
  ops: Ops,
  Hinv: Float64Array,
  Wt: Float64Array,
  D: number,
  dOut: number,
  pos: ArrayLike<number>,
): Promise<{ Hinv: Float64Array; Wt: Float64Array; inc: Float64Array } | null> {
  const b = pos.length;
  const gone = new Uint8Array(D);
  for (let t = 0; t < b; t++) gone[pos[t]] = 1;
  const keep: number[] = [];
  for (let j = 0; j < D; j++) if (!gone[j]) keep.push(j);
  const k = keep.length;
  if (b === 0 || k === 0 || k + b !== D)
    throw new Error(`obs: a block of ${b} distinct positions out of ${D}`);
  const rows = Array.from({ length: dOut }, (_, i) => i);
  const Linv = await ops.choleskyInverse(sub2(Hinv, D, pos, pos), b); // [b, b] L⁻¹ of (H⁻¹)_BB
  if (!Linv?.every(Number.isFinite)) return null;
  const WBt = new Float64Array(b * dOut); // [b, dOut] W̃_Bᵀ
  for (let t = 0; t < b; t++) for (let i = 0; i < dOut; i++) WBt[t * dOut + i] = Wt[i * D + pos[t]];
  const nP = await ops.f64.neg(Linv, sub2(Hinv, D, pos, keep), b, b, k); // [b, k] −P
  const nQ = await ops.f64.neg(Linv, WBt, b, b, dOut); // [b, dOut] −Q
  const inc = new Float64Array(b);
  for (let t = 0; t < b; t++) {
    let s = 0;
    for (let i = 0; i < dOut; i++) s += nQ[t * dOut + i] * nQ[t * dOut + i];
    inc[t] = s;
  }
  const H2 = await ops.f64.sub(sub2(Hinv, D, keep, keep), [k, k], transpose(nP, b, k), nP, k, b, k); // − PᵀP
  const W2 = await ops.f64.sub(sub2(Wt, D, rows, keep), [dOut, k], transpose(nQ, b, dOut), nP, dOut, b, k); // − QᵀP
  if (!inc.every(Number.isFinite)) return null;
  return { Hinv: H2, Wt: W2, inc };
}

function blockOption(v: number | undefined, dflt: number, name: string, where: string, min: number): number {
  const r = v ?? dflt;
  if (!(r >= min) || (r !== Number.POSITIVE_INFINITY && !Number.isInteger(r)))
    throw new PareError(
      "E_USAGE",
      `${where}: obs ${name} must be an integer ≥ ${min} (or Infinity), got ${v}`,
      `pass ${name} ≥ ${min}, or leave it unset for the default ${dflt}`,
    );
  return r;
}

/**
 * Greedy structured OBS: remove units one at a time (cheapest post-compensation cost first) until `keep`
 * remain, in blocks of ⌈active / blockDivisor⌉ while more than `exactBelow` are active (see the header). Units
 * are contiguous channel blocks of equal size; the intercept is never removed.
 */
export async function obsOrder(x: ObsInput): Promise<ObsOrder> {
  const n = Math.floor(x.d / x.unit);
  if (n * x.unit !== x.d) throw new Error(`obs: ${x.d} channels are not ${x.unit}-channel units`);
  const stop = Math.max(1, Math.min(n, x.keep));
  const exactBelow = blockOption(x.exactBelow, OBS_EXACT_BELOW, "exactBelow", x.where, 0);
  const divisor = blockOption(x.blockDivisor, OBS_BLOCK_DIVISOR, "blockDivisor", x.where, 1);
  const { ops, dOut, unit: g } = x;
  const inv = await inverseHessian(x);
  // H⁻¹ [D, D] and W̃ [dOut, D] live in the leading entries of these buffers (single-channel steps compact them
  // in place, the others return new arrays)
  let Hinv: Float64Array = inv.Hinv;
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
  const steps: number[] = [];
  // exact single-channel steps: A = W̃ᵀW̃ replaces W̃ once made (weightGram); else the column norms of W̃ that
  // the last downdateOne summed
  let A: Float64Array | undefined;
  let tailStarted = false;
  let norms: Float64Array | undefined;
  const costsOf = async (): Promise<Float64Array> => {
    const c = new Float64Array(active.length);
    if (g === 1) {
      // ‖W̃_{:,s}‖² / (H⁻¹)_ss: from diag(A), from the fused norms, or the column norms in one row-major pass
      if (A) {
        // A_ss comes from subtractions: ≥ 0 in exact arithmetic, clamped so rounding cannot make a cost negative
        for (let s = 0; s < active.length; s++) c[s] = Math.max(0, A[s * D + s]) / Hinv[s * D + s];
        return c;
      }
      if (norms) c.set(norms.subarray(0, active.length));
      else
        for (let i = 0; i < dOut; i++)
          for (let s = 0; s < active.length; s++) {
            const w = Wt[i * D + s];
            c[s] += w * w;
          }
      norms = undefined;
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
    const m = active.length;
    if (m <= stop) {
      c.forEach((v, s) => {
        cost[active[s]] = v;
      });
      break;
    }
    // blocked step: the nb cheapest slots by their current single-unit costs (ties: lower slot first)
    const nb = m > exactBelow ? Math.min(Math.ceil(m / divisor), m - Math.max(stop, exactBelow)) : 1;
    if (nb > 1) {
      const slots = Array.from({ length: m }, (_, s) => s)
        .sort((p, q) => c[p] - c[q] || p - q)
        .slice(0, nb);
      const pos = slots.flatMap((s) => Array.from({ length: g }, (_, j) => s * g + j));
      const r = await downdateBlock(ops, Hinv, Wt, D, dOut, pos);
      if (r) {
        slots.forEach((s, t) => {
          let v = 0;
          for (let j = 0; j < g; j++) v += r.inc[t * g + j];
          cost[active[s]] = v;
          order.push(active[s]);
        });
        Hinv = r.Hinv;
        Wt = r.Wt;
        D -= nb * g;
        steps.push(nb);
        const gone = new Set(slots);
        active = active.filter((_, s) => !gone.has(s));
        continue;
      }
      // (H⁻¹)_BB not numerically SPD: this step removes the single cheapest unit exactly instead
    }
    let best = 0;
    for (let s = 1; s < c.length; s++) if (c[s] < c[best]) best = s;
    cost[active[best]] = c[best];
    order.push(active[best]);
    if (g === 1) {
      // the exact tail of a module narrower than its output: from here on A = W̃ᵀW̃ (one ORT Gemm) is updated
      // instead of W̃ (2D² per step instead of D² + dOut·D)
      if (!tailStarted && m <= exactBelow) {
        // decided once, where the exact tail starts (a module as wide as its output stays on W̃ throughout)
        tailStarted = true;
        if (x.weightGram ?? D < dOut) {
          const W = Wt.subarray(0, dOut * D);
          A = await ops.gemm64(W, W, D, dOut, D, { transA: true }); // [D, D]
        }
      }
      if (A) downdateOneGram(Hinv, A, D, best);
      else {
        norms = new Float64Array(D - 1);
        downdateOne(Hinv, Wt, D, dOut, best, norms);
      }
    } else [Hinv, Wt] = await downdateGroup(ops, Hinv, Wt, D, dOut, best, g, x.where);
    D -= g;
    steps.push(1);
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
  return { order: Int32Array.from(order), cost, score, alphaUsed, steps };
}

/** The shape of one greedy path: what obsOrder is given, without the data. */
export interface ObsPathShape {
  /** units (KV groups, FFN channels) */
  n: number;
  /** channels per unit */
  unit: number;
  dOut: number;
  /** stop when this many units remain */
  keep: number;
  intercept: boolean;
  exactBelow?: number;
  blockDivisor?: number;
  weightGram?: boolean;
}

/** The work of one greedy path, for the cost model (src/pipeline/plan.ts). */
export interface ObsWork {
  /** FLOPs that run in ONNX Runtime, float64: large square products (the inverse, A = W̃ᵀW̃) … */
  ort: number;
  /** … and low-rank ones (the blocked rank-B downdates, the KV-group steps), slower per FLOP */
  ortRank: number;
  /**
   * element operations of the JavaScript loops (one per matrix element updated, copied or read for a cost):
   * the exact single-channel steps below `exactBelow` and the copies around the ORT calls
   */
  js: number;
  /** units removed per step, as obsOrder's `steps` (when no blocked step falls back to an exact one) */
  steps: number[];
}

/**
 * The work obsOrder does for a path of this shape, step by step as it runs (block sizes follow from the active
 * count alone, not from the data). Lower-order terms (sorting, index arrays, ORT call overhead) are left out.
 */
export function obsPathWork(p: ObsPathShape): ObsWork {
  const g = p.unit;
  const stop = Math.max(1, Math.min(p.n, p.keep));
  const exactBelow = p.exactBelow ?? OBS_EXACT_BELOW;
  const divisor = p.blockDivisor ?? OBS_BLOCK_DIVISOR;
  const dOut = p.dOut;
  let D = p.n * g + (p.intercept ? 1 : 0);
  // the inverse: Cholesky inverse and L⁻ᵀL⁻¹ in ORT; the Gram's copy, H, W̃ in JavaScript
  let ort = 1.4 * D ** 3;
  let ortRank = 0;
  let js = 2 * D * D + dOut * D;
  const steps: number[] = [];
  let gram = false; // the exact tail runs on A = W̃ᵀW̃
  let tailStarted = false;
  let fused = false; // the last step summed the column norms
  for (let m = p.n; ; ) {
    // the single-unit costs of the active units
    if (g === 1) js += gram || fused ? m : dOut * m + m;
    else {
      js += m * (g * g + g * dOut);
      ortRank += m * (g ** 3 / 3 + 2 * g * g * dOut);
    }
    if (m <= stop) break;
    const nb = m > exactBelow ? Math.min(Math.ceil(m / divisor), m - Math.max(stop, exactBelow)) : 1;
    fused = false;
    if (nb > 1) {
      // downdateBlock: b removed positions, k kept
      const b = nb * g;
      const k = D - b;
      ortRank += b ** 3 + 2 * b * b * (k + dOut) + 2 * b * k * (k + dOut);
      js += k * k + 2 * b * k + 3 * b * dOut + dOut * k + b * b;
    } else if (g === 1) {
      if (!tailStarted && m <= exactBelow) {
        tailStarted = true;
        gram = p.weightGram ?? D < dOut;
        if (gram) ort += 2 * dOut * D * D;
      }
      if (gram)
        js += 2 * D * D; // downdateOneGram: H⁻¹ and A
      else {
        js += D * D + dOut * D; // downdateOne: the fused rank-1 update, compaction and column norms
        fused = true;
      }
    } else {
      // downdateGroup: an SPD solve and two rank-g updates in ORT, the copies around them
      ortRank += g ** 3 / 3 + 2 * g * g * D + 2 * g * D * (D + dOut);
      js += 2 * g * D + g * g + dOut * g + (D - g) * (D - g + dOut);
    }
    steps.push(nb);
    D -= nb * g;
    m -= nb;
  }
  return { ort, ortRank, js, steps };
}

/**
 * This machine's rate of the exact path's JavaScript loops (downdateOne with its column norms, downdateOneGram),
 * element operations per second: the slower of the two at D = dOut = 1024 (best of 3 each, ≈ 60 ms).
 */
export function obsLoopRate(): number {
  const D = 1024;
  const H = new Float64Array(D * D);
  const W = new Float64Array(D * D);
  const fill = () => {
    for (let i = 0; i < D; i++) for (let j = 0; j < D; j++) H[i * D + j] = i === j ? 2 : 1 / (1 + i + j);
    for (let k = 0; k < W.length; k++) W[k] = ((k * 7919) % 1000) / 1000 - 0.5;
  };
  const best = (f: () => void) => {
    let t = Number.POSITIVE_INFINITY;
    for (let rep = 0; rep < 4; rep++) {
      fill();
      const t0 = performance.now();
      f();
      if (rep > 0) t = Math.min(t, (performance.now() - t0) / 1000); // the first run warms the JIT
    }
    return Math.max(t, 1e-6);
  };
  const one = best(() => downdateOne(H, W, D, D, D >> 1, new Float64Array(D - 1)));
  const gram = best(() => downdateOneGram(H, W, D, D >> 1));
  return (2 * D * D) / Math.max(one, gram);
}
