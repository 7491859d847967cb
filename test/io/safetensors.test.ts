import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it, vi } from "vitest";
import { PareError } from "../../src/errors.ts";
import {
  type NamedTensor,
  SafetensorsFile,
  TensorStore,
  writeSafetensors,
  writeShardedSafetensors,
} from "../../src/io/safetensors.ts";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "../../src/tensor/dtype.ts";

const dirs: string[] = [];
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "pare-st-"));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

/** A hand-made safetensors file: header (object → JSON, string → as is, bytes → raw), then data. */
function rawFile(file: string, header: unknown, data: Uint8Array = new Uint8Array(0), len?: bigint): string {
  const h =
    header instanceof Uint8Array
      ? Buffer.from(header)
      : Buffer.from(typeof header === "string" ? header : JSON.stringify(header));
  const lenBuf = Buffer.alloc(8);
  lenBuf.writeBigUInt64LE(len ?? BigInt(h.length));
  fs.writeFileSync(file, Buffer.concat([lenBuf, h, data]));
  return file;
}

function rand(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    out[i] = (s / 2147483648 - 0.5) * 4;
  }
  return out;
}

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof PareError) return e.code;
    throw e;
  }
  return "no error";
}

const tensors = (): NamedTensor[] => [
  { name: "b.weight", shape: [3, 4], data: rand(12, 1) },
  { name: "a.bias", shape: [5], data: rand(5, 2), dtype: "F16" },
  { name: "c.norm", shape: [2, 3], data: rand(6, 3), dtype: "BF16" },
  { name: "scalar", shape: [], data: new Float32Array([7.5]) },
  { name: "empty", shape: [0, 4], data: new Float32Array(0) },
];

