/**
 * multipleChoice() on a tiny llama with a byte-level BPE tokenizer: the per-choice log-likelihoods it sums equal a
 * float64 reference (referenceDecoderForward) on the token ids lm-evaluation-harness would build
 * (whole = enc(ctx + cont), continuation = whole[len(enc(ctx)):], trailing context spaces moved to the
 * continuation); acc / acc_norm are the argmaxes of the sum and of the sum per UTF-8 byte; batching changes
 * nothing; left truncation past max_position_embeddings is counted; encoders are refused. Plus `pare eval --task mc`.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LoadedModel, loadModel } from "../../src/arch/load.ts";
import { isPareError } from "../../src/errors.ts";
import { type McResult, multipleChoice } from "../../src/eval/multipleChoice.ts";
import { Runner } from "../../src/eval/runner.ts";
import type { McItem } from "../../src/io/mcData.ts";
import { loadTokenizer, type PareTokenizer } from "../../src/io/tokenizer.ts";
import { parseSingleJson, runCli } from "../helpers/cli.ts";
import {
  makeByteBpeTokenizerJson,
  makeTinyBert,
  makeTinyLlama,
  makeWordPieceTokenizerJson,
  type TinyModel,
  tensorMap,
  writeTinyModel,
} from "../helpers/tinyModels.ts";
import { referenceDecoderForward } from "../reference/forward.ts";

const VOCAB = 300;

/** Six generic items: a trailing-space context, non-ASCII choices, choices of very different lengths. */
const BASE: Omit<McItem, "label">[] = [
  ["The cat sat on the", [" mat", " moon", " mathematics"]],
  ["Question: What color is the sky on a clear day?\nAnswer:", [" blue", " green"]],
  ["She poured the hot tea into the ", ["cup", "old shoe", "river"]],
  ["Il a mangé une", [" pomme", " crêpe sucrée"]],
  ["1, 2, 3,", [" 4", " 5, 6", " four", " the end"]],
  ["In the beginning", [" was the word", " there was light and it was good", "."]],
].map(([context, choices]) => ({
  contexts: (choices as string[]).map(() => context as string),
  continuations: choices as string[],
}));

let root: string;
let tiny: TinyModel;
let model: LoadedModel;
let tok: PareTokenizer;
let runner: Runner;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-mc-"));
  tiny = makeTinyLlama({ seed: 17, vocab: VOCAB });
  writeTinyModel(path.join(root, "llama"), tiny, makeByteBpeTokenizerJson(VOCAB));
  model = loadModel(path.join(root, "llama"));
  tok = loadTokenizer(model.dir);
  runner = await Runner.create(model, { threads: 1 });
});

