/**
 * Depth benchmark (`npm run bench:depth`): on the shared llama-gqa-6l (6 blocks), at equal attention+MLP
 * parameter reduction — one and two blocks, and the same fraction removed by width pruning — compare
 *   depth: --depth n with each criterion (bi, angular, sleb) × reconstruction (none, liar);
 *   width: flap-wifv · global · liar at the same fraction (1/6, 1/3);
 *   mixed: --depth 1 with width 0.2 (1/3 removed in all).
 * Quality: WikiText-2 test perplexity (L = 256, first --windows windows, default 200), KL(dense‖pruned) and top-1
 * agreement on --kl-windows windows (default 32). Speed: prefill (8 × 256) and generation (batch 1, KV cache)
 * through ONNX Runtime, every model interleaved with the dense one in one run (pare bench's protocol), so speedups
 * are ratios measured together. Calibration: WikiText-2 validation, 128 × 256 tokens, seed 0.
 * Results: bench/results/depth.{json,md}. Reads ../shared; without it, says so and exits 0.
 * Options: --windows N, --kl-windows N, --runs N (speed repetitions, default 5), --cells a,b (label filter);
 * --target [--targets 1.2,1.5]: --target-speedup for each workload instead (bench/results/depth-target.*).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { loadModel } from "../src/arch/load.ts";
import { benchSpeed } from "../src/eval/latency.ts";
import { cutWindows, perplexity } from "../src/eval/perplexity.ts";
import { Runner } from "../src/eval/runner.ts";
import { readTextFile } from "../src/io/datasets.ts";
import { loadTokenizer } from "../src/io/tokenizer.ts";
import { runPrune } from "../src/pipeline/prune.ts";
import { type Recipe, resolveRecipe } from "../src/pipeline/recipe.ts";
import { againstDense, machineInfo, markdownTable, REPO_ROOT, writeResults } from "./lib.ts";

const SHARED = path.resolve(REPO_ROOT, "../shared");
const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
};
const windows = Number(arg("windows", "200"));
const klWindows = Number(arg("kl-windows", "32"));
const runs = Number(arg("runs", "5"));
const cells = arg("cells", "").split(",").filter(Boolean);
const log = (s: string) => process.stderr.write(`${s}\n`);

const dir = path.join(SHARED, "models/llama-gqa-6l");
if (!fs.existsSync(dir)) {
  process.stdout.write(
    "bench:depth skipped: ../shared/models/llama-gqa-6l not found (the benchmark needs it)\n",
  );
  process.exit(0);
}
const calib = path.join(SHARED, "data/wikitext-2/tokens-v1/wiki.valid.tokens");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "pare-bench-depth-"));

if (process.argv.includes("--target")) {
  await targetBench();
  process.exit(0);
}

/**
 * --target: `--target-speedup x` for the generation and prefill workloads; the chosen model's speedup is then
 * measured as `pare bench` measures it (interleaved with the dense model, medians), to compare with x.
 * Results: bench/results/depth-target.{json,md}.
 */
