/**
 * A slow, obvious float64 GPTQ (Frantar et al. 2023) and RTN for parity tests: W [out, in] row-major, H = XᵀX
 * [in, in]. H⁻¹ is formed explicitly (Gauss–Jordan), U = upper Cholesky factor of H⁻¹ (H⁻¹ = Uᵀ U), and the
 * columns are quantized one at a time with the error update applied to every later column immediately (no
 * lazy blocks). A group's grid is taken from the current (updated) weights when its first column is reached;
 * with act-order, every group's grid is taken from W before the pass and the columns go by decreasing diag(H).
 * The grid follows src/quant/grid.ts (f16-rounded scales, round half to even).
 */
import { f16BitsToF32, f32ToF16Bits } from "../../src/tensor/dtype.ts";

export interface RefQuantized {
  q: number[][]; // [out][in]
  scales: number[][]; // [groups][out]
  zeros: number[][]; // [groups][out]
  deq: number[][]; // [out][in]
}

function rhe(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

function grid(col: number[][], bits: number, sym: boolean): { s: number; z: number } {
  // col: the group's values of one output row
  const mq = 2 ** bits - 1;
  let xmin = Math.min(0, ...col.flat());
  let xmax = Math.max(0, ...col.flat());
  if (sym) {
    const a = Math.max(-xmin, xmax);
    xmin = -a;
    xmax = a;
  }
  if (xmin === 0 && xmax === 0) {
    xmin = -1;
    xmax = 1;
  }
  const s = Math.max(f16BitsToF32(f32ToF16Bits((xmax - xmin) / mq)), 2 ** -24);
  const z = sym ? (mq + 1) / 2 : Math.min(mq, Math.max(1, rhe(-xmin / s))); // the v1 format stores z − 1
  return { s, z };
}

function quant(w: number, s: number, z: number, bits: number): number {
  return Math.min(2 ** bits - 1, Math.max(0, rhe(w / s) + z));
}

/** Inverse of an SPD matrix by Gauss–Jordan with partial pivoting. */
export function invert(A: number[][]): number[][] {
  const n = A.length;
  const M = A.map((r, i) => [...r, ...Array.from({ length: n }, (_, j) => (i === j ? 1 : 0))]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(M[r][c]) > Math.abs(M[p][c])) p = r;
    [M[c], M[p]] = [M[p], M[c]];
    const d = M[c][c];
    for (let j = 0; j < 2 * n; j++) M[c][j] /= d;
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = M[r][c];
      for (let j = 0; j < 2 * n; j++) M[r][j] -= f * M[c][j];
    }
  }
  return M.map((r) => r.slice(n));
}

/** Lower Cholesky factor L (A = L Lᵀ) or null. */
export function choleskyLower(A: number[][]): number[][] | null {
  const n = A.length;
  const L = A.map(() => new Array(n).fill(0));
  for (let j = 0; j < n; j++) {
    let d = A[j][j];
    for (let k = 0; k < j; k++) d -= L[j][k] ** 2;
    if (!(d > 0)) return null;
    L[j][j] = Math.sqrt(d);
    for (let i = j + 1; i < n; i++) {
      let s = A[i][j];
      for (let k = 0; k < j; k++) s -= L[i][k] * L[j][k];
      L[i][j] = s / L[j][j];
    }
  }
  return L;
}

export function rtnRef(W: number[][], groupSize: number, bits: number, sym: boolean): RefQuantized {
  const out = W.length;
  const cols = W[0].length;
  const groups = cols / groupSize;
  const r: RefQuantized = { q: [], scales: [], zeros: [], deq: [] };
  for (let g = 0; g < groups; g++) {
    r.scales.push([]);
    r.zeros.push([]);
  }
  for (let j = 0; j < out; j++) {
    r.q.push([]);
    r.deq.push([]);
    for (let g = 0; g < groups; g++) {
      const { s, z } = grid([W[j].slice(g * groupSize, (g + 1) * groupSize)], bits, sym);
      r.scales[g][j] = s;
      r.zeros[g][j] = z;
      for (let c = g * groupSize; c < (g + 1) * groupSize; c++) {
        const qv = quant(W[j][c], s, z, bits);
        r.q[j][c] = qv;
        r.deq[j][c] = s * (qv - z);
      }
    }
  }
  return r;
}

