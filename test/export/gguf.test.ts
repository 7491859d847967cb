/**
 * GGUF export checked by llama.cpp itself (node-llama-cpp 3.21.1, its prebuilt CPU binary; nothing is compiled or
 * downloaded). For each model: pare writes the GGUF, llama.cpp loads it, and
 * - its next-token distribution after a prompt matches pare's own forward (top-10 probabilities within 1e-3 for
 *   f32; KL(pare ‖ llama.cpp) within a measured bound for f16 / bf16 / q8_0);
 * - its greedy continuation (32 tokens), fed back through pare's forward, is pare's argmax at every step except
 *   near-ties, where pare's top-2 logit margin is below the tolerance (llama.cpp keeps its KV cache in f16, uses
 *   flash attention and, for f16 / q8_0, rounded weights);
 * - its tokenizer gives pare's ids.
 * Tiny seeded models (dense, uniform and per-layer widths, created biases, tied / untied, Qwen2 / Qwen3, rope
 * scaling) always; the shared trained llama-gqa-6l dense and pruned at 0.3 / 0.5 (global and uniform) and the
 * tokenization of a few hundred lines of the shared corpora when ../shared exists. Without a loadable llama.cpp
 * binary the llama.cpp checks are skipped with a message; the format and error tests run regardless.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel } from "../../src/arch/load.ts";
import type { Model } from "../../src/arch/model.ts";
import {
  exportGguf,
  type GgufOuttype,
  ggufModelName,
  partialRopeFactors,
  permuteRope,
  prepareGguf,
} from "../../src/export/gguf.ts";
import {
  encodeQ4_0FromInts,
  quantizeQ4_0,
  quantizeQ4_0Ints,
  quantizeQ8_0,
  tensorType,
} from "../../src/export/ggufQuant.ts";
import { GgufMetadata, ggufHeader, ggufTensorBytes } from "../../src/export/ggufWriter.ts";
import { loadTokenizer } from "../../src/io/tokenizer.ts";
import { emitModelGraph } from "../../src/onnx/emit.ts";
import { i64From, Session } from "../../src/runtime/ort.ts";
import { f16BitsToF32 } from "../../src/tensor/dtype.ts";
import { REPO_ROOT, runCli } from "../helpers/cli.ts";
import { makeTinyGemma2, makeTinyGemma3, makeTinyPhi3, makeTinyQwen3 } from "../helpers/tinyFamilies.ts";
import {
  makeByteBpeTokenizerJson,
  makeTinyBert,
  makeTinyLlama,
  makeWordPieceTokenizerJson,
  nonUniformLlama,
  type TinyModel,
  writeTinyModel,
} from "../helpers/tinyModels.ts";
import { exampleLines, phi3Tokenizer } from "../helpers/tokenizerJsons.ts";
import { decodeQ4_0, q4Twin, refQ4_0, refQ4_0Block } from "./ggufQ4Reference.ts";

type NodeLlamaCpp = typeof import("node-llama-cpp");
type Llama = Awaited<ReturnType<NodeLlamaCpp["getLlama"]>>;
type Token = import("node-llama-cpp").Token;

/** llama.cpp through node-llama-cpp, or why it cannot be loaded here. */
async function openLlamaCpp(): Promise<{ llama?: Llama; why?: string }> {
  try {
    const mod: NodeLlamaCpp = await import("node-llama-cpp");
    const llama = await mod.getLlama({
      gpu: false,
      build: "never",
      logLevel: mod.LlamaLogLevel.error,
      progressLogs: false,
    });
    return { llama };
  } catch (e) {
    return { why: String((e as Error)?.message ?? e).split("\n")[0] };
  }
}
const LC = await openLlamaCpp();
if (!LC.llama) console.warn(`[gguf.test] llama.cpp checks skipped: node-llama-cpp cannot load (${LC.why})`);
const SHARED = path.resolve(REPO_ROOT, "../shared");
const HAVE_SHARED = fs.existsSync(path.join(SHARED, "models/llama-gqa-6l/config.json"));
if (!HAVE_SHARED) console.warn(`[gguf.test] shared-model checks skipped: ${SHARED} is missing`);

const ROOT = fs.mkdtempSync(path.join(os.tmpdir(), "pare-gguf-"));
afterAll(async () => {
  fs.rmSync(ROOT, { recursive: true, force: true });
  await LC.llama?.dispose();
});

/** Observed numbers, for the report (PARE_GGUF_REPORT=<file> writes them as JSON). */
const observed: Record<string, unknown> = {};
afterAll(() => {
  if (process.env.PARE_GGUF_REPORT)
    fs.writeFileSync(process.env.PARE_GGUF_REPORT, JSON.stringify(observed, null, 2));
});

const PROMPT = "the cat sat on the mat and the dog ran to the park";

// ---------------------------------------------------------------------------------------------------------
// both sides

/** pare's full forward: logits [T, V] of one sequence. */
async function pareLogits(model: Model, ids: number[]): Promise<Float32Array> {
  const s = await Session.create(emitModelGraph(model), { threads: 1 });
  try {
    const r = await s.run({ input_ids: i64From([1, ids.length], ids) }, ["logits"]);
    return r.logits.data as Float32Array;
  } finally {
    await s.release();
  }
}

function softmax(row: ArrayLike<number>): Float64Array {
  let m = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < row.length; i++) m = Math.max(m, row[i]);
  const p = new Float64Array(row.length);
  let z = 0;
  for (let i = 0; i < row.length; i++) z += p[i] = Math.exp(row[i] - m);
  for (let i = 0; i < row.length; i++) p[i] /= z;
  return p;
}

/**
 * llama.cpp's next-token distribution after `ids` and its greedy continuation of `n` tokens (EOS included and
 * generation continued past it, so that there are `n` tokens to compare).
 */
async function llamaCppRun(
  file: string,
  ids: number[],
  n: number,
  vocab: number,
): Promise<{ probs: Float64Array; greedy: number[] }> {
  const llama = LC.llama as Llama;
  const model = await llama.loadModel({ modelPath: file });
  try {
    const ctx = await model.createContext({ contextSize: 256, sequences: 2, threads: 1 });
    try {
      const probs = new Float64Array(vocab);
      const first = ctx
        .getSequence()
        .evaluateWithMetadata(ids as Token[], { probabilities: true }, { temperature: 0 });
      const out = await first.next();
      if (out.done) throw new Error("llama.cpp generated nothing");
      for (const [t, p] of out.value.probabilities) probs[t] = p;
      await first.return();
      const greedy: number[] = [];
      for await (const t of ctx
        .getSequence()
        .evaluate(ids as Token[], { temperature: 0, yieldEogToken: true })) {
        greedy.push(t);
        if (greedy.length >= n) break;
      }
      return { probs, greedy };
    } finally {
      await ctx.dispose();
    }
  } finally {
    await model.dispose();
  }
}

