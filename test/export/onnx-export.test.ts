/**
 * `exportOnnx` / `pare export --format onnx` on tiny seeded models written to temp folders: the folder layout
 * transformers.js expects, the ONNX header (opset 17, IR 8), the KV-cache decoder graph against pare's own full
 * forward (emitModelGraph) and the float64 reference, left-padded batches, and the error paths (existing output,
 * --force, failures midway, emptied layers).
 *
 * Set PARE_DIFF_REPORT=<file> to have the observed maximum differences written there as JSON (nothing is printed).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { type LoadedModel, loadModel } from "../../src/arch/load.ts";
import type { Model, WeightSource } from "../../src/arch/model.ts";
import { isPareError } from "../../src/errors.ts";
import { checkExportable, exportOnnx, type OnnxExportResult } from "../../src/export/onnx.ts";
import { emitModelGraph } from "../../src/onnx/emit.ts";
import { f32, type HostTensor, i64From, Session } from "../../src/runtime/ort.ts";
import { parseSingleJson, runCli, snapshotDir } from "../helpers/cli.ts";
import { Rng } from "../helpers/rng.ts";
import {
  makeByteBpeTokenizerJson,
  makeTinyBert,
  makeTinyLlama,
  makeWordPieceTokenizerJson,
  NON_UNIFORM_WIDTHS,
  nonUniformLlama,
  type TinyModel,
  tensorMap,
  writeTinyModel,
} from "../helpers/tinyModels.ts";
import { referenceBertForward, referenceGreedy } from "../reference/forward.ts";

const observed: Record<string, number> = {};
afterAll(() => {
  const file = process.env.PARE_DIFF_REPORT;
  if (file && Object.keys(observed).length > 0)
    fs.writeFileSync(file, `${JSON.stringify(observed, null, 2)}\n`);
});

/** max |a − b| (lengths must agree; NaN propagates); recorded under `label` (keeps the largest). */
function diff(label: string, a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length, `${label}: length`).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) {
    const x = Math.abs(a[i] - b[i]);
    if (!(x <= d)) d = x;
  }
  observed[label] = Math.max(observed[label] ?? 0, d);
  return d;
}

function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

const TMP_ROOTS: string[] = [];
function tempRoot(tag: string): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `pare-export-${tag}-`));
  TMP_ROOTS.push(d);
  return d;
}
afterAll(() => {
  for (const d of TMP_ROOTS) {
    makeWritable(d);
    fs.rmSync(d, { recursive: true, force: true });
  }
});

/** chmod u+rwx every folder (u+rw every file) below `dir`, so that a test's permission changes can be undone. */
function makeWritable(dir: string): void {
  if (!fs.existsSync(dir)) return;
  fs.chmodSync(dir, 0o755);
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) makeWritable(p);
    else if (e.isFile()) fs.chmodSync(p, 0o644);
  }
}

/** Entries of `parent` that look like writeAtomically's temporary folders (`.<name>.tmp-<pid>-…`, `….old`). */
const leftovers = (parent: string): string[] => fs.readdirSync(parent).filter((n) => /\.tmp-/.test(n));

const IS_ROOT = typeof process.getuid === "function" && process.getuid() === 0;

// ---------------------------------------------------------------------------------------------------------
// the ONNX header

/** ir_version (field 1), producer_name (2) and opset_import (8: domain → version) of a serialized ModelProto. */
function onnxHeader(bytes: Uint8Array): {
  irVersion: number;
  producer: string;
  opsets: Record<string, number>;
} {
  const readFields = (
    buf: Uint8Array,
    visit: (field: number, wire: number, v: bigint | Uint8Array) => void,
  ) => {
    let p = 0;
    const varint = (): bigint => {
      let r = 0n;
      let s = 0n;
      for (;;) {
        if (p >= buf.length) throw new Error("truncated varint");
        const b = buf[p++];
        r |= BigInt(b & 0x7f) << s;
        if (!(b & 0x80)) return r;
        s += 7n;
      }
    };
    while (p < buf.length) {
      const key = Number(varint());
      const field = key >>> 3;
      const wire = key & 7;
      if (wire === 0) visit(field, wire, varint());
      else if (wire === 2) {
        const len = Number(varint());
        visit(field, wire, buf.subarray(p, p + len));
        p += len;
      } else if (wire === 1) p += 8;
      else if (wire === 5) p += 4;
      else throw new Error(`unexpected wire type ${wire}`);
    }
  };
  let irVersion = -1;
  let producer = "";
  const opsets: Record<string, number> = {};
  readFields(bytes, (field, wire, v) => {
    if (field === 1 && wire === 0) irVersion = Number(v);
    else if (field === 2 && wire === 2) producer = new TextDecoder().decode(v as Uint8Array);
    else if (field === 8 && wire === 2) {
      let domain = "";
      let version = -1;
      readFields(v as Uint8Array, (f, w, x) => {
        if (f === 1 && w === 2) domain = new TextDecoder().decode(x as Uint8Array);
        if (f === 2 && w === 0) version = Number(x);
      });
      opsets[domain] = version;
    }
  });
  return { irVersion, producer, opsets };
}

