/**
 * Every case of the hostile corpus (test/hostile/corpus.ts) through the real CLI (`node bin/pare.js --json …`):
 * a non-zero exit, stderr starting with `error[E_SPECIFIC_CODE]: <one line>` and a `hint:` line, no stack trace,
 * no hang (killed after a timeout), one JSON error object on stdout carrying the same code, no file written
 * anywhere in the case's folder (which holds the inputs and the --out path, and is the working directory), and the
 * inputs byte-identical afterwards. The cases run concurrently, a few processes at a time.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliResult, runCli } from "../helpers/cli.ts";
import { CORPUS, type HostileCase } from "./corpus.ts";
import { snapshot } from "./snapshot.ts";

const CASES = CORPUS.filter((c) => !(c.posixOnly && process.platform === "win32"));
const TIMEOUT_MS = 30_000;
const CONCURRENCY = Math.max(2, Math.min(6, os.availableParallelism() + 2));

interface Outcome {
  args: string[];
  before: Record<string, string>;
  after: Record<string, string>;
  result: CliResult;
  ms: number;
}

let root: string;
const outcomes = new Map<string, Outcome | Error>();

async function runCase(c: HostileCase): Promise<Outcome> {
  const dir = path.join(root, c.id);
  fs.mkdirSync(dir);
  const args = c.build(dir);
  const before = snapshot(dir);
  const t0 = Date.now();
  const result = await runCli(["--json", ...args], { cwd: dir, timeoutMs: TIMEOUT_MS });
  const ms = Date.now() - t0;
  return { args, before, after: snapshot(dir), result, ms };
}

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-hostile-"));
  const queue = [...CASES];
  const worker = async () => {
    for (let c = queue.shift(); c; c = queue.shift()) {
      try {
        outcomes.set(c.id, await runCase(c));
      } catch (e) {
        outcomes.set(c.id, e as Error);
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
}, 180_000);

afterAll(() => {
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

describe("the corpus", () => {
  it("has at least 50 cases with unique ids, in every group", () => {
    expect(CORPUS.length).toBeGreaterThanOrEqual(50);
    expect(new Set(CORPUS.map((c) => c.id)).size).toBe(CORPUS.length);
    const groups = new Set(CORPUS.map((c) => c.group));
    for (const g of ["safetensors", "paths", "config", "pickle", "tokenizer", "data", "numeric", "output"]) {
      expect(groups.has(g as HostileCase["group"])).toBe(true);
    }
  });

  it("leaves nothing behind but the case folders", () => {
    expect(fs.readdirSync(root).sort()).toEqual(CASES.map((c) => c.id).sort());
  });
});

describe.each(CASES.map((c) => [`${c.id}: ${c.what} → ${c.code}`, c] as const))("%s", (_title, c) => {
  it("fails with its code, one line and a hint, and touches nothing", () => {
    const o = outcomes.get(c.id);
    if (o instanceof Error) throw o;
    if (!o) throw new Error(`case ${c.id} did not run`);
    const { result, before, after } = o;
    const context = `pare ${o.args.join(" ")}\n--- stderr ---\n${result.stderr}\n--- stdout ---\n${result.stdout}`;

    // no hang, no crash by signal, a failure exit code
    expect(result.signal, context).toBeNull();
    expect(result.code, context).not.toBe(0);
    expect(result.code, context).toBe(c.code === "E_USAGE" ? 2 : 1);

    // stderr: exactly `error[CODE]: message` and `  hint: …`
    const lines = result.stderr.split("\n").filter((l) => l !== "");
    expect(lines, context).toHaveLength(2);
    const m = /^error\[(E_[A-Z_]+)\]: (.+)$/.exec(lines[0]);
    expect(m, context).not.toBeNull();
    expect(m?.[1], context).toBe(c.code);
    expect(lines[1], context).toMatch(/^ {2}hint: \S/);
    for (const text of [result.stderr, result.stdout]) {
      expect(text, context).not.toMatch(/^\s+at\s/m);
      expect(text, context).not.toMatch(/E_INTERNAL/);
    }
    const message = m?.[2] ?? "";
    for (const want of c.mentions ?? []) {
      if (typeof want === "string") expect(message, context).toContain(want);
      else expect(message, context).toMatch(want);
    }
    if (c.hint) expect(lines[1], context).toMatch(c.hint);

    // --json: one JSON object on stdout with the same code
    const out = result.stdout.split("\n").filter((l) => l.trim() !== "");
    expect(out, context).toHaveLength(1);
    const json = JSON.parse(out[0]) as { error?: { code?: string; message?: string; hint?: string } };
    expect(json.error?.code, context).toBe(c.code);
    expect(json.error?.message, context).toBe(message);

    // nothing written, nothing changed: inputs byte-identical, no --out, no stray temporary files
    expect(after, context).toEqual(before);
  });
});
