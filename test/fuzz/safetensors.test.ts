/**
 * Fuzz / property tests of the safetensors reader (fixed seeds and run counts): structured mutations of a valid
 * header, random headers and random bytes only ever end in success or a PareError — never another exception or a
 * hang — and whenever a file opens, what the header promised holds (spans match shape × dtype, lie inside the
 * data region, do not overlap; every float read is finite). Shard indexes with random weight maps never open a
 * file outside the model folder.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PareError } from "../../src/errors.ts";
import { SafetensorsFile, TensorStore, writeSafetensors } from "../../src/io/safetensors.ts";
import { bytesPerElement } from "../../src/tensor/dtype.ts";

let root: string;
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-fuzz-st-"));
});
afterAll(() => {
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

/** Runs `f`; true when it returned or threw a PareError (anything else is rethrown and fails the property). */
function onlyPareErrors(f: () => void): boolean {
  try {
    f();
    return true;
  } catch (e) {
    if (e instanceof PareError) return true;
    throw e;
  }
}

function fileOf(bytes: Uint8Array): string {
  const f = path.join(root, "fuzz.safetensors");
  fs.writeFileSync(f, bytes);
  return f;
}

function assemble(headerText: string, data: Uint8Array, len?: bigint): Buffer {
  const h = Buffer.from(headerText, "utf8");
  const lenBuf = Buffer.alloc(8);
  lenBuf.writeBigUInt64LE(len ?? BigInt(h.length));
  return Buffer.concat([lenBuf, h, data]);
}

/** Opens the file, checks what the header promises and reads every tensor. */
function openAndCheck(file: string): void {
  const size = fs.statSync(file).size;
  const f = SafetensorsFile.open(file);
  try {
    const spans = [...f.tensors.values()];
    for (const t of spans) {
      const numel = t.shape.reduce((a, b) => a * b, 1);
      expect(Number.isSafeInteger(numel)).toBe(true);
      expect(t.end - t.begin).toBe(numel * bytesPerElement(t.dtype));
      expect(t.begin).toBeGreaterThanOrEqual(8);
      expect(t.end).toBeLessThanOrEqual(size);
    }
    const nonEmpty = spans.filter((t) => t.end > t.begin).sort((a, b) => a.begin - b.begin);
    for (let i = 1; i < nonEmpty.length; i++)
      expect(nonEmpty[i].begin).toBeGreaterThanOrEqual(nonEmpty[i - 1].end);
    for (const name of f.tensors.keys()) {
      expect(f.readRaw(name).length).toBe(f.info(name).end - f.info(name).begin);
      onlyPareErrors(() => {
        const x = f.readF32(name);
        for (const v of x) expect(Number.isFinite(v)).toBe(true);
      });
    }
  } finally {
    f.close();
  }
}

/** A valid header with four tensors over 64 data bytes. */
const VALID: Record<string, unknown> = {
  __metadata__: { format: "pt" },
  "a.weight": { dtype: "F32", shape: [2, 4], data_offsets: [0, 32] },
  "b.bias": { dtype: "F16", shape: [4], data_offsets: [32, 40] },
  c: { dtype: "BF16", shape: [2, 2], data_offsets: [40, 48] },
  d: { dtype: "I64", shape: [2], data_offsets: [48, 64] },
};

const number = fc.oneof(
  fc.integer({ min: -3, max: 80 }),
  fc.constantFrom(0, 1, 2 ** 31, 2 ** 32, 2 ** 53 - 1, 2 ** 53, 2 ** 64, -(2 ** 53), 1e308, 0.5, 1.5, -0),
  fc.double(),
);
const value = fc.oneof(
  number,
  fc.constantFrom("F32", "F16", "BF16", "F64", "I64", "U8", "BOOL", "F8_E4M3", "Q4", "f32", "", null, true),
  fc.array(number, { maxLength: 4 }),
  fc.jsonValue({ maxDepth: 2 }),
);

/** One structural edit of the header: replace / delete a field of a tensor, rename or add tensors, bend metadata. */
const edit = fc.oneof(
  fc.record({
    kind: fc.constant("field" as const),
    tensor: fc.constantFrom("a.weight", "b.bias", "c", "d"),
    field: fc.constantFrom("dtype", "shape", "data_offsets", "extra"),
    value,
  }),
  fc.record({
    kind: fc.constant("offset" as const),
    tensor: fc.constantFrom("a.weight", "b.bias", "c", "d"),
    which: fc.constantFrom(0, 1),
    value: number,
  }),
  fc.record({
    kind: fc.constant("dim" as const),
    tensor: fc.constantFrom("a.weight", "b.bias", "c", "d"),
    which: fc.nat(2),
    value: number,
  }),
  fc.record({
    kind: fc.constant("delete" as const),
    tensor: fc.constantFrom("a.weight", "b.bias", "c", "d"),
  }),
  fc.record({ kind: fc.constant("add" as const), name: fc.string({ maxLength: 6 }), value }),
  fc.record({ kind: fc.constant("metadata" as const), value }),
);