afterAll(async () => {
  await runner?.close();
  model?.close();
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------------------
// the reference

interface Req {
  /** token ids scored (after truncation) */
  ids: number[];
  /** index of the first continuation token in ids */
  contStart: number;
  /** UTF-8 bytes of the item's choice (the continuation without its leading delimiter space) */
  bytes: number;
  truncated: boolean;
}

/** lm-evaluation-harness's request for one (context, continuation), left-truncated to maxLen tokens. */
function harnessRequest(t: PareTokenizer, ctx: string, cont: string, maxLen: number): Req {
  const bytes = Buffer.byteLength(cont.replace(/^ /, ""), "utf8");
  const n = ctx.length - ctx.trimEnd().length;
  if (n > 0) {
    cont = ctx.slice(ctx.length - n) + cont;
    ctx = ctx.slice(0, ctx.length - n);
  }
  let ids = t.encode(ctx + cont);
  let contStart = t.encode(ctx).length;
  expect(contStart).toBeLessThan(ids.length); // every test continuation adds tokens
  expect(ids.slice(0, contStart)).toEqual(t.encode(ctx)); // the context's tokens are a prefix of the whole
  const cut = Math.max(0, ids.length - maxLen);
  ids = ids.slice(cut);
  contStart = Math.max(1, contStart - cut);
  return { ids, contStart, bytes, truncated: cut > 0 };
}

/** Σ log p(ids[t] | ids[<t]) over t ≥ contStart, from the float64 reference forward. */
function referenceLl(config: Record<string, unknown>, weights: TinyModel, r: Req): number {
  const { logits } = referenceDecoderForward(config, tensorMap(weights), r.ids);
  const V = logits.length / r.ids.length;
  let s = 0;
  for (let t = r.contStart; t < r.ids.length; t++) {
    const z = logits.subarray((t - 1) * V, t * V);
    let mx = Number.NEGATIVE_INFINITY;
    for (const v of z) mx = Math.max(mx, v);
    let e = 0;
    for (const v of z) e += Math.exp(v - mx);
    s += z[r.ids[t]] - mx - Math.log(e);
  }
  return s;
}

const argmax = (xs: number[]) => xs.reduce((b, x, i) => (x > xs[b] ? i : b), 0);
/** Smallest gap between the best and the second-best score (how safely an argmax is decided). */
const margin = (xs: number[]) => {
  const s = [...xs].sort((a, b) => b - a);
  return s[0] - s[1];
};

/**
 * Runs multipleChoice with a recording wrapper around runner.sequenceNll: returns the result and, for every
 * sequence the runner scored, its per-position NLL (keyed by the ids).
 */
async function recorded(
  r: Runner,
  t: PareTokenizer,
  items: McItem[],
  opts: { batchSize?: number; maxItems?: number } = {},
): Promise<{ result: McResult; nll: Map<string, Float64Array>; batches: number[] }> {
  const nll = new Map<string, Float64Array>();
  const batches: number[] = [];
  const orig = r.sequenceNll;
  r.sequenceNll = async (seqs: number[][], padId?: number) => {
    const out = await orig.call(r, seqs, padId);
    batches.push(seqs.length);
    seqs.forEach((s, b) => {
      nll.set(s.join(","), out[b]);
    });
    return out;
  };
  try {
    return { result: await multipleChoice(r, t, items, opts), nll, batches };
  } finally {
    r.sequenceNll = orig;
  }
}

/** The log-likelihood multipleChoice summed for a request: −Σ nll[t−1], t ≥ contStart, of the recorded sequence. */
function pareLl(nll: Map<string, Float64Array>, r: Req): number {
  const row = nll.get(r.ids.join(","));
  if (!row) throw new Error(`multipleChoice did not score the harness token ids ${r.ids.join(",")}`);
  expect(row.length).toBe(r.ids.length - 1);
  let s = 0;
  for (let t = r.contStart; t < r.ids.length; t++) s -= row[t - 1];
  return s;
}

// ---------------------------------------------------------------------------------------------------------

describe("multipleChoice on a tiny llama", () => {
  let items: McItem[];
  let reqs: Req[][];
  let ref: number[][];
  let expectedAcc: number;
  let expectedNorm: number;

  beforeAll(() => {
    reqs = BASE.map((it) =>
      it.continuations.map((c, j) => harnessRequest(tok, it.contexts[j], c, model.dims.maxPos)),
    );
    ref = reqs.map((rs) => rs.map((r) => referenceLl(tiny.config, tiny, r)));
    // labels: the reference's acc winner for the first three items, its acc_norm winner for the last three, so
    // that acc and acc_norm are decided by different argmaxes
    items = BASE.map((it, i) => {
      const ll = ref[i];
      const norm = ll.map((x, j) => x / reqs[i][j].bytes);
      return { ...it, label: i < 3 ? argmax(ll) : argmax(norm) };
    });
    expectedAcc = items.filter((it, i) => argmax(ref[i]) === it.label).length / items.length;
    expectedNorm =
      items.filter((it, i) => argmax(ref[i].map((x, j) => x / reqs[i][j].bytes)) === it.label).length /
      items.length;
  });

  it("the test items are decisive: reference argmaxes are separated by > 1e-3 and sum vs per-byte rankings differ somewhere", () => {
    for (let i = 0; i < items.length; i++) {
      expect(margin(ref[i])).toBeGreaterThan(1e-3);
      expect(margin(ref[i].map((x, j) => x / reqs[i][j].bytes))).toBeGreaterThan(1e-3);
    }
    // at least one item ranks its choices differently by sum and by sum per byte, so acc_norm is really tested
    const differ = ref.filter((r, i) => argmax(r) !== argmax(r.map((x, j) => x / reqs[i][j].bytes))).length;
    expect(differ).toBeGreaterThan(0);
  });

  it("per-choice log-likelihoods equal the float64 reference on the harness token ids (≤ 1e-4)", async () => {
    const { result, nll } = await recorded(runner, tok, items);
    let worst = 0;
    reqs.forEach((rs, i) => {
      rs.forEach((r, j) => {
        worst = Math.max(worst, Math.abs(pareLl(nll, r) - ref[i][j]));
      });
    });
    expect(worst).toBeLessThanOrEqual(1e-4);
    expect(nll.size).toBe(reqs.flat().length);
    expect(result.n).toBe(6);
    expect(result.choices).toBe(reqs.flat().length);
    expect(result.truncated).toBe(0);
  });

  it("acc / acc_norm equal the reference argmaxes of the sum and the sum per UTF-8 byte", async () => {
    const r = await multipleChoice(runner, tok, items);
    expect(r.acc).toBeCloseTo(expectedAcc, 12);
    expect(r.accNorm).toBeCloseTo(expectedNorm, 12);
    expect(r.protocol).toMatch(/6 items/);
  });

  it("batch sizes 1, 3 and 16 give identical results", async () => {
    const runs = [];
    const total = reqs.flat().length; // 17 requests
    for (const batchSize of [1, 3, 16]) {
      const run = await recorded(runner, tok, items, { batchSize });
      const chunks = Array.from({ length: Math.ceil(total / batchSize) }, (_, k) =>
        Math.min(batchSize, total - k * batchSize),
      );
      expect(run.batches).toEqual(chunks);
      runs.push(run);
    }
    for (const r of runs.slice(1)) {
      expect(r.result).toEqual(runs[0].result);
      for (const q of reqs.flat())
        expect(Math.abs(pareLl(r.nll, q) - pareLl(runs[0].nll, q))).toBeLessThan(1e-5);
    }
  });

  it("maxItems evaluates only the first items", async () => {
    const r = await multipleChoice(runner, tok, items, { maxItems: 4 });
    expect(r.n).toBe(4);
    expect(r.choices).toBe(items.slice(0, 4).reduce((s, it) => s + it.continuations.length, 0));
  });
});

describe("left truncation past max_position_embeddings", () => {
  const MAXPOS = 16;
  let small: TinyModel;
  let smallModel: LoadedModel;
  let smallRunner: Runner;

  beforeAll(async () => {
    small = makeTinyLlama({ seed: 23, vocab: VOCAB });
    small.config.max_position_embeddings = MAXPOS;
    writeTinyModel(path.join(root, "short"), small, makeByteBpeTokenizerJson(VOCAB));
    smallModel = loadModel(path.join(root, "short"));
    smallRunner = await Runner.create(smallModel, { threads: 1 });
  });
  afterAll(async () => {
    await smallRunner?.close();
    smallModel?.close();
  });

  it("keeps the last max_position_embeddings tokens, counts the truncated requests, scores as the reference", async () => {
    const items: McItem[] = [
      {
        contexts: new Array(2).fill("A very long context about cats and dogs and birds, then finally"),
        continuations: [" the end", " a cat"],
        label: 0,
      },
      { contexts: ["Hi", "Hi"], continuations: [" there", " you"], label: 1 },
      {
        contexts: new Array(2).fill("Another rather long context, longer than sixteen tokens for sure:"),
        continuations: [" yes", " no"],
        label: 1,
      },
    ];
    const reqs = items.map((it) =>
      it.continuations.map((c, j) => harnessRequest(tok, it.contexts[j], c, MAXPOS)),
    );
    const nTrunc = reqs.flat().filter((r) => r.truncated).length;
    expect(nTrunc).toBe(4); // the two long items' choices
    const { result, nll } = await recorded(smallRunner, tok, items, { batchSize: 16 });
    expect(result.truncated).toBe(nTrunc);
    expect(result.protocol).toMatch(/4 truncated from the left to 16 tokens/);
    for (const r of reqs.flat()) {
      expect(r.ids.length).toBeLessThanOrEqual(MAXPOS);
      expect(Math.abs(pareLl(nll, r) - referenceLl(small.config, small, r))).toBeLessThanOrEqual(1e-4);
    }
  });
});

describe("errors", () => {
  it("an encoder model → E_USAGE", async () => {
    const dir = path.join(root, "bert");
    writeTinyModel(dir, makeTinyBert({ seed: 5, vocab: VOCAB }), makeWordPieceTokenizerJson(["the", "cat"]));
    const bert = loadModel(dir);
    const r = await Runner.create(bert, { threads: 1 });
    try {
      const err = await multipleChoice(r, loadTokenizer(dir), [
        { contexts: ["the", "the"], continuations: [" cat", " dog"], label: 0 },
      ]).catch((e: unknown) => e);
      expect(isPareError(err) && err.code).toBe("E_USAGE");
    } finally {
      await r.close();
      bert.close();
    }
  });
});

describe("pare eval --task mc (CLI)", () => {
  it("--format generic --json prints one JSON object with acc, acc_norm and n (same as in-process)", async () => {
    const items = BASE.map((it, i) => ({ ...it, label: i % 2 }));
    const data = path.join(root, "mc.jsonl");
    fs.writeFileSync(
      data,
      `${items.map((it) => JSON.stringify({ context: it.contexts[0], choices: it.continuations, label: it.label })).join("\n")}\n`,
    );
    const expected = await multipleChoice(runner, tok, items);
    const r = await runCli([
      "eval",
      model.dir,
      "--task",
      "mc",
      "--format",
      "generic",
      "--data",
      data,
      "--json",
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe("");
    const out = parseSingleJson(r.stdout);
    expect(out.task).toBe("mc");
    expect(out.format).toBe("generic");
    expect(out.n).toBe(6);
    expect(out.acc).toBeCloseTo(expected.acc, 12);
    expect(out.acc_norm).toBeCloseTo(expected.accNorm, 12);
  });
});
