import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { PareError } from "../../src/errors.ts";
import { type NamedTensor, TensorStore, writeShardedSafetensors } from "../../src/io/safetensors.ts";
import { ShardWriter } from "../../src/io/shardWriter.ts";
import { Rng } from "../helpers/rng.ts";

type Dt = "F32" | "F16" | "BF16";

const dirs: string[] = [];
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "pare-shardw-"));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof PareError) return e.code;
    throw e;
  }
  return "no error";
}

const BPE: Record<Dt, number> = { F32: 4, F16: 2, BF16: 2 };

/** A small "model": layer tensors (names whose sorted order is not the layer order), a scalar, an empty one. */
function model(seed: number, layers = 12): NamedTensor[] {
  const rng = new Rng(seed);
  const ts: NamedTensor[] = [];
  ts.push({ name: "model.embed_tokens.weight", shape: [16, 8], data: rng.randn(128) });
  for (let i = 0; i < layers; i++) {
    ts.push({ name: `model.layers.${i}.mlp.down_proj.weight`, shape: [8, 12], data: rng.randn(96, 0.1) });
    ts.push({ name: `model.layers.${i}.input_layernorm.weight`, shape: [8], data: rng.randn(8, 1, 1) });
  }
  // values that exercise rounding and the special cases of f32 → f16/bf16
  const special = new Float32Array([
    0,
    -0,
    1e-40,
    -1e-40,
    6e-8,
    65504,
    65520,
    70000,
    1e30,
    -1e30,
    1 / 3,
    Math.PI,
  ]);
  ts.push({ name: "model.special", shape: [3, 4], data: special });
  ts.push({ name: "model.scalar", shape: [], data: new Float32Array([2.5]) });
  ts.push({ name: "model.empty", shape: [0, 4], data: new Float32Array(0) });
  ts.push({ name: "lm_head.weight", shape: [16, 8], data: rng.randn(128) });
  return ts;
}

/**
 * The groups writeShardedSafetensors makes (name order, greedy), each shuffled but for its first tensor (the one
 * that did not fit in the group before): greedy filling in this non-sorted order makes the same shards.
 */
function shuffledWithinShards(ts: NamedTensor[], dtype: Dt, max: number, rng: Rng): NamedTensor[] {
  const sorted = [...ts].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const groups: NamedTensor[][] = [];
  let size = Infinity;
  for (const t of sorted) {
    const b = t.data.length * BPE[dtype];
    if (size + b > max) {
      groups.push([]);
      size = 0;
    }
    groups[groups.length - 1].push(t);
    size += b;
  }
  return groups.flatMap(([first, ...rest]) => [first, ...rng.shuffle(rest)]);
}

function writeWithShardWriter(
  dir: string,
  ts: NamedTensor[],
  dtype: Dt,
  maxShardBytes: number,
  expected: string[] | "all" | "none" = "all",
  metadata?: Record<string, string>,
): string[] {
  const expectedNames =
    expected === "all" ? ts.map((t) => t.name) : expected === "none" ? undefined : expected;
  const w = new ShardWriter(dir, { dtype, maxShardBytes, expectedNames, metadata });
  for (const t of ts) w.add(t.name, t.shape, t.data);
  return w.close();
}

function writeReference(
  dir: string,
  ts: NamedTensor[],
  dtype: Dt,
  max: number,
  meta?: Record<string, string>,
) {
  return writeShardedSafetensors(
    dir,
    ts.map((t) => ({ ...t, dtype })),
    max,
    meta,
  );
}

/** Both folders hold the same tensors (bytes, dtype, shape); returns the stores' names. */
function expectSameTensors(a: string, b: string): string[] {
  const sa = TensorStore.openFolder(a);
  const sb = TensorStore.openFolder(b);
  try {
    const names = sa.names().sort();
    expect(sb.names().sort()).toEqual(names);
    for (const n of names) {
      const ia = sa.info(n);
      const ib = sb.info(n);
      expect(ia.dtype).toBe(ib.dtype);
      expect(ia.shape).toEqual(ib.shape);
      expect(Buffer.from(sa.readRaw(n)).equals(Buffer.from(sb.readRaw(n)))).toBe(true);
    }
    return names;
  } finally {
    sa.close();
    sb.close();
  }
}

const readIndex = (dir: string) =>
  JSON.parse(fs.readFileSync(path.join(dir, "model.safetensors.index.json"), "utf8")) as {
    metadata: { total_size: number };
    weight_map: Record<string, string>;
  };

