/** Statistics of a tap (plain data, no runtime): what criteria and reconstructions read. */

export type StatKind = "moments" | "gram";

export interface TapStats {
  d: number;
  n: number;
  sum: Float64Array; // [d]
  sumsq: Float64Array; // [d]
  /** [(d+1)·(d+1)] row-major, X̃ = [X, 1]; present when "gram" was collected */
  gram?: Float64Array;
}

export function mean(s: TapStats): Float64Array {
  return s.sum.map((v) => v / s.n);
}
/** unbiased variance per channel */
export function variance(s: TapStats): Float64Array {
  return s.sum.map((v, j) => (s.sumsq[j] - (v * v) / s.n) / Math.max(1, s.n - 1));
}
