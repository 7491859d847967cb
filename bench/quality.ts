/**
 * Quality benchmark (`npm run bench:quality`): prune the shared trained models with every
 * criterion × reconstruction × ratio and measure them against the dense model.
 *   llama-gqa-6l: WikiText-2 test perplexity (L = 256, first N windows), KL(dense‖pruned) and
 *                 top-1 agreement; calibration on WikiText-2 *validation* (disjoint from test).
 *   bert-sst2-4l: SST-2 dev accuracy; calibration on SST-2 train sentences.
 * Options: --windows N (default 200; --windows all = the whole test set), --kl-windows N (default 32),
 * --quick (ratio 0.5 and three criteria only), --only llama|bert.
 * --selection: the reconstruction-aware selection grid instead (issue #16, results in quality-selection.*): at
 *   ratios 0.3 and 0.5, today's criteria with liar (global and uniform) against `obs` (uniform; global with each
 *   cost normalization) and `--ridge auto`; llama-gqa-6l perplexity, KL and top-1 agreement, bert-sst2-4l KL
 *   and agreement of the class distribution on SST-2 dev. --cells a,b filters cells by label substring.
 * Reads ../shared; without it, prints that it skipped and exits 0.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { type LoadedModel, loadModel } from "../src/arch/load.ts";
import { CRITERIA } from "../src/criteria/index.ts";
import { classify } from "../src/eval/classify.ts";
import { cutWindows, perplexity } from "../src/eval/perplexity.ts";
import { Runner } from "../src/eval/runner.ts";
import { readClassificationFile, readTextFile } from "../src/io/datasets.ts";
import { loadTokenizer } from "../src/io/tokenizer.ts";
import type { ObsNormalization } from "../src/pipeline/allocation.ts";
import { runPrune } from "../src/pipeline/prune.ts";
import { resolveRecipe } from "../src/pipeline/recipe.ts";
import { RECONSTRUCTORS } from "../src/reconstruct/index.ts";
import {
  againstDense,
  machineInfo,
  markdownTable,
  REPO_ROOT,
  sst2TrainSentences,
  writeResults,
} from "./lib.ts";

const SHARED = path.resolve(REPO_ROOT, "../shared");
const arg = (name: string, def?: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
};
const quick = process.argv.includes("--quick");
const only = arg("only");
const windowsArg = arg("windows", "200")!;
const klWindows = Number(arg("kl-windows", "32"));

if (!fs.existsSync(path.join(SHARED, "models"))) {
  process.stdout.write(
    "bench:quality skipped: ../shared/models not found (the benchmark needs the shared trained models)\n",
  );
  process.exit(0);
}

const criteria = quick ? ["flap-wifv", "wanda-sp", "magnitude-l2"] : Object.keys(CRITERIA);
const recons = Object.keys(RECONSTRUCTORS);
const work = fs.mkdtempSync(path.join(os.tmpdir(), "pare-bench-quality-"));
const log = (s: string) => process.stderr.write(`${s}\n`);

if (process.argv.includes("--selection")) {
  await selectionBench();
  process.exit(0);
}

interface Row {
  model: string;
  criterion: string;
  reconstruct: string;
  ratio: number;
  achievedRatio: number;
  pruneSeconds: number;
  ppl?: number;
  kl?: number;
  top1?: number;
  accuracy?: number;
}
// results are appended to a partial file as they come, so an interrupted run resumes where it stopped
const partialFile = path.join(
  REPO_ROOT,
  "bench",
  "results",
  `${quick ? "quality-quick" : "quality"}.partial.json`,
);
const rows: Row[] =
  fs.existsSync(partialFile) && !process.argv.includes("--fresh")
    ? JSON.parse(fs.readFileSync(partialFile, "utf8")).rows
    : [];
const done = (model: string, criterion: string, reconstruct: string, ratio: number) =>
  rows.some(
    (r) =>
      r.model === model && r.criterion === criterion && r.reconstruct === reconstruct && r.ratio === ratio,
  );
const save = () => {
  fs.mkdirSync(path.dirname(partialFile), { recursive: true });
  fs.writeFileSync(partialFile, JSON.stringify({ dense, rows }));
};
const dense: Record<string, Record<string, number>> = fs.existsSync(
  path.join(REPO_ROOT, "bench", "results", `${quick ? "quality-quick" : "quality"}.partial.json`),
) && !process.argv.includes("--fresh")
  ? JSON.parse(
      fs.readFileSync(
        path.join(REPO_ROOT, "bench", "results", `${quick ? "quality-quick" : "quality"}.partial.json`),
        "utf8",
      ),
    ).dense
  : {};

async function benchLlama(): Promise<void> {
  const dir = path.join(SHARED, "models/llama-gqa-6l");
  const calib = path.join(SHARED, "data/wikitext-2/tokens-v1/wiki.valid.tokens");
  const tok = loadTokenizer(dir);
  log("tokenizing WikiText-2 test …");
  const ids = tok.encode(readTextFile(path.join(SHARED, "data/wikitext-2/raw-v1/wiki.test.raw")));
  const maxWindows = windowsArg === "all" ? undefined : Number(windowsArg);
  const klWin = cutWindows(ids, 256, klWindows);
  const denseModel = loadModel(dir);
  const dr = await Runner.create(denseModel);
  const dp = await perplexity(dr, ids, { seqLen: 256, maxWindows });
  await dr.close();
  const lr = await Runner.create(denseModel, { mode: "logprobs" });
  const refLogp: Float32Array[] = [];
  for (let i = 0; i < klWin.length; i += 4) refLogp.push(await lr.windowLogprobs(klWin.slice(i, i + 4)));
  await lr.close();
  denseModel.close();
  dense.llama = { ppl: dp.ppl, windows: dp.windows, tokens: dp.tokens };
  log(`dense llama-gqa-6l: ppl ${dp.ppl.toFixed(2)} (${dp.protocol})`);
  await grid("llama-gqa-6l", dir, calib, quick ? [0.5] : [0.2, 0.3, 0.5], 256, async (m) => {
    const q = await againstDense(m, ids, maxWindows, klWin, refLogp);
    return {
      fields: q,
      text: `ppl ${q.ppl.toFixed(2)} kl ${q.kl.toFixed(4)} top1 ${(100 * q.top1).toFixed(1)}%`,
    };
  });
}

async function benchBert(): Promise<void> {
  const dir = path.join(SHARED, "models/bert-sst2-4l");
  const calib = path.join(work, "sst2-train-sentences.txt");
  fs.writeFileSync(calib, sst2TrainSentences(SHARED));
  const dev = readClassificationFile(path.join(SHARED, "data/sst2/stsa.binary.dev"));
  const tok = loadTokenizer(dir);
  const dm = loadModel(dir);
  const dr = await Runner.create(dm);
  const da = await classify(dr, tok, dev);
  await dr.close();
  dm.close();
  dense.bert = { accuracy: da.accuracy, n: da.n };
  log(`dense bert-sst2-4l: accuracy ${(100 * da.accuracy).toFixed(2)}%`);
  await grid("bert-sst2-4l", dir, calib, quick ? [0.5] : [0.3, 0.5, 0.7], 128, async (m) => {
    const r = await Runner.create(m);
    const a = await classify(r, tok, dev);
    await r.close();
    return { fields: { accuracy: a.accuracy }, text: `acc ${(100 * a.accuracy).toFixed(2)}%` };
  });
}

/** Every ratio × criterion × reconstruction of one model: prune (seed 0, 128 samples), measure, record, resume-safe. */
async function grid(
  model: string,
  dir: string,
  calib: string,
  ratios: number[],
  seqLen: number,
  measure: (m: LoadedModel) => Promise<{ fields: Partial<Row>; text: string }>,
): Promise<void> {
  for (const ratio of ratios) {
    for (const criterion of criteria) {
      for (const reconstruct of recons) {
        if (done(model, criterion, reconstruct, ratio)) continue;
        const out = path.join(work, `${model}-${criterion}-${reconstruct}-${ratio}`);
        const rep = await runPrune(
          resolveRecipe({
            model: dir,
            out,
            ratio,
            criterion,
            reconstruct,
            calib: [calib],
            samples: 128,
            seqLen,
            seed: 0,
          }),
        );
        const m = loadModel(out);
        const { fields, text } = await measure(m).finally(() => m.close());
        fs.rmSync(out, { recursive: true, force: true });
        rows.push({
          model,
          criterion,
          reconstruct,
          ratio,
          achievedRatio: rep.achievedRatio,
          pruneSeconds: rep.timings.total,
          ...fields,
        });
        save();
        log(`${model} ${criterion} ${reconstruct} ${ratio}: ${text} (${rep.timings.total.toFixed(1)} s)`);
      }
    }
  }
}

