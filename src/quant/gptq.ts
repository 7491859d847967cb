/**
 * GPTQ (Frantar et al. 2023, "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
 * Transformers"; docs/cli.md "pare quantize"): the columns of W [out, in] are quantized one after another
 * in their natural order (or by act-order, below), and each column's rounding error is spread over the columns not yet
 * quantized through the inverse Hessian of the layer-wise objective ‖W X − Ŵ X‖², H = 2 XᵀX (the factor 2 and
 * any positive scale of X cancel):
 *
 *   dead columns (H_cc = 0): H_cc = 1, W[:, c] = 0
 *   H ← H + λ I,  λ = dampPercent · mean(diag H)         (×10 and retried while H is not positive definite)
 *   U = chol(H⁻¹) upper, H⁻¹ = Uᵀ U
 *   for each column c:  group start → grid of columns [c, c + g) of the CURRENT W (grid.ts)
 *                       q_c = quant(W[:, c]),  e = (W[:, c] − ŵ_c) / U_cc
 *                       W[:, k] −= e · U_ck   for k > c
 *
 * Lazy block updates: the updates of columns inside a block of B columns are applied at once to the block
 * only; the rest of W gets them as one product W[:, b1:] −= E · U[b0:b1, b1:] (ORT, float64). B is a multiple
 * of the group size, so a group's columns are always fully updated when its grid is chosen: the result is
 * the plain column-by-column algorithm above for any B (the reference implementation takes the grid of a
 * group that starts inside a block from columns whose in-block updates are still pending).
 *
 * Act-order (`actOrder`, the reference implementations' desc_act with static groups): the columns are processed
 * in decreasing diag(H) order (ties: lower index first), so the columns with the largest input energy are
 * quantized first and later, less important columns absorb their errors. The GPTQ folder keeps desc_act false
 * and the trivial g_idx (column c in group ⌊c / g⌋) because the groups stay the natural-order ones and their
 * grids are fixed BEFORE the permuted pass, from W (dead columns zeroed) as RTN would choose them ("static
 * groups"): a column then reads its natural group's grid whenever its turn comes. H and W are permuted, U is
 * taken of the permuted H, and the integers go back to their natural columns.
 *
 * U without forming H⁻¹ explicitly: with P the order-reversing permutation, P H P = L′ L′ᵀ gives
 * H⁻¹ = (P L′⁻¹ P)ᵀ (P L′⁻¹ P), and P L′⁻¹ P is upper triangular: U[i, j] = L′⁻¹[n−1−i, n−1−j], one
 * `choleskyInverse` (ops/spd.ts, ORT products).
 *
 * Work layout: Wt = Wᵀ [in, out], so that a column of W is a contiguous row.
 */
import { PareError } from "../errors.ts";
import type { Ops } from "../ops/index.ts";
import { groupGrid, maxQ, quantizeValue } from "./grid.ts";
import { type QuantizedLinear, transposeF64 } from "./linear.ts";
import { checkLinearShape, type QuantSettings } from "./settings.ts";

export interface GptqResult {
  linear: QuantizedLinear;
  /** the damping actually used, as a fraction of mean(diag H) */
  damp: number;
  /** how many times the damping was raised (×10) because H + λI was not positive definite */
  retries: number;
  /** columns whose input was always zero (quantized as zeros) */
  dead: number;
}

/** Columns by decreasing diag(H) (ties: lower index first): act-order's processing order. */
export function actOrderPermutation(H: Float64Array, cols: number): Int32Array {
  const idx = Array.from({ length: cols }, (_, c) => c);
  idx.sort((a, b) => H[b * cols + b] - H[a * cols + a] || a - b);
  return Int32Array.from(idx);
}

/** Damping attempts: dampPercent · 10^k, k < MAX_DAMP_TRIES */
const MAX_DAMP_TRIES = 6;

/**
 * Upper U with A⁻¹ = Uᵀ U for SPD A [n, n] (see the file comment), or null when A is not positive definite.
 */
export async function upperCholeskyOfInverse(
  ops: Ops,
  A: Float64Array,
  n: number,
): Promise<Float64Array | null> {
  const R = new Float64Array(n * n); // P A P
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) R[i * n + j] = A[(n - 1 - i) * n + (n - 1 - j)];
  const Li = await ops.choleskyInverse(R, n); // L′⁻¹, lower
  if (!Li) return null;
  const U = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) U[i * n + j] = Li[(n - 1 - i) * n + (n - 1 - j)];
  return U;
}

/**
 * GPTQ of W [rows = out, cols = in] (float32 or float64) with H [cols, cols] (XᵀX of the layer input, any
 * positive scale). Neither input is modified.
 */
