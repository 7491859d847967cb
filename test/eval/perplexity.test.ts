/**
 * perplexity(): the windowing protocol (⌊T/L⌋ non-overlapping windows, first token of each window context only,
 * tail dropped) and the value, against exp(mean NLL) from the float64 reference forward on a tiny llama.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LoadedModel, loadModel } from "../../src/arch/load.ts";
import { PareError } from "../../src/errors.ts";
import { cutWindows, perplexity } from "../../src/eval/perplexity.ts";
import { Runner } from "../../src/eval/runner.ts";
import { loadTokenizer, type PareTokenizer } from "../../src/io/tokenizer.ts";
import {
  makeByteBpeTokenizerJson,
  makeTinyLlama,
  type TinyModel,
  tensorMap,
  writeTinyModel,
} from "../helpers/tinyModels.ts";
import { referenceDecoderForward } from "../reference/forward.ts";

const TEXT = `Once upon a time there was a cat that sat on the mat. The cat was the best of cats, and the mat
was the worst of mats. It was the age of wisdom, it was the age of foolishness; the cat did not care.
In the morning the cat went to the garden and looked at the birds in the trees, and the birds looked back
at the cat. Nobody in the house knew what the cat was thinking, but everybody agreed that it was thinking
of something important. At noon the rain started and the cat ran back to the mat, where it sat again,
as cats do, until the evening came and the lamps were lit in every window of the street.`;

const VOCAB = 300;
let dir: string;
let tiny: TinyModel;
let model: LoadedModel;
let tok: PareTokenizer;
let runner: Runner;
let ids: number[];

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "pare-ppl-"));
  tiny = makeTinyLlama({ seed: 51, vocab: VOCAB });
  writeTinyModel(dir, tiny, makeByteBpeTokenizerJson(VOCAB));
  model = loadModel(dir);
  tok = loadTokenizer(dir);
  runner = await Runner.create(model);
  ids = tok.encode(TEXT);
});

afterAll(async () => {
  await runner?.close();
  model?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** exp(mean NLL) over the protocol's windows, from the float64 reference logits. */
function referencePpl(tokens: number[], L: number, maxWindows = Number.POSITIVE_INFINITY) {
  const W = Math.min(Math.floor(tokens.length / L), maxWindows);
  let sum = 0;
  let count = 0;
  for (let w = 0; w < W; w++) {
    const win = tokens.slice(w * L, (w + 1) * L);
    const { logits } = referenceDecoderForward(tiny.config, tensorMap(tiny), win);
    const V = logits.length / L;
    for (let t = 0; t + 1 < L; t++) {
      const z = logits.subarray(t * V, (t + 1) * V);
      let mx = Number.NEGATIVE_INFINITY;
      for (const v of z) mx = Math.max(mx, v);
      let s = 0;
      for (const v of z) s += Math.exp(v - mx);
      sum += mx + Math.log(s) - z[win[t + 1]];
      count++;
    }
  }
  return { nll: sum / count, ppl: Math.exp(sum / count), count, windows: W };
}

const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

const codeOf = async (f: () => Promise<unknown>): Promise<string> => {
  try {
    await f();
  } catch (e) {
    if (e instanceof PareError) return e.code;
    throw e;
  }
  return "no error";
};

describe("cutWindows", () => {
  const seq = (n: number) => Array.from({ length: n }, (_, i) => i);

  it("cuts ⌊T/L⌋ consecutive non-overlapping windows and drops the tail", () => {
    expect(cutWindows(seq(10), 3)).toEqual([
      [0, 1, 2],
      [3, 4, 5],
      [6, 7, 8],
    ]);
    expect(cutWindows(seq(9), 3)).toEqual([
      [0, 1, 2],
      [3, 4, 5],
      [6, 7, 8],
    ]);
    expect(cutWindows(seq(8), 4)).toEqual([
      [0, 1, 2, 3],
      [4, 5, 6, 7],
    ]);
  });

  it("gives no window when the sequence is shorter than one window", () => {
    expect(cutWindows(seq(4), 5)).toEqual([]);
    expect(cutWindows([], 2)).toEqual([]);
  });

  it("maxWindows keeps only the first windows", () => {
    expect(cutWindows(seq(20), 4, 2)).toEqual([
      [0, 1, 2, 3],
      [4, 5, 6, 7],
    ]);
    expect(cutWindows(seq(20), 4, 100)).toHaveLength(5);
  });

  it("windows concatenate to the prefix of the sequence (random lengths)", () => {
    for (const [n, L] of [
      [1, 1],
      [17, 5],
      [64, 8],
      [65, 8],
      [100, 33],
    ]) {
      const w = cutWindows(seq(n), L);
      expect(w).toHaveLength(Math.floor(n / L));
      for (const x of w) expect(x).toHaveLength(L);
      expect(w.flat()).toEqual(seq(Math.floor(n / L) * L));
    }
  });
});