// ---------------------------------------------------------------------------------------------------------
// running the KV-cache graph

interface Cache {
  /** past_key_values.{i}.key|value → tensor */
  past: Record<string, HostTensor>;
  /** attention mask so far [B, P] (row-major) */
  mask: number[][];
  /** next position per row */
  nextPos: number[];
}

function emptyCache(model: Model, B: number): Cache {
  const past: Record<string, HostTensor> = {};
  model.dims.layers.forEach((L, i) => {
    for (const kv of ["key", "value"])
      past[`past_key_values.${i}.${kv}`] = f32([B, L.nKv, 0, model.dims.headDim], new Float32Array(0));
  });
  return { past, mask: Array.from({ length: B }, () => []), nextPos: new Array(B).fill(0) };
}

/**
 * One step of the KV-cache graph on a [B, T] block of tokens with per-token masks (1 = real, 0 = pad): positions
 * continue each row's count of real tokens (cumsum(mask) − 1, clipped at 0, as transformers.js computes them).
 * Returns the logits [B, T, V] and the updated cache.
 */
async function cachedStep(
  session: Session,
  model: Model,
  cache: Cache,
  tokens: number[][],
  tokenMask?: number[][],
): Promise<{ logits: Float32Array; cache: Cache }> {
  const B = tokens.length;
  const T = tokens[0].length;
  const mask = cache.mask.map((m, b) => [...m, ...(tokenMask?.[b] ?? new Array(T).fill(1))]);
  const pos: number[] = [];
  const nextPos = [...cache.nextPos];
  for (let b = 0; b < B; b++) {
    let seen = mask[b].slice(0, cache.mask[b].length).reduce((a, x) => a + x, 0);
    for (let t = 0; t < T; t++) {
      seen += mask[b][cache.mask[b].length + t];
      pos.push(Math.max(0, seen - 1));
    }
    nextPos[b] = seen;
  }
  const feeds: Record<string, HostTensor> = {
    input_ids: i64From([B, T], tokens.flat()),
    attention_mask: i64From([B, mask[0].length], mask.flat()),
    position_ids: i64From([B, T], pos),
    ...cache.past,
  };
  const r = await session.run(feeds);
  const past: Record<string, HostTensor> = {};
  for (let i = 0; i < model.dims.nLayers; i++)
    for (const kv of ["key", "value"]) past[`past_key_values.${i}.${kv}`] = r[`present.${i}.${kv}`];
  expect(r.logits.dims).toEqual([B, T, model.dims.vocab]);
  return { logits: r.logits.data as Float32Array, cache: { past, mask, nextPos } };
}

/** Greedy decoding with the KV cache, one token per step after the prefill; the last-row logits of every step. */
async function cachedGreedy(
  session: Session,
  model: Model,
  prompt: number[],
  steps: number,
): Promise<{ ids: number[]; logits: Float32Array[] }> {
  const V = model.dims.vocab;
  let cache = emptyCache(model, 1);
  let block = [prompt];
  const ids: number[] = [];
  const logits: Float32Array[] = [];
  for (let s = 0; s < steps; s++) {
    const r = await cachedStep(session, model, cache, block);
    cache = r.cache;
    const T = block[0].length;
    const last = r.logits.slice((T - 1) * V, T * V);
    logits.push(last);
    const next = argmax(last);
    ids.push(next);
    block = [[next]];
    expect(cache.past["past_key_values.0.key"].dims[2]).toBe(prompt.length + s);
  }
  return { ids, logits };
}

