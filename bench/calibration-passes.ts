/**
 * Calibration passes (`npm run bench:calibration-passes [-- --samples N --layers L]`): the default recipe
 * (flap-wifv · global · liar · sequential calibration) and the same recipe with `--calibration dense`, run one
 * after the other in this process on the same TinyLlama-1.1B-shaped model (hidden 2048, FFN 5632, 32 heads,
 * 4 KV heads, vocab 32000, seeded random bf16 weights) with fewer layers (default 4; generated once into
 * bench/cache/). For each: wall time, the plan's layer passes and FLOPs, the FLOP bound at this run's ORT MatMul
 * rates (f32 FLOPs at the f32 rate of a layer-shaped product, f64 FLOPs at the f64 rate; each rate the higher of
 * a measurement before and after the prunes) and the ratio of the wall time to it. Targets (issue 11):
 * sequential ≤ 2 × dense, both ≤ 1.5 × their FLOP bound. Results: bench/results/calibration-passes.{json,md}.
 */
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { matmulRate } from "../src/pipeline/plan.ts";
import { type PruneReport, runPrune } from "../src/pipeline/prune.ts";
import { resolveRecipe } from "../src/pipeline/recipe.ts";
import { machineInfo, markdownTable, REPO_ROOT, writeResults } from "./lib.ts";
import { ensureTinyLlamaShaped, tinyLlamaShapedConfig } from "./tinyllama.ts";

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const layers = arg("--layers", 4);
const samples = arg("--samples", 64);
const seqLen = 256;
const cacheDir = process.env.PARE_BENCH_CACHE ?? path.join(REPO_ROOT, "bench", "cache");
const dir = path.join(cacheDir, `tinyllama-shaped-${layers}l-bf16`);
const cfg = tinyLlamaShapedConfig(layers);

if (!fs.existsSync(path.join(dir, "config.json")))
  process.stderr.write(`generating ${dir} …
`);
ensureTinyLlamaShaped(dir, layers);

const load = () => os.loadavg().map((l) => Number(l.toFixed(2)));
/** ORT MatMul rates of this process: f32 at a layer's MLP shape (one batch of rows), f64 at 1024³. */
async function rates() {
  return {
    f32: await matmulRate("float32", 8 * seqLen, cfg.hidden_size, cfg.intermediate_size, { reps: 3 }),
    f64: await matmulRate("float64", 1024, 1024, 1024, { reps: 3 }),
  };
}

interface Run {
  mode: "sequential" | "dense";
  wallSeconds: number;
  layerPasses: number;
  flops: NonNullable<PruneReport["plan"]>["flops"];
  busySeconds: PruneReport["busySeconds"];
  timings: Record<string, number>;
  steps: Record<string, number>;
  outputSha256: string;
  loadBefore: number[];
  loadAfter: number[];
}

const calib = path.join(REPO_ROOT, "examples", "data", "calib-wikitext2-valid.txt");
const ratesBefore = await rates();
const runs: Run[] = [];
for (const mode of ["sequential", "dense"] as const) {
  const out = path.join(cacheDir, `calibration-passes-${mode}`);
  const recipe = resolveRecipe({
    model: dir,
    out,
    calib: [calib],
    samples,
    seqLen,
    calibration: mode,
    // the recorded results' recipe (the default before 2026-12-02), pinned so that they reproduce
    criterion: "flap-wifv",
    ridge: 0.01,
    force: true,
  });
  const steps: Record<string, number> = {};
  const loadBefore = load();
  const t0 = performance.now();
  const report = await runPrune(recipe, (e) => {
    if (e.type === "layer") steps[e.step] = (steps[e.step] ?? 0) + 1;
    if (e.type === "phase") process.stderr.write(`${mode}: ${e.phase} ${e.detail ?? ""}\n`);
  });
  const wallSeconds = (performance.now() - t0) / 1000;
  const sha = crypto.createHash("sha256");
  for (const f of fs
    .readdirSync(out)
    .filter((f) => f.endsWith(".safetensors"))
    .sort())
    sha.update(fs.readFileSync(path.join(out, f)));
  runs.push({
    mode,
    wallSeconds,
    layerPasses: report.plan?.layerPasses ?? Number.NaN,
    flops: report.plan!.flops,
    busySeconds: report.busySeconds,
    timings: report.timings,
    steps,
    outputSha256: sha.digest("hex"),
    loadBefore,
    loadAfter: load(),
  });
  process.stderr.write(`${mode}: ${wallSeconds.toFixed(1)} s\n`);
}
const ratesAfter = await rates();
const rate = {
  f32: Math.max(ratesBefore.f32, ratesAfter.f32),
  f64: Math.max(ratesBefore.f64, ratesAfter.f64),
};
const bound = (r: Run) =>
  (r.flops.forward + r.flops.statisticsF32) / rate.f32 + (r.flops.statisticsF64 + r.flops.solve) / rate.f64;

