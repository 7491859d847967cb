/**
 * `pare generate` end to end (`node bin/pare.js generate …` on tiny model folders): streamed human output (the
 * prompt, then the continuation; notes on stderr, silent with -q), `--json` (exactly one object, with --compare
 * both results), `--compare` (labelled blocks), and coded errors for bad flags and encoders (exit 2, a hint, no
 * stack trace). The tokens equal the library's `generate` with the same settings.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel } from "../../src/arch/load.ts";
import { type GenerateOptions, generate } from "../../src/eval/generate.ts";
import { loadTokenizer } from "../../src/io/tokenizer.ts";
import { parseSingleJson, runCli, snapshotDir } from "../helpers/cli.ts";
import {
  makeByteBpeTokenizerJson,
  makeTinyBert,
  makeTinyLlama,
  makeWordPieceTokenizerJson,
  nonUniformLlama,
  writeTinyModel,
} from "../helpers/tinyModels.ts";

let root: string;
let dense: string;
let pruned: string;
let bert: string;
const PROMPT = "the cat sat";
const NO_STACK = /^ {4}at /m;

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-cli-generate-"));
  dense = path.join(root, "dense");
  pruned = path.join(root, "pruned");
  bert = path.join(root, "bert");
  writeTinyModel(dense, makeTinyLlama({ seed: 81 }), makeByteBpeTokenizerJson(300));
  writeTinyModel(pruned, nonUniformLlama(82), makeByteBpeTokenizerJson(300));
  writeTinyModel(bert, makeTinyBert({ seed: 83 }), makeWordPieceTokenizerJson(["the", "cat"]));
});

afterAll(() => {
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

/** The library's result for a folder and settings (what the CLI must print). */
async function library(dir: string, o: GenerateOptions) {
  const m = loadModel(dir);
  try {
    return await generate(m, loadTokenizer(dir), o);
  } finally {
    m.close();
  }
}