/** Greedy decoding with pare's own full forward (no cache), recomputing the whole sequence every step. */
async function fullGreedy(
  session: Session,
  model: Model,
  prompt: number[],
  steps: number,
): Promise<{ ids: number[]; logits: Float32Array[] }> {
  const V = model.dims.vocab;
  const seq = [...prompt];
  const ids: number[] = [];
  const logits: Float32Array[] = [];
  for (let s = 0; s < steps; s++) {
    const r = await session.run({ input_ids: i64From([1, seq.length], seq) }, ["logits"]);
    const last = (r.logits.data as Float32Array).slice((seq.length - 1) * V, seq.length * V);
    logits.push(last);
    const next = argmax(last);
    ids.push(next);
    seq.push(next);
  }
  return { ids, logits };
}

// ---------------------------------------------------------------------------------------------------------
// the models

interface DecoderCase {
  name: string;
  tiny: () => TinyModel;
  /** expected (heads, kv heads, ffn) per layer */
  widths: [number, number, number][];
  /** the export must note that KV-head counts differ */
  kvNote: boolean;
}

const DECODERS: DecoderCase[] = [
  {
    name: "llama GQA, non-uniform per-layer widths (kv heads 2/1/3)",
    tiny: () => nonUniformLlama(31),
    widths: NON_UNIFORM_WIDTHS,
    kvNote: true,
  },
  {
    name: "uniform llama with consumer biases (o_proj.bias, down_proj.bias)",
    tiny: () => makeTinyLlama({ seed: 32, consumerBias: true }),
    widths: [
      [4, 2, 48],
      [4, 2, 48],
    ],
    kvNote: false,
  },
  {
    name: "qwen2 with q/k/v biases",
    tiny: () => makeTinyLlama({ seed: 33, modelType: "qwen2", heads: 6, kvHeads: 2 }),
    widths: [
      [6, 2, 48],
      [6, 2, 48],
    ],
    kvNote: false,
  },
  {
    name: "llama with tied embeddings",
    tiny: () => makeTinyLlama({ seed: 34, tie: true }),
    widths: [
      [4, 2, 48],
      [4, 2, 48],
    ],
    kvNote: false,
  },
];

function writeDecoder(dir: string, tiny: TinyModel): void {
  writeTinyModel(dir, tiny, makeByteBpeTokenizerJson(Number(tiny.config.vocab_size)));
}

const BERT_WORDS = ["the", "movie", "was", "good", "bad", "great", "boring", "film", "a", "not", "very"];

function tinyBert(): TinyModel {
  return makeTinyBert({
    seed: 41,
    vocab: 120,
    layers: 2,
    numLabels: 3,
    perLayer: { heads: [4, 2], intermediate: [64, 37] },
  });
}

function writeBert(dir: string, tiny: TinyModel): void {
  const tok = makeWordPieceTokenizerJson(BERT_WORDS);
  const size = Object.keys((tok.model as { vocab: Record<string, number> }).vocab).length;
  expect(size).toBeLessThanOrEqual(Number(tiny.config.vocab_size));
  tiny.config.pare_layer_widths = [
    { num_attention_heads: 4, num_key_value_heads: 4, intermediate_size: 64 },
    { num_attention_heads: 2, num_key_value_heads: 2, intermediate_size: 37 },
  ];
  writeTinyModel(dir, tiny, tok);
}

const PROMPT = [1, 45, 120, 7, 260, 99];

// ---------------------------------------------------------------------------------------------------------
// decoders

