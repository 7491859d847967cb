/**
 * matthews() against a slow, obvious reference; classify() on a tiny BERT with the WordPiece tokenizer against
 * the float64 reference forward, and batch-size invariance.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LoadedModel, loadModel } from "../../src/arch/load.ts";
import { PareError } from "../../src/errors.ts";
import { classify, matthews } from "../../src/eval/classify.ts";
import { Runner } from "../../src/eval/runner.ts";
import type { LabeledExample } from "../../src/io/datasets.ts";
import { loadTokenizer, type PareTokenizer } from "../../src/io/tokenizer.ts";
import { Rng } from "../helpers/rng.ts";
import {
  makeTinyBert,
  makeWordPieceTokenizerJson,
  type TinyModel,
  tensorMap,
  writeTinyModel,
} from "../helpers/tinyModels.ts";
import { argmax, referenceBertForward } from "../reference/forward.ts";

// ---------------------------------------------------------------------------------------------------------
// Matthews correlation

/**
 * The multiclass MCC as Pearson's correlation of the one-hot label and prediction matrices (Gorodkin 2004),
 * computed the long way: cov(X, Y) / √(cov(X, X) · cov(Y, Y)), cov(A, B) = Σ_n Σ_k (A_nk − Ā_k)(B_nk − B̄_k).
 */
function slowMcc(labels: number[], preds: number[], k: number): number {
  const n = labels.length;
  const oneHot = (v: number[]) => v.map((c) => Array.from({ length: k }, (_, j) => (j === c ? 1 : 0)));
  const X = oneHot(labels);
  const Y = oneHot(preds);
  const mean = (A: number[][]) => Array.from({ length: k }, (_, j) => A.reduce((s, r) => s + r[j], 0) / n);
  const mx = mean(X);
  const my = mean(Y);
  const cov = (A: number[][], ma: number[], B: number[][], mb: number[]) => {
    let s = 0;
    for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) s += (A[i][j] - ma[j]) * (B[i][j] - mb[j]);
    return s;
  };
  const den = Math.sqrt(cov(X, mx, X, mx) * cov(Y, my, Y, my));
  return den === 0 ? 0 : cov(X, mx, Y, my) / den;
}

/** The textbook binary MCC from the confusion counts. */
function binaryMcc(labels: number[], preds: number[]): number {
  let tp = 0;
  let tn = 0;
  let fp = 0;
  let fn = 0;
  labels.forEach((y, i) => {
    const p = preds[i];
    if (y === 1 && p === 1) tp++;
    else if (y === 0 && p === 0) tn++;
    else if (y === 0 && p === 1) fp++;
    else fn++;
  });
  const den = Math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn));
  return den === 0 ? 0 : (tp * tn - fp * fn) / den;
}