async function targetBench(): Promise<void> {
  const t0 = Date.now();
  process.env.PARE_CACHE_DIR = path.join(work, "latency-cache");
  const rows: Record<string, unknown>[] = [];
  const targets = arg("targets", "1.2,1.5").split(",").map(Number);
  for (const workload of ["generation", "prefill"] as const) {
    for (const x of targets) {
      const out = path.join(work, `target-${workload}-${x}`);
      const t1 = Date.now();
      const rep = await runPrune(
        resolveRecipe({
          model: dir,
          out,
          calib: [calib],
          samples: 128,
          seqLen: 256,
          seed: 0,
          targetSpeedup: x,
          targetWorkload: workload,
        }),
      );
      const planSeconds = (Date.now() - t1) / 1000;
      const d = loadModel(dir);
      const m = loadModel(out);
      const sp = await benchSpeed([d, m], { runs });
      const c = sp.cases.find((k) => k.name.includes(workload))!;
      const achieved = c.seconds[0] / c.seconds[1];
      d.close();
      m.close();
      const chosen = rep.target!.candidates.find((k) => k.chosen)!;
      rows.push({
        workload,
        target: x,
        depth: chosen.depth,
        ratio: chosen.ratio,
        predicted: chosen.predictedSpeedup,
        achieved,
        withinTenPercent: Math.abs(achieved / x - 1) <= 0.1,
        candidates: rep.target!.candidates,
        seconds: planSeconds,
      });
      log(
        `${workload} ${x}×: chose depth ${chosen.depth} ratio ${chosen.ratio}, predicted ${chosen.predictedSpeedup.toFixed(2)}, achieved ${achieved.toFixed(2)} (${planSeconds.toFixed(0)} s)`,
      );
    }
  }
  fs.rmSync(work, { recursive: true, force: true });
  let md =
    "# bench:depth --target — `--target-speedup` against the speed `pare bench` measures afterwards\n\n";
  md += `Command: \`npm run bench:depth -- ${process.argv.slice(2).join(" ")}\`  \n`;
  md += `Machine: ${machineInfo().cpu}, ${os.cpus().length} cores; ${new Date().toISOString()}; wall time ${((Date.now() - t0) / 60000).toFixed(1)} min.  \n`;
  md +=
    "Model: llama-gqa-6l; recipe defaults (flap-wifv · liar, uniform widths), calibration WikiText-2 validation 128 × 256; a fresh latency table. Achieved = dense / pruned time of the workload in one interleaved `benchSpeed` run.\n\n";
  md += markdownTable(
    [
      "workload",
      "target",
      "depth",
      "ratio",
      "predicted ×",
      "achieved ×",
      "within 10%",
      "candidates (depth/ratio: loss)",
      "s",
    ],
    rows.map((r) => [
      String(r.workload),
      String(r.target),
      String(r.depth),
      String(r.ratio),
      (r.predicted as number).toFixed(2),
      (r.achieved as number).toFixed(2),
      r.withinTenPercent ? "yes" : "no",
      (r.candidates as { depth: number; ratio: number; loss: number }[])
        .map((c) => `${c.depth}/${c.ratio}: ${c.loss.toFixed(3)}`)
        .join(", "),
      (r.seconds as number).toFixed(0),
    ]),
    [false, true, true, true, true, true, false, false, true],
  );
  md += "\n";
  writeResults("depth-target", { machine: machineInfo(), args: process.argv.slice(2), runs, rows }, md);
  process.stdout.write(`${md}\n`);
}

interface Cell {
  label: string;
  kind: "depth" | "width" | "mixed";
  removedFraction: string;
  recipe: Partial<Recipe>;
}
const CELLS: Cell[] = [];
for (const n of [1, 2]) {
  for (const depthCriterion of ["bi", "angular", "sleb"] as const)
    for (const reconstruct of ["none", "liar"] as const)
      CELLS.push({
        label: `depth ${n} · ${depthCriterion} · ${reconstruct}`,
        kind: "depth",
        removedFraction: `${n}/6`,
        recipe: { depth: n, depthCriterion, reconstruct },
      });
  CELLS.push({
    label: `width ${n === 1 ? "1/6" : "1/3"} · flap-wifv · global · liar`,
    kind: "width",
    removedFraction: `${n}/6`,
    recipe: { ratio: n / 6, criterion: "flap-wifv", allocation: "global", reconstruct: "liar" },
  });
}
for (const depthCriterion of ["bi", "angular"] as const)
  CELLS.push({
    label: `depth 1 · ${depthCriterion} · liar + width 0.2 · flap-wifv · global · liar`,
    kind: "mixed",
    removedFraction: "2/6",
    recipe: { depth: 1, depthCriterion, ratio: 0.2, reconstruct: "liar" },
  });
const chosen = CELLS.filter((c) => cells.length === 0 || cells.some((s) => c.label.includes(s)));

interface Row {
  label: string;
  kind: string;
  removedFraction: string;
  removedBlocks?: number[];
  achievedRatio: number;
  pruneSeconds: number;
  ppl: number;
  kl: number;
  top1: number;
  prefillSpeedup?: number;
  generationSpeedup?: number;
}