interface RawShard {
  headerLen: number;
  text: string;
  header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  metadata: Record<string, string>;
}

/** Parses a shard from its raw bytes and checks the layout: every byte of the data region belongs to a tensor. */
function parseRaw(file: string): RawShard {
  const buf = fs.readFileSync(file);
  expect(buf.length).toBeGreaterThanOrEqual(8);
  const n = Number(buf.readBigUInt64LE(0));
  expect(n % 8).toBe(0);
  expect(8 + n).toBeLessThanOrEqual(buf.length);
  const text = buf.subarray(8, 8 + n).toString("utf8");
  expect(text.startsWith("{")).toBe(true);
  const trimmed = text.replace(/ +$/, "");
  expect(trimmed.endsWith("}")).toBe(true); // only spaces after the JSON
  const { __metadata__, ...header } = JSON.parse(trimmed) as RawShard["header"] & {
    __metadata__: Record<string, string>;
  };
  const spans = Object.values(header)
    .map((e) => e.data_offsets)
    .sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  let at = 0;
  for (const [b, e] of spans) {
    expect(b).toBe(at); // contiguous: no holes, no overlaps
    at = e;
  }
  expect(buf.length - 8 - n).toBe(at); // data region size == max data_offsets end
  return { headerLen: n, text, header, metadata: __metadata__ };
}

describe("ShardWriter writes what writeShardedSafetensors writes", () => {
  const cases: [Dt, number][] = [
    ["F32", 1 << 20],
    ["F16", 1 << 20],
    ["BF16", 1 << 20],
    ["F32", 1500],
    ["F16", 700],
    ["BF16", 500],
  ];
  it.each(cases)("%s, maxShardBytes %d, added out of name order", (dtype, max) => {
    const ts = model(dtype.length * 100 + max);
    const order = shuffledWithinShards(ts, dtype, max, new Rng(max));
    expect(order.map((t) => t.name)).not.toEqual(order.map((t) => t.name).sort());
    const a = tmpDir();
    const b = tmpDir();
    const meta = { note: "pruned" };
    const filesA = writeWithShardWriter(a, order, dtype, max, "all", meta);
    const filesB = writeReference(b, ts, dtype, max, meta);
    expect(filesA).toEqual(filesB);
    expect(fs.readdirSync(a).sort()).toEqual(fs.readdirSync(b).sort()); // no leftover temporary files
    if (max < 1 << 20) {
      expect(filesA.length).toBeGreaterThan(2);
      // same weight_map, same total_size: the index file is byte for byte the same
      expect(readIndex(a)).toEqual(readIndex(b));
      expect(fs.readFileSync(path.join(a, "model.safetensors.index.json"), "utf8")).toBe(
        fs.readFileSync(path.join(b, "model.safetensors.index.json"), "utf8"),
      );
    } else {
      expect(filesA).toEqual(["model.safetensors"]);
    }
    expect(expectSameTensors(a, b)).toEqual(ts.map((t) => t.name).sort());
    for (const f of filesA.filter((f) => f.endsWith(".safetensors"))) {
      const raw = parseRaw(path.join(a, f));
      expect(raw.metadata).toEqual({ format: "pt", note: "pruned" });
      expect(raw.text.length - raw.text.trimEnd().length).toBeGreaterThanOrEqual(8); // header in reserved room
    }
  });

  it("any arrival order: same tensors, shards filled in arrival order", () => {
    const ts = model(7);
    const order = new Rng(3).shuffle([...ts]);
    const a = tmpDir();
    const b = tmpDir();
    const files = writeWithShardWriter(a, order, "BF16", 600);
    writeReference(b, ts, "BF16", 600);
    expectSameTensors(a, b);
    const index = readIndex(a);
    expect(index.metadata.total_size).toBe(readIndex(b).metadata.total_size);
    expect(Object.keys(index.weight_map).sort()).toEqual(ts.map((t) => t.name).sort());
    // the shards follow the arrival order: shard numbers never decrease along it
    const shardOf = order.map((t) => files.indexOf(index.weight_map[t.name]));
    expect(shardOf).toEqual([...shardOf].sort((x, y) => x - y));
    for (const f of files.filter((f) => f.endsWith(".safetensors"))) {
      const raw = parseRaw(path.join(a, f));
      let size = 0;
      for (const e of Object.values(raw.header)) size += e.data_offsets[1] - e.data_offsets[0];
      expect(size).toBeLessThanOrEqual(600);
    }
  });

  it("a tensor larger than maxShardBytes gets a shard of its own", () => {
    const rng = new Rng(11);
    const ts: NamedTensor[] = [
      { name: "a", shape: [100], data: rng.randn(100) },
      { name: "b.big", shape: [1000], data: rng.randn(1000) },
      { name: "c", shape: [100], data: rng.randn(100) },
      { name: "d", shape: [50], data: rng.randn(50) },
    ];
    const a = tmpDir();
    const b = tmpDir();
    const files = writeWithShardWriter(a, ts, "F32", 1000);
    expect(files).toEqual(writeReference(b, ts, "F32", 1000));
    expect(files).toHaveLength(4); // a | b.big | c d | index
    const index = readIndex(a);
    expect(index).toEqual(readIndex(b));
    expect(Object.entries(index.weight_map).filter(([, f]) => f === index.weight_map["b.big"])).toHaveLength(
      1,
    );
    expectSameTensors(a, b);
  });

  it("no tensors at all: one model.safetensors with the metadata", () => {
    const a = tmpDir();
    const w = new ShardWriter(a, { dtype: "F16" });
    expect(w.close()).toEqual(["model.safetensors"]);
    const raw = parseRaw(path.join(a, "model.safetensors"));
    expect(raw.header).toEqual({});
    expect(raw.metadata).toEqual({ format: "pt" });
    const store = TensorStore.openFolder(a);
    expect(store.names()).toEqual([]);
    store.close();
  });
});