interface Parity {
  /** max |p_pare − p_llama| over llama.cpp's top 10 */
  top10: number;
  /** KL(pare ‖ llama.cpp) of the next-token distribution */
  kl: number;
  /** greedy steps compared (near-ties not counted) and the first mismatch, if any */
  compared: number;
  mismatch?: string;
}

/**
 * Compare llama.cpp on `file` with pare's forward of `model`: distribution after the prompt, and llama.cpp's greedy
 * continuation teacher-forced through pare (each token must be pare's argmax unless pare's top-2 logit margin is
 * below `tie`; such steps are not counted).
 */
async function parity(model: Model, file: string, prompt: number[], tie: number, n = 32): Promise<Parity> {
  const V = model.dims.vocab;
  const lc = await llamaCppRun(file, prompt, n, V);
  const seq = [...prompt, ...lc.greedy];
  const logits = await pareLogits(model, seq);
  const p = softmax(logits.subarray((prompt.length - 1) * V, prompt.length * V));
  const order = [...lc.probs.keys()].sort((a, b) => lc.probs[b] - lc.probs[a]).slice(0, 10);
  const top10 = Math.max(...order.map((t) => Math.abs(p[t] - lc.probs[t])));
  let kl = 0;
  for (let t = 0; t < V; t++) if (p[t] > 0) kl += p[t] * Math.log(p[t] / Math.max(lc.probs[t], 1e-30));
  let compared = 0;
  let mismatch: string | undefined;
  for (let k = 0; k < lc.greedy.length; k++) {
    const row = logits.subarray((prompt.length - 1 + k) * V, (prompt.length + k) * V);
    let a = 0;
    for (let t = 1; t < V; t++) if (row[t] > row[a]) a = t;
    let b = a === 0 ? 1 : 0;
    for (let t = 0; t < V; t++) if (t !== a && row[t] > row[b]) b = t;
    // a near-tie: llama.cpp (f16 KV cache, flash attention, quantized weights) may pick either; the prefix is
    // llama.cpp's own continuation, so later steps are still compared
    if (row[a] - row[b] < tie) continue;
    if (a !== lc.greedy[k]) {
      mismatch = `step ${k}: pare ${a} (margin ${(row[a] - row[b]).toFixed(4)}), llama.cpp ${lc.greedy[k]}`;
      break;
    }
    compared++;
  }
  return { top10, kl, compared, mismatch };
}

/** Bounds: top-10 |Δp| for f32; KL for the rest (measured on these models, about 10× headroom). */
const BOUND = {
  f32: { top10: 1e-3, kl: 1e-5, tie: 2e-3, minCompared: 20 },
  f16: { top10: 5e-3, kl: 1e-4, tie: 1e-2, minCompared: 12 },
  bf16: { top10: 2e-2, kl: 1e-3, tie: 5e-2, minCompared: 8 },
  q8_0: { top10: 2e-2, kl: 2e-3, tie: 5e-2, minCompared: 8 },
  // 4-bit weights against the f32 model: the distribution only (measured: KL ≤ 2.0e-3 and top-10 ≤ 1.9e-3 on
  // the llama / qwen / phi3 models, KL 7.5e-2 and top-10 0.14 on gemma3, whose hidden size 32 makes every row one
  // block); greedy tokens are compared against the dequantized twin instead (checkQ4Twin)
  q4_0: { top10: 0.3, kl: 0.2, tie: Number.POSITIVE_INFINITY, minCompared: 0 },
} as const;

function write(name: string, tiny: TinyModel, tok: object = makeByteBpeTokenizerJson(300)): string {
  const dir = path.join(ROOT, name);
  writeTinyModel(dir, tiny, tok);
  return dir;
}

async function checkModel(label: string, dir: string, outtypes: GgufOuttype[]): Promise<void> {
  const model = loadModel(dir);
  try {
    const tok = loadTokenizer(dir);
    const prompt = tok.encode(PROMPT);
    for (const outtype of outtypes) {
      const file = path.join(ROOT, `${path.basename(dir)}.${outtype}.gguf`);
      const r = exportGguf(model, file, { outtype, force: true });
      const got = await parity(model, file, prompt, BOUND[outtype].tie);
      observed[`${label} ${outtype}`] = { arch: r.arch, ...got };
      expect(got.mismatch, `${label} ${outtype}`).toBeUndefined();
      expect(got.compared, `${label} ${outtype}: greedy steps compared`).toBeGreaterThanOrEqual(
        BOUND[outtype].minCompared,
      );
      if (outtype === "f32") expect(got.top10, `${label} f32 top-10`).toBeLessThan(BOUND.f32.top10);
      expect(got.top10, `${label} ${outtype} top-10`).toBeLessThan(BOUND[outtype].top10);
      expect(got.kl, `${label} ${outtype} KL`).toBeLessThan(BOUND[outtype].kl);
    }
  } finally {
    model.close();
  }
}

/**
 * q4_0 against what it should compute: llama.cpp on pare's q4_0 file vs pare's forward of the dequantized twin
 * (the weights llama.cpp multiplies with, from the test's own reference RTN). What is left is llama.cpp's 8-bit
 * activations in its Q4_0 matmul and its f16 KV cache, so q8_0's bounds apply, greedy tokens included.
 */
async function checkQ4Twin(label: string, tiny: TinyModel, dir: string): Promise<void> {
  const twinDir = write(`${path.basename(dir)}-q4twin`, q4Twin(tiny, quantizeQ8_0));
  const model = loadModel(dir);
  const twin = loadModel(twinDir);
  try {
    const file = path.join(ROOT, `${path.basename(dir)}.q4_0.gguf`);
    const r = exportGguf(model, file, { outtype: "q4_0", force: true });
    expect(r.types.Q4_0, `${label}: Q4_0 tensors`).toBeGreaterThan(0);
    const prompt = loadTokenizer(dir).encode(PROMPT);
    const got = await parity(twin, file, prompt, BOUND.q8_0.tie);
    observed[`${label} q4_0 vs dequantized twin`] = got;
    expect(got.mismatch, `${label} q4_0 twin`).toBeUndefined();
    expect(got.compared, `${label} q4_0 twin: greedy steps compared`).toBeGreaterThanOrEqual(
      BOUND.q8_0.minCompared,
    );
    expect(got.top10, `${label} q4_0 twin top-10`).toBeLessThan(BOUND.q8_0.top10);
    expect(got.kl, `${label} q4_0 twin KL`).toBeLessThan(BOUND.q8_0.kl);
  } finally {
    model.close();
    twin.close();
  }
}

// ---------------------------------------------------------------------------------------------------------
// format units (no llama.cpp needed)

