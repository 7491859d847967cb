/**
 * Writing a safetensors file of tensors already encoded (any dtype: the GPTQ folder's I32 qweight / qzeros /
 * g_idx and F16 scales next to float tensors), header ordered like io/safetensors.ts writes it (larger dtypes
 * first, then by name), padded with spaces to a multiple of 8, written atomically.
 */
import fs from "node:fs";
import { bytesPerElement } from "../tensor/dtype.ts";
import { invalid, writeAtomic } from "./safetensors.ts";

export interface RawTensor {
  name: string;
  dtype: "F32" | "F16" | "BF16" | "I32";
  shape: number[];
  bytes: Uint8Array; // little-endian
}

/** The bytes of a typed array (little-endian on every platform Node runs on here). */
export function bytesOf(a: Int32Array | Uint16Array | Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

export function writeRawSafetensors(
  file: string,
  tensors: RawTensor[],
  metadata: Record<string, string> = {},
): void {
  const seen = new Set<string>();
  for (const t of tensors) {
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (seen.has(t.name) || numel * bytesPerElement(t.dtype) !== t.bytes.byteLength)
      throw invalid(file, `tensor ${t.name} is repeated or its bytes do not match its shape`, {
        tensor: t.name,
      });
    seen.add(t.name);
  }
  const order = [...tensors].sort(
    (a, b) =>
      bytesPerElement(b.dtype) - bytesPerElement(a.dtype) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );
  const header: Record<string, unknown> = { __metadata__: { format: "pt", ...metadata } };
  let offset = 0;
  for (const t of order) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.byteLength] };
    offset += t.bytes.byteLength;
  }
  let json = Buffer.from(JSON.stringify(header), "utf8");
  json = Buffer.concat([json, Buffer.alloc(Math.ceil(json.length / 8) * 8 - json.length, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeAtomic(file, (fd) => {
    for (const b of [len, json, ...order.map((t) => t.bytes)]) {
      let done = 0;
      while (done < b.byteLength) done += fs.writeSync(fd, b, done, b.byteLength - done);
    }
  });
}