describe("streaming", () => {
  it("writes each tensor when it is added and keeps no reference to its data", () => {
    const dir = tmpDir();
    const w = new ShardWriter(dir, { dtype: "F32", maxShardBytes: 4000, expectedNames: ["x", "y", "z"] });
    const x = new Rng(1).randn(600);
    const copy = x.slice();
    w.add("x", [600], x);
    x.fill(0); // the caller reuses its buffer
    const partial = fs.readdirSync(dir).filter((f) => f.endsWith(".partial"));
    expect(partial).toHaveLength(1);
    expect(fs.statSync(path.join(dir, partial[0])).size).toBeGreaterThanOrEqual(2400);
    expect(w.bytesWritten).toBe(2400);
    w.add("y", [600], new Rng(2).randn(600)); // does not fit: shard 1 is finished, shard 2 started
    expect(fs.readdirSync(dir).filter((f) => f.endsWith(".partial"))).toHaveLength(2);
    w.add("z", [2], new Float32Array([1, 2]));
    expect(w.bytesWritten).toBe(4808);
    expect(w.close()).toEqual([
      "model-00001-of-00002.safetensors",
      "model-00002-of-00002.safetensors",
      "model.safetensors.index.json",
    ]);
    expect(readIndex(dir).metadata.total_size).toBe(4808);
    const store = TensorStore.openFolder(dir);
    expect(store.readF32("x")).toEqual(copy);
    expect(store.readF32("z")).toEqual(new Float32Array([1, 2]));
    store.close();
  });

  it("header key order (by name) differs from the data order (arrival): the reader does not mind", () => {
    const dir = tmpDir();
    const w = new ShardWriter(dir, { dtype: "F16", expectedNames: ["b", "a", "c"] });
    w.add("c", [3], new Float32Array([1, 2, 3]));
    w.add("a", [2], new Float32Array([4, 5]));
    w.add("b", [1], new Float32Array([6]));
    w.close();
    const raw = parseRaw(path.join(dir, "model.safetensors"));
    expect(Object.keys(raw.header)).toEqual(["a", "b", "c"]);
    expect(raw.header.c.data_offsets).toEqual([0, 6]);
    expect(raw.header.a.data_offsets).toEqual([6, 10]);
    const store = TensorStore.openFolder(dir);
    expect(store.readF32("a")).toEqual(new Float32Array([4, 5]));
    expect(store.readF32("b")).toEqual(new Float32Array([6]));
    expect(store.readF32("c")).toEqual(new Float32Array([1, 2, 3]));
    store.close();
  });

  it('a tensor named "__proto__" is an ordinary name', () => {
    const dir = tmpDir();
    const w = new ShardWriter(dir, { dtype: "F32" });
    w.add("__proto__", [1], new Float32Array([3]));
    w.close();
    const store = TensorStore.openFolder(dir);
    expect(store.readF32("__proto__")).toEqual(new Float32Array([3]));
    store.close();
  });
});

