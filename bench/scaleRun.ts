/**
 * One measured prune for bench:scale, run in its own process so that its peak RSS is the prune's
 * alone (the model generator holds the whole model). Measures this process's ORT MatMul rate at
 * the model's projection shape before and after `runPrune`, printing progress to stderr and one
 * JSON line (report summary, peak RSS, MatMul rate) to stdout.
 *
 * usage: tsx bench/scaleRun.ts <recipe.json>
 */
import fs from "node:fs";
import { matmulRate } from "../src/pipeline/plan.ts";
import { runPrune } from "../src/pipeline/prune.ts";
import { resolveRecipe } from "../src/pipeline/recipe.ts";

const spec = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const recipe = resolveRecipe(spec.recipe);
const matmulBefore = await matmulRate("float32", 4096, spec.hidden, spec.ffn, { reps: 3 });
const t0 = performance.now();
const since = () => `${((performance.now() - t0) / 1000).toFixed(0).padStart(5)} s`;
const rss = () => `${(process.memoryUsage().rss / 1024 ** 3).toFixed(2)} GiB`;
const report = await runPrune(recipe, (e) => {
  if (e.type === "phase") process.stderr.write(`${since()}  ${e.phase} ${e.detail ?? ""}  (rss ${rss()})\n`);
  else if (e.type === "layer")
    process.stderr.write(`${since()}  layer ${e.layer + 1}/${e.layers} ${e.step}  (rss ${rss()})\n`);
  else if (e.type === "note") process.stderr.write(`         note: ${e.message}\n`);
});
const wall = (performance.now() - t0) / 1000;
// measured again after the prune: this shared 2-core VM's rate drifts by ±10 % over minutes; the higher one is the reference
const matmulAfter = await matmulRate("float32", 4096, spec.hidden, spec.ffn, { reps: 3 });
process.stdout.write(
  `${JSON.stringify({
    wallSeconds: wall,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    matmulF32: Math.max(matmulBefore, matmulAfter),
    matmulF32Before: matmulBefore,
    matmulF32After: matmulAfter,
    timings: report.timings,
    busySeconds: report.busySeconds,
    plan: report.plan,
    achievedRatio: report.achievedRatio,
    params: report.params,
    calibration: report.calibration,
    notes: report.notes,
  })}\n`,
);
