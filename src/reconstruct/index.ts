/**
 * Reconstruction of a consumer layer after its input channels `m` are removed
 * (docs/methods.md §4). W [dOut, dIn] row-major, b [dOut] (absent = zeros). Kept channels `u`.
 *  none:     W' = W_u, b' = b
 *  bias:     W' = W_u, b' = b + W_m·mean(X_m)                    (FLAP / mean replacement)
 *  liar:     [Q; pᵀ] = (X̃_uᵀX̃_u + λĨ)⁻¹ X̃_uᵀX_m;  W' = W_u + W_m Qᵀ,  b' = b + W_m p
 *  liar-seq: Θ = (X̃ₚ_uᵀX̃ₚ_u + λĨ)⁻¹ (X̃ₚ_uᵀ X̃_d [Wᵀ; bᵀ] + λĨ [W_uᵀ; bᵀ]);  [W'ᵀ; b'ᵀ] = Θ
 * with λ = α · mean(diag(X_uᵀX_u)); the Cholesky solve retries with α×10 when it fails.
 * α = "auto" (liar, liar-seq): each α of RIDGE_GRID is fitted on the fit part of the calibration batches and
 * scored by the error of the consumer's output on the held-out part; the α with the least held-out error (the
 * default on ties) is refitted on all batches (ridgeAuto below).
 * The solves and the W_m·Qᵀ update run in ONNX Runtime (float64, src/ops/spd.ts); JavaScript
 * only gathers the sub-matrices.
 */
import type { StatKind, TapStats } from "../calib/moments.ts";
import { PareError } from "../errors.ts";
import { type Ops, sharedOps } from "../ops/index.ts";
import { gather2d } from "../tensor/linalg.ts";

export interface ReconInput {
  W: Float32Array; // [dOut, dIn]
  dOut: number;
  dIn: number;
  b?: Float32Array; // [dOut]
  keep: Int32Array; // kept input channels u (sorted)
  stats?: TapStats; // of the consumer input (pruned stream in sequential calibration)
  /** liar-seq: X̃ₚᵀ X̃_d [(dIn+1)·(dIn+1)] (pruned-stream inputs × dense-stream inputs) */
  cross?: Float64Array;
  /** ridge α, or "auto": chosen on held-out batches when `split` is given (else the default α) */
  alpha: number | "auto";
  /** --ridge auto: statistics of the fit and the held-out calibration batches (stats = fit + held) */
  split?: { fit: TapStats; fitCross?: Float64Array; held: TapStats; heldCross?: Float64Array };
  where: string;
  /**
   * May the consumer gain / change its bias? false for families whose config cannot declare a
   * created bias (e.g. Qwen2's o_proj/down_proj): liar then fits without an intercept.
   */
  intercept?: boolean;
  /** where the float64 products run (default: the shared Ops) */
  ops?: Ops;
}

export interface ReconResult {
  W: Float32Array; // [dOut, |u|]
  /** new bias [dOut], or undefined when the layer keeps having none */
  b?: Float32Array;
  alphaUsed?: number;
  retries: number;
  /** --ridge auto: each α of the grid and its held-out error (liar-seq: up to a constant shared by all α) */
  ridgeSearch?: { alpha: number[]; heldOutError: number[] };
}

/** --ridge's default α, and the grid --ridge auto chooses from (it contains the default). */
export const RIDGE_DEFAULT = 0.01;
export const RIDGE_GRID = [1e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3];

export interface Reconstructor {
  name: string;
  paper: string;
  needs: StatKind[];
  needsCross: boolean;
  reconstruct(x: ReconInput): Promise<ReconResult>;
}

export function complement(keep: Int32Array, n: number): Int32Array {
  const k = new Uint8Array(n);
  for (const j of keep) k[j] = 1;
  const out: number[] = [];
  for (let j = 0; j < n; j++) if (!k[j]) out.push(j);
  return Int32Array.from(out);
}

