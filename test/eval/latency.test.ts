/**
 * flopsPerToken against a hand count for tiny llama / BERT models (dense and pruned), and benchSpeed /
 * `pare bench` as plumbing: the cases exist and every time and throughput is positive. Speed numbers themselves
 * belong to benchmarks, not tests: nothing here compares timings.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LoadedModel, loadModel } from "../../src/arch/load.ts";
import { benchSpeed, flopsPerToken, type SpeedReport } from "../../src/eval/latency.ts";
import { parseSingleJson, runCli } from "../helpers/cli.ts";
import {
  makeByteBpeTokenizerJson,
  makeTinyBert,
  makeTinyLlama,
  makeWordPieceTokenizerJson,
  type TinyModel,
  writeTinyModel,
} from "../helpers/tinyModels.ts";

const V = 300;
const H = 32;
const HD = 8;

let root: string;
const dirs: Record<string, string> = {};
const models: Record<string, LoadedModel> = {};

/** A pruned tiny llama: per-layer widths differ, recorded in config.pare_layer_widths as pare writes them. */
function prunedLlama(widths: [number, number, number][]): TinyModel {
  const tiny = makeTinyLlama({
    seed: 7,
    vocab: V,
    perLayer: {
      heads: widths.map((w) => w[0]),
      kvHeads: widths.map((w) => w[1]),
      intermediate: widths.map((w) => w[2]),
    },
  });
  tiny.config.pare_layer_widths = widths.map(([h, kv, f]) => ({
    num_attention_heads: h,
    num_key_value_heads: kv,
    intermediate_size: f,
  }));
  return tiny;
}

const PRUNED: [number, number, number][] = [
  [2, 1, 24],
  [4, 2, 40],
];

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-latency-"));
  const write = (name: string, tiny: TinyModel, tokenizer: object) => {
    dirs[name] = path.join(root, name);
    writeTinyModel(dirs[name], tiny, tokenizer);
    models[name] = loadModel(dirs[name]);
  };
  write("llama", makeTinyLlama({ seed: 7, vocab: V }), makeByteBpeTokenizerJson(V));
  write("pruned", prunedLlama(PRUNED), makeByteBpeTokenizerJson(V));
  write("bert", makeTinyBert({ seed: 7, vocab: V }), makeWordPieceTokenizerJson(["the", "cat"]));
  const bertPruned = makeTinyBert({ seed: 7, vocab: V, perLayer: { heads: [2, 4], intermediate: [32, 64] } });
  bertPruned.config.pare_layer_widths = [
    { num_attention_heads: 2, intermediate_size: 32 },
    { num_attention_heads: 4, intermediate_size: 64 },
  ];
  write("bertPruned", bertPruned, makeWordPieceTokenizerJson(["the", "cat"]));
});