const t0 = Date.now();
const tok = loadTokenizer(dir);
log("tokenizing WikiText-2 test …");
// the first 200 windows of 256 tokens lie in the first 200k characters (≈ 72k tokens): only that prefix is
// encoded (when the recorded results were measured, one call on the whole file overflowed the tokenizer
// adapter's stack; fixed since)
const testText = readTextFile(path.join(SHARED, "data/wikitext-2/raw-v1/wiki.test.raw"));
const ids = tok.encode(testText.slice(0, Math.min(testText.length, 1000 * windows)));
const klWin = cutWindows(ids, 256, klWindows);
const dense = loadModel(dir);
const dr = await Runner.create(dense);
const dp = await perplexity(dr, ids, { seqLen: 256, maxWindows: windows });
await dr.close();
const lr = await Runner.create(dense, { mode: "logprobs" });
const refLogp: Float32Array[] = [];
for (let i = 0; i < klWin.length; i += 4) refLogp.push(await lr.windowLogprobs(klWin.slice(i, i + 4)));
await lr.close();
log(`dense: ppl ${dp.ppl.toFixed(2)}`);

const rows: Row[] = [];
const outs: string[] = [];
for (const c of chosen) {
  const out = path.join(work, String(outs.length));
  const rep = await runPrune(
    resolveRecipe({ model: dir, out, calib: [calib], samples: 128, seqLen: 256, seed: 0, ...c.recipe }),
  );
  const m = loadModel(out);
  const q = await againstDense(m, ids, windows, klWin, refLogp);
  m.close();
  outs.push(out);
  rows.push({
    label: c.label,
    kind: c.kind,
    removedFraction: c.removedFraction,
    removedBlocks: rep.depth?.removed,
    achievedRatio: rep.achievedRatio,
    pruneSeconds: rep.timings.total,
    ppl: q.ppl,
    kl: q.kl,
    top1: q.top1,
  });
  log(
    `${c.label}: removed ${rep.depth?.removed ?? "-"} ppl ${q.ppl.toFixed(2)} kl ${q.kl.toFixed(4)} (${rep.timings.total.toFixed(1)} s)`,
  );
}

// speed: every pruned model interleaved with the dense one
log("speed (ONNX Runtime, interleaved with the dense model) …");
const models = [dense, ...outs.map((o) => loadModel(o))];
const speed = await benchSpeed(models, { runs, onProgress: log });
const prefill = speed.cases.find((c) => c.name.includes("prefill"))!;
const gen = speed.cases.find((c) => c.name.includes("generation"))!;
rows.forEach((r, k) => {
  r.prefillSpeedup = prefill.seconds[0] / prefill.seconds[k + 1];
  r.generationSpeedup = gen.seconds[0] / gen.seconds[k + 1];
});
for (const m of models) m.close();
fs.rmSync(work, { recursive: true, force: true });

const f = (x: number, d: number) => x.toFixed(d);
let md = "# bench:depth — depth vs width pruning on llama-gqa-6l\n\n";
md += `Command: \`npm run bench:depth${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}\`  \n`;
md += `Machine: ${machineInfo().cpu}, ${os.cpus().length} cores; ${new Date().toISOString()}; wall time ${((Date.now() - t0) / 60000).toFixed(1)} min.  \n`;
md += `Quality: WikiText-2 test perplexity (L = 256, ${dp.windows} windows), KL(dense‖pruned) and top-1 agreement on ${klWindows} windows; calibration WikiText-2 validation, 128 × 256 tokens, seed 0, ridge 0.01.  \n`;
md += `Speed: ${prefill.name} and ${gen.name}, medians of ${runs} interleaved runs; speedup = dense time / pruned time (same run).\n\n`;
md += `Dense perplexity: **${f(dp.ppl, 2)}**\n\n`;
md += markdownTable(
  ["cell", "removed", "blocks", "achieved", "PPL", "KL", "top-1", "prefill ×", "generation ×", "prune s"],
  rows.map((r) => [
    r.label,
    r.removedFraction,
    r.removedBlocks?.join(",") ?? "-",
    f(r.achievedRatio, 3),
    f(r.ppl, 2),
    f(r.kl, 4),
    `${f(100 * r.top1, 1)}%`,
    f(r.prefillSpeedup!, 2),
    f(r.generationSpeedup!, 2),
    f(r.pruneSeconds, 1),
  ]),
  [false, false, false, true, true, true, true, true, true, true],
);
md += "\n";
writeResults("depth", { machine: machineInfo(), args: process.argv.slice(2), dense: dp, speed, rows }, md);
process.stdout.write(`${md}\n`);