const [seq, dense] = runs;
const G = (x: number) => (x / 1e9).toFixed(0);
const rows = runs.map((r) => [
  r.mode,
  r.wallSeconds.toFixed(1),
  String(r.layerPasses),
  G(r.flops.forward),
  G(r.flops.statistics),
  G(r.flops.solve),
  bound(r).toFixed(1),
  (r.wallSeconds / bound(r)).toFixed(2),
  G(r.flops.total / r.wallSeconds),
]);
const table = markdownTable(
  [
    "calibration",
    "wall s",
    "layer passes",
    "forward GFLOP",
    "statistics GFLOP",
    "solve GFLOP",
    "FLOP bound s",
    "wall / bound",
    "GFLOP/s",
  ],
  rows,
  [false, true, true, true, true, true, true, true, true],
);
const ratio = seq.wallSeconds / dense.wallSeconds;
const checks = [
  `sequential / dense = ${ratio.toFixed(2)} (target ≤ 2): ${ratio <= 2 ? "met" : "NOT met"}`,
  ...runs.map((r) => {
    const q = r.wallSeconds / bound(r);
    return `${r.mode}: ${q.toFixed(2)} × its FLOP bound (target ≤ 1.5): ${q <= 1.5 ? "met" : "NOT met"}`;
  }),
];
const machine = machineInfo();
const busy = (r: Run) =>
  `${r.mode}: forward ${r.busySeconds?.forward.toFixed(1)} s, statistics ${r.busySeconds?.statistics.toFixed(1)} s, solves ${r.busySeconds?.solve.toFixed(1)} s, output ${r.busySeconds?.output.toFixed(1)} s; layer steps ${JSON.stringify(r.steps)}; load average ${r.loadBefore.join(" ")} → ${r.loadAfter.join(" ")}`;
const md = `# bench:calibration-passes

Command: \`npm run bench:calibration-passes${samples !== 64 || layers !== 4 ? ` -- --samples ${samples} --layers ${layers}` : ""}\`  
Machine: ${machine.cpu}, ${machine.cores} cores; ${machine.date}.  
Model: TinyLlama-1.1B widths (hidden 2048, FFN 5632, 32 heads, 4 KV heads, vocab 32000), **${layers} layers** (TinyLlama has 22; fewer keep the run short), seeded random bf16 weights.  
Recipe: the defaults (flap-wifv · global · liar · ratio 0.3) with ${samples} × ${seqLen} calibration tokens; \`--calibration sequential\` (the default) and \`dense\`, one after the other in one process.  
ORT MatMul rates of this process (the higher of before / after the prunes): f32 ${G(rate.f32)} GFLOP/s ([${8 * seqLen}, 2048] · [2048, 5632]), f64 ${G(rate.f64)} GFLOP/s (1024³).  
FLOP bound = (forward + f32 statistics FLOPs) ÷ f32 rate + (f64 statistics + solve FLOPs) ÷ f64 rate, with the FLOPs of the prune's own plan.

${table}

${checks.map((c) => `- ${c}`).join("\n")}

${runs.map((r) => `- ${busy(r)}`).join("\n")}
`;
const files = writeResults(
  "calibration-passes",
  { machine, layers, samples, seqLen, rates: { before: ratesBefore, after: ratesAfter, used: rate }, runs },
  md,
);
process.stdout.write(`${table}\n\n${checks.join("\n")}\n${runs.map(busy).join("\n")}\n`);
process.stderr.write(`wrote ${files.json} and ${files.md}\n`);
