/**
 * Compensating a removed span of blocks by least squares, folded into the consumer (the FFN down projection)
 * of the last kept block before it (docs/algorithms.md §Depth, "liar for depth").
 *
 * Block p (kept) computes out = mid + a Wᵀ + b, with a [N, dIn] the down projection's input and mid the stream
 * after its attention. The removed blocks p+1..e took out to h_{e+1}. With the span gone, the next kept block
 * reads out directly, so the down projection is refitted to produce what the span would have added:
 *
 *   Θ = argmin_Θ ‖ã Θ − Y‖² + λ ‖Θ_W − [Wᵀ]‖²,   ã = [a, 1],  Y = h^dense_{e+1} − mid,  Θ = [W'ᵀ; b'ᵀ]
 *   ⇒ (ãᵀã + λĨ) Θ = ãᵀY + λĨ [Wᵀ; bᵀ]          (Ĩ: identity without the intercept; λ = α · mean diag(aᵀa))
 *
 * a and mid come from the pruned model's stream (blocks before p already compensated), Y's target from the
 * unpruned model's: the fit corrects what the removal and every earlier compensation left. As λ → ∞ the fit
 * returns W (plain removal); ReplaceMe's d × d map T (out ≈ mid + a Wᵀ T) is the special case Θ_W = Wᵀ T, so
 * this fit's calibration error is never larger than ReplaceMe's least-squares one.
 */
import type { Ops } from "../ops/index.ts";
import { ridgeSolve } from "../reconstruct/index.ts";
import { gather2d } from "../tensor/linalg.ts";

export interface FoldInput {
  /** ãᵀã [(dIn+1)²] (the Gram of [a, 1]) */
  gram: Float64Array;
  /** ãᵀ[Y, 1] [(dIn+1)·(dOut+1)] (a cross-Gram: its last column is unused) */
  cross: Float64Array;
  W: Float32Array; // [dOut, dIn]
  b?: Float32Array; // [dOut]
  dOut: number;
  dIn: number;
  alpha: number;
  /** may the consumer have a bias (it has one, or the config can declare a created one) */
  intercept: boolean;
  where: string;
  ops: Ops;
}

export interface FoldResult {
  W: Float32Array; // [dOut, dIn]
  b?: Float32Array; // [dOut]
  alphaUsed: number;
  retries: number;
}

export async function fitFold(x: FoldInput): Promise<FoldResult> {
  const { dIn, dOut } = x;
  const D = dIn + 1;
  const cols = Int32Array.from({ length: x.intercept ? D : dIn }, (_, j) => j); // a (+ the intercept)
  const n = cols.length;
  const A = gather2d(x.gram, D, cols, cols); // [n, n]
  const outCols = Int32Array.from({ length: dOut }, (_, j) => j);
  const B = gather2d(x.cross, dOut + 1, cols, outCols); // [n, dOut] ãᵀY
  const { Z, alphaUsed, retries } = await ridgeSolve(
    x.ops,
    A,
    n,
    B,
    dOut,
    x.alpha,
    x.where,
    (lambda, R) => {
      // + λ Wᵀ on the weight rows (the intercept row is not regularized)
      for (let k = 0; k < dIn; k++)
        for (let i = 0; i < dOut; i++) R[k * dOut + i] += lambda * x.W[i * dIn + k];
    },
    x.intercept,
  );
  const W = new Float32Array(dOut * dIn);
  for (let i = 0; i < dOut; i++) for (let k = 0; k < dIn; k++) W[i * dIn + k] = Z[k * dOut + i];
  let b: Float32Array | undefined;
  if (x.intercept) b = Float32Array.from({ length: dOut }, (_, i) => Z[dIn * dOut + i]);
  return { W, b, alphaUsed, retries };
}
