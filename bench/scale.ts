/**
 * Scale benchmark (`npm run bench:scale [-- --samples N --criterion NAME --max-memory GiB]`): generates (once, cached in bench/cache/) a LLaMA-shaped
 * model with TinyLlama-1.1B dimensions (22 layers, hidden 2048, FFN 5632, 32 heads, 4 KV heads, vocab 32000)
 * with seeded random bf16 weights, prints pare's plan for the issue's recipe (flap-wifv, global, liar, ratio 0.3,
 * 64 × 512 calibration tokens; dense calibration, --max-memory 5), then runs the prune in a child process
 * (bench/scaleRun.ts) and reports wall time per phase, busy time per kind of work, peak RSS, and the achieved
 * GFLOP/s next to the same process's ORT MatMul rate. Results: bench/results/scale.{json,md}.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { loadModel } from "../src/arch/load.ts";
import { describePlan, type PrunePlan } from "../src/pipeline/plan.ts";
import { dryRun } from "../src/pipeline/prune.ts";
import { resolveRecipe } from "../src/pipeline/recipe.ts";
import { machineInfo, REPO_ROOT, writeResults } from "./lib.ts";
import { ensureTinyLlamaShaped, tinyLlamaShapedConfig } from "./tinyllama.ts";

const dir = path.join(REPO_ROOT, "bench", "cache", "tinyllama-shaped-bf16");
const cfg = tinyLlamaShapedConfig(22);

ensureTinyLlamaShaped(dir, cfg.num_hidden_layers);
const argSamples = process.argv.indexOf("--samples");
const samples = argSamples > 0 ? Number(process.argv[argSamples + 1]) : 64;
// --criterion NAME (default flap-wifv, the recorded run's; obs = today's default criterion)
const argCriterion = process.argv.indexOf("--criterion");
const criterion = argCriterion > 0 ? process.argv[argCriterion + 1] : "flap-wifv";
const calib = path.join(REPO_ROOT, "examples", "data", "calib-wikitext2-valid.txt");
const out = path.join(REPO_ROOT, "bench", "cache", "tinyllama-pruned");
// --max-memory GiB (default 5; obs holds nine D² f64 matrices per module and needs more: the plan says how much)
const argMemory = process.argv.indexOf("--max-memory");
const maxMemory = argMemory > 0 ? Number(process.argv[argMemory + 1]) : 5;
const recipeIn = {
  model: dir,
  out,
  ratio: 0.3,
  criterion,
  allocation: "global" as const,
  reconstruct: "liar",
  calibration: "dense" as const,
  samples,
  seqLen: 512,
  calib: [calib],
  maxMemory,
  force: true,
};
type Run = {
  wallSeconds: number;
  peakRssBytes: number;
  matmulF32: number;
  matmulF32Before?: number;
  matmulF32After?: number;
  timings: Record<string, number>;
  busySeconds: { forward: number; statistics: number; solve: number; output: number };
  plan: PrunePlan;
  achievedRatio: number;
  notes: string[];
  outputLayers?: number;
};
const name = `${samples === 64 ? "scale" : `scale-s${samples}`}${criterion !== "flap-wifv" ? `-${criterion}` : ""}`;
const flags = [
  samples !== 64 ? `--samples ${samples}` : "",
  criterion !== "flap-wifv" ? `--criterion ${criterion}` : "",
  maxMemory !== 5 ? `--max-memory ${maxMemory}` : "",
].filter((x) => x !== "");
let run: Run;
let machine = machineInfo();
if (process.argv.includes("--report-only")) {
  // re-render the table from the last run's JSON (no prune)
  const saved = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, "bench", "results", `${name}.json`), "utf8"));
  run = saved.run;
  machine = saved.machine;
  if (run.outputLayers === undefined && fs.existsSync(path.join(out, "config.json"))) {
    const pruned = loadModel(out); // that run's output, still in bench/cache/
    run.outputLayers = pruned.config.num_hidden_layers as number;
    pruned.close();
  }
} else {
  process.stderr.write(`${describePlan(await dryRun(resolveRecipe(recipeIn))).join("\n")}\n`);
  const specFile = path.join(REPO_ROOT, "bench", "cache", "scale-run.json");
  fs.writeFileSync(
    specFile,
    JSON.stringify({ recipe: recipeIn, hidden: cfg.hidden_size, ffn: cfg.intermediate_size }),
  );
  const child = spawnSync(
    process.execPath,
    ["--import", "tsx", path.join(REPO_ROOT, "bench", "scaleRun.ts"), specFile],
    {
      cwd: REPO_ROOT,
      stdio: ["ignore", "pipe", "inherit"],
      encoding: "utf8",
      maxBuffer: 64 << 20,
    },
  );
  if (child.status !== 0) {
    process.stderr.write(`the prune failed (exit ${child.status})\n`);
    process.exit(1);
  }
  run = JSON.parse(child.stdout.trim().split("\n").pop()!) as Run;
  // the output loads: config and every tensor shape agree (buildModel checks them)
  const pruned = loadModel(out);
  run.outputLayers = pruned.config.num_hidden_layers as number;
  pruned.close();
}
const outParams = run.outputLayers ?? "?";
const planLines = describePlan(run.plan);
const est = run.plan.estimateSeconds;

const f = run.plan.flops;
const b = run.busySeconds;
const G = (x: number) => (x / 1e9).toFixed(0);
const rate = run.matmulF32;
const fwdGram = (f.forward + f.statistics) / (b.forward + b.statistics);
const bound = (f.total / rate) * 1.5;
const rows: [string, string, string, string][] = [
  ["layer forwards", G(f.forward), b.forward.toFixed(1), G(f.forward / b.forward)],
  [
    `Gram + moments (${G(f.statisticsF32)} f32 mixed, ${G(f.statisticsF64)} f64)`,
    G(f.statistics),
    b.statistics.toFixed(1),
    G(f.statistics / b.statistics),
  ],
  [
    criterion === "obs"
      ? "solves + updates + OBS selection (f64; its loops in JavaScript)"
      : "solves + updates (f64)",
    G(f.solve),
    b.solve.toFixed(1),
    G(f.solve / b.solve),
  ],
  ["writing the output", "", b.output.toFixed(1), ""],
  ["whole prune (wall)", G(f.total), run.wallSeconds.toFixed(1), G(f.total / run.wallSeconds)],
];
const phases = Object.entries(run.timings)
  .map(([k, v]) => `${k} ${v.toFixed(1)} s`)
  .join(", ");
const checks = [
  `plan's estimate ${est ? `${est.total.toFixed(0)} s (forward ${est.forward.toFixed(0)}, statistics ${est.statistics.toFixed(0)}, solves ${(est.solve + (est.selection ?? 0)).toFixed(0)}${est.selection ? `, of which OBS loops ${est.selection.toFixed(0)}` : ""})` : "—"} vs actual ${run.wallSeconds.toFixed(0)} s (busy: forward ${b.forward.toFixed(0)}, statistics ${b.statistics.toFixed(0)}, solves ${b.solve.toFixed(0)})`,
  `plan's peak memory ${(run.plan.memoryBytes.peak / 1024 ** 3).toFixed(2)} GiB vs peak RSS ${(run.peakRssBytes / 1024 ** 3).toFixed(2)} GiB`,
  `end to end ${(run.wallSeconds / 60).toFixed(1)} min (target ≤ 15): ${run.wallSeconds <= 900 ? "met" : "NOT met"}`,
  `peak RSS ${(run.peakRssBytes / 1024 ** 3).toFixed(2)} GiB (target ≤ 6 GB = 5.59 GiB): ${run.peakRssBytes <= 6e9 ? "met" : "NOT met"}`,
  `forward + Gram at ${G(fwdGram)} GFLOP/s = ${((100 * fwdGram) / rate).toFixed(0)}% of the MatMul rate (target ≥ 50%): ${fwdGram >= 0.5 * rate ? "met" : "NOT met"}`,
  `total ${run.wallSeconds.toFixed(0)} s vs 1.5 × FLOPs ÷ MatMul rate = ${bound.toFixed(0)} s: ${run.wallSeconds <= bound ? "met" : "NOT met"}`,
];
const md = `# bench:scale

Command: \`npm run bench:scale${flags.length > 0 ? ` -- ${flags.join(" ")}` : ""}\`  
Machine: ${machine.cpu}, ${machine.cores} cores; ${machine.date}.  
Model: TinyLlama-1.1B-shaped, seeded random bf16 weights (22 layers, hidden 2048, FFN 5632, 32 heads, 4 KV heads, vocab 32000).  
Recipe: ${criterion} · global · liar · ratio 0.3 · ${samples} × 512 calibration tokens · dense calibration · --max-memory ${maxMemory}.  
Output: ${outParams} layers, achieved ratio ${run.achievedRatio.toFixed(4)}; loads back (config and shapes checked).

The prune's own plan (printed before it starts; the time estimate uses MatMul rates measured at 1024³):

\`\`\`
${planLines.join("\n")}
\`\`\`

ORT MatMul rate of the same process (f32, [4096, 2048] · [2048, 5632], best of 3${run.matmulF32Before ? `, measured before (${G(run.matmulF32Before)}) and after (${G(run.matmulF32After ?? 0)}) the prune; the higher one` : ""}): **${G(rate)} GFLOP/s**.

| work | GFLOP | busy s | GFLOP/s |
|---|---:|---:|---:|
${rows.map((r) => `| ${r.join(" | ")} |`).join("\n")}

Phases (wall): ${phases}.  
Peak RSS: ${(run.peakRssBytes / 1024 ** 3).toFixed(2)} GiB.

${checks.map((c) => `- ${c}`).join("\n")}

${run.notes.map((n) => `Note: ${n}`).join("  \n")}
`;
writeResults(name, { machine, samples, run }, md);
process.stdout.write(md);
