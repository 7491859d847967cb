/**
 * Quantization benchmark (`npm run bench:quant`, issue #14): llama-gqa-6l from ../shared, each setting written as
 * a model folder and measured against the dense model:
 *   dense (float, as stored) · dense q4 RTN · dense q4 GPTQ · pruned 0.3 (float) · pruned 0.3 + q4 RTN
 *   in one pass · pruned 0.3 + q4 GPTQ in one pass · pruned 0.3 then GPTQ separately · pruned 0.5 + q4 GPTQ in
 *   one pass
 * Measures: size of the weights on disk (*.safetensors), WikiText-2 test perplexity (L = 256, first N windows),
 * KL(dense‖model) and top-1 agreement on the first K windows (protocol of bench:quality); calibration: WikiText-2
 * validation, 128 × 256 tokens, seed 0. q4 = 4 bits, group 64 (the model's FFN width 704 is not a multiple of
 * 128), symmetric. Every prune keeps FFN widths a multiple of 64 (--round-to 64: what --quantize needs), so the
 * float and quantized prunes have the same widths.
 * Options: --windows N (default 200), --kl-windows N (default 32).
 * Reads ../shared; without it, prints that it skipped and exits 0.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { quantize } from "../src/api/quantize.ts";
import { type LoadedModel, loadModel } from "../src/arch/load.ts";
import { cutWindows } from "../src/eval/perplexity.ts";
import { Runner } from "../src/eval/runner.ts";
import { readTextFile } from "../src/io/datasets.ts";
import { loadTokenizer } from "../src/io/tokenizer.ts";
import { runPrune } from "../src/pipeline/prune.ts";
import { resolveRecipe } from "../src/pipeline/recipe.ts";
import { againstDense, machineInfo, markdownTable, REPO_ROOT, writeResults } from "./lib.ts";

const SHARED = path.resolve(REPO_ROOT, "../shared");
const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
};
const windows = Number(arg("windows", "200"));
const klWindows = Number(arg("kl-windows", "32"));

if (!fs.existsSync(path.join(SHARED, "models/llama-gqa-6l"))) {
  process.stdout.write(
    "bench:quant skipped: ../shared/models/llama-gqa-6l not found (the benchmark needs it)\n",
  );
  process.exit(0);
}

const t0 = Date.now();
const log = (s: string) => process.stderr.write(`${s}\n`);
const work = fs.mkdtempSync(path.join(os.tmpdir(), "pare-bench-quant-"));
const dense = path.join(SHARED, "models/llama-gqa-6l");
const calib = path.join(SHARED, "data/wikitext-2/tokens-v1/wiki.valid.tokens");
const G = 64;
const CAL = { calib: [calib], samples: 128, seqLen: 256, seed: 0 };

interface Row {
  setting: string;
  bytes: number;
  seconds: number;
  ppl: number;
  kl: number;
  top1: number;
}

function weightBytes(dir: string): number {
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith(".safetensors"))
    .reduce((s, f) => s + fs.statSync(path.join(dir, f)).size, 0);
}

const tok = loadTokenizer(dense);
log("tokenizing WikiText-2 test …");
// encoded in chunks of 200 lines, as bench:quality does (one call on the whole file overflows the tokenizer's
// stack); the chunks end at line breaks, which the pre-tokenizer splits at anyway
const lines = readTextFile(path.join(SHARED, "data/wikitext-2/raw-v1/wiki.test.raw")).split("\n");
const ids: number[] = [];
for (let i = 0; i < lines.length; i += 200) {
  const last = i + 200 >= lines.length;
  ids.push(...tok.encode(lines.slice(i, i + 200).join("\n") + (last ? "" : "\n")));
}
const klWin = cutWindows(ids, 256, klWindows);
const refLogp: Float32Array[] = [];
{
  const m = loadModel(dense);
  const lr = await Runner.create(m, { mode: "logprobs" });
  for (let i = 0; i < klWin.length; i += 4) refLogp.push(await lr.windowLogprobs(klWin.slice(i, i + 4)));
  await lr.close();
  m.close();
}

async function measure(m: LoadedModel): Promise<{ ppl: number; kl: number; top1: number }> {
  const q = await againstDense(m, ids, windows, klWin, refLogp);
  return q;
}

const rows: Row[] = [];
async function record(setting: string, dir: string, seconds: number): Promise<void> {
  const m = loadModel(dir);
  const q = await measure(m).finally(() => m.close());
  rows.push({ setting, bytes: weightBytes(dir), seconds, ...q });
  log(
    `${setting}: ${(weightBytes(dir) / 2 ** 20).toFixed(2)} MiB, ppl ${q.ppl.toFixed(2)}, kl ${q.kl.toFixed(4)}, top-1 ${(100 * q.top1).toFixed(1)}%`,
  );
}

async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const s = performance.now();
  const r = await f();
  return [r, (performance.now() - s) / 1000];
}

const prune = (out: string, ratio: number, extra: Record<string, unknown> = {}) =>
  timed(() => runPrune(resolveRecipe({ model: dense, out, ratio, roundTo: G, ...CAL, ...extra })));
const quant = (model: string, out: string, method: "gptq" | "rtn") =>
  timed(() => quantize({ model, out, groupSize: G, method, ...CAL }));

await record("dense (float, as stored)", dense, 0);
let s: number;
[, s] = await quant(dense, path.join(work, "dense-rtn"), "rtn");
await record("dense q4 RTN", path.join(work, "dense-rtn"), s);
[, s] = await quant(dense, path.join(work, "dense-gptq"), "gptq");
await record("dense q4 GPTQ", path.join(work, "dense-gptq"), s);
[, s] = await prune(path.join(work, "p3"), 0.3);
await record("pruned 0.3 (float)", path.join(work, "p3"), s);
[, s] = await prune(path.join(work, "p3-rtn"), 0.3, { quantize: 4, groupSize: G, quantMethod: "rtn" });
await record("pruned 0.3 + q4 RTN, one pass", path.join(work, "p3-rtn"), s);
[, s] = await prune(path.join(work, "p3-gptq"), 0.3, { quantize: 4, groupSize: G });
await record("pruned 0.3 + q4 GPTQ, one pass", path.join(work, "p3-gptq"), s);
[, s] = await quant(path.join(work, "p3"), path.join(work, "p3-then-gptq"), "gptq");
await record("pruned 0.3, then q4 GPTQ separately", path.join(work, "p3-then-gptq"), s);
[, s] = await prune(path.join(work, "p5-gptq"), 0.5, { quantize: 4, groupSize: G });
await record("pruned 0.5 + q4 GPTQ, one pass", path.join(work, "p5-gptq"), s);
fs.rmSync(work, { recursive: true, force: true });

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const denseRow = rows[0];
let md = `# bench:quant\n\nCommand: \`npm run bench:quant${process.argv.slice(2).length ? ` -- ${process.argv.slice(2).join(" ")}` : ""}\`  \n`;
md += `Machine: ${machineInfo().cpu}, ${os.cpus().length} cores; ${new Date().toISOString()}; wall time ${((Date.now() - t0) / 60000).toFixed(1)} min.  \n`;
md += `llama-gqa-6l; WikiText-2 test perplexity (L = 256, first ${windows} windows), KL(dense‖model) and top-1 agreement on ${klWindows} windows; calibration WikiText-2 validation, 128 × 256 tokens (seed 0). q4: 4 bits, group ${G}, symmetric. Prunes: flap-wifv · global · liar, FFN widths a multiple of ${G}. Size: the weights on disk (embeddings, norms and the LM head stay in the input's float precision). Seconds: the prune / quantization run (this machine is shared: compare within a run only).\n\n`;
md += markdownTable(
  ["setting", "weights MiB", "× dense", "PPL", "KL", "top-1", "s"],
  rows.map((r) => [
    r.setting,
    (r.bytes / 2 ** 20).toFixed(2),
    (r.bytes / denseRow.bytes).toFixed(3),
    r.ppl.toFixed(2),
    r.kl.toFixed(4),
    pct(r.top1),
    r.seconds.toFixed(1),
  ]),
  [false, true, true, true, true, true, true],
);
md += "\n";
writeResults(
  "quant",
  { machine: machineInfo(), args: process.argv.slice(2), windows, klWindows, group: G, rows },
  md,
);
process.stdout.write(md);