describe("GGUF format", () => {
  it("header: magic, version 3, counts, typed key/values, tensor infos with reversed dims, aligned offsets", () => {
    const meta = new GgufMetadata().str("general.architecture", "llama").u32("a.b", 7).arrU32("a.c", [1, 2]);
    const t = (name: string, shape: number[]) => ({
      name,
      shape,
      type: "F32" as const,
      encode: () => new Uint8Array(0),
    });
    const { header, offsets, dataBytes } = ggufHeader(meta, [t("x", [3, 5]), t("y", [7])]);
    const v = new DataView(header.buffer, header.byteOffset, header.length);
    expect(header.subarray(0, 4).toString("latin1")).toBe("GGUF");
    expect(v.getUint32(4, true)).toBe(3);
    expect(Number(v.getBigUint64(8, true))).toBe(2);
    expect(Number(v.getBigUint64(16, true))).toBe(3);
    expect(header.length % 32).toBe(0);
    expect(offsets).toEqual([0, 64]); // 60 bytes padded to 64
    expect(dataBytes).toBe(64 + 32);
    // tensor "x": n_dims 2, ne0 = 5 (row length) first
    const at = header.indexOf(Buffer.from("x", "latin1"), 24 + 100);
    expect(v.getUint32(at + 1, true)).toBe(2);
    expect(Number(v.getBigUint64(at + 5, true))).toBe(5);
    expect(Number(v.getBigUint64(at + 13, true))).toBe(3);
  });

  it("Q8_0 blocks: f16 scale max|x|/127, int8 round-half-away, dequantize within half a step", () => {
    const x = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i * 0.7) * (i < 32 ? 3 : 0.01));
    x[5] = 0;
    const q = quantizeQ8_0(x);
    expect(q.length).toBe(2 * 34);
    const v = new DataView(q.buffer);
    for (let b = 0; b < 2; b++) {
      const d = f16BitsToF32(v.getUint16(b * 34, true));
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]));
      expect(Math.abs(d - amax / 127)).toBeLessThan(1e-3 * d);
      for (let j = 0; j < 32; j++) {
        const qj = v.getInt8(b * 34 + 2 + j);
        expect(Math.abs(qj * d - x[b * 32 + j])).toBeLessThanOrEqual(0.5 * d + 1e-3 * d * 127);
      }
    }
    expect(quantizeQ8_0(new Float32Array(32)).every((b) => b === 0)).toBe(true);
  });

  it("Q4_0 round-to-nearest equals the float32 reference of quantize_row_q4_0_ref, bytes and integers", () => {
    const rows = 6;
    const cols = 64;
    const x = Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i * 1.37) * (1 + (i % 7)) * 0.01);
    // edge cases: an all-zero block, a negative extreme, two extremes of equal magnitude (the first wins),
    // values exactly on the rounding boundaries of the block scale
    x.fill(0, 64, 96);
    x[100] = -0.5;
    x[130] = 0.25;
    x[131] = -0.25;
    for (let j = 0; j < 32; j++) x[320 + j] = ((j % 17) - 8) * 0.125 + (j === 0 ? 0 : 0.0625 * (j % 2));
    x[320] = 1; // d = −1/8: x·(1/d) lands on k + 0.5 for the ±0.0625 offsets
    const got = quantizeQ4_0Ints(x, rows, cols);
    const ref = refQ4_0(x);
    expect([...got.q]).toEqual([...ref.q]);
    expect([...got.scales]).toEqual([...ref.scales]);
    // an all-zero block: d = 0 / −8 = −0 (f16 0x8000, as ggml writes it), every q = 0
    expect(Object.is(got.scales[2], -0)).toBe(true);
    expect(got.q.subarray(64, 96).every((v) => v === 0)).toBe(true);
    expect(refQ4_0Block(x.subarray(128, 160)).d).toBe(Math.fround(0.25 / -8));
    const bytes = quantizeQ4_0(x, rows, cols);
    expect(bytes.length).toBe(((rows * cols) / 32) * 18);
    expect([bytes[2 * 18], bytes[2 * 18 + 1]]).toEqual([0x00, 0x80]);
    // decoded: within half a step of the input (d·q with the f16 scale), a whole step where q = 7 clips the
    // side opposite the extreme (which maps to −8)
    const back = decodeQ4_0(bytes);
    for (let i = 0; i < x.length; i++) {
      const d = Math.abs(ref.scales[i >> 5]);
      const step = ref.q[i] === 7 ? 1 : 0.5;
      expect(Math.abs(back[i] - x[i])).toBeLessThanOrEqual(step * d + 1e-3 * d * 8);
    }
  });

  it("pre-quantized Q4_0 (encodeQ4_0FromInts) given the reference RTN integers is bit-exact with the RTN path", () => {
    const rows = 5;
    const cols = 96;
    const x = Float32Array.from(
      { length: rows * cols },
      (_, i) => Math.cos(i * 0.911) * 0.05 + (i % 13) * 1e-3,
    );
    const ref = refQ4_0(x);
    const pre = encodeQ4_0FromInts(ref.q, ref.scales, rows, cols);
    expect(Buffer.from(pre).equals(Buffer.from(quantizeQ4_0(x, rows, cols)))).toBe(true);
    // layout: f16 scale, then byte j = (q_j + 8) | (q_{j+16} + 8) << 4
    const q = new Int8Array(32).map((_, j) => (j % 16) - 8);
    const one = encodeQ4_0FromInts(q, Float32Array.of(0.5), 1, 32);
    expect([...one.subarray(0, 2)]).toEqual([0x00, 0x38]); // 0.5 as f16 = 0x3800
    expect(one[2]).toBe(0 | (0 << 4));
    expect(one[17]).toBe(15 | (15 << 4));
    expect([...decodeQ4_0(one)]).toEqual([...q].map((v) => v * 0.5));
    // the contract is checked before anything is encoded
    expect(() =>
      encodeQ4_0FromInts(Int8Array.of(8, ...new Array(31).fill(0)), Float32Array.of(1), 1, 32),
    ).toThrow(/outside \[-8, 7\]/);
    expect(() => encodeQ4_0FromInts(new Int8Array(48), Float32Array.of(1, 1), 1, 48)).toThrow(
      /multiple of 32/,
    );
    expect(() => encodeQ4_0FromInts(new Int8Array(64), Float32Array.of(1), 1, 64)).toThrow(/2 blocks/);
    expect(() => encodeQ4_0FromInts(new Int8Array(32), Float32Array.of(Number.NaN), 1, 32)).toThrow(
      /scale 0/,
    );
  });

  it("q4_0 tensor types: llama-quantize's choices (norms / biases F32, output Q8_0 for Q6_K, F16 for odd rows)", () => {
    expect(tensorType("blk.0.attn_q.weight", [64, 32], "q4_0")).toBe("Q4_0");
    expect(tensorType("token_embd.weight", [300, 32], "q4_0")).toBe("Q4_0");
    expect(tensorType("token_embd.weight", [300, 32], "q4_0", true)).toBe("Q8_0");
    expect(tensorType("output.weight", [300, 32], "q4_0")).toBe("Q8_0");
    expect(tensorType("blk.0.ffn_down.weight", [32, 48], "q4_0")).toBe("F16");
    expect(tensorType("blk.0.attn_norm.weight", [32], "q4_0")).toBe("F32");
    expect(tensorType("blk.0.attn_q.bias", [64], "q4_0")).toBe("F32");
  });

  it("partial rotary as frequency divisors: base^(2i/rot − 2i/hd) on rotated pairs, no rotation after", () => {
    const f = partialRopeFactors(8, 4, 10000);
    expect(f.length).toBe(4);
    // ggml's angle for pair i: pos·base^(−2i/hd) / f_i; Hugging Face's: pos·base^(−2i/rot) for i < rot/2
    for (let i = 0; i < 2; i++)
      expect(10000 ** (-(2 * i) / 8) / f[i]).toBeCloseTo(10000 ** (-(2 * i) / 4), 6);
    expect(f[2]).toBeGreaterThan(1e29);
    expect(Math.cos(Math.fround(4096 / f[3]))).toBe(1);
    // partial permutation: the first rot rows of each head interleaved, the rest in place
    const x = Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7]);
    expect([...permuteRope(x, 8, 8, 4)]).toEqual([0, 2, 1, 3, 4, 5, 6, 7]);
  });

  it("general.name avoids llama.cpp's Phi-3 vocabulary lookups when the vocabulary lacks their tokens", () => {
    expect(ggufModelName("phi3-pruned", ["a", "b"])).toBe("phi_3-pruned");
    expect(ggufModelName("Phi-3-mini", ["a"])).toBe("Phi-_3-mini");
    expect(ggufModelName("phi3", ["</s>", "<unk>", "<s>", "<|endoftext|>"])).toBe("phi3");
    expect(ggufModelName("llama-x", [])).toBe("llama-x");
  });

  it("Q/K permutation: each head's rotate-half halves become interleaved pairs (llama.cpp's LlamaModel.permute)", () => {
    // 2 heads of head_dim 4, 1 column: rows [a0 a1 b0 b1] → [a0 b0 a1 b1]
    const x = Float32Array.from([10, 11, 20, 21, 30, 31, 40, 41]);
    expect([...permuteRope(x, 8, 4)]).toEqual([10, 20, 11, 21, 30, 40, 31, 41]);
    const y = Float32Array.from({ length: 16 }, (_, i) => i); // 8 rows × 2 columns
    expect([...permuteRope(y, 8, 4)].slice(0, 8)).toEqual([0, 1, 4, 5, 2, 3, 6, 7]);
  });
});