afterAll(() => {
  for (const m of Object.values(models)) m.close();
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

/**
 * Decoder, by hand: every linear weight does one multiply-add per token (2 FLOPs): q and o are hidden × heads·hd,
 * k and v hidden × kv·hd, gate/up/down hidden × ffn (no biases in these models); the LM head hidden × vocab; plus
 * attention scores and mixing, 2·T·heads·hd each per layer.
 */
function handDecoder(layers: [number, number, number][], T: number): number {
  let linear = 0;
  let attention = 0;
  for (const [heads, kv, ffn] of layers) {
    linear += 2 * H * heads * HD + 2 * H * kv * HD + 3 * H * ffn;
    attention += 2 * (2 * T * heads * HD);
  }
  return 2 * (linear + H * V) + attention;
}

/**
 * BERT, by hand: q/k/v/o are hidden × heads·hd with biases, intermediate/output dense hidden × ffn with biases; the
 * classification head counted as the pooler's hidden × hidden; attention as for decoders.
 */
function handBert(layers: [number, number][], T: number): number {
  let linear = 0;
  let attention = 0;
  for (const [heads, ffn] of layers) {
    const a = heads * HD;
    linear += 4 * (H * a) + 3 * a + H + (H * ffn + ffn) + (ffn * H + H);
    attention += 4 * T * heads * HD;
  }
  return 2 * (linear + H * H) + attention;
}

describe("flopsPerToken", () => {
  it("tiny llama: 2·(attention+MLP weights + LM head) + 4·T·heads·hd per layer", () => {
    const dense: [number, number, number][] = [
      [4, 2, 48],
      [4, 2, 48],
    ];
    // 2 layers × (q 1024 + k 512 + v 512 + o 1024 + MLP 4608) = 15360; head 9600; attention 2 × 4·16·32 = 4096
    expect(handDecoder(dense, 16)).toBe(2 * (15360 + 9600) + 4096);
    for (const T of [1, 16, 128]) expect(flopsPerToken(models.llama, T)).toBe(handDecoder(dense, T));
  });

  it("tiny BERT (biases included, pooler as the head)", () => {
    for (const T of [1, 16, 64])
      expect(flopsPerToken(models.bert, T), `T=${T}`).toBe(
        handBert(
          [
            [4, 64],
            [4, 64],
          ],
          T,
        ),
      );
  });

  it("a pruned model has fewer FLOPs per token, by the hand count of its per-layer widths", () => {
    for (const T of [1, 16, 128]) {
      expect(flopsPerToken(models.pruned, T)).toBe(handDecoder(PRUNED, T));
      expect(flopsPerToken(models.pruned, T)).toBeLessThan(flopsPerToken(models.llama, T));
      expect(flopsPerToken(models.bertPruned, T)).toBe(
        handBert(
          [
            [2, 32],
            [4, 64],
          ],
          T,
        ),
      );
      expect(flopsPerToken(models.bertPruned, T)).toBeLessThan(flopsPerToken(models.bert, T));
    }
  });
});

function checkCases(r: SpeedReport, names: RegExp[]): void {
  expect(r.cases.map((c) => c.name)).toHaveLength(names.length);
  r.cases.forEach((c, i) => {
    expect(c.name).toMatch(names[i]);
    expect(c.seconds).toHaveLength(r.models.length);
    expect(c.tokensPerSecond).toHaveLength(r.models.length);
    for (const s of c.seconds) expect(s).toBeGreaterThan(0);
    for (const t of c.tokensPerSecond) expect(t).toBeGreaterThan(0);
    for (const t of c.tokensPerSecond) expect(Number.isFinite(t)).toBe(true);
  });
}

describe("benchSpeed", () => {
  it("decoders (dense + pruned): prefill and KV-cache generation cases, positive times and tokens/s", async () => {
    const progress: string[] = [];
    const r = await benchSpeed([models.llama, models.pruned], {
      runs: 1,
      threads: 1,
      seqLen: 8,
      batch: 2,
      genTokens: 4,
      promptLen: 4,
      onProgress: (m) => progress.push(m),
    });
    checkCases(r, [/^decoder prefill 2 × 8 tokens$/, /^decoder generation, 4 new tokens/]);
    expect(r.runs).toBe(1);
    expect(r.models.map((m) => m.dir)).toEqual([models.llama.dir, models.pruned.dir]);
    expect(r.models[0].flopsPerToken).toBe(flopsPerToken(models.llama, 8));
    expect(r.models[1].flopsPerToken).toBe(flopsPerToken(models.pruned, 8));
    expect(r.models[1].prunable).toBeLessThan(r.models[0].prunable);
    expect(r.models[1].params).toBeLessThan(r.models[0].params);
    expect(progress).toHaveLength(2);
  });

  it("encoders: batch 1 and batch B cases", async () => {
    const r = await benchSpeed([models.bert, models.bertPruned], {
      runs: 2,
      threads: 1,
      seqLen: 8,
      batch: 3,
    });
    checkCases(r, [/^encoder batch 1 × 8 tokens$/, /^encoder batch 3 × 8 tokens$/]);
    expect(r.runs).toBe(2);
    expect(r.models[1].flopsPerToken).toBeLessThan(r.models[0].flopsPerToken);
  });
});

describe("pare bench (CLI)", () => {
  it("--json --runs 2 --seq-len 16 --batch 2 prints one JSON object", async () => {
    const r = await runCli([
      "bench",
      dirs.llama,
      dirs.pruned,
      "--json",
      "--runs",
      "2",
      "--seq-len",
      "16",
      "--batch",
      "2",
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe("");
    const out = parseSingleJson(r.stdout) as unknown as SpeedReport;
    expect(out.runs).toBe(2);
    expect(out.models).toHaveLength(2);
    expect(out.models[0].flopsPerToken).toBe(flopsPerToken(models.llama, 16));
    expect(out.models[1].flopsPerToken).toBe(flopsPerToken(models.pruned, 16));
    checkCases(out, [/^decoder prefill 2 × 16 tokens$/, /^decoder generation/]);
  });

  it("an encoder next to a decoder → E_USAGE", async () => {
    const r = await runCli(["bench", dirs.llama, dirs.bert, "--json", "--runs", "1"]);
    expect(r.code).toBe(2);
    const out = parseSingleJson(r.stdout) as { error?: { code?: string } };
    expect(out.error?.code).toBe("E_USAGE");
    expect(r.stderr).toMatch(/^error\[E_USAGE\]/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