type Edit = typeof edit extends fc.Arbitrary<infer T> ? T : never;

function applyEdits(edits: Edit[]): Record<string, unknown> {
  const h = structuredClone(VALID) as Record<string, Record<string, unknown>>;
  for (const e of edits) {
    const t = "tensor" in e ? h[e.tensor] : undefined;
    if (e.kind === "field" && t) t[e.field] = e.value;
    else if (e.kind === "offset" && t && Array.isArray(t.data_offsets)) t.data_offsets[e.which] = e.value;
    else if (e.kind === "dim" && t && Array.isArray(t.shape)) t.shape[e.which] = e.value;
    else if (e.kind === "delete") delete h[e.tensor];
    else if (e.kind === "add") (h as Record<string, unknown>)[e.name] = e.value;
    else if (e.kind === "metadata") (h as Record<string, unknown>).__metadata__ = e.value;
  }
  return h;
}

describe("safetensors reader (fuzz)", () => {
  it("structured header mutations: success (with its promises kept) or PareError", () => {
    fc.assert(
      fc.property(
        fc.array(edit, { minLength: 1, maxLength: 4 }),
        fc.integer({ min: 0, max: 96 }),
        fc.boolean(),
        (edits, dataLen, nan) => {
          const data = new Uint8Array(dataLen).fill(0x3c);
          if (nan) data.fill(0xff, 0, 8); // NaN in a.weight's first floats
          const file = fileOf(assemble(JSON.stringify(applyEdits(edits)), data));
          return onlyPareErrors(() => openAndCheck(file));
        },
      ),
      { seed: 20240601, numRuns: 400 },
    );
  });

  it("a lying length field: beyond the file, inside the JSON, absurd", () => {
    const text = JSON.stringify(VALID);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.bigInt({ min: 0n, max: BigInt(text.length + 80) }),
          fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        ),
        (len) => onlyPareErrors(() => openAndCheck(fileOf(assemble(text, new Uint8Array(64), len)))),
      ),
      { seed: 7, numRuns: 200 },
    );
  });

  it("random header text and random bytes", () => {
    const headerText = fc.oneof(
      fc.string({ maxLength: 60 }),
      fc.string({ unit: "binary", maxLength: 60 }),
      fc.json({ maxDepth: 3 }),
      fc.constantFrom(
        "{",
        "[]",
        "null",
        '{"__metadata__": null}',
        `{"t": ${"[".repeat(5000)}${"]".repeat(5000)}}`,
      ),
    );
    fc.assert(
      fc.property(headerText, fc.uint8Array({ maxLength: 64 }), (h, data) =>
        onlyPareErrors(() => openAndCheck(fileOf(assemble(h, data)))),
      ),
      { seed: 99, numRuns: 300 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) =>
        onlyPareErrors(() => openAndCheck(fileOf(bytes))),
      ),
      { seed: 100, numRuns: 300 },
    );
  });

  it("random weight maps never open a file outside the model folder", () => {
    const dir = path.join(root, "model");
    const outside = path.join(root, "outside.safetensors");
    fs.mkdirSync(dir, { recursive: true });
    writeSafetensors(path.join(dir, "s.safetensors"), [
      { name: "t", shape: [2], data: new Float32Array([1, 2]) },
    ]);
    writeSafetensors(outside, [{ name: "t", shape: [2], data: new Float32Array([3, 4]) }]);
    const link = path.join(dir, "link.safetensors");
    if (process.platform !== "win32") fs.symlinkSync(outside, link);
    const shardName = fc.oneof(
      fc.constantFrom(
        "s.safetensors",
        "./s.safetensors",
        "link.safetensors",
        "../outside.safetensors",
        outside,
        "",
        ".",
        "..",
        "/",
        "C:\\x.safetensors",
        "..\\outside.safetensors",
        "s.safetensors/",
        "nope.safetensors",
        "s.safetensors\u0000",
      ),
      fc.string({ maxLength: 8 }),
    );
    const weightMap = fc.dictionary(fc.constantFrom("t", "u", "__proto__", ""), shardName, { maxKeys: 3 });
    fc.assert(
      fc.property(fc.oneof(weightMap, fc.jsonValue({ maxDepth: 2 })), (wm) => {
        fs.writeFileSync(path.join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: wm }));
        return onlyPareErrors(() => {
          const store = TensorStore.openFolder(dir);
          try {
            const real = fs.realpathSync(dir);
            for (const f of store.files)
              expect(fs.realpathSync(f.file).startsWith(real + path.sep)).toBe(true);
            for (const n of store.names()) expect([...store.readF32(n)]).toEqual([1, 2]);
          } finally {
            store.close();
          }
        });
      }),
      { seed: 5, numRuns: 300 },
    );
  });
});
