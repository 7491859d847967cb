/**
 * Perplexity over documents: lm-evaluation-harness' rolling windows (get_rolling_token_windows +
 * make_disjoint_window + the HF model's input construction) checked on hand-worked examples and lm-eval's own test
 * cases, the rolling log-likelihood against a float64 reference forward on exactly the inputs lm-eval feeds
 * (at most L tokens), word / byte perplexity as the wikitext task computes them, the llama2.c / nanoGPT windows
 * over BOS-separated documents, and `pare eval --task ppl` with .jsonl, --doc-separator, --protocol rolling.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LoadedModel, loadModel } from "../../src/arch/load.ts";
import { PareError } from "../../src/errors.ts";
import {
  concatDocuments,
  documentPerplexity,
  documentPrefix,
  makeDisjointWindow,
  type NllScorer,
  perplexity,
  pythonWordCount,
  rollingPerplexity,
  rollingRequest,
  rollingTokenWindows,
  tokenizeDocuments,
} from "../../src/eval/perplexity.ts";
import { Runner } from "../../src/eval/runner.ts";
import { loadTokenizer, type PareTokenizer } from "../../src/io/tokenizer.ts";
import { parseSingleJson, runCli } from "../helpers/cli.ts";
import {
  makeByteBpeTokenizerJson,
  makeTinyLlama,
  type TinyModel,
  tensorMap,
  writeTinyModel,
} from "../helpers/tinyModels.ts";
import { referenceDecoderForward } from "../reference/forward.ts";

const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);

describe("rolling windows (lm-evaluation-harness get_rolling_token_windows / make_disjoint_window)", () => {
  it("hand-worked: 7 tokens, L = 3, prefix 1 → the exact (context, continuation) split and model inputs", () => {
    const toks = [10, 11, 12, 13, 14, 15, 16];
    const raw = rollingTokenWindows(toks, 1, 3);
    expect(raw).toEqual([
      [
        [1, 10, 11],
        [10, 11, 12],
      ],
      [
        [12, 13, 14],
        [13, 14, 15],
      ],
      [[13, 14, 15], [16]],
    ]);
    const disjoint = raw.map(makeDisjointWindow);
    expect(disjoint).toEqual([
      [[1], [10, 11, 12]],
      [[12], [13, 14, 15]],
      [[13, 14, 15], [16]],
    ]);
    // what the model sees: (context + continuation)[-(L+1):][:-1], the last |continuation| positions scored
    const reqs = disjoint.map(([c, x]) => rollingRequest(c, x, 3));
    expect(reqs).toEqual([
      { input: [1, 10, 11], full: [1, 10, 11, 12], scored: 3 }, // 10|1  11|1 10  12|1 10 11
      { input: [12, 13, 14], full: [12, 13, 14, 15], scored: 3 }, // 13|12  14|12 13  15|12 13 14
      { input: [13, 14, 15], full: [13, 14, 15, 16], scored: 1 }, // 16|13 14 15
    ]);
  });

  it("a document shorter than L is one window after the prefix; exactly L tokens too; none for no tokens", () => {
    expect(rollingTokenWindows([5, 6], 1, 4).map(makeDisjointWindow)).toEqual([[[1], [5, 6]]]);
    expect(rollingRequest([1], [5, 6], 4)).toEqual({ input: [1, 5], full: [1, 5, 6], scored: 2 });
    expect(rollingTokenWindows([5, 6, 7], 1, 3)).toEqual([
      [
        [1, 5, 6],
        [5, 6, 7],
      ],
    ]);
    expect(rollingTokenWindows([], 1, 3)).toEqual([]);
  });

  it("lm-eval's own cases: 34 tokens, L = 10, context_len 1 / 8 / 10; 9 tokens, L = 2", () => {
    const x = range(0, 34);
    expect(rollingTokenWindows(x, -100, 10, 1)).toEqual([
      [[-100, ...range(0, 9)], range(0, 10)],
      [range(9, 19), range(10, 20)],
      [range(19, 29), range(20, 30)],
      [range(23, 33), range(30, 34)],
    ]);
    // context_len 8: after the first window, three new tokens per window
    const v2 = rollingTokenWindows(x, -100, 10, 8);
    expect(v2[0]).toEqual([[-100, ...range(0, 9)], range(0, 10)]);
    expect(v2.slice(1)).toEqual(
      range(0, 8).map((k) => [range(2 + 3 * k, 12 + 3 * k), range(10 + 3 * k, 13 + 3 * k)]),
    );
    // context_len 10: one new token per window
    const v3 = rollingTokenWindows(x, -100, 10, 10);
    expect(v3.slice(1)).toEqual(range(0, 24).map((k) => [range(k, k + 10), [k + 10]]));
    expect(rollingTokenWindows(range(0, 30), -100, 10, 1)).toHaveLength(3);
    expect(rollingTokenWindows(range(0, 9), -100, 2, 1)).toEqual([
      [
        [-100, 0],
        [0, 1],
      ],
      [
        [1, 2],
        [2, 3],
      ],
      [
        [3, 4],
        [4, 5],
      ],
      [
        [5, 6],
        [6, 7],
      ],
      [[6, 7], [8]],
    ]);
    expect(
      makeDisjointWindow([
        [1, 2, 3, 4, 5],
        [2, 3, 4, 5, 6],
      ]),
    ).toEqual([[1], [2, 3, 4, 5, 6]]);
    expect(
      makeDisjointWindow([
        [1, 2, 3, 4, 5],
        [4, 5, 6],
      ]),
    ).toEqual([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    expect(makeDisjointWindow([[1, 2, 3, 4, 5], [6]])).toEqual([[1, 2, 3, 4, 5], [6]]);
  });

  it("every token is predicted exactly once, from a contiguous left context of at most L tokens", () => {
    for (const n of [1, 2, 5, 9, 10, 11, 19, 20, 21, 47]) {
      for (const L of [1, 2, 3, 10]) {
        const toks = range(100, 100 + n);
        const seq = [-1, ...toks]; // the prefix, then the document
        const predicted: number[] = [];
        for (const w of rollingTokenWindows(toks, -1, L).map(makeDisjointWindow)) {
          const { input, full, scored } = rollingRequest(w[0], w[1], L);
          expect(input.length).toBeLessThanOrEqual(L);
          expect(full.length).toBe(input.length + 1);
          // full is a contiguous run of (prefix + document) ending with the last predicted token
          const start = seq.indexOf(full[0]);
          expect(full).toEqual(seq.slice(start, start + full.length));
          predicted.push(...full.slice(full.length - scored));
        }
        expect(predicted, `n=${n} L=${L}`).toEqual(toks);
      }
    }
  });
});

describe("word and byte counts as lm-eval's wikitext task counts them", () => {
  it("pythonWordCount = len(re.split(r'\\s+', text)) in Python 3", () => {
    expect(pythonWordCount("a b c")).toBe(3);
    expect(pythonWordCount(" a  b \n")).toBe(4); // empty strings at both ends count, as in Python
    expect(pythonWordCount("")).toBe(1);
    expect(pythonWordCount("a\u00a0b\u3000c\u2028d")).toBe(4);
    expect(pythonWordCount("a\x1cb\x85c")).toBe(3); // Python's \s has them …
    expect(pythonWordCount("a\ufeffb")).toBe(1); // … but not U+FEFF (JavaScript's \s has it)
  });
});

const DOCS = [
  "The cat sat on the mat.",
  `Once upon a time there was a cat that sat on the mat. The cat was the best of cats, and the mat was the worst of
mats. It was the age of wisdom, it was the age of foolishness; the cat did not care. In the morning the cat went to
the garden and looked at the birds in the trees.`,
  "A dog.",
  "In the morning the cat went to the garden and looked at the birds.",
];

let root: string;
let dir: string;
let tiny: TinyModel;
let model: LoadedModel;
let tok: PareTokenizer;
let runner: Runner;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-docs-"));
  dir = path.join(root, "llama");
  tiny = makeTinyLlama({ seed: 61, vocab: 300 });
  writeTinyModel(dir, tiny, makeByteBpeTokenizerJson(300));
  model = loadModel(dir);
  tok = loadTokenizer(dir);
  runner = await Runner.create(model);
});

afterAll(async () => {
  await runner?.close();
  model?.close();
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

/** The float64 reference forward on `ids`: nll(t, label) = −log p(label | ids[..t]). */
function refForward(ids: number[]): { nll: (t: number, label: number) => number } {
  const { logits } = referenceDecoderForward(tiny.config, tensorMap(tiny), ids);
  const V = logits.length / ids.length;
  return {
    nll(t, label) {
      const z = logits.subarray(t * V, (t + 1) * V);
      let mx = Number.NEGATIVE_INFINITY;
      for (const v of z) mx = Math.max(mx, v);
      let s = 0;
      for (const v of z) s += Math.exp(v - mx);
      return mx + Math.log(s) - z[label];
    },
  };
}

