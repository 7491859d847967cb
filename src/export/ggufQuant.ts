/**
 * Tensor encodings of the GGUF export: F32, F16 and BF16 (round to nearest even), Q8_0 and Q4_0 as ggml defines
 * them. Blocks are 32 consecutive values of a row (rows must be multiples of 32).
 * - Q8_0 (quantize_row_q8_0_ref; gguf-py's quants.Q8_0): the scale d = max|x| / 127, stored as f16, and 32 int8
 *   values round(x / d), rounded half away from zero (d = 0 gives 0). 34 bytes a block.
 * - Q4_0 (quantize_row_q4_0_ref, what llama-quantize writes without an importance matrix): m = the block's first
 *   value of largest magnitude (sign kept), d = m / −8 and id = 1 / d (0 when d = 0) in float32; each value
 *   becomes the nibble min(15, trunc(x·id + 8.5)) (float32 arithmetic), i.e. q = nibble − 8 ∈ [−8, 7] with
 *   x ≈ d·q. 18 bytes a block: d as f16, then 16 bytes whose byte j holds value j in its low nibble and value
 *   j + 16 in its high nibble.
 * Which tensors stay at higher precision follows llama.cpp (see `tensorType`).
 */
import { PareError } from "../errors.ts";
import { f32ToBf16, f32ToF16, f32ToF16Bits } from "../tensor/dtype.ts";
import { type GgmlTypeName, Q4_0_BYTES, Q8_0_BLOCK, Q8_0_BYTES, QK } from "./ggufWriter.ts";

export type GgufOuttype = "f32" | "f16" | "bf16" | "q8_0" | "q4_0";
export const GGUF_OUTTYPES: readonly GgufOuttype[] = ["f32", "f16", "bf16", "q8_0", "q4_0"];

/** general.file_type (llama_ftype) of each outtype. */
export const FILE_TYPE: Record<GgufOuttype, number> = { f32: 0, f16: 1, q4_0: 2, q8_0: 7, bf16: 32 };

/**
 * The encoding of one tensor. As llama.cpp's convert_hf_to_gguf.py (f32 / f16 / bf16 / q8_0) and llama-quantize
 * (q4_0) choose it: 1-D tensors, norms (`*_norm.weight`) and anything that is not a `.weight` (biases,
 * rope_freqs) stay F32; other weights take the outtype; a row that is not a multiple of 32 falls back to F16.
 * For q4_0, the output matrix — `output.weight`, or `token_embd.weight` when the output is tied to it
 * (`tiedOutput`) — stays at higher precision: llama-quantize gives it Q6_K (Q8_0 when its rows are not a
 * multiple of 256); pare has no Q6_K encoder and writes Q8_0 (a little larger, never less precise).
 */
