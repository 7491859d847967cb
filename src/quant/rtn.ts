/**
 * Round-to-nearest: every weight on its group's grid (grid.ts), no error feedback. The lower bar GPTQ must
 * beat.
 */
import { groupGrid, maxQ, quantizeValue } from "./grid.ts";
import { type QuantizedLinear, transposeF64 } from "./linear.ts";
import { checkLinearShape, type QuantSettings } from "./settings.ts";

/** W: [rows = out, cols = in] */
export function rtnQuantize(
  name: string,
  W: ArrayLike<number>,
  rows: number,
  cols: number,
  s: QuantSettings,
): QuantizedLinear {
  checkLinearShape(name, rows, cols, s);
  const Wt = transposeF64(W, rows, cols); // [cols, rows]
  const groups = cols / s.groupSize;
  const scales = new Float64Array(groups * rows);
  const zeros = new Uint8Array(groups * rows);
  const q = new Uint8Array(rows * cols);
  const mq = maxQ(s.bits);
  for (let g = 0; g < groups; g++) {
    const sc = scales.subarray(g * rows, (g + 1) * rows);
    const ze = zeros.subarray(g * rows, (g + 1) * rows);
    groupGrid(Wt, rows, g * s.groupSize, (g + 1) * s.groupSize, s.bits, s.sym, sc, ze);
    for (let c = g * s.groupSize; c < (g + 1) * s.groupSize; c++)
      for (let j = 0; j < rows; j++) q[j * cols + c] = quantizeValue(Wt[c * rows + j], sc[j], ze[j], mq);
  }
  return { rows, cols, bits: s.bits, groupSize: s.groupSize, sym: s.sym, q, scales, zeros };
}
