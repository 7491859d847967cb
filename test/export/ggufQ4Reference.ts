/**
 * Slow, obvious references for the GGUF block quantizations, written from ggml's definitions (not from pare's
 * code): Q4_0 round-to-nearest as quantize_row_q4_0_ref computes it, Q4_0 / Q8_0 decoding as llama.cpp's
 * dequantize_row_* do, and a model "twin" whose weights are what llama.cpp computes with after pare's q4_0 export.
 */
import { f16BitsToF32, f32ToF16Bits } from "../../src/tensor/dtype.ts";
import type { TinyModel } from "../helpers/tinyModels.ts";

const f32 = Math.fround;

/**
 * Q4_0 RTN of one block of 32 values: the scale d = m / −8 where m is the first value of largest magnitude, and
 * q_j = min(15, trunc(x_j / d + 8.5)) − 8 — every step rounded to float32, as ggml does (x·(1/d), not x / d).
 */
export function refQ4_0Block(x: ArrayLike<number>): { d: number; q: number[] } {
  let m = 0;
  for (let j = 0; j < 32; j++) if (Math.abs(x[j]) > Math.abs(m)) m = x[j];
  const d = f32(m / -8);
  const inv = d === 0 ? 0 : f32(1 / d);
  const q: number[] = [];
  for (let j = 0; j < 32; j++) {
    const scaled = f32(x[j] * inv);
    const shifted = f32(scaled + 8.5);
    q.push(Math.min(15, Math.trunc(shifted)) - 8);
  }
  return { d, q };
}

/** RTN integers and float32 scales of a [rows, cols] tensor, block by block along the rows. */
export function refQ4_0(x: Float32Array): { q: Int8Array; scales: Float32Array } {
  const nb = x.length / 32;
  const q = new Int8Array(x.length);
  const scales = new Float32Array(nb);
  for (let b = 0; b < nb; b++) {
    const r = refQ4_0Block(x.subarray(b * 32, b * 32 + 32));
    scales[b] = r.d;
    r.q.forEach((v, j) => {
      q[b * 32 + j] = v;
    });
  }
  return { q, scales };
}

/** Decode Q4_0 bytes: per 18-byte block, f16 d then nibbles (low = value j, high = value j + 16); w = d·(n − 8). */
export function decodeQ4_0(bytes: Uint8Array): Float32Array {
  const nb = bytes.length / 18;
  const out = new Float32Array(nb * 32);
  for (let b = 0; b < nb; b++) {
    const o = b * 18;
    const d = f16BitsToF32(bytes[o] | (bytes[o + 1] << 8));
    for (let j = 0; j < 16; j++) {
      const byte = bytes[o + 2 + j];
      out[b * 32 + j] = d * ((byte & 15) - 8);
      out[b * 32 + j + 16] = d * ((byte >> 4) - 8);
    }
  }
  return out;
}

/** Decode Q8_0 bytes: per 34-byte block, f16 d then 32 int8; w = d·q. */
export function decodeQ8_0(bytes: Uint8Array): Float32Array {
  const nb = bytes.length / 34;
  const out = new Float32Array(nb * 32);
  for (let b = 0; b < nb; b++) {
    const o = b * 34;
    const d = f16BitsToF32(bytes[o] | (bytes[o + 1] << 8));
    for (let j = 0; j < 32; j++) out[b * 32 + j] = d * ((bytes[o + 2 + j] << 24) >> 24);
  }
  return out;
}

/**
 * The weights llama.cpp multiplies with after pare's q4_0 export of a llama-layout model (no Q/K scaling folded
 * in): 2-D `.weight` tensors whose rows are multiples of 32 go through Q4_0 (the output matrix — lm_head, or the
 * embeddings when tied — through Q8_0), other 2-D weights through f16; 1-D tensors stay float32. Rows are
 * quantized independently, so llama.cpp's row permutations and q|k|v concatenations commute with this.
 */
export function q4Twin(t: TinyModel, encQ8: (x: Float32Array) => Uint8Array): TinyModel {
  const tied = !t.tensors.some((x) => x.name === "lm_head.weight");
  const tensors = t.tensors.map((x) => {
    if (x.shape.length !== 2 || !x.name.endsWith(".weight")) return x;
    const output = x.name === "lm_head.weight" || (tied && x.name === "model.embed_tokens.weight");
    const data = x.data as Float32Array;
    let dq: Float32Array;
    if (x.shape[1] % 32 !== 0) dq = data.map((v) => f16BitsToF32(f32ToF16Bits(v)));
    else if (output) dq = decodeQ8_0(encQ8(data));
    else {
      const { q, scales } = refQ4_0(data);
      dq = new Float32Array(data.length);
      for (let i = 0; i < dq.length; i++) dq[i] = f16BitsToF32(f32ToF16Bits(scales[i >> 5])) * q[i];
    }
    return { ...x, data: dq };
  });
  return { config: t.config, tensors };
}
