/**
 * Streaming check on the shared models (`npm run bench:streaming`): each model is pruned twice with the same settings
 * — once holding every piece of waiting calibration data in memory, once spilling all of it (activations between
 * layers, Gram matrices) through a temporary file — and the two outputs' weight files are compared byte for byte.
 * Settings: dense calibration (Grams wait for reconstruction) and the sequential default with global allocation
 * (its dense scoring pass streams activations). Reads ../shared; skips without it.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { runPrune } from "../src/pipeline/prune.ts";
import { type Recipe, resolveRecipe } from "../src/pipeline/recipe.ts";
import { machineInfo, markdownTable, REPO_ROOT, sst2TrainSentences, writeResults } from "./lib.ts";

const SHARED = path.resolve(REPO_ROOT, "../shared");
if (!fs.existsSync(path.join(SHARED, "models/llama-gqa-6l"))) {
  process.stdout.write("bench:streaming skipped: ../shared/models not found\n");
  process.exit(0);
}
const work = fs.mkdtempSync(path.join(os.tmpdir(), "pare-bench-stream-"));
const sst2 = path.join(work, "sst2-train.txt");
fs.writeFileSync(sst2, sst2TrainSentences(SHARED));
const models = [
  { name: "llama-gqa-6l", calib: path.join(REPO_ROOT, "examples/data/calib-wikitext2-valid.txt") },
  { name: "bert-sst2-4l", calib: sst2 },
];
const settings: [string, Partial<Recipe>][] = [
  ["dense calibration, global, liar", { calibration: "dense" }],
  ["sequential, global, liar (default)", {}],
];
const rows: (string | number)[][] = [];
const results: Record<string, unknown>[] = [];
for (const m of models) {
  for (const [label, extra] of settings) {
    const base = { model: path.join(SHARED, "models", m.name), calib: [m.calib], ratio: 0.5, ...extra };
    const mem = path.join(work, `${m.name}-${rows.length}-mem`);
    const disk = path.join(work, `${m.name}-${rows.length}-disk`);
    const a = await runPrune(resolveRecipe({ ...base, out: mem }));
    const b = await runPrune(resolveRecipe({ ...base, out: disk }), () => {}, { heldBudgetBytes: 0 });
    const spilled = b.notes.find((n) => n.includes("temporary file")) ?? "";
    const weights = fs.readdirSync(mem).filter((f) => f.endsWith(".safetensors"));
    const identical = weights.every((f) =>
      fs.readFileSync(path.join(mem, f)).equals(fs.readFileSync(path.join(disk, f))),
    );
    const gib = Number(spilled.match(/^([\d.]+) GiB/)?.[1] ?? 0);
    rows.push([
      m.name,
      label,
      (gib * 1024).toFixed(1),
      identical ? "yes" : "NO",
      a.timings.total.toFixed(1),
      b.timings.total.toFixed(1),
    ]);
    results.push({ model: m.name, settings: label, spilledMiB: gib * 1024, identical, weights });
    process.stderr.write(`${m.name} · ${label}: identical=${identical}\n`);
  }
}
fs.rmSync(work, { recursive: true, force: true });
const table = markdownTable(
  ["model", "settings (ratio 0.5)", "spilled MiB", "bit-identical", "in memory s", "spilled s"],
  rows,
  [false, false, true, false, true, true],
);
const md = `# bench:streaming\n\nCommand: \`npm run bench:streaming\`  \nMachine: ${machineInfo().cpu}; ${new Date().toISOString()}.\n\nEach prune ran twice: all waiting calibration data in memory, and all of it spilled through a temporary file; "bit-identical" compares the written safetensors files byte for byte.\n\n${table}\n`;
writeResults("streaming", { machine: machineInfo(), results }, md);
process.stdout.write(md);