describe("writeSafetensors / SafetensorsFile", () => {
  it("round-trips F32, F16 and BF16 tensors and metadata", () => {
    const file = path.join(tmpDir(), "m.safetensors");
    writeSafetensors(file, tensors(), { note: "hi" });
    expect(fs.readdirSync(path.dirname(file))).toEqual(["m.safetensors"]); // no leftover tmp file
    const f = SafetensorsFile.open(file);
    expect(f.metadata).toEqual({ format: "pt", note: "hi" });
    for (const t of tensors()) {
      const info = f.tensors.get(t.name)!;
      expect(info.dtype).toBe(t.dtype ?? "F32");
      expect(info.shape).toEqual(t.shape);
      const expected =
        t.dtype === "F16"
          ? f16ToF32(f32ToF16(t.data))
          : t.dtype === "BF16"
            ? bf16ToF32(f32ToBf16(t.data))
            : t.data;
      expect(f.readF32(t.name)).toEqual(expected);
    }
    expect(f.readRaw("a.bias")).toEqual(new Uint8Array(f32ToF16(tensors()[1].data).buffer));
    f.close();
  });

  it("writes the header like the reference: padded with spaces to 8 bytes, offsets contiguous", () => {
    const file = path.join(tmpDir(), "m.safetensors");
    writeSafetensors(file, tensors());
    const buf = fs.readFileSync(file);
    const n = Number(buf.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const text = buf.subarray(8, 8 + n).toString("utf8");
    expect(text.trimEnd().endsWith("}")).toBe(true);
    const header = JSON.parse(text) as Record<string, { data_offsets: number[] }>;
    const spans = Object.entries(header)
      .filter(([k]) => k !== "__metadata__")
      .map(([, v]) => v.data_offsets);
    let at = 0;
    for (const [b, e] of spans) {
      expect(b).toBe(at);
      at = e;
    }
    expect(8 + n + at).toBe(buf.length);
  });

  it("opening reads only the header; data is read per tensor", () => {
    const file = path.join(tmpDir(), "m.safetensors");
    writeSafetensors(file, [{ name: "big", shape: [1000], data: rand(1000, 9) }]);
    const spy = vi.spyOn(fs, "readSync");
    try {
      const f = SafetensorsFile.open(file);
      expect(spy).toHaveBeenCalled();
      const read = spy.mock.calls.reduce((s, c) => s + Number((c as unknown[])[3] ?? 0), 0);
      expect(read).toBeLessThan(300); // header only, not the 4000 data bytes
      f.close();
    } finally {
      spy.mockRestore();
    }
  });

  it("a file truncated after opening fails only when the cut tensor is read", () => {
    const file = path.join(tmpDir(), "m.safetensors");
    writeSafetensors(file, [
      { name: "a", shape: [100], data: rand(100, 1) },
      { name: "b", shape: [100], data: rand(100, 2) },
    ]);
    const f = SafetensorsFile.open(file);
    fs.truncateSync(file, f.tensors.get("b")!.begin + 10);
    expect(f.readF32("a")).toEqual(rand(100, 1));
    expect(codeOf(() => f.readF32("b"))).toBe("E_SAFETENSORS_TRUNCATED");
    f.close();
    expect(codeOf(() => SafetensorsFile.open(file))).toBe("E_SAFETENSORS_TRUNCATED");
  });

  it("names missing tensors and non-float dtypes", () => {
    const file = rawFile(
      path.join(tmpDir(), "i.safetensors"),
      {
        ids: { dtype: "I32", shape: [2], data_offsets: [0, 8] },
      },
      new Uint8Array(8),
    );
    const f = SafetensorsFile.open(file);
    expect(f.readRaw("ids")).toEqual(new Uint8Array(8));
    expect(codeOf(() => f.readF32("ids"))).toBe("E_SAFETENSORS_DTYPE");
    expect(codeOf(() => f.readF32("nope"))).toBe("E_TENSOR_MISSING");
    f.close();
  });
});

describe("sharded models", () => {
  it("writes and reads shards with an index", () => {
    const dir = tmpDir();
    const ts: NamedTensor[] = Array.from({ length: 7 }, (_, i) => ({
      name: `layer.${i}.weight`,
      shape: [10, 10],
      data: rand(100, i + 1),
    }));
    const files = writeShardedSafetensors(dir, ts, 900); // 400 bytes each → 2 per shard
    expect(files).toEqual([
      "model-00001-of-00004.safetensors",
      "model-00002-of-00004.safetensors",
      "model-00003-of-00004.safetensors",
      "model-00004-of-00004.safetensors",
      "model.safetensors.index.json",
    ]);
    const index = JSON.parse(fs.readFileSync(path.join(dir, "model.safetensors.index.json"), "utf8"));
    expect(index.metadata.total_size).toBe(2800);
    const store = TensorStore.openFolder(dir);
    expect(store.names().sort()).toEqual(ts.map((t) => t.name).sort());
    for (const t of ts) expect(store.readF32(t.name)).toEqual(t.data);
    expect(store.info("layer.6.weight").file).toBe(path.join(dir, "model-00004-of-00004.safetensors"));
    expect(store.has("layer.0.weight")).toBe(true);
    expect(codeOf(() => store.readF32("missing"))).toBe("E_TENSOR_MISSING");
    store.close();
  });

  it("writes a single model.safetensors when under the shard size", () => {
    const dir = tmpDir();
    expect(writeShardedSafetensors(dir, tensors(), 1 << 20)).toEqual(["model.safetensors"]);
    const store = TensorStore.openFolder(dir);
    expect(store.names().sort()).toEqual(
      tensors()
        .map((t) => t.name)
        .sort(),
    );
    store.close();
  });

  it("opens a folder with a single, differently named .safetensors file", () => {
    const dir = tmpDir();
    writeSafetensors(path.join(dir, "weights.safetensors"), tensors());
    const store = TensorStore.openFolder(dir);
    expect(store.readF32("scalar")).toEqual(new Float32Array([7.5]));
    store.close();
  });
});

describe("broken files give their specific code", () => {
  const one = { t: { dtype: "F32", shape: [2], data_offsets: [0, 8] } };
  const data8 = new Uint8Array(8);
  const fileCases: [string, (f: string) => void, string][] = [
    ["shorter than 8 bytes", (f) => fs.writeFileSync(f, Buffer.from([1, 2, 3])), "E_SAFETENSORS_TRUNCATED"],
    ["empty file", (f) => fs.writeFileSync(f, ""), "E_SAFETENSORS_TRUNCATED"],
    ["header length beyond the file", (f) => rawFile(f, one, data8, 5000n), "E_SAFETENSORS_TRUNCATED"],
    ["absurd header length", (f) => rawFile(f, one, data8, 1n << 40n), "E_SAFETENSORS_INVALID"],
    ["header length 2^64-1", (f) => rawFile(f, one, data8, (1n << 64n) - 1n), "E_SAFETENSORS_INVALID"],
    ["non-JSON header", (f) => rawFile(f, "{not json", data8), "E_SAFETENSORS_INVALID"],
    [
      "non-UTF-8 header",
      (f) => rawFile(f, new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), data8),
      "E_SAFETENSORS_INVALID",
    ],
    ["header is an array", (f) => rawFile(f, [1, 2], data8), "E_SAFETENSORS_INVALID"],
    ["header is null", (f) => rawFile(f, "null", data8), "E_SAFETENSORS_INVALID"],
    ["empty header", (f) => rawFile(f, "", data8), "E_SAFETENSORS_INVALID"],
    [
      "unknown dtype",
      (f) => rawFile(f, { t: { dtype: "Q4", shape: [2], data_offsets: [0, 8] } }, data8),
      "E_SAFETENSORS_DTYPE",
    ],
    [
      "overlapping offsets",
      (f) =>
        rawFile(
          f,
          {
            a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
            b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
          },
          new Uint8Array(12),
        ),
      "E_SAFETENSORS_INVALID",
    ],
    [
      "offsets beyond the file",
      (f) => rawFile(f, { t: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, data8),
      "E_SAFETENSORS_TRUNCATED",
    ],
    [
      "span ≠ shape × dtype size",
      (f) => rawFile(f, { t: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, data8),
      "E_SAFETENSORS_INVALID",
    ],
    [
      "negative offset",
      (f) => rawFile(f, { t: { dtype: "F32", shape: [2], data_offsets: [-8, 0] } }, data8),
      "E_SAFETENSORS_INVALID",
    ],
    [
      "offsets out of order (begin > end)",
      (f) => rawFile(f, { t: { dtype: "F32", shape: [2], data_offsets: [8, 0] } }, data8),
      "E_SAFETENSORS_INVALID",
    ],
    [
      "fractional offset",
      (f) => rawFile(f, { t: { dtype: "F32", shape: [2], data_offsets: [0.5, 8.5] } }, new Uint8Array(9)),
      "E_SAFETENSORS_INVALID",
    ],
    [
      "duplicate tensor names",
      (f) =>
        rawFile(
          f,
          '{"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "\\u0074": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}',
          data8,
        ),
      "E_SAFETENSORS_INVALID",
    ],
    [
      "negative shape",
      (f) => rawFile(f, { t: { dtype: "F32", shape: [-2], data_offsets: [0, 8] } }, data8),
      "E_SAFETENSORS_INVALID",
    ],
    [
      "missing data_offsets",
      (f) => rawFile(f, { t: { dtype: "F32", shape: [2] } }, data8),
      "E_SAFETENSORS_INVALID",
    ],
    ["entry not an object", (f) => rawFile(f, { t: 3 }, data8), "E_SAFETENSORS_INVALID"],
    [
      "metadata with a non-string value",
      (f) => rawFile(f, { __metadata__: { a: 1 }, ...one }, data8),
      "E_SAFETENSORS_INVALID",
    ],
  ];

  it.each(fileCases)("%s", (_name, build, code) => {
    const file = path.join(tmpDir(), "bad.safetensors");
    build(file);
    expect(codeOf(() => SafetensorsFile.open(file))).toBe(code);
  });

  it("nested duplicate keys are not top-level duplicates", () => {
    const file = rawFile(
      path.join(tmpDir(), "ok.safetensors"),
      '{"__metadata__": {"a": "1"}, "t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": {"a": 1}}}',
      data8,
    );
    SafetensorsFile.open(file).close();
  });

  /** A folder with shard "s.safetensors" holding tensor t, and an index mapping t to `rel`. */
  function shardedFolder(rel: string, names = ["t"]): string {
    const dir = tmpDir();
    writeSafetensors(path.join(dir, "s.safetensors"), [{ name: "t", shape: [2], data: new Float32Array(2) }]);
    const weightMap = Object.fromEntries(names.map((n) => [n, rel]));
    fs.writeFileSync(
      path.join(dir, "model.safetensors.index.json"),
      JSON.stringify({ weight_map: weightMap }),
    );
    return dir;
  }

  const folderCases: [string, () => string, string][] = [
    ["shard index with ../", () => shardedFolder("../s.safetensors"), "E_PATH_ESCAPE"],
    [
      "shard index with an absolute path",
      () => shardedFolder(path.join(tmpDir(), "s.safetensors")),
      "E_PATH_ESCAPE",
    ],
    [
      "shard symlink escaping the folder",
      () => {
        const outside = tmpDir();
        writeSafetensors(path.join(outside, "x.safetensors"), [
          { name: "t", shape: [2], data: new Float32Array(2) },
        ]);
        const dir = shardedFolder("link.safetensors");
        fs.symlinkSync(path.join(outside, "x.safetensors"), path.join(dir, "link.safetensors"));
        return dir;
      },
      "E_PATH_ESCAPE",
    ],
    ["missing shard file", () => shardedFolder("gone.safetensors"), "E_FOLDER_INCOMPLETE"],
    [
      "indexed tensor absent from its shard",
      () => shardedFolder("s.safetensors", ["t", "u"]),
      "E_SHARD_INDEX_INVALID",
    ],
    [
      "index is not JSON",
      () => {
        const dir = shardedFolder("s.safetensors");
        fs.writeFileSync(path.join(dir, "model.safetensors.index.json"), "{oops");
        return dir;
      },
      "E_SHARD_INDEX_INVALID",
    ],
    [
      "index without weight_map",
      () => {
        const dir = shardedFolder("s.safetensors");
        fs.writeFileSync(path.join(dir, "model.safetensors.index.json"), '{"metadata": {}}');
        return dir;
      },
      "E_SHARD_INDEX_INVALID",
    ],
    [
      "pickle-only folder",
      () => {
        const dir = tmpDir();
        fs.writeFileSync(path.join(dir, "pytorch_model.bin"), "pickle");
        return dir;
      },
      "E_PICKLE_UNSUPPORTED",
    ],
    ["empty folder", () => tmpDir(), "E_FOLDER_INCOMPLETE"],
    [
      "several .safetensors without an index",
      () => {
        const dir = tmpDir();
        for (const n of ["a", "b"]) writeSafetensors(path.join(dir, `${n}.safetensors`), tensors());
        return dir;
      },
      "E_FOLDER_INCOMPLETE",
    ],
    ["folder that does not exist", () => path.join(tmpDir(), "nope"), "E_FOLDER_MISSING"],
  ];

  it.each(folderCases)("%s", (_name, build, code) => {
    expect(codeOf(() => TensorStore.openFolder(build()))).toBe(code);
  });

  it("accepts symlinks inside the folder and the Hugging Face hub cache layout", () => {
    const repo = tmpDir();
    const snap = path.join(repo, "snapshots", "abc123");
    fs.mkdirSync(path.join(repo, "blobs"));
    fs.mkdirSync(snap, { recursive: true });
    writeSafetensors(path.join(repo, "blobs", "f00d"), [
      { name: "t", shape: [2], data: new Float32Array([1, 2]) },
    ]);
    fs.symlinkSync("../../blobs/f00d", path.join(snap, "model-00001-of-00001.safetensors"));
    fs.writeFileSync(
      path.join(snap, "model.safetensors.index.json"),
      JSON.stringify({ weight_map: { t: "model-00001-of-00001.safetensors" } }),
    );
    const store = TensorStore.openFolder(snap);
    expect(store.readF32("t")).toEqual(new Float32Array([1, 2]));
    store.close();
  });
});

describe("fuzz: corrupt files only ever throw PareError", () => {
  const valid = (() => {
    const file = path.join(tmpDir(), "valid.safetensors");
    writeSafetensors(file, tensors(), { a: "b" });
    return new Uint8Array(fs.readFileSync(file));
  })();

  /** Opens and reads everything; true when it worked or failed with a PareError. */
  function survives(bytes: Uint8Array): boolean {
    const file = path.join(tmpDir(), "fuzz.safetensors");
    fs.writeFileSync(file, bytes);
    try {
      const f = SafetensorsFile.open(file);
      try {
        for (const name of f.tensors.keys()) {
          try {
            f.readF32(name);
          } catch (e) {
            if (!(e instanceof PareError)) throw e;
          }
          f.readRaw(name);
        }
      } finally {
        f.close();
      }
      return true;
    } catch (e) {
      if (e instanceof PareError) return true;
      throw e;
    } finally {
      fs.rmSync(path.dirname(file), { recursive: true, force: true });
    }
  }

  it("random byte mutations and truncations", () => {
    const mutation = fc.record({
      edits: fc.array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }),
      cut: fc.option(fc.nat(valid.length), { nil: undefined }),
    });
    fc.assert(
      fc.property(mutation, ({ edits, cut }) => {
        const bytes = valid.slice(0, cut ?? valid.length);
        for (const [i, v] of edits) if (i < bytes.length) bytes[i] = v;
        return survives(bytes);
      }),
      { numRuns: 200, seed: 1234 },
    );
  });

  it("random headers", () => {
    const entry = fc.record(
      {
        dtype: fc.constantFrom("F32", "F16", "BF16", "F64", "I32", "U8", "BOOL", "Q4", ""),
        shape: fc.oneof(fc.array(fc.integer({ min: -2, max: 6 }), { maxLength: 3 }), fc.anything()),
        data_offsets: fc.oneof(
          fc.tuple(fc.integer({ min: -4, max: 80 }), fc.integer({ min: -4, max: 80 })),
          fc.anything(),
        ),
      },
      { requiredKeys: [] },
    );
    const header = fc.oneof(
      fc.dictionary(fc.string({ maxLength: 4 }), fc.oneof(entry, fc.anything()), { maxKeys: 5 }),
      fc.json(),
      fc.string(),
    );
    fc.assert(
      fc.property(header, fc.nat(100), (h, dataLen) => {
        const text = typeof h === "string" ? h : JSON.stringify(h);
        const hb = Buffer.from(text ?? "");
        const len = Buffer.alloc(8);
        len.writeBigUInt64LE(BigInt(hb.length));
        return survives(Buffer.concat([len, hb, Buffer.alloc(dataLen, 0x3f)]));
      }),
      { numRuns: 200, seed: 4321 },
    );
  });
});