export function gptqRef(
  W0: number[][],
  H0: number[][],
  groupSize: number,
  bits: number,
  sym: boolean,
  dampPercent = 0.01,
  actOrder = false,
): RefQuantized & { damp: number } {
  const out = W0.length;
  const n = W0[0].length;
  let W = W0.map((r) => [...r]);
  let H = H0.map((r) => [...r]);
  for (let c = 0; c < n; c++)
    if (H[c][c] === 0) {
      H[c][c] = 1;
      for (let j = 0; j < out; j++) W[j][c] = 0;
    }
  const meanDiag = H.reduce((a, r, i) => a + r[i], 0) / n;
  const groups = n / groupSize;
  const r: RefQuantized & { damp: number } = {
    q: W.map(() => []),
    deq: W.map(() => []),
    scales: Array.from({ length: groups }, () => []),
    zeros: Array.from({ length: groups }, () => []),
    damp: dampPercent,
  };
  // act-order with static groups: every natural group's grid from W before any update, then the columns in
  // decreasing diag(H) order (ties by index); perm[p] is the natural column processed p-th
  let perm = Array.from({ length: n }, (_, c) => c);
  if (actOrder) {
    for (let g = 0; g < groups; g++)
      for (let j = 0; j < out; j++) {
        const { s, z } = grid([W[j].slice(g * groupSize, (g + 1) * groupSize)], bits, sym);
        r.scales[g][j] = s;
        r.zeros[g][j] = z;
      }
    perm = [...perm].sort((a, b) => (H[b][b] !== H[a][a] ? H[b][b] - H[a][a] : a - b));
    W = W.map((row) => perm.map((c) => row[c]));
    H = perm.map((a) => perm.map((b) => H[a][b]));
  }
  let damp = dampPercent;
  let U: number[][] | null = null;
  for (let tries = 0; tries < 6 && !U; tries++, damp *= 10) {
    const A = H.map((r, i) => r.map((v, j) => (i === j ? v + damp * meanDiag : v)));
    if (!choleskyLower(A)) continue; // not positive definite
    const L = choleskyLower(invert(A));
    if (L) U = L[0].map((_, i) => L.map((row) => row[i])); // Lᵀ
    if (U) break;
  }
  if (!U) throw new Error("reference: H stays singular");
  r.damp = damp;
  for (let c = 0; c < n; c++) {
    const col = perm[c];
    const g = Math.floor(col / groupSize);
    if (!actOrder && c % groupSize === 0)
      for (let j = 0; j < out; j++) {
        const { s, z } = grid([W[j].slice(c, c + groupSize)], bits, sym);
        r.scales[g][j] = s;
        r.zeros[g][j] = z;
      }
    for (let j = 0; j < out; j++) {
      const s = r.scales[g][j];
      const z = r.zeros[g][j];
      const qv = quant(W[j][c], s, z, bits);
      r.q[j][col] = qv;
      r.deq[j][col] = s * (qv - z);
      const e = (W[j][c] - r.deq[j][col]) / U[c][c];
      for (let k = c + 1; k < n; k++) W[j][k] -= e * U[c][k];
    }
  }
  return r;
}

/** ‖(W − Ŵ) Xᵀ‖²_F = tr((W − Ŵ) H (W − Ŵ)ᵀ) for H = XᵀX */
export function outputError(W: number[][], deq: number[][], H: number[][]): number {
  let t = 0;
  for (let j = 0; j < W.length; j++) {
    const d = W[j].map((w, c) => w - deq[j][c]);
    for (let a = 0; a < d.length; a++) for (let b = 0; b < d.length; b++) t += d[a] * H[a][b] * d[b];
  }
  return t;
}
