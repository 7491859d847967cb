/**
 * Speed benchmark (`npm run bench:speed`): ONNX Runtime latency/throughput of the shared trained
 * models, dense vs pruned (interleaved in one run, medians), next to the FLOP and parameter
 * reduction; `--round-to 64` shows the effect of aligned FFN widths. Reads ../shared; skips without it.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { loadModel } from "../src/arch/load.ts";
import { benchSpeed, type SpeedReport } from "../src/eval/latency.ts";
import { runPrune } from "../src/pipeline/prune.ts";
import { DEFAULTS, resolveRecipe } from "../src/pipeline/recipe.ts";
import { machineInfo, markdownTable, REPO_ROOT, sst2TrainSentences, writeResults } from "./lib.ts";

const SHARED = path.resolve(REPO_ROOT, "../shared");
if (!fs.existsSync(path.join(SHARED, "models"))) {
  process.stdout.write("bench:speed skipped: ../shared/models not found\n");
  process.exit(0);
}
const runs = Number(process.argv[process.argv.indexOf("--runs") + 1] || 9) || 9;
const work = fs.mkdtempSync(path.join(os.tmpdir(), "pare-bench-speed-"));
const log = (s: string) => process.stderr.write(`${s}\n`);
const calibText = path.join(work, "calib.txt");
fs.writeFileSync(
  calibText,
  `${fs.readFileSync(path.join(SHARED, "data/wikitext-2/tokens-v1/wiki.valid.tokens"), "utf8").slice(0, 200_000)}\n${sst2TrainSentences(SHARED)}`,
);

const variants = [
  { label: "global 0.3", ratio: 0.3, allocation: "global" as const, roundTo: 1 },
  { label: "global 0.5", ratio: 0.5, allocation: "global" as const, roundTo: 1 },
  { label: "global 0.5, round-to 64", ratio: 0.5, allocation: "global" as const, roundTo: 64 },
  { label: "uniform 0.5", ratio: 0.5, allocation: "uniform" as const, roundTo: 1 },
];

// 1. prune time of the default recipe with 128 × 256 calibration tokens (llama) / 128 sentences (BERT), with the
//    cost model's estimate next to the measured time
const pruneTimes: {
  model: string;
  seconds: number;
  phases: Record<string, number>;
  estimate?: number;
  flops?: number;
}[] = [];
for (const name of ["llama-gqa-6l", "bert-sst2-4l"]) {
  const out = path.join(work, `${name}-timed`);
  log(`timing the default prune of ${name} …`);
  const rep = await runPrune(
    resolveRecipe({
      model: path.join(SHARED, "models", name),
      out,
      calib: [calibText],
      samples: 128,
      seqLen: name.startsWith("llama") ? 256 : 128,
    }),
  );
  fs.rmSync(out, { recursive: true, force: true });
  pruneTimes.push({
    model: name,
    seconds: rep.timings.total,
    phases: rep.timings,
    estimate: rep.plan?.estimateSeconds?.total,
    flops: rep.plan?.flops.total,
  });
}

const results: { model: string; labels: string[]; report: SpeedReport }[] = [];
for (const name of ["llama-gqa-6l", "bert-sst2-4l"]) {
  const dir = path.join(SHARED, "models", name);
  const dirs = [dir];
  for (const v of variants) {
    const out = path.join(work, `${name}-${v.label.replace(/[ ,.]+/g, "-")}`);
    log(`pruning ${name} (${v.label}) …`);
    await runPrune(
      resolveRecipe({
        model: dir,
        out,
        ratio: v.ratio,
        allocation: v.allocation,
        roundTo: v.roundTo,
        calib: [calibText],
        samples: 32,
        seqLen: 128,
      }),
    );
    dirs.push(out);
  }
  const models = dirs.map((d) => loadModel(d));
  log(`timing ${name} (${runs} interleaved runs per case) …`);
  const report = await benchSpeed(models, { runs, onProgress: log });
  for (const m of models) m.close();
  results.push({ model: name, labels: ["dense", ...variants.map((v) => v.label)], report });
}
fs.rmSync(work, { recursive: true, force: true });

let md = "# bench:speed\n\nCommand: `npm run bench:speed`  \n";
md += `Machine: ${machineInfo().cpu}, ${os.cpus().length} cores, onnxruntime-node, default threads; ${new Date().toISOString()}. Median of ${runs} runs per case, all variants interleaved in one run.\n\n`;
const d = DEFAULTS;
md += `## Prune time (default recipe: ${d.criterion} · ${d.allocation} · ${d.reconstruct} · ridge ${d.ridge} · ${d.calibration}, 128 calibration sequences; llama 256 tokens each)\n\n`;
md += markdownTable(
  ["model", "total s", "phases (s)", "cost-model estimate s", "planned GFLOP"],
  pruneTimes.map((p) => [
    p.model,
    p.seconds.toFixed(1),
    Object.entries(p.phases)
      .filter(([k]) => k !== "total")
      .map(([k, v]) => `${k} ${v.toFixed(1)}`)
      .join(", "),
    p.estimate?.toFixed(1) ?? "",
    p.flops ? (p.flops / 1e9).toFixed(0) : "",
  ]),
  [false, true, false, true, true],
);
md += "\n\n";
for (const r of results) {
  md += `## ${r.model}\n\n`;
  const base = r.report.models[0];
  const rows: (string | number)[][] = [];
  for (const c of r.report.cases) {
    c.seconds.forEach((s, i) => {
      const m = r.report.models[i];
      const flopRed = base.flopsPerToken / m.flopsPerToken;
      const speedup = c.seconds[0] / s;
      rows.push([
        c.name,
        r.labels[i],
        m.params.toLocaleString("en-US"),
        flopRed.toFixed(2),
        (1000 * s).toFixed(1),
        c.tokensPerSecond[i].toFixed(0),
        speedup.toFixed(2),
        (speedup / flopRed).toFixed(2),
      ]);
    });
  }
  md += markdownTable(
    ["case", "model", "params", "FLOP reduction", "ms", "tokens/s", "speedup", "speedup / FLOP red."],
    rows,
    [false, false, true, true, true, true, true, true],
  );
  md += "\n\n";
}
writeResults("speed", { machine: machineInfo(), runs, pruneTimes, results }, md);
process.stdout.write(md);
