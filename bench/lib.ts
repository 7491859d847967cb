/**
 * Shared helpers for pare's benchmarks: timing (median of timed runs after warm-up), machine information and
 * writing results (JSON + a markdown table) under bench/results/.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Model } from "../src/arch/model.ts";
import { perplexity } from "../src/eval/perplexity.ts";
import { Runner } from "../src/eval/runner.ts";

/** The repository root (bench/ is one level below it). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

export function median(xs: number[]): number {
  if (xs.length === 0) throw new Error("median of nothing");
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export interface Timing {
  /** seconds per timed run, in run order */
  seconds: number[];
  median: number;
  min: number;
  max: number;
  warmup: number;
}

/** Times `fn` (seconds, wall clock): `warmup` untimed runs, then `runs` timed runs (at least 5). */
export async function time(
  fn: () => Promise<unknown> | unknown,
  opts: { warmup?: number; runs?: number } = {},
): Promise<Timing> {
  const warmup = opts.warmup ?? 1;
  const runs = Math.max(5, opts.runs ?? 5);
  for (let i = 0; i < warmup; i++) await fn();
  const seconds: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    seconds.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return { seconds, median: median(seconds), min: Math.min(...seconds), max: Math.max(...seconds), warmup };
}

export interface MachineInfo {
  cpu: string;
  cores: number;
  platform: string;
  arch: string;
  memoryGiB: number;
  node: string;
  onnxruntime: string;
  date: string;
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  let ortVersion = "unknown";
  try {
    const pkg = JSON.parse(
      fs.readFileSync(path.join(REPO_ROOT, "node_modules/onnxruntime-node/package.json"), "utf8"),
    );
    ortVersion = String(pkg.version);
  } catch {
    // leave "unknown"
  }
  return {
    cpu: cpus[0]?.model.trim() ?? "unknown",
    cores: cpus.length,
    platform: `${os.type()} ${os.release()}`,
    arch: os.arch(),
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    onnxruntime: ortVersion,
    date: new Date().toISOString(),
  };
}

/**
 * A GitHub-flavoured markdown table with padded columns (numeric columns right-aligned), laid out the way
 * `biome format` lays out markdown tables, so that written results pass `npm run lint`.
 */
export function markdownTable(
  header: string[],
  rows: (string | number)[][],
  numeric: boolean[] = [],
): string {
  const cells = [header, ...rows].map((r) => r.map(String));
  const width = header.map((_, i) => Math.max(3, ...cells.map((r) => r[i].length)));
  const pad = (c: string, i: number) => (numeric[i] ? c.padStart(width[i]) : c.padEnd(width[i]));
  const line = (r: string[]) => `| ${r.map(pad).join(" | ")} |`;
  const sep = `| ${width.map((w, i) => (numeric[i] ? `${"-".repeat(w - 1)}:` : "-".repeat(w))).join(" | ")} |`;
  return [line(cells[0]), sep, ...cells.slice(1).map(line)].join("\n");
}

/**
 * JSON with 2-space indentation whose arrays of numbers/strings sit on one line when that line fits in 110
 * columns (as `biome format` prints JSON), so that written results pass `npm run lint`.
 */
export function formatJson(value: unknown): string {
  const text = JSON.stringify(value, null, 2);
  return text.replace(
    /^( *)("[^"\n]*": )?\[\n((?:\1 {2}(?:-?[\d.eE+-]+|"[^"\n]*"|true|false|null),?\n)+)\1\]/gm,
    (all, indent: string, key: string | undefined, body: string) => {
      const items = body
        .split("\n")
        .filter((l) => l.trim() !== "")
        .map((l) => l.trim().replace(/,$/, ""));
      const one = `${indent}${key ?? ""}[${items.join(", ")}]`;
      return one.length <= 110 ? one : all;
    },
  );
}

/** Writes bench/results/<name>.json and bench/results/<name>.md; returns their paths. */
export function writeResults(name: string, json: unknown, markdown: string): { json: string; md: string } {
  const dir = path.join(REPO_ROOT, "bench", "results");
  fs.mkdirSync(dir, { recursive: true });
  const j = path.join(dir, `${name}.json`);
  const m = path.join(dir, `${name}.md`);
  fs.writeFileSync(j, `${formatJson(json)}\n`);
  fs.writeFileSync(m, markdown.endsWith("\n") ? markdown : `${markdown}\n`);
  return { json: j, md: m };
}

/** Deterministic pseudo-random integers in [lo, hi) (mulberry32), for synthetic token ids. */
export function seededInts(n: number, lo: number, hi: number, seed = 1): number[] {
  let s = seed >>> 0;
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = lo + Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * (hi - lo));
  }
  return out;
}

export const fmt = (x: number, digits = 1): string =>
  x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });

/** SST-2's training sentences (../shared/data/sst2/stsa.binary.train without the leading labels), one per line. */
export function sst2TrainSentences(shared: string): string {
  return fs
    .readFileSync(path.join(shared, "data/sst2/stsa.binary.train"), "utf8")
    .split("\n")
    .map((l) => l.replace(/^\d+\s+/, ""))
    .join("\n");
}

/**
 * A model against the dense one: WikiText-style perplexity on `ids` (L = 256, first `maxWindows` windows), and
 * KL(dense‖model) and top-1 agreement on `klWin` given the dense log-probabilities `refLogp` (batches of 4).
 */
export async function againstDense(
  m: Model,
  ids: number[],
  maxWindows: number | undefined,
  klWin: number[][],
  refLogp: Float32Array[],
): Promise<{ ppl: number; kl: number; top1: number }> {
  const r = await Runner.create(m);
  const p = await perplexity(r, ids, { seqLen: 256, maxWindows });
  await r.close();
  const cr = await Runner.create(m, { mode: "compare" });
  let kl = 0;
  let agree = 0;
  let n = 0;
  for (let i = 0, k = 0; i < klWin.length; i += 4, k++) {
    const c = await cr.compareWindows(klWin.slice(i, i + 4), refLogp[k]);
    for (let j = 0; j < c.kl.length; j++) {
      kl += c.kl[j];
      agree += c.agree[j];
    }
    n += c.kl.length;
  }
  await cr.close();
  return { ppl: p.ppl, kl: kl / n, top1: agree / n };
}