const t0 = Date.now();
const reportOnly = process.argv.includes("--report-only"); // render the tables from the partial results, run nothing
if (!reportOnly && only !== "llama") await benchBert();
if (!reportOnly && only !== "bert") await benchLlama();
fs.rmSync(work, { recursive: true, force: true });

const llamaRows = rows.filter((r) => r.model === "llama-gqa-6l");
const bertRows = rows.filter((r) => r.model === "bert-sst2-4l");
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
let md = `# bench:quality${reportOnly ? " (partial: rendered with --report-only from the rows measured so far)" : ""}\n\nCommand: \`npm run bench:quality${process.argv.slice(2).length ? ` -- ${process.argv.slice(2).join(" ")}` : ""}\`  \n`;
md += `Machine: ${machineInfo().cpu}, ${os.cpus().length} cores; ${new Date().toISOString()}; wall time ${((Date.now() - t0) / 60000).toFixed(1)} min.  \n`;
md += "Recipe: allocation global, calibration sequential, 128 samples (seed 0), ridge 0.01.\n\n";
if (llamaRows.length) {
  md += `## llama-gqa-6l — WikiText-2 test perplexity (L = 256, ${dense.llama.windows} windows, ${dense.llama.tokens} predicted tokens), KL(dense‖pruned) and top-1 agreement on ${klWindows} windows; calibration: WikiText-2 validation, 128 × 256 tokens\n\n`;
  md += `Dense perplexity: **${dense.llama.ppl.toFixed(2)}**\n\n`;
  md += markdownTable(
    ["ratio", "criterion", "reconstruct", "achieved", "PPL", "KL", "top-1", "prune s"],
    llamaRows.map((r) => [
      r.ratio,
      r.criterion,
      r.reconstruct,
      r.achievedRatio.toFixed(3),
      r.ppl!.toFixed(2),
      r.kl!.toFixed(4),
      pct(r.top1!),
      r.pruneSeconds.toFixed(1),
    ]),
    [true, false, false, true, true, true, true, true],
  );
  md += "\n\n";
}
if (bertRows.length) {
  md += `## bert-sst2-4l — SST-2 dev accuracy (${dense.bert.n} sentences); calibration: 128 SST-2 train sentences\n\nDense accuracy: **${pct(dense.bert.accuracy)}**\n\n`;
  md += markdownTable(
    ["ratio", "criterion", "reconstruct", "achieved", "accuracy", "prune s"],
    bertRows.map((r) => [
      r.ratio,
      r.criterion,
      r.reconstruct,
      r.achievedRatio.toFixed(3),
      pct(r.accuracy!),
      r.pruneSeconds.toFixed(1),
    ]),
    [true, false, false, true, true, true],
  );
  md += "\n";
}
writeResults(
  quick ? "quality-quick" : "quality",
  { machine: machineInfo(), args: process.argv.slice(2), complete: !reportOnly, dense, rows },
  md,
);
if (!reportOnly) fs.rmSync(partialFile, { force: true });
process.stdout.write(md);