// ---------------------------------------------------------------------------------------------------------
// refusals: before writing, coded, nothing left

describe("GGUF export refuses what llama.cpp cannot run, before writing", () => {
  const leftovers = (dir: string) => fs.readdirSync(dir).filter((f) => f.includes(".tmp-"));

  it("an encoder (BERT) and an unsupported tokenizer: coded errors, no file", async () => {
    const bert = write("bert", makeTinyBert({ seed: 4 }), makeWordPieceTokenizerJson(["the", "cat"]));
    const out = path.join(ROOT, "bert.gguf");
    const r = await runCli(["export", bert, "--format", "gguf", "--out", out, "--json"]);
    expect(r.code).not.toBe(0);
    expect(JSON.parse(r.stdout).error.code).toBe("E_ARCH_UNSUPPORTED");
    expect(fs.existsSync(out)).toBe(false);

    const wp = write(
      "llama-wordpiece",
      makeTinyLlama({ seed: 5, vocab: 300 }),
      makeWordPieceTokenizerJson(["the"]),
    );
    const m = loadModel(wp);
    try {
      expect(() => exportGguf(m, path.join(ROOT, "wp.gguf"))).toThrow(/llama\.cpp cannot tokenize/);
      try {
        exportGguf(m, path.join(ROOT, "wp.gguf"));
      } catch (e) {
        expect((e as { code: string }).code).toBe("E_TOKENIZER_INVALID");
      }
    } finally {
      m.close();
    }
    expect(fs.existsSync(path.join(ROOT, "wp.gguf"))).toBe(false);
    expect(leftovers(ROOT)).toEqual([]);
  });

  it("SentencePiece-style merges llama.cpp would apply differently: refused with the pieces named", () => {
    // merges learned by plain BPE: "▁t" + "he" = "▁the" is in the vocab but not a listed merge
    const files = phi3Tokenizer("legacy");
    const tj = files["tokenizer.json"] as { model: { vocab: Record<string, number> } };
    const V = Math.max(...Object.values(tj.model.vocab)) + 10;
    const dir = write("llama-learned-spm", makeTinyLlama({ seed: 6, vocab: V }), tj);
    fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify(files["tokenizer_config.json"]));
    const m = loadModel(dir);
    try {
      expect(() => prepareGguf(m, "f16")).toThrow(/would merge .* which tokenizer\.json's merges never do/);
    } finally {
      m.close();
    }
  });

  it("non-uniform Qwen3 (llama.cpp's qwen3 has one width): E_ARCH_UNSUPPORTED with the --allocation uniform hint", async () => {
    const dir = write(
      "qwen3-varying",
      makeTinyQwen3({ seed: 7, perLayer: { heads: [4, 2], kvHeads: [2, 1], intermediate: [48, 21] } }),
    );
    const out = path.join(ROOT, "qwen3-varying.gguf");
    const r = await runCli(["export", dir, "--format", "gguf", "--out", out]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/error\[E_ARCH_UNSUPPORTED\]/);
    expect(r.stderr).toMatch(/--allocation uniform/);
    expect(fs.existsSync(out)).toBe(false);
  });

  it("per-layer Qwen3 that openelm cannot hold (q/k/v biases) and per-layer Gemma: refused with the reason and a hint", () => {
    const cases = [
      {
        name: "qwen3-varying-bias",
        tiny: makeTinyQwen3({
          seed: 9,
          tie: true,
          attentionBias: true,
          perLayer: { heads: [4, 2], kvHeads: [2, 1], intermediate: [48, 21] },
        }),
        message: /openelm architecture, which has no biases/,
        hint: /--create-bias never/,
      },
      {
        name: "gemma3-varying",
        tiny: makeTinyGemma3({
          seed: 10,
          perLayer: { heads: [4, 2, 4, 4], kvHeads: [2, 1, 2, 2], intermediate: [48, 20, 48, 48] },
        }),
        message: /gemma3 reads one width for all layers/,
        hint: /--allocation uniform/,
      },
      {
        name: "gemma2-varying",
        tiny: makeTinyGemma2({
          seed: 10,
          perLayer: { heads: [4, 2, 4], kvHeads: [2, 1, 2], intermediate: [48, 20, 48] },
        }),
        message: /gemma2 reads one width for all layers/,
        hint: /--allocation uniform/,
      },
    ];
    for (const c of cases) {
      const m = loadModel(write(c.name, c.tiny));
      try {
        let err: { code?: string; message?: string; hint?: string } = {};
        try {
          prepareGguf(m, "f32");
        } catch (e) {
          err = e as typeof err;
        }
        expect(err.code, c.name).toBe("E_ARCH_UNSUPPORTED");
        expect(err.message, c.name).toMatch(c.message);
        expect(err.hint, c.name).toMatch(c.hint);
      } finally {
        m.close();
      }
    }
  });

  it("Phi-3: its sliding window written as the converter does, with a note; llama3 rope scaling refused", () => {
    const m = loadModel(write("phi3-window", makeTinyPhi3({ seed: 45 })));
    try {
      const { plan, meta } = prepareGguf(m, "f32");
      expect(plan.arch).toBe("phi3");
      expect(meta.get("phi3.attention.sliding_window")).toBe(4);
      expect(meta.get("phi3.rope.dimension_count")).toBe(4);
      expect(plan.notes.join("\n")).toMatch(/its phi3 disables it.*at most 4 tokens/);
    } finally {
      m.close();
    }
    const t = makeTinyPhi3({ seed: 46, slidingWindow: null, heads: 2, kvHeads: 1, headDim: 8 });
    t.config.rope_scaling = {
      rope_type: "llama3",
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 8,
    };
    const m3 = loadModel(write("phi3-llama3", t));
    try {
      expect(() => prepareGguf(m3, "f32")).toThrow(/llama3 rope scaling on phi3/);
    } finally {
      m3.close();
    }
  });

  it("an existing output needs --force; a bad --outtype is a usage error; a failed write leaves nothing", async () => {
    const dir = write("llama-exists", makeTinyLlama({ seed: 8 }));
    const out = path.join(ROOT, "exists.gguf");
    fs.writeFileSync(out, "keep me");
    const r = await runCli(["export", dir, "--format", "gguf", "--out", out]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/E_OUTPUT_EXISTS/);
    expect(fs.readFileSync(out, "utf8")).toBe("keep me");
    const bad = await runCli([
      "export",
      dir,
      "--format",
      "gguf",
      "--out",
      out,
      "--outtype",
      "q2_k",
      "--force",
    ]);
    expect(bad.stderr).toMatch(/E_USAGE/);
    expect(fs.readFileSync(out, "utf8")).toBe("keep me");
    const ok = await runCli(["export", dir, "--format", "gguf", "--out", out, "--force", "--json"]);
    expect(ok.code).toBe(0);
    const res = JSON.parse(ok.stdout);
    expect(res.arch).toBe("llama");
    expect(fs.statSync(out).size).toBe(res.bytes);
    expect(fs.readFileSync(out).subarray(0, 4).toString("latin1")).toBe("GGUF");
    const q4 = await runCli([
      "export",
      dir,
      "--format",
      "gguf",
      "--out",
      out,
      "--force",
      "--outtype",
      "q4_0",
      "--json",
    ]);
    expect(q4.code).toBe(0);
    const r4 = JSON.parse(q4.stdout);
    expect(r4.outtype).toBe("q4_0");
    expect(r4.types.Q4_0).toBeGreaterThan(0);
    expect(fs.statSync(out).size).toBe(r4.bytes);

    // a tensor that fails while being written: the temporary file is removed, the old output is kept
    const m = loadModel(dir);
    try {
      const w = m.weights;
      const broken = {
        ...m,
        weights: {
          ...w,
          names: () => w.names(),
          has: (n: string) => w.has(n),
          shape: (n: string) => w.shape(n),
          get: (n: string) => {
            if (n.includes("layers.1.mlp")) throw new Error("disk gone");
            return w.get(n);
          },
        },
      };
      expect(() => exportGguf(broken, out, { force: true })).toThrow();
    } finally {
      m.close();
    }
    expect(fs.statSync(out).size).toBe(r4.bytes);
    expect(leftovers(ROOT)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------------------
// llama.cpp parity on tiny seeded models

/** A llama whose created o/down biases are declared as pare's prune declares them (attention_bias / mlp_bias). */
function uniformShape(t: TinyModel): TinyModel {
  t.config.mlp_bias = true;
  t.config.attention_bias = true;
  for (let l = 0; l < Number(t.config.num_hidden_layers); l++) {
    const o = t.tensors.find((x) => x.name === `model.layers.${l}.self_attn.o_proj.bias`);
    if (!o) continue;
    for (const [n, rows] of [
      ["q_proj", Number(t.config.num_attention_heads) * Number(t.config.head_dim)],
      ["k_proj", Number(t.config.num_key_value_heads) * Number(t.config.head_dim)],
      ["v_proj", Number(t.config.num_key_value_heads) * Number(t.config.head_dim)],
    ] as const)
      t.tensors.push({
        name: `model.layers.${l}.self_attn.${n}.bias`,
        shape: [rows],
        data: new Float32Array(rows),
      });
    for (const n of ["gate_proj", "up_proj"]) {
      const rows = Number(t.config.intermediate_size);
      t.tensors.push({
        name: `model.layers.${l}.mlp.${n}.bias`,
        shape: [rows],
        data: new Float32Array(rows),
      });
    }
  }
  return t;
}

/** Final norm scaled so that a tied tiny model's next-token distribution is not one-hot (max p ≈ 0.1, not ≈ 1). */
function scaleFinalNorm(t: TinyModel, f: number): TinyModel {
  const n = t.tensors.find((x) => x.name === "model.norm.weight");
  if (!n) throw new Error("no model.norm.weight");
  n.data = n.data.map((v) => v * f);
  return t;
}

const TINY: {
  label: string;
  tiny: () => TinyModel;
  arch: string;
  outtypes: GgufOuttype[];
  /** also check q4_0 against the dequantized twin (llama layouts with no scale folded into 2-D weights) */
  q4Twin?: boolean;
}[] = [
  {
    label: "llama dense untied",
    tiny: () => makeTinyLlama({ seed: 11 }),
    arch: "llama",
    outtypes: ["f32", "f16", "bf16", "q8_0", "q4_0"],
    q4Twin: true,
  },
  {
    label: "llama dense tied",
    tiny: () => makeTinyLlama({ seed: 12, tie: true }),
    arch: "llama",
    outtypes: ["f32", "q8_0", "q4_0"],
    q4Twin: true,
  },
  {
    label: "llama uniform-pruned shape (heads·head_dim ≠ hidden) with created o/down biases",
    tiny: () =>
      uniformShape(
        makeTinyLlama({ seed: 13, headDim: 16, heads: 1, kvHeads: 1, intermediate: 32, consumerBias: true }),
      ),
    arch: "llama",
    outtypes: ["f32", "q8_0"],
  },
  {
    label: "llama per-layer widths (global allocation)",
    tiny: () => nonUniformLlama(14),
    arch: "deci",
    outtypes: ["f32", "f16", "q8_0", "q4_0"],
    q4Twin: true,
  },
  {
    label: "llama per-layer widths with created biases, tied",
    tiny: () => {
      const t = makeTinyLlama({
        seed: 15,
        layers: 3,
        tie: true,
        consumerBias: true,
        perLayer: { heads: [4, 2, 2], kvHeads: [2, 1, 2], intermediate: [48, 20, 33] },
      });
      t.config.pare_layer_widths = [4, 2, 2].map((h, i) => ({
        num_attention_heads: h,
        num_key_value_heads: [2, 1, 2][i],
        intermediate_size: [48, 20, 33][i],
      }));
      return t;
    },
    arch: "deci",
    outtypes: ["f32"],
  },
  {
    label: "llama linear rope scaling",
    tiny: () => {
      const t = makeTinyLlama({ seed: 16 });
      t.config.rope_scaling = { rope_type: "linear", factor: 2.0 };
      return t;
    },
    arch: "llama",
    outtypes: ["f32"],
  },
  {
    label: "llama llama3 rope scaling",
    tiny: () => {
      const t = makeTinyLlama({ seed: 17, headDim: 16, heads: 2, kvHeads: 1 });
      t.config.rope_theta = 500000;
      t.config.rope_scaling = {
        rope_type: "llama3",
        factor: 8,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 8,
      };
      return t;
    },
    arch: "llama",
    outtypes: ["f32"],
  },
  {
    label: "mistral",
    tiny: () => makeTinyLlama({ seed: 18, modelType: "mistral" }),
    arch: "llama",
    outtypes: ["f32"],
  },
  {
    label: "qwen2 dense (q/k/v biases)",
    tiny: () => makeTinyLlama({ seed: 19, modelType: "qwen2", heads: 4, kvHeads: 2, headDim: 8 }),
    arch: "qwen2",
    outtypes: ["f32", "q8_0", "q4_0"],
    q4Twin: true,
  },
  {
    label: "qwen2 uniform-pruned shape → llama with permuted q/k biases",
    tiny: () =>
      makeTinyLlama({
        seed: 20,
        modelType: "qwen2",
        heads: 2,
        kvHeads: 1,
        intermediate: 20,
      }),
    arch: "llama",
    outtypes: ["f32"],
  },
  {
    label: "qwen2 per-layer widths → deci",
    tiny: () => {
      const t = makeTinyLlama({
        seed: 21,
        modelType: "qwen2",
        perLayer: { heads: [4, 2], kvHeads: [2, 1], intermediate: [48, 20] },
      });
      t.config.pare_layer_widths = [
        { num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 48 },
        { num_attention_heads: 2, num_key_value_heads: 1, intermediate_size: 20 },
      ];
      return t;
    },
    arch: "deci",
    outtypes: ["f32"],
  },
  {
    label: "qwen3 dense untied",
    tiny: () => makeTinyQwen3({ seed: 22 }),
    arch: "qwen3",
    outtypes: ["f32", "q8_0", "q4_0"],
    q4Twin: true,
  },
  {
    label: "qwen3 uniform-pruned shape, tied",
    tiny: () =>
      makeTinyQwen3({
        seed: 23,
        tie: true,
        heads: 2,
        kvHeads: 1,
        intermediate: 24,
      }),
    arch: "qwen3",
    outtypes: ["f32"],
  },
  {
    label: "gemma2 (soft-caps, query_pre_attn_scalar, sliding window 4 on alternate layers)",
    tiny: () => makeTinyGemma2({ seed: 24 }),
    arch: "gemma2",
    outtypes: ["f32", "q8_0"],
  },
  {
    label: "gemma3 (q/k norms, local RoPE base, linear scaling on global layers, window 4)",
    tiny: () => makeTinyGemma3({ seed: 25 }),
    arch: "gemma3",
    outtypes: ["f32", "q8_0", "q4_0"],
  },
  {
    label: "gemma3 untied, uniform-pruned shape",
    tiny: () => makeTinyGemma3({ seed: 26, tie: false, heads: 2, kvHeads: 1, intermediate: 40 }),
    arch: "gemma3",
    outtypes: ["f32"],
  },
  {
    label: "phi3 dense untied, partial rotary 0.5 (fused qkv / gate_up as llama.cpp's converter writes them)",
    tiny: () => makeTinyPhi3({ seed: 27, slidingWindow: null }),
    arch: "phi3",
    outtypes: ["f32", "q8_0", "q4_0"],
    q4Twin: true,
  },
  {
    label: "phi3 dense tied, full rotary",
    tiny: () => makeTinyPhi3({ seed: 28, slidingWindow: null, tie: true, partialRotaryFactor: 1 }),
    arch: "phi3",
    outtypes: ["f32"],
  },
  {
    label: "phi3 uniform-pruned shape (query width < hidden) → llama with partial rotary as rope_freqs",
    tiny: () =>
      makeTinyPhi3({ seed: 29, slidingWindow: null, heads: 2, kvHeads: 1, headDim: 8, intermediate: 24 }),
    arch: "llama",
    outtypes: ["f32", "q8_0"],
  },
  {
    label: "phi3 per-layer widths → deci with partial rotary as rope_freqs",
    tiny: () =>
      makeTinyPhi3({
        seed: 30,
        slidingWindow: null,
        layers: 3,
        partialRotaryFactor: 0.75,
        perLayer: { heads: [4, 2, 3], kvHeads: [2, 1, 1], intermediate: [48, 20, 33] },
      }),
    arch: "deci",
    outtypes: ["f32"],
  },
  {
    label: "qwen3 per-layer widths, tied → openelm",
    tiny: () =>
      scaleFinalNorm(
        makeTinyQwen3({
          seed: 32,
          tie: true,
          layers: 3,
          perLayer: { heads: [4, 2, 2], kvHeads: [2, 1, 2], intermediate: [48, 21, 32] },
        }),
        0.2,
      ),
    arch: "openelm",
    outtypes: ["f32", "q8_0", "q4_0"],
    q4Twin: true,
  },
];

describe.skipIf(!LC.llama).each(TINY)("llama.cpp runs pare's GGUF of the tiny $label", (c) => {
  let dir: string;
  let tiny: TinyModel;
  beforeAll(() => {
    tiny = c.tiny();
    dir = write(`tiny-${c.label.replace(/[^a-z0-9]+/gi, "-")}`, tiny);
  });
  it(`architecture ${c.arch}; greedy 32 tokens and next-token distribution equal pare's (${c.outtypes.join(", ")})`, async () => {
    const m = loadModel(dir);
    try {
      expect(prepareGguf(m, "f32").plan.arch).toBe(c.arch);
    } finally {
      m.close();
    }
    await checkModel(c.label, dir, c.outtypes);
  });
  if (c.q4Twin)
    it("q4_0: llama.cpp equals pare's forward of the dequantized twin (q8_0 bounds, greedy included)", async () => {
      await checkQ4Twin(c.label, tiny, dir);
    });
});

describe.skipIf(!LC.llama)("llama.cpp on models pruned by pare (tiny, runPrune)", () => {
  it.each([
    { allocation: "uniform" as const, arch: "llama" },
    { allocation: "global" as const, arch: "deci" },
  ])(
    "$allocation allocation at 0.4 with liar reconstruction (created biases) → $arch",
    async ({ allocation, arch }) => {
      const { runPrune } = await import("../../src/pipeline/prune.ts");
      const { resolveRecipe } = await import("../../src/pipeline/recipe.ts");
      const src = write(
        `prune-src-${allocation}`,
        makeTinyLlama({ seed: 31, layers: 3, heads: 4, kvHeads: 4, intermediate: 64 }),
      );
      const calib = path.join(ROOT, "calib.txt");
      fs.writeFileSync(calib, exampleLines().slice(0, 80).join("\n"));
      const out = path.join(ROOT, `pruned-${allocation}`);
      await runPrune(
        resolveRecipe({
          model: src,
          out,
          calib: [calib],
          ratio: 0.4,
          allocation,
          samples: 6,
          seqLen: 16,
          threads: 1,
        }),
      );
      const m = loadModel(out);
      try {
        expect(prepareGguf(m, "f32").plan.arch).toBe(arch);
        if (allocation === "global") expect(new Set(m.dims.layers.map((l) => l.ffn)).size).toBeGreaterThan(1);
      } finally {
        m.close();
      }
      await checkModel(`tiny pruned ${allocation}`, out, ["f32", "q8_0"]);
    },
  );
});

describe.skipIf(!LC.llama)("llama.cpp on Qwen3 / Gemma 3 pruned by pare with --create-bias never", () => {
  it.each([
    { family: "qwen3", tiny: () => makeTinyQwen3({ seed: 41, heads: 4, kvHeads: 2 }), arch: "qwen3" },
    { family: "gemma3", tiny: () => makeTinyGemma3({ seed: 42 }), arch: "gemma3" },
  ])(
    "uniform 0.4, liar without created biases → $arch runs with pare's parity",
    async ({ family, tiny, arch }) => {
      const { runPrune } = await import("../../src/pipeline/prune.ts");
      const { resolveRecipe } = await import("../../src/pipeline/recipe.ts");
      const src = write(`nobias-src-${family}`, tiny());
      const calib = path.join(ROOT, "calib.txt");
      fs.writeFileSync(calib, exampleLines().slice(0, 80).join("\n"));
      const recipe = {
        model: src,
        calib: [calib],
        ratio: 0.4,
        allocation: "uniform" as const,
        samples: 6,
        seqLen: 16,
        threads: 1,
      };
      // the default creates an o_proj bias (attention_bias), which llama.cpp's graph cannot hold: refused with the hint
      const withBias = path.join(ROOT, `bias-${family}`);
      await runPrune(resolveRecipe({ ...recipe, out: withBias }));
      const mb = loadModel(withBias);
      try {
        expect(() => prepareGguf(mb, "f32")).toThrow(/create-bias never|attn_output/);
      } finally {
        mb.close();
      }
      const out = path.join(ROOT, `nobias-${family}`);
      await runPrune(resolveRecipe({ ...recipe, out, createBias: "never" }));
      const m = loadModel(out);
      try {
        expect(prepareGguf(m, "f32").plan.arch).toBe(arch);
      } finally {
        m.close();
      }
      await checkModel(`${family} pruned, no created biases`, out, ["f32"]);
    },
  );
});

describe.skipIf(!LC.llama)("llama.cpp on Phi-3 and per-layer Qwen3 pruned by pare (tiny, runPrune)", () => {
  it.each([
    { allocation: "uniform" as const, arch: "llama", createBias: "auto" as const },
    { allocation: "global" as const, arch: "deci", createBias: "auto" as const },
  ])(
    "Phi-3 $allocation at 0.4 with liar (created biases, partial rotary) → $arch",
    async ({ allocation, arch, createBias }) => {
      const { runPrune } = await import("../../src/pipeline/prune.ts");
      const { resolveRecipe } = await import("../../src/pipeline/recipe.ts");
      const src = write(
        `phi3-src-${allocation}`,
        makeTinyPhi3({ seed: 43, layers: 3, slidingWindow: null, intermediate: 64 }),
      );
      const calib = path.join(ROOT, "calib.txt");
      fs.writeFileSync(calib, exampleLines().slice(0, 80).join("\n"));
      const out = path.join(ROOT, `phi3-pruned-${allocation}`);
      await runPrune(
        resolveRecipe({
          model: src,
          out,
          calib: [calib],
          ratio: 0.4,
          allocation,
          createBias,
          samples: 6,
          seqLen: 16,
          threads: 1,
        }),
      );
      const m = loadModel(out);
      try {
        expect(prepareGguf(m, "f32").plan.arch).toBe(arch);
        if (allocation === "global") expect(new Set(m.dims.layers.map((l) => l.ffn)).size).toBeGreaterThan(1);
      } finally {
        m.close();
      }
      await checkModel(`phi3 pruned ${allocation}`, out, ["f32", "q8_0"]);
    },
  );

  it("Qwen3 (tied) global at 0.4 with --create-bias never → openelm", async () => {
    const { runPrune } = await import("../../src/pipeline/prune.ts");
    const { resolveRecipe } = await import("../../src/pipeline/recipe.ts");
    const src = write(
      "qwen3-global-src",
      scaleFinalNorm(
        makeTinyQwen3({ seed: 44, layers: 3, tie: true, heads: 4, kvHeads: 4, intermediate: 64 }),
        0.2,
      ),
    );
    const calib = path.join(ROOT, "calib.txt");
    fs.writeFileSync(calib, exampleLines().slice(0, 80).join("\n"));
    const out = path.join(ROOT, "qwen3-global-pruned");
    await runPrune(
      resolveRecipe({
        model: src,
        out,
        calib: [calib],
        ratio: 0.4,
        allocation: "global",
        createBias: "never",
        samples: 6,
        seqLen: 16,
        threads: 1,
      }),
    );
    const m = loadModel(out);
    try {
      expect(prepareGguf(m, "f32").plan.arch).toBe("openelm");
      const L = m.dims.layers;
      expect(L.some((l) => l.nHeads !== L[0].nHeads || l.ffn !== L[0].ffn)).toBe(true);
    } finally {
      m.close();
    }
    await checkModel("qwen3 pruned global, no created biases", out, ["f32", "q8_0", "q4_0"]);
  });
});

/** The bytes of one tensor of a GGUF file pare wrote for `model` at `outtype`. */
function tensorBytes(file: string, model: Model, outtype: GgufOuttype, name: string): Uint8Array {
  const { meta, tensors } = prepareGguf(model as Parameters<typeof prepareGguf>[0], outtype);
  const { header, offsets } = ggufHeader(meta, tensors);
  const i = tensors.findIndex((t) => t.name === name);
  const t = tensors[i];
  const size = ggufTensorBytes(t.shape, t.type);
  const fd = fs.openSync(file, "r");
  try {
    const buf = Buffer.alloc(size);
    fs.readSync(fd, buf, 0, size, header.length + offsets[i]);
    return new Uint8Array(buf.buffer, buf.byteOffset, size);
  } finally {
    fs.closeSync(fd);
  }
}

describe("GGUF q4_0 of a GPTQ folder (pare quantize)", () => {
  const make = async (name: string, groupSize: number, asym: boolean) => {
    const { quantize } = await import("../../src/api/quantize.ts");
    const src = write(
      `gptq-src-${name}`,
      makeTinyLlama({ seed: 51, hidden: 64, heads: 4, kvHeads: 2, headDim: 16, intermediate: 128 }),
    );
    const out = path.join(ROOT, `gptq-${name}`);
    await quantize({ model: src, out, bits: 4, groupSize, method: "rtn", asym, force: true });
    return out;
  };

  it.each([32, 64])(
    "symmetric 4-bit, group %i: the checkpoint's integers and scales written as they are (llama.cpp's weights = pare's dequantized ones, bit for bit)",
    async (groupSize) => {
      const dir = await make(`sym-${groupSize}`, groupSize, false);
      const m = loadModel(dir);
      try {
        const file = path.join(ROOT, `gptq-sym-${groupSize}.q4_0.gguf`);
        const r = exportGguf(m, file, { outtype: "q4_0", force: true });
        expect(r.notes.join("\n")).toMatch(
          /14 Q4_0 matrices carry the checkpoint's own integers and scales \(exact\)/,
        );
        const N = m.spec.names;
        for (const [gguf, hf, rows] of [
          ["blk.0.attn_v.weight", N.v, 0],
          ["blk.1.ffn_down.weight", N.down, 0],
          ["blk.1.attn_q.weight", N.q, 4 * m.dims.headDim],
          ["blk.0.ffn_gate.weight", N.gate as string, 0],
          ["blk.0.attn_k.weight", N.k, 2 * m.dims.headDim],
        ] as const) {
          const w = m.weights.get(`${m.path(hf, Number(gguf[4]))}.weight`);
          const want = rows ? permuteRope(w, rows, m.dims.headDim) : w;
          const got = decodeQ4_0(tensorBytes(file, m, "q4_0", gguf));
          expect(Buffer.from(got.buffer).equals(Buffer.from(want.buffer)), gguf).toBe(true);
        }
        if (LC.llama) {
          const prompt = loadTokenizer(dir).encode(PROMPT);
          const got = await parity(m, file, prompt, BOUND.q8_0.tie);
          observed[`gptq sym ${groupSize} q4_0 vs pare's dequantized GPTQ`] = got;
          expect(got.mismatch).toBeUndefined();
          expect(got.compared).toBeGreaterThanOrEqual(BOUND.q8_0.minCompared);
          expect(got.top10).toBeLessThan(BOUND.q8_0.top10);
          expect(got.kl).toBeLessThan(BOUND.q8_0.kl);
        }
      } finally {
        m.close();
      }
    },
  );

  it("asymmetric GPTQ: re-quantized by Q4_0 round-to-nearest, and the notes say so", async () => {
    const dir = await make("asym-32", 32, true);
    const m = loadModel(dir);
    try {
      const r = exportGguf(m, path.join(ROOT, "gptq-asym.q4_0.gguf"), { outtype: "q4_0", force: true });
      expect(r.notes.join("\n")).toMatch(/asymmetric GPTQ .* re-quantized by Q4_0 round-to-nearest/);
      const f16 = exportGguf(m, path.join(ROOT, "gptq-asym.f16.gguf"), { outtype: "f16", force: true });
      expect(f16.notes.join("\n")).toMatch(/written dequantized, as f16/);
    } finally {
      m.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------------------
// the shared trained decoder and corpora

const SHARED_LLAMA = path.join(SHARED, "models/llama-gqa-6l");

describe.skipIf(!LC.llama || !HAVE_SHARED)(
  "llama.cpp on the shared llama-gqa-6l (dense and pruned by pare)",
  () => {
    it("tokenization: llama.cpp's ids for 300 lines each of wikitext-2, SST-2 and PIQA equal pare's", async () => {
      const file = path.join(ROOT, "shared-vocab.gguf");
      const m = loadModel(SHARED_LLAMA);
      try {
        exportGguf(m, file, { outtype: "q8_0", force: true });
      } finally {
        m.close();
      }
      const tok = loadTokenizer(SHARED_LLAMA);
      const lm = await (LC.llama as Llama).loadModel({ modelPath: file, vocabOnly: true });
      try {
        let lines = 0;
        for (const f of [
          "data/wikitext-2/raw-v1/wiki.test.raw",
          "data/sst2/stsa.binary.dev",
          "data/piqa/valid.jsonl",
        ]) {
          const p = path.join(SHARED, f);
          if (!fs.existsSync(p)) continue;
          const texts = fs
            .readFileSync(p, "utf8")
            .split("\n")
            .filter((l) => l.trim())
            .slice(0, 300);
          for (const t of texts) {
            expect([...lm.tokenize(t)], t.slice(0, 80)).toEqual(tok.encode(t, { addSpecialTokens: false }));
            lines++;
          }
        }
        observed["shared tokenization lines"] = lines;
        expect(lines).toBeGreaterThanOrEqual(600);
        // BOS added as the tokenizer config says
        expect(lm.tokens.bos).toBe(1);
        expect(lm.tokens.eos).toBe(2);
      } finally {
        await lm.dispose();
      }
    });

    it("dense: f32, f16, q8_0 and q4_0", async () => {
      await checkModel("shared llama-gqa-6l dense", SHARED_LLAMA, ["f32", "f16", "q8_0", "q4_0"]);
    });

    it.each([
      { ratio: 0.3, allocation: "global" as const },
      { ratio: 0.5, allocation: "global" as const },
      { ratio: 0.3, allocation: "uniform" as const },
      { ratio: 0.5, allocation: "uniform" as const },
    ])("pruned $ratio $allocation: f32, q8_0 and q4_0", async ({ ratio, allocation }) => {
      const { runPrune } = await import("../../src/pipeline/prune.ts");
      const { resolveRecipe } = await import("../../src/pipeline/recipe.ts");
      const out = path.join(ROOT, `shared-${allocation}-${ratio}`);
      const calib = path.join(REPO_ROOT, "examples/data/calib-wikitext2-valid.txt");
      await runPrune(
        resolveRecipe({
          model: SHARED_LLAMA,
          out,
          calib: [calib],
          ratio,
          allocation,
          samples: 16,
          seqLen: 64,
          threads: 1,
        }),
      );
      await checkModel(`shared llama-gqa-6l ${allocation} ${ratio}`, out, ["f32", "q8_0", "q4_0"]);
    });
  },
);
