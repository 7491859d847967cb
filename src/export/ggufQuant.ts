/**
 * Tensor encodings of the GGUF export: F32, F16 and BF16 (round to nearest even), and Q8_0 as ggml defines it
 * (quantize_row_q8_0_ref; gguf-py's quants.Q8_0): each block of 32 consecutive values of a row gets the scale
 * d = max|x| / 127, stored as f16, and 32 int8 values round(x / d), rounded half away from zero (d = 0 gives 0).
 * Which tensors stay F32 follows llama.cpp's converter (see `tensorType`).
 */
import { f32ToBf16, f32ToF16, f32ToF16Bits } from "../tensor/dtype.ts";
import { type GgmlTypeName, Q8_0_BLOCK, Q8_0_BYTES } from "./ggufWriter.ts";

export type GgufOuttype = "f32" | "f16" | "bf16" | "q8_0";
export const GGUF_OUTTYPES: readonly GgufOuttype[] = ["f32", "f16", "bf16", "q8_0"];

/** general.file_type (llama_ftype) of each outtype. */
export const FILE_TYPE: Record<GgufOuttype, number> = { f32: 0, f16: 1, q8_0: 7, bf16: 32 };

/**
 * The encoding of one tensor, as llama.cpp's convert_hf_to_gguf.py chooses it: 1-D tensors, norms
 * (`*_norm.weight`) and anything that is not a `.weight` (biases, rope_freqs) stay F32; other weights take the
 * outtype; Q8_0 falls back to F16 when a row is not a multiple of 32 (the converter's QuantError fallback).
 */
export function tensorType(name: string, shape: number[], out: GgufOuttype): GgmlTypeName {
  if (shape.length <= 1 || name.endsWith("_norm.weight") || !name.endsWith(".weight")) return "F32";
  if (name === "rope_freqs.weight") return "F32";
  switch (out) {
    case "f32":
      return "F32";
    case "f16":
      return "F16";
    case "bf16":
      return "BF16";
    case "q8_0":
      return shape[shape.length - 1] % Q8_0_BLOCK === 0 ? "Q8_0" : "F16";
  }
}

const asBytes = (a: Float32Array | Uint16Array | Uint8Array): Uint8Array =>
  new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** roundf: half away from zero */
const roundAway = (x: number): number => (x < 0 ? -Math.round(-x) : Math.round(x));

/** Q8_0 blocks of `data` (length a multiple of 32, blocks never cross a row since rows are multiples of 32). */
export function quantizeQ8_0(data: Float32Array): Uint8Array {
  if (data.length % Q8_0_BLOCK !== 0) throw new Error("Q8_0: length must be a multiple of 32");
  const nb = data.length / Q8_0_BLOCK;
  const out = new Uint8Array(nb * Q8_0_BYTES);
  const view = new DataView(out.buffer);
  const f32 = new Float32Array(1);
  for (let b = 0; b < nb; b++) {
    const at = b * Q8_0_BLOCK;
    let amax = 0;
    for (let j = 0; j < Q8_0_BLOCK; j++) {
      const a = Math.abs(data[at + j]);
      if (a > amax) amax = a;
    }
    // ggml computes in float32: d = amax / 127, id = 1 / d
    f32[0] = amax / 127;
    const d = f32[0];
    f32[0] = d !== 0 ? 1 / d : 0;
    const id = f32[0];
    const o = b * Q8_0_BYTES;
    view.setUint16(o, f32ToF16Bits(d), true);
    for (let j = 0; j < Q8_0_BLOCK; j++) {
      f32[0] = data[at + j] * id;
      const q = roundAway(f32[0]);
      view.setInt8(o + 2 + j, Math.max(-128, Math.min(127, q)));
    }
  }
  return out;
}

/** Encode f32 values as `type`. */
export function encodeAs(data: Float32Array, type: GgmlTypeName): Uint8Array {
  switch (type) {
    case "F32":
      return asBytes(data);
    case "F16":
      return asBytes(f32ToF16(data));
    case "BF16":
      return asBytes(f32ToBf16(data));
    case "Q8_0":
      return quantizeQ8_0(data);
  }
}