describe("matthews", () => {
  it("hand-checked binary cases", () => {
    // TP=2 TN=2 FP=1 FN=1 → (4 − 1) / √(3·3·3·3) = 1/3
    expect(matthews([1, 1, 1, 0, 0, 0], [1, 0, 1, 0, 0, 1], 2)).toBeCloseTo(1 / 3, 14);
    // scikit-learn's docstring example: y_true [+1,+1,+1,−1], y_pred [+1,−1,+1,+1] → −0.333…
    expect(matthews([1, 1, 1, 0], [1, 0, 1, 1], 2)).toBeCloseTo(-1 / 3, 14);
    expect(matthews([0, 1, 0, 1], [0, 1, 0, 1], 2)).toBe(1);
    expect(matthews([0, 1, 0, 1], [1, 0, 1, 0], 2)).toBe(-1);
    // a constant prediction (or constant labels) has no correlation: defined as 0
    expect(matthews([0, 1, 1, 0], [1, 1, 1, 1], 2)).toBe(0);
    expect(matthews([1, 1, 1], [0, 1, 0], 2)).toBe(0);
  });

  it("hand-checked 3-class case", () => {
    // confusion C[y][p]: y=0: p=[2,1,0]; y=1: [0,2,1]; y=2: [1,0,2]  (n = 9, correct c = 6)
    // t = [3,3,3], p = [3,3,3] → (6·9 − 27) / √((81 − 27)(81 − 27)) = 27/54 = 0.5
    const labels = [0, 0, 0, 1, 1, 1, 2, 2, 2];
    const preds = [0, 0, 1, 1, 1, 2, 2, 2, 0];
    expect(matthews(labels, preds, 3)).toBeCloseTo(0.5, 14);
    expect(matthews(labels, labels, 3)).toBe(1);
  });

  it("equals the slow references on random binary label vectors", () => {
    const rng = new Rng(61);
    for (let trial = 0; trial < 200; trial++) {
      const n = 1 + rng.int(60);
      const bias = rng.uniform();
      const labels = Array.from({ length: n }, () => (rng.uniform() < bias ? 1 : 0));
      const noise = rng.uniform();
      const preds = labels.map((y) => (rng.uniform() < noise ? 1 - y : y));
      const got = matthews(labels, preds, 2);
      expect(Math.abs(got - binaryMcc(labels, preds))).toBeLessThan(1e-12);
      expect(Math.abs(got - slowMcc(labels, preds, 2))).toBeLessThan(1e-12);
      expect(Math.abs(got)).toBeLessThanOrEqual(1 + 1e-12);
    }
  });

  it("equals the slow reference on random 3-class label vectors", () => {
    const rng = new Rng(62);
    for (let trial = 0; trial < 200; trial++) {
      const n = 1 + rng.int(80);
      const labels = Array.from({ length: n }, () => rng.int(3));
      const noise = rng.uniform();
      const preds = labels.map((y) => (rng.uniform() < noise ? rng.int(3) : y));
      const got = matthews(labels, preds, 3);
      expect(Math.abs(got - slowMcc(labels, preds, 3))).toBeLessThan(1e-12);
      expect(Math.abs(got)).toBeLessThanOrEqual(1 + 1e-12);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------
// classify() on a tiny BERT

const WORDS = [
  "the",
  "a",
  "movie",
  "film",
  "was",
  "is",
  "good",
  "bad",
  "great",
  "boring",
  "charming",
  "awful",
  "and",
  "but",
  "not",
  "very",
  "story",
  "actors",
  "plot",
  "funny",
];

/** 45 labeled sentences (vocabulary words and misspellings, lengths 1–25 words). */
function makeData(k: number): LabeledExample[] {
  const rng = new Rng(63);
  const extra = ["xyz", "qwerty", "zzz", "brilliant", "dull", "1999", "!", "?", ","];
  return Array.from({ length: 45 }, () => {
    const n = 1 + rng.int(25);
    const words = Array.from({ length: n }, () =>
      rng.uniform() < 0.85 ? WORDS[rng.int(WORDS.length)] : extra[rng.int(extra.length)],
    );
    return { text: words.join(" "), label: rng.int(k) };
  });
}

let dir: string;
let tiny: TinyModel;
let model: LoadedModel;
let tok: PareTokenizer;
let runner: Runner;
let data: LabeledExample[];
const K = 3;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "pare-cls-"));
  tiny = makeTinyBert({ seed: 64, numLabels: K });
  const tokJson = makeWordPieceTokenizerJson(WORDS);
  writeTinyModel(dir, tiny, tokJson);
  tok = loadTokenizer(dir);
  data = makeData(K);
  centerClassifier(tiny, data, tok);
  writeTinyModel(dir, tiny, tokJson);
  model = loadModel(dir);
  runner = await Runner.create(model);
});

/**
 * A random classifier on a random model's pooled output predicts the same class for every input (the pooled
 * vectors differ little between inputs). Sharpen it (×20) and center its logits over the data set so that the
 * predictions vary with the input and the comparisons below mean something.
 */
function centerClassifier(m: TinyModel, examples: LabeledExample[], t: PareTokenizer): void {
  const w = m.tensors.find((x) => x.name === "classifier.weight")!;
  const b = m.tensors.find((x) => x.name === "classifier.bias")!;
  const H = w.shape[1];
  const mean = new Float64Array(K);
  for (const ex of examples) {
    const { pooled } = referenceBertForward(m.config, tensorMap(m), t.encode(ex.text));
    for (let c = 0; c < K; c++)
      for (let j = 0; j < H; j++) mean[c] += (20 * w.data[c * H + j] * pooled[j]) / examples.length;
  }
  // new arrays: the reference caches a float64 copy of each weight array it has seen
  w.data = w.data.map((x) => 20 * x);
  b.data = Float32Array.from(mean, (x) => -x);
}

afterAll(async () => {
  await runner?.close();
  model?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe("classify on a tiny BERT with the WordPiece tokenizer", () => {
  it("predictions equal the reference forward's argmax for every example", async () => {
    const r = await classify(runner, tok, data);
    expect(r.n).toBe(data.length);
    expect(r.predictions).toHaveLength(data.length);
    const lengths = new Set<number>();
    let minMargin = Number.POSITIVE_INFINITY;
    data.forEach((ex, i) => {
      const ids = tok.encode(ex.text);
      lengths.add(ids.length);
      expect(ids[0]).toBe(2); // [CLS]
      expect(ids.at(-1)).toBe(3); // [SEP]
      const logits = referenceBertForward(tiny.config, tensorMap(tiny), ids).logits!;
      const sorted = [...logits].sort((a, b) => b - a);
      minMargin = Math.min(minMargin, sorted[0] - sorted[1]);
      expect(r.predictions[i], `example ${i}: "${ex.text}"`).toBe(argmax(logits));
    });
    // the check is meaningful: varied lengths (so batches are padded), no near-ties
    expect(lengths.size).toBeGreaterThan(10);
    expect(minMargin).toBeGreaterThan(1e-4);
    // not all one class
    expect(new Set(r.predictions).size).toBeGreaterThan(1);
    const correct = data.filter((ex, i) => ex.label === r.predictions[i]).length;
    expect(r.correct).toBe(correct);
    expect(r.accuracy).toBeCloseTo(correct / data.length, 15);
    expect(r.mcc).toBeCloseTo(
      slowMcc(
        data.map((d) => d.label),
        r.predictions,
        K,
      ),
      12,
    );
    expect(r.truncated).toBe(0);
    expect(r.protocol).toContain(`${data.length} examples`);
  });

  it("batch sizes 1, 4 and 32 give identical predictions and logits", async () => {
    const runs = [];
    for (const batchSize of [1, 4, 32]) runs.push(await classify(runner, tok, data, { batchSize }));
    for (const r of runs.slice(1)) {
      expect(r.predictions).toEqual(runs[0].predictions);
      expect(r.accuracy).toBe(runs[0].accuracy);
      expect(r.mcc).toBe(runs[0].mcc);
    }
    // the logits themselves: each example alone vs in one padded batch of all examples
    const enc = data.map((d) => ({ ids: tok.encode(d.text) }));
    const together = await runner.classify(enc, tok.padId ?? 0);
    for (let i = 0; i < enc.length; i += 7) {
      const [alone] = await runner.classify([enc[i]], tok.padId ?? 0);
      for (let c = 0; c < K; c++) expect(Math.abs(alone[c] - together[i][c])).toBeLessThanOrEqual(1e-5);
    }
  });

  it("text pairs: predictions match the reference with HF token types (0 up to the first [SEP], 1 after)", async () => {
    const pairs: LabeledExample[] = data.slice(0, 12).map((d, i) => ({ ...d, textPair: data[i + 12].text }));
    const enc = pairs.map((ex) => {
      const ids = tok.encode(ex.text, { textPair: ex.textPair });
      const sep = ids.indexOf(3);
      return { ids, types: ids.map((_, t) => (t <= sep ? 0 : 1)) };
    });
    const r = await classify(runner, tok, pairs, { batchSize: 4 });
    const want = enc.map(({ ids, types }) =>
      argmax(referenceBertForward(tiny.config, tensorMap(tiny), ids, types).logits!),
    );
    expect(r.predictions).toEqual(want);
  });

  it("sequences longer than max_position_embeddings are truncated (keeping [SEP]) and counted", async () => {
    const long = Array.from({ length: 80 }, (_, i) => WORDS[i % WORDS.length]).join(" ");
    const r = await classify(runner, tok, [{ text: long, label: 0 }, ...data.slice(0, 3)]);
    expect(r.truncated).toBe(1);
    const ids = tok.encode(long);
    expect(ids.length).toBeGreaterThan(64);
    const cut = [...ids.slice(0, 63), ids.at(-1)!];
    const logits = referenceBertForward(tiny.config, tensorMap(tiny), cut).logits!;
    expect(r.predictions[0]).toBe(argmax(logits));
  });

  it("labels outside the model's classes → E_DATA_INVALID", async () => {
    let code = "no error";
    try {
      await classify(runner, tok, [{ text: "good", label: K }]);
    } catch (e) {
      code = e instanceof PareError ? e.code : String(e);
    }
    expect(code).toBe("E_DATA_INVALID");
  });
});