describe("perplexity on a tiny llama with the byte-level BPE tokenizer", () => {
  it("the text tokenizes to enough tokens, with one leading <s>", () => {
    expect(ids[0]).toBe(1);
    expect(ids.filter((x) => x === 1)).toHaveLength(1);
    expect(ids.length).toBeGreaterThan(200);
    expect(Math.max(...ids)).toBeLessThan(VOCAB);
  });

  it("equals exp(mean NLL) of the float64 reference over the same windows (≤ 1e-5 relative)", async () => {
    const L = 32;
    const want = referencePpl(ids, L);
    const r = await perplexity(runner, ids, { seqLen: L });
    expect(r.windows).toBe(Math.floor(ids.length / L));
    expect(r.windows).toBe(want.windows);
    expect(r.tokens).toBe(r.windows * (L - 1));
    expect(r.tokens).toBe(want.count);
    expect(r.seqLen).toBe(L);
    expect(r.totalTokens).toBe(ids.length);
    expect(r.droppedTailTokens).toBe(ids.length - r.windows * L);
    expect(rel(r.ppl, want.ppl)).toBeLessThan(1e-5);
    expect(Math.abs(r.nll - want.nll)).toBeLessThan(1e-5);
    expect(r.ppl).toBeCloseTo(Math.exp(r.nll), 10);
    expect(r.protocol).toContain(`${r.windows} non-overlapping windows of ${L} tokens`);
    // a random tiny model is close to uniform over its vocabulary, not degenerate
    expect(r.ppl).toBeGreaterThan(10);
    expect(r.ppl).toBeLessThan(10 * VOCAB);
  });

  it("a different window length changes the protocol but still matches the reference", async () => {
    const L = 45;
    const want = referencePpl(ids, L, 3);
    const r = await perplexity(runner, ids, { seqLen: L, maxWindows: 3, batchSize: 2 });
    expect(r.windows).toBe(3);
    expect(r.tokens).toBe(3 * 44);
    expect(rel(r.ppl, want.ppl)).toBeLessThan(1e-5);
  });

  it("batch size 1, 3 and 8 give identical results (≤ 1e-6)", async () => {
    const L = 24;
    const results = [];
    for (const batchSize of [1, 3, 8]) results.push(await perplexity(runner, ids, { seqLen: L, batchSize }));
    const [a, b, c] = results;
    expect(a.windows).toBeGreaterThan(8); // several batches of 8, the last one partial
    for (const r of [b, c]) {
      expect(r.windows).toBe(a.windows);
      expect(r.tokens).toBe(a.tokens);
      expect(rel(r.ppl, a.ppl)).toBeLessThanOrEqual(1e-6);
      expect(Math.abs(r.nll - a.nll)).toBeLessThanOrEqual(1e-6);
    }
  });

  it("windowNll: per-token NLL of each window does not depend on the other windows in the batch", async () => {
    const L = 16;
    const w = cutWindows(ids, L, 4);
    const together = await runner.windowNll(w);
    expect(together).toHaveLength(4);
    for (let b = 0; b < 4; b++) {
      expect(together[b]).toHaveLength(L - 1);
      const alone = (await runner.windowNll([w[b]]))[0];
      for (let t = 0; t < L - 1; t++) expect(Math.abs(alone[t] - together[b][t])).toBeLessThanOrEqual(1e-6);
    }
  });

  it("onProgress reports every batch up to the total", async () => {
    const calls: [number, number][] = [];
    const r = await perplexity(runner, ids, {
      seqLen: 32,
      batchSize: 4,
      onProgress: (d, t) => calls.push([d, t]),
    });
    expect(calls.at(-1)).toEqual([r.windows, r.windows]);
    expect(calls).toHaveLength(Math.ceil(r.windows / 4));
  });

  it("text shorter than one window → E_DATA_TOO_SHORT", async () => {
    const short = tok.encode("the cat");
    expect(await codeOf(() => perplexity(runner, short, { seqLen: 32 }))).toBe("E_DATA_TOO_SHORT");
    expect(await codeOf(() => perplexity(runner, ids.slice(0, 31), { seqLen: 32 }))).toBe("E_DATA_TOO_SHORT");
    expect(await codeOf(() => perplexity(runner, [], { seqLen: 2 }))).toBe("E_DATA_TOO_SHORT");
    // exactly one window is enough
    const one = await perplexity(runner, ids.slice(0, 32), { seqLen: 32 });
    expect(one.windows).toBe(1);
    expect(one.droppedTailTokens).toBe(0);
  });

  it("a window length < 2 or not an integer → E_USAGE", async () => {
    expect(await codeOf(() => perplexity(runner, ids, { seqLen: 1 }))).toBe("E_USAGE");
    expect(await codeOf(() => perplexity(runner, ids, { seqLen: 2.5 }))).toBe("E_USAGE");
  });

  it("windows longer than max_position_embeddings → E_USAGE", async () => {
    const long = Array.from({ length: 300 }, (_, i) => ids[i % ids.length]);
    expect(await codeOf(() => perplexity(runner, long, { seqLen: 129 }))).toBe("E_USAGE");
  });
});