export function tensorType(
  name: string,
  shape: number[],
  out: GgufOuttype,
  tiedOutput = false,
): GgmlTypeName {
  if (shape.length <= 1 || name.endsWith("_norm.weight") || !name.endsWith(".weight")) return "F32";
  if (name === "rope_freqs.weight") return "F32";
  const blocks = shape[shape.length - 1] % QK === 0;
  switch (out) {
    case "f32":
      return "F32";
    case "f16":
      return "F16";
    case "bf16":
      return "BF16";
    case "q8_0":
      return blocks ? "Q8_0" : "F16";
    case "q4_0": {
      const output = name === "output.weight" || (tiedOutput && name === "token_embd.weight");
      return !blocks ? "F16" : output ? "Q8_0" : "Q4_0";
    }
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

/** The integers and scales of Q4_0's round-to-nearest quantization (`quantizeQ4_0` = their encoding). */
export interface Q4_0Ints {
  /** [rows, cols] row-major, each in [−8, 7] */
  q: Int8Array;
  /** [rows, cols / 32] row-major: d of each block, float32 (stored as f16 by the encoding) */
  scales: Float32Array;
}

/** llama.cpp's Q4_0 round-to-nearest (quantize_row_q4_0_ref) of `data` [rows, cols] as integers and scales. */
export function quantizeQ4_0Ints(data: Float32Array, rows: number, cols: number): Q4_0Ints {
  checkQ4Shape(rows, cols, data.length, "values");
  const nb = data.length / QK;
  const q = new Int8Array(data.length);
  const scales = new Float32Array(nb);
  const f = Math.fround;
  for (let b = 0; b < nb; b++) {
    const at = b * QK;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < QK; j++) {
      const v = data[at + j];
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    // float32 throughout, as ggml: a product or quotient of two float32 values rounded once is float32's
    const d = f(max / -8);
    const id = d ? f(1 / d) : 0;
    scales[b] = d;
    for (let j = 0; j < QK; j++) {
      const t = f(f(data[at + j] * id) + 8.5);
      q[at + j] = Math.min(15, Math.trunc(t)) - 8;
    }
  }
  return { q, scales };
}

/**
 * Q4_0 blocks from integers and scales that are already chosen (a GPTQ / RTN quantization made elsewhere), written
 * exactly. The contract:
 * - `q`: [rows, cols] row-major, every value an integer in [−8, 7]; the weight it stands for is scale · q.
 *   (GPTQ's symmetric 4-bit unsigned codes u ∈ [0, 15] with zero point 8 are q = u − 8.)
 * - `scales`: [rows, cols / 32] row-major, the scale of each block of 32 consecutive values of a row (any sign);
 *   stored as f16, rounded to nearest even — exact when the scales are f16 values already (GPTQ's are).
 * - `cols` a multiple of 32 (a block never crosses a row). Anything else throws E_INTERNAL, before writing.
 * llama.cpp then computes with weight = f16(scale) · q, bit for bit. `encodeQ4_0FromInts(quantizeQ4_0Ints(x))`
 * equals `quantizeQ4_0(x)` byte for byte.
 */
export function encodeQ4_0FromInts(
  q: Int8Array,
  scales: Float32Array,
  rows: number,
  cols: number,
): Uint8Array {
  checkQ4Shape(rows, cols, q.length, "integers");
  const nb = q.length / QK;
  if (scales.length !== nb)
    throw q4Error(`${scales.length} scales for ${rows}×${cols} values (${nb} blocks of 32 expected)`);
  const out = new Uint8Array(nb * Q4_0_BYTES);
  const view = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    const s = scales[b];
    if (!Number.isFinite(s)) throw q4Error(`scale ${b} is ${s}`);
    const o = b * Q4_0_BYTES;
    view.setUint16(o, f32ToF16Bits(s), true);
    const at = b * QK;
    for (let j = 0; j < QK / 2; j++) {
      const lo = q[at + j];
      const hi = q[at + j + QK / 2];
      if (lo < -8 || lo > 7 || hi < -8 || hi > 7)
        throw q4Error(`integer ${lo < -8 || lo > 7 ? lo : hi} in block ${b} is outside [-8, 7]`);
      out[o + 2 + j] = (lo + 8) | ((hi + 8) << 4);
    }
  }
  return out;
}

/** Q4_0 blocks of `data` [rows, cols] by llama.cpp's round-to-nearest (the bytes llama-quantize writes). */
export function quantizeQ4_0(data: Float32Array, rows: number, cols: number): Uint8Array {
  const { q, scales } = quantizeQ4_0Ints(data, rows, cols);
  return encodeQ4_0FromInts(q, scales, rows, cols);
}

function checkQ4Shape(rows: number, cols: number, n: number, what: string): void {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 1 || cols < 1 || cols % QK !== 0)
    throw q4Error(`shape ${rows}×${cols}: Q4_0 needs rows whose length is a multiple of 32`);
  if (n !== rows * cols) throw q4Error(`${n} ${what} for a ${rows}×${cols} tensor`);
}

function q4Error(what: string): PareError {
  return new PareError(
    "E_INTERNAL",
    `Q4_0 encoding: ${what}`,
    "check the tensor's shape, integers and scales",
  );
}

/** Encode f32 values of a tensor of `shape` as `type`. */
export function encodeAs(
  data: Float32Array,
  type: GgmlTypeName,
  shape: number[] = [data.length],
): Uint8Array {
  switch (type) {
    case "F32":
      return asBytes(data);
    case "F16":
      return asBytes(f32ToF16(data));
    case "BF16":
      return asBytes(f32ToBf16(data));
    case "Q8_0":
      return quantizeQ8_0(data);
    case "Q4_0": {
      const cols = shape[shape.length - 1];
      return quantizeQ4_0(data, data.length / cols, cols);
    }
  }
}