describe.each(DECODERS)("export of a decoder: $name", (c) => {
  let root: string;
  let tiny: TinyModel;
  let model: LoadedModel;
  let result: OnnxExportResult;
  let cached: Session;
  let full: Session;

  beforeAll(async () => {
    root = tempRoot("dec");
    tiny = c.tiny();
    writeDecoder(path.join(root, "src"), tiny);
    model = loadModel(path.join(root, "src"));
    result = exportOnnx(model, path.join(root, "out"));
    cached = await Session.create(path.join(root, "out", "onnx", "model.onnx"), { threads: 1 });
    full = await Session.create(emitModelGraph(model), { threads: 1 });
  });
  afterAll(async () => {
    await cached?.release();
    await full?.release();
    model?.close();
  });

  it("folder layout, ONNX header (opset 17, IR 8), config.json, inputs/outputs and notes", () => {
    expect(model.dims.layers.map((l) => [l.nHeads, l.nKv, l.ffn])).toEqual(c.widths);
    const out = path.join(root, "out");
    for (const f of ["onnx/model.onnx", "config.json", "tokenizer.json", "tokenizer_config.json"]) {
      expect(fs.statSync(path.join(out, f)).isFile(), f).toBe(true);
      expect(result.files).toContain(f);
    }
    expect(fs.existsSync(path.join(out, "onnx", "model.onnx_data"))).toBe(false);
    expect(result.out).toBe(path.resolve(out));
    expect(result.opset).toBe(17);
    expect(result.irVersion).toBe(8);
    expect(result.externalData).toBe(false);
    const header = onnxHeader(fs.readFileSync(path.join(out, "onnx", "model.onnx")));
    expect(header.irVersion).toBe(8);
    expect(header.opsets[""]).toBe(17);
    expect(header.producer).toBe("pare");
    // config.json is the model's config, pare_layer_widths and head_dim included
    const config = JSON.parse(fs.readFileSync(path.join(out, "config.json"), "utf8"));
    expect(config).toEqual(JSON.parse(fs.readFileSync(path.join(root, "src", "config.json"), "utf8")));
    expect(config.head_dim).toBe(8);
    // tokenizer files are copied byte for byte
    for (const f of ["tokenizer.json", "tokenizer_config.json"])
      expect(fs.readFileSync(path.join(out, f))).toEqual(fs.readFileSync(path.join(root, "src", f)));
    const L = c.widths.length;
    const kvNames = (prefix: string) =>
      Array.from({ length: L }, (_, i) => [`${prefix}.${i}.key`, `${prefix}.${i}.value`]).flat();
    expect(result.inputs).toEqual([
      "input_ids",
      "attention_mask",
      "position_ids",
      ...kvNames("past_key_values"),
    ]);
    expect([...result.outputs].sort()).toEqual(["logits", ...kvNames("present")].sort());
    expect([...cached.inputNames].sort()).toEqual([...result.inputs].sort());
    expect([...cached.outputNames].sort()).toEqual([...result.outputs].sort());
    expect(result.notes.some((n) => /KV-head counts differ/.test(n))).toBe(c.kvNote);
    expect(leftovers(root)).toEqual([]);
  });

  it("prefill with an empty past: logits equal pare's full forward (≤ 1e-4), present = [1, nKv_i, T, hd]", async () => {
    const V = model.dims.vocab;
    const T = PROMPT.length;
    const r = await cachedStep(cached, model, emptyCache(model, 1), [PROMPT]);
    const ref = await full.run({ input_ids: i64From([1, T], PROMPT) }, ["logits"]);
    expect(ref.logits.dims).toEqual([1, T, V]);
    expect(diff(`${c.name}: prefill logits vs pare`, r.logits, ref.logits.data as Float32Array)).toBeLessThan(
      1e-4,
    );
    model.dims.layers.forEach((L, i) => {
      expect(r.cache.past[`past_key_values.${i}.key`].dims).toEqual([1, L.nKv, T, model.dims.headDim]);
      expect(r.cache.past[`past_key_values.${i}.value`].dims).toEqual([1, L.nKv, T, model.dims.headDim]);
    });
  });

  it("10 greedy steps with the KV cache = full recompute with pare = float64 reference greedy", async () => {
    const steps = 10;
    const withCache = await cachedGreedy(cached, model, PROMPT, steps);
    const recompute = await fullGreedy(full, model, PROMPT, steps);
    expect(withCache.ids).toEqual(recompute.ids);
    for (let s = 0; s < steps; s++)
      expect(
        diff(`${c.name}: cached step logits vs full recompute`, withCache.logits[s], recompute.logits[s]),
        `step ${s}`,
      ).toBeLessThan(1e-4);
    const ref = referenceGreedy(tiny.config, tensorMap(tiny), PROMPT, steps);
    expect(withCache.ids).toEqual(ref);
  });

  it("left-padded batch of 2 prompts: each row's next-token logits equal the prompt run alone (≤ 1e-4)", async () => {
    const V = model.dims.vocab;
    const rng = new Rng(7);
    const prompts = [
      [1, ...Array.from({ length: 4 }, () => 3 + rng.int(V - 3))],
      [1, ...Array.from({ length: 8 }, () => 3 + rng.int(V - 3))],
    ];
    const T = Math.max(...prompts.map((p) => p.length));
    const padded = prompts.map((p) => [...new Array(T - p.length).fill(0), ...p]);
    const masks = prompts.map((p) => [...new Array(T - p.length).fill(0), ...new Array(p.length).fill(1)]);
    let batch = await cachedStep(cached, model, emptyCache(model, 2), padded, masks);
    // run alone, then feed both the same continuation (teacher forcing) for 3 more steps
    const alone = await Promise.all(
      prompts.map(async (p) => {
        let r = await cachedStep(cached, model, emptyCache(model, 1), [p]);
        const logits = [r.logits.slice((p.length - 1) * V, p.length * V)];
        const cont: number[] = [];
        for (let s = 0; s < 3; s++) {
          const next = argmax(logits[logits.length - 1]);
          cont.push(next);
          r = await cachedStep(cached, model, r.cache, [[next]]);
          logits.push(r.logits.slice(0, V));
        }
        return { logits, cont };
      }),
    );
    for (let b = 0; b < 2; b++)
      expect(
        diff(
          `${c.name}: left-padded batch vs alone`,
          batch.logits.slice((b * T + T - 1) * V, (b * T + T) * V),
          alone[b].logits[0],
        ),
        `row ${b}, prefill`,
      ).toBeLessThan(1e-4);
    for (let s = 0; s < 3; s++) {
      batch = await cachedStep(cached, model, batch.cache, [[alone[0].cont[s]], [alone[1].cont[s]]]);
      for (let b = 0; b < 2; b++)
        expect(
          diff(
            `${c.name}: left-padded batch vs alone`,
            batch.logits.slice(b * V, (b + 1) * V),
            alone[b].logits[s + 1],
          ),
          `row ${b}, step ${s + 1}`,
        ).toBeLessThan(1e-4);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------
// encoder

describe("export of a BERT classifier (per-layer heads 4/2, FFN 64/37, 3 labels)", () => {
  let root: string;
  let tiny: TinyModel;
  let model: LoadedModel;
  let result: OnnxExportResult;

  beforeAll(() => {
    root = tempRoot("bert");
    tiny = tinyBert();
    writeBert(path.join(root, "src"), tiny);
    model = loadModel(path.join(root, "src"));
    result = exportOnnx(model, path.join(root, "out"));
  });
  afterAll(() => model?.close());

  it("folder layout, header, encoder inputs/outputs, no notes", () => {
    const out = path.join(root, "out");
    for (const f of ["onnx/model.onnx", "config.json", "tokenizer.json", "tokenizer_config.json"]) {
      expect(fs.statSync(path.join(out, f)).isFile(), f).toBe(true);
      expect(result.files).toContain(f);
    }
    const header = onnxHeader(fs.readFileSync(path.join(out, "onnx", "model.onnx")));
    expect([header.irVersion, header.opsets[""]]).toEqual([8, 17]);
    expect([result.irVersion, result.opset]).toEqual([8, 17]);
    expect(result.inputs).toEqual(["input_ids", "attention_mask", "token_type_ids"]);
    expect(result.outputs).toEqual(["last_hidden_state", "pooled", "logits"]);
    expect(result.notes).toEqual([]);
    const config = JSON.parse(fs.readFileSync(path.join(out, "config.json"), "utf8"));
    expect(config.id2label).toEqual({ "0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2" });
    expect(config.pare_layer_widths).toHaveLength(2);
  });

  it("a right-padded batch: logits equal pare's forward and the float64 reference (≤ 1e-4)", async () => {
    const session = await Session.create(path.join(root, "out", "onnx", "model.onnx"), { threads: 1 });
    const own = await Session.create(emitModelGraph(model), { threads: 1 });
    try {
      const seqs = [
        { ids: [2, 5, 9, 14, 6, 3], types: [0, 0, 0, 0, 0, 0] },
        { ids: [2, 7, 3, 8, 11, 12, 10, 13, 3], types: [0, 0, 0, 1, 1, 1, 1, 1, 1] },
      ];
      const B = seqs.length;
      const T = 9;
      const pad = (xs: number[]) => [...xs, ...new Array(T - xs.length).fill(0)];
      const feeds = {
        input_ids: i64From(
          [B, T],
          seqs.flatMap((s) => pad(s.ids)),
        ),
        attention_mask: i64From(
          [B, T],
          seqs.flatMap((s) => pad(s.ids.map(() => 1))),
        ),
        token_type_ids: i64From(
          [B, T],
          seqs.flatMap((s) => pad(s.types)),
        ),
      };
      const r = await session.run(feeds, ["logits"]);
      const o = await own.run(feeds, ["logits"]);
      expect(r.logits.dims).toEqual([B, 3]);
      expect(
        diff("bert: exported vs pare", r.logits.data as Float32Array, o.logits.data as Float32Array),
      ).toBeLessThan(1e-4);
      seqs.forEach((s, b) => {
        const ref = referenceBertForward(tiny.config, tensorMap(tiny), s.ids, s.types);
        const got = (r.logits.data as Float32Array).subarray(b * 3, b * 3 + 3);
        expect(diff("bert: exported vs float64 reference", got, ref.logits!)).toBeLessThan(1e-4);
      });
    } finally {
      await session.release();
      await own.release();
    }
  });
});

// ---------------------------------------------------------------------------------------------------------
// errors and atomicity

describe("export errors leave nothing behind", () => {
  let root: string;
  let srcDir: string;

  beforeAll(() => {
    root = tempRoot("err");
    srcDir = path.join(root, "src");
    writeDecoder(srcDir, makeTinyLlama({ seed: 51 }));
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });

  /** a fresh parent folder holding an existing output folder `out` (one file) */
  function existingTarget(tag: string): { parent: string; out: string } {
    const parent = path.join(root, tag);
    const out = path.join(parent, "out");
    fs.mkdirSync(out, { recursive: true });
    fs.writeFileSync(path.join(out, "keep.txt"), "mine\n");
    return { parent, out };
  }

  function expectCode(fn: () => unknown, code: string): void {
    let err: unknown;
    try {
      fn();
    } catch (e) {
      err = e;
    }
    expect(isPareError(err), String(err)).toBe(true);
    expect((err as { code: string }).code).toBe(code);
  }

  it("existing output without force: E_OUTPUT_EXISTS, the folder is unchanged", () => {
    const { parent, out } = existingTarget("exists");
    const before = snapshotDir(parent);
    const model = loadModel(srcDir);
    try {
      expectCode(() => exportOnnx(model, out), "E_OUTPUT_EXISTS");
    } finally {
      model.close();
    }
    expect(snapshotDir(parent)).toEqual(before);
  });

  it("existing output with force: replaced by the export, no temporary or old folder left", () => {
    const { parent, out } = existingTarget("force");
    const model = loadModel(srcDir);
    try {
      const r = exportOnnx(model, out, { force: true });
      expect(r.out).toBe(out);
    } finally {
      model.close();
    }
    expect(fs.existsSync(path.join(out, "keep.txt"))).toBe(false);
    expect(fs.readdirSync(out).sort()).toEqual([
      "config.json",
      "onnx",
      "tokenizer.json",
      "tokenizer_config.json",
    ]);
    expect(fs.readdirSync(parent)).toEqual(["out"]);
  });

  /** the model with a weight source that fails when the graph builder reads one of layer 1's tensors */
  function failingMidway(model: LoadedModel): LoadedModel {
    const w = model.weights;
    const failing: WeightSource = {
      names: () => w.names(),
      has: (n) => w.has(n),
      shape: (n) => w.shape(n),
      get: (n) => {
        if (n.startsWith("model.layers.1.mlp.")) throw new Error(`injected failure reading ${n}`);
        return w.get(n);
      },
    };
    return { ...model, weights: failing };
  }

  it("a failure midway (while emitting the graph): the error propagates, no output and no temporary folder", () => {
    const parent = path.join(root, "midway");
    fs.mkdirSync(parent);
    const model = loadModel(srcDir);
    try {
      expect(() => exportOnnx(failingMidway(model), path.join(parent, "out"))).toThrow(/injected failure/);
    } finally {
      model.close();
    }
    expect(fs.readdirSync(parent)).toEqual([]);
  });

  it("a failure midway with force: the existing output is untouched, no temporary folder", () => {
    const { parent, out } = existingTarget("midway-force");
    const before = snapshotDir(parent);
    const model = loadModel(srcDir);
    try {
      expect(() => exportOnnx(failingMidway(model), out, { force: true })).toThrow(/injected failure/);
    } finally {
      model.close();
    }
    expect(snapshotDir(parent)).toEqual(before);
  });

  it("disk full while writing config.json (simulated ENOSPC): E_NO_SPACE, no output and no temporary folder", () => {
    const parent = path.join(root, "enospc");
    fs.mkdirSync(parent);
    const real = fs.writeFileSync;
    let injected = 0;
    vi.spyOn(fs, "writeFileSync").mockImplementation((file, data, opts) => {
      if (typeof file === "string" && path.basename(file) === "config.json" && file.includes(".tmp-")) {
        injected++;
        throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
      }
      return real(file, data, opts);
    });
    const model = loadModel(srcDir);
    try {
      expectCode(() => exportOnnx(model, path.join(parent, "out")), "E_NO_SPACE");
    } finally {
      model.close();
    }
    vi.restoreAllMocks();
    expect(injected).toBe(1);
    expect(fs.readdirSync(parent)).toEqual([]);
  });

  it.skipIf(IS_ROOT)(
    "unreadable source tokenizer.json (fails after the graph is written): E_IO, nothing left (skipped when running as root: file permissions do not apply)",
    () => {
      const src2 = path.join(root, "src-unreadable");
      writeDecoder(src2, makeTinyLlama({ seed: 52 }));
      const parent = path.join(root, "perm");
      fs.mkdirSync(parent);
      const model = loadModel(src2);
      fs.chmodSync(path.join(src2, "tokenizer.json"), 0o000);
      try {
        expectCode(() => exportOnnx(model, path.join(parent, "out")), "E_IO");
      } finally {
        fs.chmodSync(path.join(src2, "tokenizer.json"), 0o644);
        model.close();
      }
      expect(fs.readdirSync(parent)).toEqual([]);
    },
  );

  it("a source without tokenizer_config.json: one is written with model_max_length", () => {
    const src3 = path.join(root, "src-no-tokcfg");
    writeDecoder(src3, makeTinyLlama({ seed: 53 }));
    fs.rmSync(path.join(src3, "tokenizer_config.json"));
    const model = loadModel(src3);
    try {
      const r = exportOnnx(model, path.join(root, "no-tokcfg-out"));
      expect(r.files).toContain("tokenizer_config.json");
    } finally {
      model.close();
    }
    const cfg = JSON.parse(
      fs.readFileSync(path.join(root, "no-tokcfg-out", "tokenizer_config.json"), "utf8"),
    );
    expect(cfg.model_max_length).toBe(128);
  });

  it("a layer with 0 FFN channels (loaded from disk): coded error before anything is written", () => {
    const tiny = makeTinyLlama({ seed: 54, perLayer: { intermediate: [48, 0] } });
    tiny.config.pare_layer_widths = [
      { num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 48 },
      { num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 0 },
    ];
    const src4 = path.join(root, "src-empty-ffn");
    writeDecoder(src4, tiny);
    const parent = path.join(root, "empty-ffn");
    fs.mkdirSync(parent);
    const model = loadModel(src4);
    try {
      expect(model.dims.layers[1].ffn).toBe(0);
      expectCode(() => exportOnnx(model, path.join(parent, "out")), "E_LAYER_EMPTIED");
    } finally {
      model.close();
    }
    expect(fs.readdirSync(parent)).toEqual([]);
  });

  it("a layer with 0 heads (buildModel refuses such a folder, so the Model is made in memory): coded error, nothing written", () => {
    const parent = path.join(root, "empty-heads");
    fs.mkdirSync(parent);
    const model = loadModel(srcDir);
    try {
      const layers = model.dims.layers.map((l, i) => (i === 1 ? { ...l, nHeads: 0, nKv: 0 } : l));
      const emptied = { ...model, dims: { ...model.dims, layers } };
      expect(checkExportable(model)).toEqual([]);
      expectCode(() => checkExportable(emptied), "E_LAYER_EMPTIED");
      expectCode(() => exportOnnx(emptied, path.join(parent, "out")), "E_LAYER_EMPTIED");
      try {
        checkExportable(emptied);
      } catch (e) {
        expect((e as Error).message).toMatch(/layer 1 has 0 heads/);
      }
    } finally {
      model.close();
    }
    expect(fs.readdirSync(parent)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------------------
// CLI

describe("pare export (CLI)", () => {
  let root: string;
  let srcDir: string;

  beforeAll(() => {
    root = tempRoot("cli");
    srcDir = path.join(root, "src");
    writeDecoder(srcDir, nonUniformLlama(61));
  });

  it("--json: exactly one JSON object on stdout with the result", async () => {
    const out = path.join(root, "json-out");
    const r = await runCli(["export", srcDir, "--format", "onnx", "--out", out, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const j = parseSingleJson(r.stdout);
    expect(j.out).toBe(out);
    expect(j.opset).toBe(17);
    expect(j.irVersion).toBe(8);
    expect(j.externalData).toBe(false);
    expect(j.files).toEqual(expect.arrayContaining(["onnx/model.onnx", "config.json", "tokenizer.json"]));
    expect(j.inputs).toEqual(expect.arrayContaining(["input_ids", "attention_mask", "position_ids"]));
    expect((j.notes as string[]).some((n) => /KV-head counts differ/.test(n))).toBe(true);
    expect(fs.existsSync(path.join(out, "onnx", "model.onnx"))).toBe(true);
  });

  it("human output names the format (ONNX opset 17, IR 8) and the output folder", async () => {
    const out = path.join(root, "human-out");
    const r = await runCli(["export", srcDir, "--format", "onnx", "--out", out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/ONNX opset 17, IR 8/);
    expect(r.stdout).toContain(out);
    expect(r.stdout).toContain("onnx/model.onnx");
  });

  it("existing output: exit 1, error E_OUTPUT_EXISTS as JSON, the folder unchanged; --force replaces it", async () => {
    const out = path.join(root, "exists-out");
    fs.mkdirSync(out);
    fs.writeFileSync(path.join(out, "keep.txt"), "mine\n");
    const before = snapshotDir(root);
    const r = await runCli(["export", srcDir, "--format", "onnx", "--out", out, "--json"]);
    expect(r.code).toBe(1);
    expect((parseSingleJson(r.stdout).error as { code: string }).code).toBe("E_OUTPUT_EXISTS");
    expect(r.stderr).toMatch(/error\[E_OUTPUT_EXISTS\]/);
    expect(snapshotDir(root)).toEqual(before);
    const f = await runCli(["export", srcDir, "--format", "onnx", "--out", out, "--force", "--json"]);
    expect(f.code, f.stderr).toBe(0);
    expect(fs.existsSync(path.join(out, "keep.txt"))).toBe(false);
    expect(fs.existsSync(path.join(out, "onnx", "model.onnx"))).toBe(true);
    expect(leftovers(root)).toEqual([]);
  });

  it("unknown format: usage error (exit 2), nothing written", async () => {
    const out = path.join(root, "tflite-out");
    const r = await runCli(["export", srcDir, "--format", "tflite", "--out", out, "--json"]);
    expect(r.code).toBe(2);
    expect((parseSingleJson(r.stdout).error as { code: string }).code).toBe("E_USAGE");
    expect(fs.existsSync(out)).toBe(false);
  });

  // `pare export M --out M --force` replaces the input folder M with the export (model.safetensors is deleted),
  // and `pare export P/M --out P --force` deletes P with the model in it: export never compares --out with the
  // input, unlike prune's E_OUTPUT_INSIDE_INPUT check (src/pipeline/recipe.ts checkPaths).
  it("--out equal to the input folder, --force: refused (E_OUTPUT_INSIDE_INPUT), input unchanged", async () => {
    const victim = path.join(root, "victim");
    writeDecoder(victim, makeTinyLlama({ seed: 62 }));
    const before = snapshotDir(victim);
    const r = await runCli(["export", victim, "--format", "onnx", "--out", victim, "--force", "--json"]);
    expect(snapshotDir(victim)).toEqual(before);
    expect(r.code).toBe(1);
    expect((parseSingleJson(r.stdout).error as { code: string }).code).toBe("E_OUTPUT_INSIDE_INPUT");
  });

  it("--out a folder containing the input, --force: refused (E_OUTPUT_INSIDE_INPUT), nothing deleted", async () => {
    const parent = path.join(root, "victim-parent");
    const victim = path.join(parent, "model");
    writeDecoder(victim, makeTinyLlama({ seed: 63 }));
    const before = snapshotDir(parent);
    const r = await runCli(["export", victim, "--format", "onnx", "--out", parent, "--force", "--json"]);
    expect(snapshotDir(parent)).toEqual(before);
    expect(r.code).toBe(1);
    expect((parseSingleJson(r.stdout).error as { code: string }).code).toBe("E_OUTPUT_INSIDE_INPUT");
  });
});