/**
 * The rolling log-likelihood of each document as lm-eval computes it: its requests, each scored on the model input
 * lm-eval builds (at most L tokens), the last |continuation| positions (the last one predicting a token that is
 * not in the input).
 */
function referenceRolling(docs: string[], L: number): { ll: number; tokens: number; windows: number } {
  let ll = 0;
  let tokens = 0;
  let windows = 0;
  for (const d of docs) {
    const ids = tok.encode(d, { addSpecialTokens: false });
    tokens += ids.length;
    for (const w of rollingTokenWindows(ids, 1, L).map(makeDisjointWindow)) {
      const { input, scored } = rollingRequest(w[0], w[1], L);
      const f = refForward(input);
      for (let k = 0; k < scored; k++) ll -= f.nll(input.length - scored + k, w[1][k]);
      windows++;
    }
  }
  return { ll, tokens, windows };
}

/** A float64 scorer from the reference forward, with or without labeledNll. */
function referenceScorer(labeled: boolean, seen: number[] = []): NllScorer {
  const s: NllScorer = {
    model: { dims: { maxPos: 128 } },
    async windowNll(windows) {
      return windows.map((w) => {
        seen.push(w.length);
        const f = refForward(w);
        return Float64Array.from(range(0, w.length - 1), (t) => f.nll(t, w[t + 1]));
      });
    },
  };
  if (labeled) {
    s.labeledNll = async (inputs, labels) =>
      inputs.map((w, b) => {
        seen.push(w.length);
        const f = refForward(w);
        return Float64Array.from(range(0, w.length), (t) => (labels[b][t] < 0 ? 0 : f.nll(t, labels[b][t])));
      });
  }
  return s;
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

describe("rollingPerplexity (lm-eval loglikelihood_rolling) on a tiny llama", () => {
  it("documents span several windows, and one is shorter than a window", () => {
    const lens = DOCS.map((d) => tok.encode(d, { addSpecialTokens: false }).length);
    expect(Math.max(...lens)).toBeGreaterThan(2 * 16);
    expect(Math.min(...lens)).toBeLessThan(16);
  });

  it("equals the float64 reference on lm-eval's exact inputs (runner: ≤ 1e-5 relative)", async () => {
    const L = 16;
    const want = referenceRolling(DOCS, L);
    const r = await rollingPerplexity(runner, tok, DOCS, { seqLen: L });
    expect(r.protocolName).toBe("rolling");
    expect(r.documents).toBe(DOCS.length);
    expect(r.emptyDocuments).toBe(0);
    expect(r.tokens).toBe(want.tokens);
    expect(r.windows).toBe(want.windows);
    expect(r.seqLen).toBe(L);
    expect(rel(r.loglikelihood, want.ll)).toBeLessThan(1e-5);
    expect(r.nll).toBeCloseTo(-r.loglikelihood / r.tokens, 12);
    expect(r.ppl).toBeCloseTo(Math.exp(-r.loglikelihood / r.tokens), 8);
    // word / byte perplexity and bits per byte as the wikitext task aggregates them
    const words = DOCS.reduce((s, d) => s + pythonWordCount(d), 0);
    const bytes = DOCS.reduce((s, d) => s + Buffer.byteLength(d), 0);
    expect(r.words).toBe(words);
    expect(r.bytes).toBe(bytes);
    expect(r.wordPerplexity).toBeCloseTo(Math.exp(-r.loglikelihood / words), 6);
    expect(r.bytePerplexity).toBeCloseTo(Math.exp(-r.loglikelihood / bytes), 10);
    expect(r.bitsPerByte).toBeCloseTo(-r.loglikelihood / bytes / Math.LN2, 10);
    expect(r.prefixToken).toBe("<s>");
    expect(r.protocol).toMatch(/^rolling \(lm-evaluation-harness loglikelihood_rolling\): 4 documents, /);
    expect(r.protocol).toContain(`at most ${L} tokens`);
    expect(r.protocol).toContain(`${r.windows} windows`);
  });

  it("the index arithmetic is exact: a float64 scorer gives the reference to 1e-12, with and without labeledNll", async () => {
    const L = 16;
    const want = referenceRolling(DOCS, L);
    const fed: number[] = [];
    const labeledFeeds: number[] = [];
    const a = await rollingPerplexity(referenceScorer(false, fed), tok, DOCS, { seqLen: L, batchSize: 3 });
    const b = await rollingPerplexity(referenceScorer(true, labeledFeeds), tok, DOCS, {
      seqLen: L,
      batchSize: 3,
    });
    expect(Math.abs(a.loglikelihood - want.ll)).toBeLessThan(1e-12 * Math.abs(want.ll));
    expect(Math.abs(b.loglikelihood - want.ll)).toBeLessThan(1e-12 * Math.abs(want.ll));
    // without labeledNll the predicted last token is fed too (L + 1); with it, at most L tokens, as lm-eval
    expect(Math.max(...fed)).toBe(L + 1);
    expect(Math.max(...labeledFeeds)).toBe(L);
  });

  it("batch size 1, 3 and 8 give the same result (≤ 1e-6)", async () => {
    const rs = [];
    for (const batchSize of [1, 3, 8])
      rs.push(await rollingPerplexity(runner, tok, DOCS, { seqLen: 12, batchSize }));
    for (const r of rs.slice(1)) {
      expect(r.windows).toBe(rs[0].windows);
      expect(rel(r.loglikelihood, rs[0].loglikelihood)).toBeLessThanOrEqual(1e-6);
    }
  });

  it("documents with no token are skipped and counted; maxDocs keeps the first ones", async () => {
    const r = await rollingPerplexity(runner, tok, ["", DOCS[0], DOCS[2]], { seqLen: 16, emptySkipped: 2 });
    expect(r.documents).toBe(2);
    expect(r.emptyDocuments).toBe(3);
    expect(r.protocol).toContain("2 documents (3 empty documents skipped)");
    const first = await rollingPerplexity(runner, tok, DOCS, { seqLen: 16, maxDocs: 1 });
    expect(first.documents).toBe(1);
    expect(rel(first.loglikelihood, referenceRolling(DOCS.slice(0, 1), 16).ll)).toBeLessThan(1e-5);
    expect(await codeOf(() => rollingPerplexity(runner, tok, [""], { seqLen: 16 }))).toBe("E_DATA_EMPTY");
  });

  it("L = max_position_embeddings: refused with a clear fix without labeledNll, exact with it", async () => {
    const long = [DOCS[1].repeat(2)];
    expect(tok.encode(long[0], { addSpecialTokens: false }).length).toBeGreaterThan(128);
    // a scorer without labeledNll must feed L + 1 tokens: refused at L = max_position_embeddings
    const windowsOnly = { model: runner.model, windowNll: runner.windowNll.bind(runner) };
    try {
      await rollingPerplexity(windowsOnly, tok, long, { seqLen: 128 });
      throw new Error("expected E_USAGE");
    } catch (e) {
      expect((e as PareError).code).toBe("E_USAGE");
      expect((e as PareError).hint).toContain("--seq-len 127");
    }
    const ok = await rollingPerplexity(windowsOnly, tok, long, { seqLen: 127 });
    expect(ok.tokens).toBeGreaterThan(128);
    // the Runner scores explicit labels (labeledNll): the full context length works, every token scored once
    const full = await rollingPerplexity(runner, tok, long, { seqLen: 128 });
    expect(full.tokens).toBe(ok.tokens);
    expect(Number.isFinite(full.ppl)).toBe(true);
  });
});

describe("windows over documents (llama2.c / nanoGPT: BOS + each document's tokens, concatenated)", () => {
  it("each document starts with BOS and carries no other special token", () => {
    const { docs } = tokenizeDocuments(tok, DOCS);
    const ids = concatDocuments(
      docs.map((d) => d.ids),
      1,
    );
    expect(concatDocuments([[5, 6], [7]], 1)).toEqual([1, 5, 6, 1, 7]);
    expect(ids.filter((x) => x === 1)).toHaveLength(DOCS.length);
    let at = 0;
    for (const d of DOCS) {
      const own = tok.encode(d, { addSpecialTokens: false });
      expect(ids.slice(at, at + 1 + own.length)).toEqual([1, ...own]);
      // the tokenizer's own BOS + text gives the same ids
      expect(tok.encode(d)).toEqual([1, ...own]);
      at += 1 + own.length;
    }
  });

  it("is perplexity() over those ids, with the protocol naming the documents and BOS", async () => {
    const { docs } = tokenizeDocuments(tok, DOCS);
    const ids = concatDocuments(
      docs.map((d) => d.ids),
      1,
    );
    const want = await perplexity(runner, ids, { seqLen: 16 });
    const r = await documentPerplexity(runner, tok, DOCS, { seqLen: 16, emptySkipped: 1 });
    expect(r.protocolName).toBe("documents");
    expect(r.ppl).toBe(want.ppl);
    expect(r.tokens).toBe(want.tokens);
    expect(r.totalTokens).toBe(ids.length);
    expect(r.documents).toBe(4);
    expect(r.emptyDocuments).toBe(1);
    expect(r.protocol).toBe(
      `windows over documents: 4 documents (1 empty document skipped), each <s> + its own tokens, concatenated into ${ids.length} tokens; ${want.protocol}`,
    );
  });

  it("the prefix is BOS, else EOS (lm-eval's prefix_token_id); neither → E_USAGE", () => {
    const fake = (bosId?: number, eosId?: number) =>
      ({ bosId, eosId, decode: (ids: number[]) => `<${ids[0]}>` }) as unknown as PareTokenizer;
    expect(documentPrefix(fake(5, 6))).toEqual({ id: 5, token: "<5>", kind: "bos" });
    expect(documentPrefix(fake(undefined, 6))).toEqual({ id: 6, token: "<6>", kind: "eos" });
    try {
      documentPrefix(fake());
      throw new Error("expected E_USAGE");
    } catch (e) {
      expect((e as PareError).code).toBe("E_USAGE");
    }
  });
});

describe("pare eval --task ppl over documents (CLI)", () => {
  let data: Record<string, string>;
  beforeAll(() => {
    const d = path.join(root, "data");
    fs.mkdirSync(d);
    data = {
      jsonl: path.join(d, "docs.jsonl"),
      txt: path.join(d, "docs.txt"),
      bad: path.join(d, "bad.jsonl"),
      plain: path.join(d, "plain.txt"),
    };
    fs.writeFileSync(data.jsonl, `${DOCS.map((text, i) => JSON.stringify({ id: i, text })).join("\n")}\n`);
    // two blank lines between documents, and one empty document
    fs.writeFileSync(data.txt, `${DOCS[0]}\n\n\n${DOCS[1]}\n\n\n\n\n\n${DOCS[2]}\n\n\n${DOCS[3]}`);
    fs.writeFileSync(data.bad, `{"text": "a"}\n\n{"text": 7}\n`);
    fs.writeFileSync(data.plain, DOCS.join("\n"));
  });

  it(".jsonl → windows over documents; --json says protocolName documents and equals the in-process value", async () => {
    const r = await runCli(["eval", dir, "--task", "ppl", "--data", data.jsonl, "--seq-len", "16", "--json"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const j = parseSingleJson(r.stdout);
    const want = await documentPerplexity(runner, tok, DOCS, { seqLen: 16 });
    expect(j.protocolName).toBe("documents");
    expect(j.documents).toBe(4);
    expect(j.tokens).toBe(want.tokens);
    expect(j.protocol).toBe(want.protocol);
    expect(rel(j.ppl as number, want.ppl)).toBeLessThan(1e-6);
  });

  it("--protocol rolling --json: token, word and byte perplexity equal the in-process value", async () => {
    const r = await runCli([
      "eval",
      dir,
      "--task",
      "ppl",
      "--data",
      data.jsonl,
      "--seq-len",
      "16",
      "--protocol",
      "rolling",
      "--batch-size",
      "3",
      "--json",
    ]);
    expect(r.code).toBe(0);
    const j = parseSingleJson(r.stdout);
    const want = await rollingPerplexity(runner, tok, DOCS, { seqLen: 16 });
    expect(j.protocolName).toBe("rolling");
    for (const k of ["tokens", "windows", "documents", "words", "bytes", "seqLen"] as const)
      expect(j[k], k).toBe(want[k]);
    for (const k of ["ppl", "wordPerplexity", "bytePerplexity", "bitsPerByte", "loglikelihood"] as const)
      expect(rel(j[k] as number, want[k]), k).toBeLessThan(1e-6);
  });

  it("--doc-separator '\\n\\n\\n' (escapes as typed) --protocol rolling, human output: numbers, protocol, empty skipped", async () => {
    const r = await runCli([
      "eval",
      dir,
      "--task",
      "ppl",
      "--data",
      data.txt,
      "--seq-len",
      "16",
      "--protocol",
      "rolling",
      "--doc-separator",
      "\\n\\n\\n",
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^perplexity \d+\.\d{3} per token {2}\(mean NLL \d+\.\d{5}\)\n/);
    expect(r.stdout).toMatch(
      /word perplexity \d+\.\d{3} {3}byte perplexity \d+\.\d{4} {3}bits per byte \d+\.\d{4}/,
    );
    expect(r.stdout).toContain(
      "protocol: rolling (lm-evaluation-harness loglikelihood_rolling): 4 documents (1 empty document skipped)",
    );
    expect(r.stdout).toContain('(documents: split at "\\n\\n\\n")');
    expect(r.stderr).toContain("skipping 1 empty document");
  });

  it("errors: a bad .jsonl line, a separator that never occurs, an unknown protocol, --max-windows with rolling", async () => {
    const run = async (args: string[]) => {
      const r = await runCli(["eval", dir, "--task", "ppl", "--seq-len", "16", "--json", ...args]);
      const e = parseSingleJson(r.stdout).error as { code: string; message: string; hint: string };
      expect(r.stderr).toContain(`error[${e.code}]`);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      return { ...e, exit: r.code };
    };
    const bad = await run(["--data", data.bad]);
    expect(bad.code).toBe("E_DATA_INVALID");
    expect(bad.message).toContain(`${data.bad}:3: "text" is number`);
    expect(bad.exit).toBe(1);
    const sep = await run(["--data", data.plain, "--doc-separator", "@@@"]);
    expect(sep.code).toBe("E_USAGE");
    expect(sep.message).toContain('"@@@" never occurs');
    expect(sep.exit).toBe(2);
    expect((await run(["--data", data.jsonl, "--protocol", "sliding"])).code).toBe("E_USAGE");
    const mw = await run(["--data", data.jsonl, "--protocol", "rolling", "--max-windows", "2"]);
    expect(mw.code).toBe("E_USAGE");
    expect(mw.hint).toContain("--max-docs");
  });

  it("a plain text file without flags keeps the whole-text windows protocol and its JSON keys", async () => {
    const r = await runCli(["eval", dir, "--task", "ppl", "--data", data.plain, "--seq-len", "16", "--json"]);
    expect(r.code).toBe(0);
    const j = parseSingleJson(r.stdout);
    expect(Object.keys(j)).toEqual([
      "task",
      "model",
      "data",
      "ppl",
      "nll",
      "tokens",
      "windows",
      "seqLen",
      "totalTokens",
      "droppedTailTokens",
      "protocol",
    ]);
    const want = await perplexity(runner, tok.encode(DOCS.join("\n")), { seqLen: 16 });
    expect(j.protocol).toBe(want.protocol);
    expect(rel(j.ppl as number, want.ppl)).toBeLessThan(1e-6);
  });
});
