/**
 * Forward-pass throughput of pare's ONNX Runtime forward on the fixture models, and the machine's ORT MatMul
 * speed for scale. Run with `npm run bench:forward`.
 *
 * (a) tokens/s: llama-gqa-6l, batch 8 × 256 tokens through the NLL graph that perplexity uses (Runner.windowNll);
 *     bert-sst2-4l, batch 32 × 64 tokens through the classifier graph (Runner.classify). Median of ≥ 5 timed
 *     runs after a warm-up, with ORT's default threads and with 1 thread.
 * (b) f32 MatMul GFLOP/s (2n³ / time) for n = 1024 and 2048, 1 thread and default threads.
 *
 * Writes bench/results/forward.json and bench/results/forward.md, and prints the table.
 */
import fs from "node:fs";
import path from "node:path";
import { loadModel } from "../src/arch/load.ts";
import { Runner } from "../src/eval/runner.ts";
import { GraphBuilder } from "../src/onnx/graph.ts";
import { f32, Session } from "../src/runtime/ort.ts";
import {
  fmt,
  machineInfo,
  markdownTable,
  REPO_ROOT,
  seededInts,
  type Timing,
  time,
  writeResults,
} from "./lib.ts";

const SHARED = path.resolve(REPO_ROOT, "../shared/models");
const RUNS = 5;

interface Row {
  what: string;
  shape: string;
  threads: string;
  /** tokens/s or GFLOP/s */
  value: number | null;
  unit: string;
  medianMs: number | null;
  note?: string;
  timing?: Timing;
}

const rows: Row[] = [];
const threadSettings: { label: string; threads?: number }[] = [
  { label: "default" },
  { label: "1", threads: 1 },
];

async function llamaRows(): Promise<void> {
  const B = 8;
  const T = 256;
  const model = loadModel(path.join(SHARED, "llama-gqa-6l"));
  try {
    const ids = seededInts(B * T, 3, model.dims.vocab, 11);
    const windows = Array.from({ length: B }, (_, b) => ids.slice(b * T, (b + 1) * T));
    for (const th of threadSettings) {
      const runner = await Runner.create(model, { threads: th.threads });
      const t = await time(() => runner.windowNll(windows), { warmup: 1, runs: RUNS });
      await runner.close();
      rows.push({
        what: "llama-gqa-6l forward (NLL graph, as perplexity)",
        shape: `${B} × ${T}`,
        threads: th.label,
        value: (B * T) / t.median,
        unit: "tokens/s",
        medianMs: t.median * 1000,
        timing: t,
      });
    }
  } finally {
    model.close();
  }
}

async function bertRows(): Promise<void> {
  const B = 32;
  const T = 64;
  const model = loadModel(path.join(SHARED, "bert-sst2-4l"));
  try {
    // [CLS] w … w [SEP], all full length (no padding)
    const body = seededInts(B * (T - 2), 1000, model.dims.vocab, 12);
    const batch = Array.from({ length: B }, (_, b) => ({
      ids: [2, ...body.slice(b * (T - 2), (b + 1) * (T - 2)), 3],
    }));
    for (const th of threadSettings) {
      const runner = await Runner.create(model, { threads: th.threads });
      const t = await time(() => runner.classify(batch, 0), { warmup: 1, runs: RUNS });
      await runner.close();
      rows.push({
        what: "bert-sst2-4l forward (classifier graph)",
        shape: `${B} × ${T}`,
        threads: th.label,
        value: (B * T) / t.median,
        unit: "tokens/s",
        medianMs: t.median * 1000,
        timing: t,
      });
    }
  } finally {
    model.close();
  }
}

/** C = A · B for two n × n f32 inputs (both graph inputs, so nothing is constant-folded). */
async function matmulRows(): Promise<void> {
  for (const n of [1024, 2048]) {
    const g = new GraphBuilder("matmul");
    const a = g.input("a", "float32", [n, n]);
    const b = g.input("b", "float32", [n, n]);
    g.output(g.op("MatMul", [a, b], {}, "c"), "float32", [n, n]);
    const bytes = g.toModel();
    const A = Float32Array.from(seededInts(n * n, 0, 2001, 21), (x) => (x - 1000) / 1000);
    const Bm = Float32Array.from(seededInts(n * n, 0, 2001, 22), (x) => (x - 1000) / 1000);
    const feeds = { a: f32([n, n], A), b: f32([n, n], Bm) };
    for (const th of threadSettings) {
      const s = await Session.create(bytes, { threads: th.threads });
      const t = await time(() => s.run(feeds), { warmup: 1, runs: RUNS });
      await s.release();
      rows.push({
        what: "ORT MatMul f32",
        shape: `${n}³`,
        threads: th.label,
        value: (2 * n ** 3) / t.median / 1e9,
        unit: "GFLOP/s",
        medianMs: t.median * 1000,
        timing: t,
      });
    }
  }
}

async function main(): Promise<void> {
  const machine = machineInfo();
  const haveShared = fs.existsSync(SHARED);
  if (haveShared) {
    await llamaRows();
    await bertRows();
  } else {
    for (const [what, shape] of [
      ["llama-gqa-6l forward (NLL graph, as perplexity)", "8 × 256"],
      ["bert-sst2-4l forward (classifier graph)", "32 × 64"],
    ]) {
      rows.push({
        what,
        shape,
        threads: "-",
        value: null,
        unit: "tokens/s",
        medianMs: null,
        note: "skipped: ../shared/models not found",
      });
    }
  }
  await matmulRows();

  const table = markdownTable(
    ["benchmark", "shape", "threads", "throughput", "median ms"],
    rows.map((r) => [
      r.what,
      r.shape,
      r.threads,
      r.value === null ? (r.note ?? "skipped") : `${fmt(r.value, r.unit === "GFLOP/s" ? 1 : 0)} ${r.unit}`,
      r.medianMs === null ? "-" : fmt(r.medianMs, 1),
    ]),
    [false, false, false, true, true],
  );
  const header = [
    "# pare forward benchmark",
    "",
    `${machine.cpu} (${machine.cores} logical cores), ${machine.platform} ${machine.arch}, ${machine.memoryGiB} GiB; ` +
      `Node ${machine.node}, onnxruntime-node ${machine.onnxruntime}; ${machine.date}`,
    "",
    `Median of ${RUNS} timed runs after 1 warm-up run. "default" threads = ONNX Runtime's own choice.`,
    "",
    "",
  ].join("\n");
  const md = `${header}${table}\n`;
  const json = {
    machine,
    runs: RUNS,
    warmup: 1,
    sharedModels: haveShared ? SHARED : null,
    results: rows.map(({ timing, ...r }) => ({ ...r, secondsPerRun: timing?.seconds ?? null })),
  };
  const out = writeResults("forward", json, md);
  process.stdout.write(
    `${md}\nwrote ${path.relative(REPO_ROOT, out.json)} and ${path.relative(REPO_ROOT, out.md)}\n`,
  );
}

await main();