/** W[:, cols] as f64 [dOut, |cols|] */
function cols64(W: Float32Array, dOut: number, dIn: number, cols: Int32Array): Float64Array {
  const out = new Float64Array(dOut * cols.length);
  for (let i = 0; i < dOut; i++)
    for (let j = 0; j < cols.length; j++) out[i * cols.length + j] = W[i * dIn + cols[j]];
  return out;
}

function sliceW(x: ReconInput): Float32Array {
  const u = x.keep;
  const out = new Float32Array(x.dOut * u.length);
  for (let i = 0; i < x.dOut; i++)
    for (let j = 0; j < u.length; j++) out[i * u.length + j] = x.W[i * x.dIn + u[j]];
  return out;
}

function needStats(x: ReconInput, what: string): TapStats {
  if (!x.stats) throw new Error(`${what} needs calibration statistics`);
  for (const v of x.stats.sum) {
    if (!Number.isFinite(v)) {
      throw new PareError(
        "E_NUMERIC",
        `${x.where}: calibration activations contain NaN or Inf`,
        "check the model weights for NaN/Inf (pare inspect) and the calibration text",
      );
    }
  }
  return x.stats;
}

/** Solve (A + λĨ) Z = B with A [n,n] (last row/col = intercept, not regularized), retrying with larger α. */
export async function ridgeSolve(
  ops: Ops,
  A: Float64Array,
  n: number,
  B: Float64Array,
  m: number,
  alpha: number,
  where: string,
  addToRhs?: (lambda: number, rhs: Float64Array) => void,
  intercept = true,
): Promise<{ Z: Float64Array; alphaUsed: number; retries: number }> {
  const k = intercept ? n - 1 : n; // regularized rows (the intercept is not)
  let diag = 0;
  for (let i = 0; i < k; i++) diag += A[i * n + i];
  const scale = k > 0 ? diag / k : 1;
  let a = alpha;
  for (let retries = 0; retries <= 8; retries++) {
    const lambda = a * scale;
    const M = A.slice();
    for (let i = 0; i < k; i++) M[i * n + i] += lambda;
    let rhs = B;
    if (addToRhs) {
      rhs = B.slice();
      addToRhs(lambda, rhs);
    }
    const Z = await ops.spdSolve(M, n, rhs, m); // null: not positive definite
    if (Z?.every(Number.isFinite)) return { Z, alphaUsed: a, retries };
    a = a > 0 ? a * 10 : 1e-6;
  }
  throw new PareError(
    "E_NUMERIC",
    `${where}: the Gram matrix stays singular even with a large ridge`,
    "use more calibration samples or a larger --ridge",
  );
}

const none: Reconstructor = {
  name: "none",
  paper: "no compensation (plain removal)",
  needs: [],
  needsCross: false,
  reconstruct: async (x) => ({ W: sliceW(x), b: x.b ? x.b.slice() : undefined, retries: 0 }),
};

const bias: Reconstructor = {
  name: "bias",
  paper: "An et al. 2024 (FLAP baseline bias compensation); Pruning On-the-Fly's replace-by-mean",
  needs: ["moments"],
  needsCross: false,
  reconstruct: async (x) => {
    const s = needStats(x, "bias");
    const m = complement(x.keep, x.dIn);
    const b = new Float32Array(x.dOut);
    for (let i = 0; i < x.dOut; i++) {
      let acc = x.b ? x.b[i] : 0;
      for (const j of m) acc += x.W[i * x.dIn + j] * (s.sum[j] / s.n);
      b[i] = acc;
    }
    return { W: sliceW(x), b, retries: 0 };
  },
};

/**
 * The error of a reconstruction on held-out rows, from their Gram: with W'' = [W', b'] placed on the kept columns
 * (zeros on the removed ones) [dOut, D] and the target Y = X̃_target W̃ᵀ,
 *   ‖X̃ W''ᵀ − Y‖² = tr(W'' G W''ᵀ) − 2 tr(W'' C W̃ᵀ) + tr(W̃ G_tt W̃ᵀ)
 * with G = X̃ᵀX̃ the held-out Gram and C = X̃ᵀX̃_target (liar: C = G, and the last term is included; liar-seq: C
 * is the held-out cross-Gram and the last term, the same for every α, is left out).
 */