describe("header fallback: the header outgrows its reserved room", () => {
  const longNames = (seed: number): NamedTensor[] => {
    const rng = new Rng(seed);
    return Array.from({ length: 12 }, (_, i) => ({
      name: `layer.${String(i).padStart(2, "0")}.${"very_long_module_name_".repeat(14)}.weight`,
      shape: [4, 5],
      data: rng.randn(20),
    }));
  };
  const variants: [string, string[] | "none", number][] = [
    ["expectedNames omitted, one shard", "none", 1 << 20],
    ["expectedNames too small, one shard", ["x"], 1 << 20],
    ["expectedNames omitted, several shards", "none", 300],
    ["expectedNames too small, several shards", ["layer.00"], 250],
  ];
  it.each(variants)("%s", (_label, expected, max) => {
    const ts = longNames(max);
    const order = shuffledWithinShards(ts, "F16", max, new Rng(5));
    const a = tmpDir();
    const b = tmpDir();
    const files = writeWithShardWriter(a, order, "F16", max, expected);
    expect(files).toEqual(writeReference(b, ts, "F16", max));
    expect(fs.readdirSync(a).sort()).toEqual([...files].sort()); // no .partial / .rewrite left over
    expectSameTensors(a, b);
    let rewritten = 0;
    for (const f of files.filter((f) => f.endsWith(".safetensors"))) {
      const raw = parseRaw(path.join(a, f));
      if (raw.text.length - raw.text.trimEnd().length < 8) rewritten++; // padded to 8 only: rewritten file
    }
    expect(rewritten).toBeGreaterThan(0);
  });
});

describe("errors and abort", () => {
  it("wrong element counts and bad shapes are E_TENSOR_SHAPE; duplicate and reserved names are rejected", () => {
    const dir = tmpDir();
    const w = new ShardWriter(dir, { dtype: "BF16" });
    w.add("a", [2, 2], new Float32Array(4));
    expect(codeOf(() => w.add("b", [3], new Float32Array(4)))).toBe("E_TENSOR_SHAPE");
    expect(codeOf(() => w.add("b", [-2, -2], new Float32Array(4)))).toBe("E_TENSOR_SHAPE");
    expect(codeOf(() => w.add("b", [1.5, 2], new Float32Array(3)))).toBe("E_TENSOR_SHAPE");
    expect(codeOf(() => w.add("a", [4], new Float32Array(4)))).toBe("E_SAFETENSORS_INVALID");
    expect(codeOf(() => w.add("__metadata__", [4], new Float32Array(4)))).toBe("E_SAFETENSORS_INVALID");
    // a refused tensor leaves the writer usable
    w.add("b", [3], new Float32Array([1, 2, 3]));
    expect(w.close()).toEqual(["model.safetensors"]);
    const store = TensorStore.openFolder(dir);
    expect(store.names().sort()).toEqual(["a", "b"]);
    expect(store.readF32("b")).toEqual(new Float32Array([1, 2, 3]));
    store.close();
    expect(codeOf(() => w.add("c", [1], new Float32Array(1)))).toBe("E_IO");
    expect(codeOf(() => w.close())).toBe("E_IO");
  });

  it("abort() closes the files and removes every file it created", () => {
    const dir = tmpDir();
    fs.writeFileSync(path.join(dir, "config.json"), "{}"); // not the writer's: stays
    const w = new ShardWriter(dir, { dtype: "F32", maxShardBytes: 100 });
    const rng = new Rng(4);
    for (let i = 0; i < 5; i++) w.add(`t${i}`, [20], rng.randn(20));
    expect(fs.readdirSync(dir).filter((f) => f.endsWith(".partial"))).toHaveLength(5);
    w.abort();
    expect(fs.readdirSync(dir)).toEqual(["config.json"]);
    w.abort(); // twice is fine
    expect(codeOf(() => w.add("x", [1], new Float32Array(1)))).toBe("E_IO");
    expect(codeOf(() => w.close())).toBe("E_IO");
  });

  it("abort() after close() keeps the finished files", () => {
    const dir = tmpDir();
    const w = new ShardWriter(dir, { dtype: "F32" });
    w.add("t", [1], new Float32Array([1]));
    w.close();
    w.abort();
    expect(fs.readdirSync(dir)).toEqual(["model.safetensors"]);
  });

  it("I/O errors are E_IO", () => {
    const dir = path.join(tmpDir(), "gone");
    const w = new ShardWriter(dir, { dtype: "F32" });
    expect(codeOf(() => w.add("t", [1], new Float32Array([1])))).toBe("E_IO");
    w.abort();
  });
});