export async function gptqQuantize(
  ops: Ops,
  name: string,
  W: ArrayLike<number>,
  rows: number,
  cols: number,
  H: Float64Array,
  s: QuantSettings,
): Promise<GptqResult> {
  checkLinearShape(name, rows, cols, s);
  if (H.length !== cols * cols) throw new Error(`gptq: H has ${H.length} values, expected ${cols}²`);
  const Wt = transposeF64(W, rows, cols); // [cols, rows]
  for (let k = 0; k < Wt.length; k++)
    if (!Number.isFinite(Wt[k]))
      throw new PareError("E_NUMERIC", `${name} holds a non-finite weight`, "check the model's weights", {
        tensor: name,
      });

  // dead columns, damping
  const Hd = Float64Array.from(H);
  let dead = 0;
  for (let c = 0; c < cols; c++) {
    if (Hd[c * cols + c] === 0) {
      Hd[c * cols + c] = 1;
      Wt.fill(0, c * rows, (c + 1) * rows);
      dead++;
    }
  }
  let meanDiag = 0;
  for (let c = 0; c < cols; c++) meanDiag += Hd[c * cols + c];
  meanDiag /= cols;
  if (!(meanDiag > 0) || !Number.isFinite(meanDiag))
    throw new PareError(
      "E_NUMERIC",
      `${name}: the calibration Hessian has a non-positive or non-finite diagonal`,
      "check the calibration data (non-finite activations?)",
      { tensor: name },
    );
  const g = s.groupSize;
  const B = Math.max(g, Math.ceil(s.blockSize / g) * g); // a multiple of g
  const mq = maxQ(s.bits);
  const groups = cols / g;
  const scales = new Float64Array(groups * rows);
  const zeros = new Uint8Array(groups * rows);
  const q = new Uint8Array(rows * cols);
  // act-order: static grids of the natural groups, then W and H permuted (position p holds column perm[p])
  const perm = s.actOrder ? actOrderPermutation(Hd, cols) : undefined;
  if (perm) {
    for (let gi = 0; gi < groups; gi++)
      groupGrid(
        Wt,
        rows,
        gi * g,
        (gi + 1) * g,
        s.bits,
        s.sym,
        scales.subarray(gi * rows, (gi + 1) * rows),
        zeros.subarray(gi * rows, (gi + 1) * rows),
      );
    const Wp = new Float64Array(Wt.length);
    for (let p = 0; p < cols; p++) Wp.set(Wt.subarray(perm[p] * rows, (perm[p] + 1) * rows), p * rows);
    Wt.set(Wp);
    const Hp = new Float64Array(cols * cols);
    for (let a = 0; a < cols; a++)
      for (let b = 0; b < cols; b++) Hp[a * cols + b] = Hd[perm[a] * cols + perm[b]];
    Hd.set(Hp);
  }
  let U: Float64Array | null = null;
  let damp = s.dampPercent;
  let retries = 0;
  for (;;) {
    const A = Float64Array.from(Hd);
    for (let c = 0; c < cols; c++) A[c * cols + c] += damp * meanDiag;
    U = await upperCholeskyOfInverse(ops, A, cols);
    if (U) break;
    if (++retries >= MAX_DAMP_TRIES)
      throw new PareError(
        "E_NUMERIC",
        `${name}: the calibration Hessian stays singular with damping up to ${damp} · mean(diag H)`,
        "use more (or more varied) calibration text, or --quant-method rtn",
        { tensor: name, damp },
      );
    damp *= 10;
  }

  for (let b0 = 0; b0 < cols; b0 += B) {
    const b1 = Math.min(cols, b0 + B);
    const E = new Float64Array((b1 - b0) * rows); // [b1 − b0, rows] scaled errors
    for (let c = b0; c < b1; c++) {
      const col = perm ? perm[c] : c; // the natural column at this position
      const gi = (col / g) | 0;
      const sc = scales.subarray(gi * rows, (gi + 1) * rows);
      const ze = zeros.subarray(gi * rows, (gi + 1) * rows);
      if (!perm && c % g === 0) groupGrid(Wt, rows, c, c + g, s.bits, s.sym, sc, ze);
      const d = U[c * cols + c];
      const w = Wt.subarray(c * rows, (c + 1) * rows);
      const e = E.subarray((c - b0) * rows, (c - b0 + 1) * rows);
      for (let j = 0; j < rows; j++) {
        const qj = quantizeValue(w[j], sc[j], ze[j], mq);
        q[j * cols + col] = qj;
        e[j] = (w[j] - sc[j] * (qj - ze[j])) / d;
      }
      // the block's later columns now; the rest of W below, all at once
      for (let k = c + 1; k < b1; k++) {
        const u = U[c * cols + k];
        if (u === 0) continue;
        const r = Wt.subarray(k * rows, (k + 1) * rows);
        for (let j = 0; j < rows; j++) r[j] -= e[j] * u;
      }
    }
    if (b1 < cols) {
      const rest = cols - b1;
      const Ut = new Float64Array(rest * (b1 - b0)); // U[b0:b1, b1:]ᵀ  [rest, b1 − b0]
      for (let i = b0; i < b1; i++)
        for (let k = b1; k < cols; k++) Ut[(k - b1) * (b1 - b0) + (i - b0)] = U[i * cols + k];
      const tail = Wt.slice(b1 * rows); // [rest, rows]
      Wt.set(await ops.f64.sub(tail, [rest, rows], Ut, E, rest, b1 - b0, rows), b1 * rows);
    }
  }
  return {
    linear: { rows, cols, bits: s.bits, groupSize: g, sym: s.sym, q, scales, zeros },
    damp,
    retries,
    dead,
  };
}
