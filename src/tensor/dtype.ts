/**
 * Element types of safetensors files and the float conversions pare needs:
 * f16 ↔ f32 and bf16 ↔ f32 on raw bit patterns (Uint16Array), little-endian hosts.
 * f32 → f16/bf16 rounds to nearest, ties to even; subnormals, ±inf and NaN are kept.
 */
import { PareError } from "../errors.ts";

export type Dtype =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U64"
  | "U32"
  | "U16"
  | "U8"
  | "BOOL"
  | "F8_E4M3"
  | "F8_E5M2";

const DTYPE_BYTES: Record<Dtype, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
};

export function isDtype(s: string): s is Dtype {
  return Object.hasOwn(DTYPE_BYTES, s);
}

export function bytesPerElement(dtype: string): number {
  if (!isDtype(dtype)) {
    throw new PareError(
      "E_SAFETENSORS_DTYPE",
      `unknown dtype "${dtype}"`,
      `known dtypes: ${Object.keys(DTYPE_BYTES).join(", ")}`,
      { dtype },
    );
  }
  return DTYPE_BYTES[dtype];
}

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** f32 bit pattern → f16 bit pattern, round to nearest even. */
function f32BitsToF16Bits(b: number): number {
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | (mant ? 0x7e00 | (mant >>> 13) : 0x7c00); // NaN stays NaN (quiet), inf
  const e = exp - 127 + 15; // rebiased exponent
  if (e >= 0x1f) return sign | 0x7c00; // overflow → inf
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal → ±0
    mant |= 0x800000; // implicit leading 1
    const shift = 14 - e; // 14..24
    const half = 1 << (shift - 1);
    const rem = mant & ((1 << shift) - 1);
    let r = mant >>> shift;
    if (rem > half || (rem === half && r & 1)) r++; // may carry into the smallest normal: still correct
    return sign | r;
  }
  let r = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && r & 1)) r++; // may carry into inf: correct
  return sign | r;
}

/** f32 bit pattern → bf16 bit pattern, round to nearest even. */
function f32BitsToBf16Bits(b: number): number {
  if ((b & 0x7f800000) === 0x7f800000 && b & 0x7fffff) return (b >>> 16) | 0x40; // NaN stays NaN (quiet)
  return ((b >>> 0) + 0x7fff + ((b >>> 16) & 1)) >>> 16;
}

let f16Table: Float32Array | undefined;

/** All 65536 f16 values as f32 (exact). */
function f16ToF32Table(): Float32Array {
  if (f16Table) return f16Table;
  const t = new Float32Array(65536);
  const bits = new Uint32Array(t.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0)
      t[h] = (sign ? -1 : 1) * mant * 2 ** -24; // zero / subnormal
    else if (exp === 0x1f)
      bits[h] = sign | 0x7f800000 | (mant << 13); // inf / NaN (payload kept)
    else bits[h] = sign | ((exp + 112) << 23) | (mant << 13);
  }
  f16Table = t;
  return t;
}

export function f32ToF16Bits(x: number): number {
  scratchF32[0] = x;
  return f32BitsToF16Bits(scratchU32[0]);
}

export function f16BitsToF32(h: number): number {
  return f16ToF32Table()[h & 0xffff];
}

export function f32ToBf16Bits(x: number): number {
  scratchF32[0] = x;
  return f32BitsToBf16Bits(scratchU32[0]);
}

export function bf16BitsToF32(h: number): number {
  scratchU32[0] = (h & 0xffff) << 16;
  return scratchF32[0];
}

/** Bulk f16 → f32. */
export function f16ToF32(src: Uint16Array, out = new Float32Array(src.length)): Float32Array {
  const t = f16ToF32Table();
  for (let i = 0; i < src.length; i++) out[i] = t[src[i]];
  return out;
}

/** Bulk f32 → f16 (round to nearest even). */
export function f32ToF16(src: Float32Array, out = new Uint16Array(src.length)): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32BitsToF16Bits(bits[i]);
  return out;
}

/** Bulk bf16 → f32 (exact). */
export function bf16ToF32(src: Uint16Array, out = new Float32Array(src.length)): Float32Array {
  const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
  return out;
}

/** Bulk f32 → bf16 (round to nearest even). */
export function f32ToBf16(src: Float32Array, out = new Uint16Array(src.length)): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32BitsToBf16Bits(bits[i]);
  return out;
}
