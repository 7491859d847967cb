/**
 * A GPTQ linear as ONNX Runtime's com.microsoft MatMulNBits weight (bits 4; ORT's contrib operator spec):
 *
 *   B            uint8 [N, k_blocks, block_size / 2]   row n = output channel, two 4-bit codes per byte along
 *                                                      K, the lower K index in the low nibble
 *   scales       float [N · k_blocks]                  scale of output n, block b at n · k_blocks + b
 *   zero_points  uint8 [N · ⌈k_blocks / 2⌉]            per output n, two blocks per byte, low nibble first;
 *                                                      absent: 8 (2^(bits−1)), which is GPTQ's symmetric zero
 *
 *   Y = A · Wᵀ with W[n, k] = scales[n, b] · (code[n, k] − zero[n, b]),  b = ⌊k / block_size⌋
 *
 * so that block_size = group_size and the codes and grid are GPTQ's (io/gptqFormat.ts), regrouped.
 */

import { type GptqConfig, type GptqTensors, unpackQweight, unpackQzeros } from "../io/gptqFormat.ts";
import type { NBitsWeight } from "../onnx/emit.ts";
import { f16BitsToF32 } from "../tensor/dtype.ts";

/** Why a GPTQ linear cannot be a MatMulNBits weight, or undefined when it can. */
export function nbitsRefusal(cfg: GptqConfig, t: GptqTensors, cols: number): string | undefined {
  if (cfg.bits !== 4) return `bits ${cfg.bits} (MatMulNBits here: 4)`;
  const g = cfg.groupSize;
  if (g < 16 || (g & (g - 1)) !== 0) return `group size ${g} (MatMulNBits: a power of two ≥ 16)`;
  if (t.gIdx?.some((v, c) => v !== Math.floor(c / g)))
    return "a g_idx that is not in column order (desc_act)";
  if (cols % g !== 0) return `input width ${cols} not a multiple of the group size`;
  return undefined;
}

export function toMatMulNBits(cfg: GptqConfig, t: GptqTensors, out: number, cols: number): NBitsWeight {
  const g = cfg.groupSize;
  const kBlocks = cols / g;
  const q = unpackQweight(t.qweight, out, cols, 4); // [out, cols]
  const z = unpackQzeros(t.qzeros, kBlocks, out, 4, cfg.v2); // [kBlocks, out]
  const B = new Uint8Array((out * cols) / 2);
  for (let n = 0; n < out; n++)
    for (let k = 0; k < cols; k += 2) B[(n * cols + k) / 2] = q[n * cols + k] | (q[n * cols + k + 1] << 4);
  const scales = new Float32Array(out * kBlocks);
  let symmetric = true;
  for (let n = 0; n < out; n++)
    for (let b = 0; b < kBlocks; b++) {
      scales[n * kBlocks + b] = f16BitsToF32(t.scales[b * out + n]);
      if (z[b * out + n] !== 8) symmetric = false;
    }
  let zeroPoints: Uint8Array | undefined;
  if (!symmetric) {
    const per = Math.ceil(kBlocks / 2);
    zeroPoints = new Uint8Array(out * per);
    for (let n = 0; n < out; n++)
      for (let b = 0; b < kBlocks; b++) {
        const zv = z[b * out + n];
        if (zv > 15) throw new Error(`internal: zero point ${zv} does not fit 4 bits`);
        zeroPoints[n * per + (b >> 1)] |= zv << (4 * (b & 1));
      }
  }
  return { K: cols, N: out, bits: 4, blockSize: g, B, scales, zeroPoints };
}
