/**
 * The quantization grid of one group: a scale s and an integer zero point z per output channel, so that a
 * weight w is stored as q = clamp(round(w / s) + z, 0, maxq) and read back as s · (q − z)
 * (GPTQ's `Quantizer`, Frantar et al. 2023; docs/cli.md "pare quantize").
 *
 *   range   xmin = min(min w, 0), xmax = max(max w, 0) over the group's columns
 *   sym     a = max(−xmin, xmax), s = 2a / maxq, z = (maxq + 1) / 2          (8 for 4 bits)
 *   asym    s = (xmax − xmin) / maxq, z = clamp(round(−xmin / s), 1, maxq)  (the GPTQ format stores z − 1)
 *   an all-zero group gets the range [−1, 1]
 *
 * The scale is rounded to float16 BEFORE the weights are quantized, since the GPTQ folder stores it in f16:
 * the integers and their error feedback then see exactly the grid a loader dequantizes with. `round` is
 * round-half-to-even (torch.round). One difference from the reference implementation: its symmetric grid
 * of a group without negative weights keeps xmin = 0 and s = xmax / maxq, so that w near xmax clamps at
 * maxq − z; here such a group gets the same symmetric range as any other.
 */
import { PareError } from "../errors.ts";
import { f16BitsToF32, f32ToF16Bits } from "../tensor/dtype.ts";

/** Smallest positive float16 (a subnormal): scales never round to 0. */
const F16_TINY = 2 ** -24;

export function maxQ(bits: number): number {
  return 2 ** bits - 1;
}

/** torch.round: halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** x rounded to the nearest float16 (never 0 for x > 0); E_NUMERIC past float16's range. */
export function toF16Scale(x: number): number {
  const h = f16BitsToF32(f32ToF16Bits(x));
  if (!Number.isFinite(h))
    throw new PareError(
      "E_NUMERIC",
      `a quantization scale ${x} exceeds float16's range`,
      "the weights are far outside the range float16 scales can express; check the model",
      { scale: x },
    );
  return Math.max(h, F16_TINY);
}

/**
 * Scales and zero points of the group whose columns are rows [c0, c1) of Wt ([in, out] row-major: column c
 * of the weight W [out, in] is Wt[c·out … (c+1)·out)). Writes scales[j], zeros[j] for every output j.
 */
export function groupGrid(
  Wt: Float64Array,
  out: number,
  c0: number,
  c1: number,
  bits: number,
  sym: boolean,
  scales: Float64Array,
  zeros: Uint8Array,
): void {
  const mq = maxQ(bits);
  const lo = new Float64Array(out); // min(…, 0)
  const hi = new Float64Array(out); // max(…, 0)
  for (let c = c0; c < c1; c++) {
    const r = c * out;
    for (let j = 0; j < out; j++) {
      const w = Wt[r + j];
      if (w < lo[j]) lo[j] = w;
      if (w > hi[j]) hi[j] = w;
    }
  }
  for (let j = 0; j < out; j++) {
    let xmin = lo[j];
    let xmax = hi[j];
    if (sym) {
      const a = Math.max(-xmin, xmax);
      xmin = -a;
      xmax = a;
    }
    if (xmin === 0 && xmax === 0) {
      xmin = -1;
      xmax = 1;
    }
    const s = toF16Scale((xmax - xmin) / mq);
    scales[j] = s;
    // asymmetric zero points start at 1: the GPTQ format stores z − 1 (io/gptqFormat.ts)
    zeros[j] = sym ? (mq + 1) / 2 : Math.min(mq, Math.max(1, roundHalfEven(-xmin / s)));
  }
}

/** q = clamp(round(w / s) + z, 0, maxq) */
export function quantizeValue(w: number, s: number, z: number, mq: number): number {
  const q = roundHalfEven(w / s) + z;
  return Math.min(Math.max(q, 0), mq);
}