describe("checkFinite on the stored bytes (no conversion)", () => {
  for (const dtype of ["F32", "F16", "BF16"] as const) {
    it(`${dtype}: clean tensors pass; NaN, +Inf or −Inf anywhere is E_NUMERIC naming the tensor`, () => {
      const dir = tmpDir();
      const clean = Float32Array.from({ length: 37 }, (_, i) => (i - 18) * 0.37);
      const tensors: NamedTensor[] = [{ name: "ok", shape: [37], data: clean, dtype }];
      const bad: [string, number, number][] = [
        ["nan_first", 0, Number.NaN],
        ["inf_mid", 17, Number.POSITIVE_INFINITY],
        ["neginf_last", 36, Number.NEGATIVE_INFINITY],
      ];
      for (const [name, at, v] of bad) {
        const d = clean.slice();
        d[at] = v;
        tensors.push({ name, shape: [37], data: d, dtype });
      }
      const file = path.join(dir, "m.safetensors");
      writeSafetensors(file, tensors);
      const f = SafetensorsFile.open(file);
      try {
        expect(() => f.checkFinite("ok")).not.toThrow();
        for (const [name, at] of bad) {
          let err: unknown;
          try {
            f.checkFinite(name);
          } catch (e) {
            err = e;
          }
          expect(err).toBeInstanceOf(PareError);
          expect((err as PareError).code).toBe("E_NUMERIC");
          expect((err as PareError).message).toContain(name);
          expect((err as PareError).message).toContain(`first at element ${at}`);
        }
      } finally {
        f.close();
      }
    });
  }
});
