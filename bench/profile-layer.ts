/**
 * Where a calibration layer forward spends its time (`npm run bench:profile-layer`): ORT's per-node profile of one
 * layer of the bench:scale model (TinyLlama-1.1B shapes; run `npm run bench:scale` once to generate it) on a batch of
 * 8 × 512 tokens, summed per operator type over 3 runs after a warm-up. Results: bench/results/layer-profile.{json,md}.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { loadModel } from "../src/arch/load.ts";
import { emitLayerGraph } from "../src/onnx/emit.ts";
import { f32, type HostTensor, Session } from "../src/runtime/ort.ts";
import { machineInfo, markdownTable, REPO_ROOT, writeResults } from "./lib.ts";

const dir = path.join(REPO_ROOT, "bench", "cache", "tinyllama-shaped-bf16");
if (!fs.existsSync(path.join(dir, "config.json"))) {
  process.stdout.write(
    "bench:profile-layer skipped: run npm run bench:scale first (it generates the model)\n",
  );
  process.exit(0);
}
const m = loadModel(dir);
const { bytes, weightInputs } = emitLayerGraph(m, 0);
const work = fs.mkdtempSync(path.join(os.tmpdir(), "pare-profile-"));
const s = await Session.create(bytes, { profilePrefix: path.join(work, "layer") });
const [b, T, D] = [8, 512, m.dims.hidden];
const feeds: Record<string, HostTensor> = {
  x: f32(
    [b, T, D],
    new Float32Array(b * T * D).map((_, i) => ((i * 7919) % 1000) / 1000 - 0.5),
  ),
};
for (const name of weightInputs.values()) {
  const t = name.replace(".L.", ".0.");
  feeds[name] = f32(m.weights.shape(t), m.weights.get(t));
}
const runs = 3;
const t0 = performance.now();
for (let r = 0; r <= runs; r++) await s.run(feeds); // the first run is the warm-up (also profiled: subtracted below)
const wall = (performance.now() - t0) / 1000;
s.endProfiling();
await s.release();
m.close();
type Ev = { cat?: string; name: string; dur: number; args?: { op_name?: string } };
const file = fs.readdirSync(work).find((f) => f.startsWith("layer") && f.endsWith(".json"));
if (!file) throw new Error(`ORT wrote no profile into ${work}`);
const events = JSON.parse(fs.readFileSync(path.join(work, file), "utf8")) as Ev[];
fs.rmSync(work, { recursive: true, force: true });
const perOp = new Map<string, number[]>(); // op → kernel µs of each node execution, in order
for (const e of events) {
  if (e.cat !== "Node" || !e.name.endsWith("_kernel_time")) continue;
  const op = e.args?.op_name ?? "?";
  if (!perOp.has(op)) perOp.set(op, []);
  perOp.get(op)!.push(e.dur);
}
// each op type runs the same number of times per run: drop the warm-up run's share
const rows = [...perOp.entries()]
  .map(([op, d]) => {
    const per = d.length / (runs + 1);
    const timed = d.slice(per).reduce((a, x) => a + x, 0) / runs / 1000;
    return { op, ms: timed, nodes: per };
  })
  .sort((a, c) => c.ms - a.ms);
const total = rows.reduce((a, r) => a + r.ms, 0);
const table = markdownTable(
  ["operator", "nodes", "ms / run", "share"],
  rows
    .filter((r) => r.ms >= 0.05)
    .map((r) => [r.op, r.nodes, r.ms.toFixed(1), `${((100 * r.ms) / total).toFixed(1)} %`]),
  [false, true, true, true],
);
const md = `# bench:profile-layer\n\nCommand: \`npm run bench:profile-layer\`  \nMachine: ${machineInfo().cpu}; ${new Date().toISOString()}.\nOne layer of the TinyLlama-1.1B-shaped model, batch ${b} × ${T} tokens, ORT kernel time per operator type (mean of ${runs} runs after a warm-up; ${(wall / (runs + 1)).toFixed(2)} s per run wall, including the warm-up).\n\n${table}\n\nTotal kernel time ${total.toFixed(0)} ms / run.\n`;
writeResults("layer-profile", { machine: machineInfo(), rows, totalMs: total }, md);
process.stdout.write(md);