describe("pare generate", () => {
  it("streams the prompt and then the continuation to stdout; the summary goes to stderr, -q silences it", async () => {
    const before = snapshotDir(dense);
    const r = await runCli(["generate", dense, "--prompt", PROMPT, "--max-new-tokens", "12"]);
    expect(r.code, r.stderr).toBe(0);
    const lib = await library(dense, { prompt: PROMPT, maxNewTokens: 12 });
    expect(r.stdout).toBe(`${PROMPT}${lib.text}\n`);
    expect(r.stderr).toMatch(/greedy/);
    expect(r.stderr).toMatch(/new tokens?, [\d.]+ tokens\/s/);
    expect(snapshotDir(dense)).toEqual(before);
    const q = await runCli(["generate", dense, "-q", "--prompt", PROMPT, "--max-new-tokens", "12"]);
    expect(q.code).toBe(0);
    expect(q.stdout).toBe(r.stdout);
    expect(q.stderr).toBe("");
  });

  it("--json: exactly one object {text, ids, tokensPerSecond, …}; sampling flags reach the library", async () => {
    const r = await runCli([
      "generate",
      dense,
      "--json",
      "--prompt",
      PROMPT,
      "--max-new-tokens",
      "10",
      "--temperature",
      "0.9",
      "--top-k",
      "20",
      "--top-p",
      "0.95",
      "--seed",
      "5",
      "--threads",
      "1",
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe("");
    const j = parseSingleJson(r.stdout);
    const lib = await library(dense, {
      prompt: PROMPT,
      maxNewTokens: 10,
      temperature: 0.9,
      topK: 20,
      topP: 0.95,
      seed: 5,
    });
    expect(j.text).toBe(lib.text);
    expect(j.ids).toEqual(lib.ids);
    expect(j.promptIds).toEqual(lib.promptIds);
    expect(j.prompt).toBe(PROMPT);
    expect(j.model).toBe(dense);
    expect(j.stopReason).toBe(lib.stopReason);
    expect(j.settings).toEqual({ maxNewTokens: 10, temperature: 0.9, topK: 20, topP: 0.95, seed: 5 });
    for (const k of ["tokensPerSecond", "prefillSeconds", "decodeSeconds", "loadSeconds"])
      expect(typeof j[k], k).toBe("number");
    expect(j.compare).toBeUndefined();
  });

  it("an empty prompt starts from BOS", async () => {
    const r = await runCli(["generate", dense, "--json", "--prompt", "", "--max-new-tokens", "4"]);
    expect(r.code, r.stderr).toBe(0);
    expect(parseSingleJson(r.stdout).promptIds).toEqual([1]);
  });

  it("--compare: both continuations, labelled (human) or both results (--json)", async () => {
    const args = ["generate", dense, "--compare", pruned, "--prompt", PROMPT, "--max-new-tokens", "8"];
    const r = await runCli(args);
    expect(r.code, r.stderr).toBe(0);
    const a = await library(dense, { prompt: PROMPT, maxNewTokens: 8 });
    const b = await library(pruned, { prompt: PROMPT, maxNewTokens: 8 });
    expect(r.stdout).toBe(
      `=== A: ${dense} ===\n${PROMPT}${a.text}\n\n=== B: ${pruned} ===\n${PROMPT}${b.text}\n`,
    );
    const j = await runCli([...args, "--json"]);
    expect(j.code, j.stderr).toBe(0);
    const o = parseSingleJson(j.stdout);
    expect(o.ids).toEqual(a.ids);
    expect(o.model).toBe(dense);
    const c = o.compare as Record<string, unknown>;
    expect(c.model).toBe(pruned);
    expect(c.ids).toEqual(b.ids);
    expect(c.text).toBe(b.text);
    expect(typeof c.tokensPerSecond).toBe("number");
  });

  it("bad flags and encoders: coded errors with a hint, exit 2, no stack trace (also with --json)", async () => {
    const cases: [string[], RegExp][] = [
      [["--top-p", "1.5"], /--top-p must be in \(0, 1\]/],
      [["--top-p", "0"], /--top-p/],
      [["--temperature", "-1"], /--temperature must be a number ≥ 0/],
      [["--max-new-tokens", "abc"], /--max-new-tokens must be an integer ≥ 1/],
      [["--top-k", "2.5"], /--top-k must be an integer ≥ 0/],
      [["--seed", "-3"], /--seed must be an integer ≥ 0/],
    ];
    for (const [flags, message] of cases) {
      const r = await runCli(["generate", dense, "--prompt", PROMPT, ...flags]);
      expect(r.code, flags.join(" ")).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr).toMatch(/^error\[E_USAGE\]: /);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).toMatch(/\n {2}hint: \S/);
      expect(r.stderr).not.toMatch(NO_STACK);
    }
    const e = await runCli(["generate", bert, "--prompt", PROMPT, "--json"]);
    expect(e.code).toBe(2);
    const j = parseSingleJson(e.stdout).error as Record<string, string>;
    expect(j.code).toBe("E_USAGE");
    expect(j.message).toMatch(/decoder/);
    expect(j.hint).toMatch(/ForCausalLM/);
    expect(e.stderr).not.toMatch(NO_STACK);
    // a prompt beyond the context (max_position_embeddings 128): nothing is printed
    const long = await runCli(["generate", dense, "--prompt", "x".repeat(200)]);
    expect(long.code).toBe(2);
    expect(long.stdout).toBe("");
    expect(long.stderr).toMatch(
      /error\[E_USAGE\]: the prompt is 201 tokens.*max_position_embeddings\) is 128/,
    );
    // a --compare model that cannot generate is refused before anything is printed
    const c = await runCli(["generate", dense, "--compare", bert, "--prompt", PROMPT]);
    expect(c.code).toBe(2);
    expect(c.stdout).toBe("");
    expect(c.stderr).toMatch(/error\[E_USAGE\]: .*encoder/);
  });
});