async function heldOutError(
  x: ReconInput,
  r: ReconResult,
  G: Float64Array,
  C: Float64Array | undefined,
  ops: Ops,
): Promise<number> {
  const D = x.dIn + 1;
  const Wk = new Float64Array(x.dOut * D); // W'' [dOut, D]
  const Wf = new Float64Array(x.dOut * D); // W̃ [dOut, D]
  for (let i = 0; i < x.dOut; i++) {
    for (let k = 0; k < x.keep.length; k++) Wk[i * D + x.keep[k]] = r.W[i * x.keep.length + k];
    Wk[i * D + x.dIn] = r.b ? r.b[i] : 0;
    for (let j = 0; j < x.dIn; j++) Wf[i * D + j] = x.W[i * x.dIn + j];
    Wf[i * D + x.dIn] = x.b ? x.b[i] : 0;
  }
  const WkG = await ops.gemm64(Wk, G, x.dOut, D, D); // [dOut, D]
  const WfC = await ops.gemm64(Wf, C ?? G, x.dOut, D, D, { transB: true }); // [dOut, D] W̃ Cᵀ
  let e = 0;
  for (let k = 0; k < Wk.length; k++) e += Wk[k] * (WkG[k] - 2 * WfC[k]);
  if (!C) {
    const WfG = await ops.gemm64(Wf, G, x.dOut, D, D);
    for (let k = 0; k < Wf.length; k++) e += Wf[k] * WfG[k];
  }
  return e;
}

/**
 * --ridge auto for a least-squares reconstruction `solve`: every α of RIDGE_GRID fitted on the fit batches and
 * scored on the held-out ones; the best (the default α on ties) refitted on all batches.
 */
async function ridgeAuto(
  x: ReconInput,
  solve: (x: ReconInput & { alpha: number }) => Promise<ReconResult>,
): Promise<ReconResult> {
  const sp = x.split;
  if (x.alpha !== "auto" || !sp?.held.gram)
    return solve({ ...x, alpha: x.alpha === "auto" ? RIDGE_DEFAULT : x.alpha });
  const ops = x.ops ?? sharedOps();
  const errors: number[] = [];
  for (const alpha of RIDGE_GRID) {
    const r = await solve({ ...x, stats: sp.fit, cross: sp.fitCross, alpha });
    errors.push(await heldOutError(x, r, sp.held.gram, x.cross ? sp.heldCross : undefined, ops));
  }
  let best = RIDGE_GRID.indexOf(RIDGE_DEFAULT);
  errors.forEach((e, k) => {
    if (e < errors[best]) best = k;
  });
  const r = await solve({ ...x, alpha: RIDGE_GRID[best] });
  return { ...r, ridgeSearch: { alpha: RIDGE_GRID.slice(), heldOutError: errors } };
}

const liar: Reconstructor = {
  name: "liar",
  paper:
    "Wang et al. 2024, LIAR: Reconstruct the Pruned Model without Any Retraining (derived least-squares form, docs/methods.md §4)",
  needs: ["gram"],
  needsCross: false,
  reconstruct: (x) => ridgeAuto(x, liarFit),
};

