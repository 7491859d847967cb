import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  bf16BitsToF32,
  bf16ToF32,
  bytesPerElement,
  f16BitsToF32,
  f16ToF32,
  f32ToBf16,
  f32ToBf16Bits,
  f32ToF16,
  f32ToF16Bits,
} from "../../src/tensor/dtype.ts";

// ---- slow, obvious references (float64 arithmetic, no bit tricks) ----

function refF16ToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

function refBf16ToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 7) & 0xff;
  const mant = h & 0x7f;
  if (exp === 0) return sign * mant * 2 ** -133;
  if (exp === 255) return mant ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + mant / 128) * 2 ** (exp - 127);
}

/** Nearest of the positive codes 0..infCode (the inf code standing for the next power of two), ties to even code. */
function refRound(x: number, decode: (h: number) => number, infCode: number, infValue: number): number {
  if (Number.isNaN(x)) return -1;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  const value = (h: number) => (h === infCode ? infValue : decode(h));
  if (a >= infValue) return sign | infCode;
  let lo = 0;
  let hi = infCode; // value(lo) <= a < value(hi)
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (value(mid) <= a) lo = mid;
    else hi = mid;
  }
  const dLo = a - value(lo);
  const dHi = value(hi) - a;
  return sign | (dLo < dHi ? lo : dHi < dLo ? hi : lo % 2 === 0 ? lo : hi);
}

const refF32ToF16 = (x: number) => refRound(x, refF16ToNumber, 0x7c00, 65536);
const refF32ToBf16 = (x: number) => refRound(x, refBf16ToNumber, 0x7f80, 2 ** 128);

const f32 = (x: number) => Math.fround(x);
const bitsToF32 = (b: number) => new Float32Array(new Uint32Array([b]).buffer)[0];

const EDGE = [
  0,
  -0,
  1,
  -1,
  0.1,
  1 / 3,
  2 ** -24, // smallest f16 subnormal
  2 ** -25, // half of it: tie → 0
  3 * 2 ** -26, // → smallest subnormal
  2 ** -25 + 2 ** -40, // just above the tie → smallest subnormal
  1023 * 2 ** -24, // largest subnormal
  1023.5 * 2 ** -24, // tie between largest subnormal and smallest normal → normal (even)
  2 ** -14, // smallest normal
  1 + 2 ** -11, // tie → 1 (even)
  1 + 3 * 2 ** -11, // tie → 1 + 2^-9 (even)
  65504, // max f16
  65519.99,
  65520, // tie with "65536" → inf
  1e6,
  -1e6,
  2 ** -126, // smallest f32 normal
  2 ** -149, // smallest f32 subnormal
  3.4028234663852886e38, // max f32
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
  1 + 2 ** -8, // bf16 tie → 1
  1 + 3 * 2 ** -8, // bf16 tie → up
].map(f32);

describe("dtype", () => {
  it("bytesPerElement", () => {
    expect(bytesPerElement("F32")).toBe(4);
    expect(bytesPerElement("BF16")).toBe(2);
    expect(bytesPerElement("I64")).toBe(8);
    expect(bytesPerElement("BOOL")).toBe(1);
    expect(() => bytesPerElement("F7")).toThrow(expect.objectContaining({ code: "E_SAFETENSORS_DTYPE" }));
  });

  it("f16 → f32 matches the reference for all 65536 codes", () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const out = f16ToF32(all);
    const same = (a: number, b: number) => Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));
    const bad = [...all].filter(
      (h) => !same(out[h], refF16ToNumber(h)) || !same(f16BitsToF32(h), refF16ToNumber(h)),
    );
    expect(bad).toEqual([]);
  });

  it("bf16 → f32 matches the reference for all 65536 codes", () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const out = bf16ToF32(all);
    const same = (a: number, b: number) => Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));
    const bad = [...all].filter(
      (h) => !same(out[h], refBf16ToNumber(h)) || !same(bf16BitsToF32(h), refBf16ToNumber(h)),
    );
    expect(bad).toEqual([]);
  });

  it("f32 → f16 / bf16 round to nearest even on edge values", () => {
    for (const x of EDGE) {
      expect(f32ToF16Bits(x), `f16 of ${x}`).toBe(refF32ToF16(x));
      expect(f32ToBf16Bits(x), `bf16 of ${x}`).toBe(refF32ToBf16(x));
    }
    expect(f32ToF16Bits(65520)).toBe(0x7c00);
    expect(f32ToF16Bits(2 ** -25)).toBe(0);
    expect(f32ToF16Bits(-0)).toBe(0x8000);
  });

  it("NaN stays NaN", () => {
    for (const b of [0x7fc00000, 0x7f800001, 0xffc00000, 0x7f802000]) {
      const x = new Float32Array(new Uint32Array([b]).buffer);
      expect(Number.isNaN(f16ToF32(f32ToF16(x))[0])).toBe(true);
      expect(Number.isNaN(bf16ToF32(f32ToBf16(x))[0])).toBe(true);
    }
  });

  it("f32 → f16 / bf16 match the reference on random f32 bit patterns", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (b) => {
        const x = bitsToF32(b);
        if (Number.isNaN(x)) return true;
        return f32ToF16Bits(x) === refF32ToF16(x) && f32ToBf16Bits(x) === refF32ToBf16(x);
      }),
      { numRuns: 5000, seed: 42 },
    );
  });

  it("bulk and scalar conversions agree", () => {
    fc.assert(
      fc.property(fc.array(fc.float({ noNaN: true }), { maxLength: 64 }), (xs) => {
        const src = new Float32Array(xs);
        const h = f32ToF16(src);
        const b = f32ToBf16(src);
        return xs.every((x, i) => h[i] === f32ToF16Bits(x) && b[i] === f32ToBf16Bits(x));
      }),
      { numRuns: 300, seed: 7 },
    );
  });

  it("f32 → f16 → f32 is exact on f16-representable values", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff }), (h) => {
        const x = refF16ToNumber(h);
        if (Number.isNaN(x)) return true;
        const back = f16ToF32(f32ToF16(new Float32Array([x])))[0];
        return Object.is(back, x) && f32ToF16Bits(x) === h;
      }),
      { numRuns: 3000, seed: 1 },
    );
  });

  it("f32 → bf16 → f32 is exact on bf16-representable values", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff }), (h) => {
        const x = refBf16ToNumber(h);
        if (Number.isNaN(x)) return true;
        const back = bf16ToF32(f32ToBf16(new Float32Array([x])))[0];
        return Object.is(back, x) && f32ToBf16Bits(x) === h;
      }),
      { numRuns: 3000, seed: 2 },
    );
  });
});
