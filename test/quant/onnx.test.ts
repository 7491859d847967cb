/**
 * ONNX export of a GPTQ folder: onnx/model_q4.onnx with com.microsoft MatMulNBits (symmetric: no zero points;
 * asymmetric: packed zero points) gives the logits of pare's dequantized model (≤ 1e-4), and transformers.js
 * loads it with dtype "q4" (offline) and generates pare's greedy tokens.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { quantize } from "../../src/api/quantize.ts";
import { loadModel } from "../../src/arch/load.ts";
import type { Model } from "../../src/arch/model.ts";
import { exportOnnx } from "../../src/export/onnx.ts";
import { loadTokenizer } from "../../src/io/tokenizer.ts";
import { emitModelGraph } from "../../src/onnx/emit.ts";
import { closeSharedOps } from "../../src/ops/index.ts";
import { f32, type HostTensor, i64From, Session } from "../../src/runtime/ort.ts";
import { Rng } from "../helpers/rng.ts";
import { makeByteBpeTokenizerJson, makeTinyLlama, writeTinyModel } from "../helpers/tinyModels.ts";

const WORDS = "the cat sat on a mat while dogs ran past green hills and birds sang over quiet rivers".split(
  " ",
);

let root: string;
let models: string;
let text: string;

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-q4onnx-"));
  models = path.join(root, "models");
  fs.mkdirSync(models);
  writeTinyModel(path.join(root, "dense"), makeTinyLlama({ seed: 21 }), makeByteBpeTokenizerJson(300));
  const rng = new Rng(7);
  text = path.join(root, "calib.txt");
  fs.writeFileSync(text, Array.from({ length: 3000 }, () => WORDS[rng.int(WORDS.length)]).join(" "));
});
afterAll(async () => {
  vi.unstubAllGlobals();
  fs.rmSync(root, { recursive: true, force: true });
  await closeSharedOps();
});

function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) {
    const x = Math.abs(a[i] - b[i]);
    if (!(x <= d)) d = x;
  }
  return d;
}

/** Greedy decoding with an exported KV-cache graph; returns the logits of the prefill and the new ids. */
async function cachedGreedy(file: string, model: Model, prompt: number[], steps: number) {
  const s = await Session.create(file, { threads: 1 });
  try {
    const V = model.dims.vocab;
    let past: Record<string, HostTensor> = {};
    model.dims.layers.forEach((L, i) => {
      for (const kv of ["key", "value"])
        past[`past_key_values.${i}.${kv}`] = f32([1, L.nKv, 0, model.dims.headDim], new Float32Array(0));
    });
    let block = prompt;
    let P = 0;
    const ids: number[] = [];
    let prefill: Float32Array | undefined;
    for (let step = 0; step < steps; step++) {
      const n = block.length;
      const r = await s.run({
        input_ids: i64From([1, n], block),
        attention_mask: i64From([1, P + n], new Array(P + n).fill(1)),
        position_ids: i64From(
          [1, n],
          block.map((_, t) => P + t),
        ),
        ...past,
      });
      const logits = r.logits.data as Float32Array;
      prefill ??= logits.slice();
      ids.push(argmax(logits.subarray((n - 1) * V, n * V)));
      past = {};
      for (let i = 0; i < model.dims.nLayers; i++)
        for (const kv of ["key", "value"]) past[`past_key_values.${i}.${kv}`] = r[`present.${i}.${kv}`];
      P += n;
      block = [ids[ids.length - 1]];
    }
    return { prefill: prefill!, ids };
  } finally {
    await s.release();
  }
}

async function pareLogits(model: Model, ids: number[]): Promise<Float32Array> {
  const s = await Session.create(emitModelGraph(model), { threads: 1 });
  try {
    return (await s.run({ input_ids: i64From([1, ids.length], ids) }, ["logits"])).logits
      .data as Float32Array;
  } finally {
    await s.release();
  }
}

describe("onnx/model_q4.onnx (MatMulNBits)", () => {
  for (const asym of [false, true]) {
    it(`${asym ? "asymmetric" : "symmetric"}: ORT logits equal pare's dequantized forward (≤ 1e-4)`, async () => {
      const q = path.join(root, `q-${asym}`);
      await quantize({
        model: path.join(root, "dense"),
        out: q,
        groupSize: 16,
        asym,
        calib: [text],
        samples: 8,
        seqLen: 32,
      });
      const out = path.join(models, `q4-${asym}`);
      const m = loadModel(q);
      try {
        const r = exportOnnx(m, out);
        expect(r.files).toContain("onnx/model_q4.onnx");
        const bytes = fs.readFileSync(path.join(out, "onnx", "model_q4.onnx"));
        expect(bytes.includes("MatMulNBits")).toBe(true);
        expect(bytes.includes("nbits_zp")).toBe(asym);
        expect(bytes.length).toBeLessThan(fs.statSync(path.join(out, "onnx", "model.onnx")).size);
        const prompt = loadTokenizer(q).encode("the cat sat on a mat while dogs ran");
        const pare = await pareLogits(m, prompt);
        const f = await cachedGreedy(path.join(out, "onnx", "model.onnx"), m, prompt, 6);
        const q4 = await cachedGreedy(path.join(out, "onnx", "model_q4.onnx"), m, prompt, 6);
        expect(maxDiff(q4.prefill, pare)).toBeLessThanOrEqual(1e-4);
        expect(maxDiff(f.prefill, pare)).toBeLessThanOrEqual(1e-4);
        expect(q4.ids).toEqual(f.ids);
      } finally {
        m.close();
      }
    });
  }

  it('transformers.js loads model_q4.onnx with dtype "q4" and generates pare\'s greedy tokens', async () => {
    const fetchCalls: string[] = [];
    vi.stubGlobal("fetch", async (input: unknown) => {
      fetchCalls.push(String(input));
      throw new Error("network access is not allowed in this test");
    });
    const T = await import("@huggingface/transformers");
    T.env.allowRemoteModels = false;
    T.env.allowLocalModels = true;
    T.env.localModelPath = models;
    T.env.cacheDir = path.join(root, "cache");
    T.env.useBrowserCache = false;
    T.env.useFSCache = false;
    T.env.logLevel = T.LogLevel.ERROR;
    const folder = "q4-false";
    const m = loadModel(path.join(root, "q-false"));
    try {
      const tok = loadTokenizer(path.join(root, "q-false"));
      const prompt = "the cat sat on a mat while dogs ran";
      const promptIds = tok.encode(prompt);
      const pare = await cachedGreedy(path.join(models, folder, "onnx", "model_q4.onnx"), m, promptIds, 8);
      const gen = await T.pipeline("text-generation", folder, { dtype: "q4" });
      try {
        const enc = gen.tokenizer(prompt) as unknown as Record<string, unknown>;
        const out = (await gen.model.generate({
          ...enc,
          do_sample: false,
          max_new_tokens: 8,
          min_new_tokens: 8,
        } as never)) as { tolist(): bigint[][] };
        const ids = out.tolist()[0].map(Number);
        expect(ids.slice(0, promptIds.length)).toEqual(promptIds);
        expect(ids.slice(promptIds.length)).toEqual(pare.ids);
      } finally {
        await gen.dispose();
      }
    } finally {
      m.close();
    }
    expect(fetchCalls).toEqual([]);
  });
});