async function liarFit(x: ReconInput & { alpha: number }): Promise<ReconResult> {
  const s = needStats(x, "liar");
  const G = s.gram!;
  const D = x.dIn + 1;
  const u = x.keep;
  const m = complement(u, x.dIn);
  if (m.length === 0) return none.reconstruct(x);
  const icpt = x.intercept ?? true;
  const u1 = icpt ? Int32Array.from([...u, x.dIn]) : u; // kept channels (+ intercept)
  const A = gather2d(G, D, u1, u1); // [(|u|+1)², ] X̃_uᵀX̃_u
  const B = gather2d(G, D, u1, m); // [|u|+1, |m|] X̃_uᵀX_m
  const ops = x.ops ?? sharedOps();
  const { Z, alphaUsed, retries } = await ridgeSolve(
    ops,
    A,
    u1.length,
    B,
    m.length,
    x.alpha,
    x.where,
    undefined,
    icpt,
  );
  // W' = W_u + W_m Qᵀ where Q = Z[0:|u|] ([|u|, |m|]); b' = b + W_m p, p = Z[|u|]
  const Wm = cols64(x.W, x.dOut, x.dIn, m); // [dOut, |m|]
  const upd = await ops.gemm64(Wm, Z, x.dOut, m.length, u1.length, { transB: true }); // [dOut, |u|+1] = W_m Zᵀ
  const W = new Float32Array(x.dOut * u.length);
  const b = new Float32Array(x.dOut);
  for (let i = 0; i < x.dOut; i++) {
    for (let j = 0; j < u.length; j++) W[i * u.length + j] = x.W[i * x.dIn + u[j]] + upd[i * u1.length + j];
    b[i] = (x.b ? x.b[i] : 0) + (icpt ? upd[i * u1.length + u.length] : 0);
  }
  return { W, b: icpt || x.b ? b : undefined, alphaUsed, retries };
}

const liarSeq: Reconstructor = {
  name: "liar-seq",
  paper: "LIAR's sequential variant: pruned-model inputs, dense-model targets (docs/methods.md §4)",
  needs: ["gram"],
  needsCross: true,
  reconstruct: (x) => ridgeAuto(x, liarSeqFit),
};

async function liarSeqFit(x: ReconInput & { alpha: number }): Promise<ReconResult> {
  const s = needStats(x, "liar-seq");
  if (!x.cross) throw new Error("liar-seq needs the cross-Gram");
  const G = s.gram!;
  const D = x.dIn + 1;
  const u = x.keep;
  const icpt = x.intercept ?? true;
  const u1 = icpt ? Int32Array.from([...u, x.dIn]) : u;
  const n = u1.length;
  const A = gather2d(G, D, u1, u1);
  // Θfull = [Wᵀ; bᵀ] [(dIn+1), dOut]
  const Th = new Float64Array(D * x.dOut);
  for (let i = 0; i < x.dOut; i++) {
    for (let j = 0; j < x.dIn; j++) Th[j * x.dOut + i] = x.W[i * x.dIn + j];
    Th[x.dIn * x.dOut + i] = x.b ? x.b[i] : 0;
  }
  const all = Int32Array.from({ length: D }, (_, j) => j);
  const Cu = gather2d(x.cross, D, u1, all); // [n, D]
  const ops = x.ops ?? sharedOps();
  const rhs = await ops.gemm64(Cu, Th, n, D, x.dOut); // [n, dOut]
  const { Z, alphaUsed, retries } = await ridgeSolve(
    ops,
    A,
    n,
    rhs,
    x.dOut,
    x.alpha,
    x.where,
    (lambda, R) => {
      for (let k = 0; k < u.length; k++)
        for (let i = 0; i < x.dOut; i++) R[k * x.dOut + i] += lambda * Th[u[k] * x.dOut + i];
    },
    icpt,
  );
  const W = new Float32Array(x.dOut * u.length);
  const b = new Float32Array(x.dOut);
  for (let i = 0; i < x.dOut; i++) {
    for (let k = 0; k < u.length; k++) W[i * u.length + k] = Z[k * x.dOut + i];
    b[i] = icpt ? Z[u.length * x.dOut + i] : x.b ? x.b[i] : 0;
  }
  return { W, b: icpt || x.b ? b : undefined, alphaUsed, retries };
}

export const RECONSTRUCTORS = { none, bias, liar, "liar-seq": liarSeq } satisfies Record<
  string,
  Reconstructor
>;
