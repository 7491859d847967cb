/**
 * GGUF v3 (ggml's docs/gguf.md), written by pare: the header (magic, version, tensor and key/value counts), the
 * typed key/value metadata, the tensor infos (name, dimensions innermost first, ggml type, offset from the start
 * of the data section), padding to `general.alignment`, then each tensor's data, padded likewise. Tensors are
 * encoded one at a time while they are written (their byte sizes are known up front from type and shape), so the
 * whole model is never held in memory. Little-endian throughout.
 */
import fs from "node:fs";
import { PareError } from "../errors.ts";

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
export const GGUF_ALIGNMENT = 32;

/** gguf_type */
export const GgufType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;

/** ggml_type of the tensor encodings pare writes. */
export const GgmlType = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8, BF16: 30 } as const;
export type GgmlTypeName = keyof typeof GgmlType;

/** Weights per block of the 32-block quantizations (Q8_0, Q4_0), along a row. */
export const QK = 32;
/** Q8_0: blocks of 32 weights along a row, each one f16 scale + 32 int8 = 34 bytes. */
export const Q8_0_BLOCK = QK;
export const Q8_0_BYTES = 34;
/** Q4_0: one f16 scale + 32 nibbles = 18 bytes a block. */
export const Q4_0_BYTES = 18;

type Scalar =
  | { t: "u32"; v: number }
  | { t: "i32"; v: number }
  | { t: "u64"; v: number }
  | { t: "f32"; v: number }
  | { t: "bool"; v: boolean }
  | { t: "str"; v: string };
type KvValue =
  | Scalar
  | { t: "arr_u32"; v: ArrayLike<number> }
  | { t: "arr_i32"; v: ArrayLike<number> }
  | { t: "arr_f32"; v: ArrayLike<number> }
  | { t: "arr_str"; v: readonly string[] };

/** Ordered GGUF key/values (a key set twice keeps its first place and its last value). */
export class GgufMetadata {
  readonly entries = new Map<string, KvValue>();
  private set(key: string, v: KvValue): this {
    this.entries.set(key, v);
    return this;
  }
  u32(key: string, v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw internal(`${key} = ${v} is not a u32`);
    return this.set(key, { t: "u32", v });
  }
  i32(key: string, v: number): this {
    return this.set(key, { t: "i32", v });
  }
  u64(key: string, v: number): this {
    return this.set(key, { t: "u64", v });
  }
  f32(key: string, v: number): this {
    return this.set(key, { t: "f32", v });
  }
  bool(key: string, v: boolean): this {
    return this.set(key, { t: "bool", v });
  }
  str(key: string, v: string): this {
    return this.set(key, { t: "str", v });
  }
  arrU32(key: string, v: ArrayLike<number>): this {
    return this.set(key, { t: "arr_u32", v });
  }
  arrI32(key: string, v: ArrayLike<number>): this {
    return this.set(key, { t: "arr_i32", v });
  }
  arrF32(key: string, v: ArrayLike<number>): this {
    return this.set(key, { t: "arr_f32", v });
  }
  arrStr(key: string, v: readonly string[]): this {
    return this.set(key, { t: "arr_str", v });
  }
  has(key: string): boolean {
    return this.entries.has(key);
  }
  get(key: string): unknown {
    return this.entries.get(key)?.v;
  }
}

/** A tensor to write: GGUF name, shape as stored in PyTorch (outermost first), encoding, and its bytes on demand. */
export interface GgufTensor {
  name: string;
  /** row-major shape, outermost first (GGUF stores it reversed: ne[0] is the row length) */
  shape: number[];
  type: GgmlTypeName;
  /** the encoded bytes (exactly `ggufTensorBytes(shape, type)`), produced when the tensor is written */
  encode(): Uint8Array;
}

export function ggufTensorBytes(shape: number[], type: GgmlTypeName): number {
  const n = shape.reduce((a, b) => a * b, 1);
  switch (type) {
    case "F32":
      return 4 * n;
    case "F16":
    case "BF16":
      return 2 * n;
    case "Q8_0":
    case "Q4_0": {
      const row = shape[shape.length - 1];
      if (row % QK !== 0) throw internal(`${type} needs rows that are a multiple of 32 (got ${row})`);
      return (n / QK) * (type === "Q8_0" ? Q8_0_BYTES : Q4_0_BYTES);
    }
  }
}

function internal(what: string): PareError {
  return new PareError("E_INTERNAL", `internal: ${what}`, "this is a bug in pare; please report it");
}

const pad = (n: number, align: number) => (align - (n % align)) % align;

