/**
 * A quantized linear layer as pare holds it before packing: the integers of W [out, in] and, per group of
 * `groupSize` input channels, a float16-representable scale and an integer zero point per output channel.
 * W ≈ Ŵ with Ŵ[j, c] = scales[g, j] · (q[j, c] − zeros[g, j]), g = ⌊c / groupSize⌋ (desc_act false: groups
 * in column order).
 */
export interface QuantizedLinear {
  /** output channels (W's rows) */
  rows: number;
  /** input channels (W's columns) */
  cols: number;
  bits: number;
  groupSize: number;
  sym: boolean;
  q: Uint8Array; // [rows, cols] integers in [0, 2^bits − 1]
  scales: Float64Array; // [cols / groupSize, rows], each a float16 value
  zeros: Uint8Array; // [cols / groupSize, rows]
}

/** Ŵ [rows, cols] as float32. */
export function dequantize(ql: QuantizedLinear): Float32Array {
  const { rows, cols, groupSize, q, scales, zeros } = ql;
  const w = new Float32Array(rows * cols);
  for (let j = 0; j < rows; j++) {
    const r = j * cols;
    for (let c = 0; c < cols; c++) {
      const g = ((c / groupSize) | 0) * rows + j;
      w[r + c] = scales[g] * (q[r + c] - zeros[g]);
    }
  }
  return w;
}

/** [rows, cols] → [cols, rows] in float64 */
export function transposeF64(W: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const t = new Float64Array(rows * cols);
  for (let j = 0; j < rows; j++) {
    const r = j * cols;
    for (let c = 0; c < cols; c++) t[c * rows + j] = W[r + c];
  }
  return t;
}