// ---------------------------------------------------------------------------------------------------------
// --selection: reconstruction-aware selection (issue #16)

interface Cell {
  criterion: string;
  allocation: "uniform" | "global";
  ridge?: number | "auto";
  /** obs under global allocation: how step costs are normalized across modules */
  norm?: ObsNormalization;
}
interface SelRow extends Cell {
  model: string;
  label: string;
  ratio: number;
  achievedRatio: number;
  pruneSeconds: number;
  ppl?: number;
  kl?: number;
  top1?: number;
  agree?: number;
  accuracy?: number;
  ridgeChosen?: number[];
}

function cellLabel(c: Cell): string {
  return `${c.criterion} · ${c.allocation}${c.norm ? ` (${c.norm})` : ""} · liar${c.ridge !== undefined ? ` · ridge ${c.ridge}` : ""}`;
}

async function selectionBench(): Promise<void> {
  const t0 = Date.now();
  const ratios = (arg("ratios") ?? "0.5,0.3").split(",").map(Number);
  const cells: Cell[] = [
    ...["magnitude-l1", "wanda-sp", "flap-ifv", "flap-wifv"].map((criterion) => ({
      criterion,
      allocation: "global" as const,
    })),
    { criterion: "flap-ifv", allocation: "uniform" },
    { criterion: "magnitude-l1", allocation: "uniform" },
    { criterion: "obs", allocation: "uniform" },
    { criterion: "obs", allocation: "global", norm: "output" },
    { criterion: "obs", allocation: "global", norm: "none" },
    { criterion: "obs", allocation: "global", norm: "standardized" },
    { criterion: "flap-ifv", allocation: "global", ridge: "auto" },
    { criterion: "obs", allocation: "uniform", ridge: "auto" },
    { criterion: "obs", allocation: "global", norm: "none", ridge: "auto" },
    { criterion: "obs", allocation: "global", norm: "stream" },
    { criterion: "obs", allocation: "global", norm: "stream", ridge: "auto" },
    { criterion: "obs", allocation: "global", norm: "standardized", ridge: "auto" },
  ];
  const filter = arg("cells")?.split(",");
  const want = (c: Cell) => !filter || filter.some((f) => cellLabel(c).includes(f));
  // --part NAME: a separate partial file (two invocations at once must not share one)
  const file = path.join(
    REPO_ROOT,
    "bench",
    "results",
    `quality-selection${arg("part") ? `-${arg("part")}` : ""}.partial.json`,
  );
  const prev =
    fs.existsSync(file) && !process.argv.includes("--fresh") ? JSON.parse(fs.readFileSync(file, "utf8")) : {};
  const srows: SelRow[] = prev.rows ?? [];
  const sdense: Record<string, Record<string, number>> = prev.dense ?? {};
  const mergeOnly = process.argv.includes("--report-only");
  if (mergeOnly) {
    // the table from every partial file (invocations with different --part), nothing run
    srows.length = 0;
    const dir = path.join(REPO_ROOT, "bench", "results");
    for (const f of fs.readdirSync(dir).filter((n) => /^quality-selection.*\.partial\.json$/.test(n))) {
      const j = JSON.parse(fs.readFileSync(path.join(dir, f), "utf8"));
      Object.assign(sdense, j.dense);
      for (const r of j.rows as SelRow[])
        if (!srows.some((x) => x.model === r.model && x.label === r.label && x.ratio === r.ratio))
          srows.push(r);
    }
  }
  const ssave = () => {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, JSON.stringify({ dense: sdense, rows: srows }));
  };

  async function run(
    model: string,
    dir: string,
    calib: string,
    seqLen: number,
    measure: (m: LoadedModel) => Promise<Partial<SelRow>>,
  ): Promise<void> {
    for (const ratio of ratios) {
      for (const c of cells) {
        const label = cellLabel(c);
        if (!want(c) || srows.some((r) => r.model === model && r.label === label && r.ratio === ratio))
          continue;
        const out = path.join(work, `${model}-${label.replace(/\W+/g, "-")}-${ratio}`);
        const rep = await runPrune(
          resolveRecipe({
            model: dir,
            out,
            ratio,
            criterion: c.criterion,
            allocation: c.allocation,
            reconstruct: "liar",
            ...(c.ridge !== undefined ? { ridge: c.ridge } : {}),
            ...(c.norm ? { obsNormalization: c.norm } : {}),
            calib: [calib],
            samples: 128,
            seqLen,
            seed: 0,
          }),
        );
        const m = loadModel(out);
        const fields = await measure(m).finally(() => m.close());
        fs.rmSync(out, { recursive: true, force: true });
        const row: SelRow = {
          model,
          label,
          ...c,
          ratio,
          achievedRatio: rep.achievedRatio,
          pruneSeconds: rep.timings.total,
          ...fields,
        };
        srows.push(row);
        ssave();
        log(
          `${model} ${label} ${ratio}: ${["ppl", "kl", "top1", "agree"]
            .filter((k) => row[k as keyof SelRow] !== undefined)
            .map((k) => `${k} ${Number(row[k as keyof SelRow]).toFixed(5)}`)
            .join(" ")} (${rep.timings.total.toFixed(1)} s)`,
        );
      }
    }
  }

  if (!mergeOnly && only !== "llama") {
    // bert-sst2-4l: KL(dense‖pruned) of the class distribution and agreement on SST-2 dev
    const dir = path.join(SHARED, "models/bert-sst2-4l");
    const calib = path.join(work, "sst2-train-sentences.txt");
    fs.writeFileSync(calib, sst2TrainSentences(SHARED));
    const dev = readClassificationFile(path.join(SHARED, "data/sst2/stsa.binary.dev"));
    const tok = loadTokenizer(dir);
    const enc = dev.map((d) => ({ ids: tok.encode(d.text) }));
    const probs = async (m: LoadedModel): Promise<number[][]> => {
      const r = await Runner.create(m);
      const out: number[][] = [];
      for (let i = 0; i < enc.length; i += 32) {
        for (const z of await r.classify(enc.slice(i, i + 32), tok.padId ?? 0)) {
          const mx = Math.max(...z);
          const e = Array.from(z, (v) => Math.exp(v - mx));
          const sum = e.reduce((a, b) => a + b, 0);
          out.push(e.map((v) => v / sum));
        }
      }
      await r.close();
      return out;
    };
    const argmax = (z: number[]) => z.reduce((b, v, i, a) => (v > a[b] ? i : b), 0);
    const dm = loadModel(dir);
    const dp = await probs(dm).finally(() => dm.close());
    sdense.bert = {
      n: dev.length,
      accuracy: dp.filter((p, i) => argmax(p) === dev[i].label).length / dev.length,
    };
    await run("bert-sst2-4l", dir, calib, 128, async (m) => {
      const p = await probs(m);
      let kl = 0;
      let agree = 0;
      let correct = 0;
      p.forEach((q, i) => {
        kl += dp[i].reduce((s, pd, c) => s + (pd > 0 ? pd * Math.log(pd / Math.max(q[c], 1e-30)) : 0), 0);
        if (argmax(q) === argmax(dp[i])) agree++;
        if (argmax(q) === dev[i].label) correct++;
      });
      return { kl: kl / p.length, agree: agree / p.length, accuracy: correct / p.length };
    });
  }
  if (!mergeOnly && only !== "bert") {
    const dir = path.join(SHARED, "models/llama-gqa-6l");
    const calib = path.join(SHARED, "data/wikitext-2/tokens-v1/wiki.valid.tokens");
    const tok = loadTokenizer(dir);
    // encoded in chunks of 200 lines, as when the recorded results were measured (one call on the whole file
    // then overflowed the tokenizer adapter's stack; fixed since). Each chunk gets its own BOS and "▁" prefix,
    // so these ids are not those of one call on the whole text (457,693 vs 457,651 ids): the selection tables
    // say their dense perplexity is not comparable with the main grid's to the last digit.
    const lines = readTextFile(path.join(SHARED, "data/wikitext-2/raw-v1/wiki.test.raw")).split("\n");
    const ids: number[] = [];
    for (let i = 0; i < lines.length; i += 200) {
      const last = i + 200 >= lines.length;
      ids.push(...tok.encode(lines.slice(i, i + 200).join("\n") + (last ? "" : "\n")));
    }
    const maxWindows = windowsArg === "all" ? undefined : Number(windowsArg);
    const klWin = cutWindows(ids, 256, klWindows);
    const denseModel = loadModel(dir);
    const dr = await Runner.create(denseModel);
    const dpp = await perplexity(dr, ids, { seqLen: 256, maxWindows });
    await dr.close();
    const lr = await Runner.create(denseModel, { mode: "logprobs" });
    const refLogp: Float32Array[] = [];
    for (let i = 0; i < klWin.length; i += 4) refLogp.push(await lr.windowLogprobs(klWin.slice(i, i + 4)));
    await lr.close();
    denseModel.close();
    sdense.llama = { ppl: dpp.ppl, windows: dpp.windows, tokens: dpp.tokens };
    await run("llama-gqa-6l", dir, calib, 256, async (m) => {
      const q = await againstDense(m, ids, maxWindows, klWin, refLogp);
      return q;
    });
  }
  fs.rmSync(work, { recursive: true, force: true });

  const pct = (x?: number) => (x === undefined ? "" : `${(100 * x).toFixed(1)}%`);
  let md = `# bench:quality --selection (issue #16: reconstruction-aware selection)\n\nCommand: \`npm run bench:quality -- ${process.argv.slice(2).join(" ")}\`  \n`;
  md += `Machine: ${machineInfo().cpu}, ${os.cpus().length} cores; ${new Date().toISOString()}; wall time of this invocation ${((Date.now() - t0) / 60000).toFixed(1)} min (rows of earlier invocations resumed from the partial file).  \n`;
  md +=
    "Every cell: reconstruction liar, calibration sequential, 128 samples (seed 0), ridge 0.01 unless stated.\n\n";
  const table = (model: string, cols: string[], row: (r: SelRow) => (string | number)[]) => {
    const rs = srows.filter((r) => r.model === model).sort((a, b) => a.ratio - b.ratio);
    return markdownTable(
      ["ratio", "selection", "achieved", ...cols, "prune s"],
      rs.map((r) => [r.ratio, r.label, r.achievedRatio.toFixed(3), ...row(r), r.pruneSeconds.toFixed(1)]),
      [true, false, true, ...cols.map(() => true), true],
    );
  };
  if (sdense.llama) {
    md += `## llama-gqa-6l — WikiText-2 test perplexity (L = 256, ${sdense.llama.windows} windows), KL(dense‖pruned) and top-1 agreement on ${klWindows} windows\n\nDense perplexity: **${sdense.llama.ppl.toFixed(2)}**\n\n`;
    md += table("llama-gqa-6l", ["PPL", "KL", "top-1"], (r) => [
      r.ppl!.toFixed(2),
      r.kl!.toFixed(4),
      pct(r.top1),
    ]);
    md += "\n\n";
  }
  if (sdense.bert) {
    md += `## bert-sst2-4l — SST-2 dev (${sdense.bert.n} sentences): mean KL(dense‖pruned) of the class probabilities, agreement with the dense prediction, accuracy (dense ${pct(sdense.bert.accuracy)})\n\n`;
    md += table("bert-sst2-4l", ["KL", "agreement", "accuracy"], (r) => [
      r.kl!.toFixed(5),
      pct(r.agree),
      pct(r.accuracy),
    ]);
    md += "\n";
  }
  writeResults(
    "quality-selection",
    { machine: machineInfo(), args: process.argv.slice(2), dense: sdense, rows: srows },
    md,
  );
  process.stdout.write(md);
}