/** A growable little-endian byte builder. */
class Bytes {
  private buf = Buffer.alloc(1 << 16);
  length = 0;
  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = Buffer.alloc(size);
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }
  u8(v: number): void {
    this.room(1);
    this.buf.writeUInt8(v, this.length);
    this.length += 1;
  }
  u32(v: number): void {
    this.room(4);
    this.buf.writeUInt32LE(v >>> 0, this.length);
    this.length += 4;
  }
  i32(v: number): void {
    this.room(4);
    this.buf.writeInt32LE(v | 0, this.length);
    this.length += 4;
  }
  u64(v: number): void {
    this.room(8);
    this.buf.writeBigUInt64LE(BigInt(v), this.length);
    this.length += 8;
  }
  f32(v: number): void {
    this.room(4);
    this.buf.writeFloatLE(v, this.length);
    this.length += 4;
  }
  str(s: string): void {
    const b = Buffer.from(s, "utf8");
    this.u64(b.length);
    this.room(b.length);
    b.copy(this.buf, this.length);
    this.length += b.length;
  }
  zeros(n: number): void {
    this.room(n);
    this.buf.fill(0, this.length, this.length + n);
    this.length += n;
  }
  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

function writeValue(b: Bytes, v: KvValue): void {
  switch (v.t) {
    case "u32":
      b.u32(v.v);
      return;
    case "i32":
      b.i32(v.v);
      return;
    case "u64":
      b.u64(v.v);
      return;
    case "f32":
      b.f32(v.v);
      return;
    case "bool":
      b.u8(v.v ? 1 : 0);
      return;
    case "str":
      b.str(v.v);
      return;
    case "arr_u32":
    case "arr_i32":
    case "arr_f32": {
      b.u32(v.t === "arr_u32" ? GgufType.UINT32 : v.t === "arr_i32" ? GgufType.INT32 : GgufType.FLOAT32);
      b.u64(v.v.length);
      for (let i = 0; i < v.v.length; i++) {
        if (v.t === "arr_u32") b.u32(v.v[i]);
        else if (v.t === "arr_i32") b.i32(v.v[i]);
        else b.f32(v.v[i]);
      }
      return;
    }
    case "arr_str":
      b.u32(GgufType.STRING);
      b.u64(v.v.length);
      for (const s of v.v) b.str(s);
      return;
  }
}

const TYPE_CODE: Record<KvValue["t"], number> = {
  u32: GgufType.UINT32,
  i32: GgufType.INT32,
  u64: GgufType.UINT64,
  f32: GgufType.FLOAT32,
  bool: GgufType.BOOL,
  str: GgufType.STRING,
  arr_u32: GgufType.ARRAY,
  arr_i32: GgufType.ARRAY,
  arr_f32: GgufType.ARRAY,
  arr_str: GgufType.ARRAY,
};

/** The header, metadata and tensor infos, padded to the alignment; and the data offset of each tensor. */
export function ggufHeader(
  meta: GgufMetadata,
  tensors: GgufTensor[],
  alignment = GGUF_ALIGNMENT,
): { header: Buffer; offsets: number[]; dataBytes: number } {
  const names = new Set<string>();
  for (const t of tensors) {
    if (names.has(t.name)) throw internal(`tensor ${t.name} written twice`);
    names.add(t.name);
  }
  const b = new Bytes();
  b.u32(GGUF_MAGIC);
  b.u32(GGUF_VERSION);
  b.u64(tensors.length);
  b.u64(meta.entries.size);
  for (const [key, v] of meta.entries) {
    b.str(key);
    b.u32(TYPE_CODE[v.t]);
    writeValue(b, v);
  }
  const offsets: number[] = [];
  let offset = 0;
  for (const t of tensors) {
    b.str(t.name);
    b.u32(t.shape.length);
    for (let i = t.shape.length - 1; i >= 0; i--) b.u64(t.shape[i]);
    b.u32(GgmlType[t.type]);
    b.u64(offset);
    offsets.push(offset);
    const size = ggufTensorBytes(t.shape, t.type);
    offset += size + pad(size, alignment);
  }
  b.zeros(pad(b.length, alignment));
  return { header: b.bytes(), offsets, dataBytes: offset };
}

function writeFully(fd: number, data: Uint8Array): void {
  let at = 0;
  while (at < data.length) at += fs.writeSync(fd, data, at, data.length - at);
}

/**
 * Write a whole GGUF file to the open descriptor `fd`: header, then tensor by tensor (`encode()` called once
 * each, in order; `onTensor` after each). Returns the file size.
 */
export function writeGguf(
  fd: number,
  meta: GgufMetadata,
  tensors: GgufTensor[],
  onTensor?: (i: number, t: GgufTensor) => void,
  alignment = GGUF_ALIGNMENT,
): number {
  const { header, dataBytes } = ggufHeader(meta, tensors, alignment);
  writeFully(fd, header);
  const zeros = new Uint8Array(alignment);
  tensors.forEach((t, i) => {
    const data = t.encode();
    const want = ggufTensorBytes(t.shape, t.type);
    if (data.length !== want)
      throw internal(`tensor ${t.name}: ${data.length} bytes encoded, ${want} expected`);
    writeFully(fd, data);
    const p = pad(data.length, alignment);
    if (p) writeFully(fd, zeros.subarray(0, p));
    onTensor?.(i, t);
  });
  return header.length + dataBytes;
}
