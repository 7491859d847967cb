/**
 * Quantization benchmark (`npm run bench:quant`, issue #14): llama-gqa-6l (and bert-sst2-4l) from ../shared, each
 * setting written as a model folder and measured against the dense model.
 *
 * llama-gqa-6l rows (keys for --rows in brackets):
 *   dense (float, as stored) [dense] · dense q4 RTN [dense-rtn] · dense q4 GPTQ, natural column order
 *   [dense-gptq-natural] · dense q4 GPTQ, act-order [dense-gptq-act] · pruned 0.3 (float) [p3] · pruned 0.3 + q4
 *   RTN in one pass [p3-rtn] · pruned 0.3 + q4 GPTQ in one pass, natural order / act-order [p3-gptq-natural,
 *   p3-gptq-act] · pruned 0.3 then GPTQ separately [p3-then-gptq] · pruned 0.5 + q4 GPTQ in one pass [p5-gptq]
 * Measures: size of the weights on disk (*.safetensors); WikiText-2 test perplexity (L = 256) on the first 200
 * windows and, with --windows all, on every window of the test set (per-window NLLs are kept, so that GPTQ vs RTN
 * is also given as a paired difference of log-perplexity with its standard error over windows); KL(dense‖model)
 * and top-1 agreement on the first K windows (protocol of bench:quality); calibration: WikiText-2 validation,
 * 128 × 256 tokens, seed 0. q4 = 4 bits, group 64 (the model's FFN width 704 is not a multiple of 128),
 * symmetric. Every prune keeps FFN widths a multiple of 64 (--round-to 64: what --quantize needs), so the float
 * and quantized prunes have the same widths.
 *
 * Speed [speed]: ONNX Runtime CPU prefill (8 × 256 tokens, KV-cache graph, empty past) and greedy generation (64
 * tokens after a 32-token prompt, batch 1, KV cache) — the workloads of `pare bench` (src/eval/latency.ts) — of each
 * llama row's export: onnx/model.onnx for float rows, onnx/model_q4.onnx (MatMulNBits) for quantized ones, all
 * sessions loaded at once and timed interleaved (medians), reported as ratios to the dense float32 model.onnx of
 * the same run. llama.cpp (node-llama-cpp, CPU, as bench:gguf times it but with one thread, see THREADS): prompt
 * processing (256 tokens) and generation (64 tokens) of the dense model as F32 and F16 GGUF and of the GPTQ folders
 * as Q4_0 GGUF.
 *
 * bert-sst2-4l rows [bert-dense, bert-rtn, bert-gptq, bert-p3, bert-p3-rtn, bert-p3-gptq]: KL(dense‖model) of the
 * class distribution, agreement with the dense prediction and accuracy on SST-2 dev (as bench:quality
 * --selection); calibration: SST-2 training sentences, 128 × 128 tokens, seed 0; group 64.
 *
 * Options: --rows a,b (keys above; default all), --windows 200|all (default 200), --kl-windows N (default 32),
 * --name NAME (results in bench/results/NAME.{json,md}; default quant), --speed-runs N (timed runs per speed
 * measurement, default 15), --no-write (print only).
 * Reads ../shared; without it, prints that it skipped and exits 0.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { getLlama, LlamaLogLevel, type Token } from "node-llama-cpp";
import { exportModel } from "../src/api/export.ts";
import { quantize } from "../src/api/quantize.ts";
import { type LoadedModel, loadModel } from "../src/arch/load.ts";
import type { Model } from "../src/arch/model.ts";
import { DEFAULT_WORKLOAD, generationRuns, prefillRuns, timeInterleaved } from "../src/eval/latency.ts";
import { cutWindows, perplexity } from "../src/eval/perplexity.ts";
import { Runner } from "../src/eval/runner.ts";
import { readClassificationFile, readTextFile } from "../src/io/datasets.ts";
import { loadTokenizer } from "../src/io/tokenizer.ts";
import { runPrune } from "../src/pipeline/prune.ts";
import { resolveRecipe } from "../src/pipeline/recipe.ts";
import { QUANT_DEFAULTS } from "../src/quant/settings.ts";
import { Session } from "../src/runtime/ort.ts";
import {
  againstDense,
  machineInfo,
  markdownTable,
  median,
  REPO_ROOT,
  sst2TrainSentences,
  writeResults,
} from "./lib.ts";

const SHARED = path.resolve(REPO_ROOT, "../shared");
const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
};
const windowsArg = arg("windows", "200");
const allWindows = windowsArg === "all";
const windows = allWindows ? 200 : Number(windowsArg);
const klWindows = Number(arg("kl-windows", "32"));
const onlyRows = arg("rows", "")
  .split(",")
  .map((s) => s.trim())
  .filter(Boolean);
const write = !process.argv.includes("--no-write");
const resultsName = arg("name", "quant");
const speedRuns = Number(arg("speed-runs", "15"));
/**
 * One thread for ORT and llama.cpp: on this shared, loaded 2-core machine two spinning threads per session
 * measured mostly the other processes (llama.cpp generation 5 tok/s with 2 threads, 740 with 1).
 */
const THREADS = 1;
const want = (key: string) => onlyRows.length === 0 || onlyRows.includes(key);

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
/** the prune recipe of the recorded results (the default before 2026-12-02), pinned so that they reproduce */
const RECORDED = { criterion: "flap-wifv", ridge: 0.01 } as const;

/** GPTQ's column order for the calls inside f (quantize and the prune read QUANT_DEFAULTS.actOrder). */
async function withActOrder<T>(v: boolean | undefined, f: () => Promise<T>): Promise<T> {
  if (v === undefined) return f();
  const before = QUANT_DEFAULTS.actOrder;
  QUANT_DEFAULTS.actOrder = v;
  try {
    return await f();
  } finally {
    QUANT_DEFAULTS.actOrder = before;
  }
}

async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const s = performance.now();
  const r = await f();
  return [r, (performance.now() - s) / 1000];
}

function weightBytes(dir: string): number {
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith(".safetensors"))
    .reduce((s, f) => s + fs.statSync(path.join(dir, f)).size, 0);
}

// ---------------------------------------------------------------------------------------------------------------
// llama-gqa-6l

interface Row {
  key: string;
  setting: string;
  bytes: number;
  seconds: number;
  /** perplexity on the first 200 windows (or --windows N) */
  ppl: number;
  /** perplexity on every window of the test set (--windows all) */
  pplAll?: number;
  kl: number;
  top1: number;
  quantized: boolean;
  /** ORT tokens/s: prefill, generation */
  ortPrefill?: number;
  ortGen?: number;
}

interface Spec {
  key: string;
  setting: string;
  quantized: boolean;
  make: () => Promise<{ dir: string; seconds: number }>;
}

const dirOf = (key: string) => path.join(work, key);
const made = new Map<string, { dir: string; seconds: number }>();
async function ensure(spec: Spec): Promise<{ dir: string; seconds: number }> {
  let r = made.get(spec.key);
  if (!r) {
    log(`» ${spec.setting}`);
    r = await spec.make();
    made.set(spec.key, r);
  }
  return r;
}

const prune =
  (key: string, ratio: number, extra: Record<string, unknown> = {}, actOrder?: boolean) =>
  async () => {
    const out = dirOf(key);
    const [, s] = await timed(() =>
      withActOrder(actOrder, () =>
        runPrune(resolveRecipe({ model: dense, out, ratio, roundTo: G, ...RECORDED, ...CAL, ...extra })),
      ),
    );
    return { dir: out, seconds: s };
  };
const quant =
  (key: string, model: () => Promise<string>, method: "gptq" | "rtn", actOrder?: boolean) => async () => {
    const out = dirOf(key);
    const m = await model();
    const [, s] = await timed(() =>
      withActOrder(actOrder, () => quantize({ model: m, out, groupSize: G, method, ...CAL })),
    );
    return { dir: out, seconds: s };
  };

const specs: Spec[] = [];
const p3: Spec = { key: "p3", setting: "pruned 0.3 (float)", quantized: false, make: prune("p3", 0.3) };
specs.push(
  {
    key: "dense",
    setting: "dense (float, as stored)",
    quantized: false,
    make: async () => ({ dir: dense, seconds: 0 }),
  },
  {
    key: "dense-rtn",
    setting: "dense q4 RTN",
    quantized: true,
    make: quant("dense-rtn", async () => dense, "rtn"),
  },
  {
    key: "dense-gptq-natural",
    setting: "dense q4 GPTQ, natural order",
    quantized: true,
    make: quant("dense-gptq-natural", async () => dense, "gptq", false),
  },
  {
    key: "dense-gptq-act",
    setting: "dense q4 GPTQ, act-order",
    quantized: true,
    make: quant("dense-gptq-act", async () => dense, "gptq", true),
  },
  p3,
  {
    key: "p3-rtn",
    setting: "pruned 0.3 + q4 RTN, one pass",
    quantized: true,
    make: prune("p3-rtn", 0.3, { quantize: 4, groupSize: G, quantMethod: "rtn" }),
  },
  {
    key: "p3-gptq-natural",
    setting: "pruned 0.3 + q4 GPTQ natural order, one pass",
    quantized: true,
    make: prune("p3-gptq-natural", 0.3, { quantize: 4, groupSize: G }, false),
  },
  {
    key: "p3-gptq-act",
    setting: "pruned 0.3 + q4 GPTQ act-order, one pass",
    quantized: true,
    make: prune("p3-gptq-act", 0.3, { quantize: 4, groupSize: G }, true),
  },
  {
    key: "p3-then-gptq",
    setting: "pruned 0.3, then q4 GPTQ act-order separately",
    quantized: true,
    make: quant("p3-then-gptq", async () => (await ensure(p3)).dir, "gptq", true),
  },
  {
    key: "p5-gptq",
    setting: "pruned 0.5 + q4 GPTQ act-order, one pass",
    quantized: true,
    make: prune("p5-gptq", 0.5, { quantize: 4, groupSize: G }, true),
  },
);

const rows: Row[] = [];
/** per-window NLL sums (nats) of each measured llama row, in window order */
const windowNll = new Map<string, number[]>();
let pplTokensPerWindow = 0;
let pplWindowsAll = 0;

const llamaKeys = specs.map((s) => s.key).filter(want);
if (llamaKeys.length) {
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
  /** perplexity (pare's protocol, src/eval/perplexity.ts) with each window's NLL sum kept */
  const ppl = async (
    m: Model,
    maxWindows: number | undefined,
  ): Promise<{ ppl: number; perWindow: number[] }> => {
    const r = await Runner.create(m);
    const perWindow: number[] = [];
    try {
      const p = await perplexity(
        {
          windowNll: async (w) => {
            const nll = await r.windowNll(w);
            for (const x of nll) perWindow.push(x.reduce((a, b) => a + b, 0));
            pplTokensPerWindow = nll[0].length;
            return nll;
          },
        },
        ids,
        { seqLen: 256, maxWindows },
      );
      return { ppl: p.ppl, perWindow };
    } finally {
      await r.close();
    }
  };
  for (const spec of specs) {
    if (!want(spec.key)) continue;
    const { dir, seconds } = await ensure(spec);
    const m = loadModel(dir);
    try {
      const p = await ppl(m, allWindows ? undefined : windows);
      pplWindowsAll = p.perWindow.length;
      const first = p.perWindow.slice(0, windows);
      const pplFirst = Math.exp(first.reduce((a, b) => a + b, 0) / (first.length * pplTokensPerWindow));
      // KL and top-1 (againstDense's perplexity on one window only: the perplexity is above)
      const q = await againstDense(m, ids, 1, klWin, refLogp);
      windowNll.set(spec.key, p.perWindow);
      const row: Row = {
        key: spec.key,
        setting: spec.setting,
        bytes: weightBytes(dir),
        seconds,
        ppl: allWindows ? pplFirst : p.ppl,
        pplAll: allWindows ? p.ppl : undefined,
        kl: q.kl,
        top1: q.top1,
        quantized: spec.quantized,
      };
      rows.push(row);
      log(
        `${spec.setting}: ${(row.bytes / 2 ** 20).toFixed(2)} MiB, ppl ${row.ppl.toFixed(2)}${row.pplAll ? ` (all ${pplWindowsAll} windows: ${row.pplAll.toFixed(2)})` : ""}, kl ${q.kl.toFixed(4)}, top-1 ${(100 * q.top1).toFixed(1)}% (${seconds.toFixed(1)} s)`,
      );
    } finally {
      m.close();
    }
  }
}

/** ln PPL(a) − ln PPL(b) over the first n windows, with its standard error over windows (paired). */
function pairedLogPpl(a: string, b: string, n?: number): { diff: number; se: number; n: number } | undefined {
  const A = windowNll.get(a);
  const B = windowNll.get(b);
  if (!A || !B) return undefined;
  const k = Math.min(A.length, B.length, n ?? Number.POSITIVE_INFINITY);
  const d = Array.from({ length: k }, (_, w) => (A[w] - B[w]) / pplTokensPerWindow);
  const mean = d.reduce((s, x) => s + x, 0) / k;
  const v = d.reduce((s, x) => s + (x - mean) ** 2, 0) / (k - 1);
  return { diff: mean, se: Math.sqrt(v / k), n: k };
}

// ---------------------------------------------------------------------------------------------------------------
// speed: ORT (model.onnx / model_q4.onnx) and llama.cpp (GGUF)

interface OrtSpeed {
  key: string;
  file: string;
  prefillTokS: number;
  genTokS: number;
}

/**
 * The exported ONNX files timed as `pare bench` times its graphs (src/eval/latency.ts, whose feeds this mirrors
 * for files: the same prefill and generation runs, on the exported graphs), interleaved, medians.
 */
async function ortSpeed(
  cases: { key: string; file: string; model: Model }[],
  runs = 15,
): Promise<OrtSpeed[]> {
  const { batch: B, seqLen: T, promptLen: P, genTokens: Gn } = DEFAULT_WORKLOAD;
  const sessions: Session[] = [];
  for (const c of cases) sessions.push(await Session.create(c.file, { threads: THREADS }));
  const models = cases.map((c) => c.model);
  // the feeds and the timing of `pare bench` (src/eval/latency.ts), on the exported files
  const ps = await timeInterleaved(prefillRuns(sessions, models, B, T), runs);
  const gs = await timeInterleaved(generationRuns(sessions, models, P, Gn), runs);
  for (const s of sessions) await s.release();
  return cases.map((c, i) => ({
    key: c.key,
    file: c.file,
    prefillTokS: (B * T) / ps[i],
    genTokS: Gn / gs[i],
  }));
}

interface GgufSpeed {
  setting: string;
  outtype: string;
  bytes: number;
  ppTokS: number;
  tgTokS: number;
}

/** llama.cpp prompt processing (256 tokens) and generation (64 tokens) as bench:gguf times them, interleaved. */
async function ggufSpeed(
  cases: { setting: string; outtype: string; file: string }[],
  runs = 15,
): Promise<GgufSpeed[]> {
  const llama = await getLlama({
    gpu: false,
    build: "never",
    logLevel: LlamaLogLevel.error,
    progressLogs: false,
  });
  const tok = loadTokenizer(dense);
  const text = fs.readFileSync(path.join(REPO_ROOT, "examples/data/eval-wikitext2-valid.txt"), "utf8");
  const ids = tok.encode(text) as Token[];
  const pp = ids.slice(0, 256);
  const prompt = ids.slice(0, 16);
  const loaded = [];
  for (const c of cases) {
    const model = await llama.loadModel({ modelPath: c.file });
    const ctx = await model.createContext({
      contextSize: 512,
      batchSize: 512,
      sequences: 1,
      threads: { ideal: THREADS, min: THREADS },
    });
    loaded.push({ c, model, ctx, seq: ctx.getSequence(), pp: [] as number[], tg: [] as number[] });
  }
  for (let r = -1; r < runs; r++) {
    for (const l of loaded) {
      const a = performance.now();
      await l.seq.clearHistory();
      await l.seq.evaluateWithoutGeneratingNewTokens(pp);
      const b = performance.now();
      await l.seq.clearHistory();
      await l.seq.evaluateWithoutGeneratingNewTokens(prompt.slice(0, -1));
      let n = 0;
      for await (const _ of l.seq.evaluate(prompt.slice(-1), { temperature: 0, yieldEogToken: true }))
        if (++n >= 64) break;
      const e = performance.now();
      if (r >= 0) {
        l.pp.push((b - a) / 1000);
        l.tg.push((e - b) / 1000);
      }
    }
  }
  const out = loaded.map((l) => ({
    setting: l.c.setting,
    outtype: l.c.outtype,
    bytes: fs.statSync(l.c.file).size,
    ppTokS: pp.length / median(l.pp),
    tgTokS: 64 / median(l.tg),
  }));
  for (const l of loaded) {
    await l.ctx.dispose();
    await l.model.dispose();
  }
  await llama.dispose();
  return out;
}

let ort: OrtSpeed[] = [];
let gguf: GgufSpeed[] = [];
if (want("speed") && rows.length) {
  log("» speed: ONNX exports (model.onnx / model_q4.onnx), ORT CPU");
  const cases: { key: string; file: string; model: Model }[] = [];
  const models: LoadedModel[] = [];
  for (const r of rows) {
    const out = path.join(work, `onnx-${r.key}`);
    exportModel(made.get(r.key)!.dir, { format: "onnx", out, force: true });
    const file = path.join(out, "onnx", r.quantized ? "model_q4.onnx" : "model.onnx");
    if (!fs.existsSync(file)) throw new Error(`${file} was not written`);
    const m = loadModel(made.get(r.key)!.dir);
    models.push(m);
    cases.push({ key: r.key, file, model: m });
  }
  ort = await ortSpeed(cases, speedRuns);
  for (const m of models) m.close();
  for (const s of ort) {
    const r = rows.find((x) => x.key === s.key)!;
    r.ortPrefill = s.prefillTokS;
    r.ortGen = s.genTokS;
    log(
      `  ORT ${r.setting}: prefill ${s.prefillTokS.toFixed(0)} tok/s, generation ${s.genTokS.toFixed(1)} tok/s`,
    );
  }
  log("» speed: GGUF exports, llama.cpp CPU");
  const gcases: { setting: string; outtype: string; file: string }[] = [];
  for (const outtype of ["f32", "f16"] as const) {
    const file = path.join(work, `dense.${outtype}.gguf`);
    exportModel(dense, { format: "gguf", out: file, outtype, force: true });
    gcases.push({ setting: "dense (float)", outtype, file });
  }
  for (const r of rows.filter((x) => x.quantized && x.key.includes("gptq"))) {
    const file = path.join(work, `${r.key}.q4_0.gguf`);
    exportModel(made.get(r.key)!.dir, { format: "gguf", out: file, outtype: "q4_0", force: true });
    gcases.push({ setting: r.setting, outtype: "q4_0", file });
  }
  gguf = await ggufSpeed(gcases, speedRuns);
  for (const g of gguf)
    log(
      `  llama.cpp ${g.setting} ${g.outtype}: pp ${g.ppTokS.toFixed(0)} tok/s, tg ${g.tgTokS.toFixed(0)} tok/s`,
    );
}

// ---------------------------------------------------------------------------------------------------------------
// bert-sst2-4l

interface BertRow {
  key: string;
  setting: string;
  bytes: number;
  seconds: number;
  kl: number;
  agree: number;
  accuracy: number;
}
const bertRows: BertRow[] = [];
const bertKeys = ["bert-dense", "bert-rtn", "bert-gptq", "bert-p3", "bert-p3-rtn", "bert-p3-gptq"].filter(
  want,
);
let bertN = 0;
if (bertKeys.length && fs.existsSync(path.join(SHARED, "models/bert-sst2-4l"))) {
  const bdir = path.join(SHARED, "models/bert-sst2-4l");
  const bcal = path.join(work, "sst2-train-sentences.txt");
  fs.writeFileSync(bcal, sst2TrainSentences(SHARED));
  const BCAL = { calib: [bcal], samples: 128, seqLen: 128, seed: 0 };
  const dev = readClassificationFile(path.join(SHARED, "data/sst2/stsa.binary.dev"));
  bertN = dev.length;
  const tok = loadTokenizer(bdir);
  const enc = dev.map((d) => ({ ids: tok.encode(d.text) }));
  const probs = async (dir: string): Promise<number[][]> => {
    const m = loadModel(dir);
    const r = await Runner.create(m);
    const out: number[][] = [];
    try {
      for (let i = 0; i < enc.length; i += 32) {
        for (const z of await r.classify(enc.slice(i, i + 32), tok.padId ?? 0)) {
          const mx = Math.max(...z);
          const e = Array.from(z, (v) => Math.exp(v - mx));
          const sum = e.reduce((a, b) => a + b, 0);
          out.push(e.map((v) => v / sum));
        }
      }
    } finally {
      await r.close();
      m.close();
    }
    return out;
  };
  const argmax = (z: number[]) => z.reduce((b, v, i, a) => (v > a[b] ? i : b), 0);
  const dp = await probs(bdir);
  const bprune =
    (key: string, extra: Record<string, unknown> = {}) =>
    async () => {
      const out = dirOf(key);
      const [, s] = await timed(() =>
        runPrune(resolveRecipe({ model: bdir, out, ratio: 0.3, roundTo: G, ...RECORDED, ...BCAL, ...extra })),
      );
      return { dir: out, seconds: s };
    };
  const bquant = (key: string, method: "gptq" | "rtn") => async () => {
    const out = dirOf(key);
    const [, s] = await timed(() => quantize({ model: bdir, out, groupSize: G, method, ...BCAL }));
    return { dir: out, seconds: s };
  };
  const bspecs: Spec[] = [
    {
      key: "bert-dense",
      setting: "dense (float, as stored)",
      quantized: false,
      make: async () => ({ dir: bdir, seconds: 0 }),
    },
    { key: "bert-rtn", setting: "dense q4 RTN", quantized: true, make: bquant("bert-rtn", "rtn") },
    { key: "bert-gptq", setting: "dense q4 GPTQ", quantized: true, make: bquant("bert-gptq", "gptq") },
    { key: "bert-p3", setting: "pruned 0.3 (float)", quantized: false, make: bprune("bert-p3") },
    {
      key: "bert-p3-rtn",
      setting: "pruned 0.3 + q4 RTN, one pass",
      quantized: true,
      make: bprune("bert-p3-rtn", { quantize: 4, groupSize: G, quantMethod: "rtn" }),
    },
    {
      key: "bert-p3-gptq",
      setting: "pruned 0.3 + q4 GPTQ, one pass",
      quantized: true,
      make: bprune("bert-p3-gptq", { quantize: 4, groupSize: G }),
    },
  ];
  for (const spec of bspecs) {
    if (!bertKeys.includes(spec.key)) continue;
    const { dir, seconds } = await ensure(spec);
    const p = await probs(dir);
    let kl = 0;
    let agree = 0;
    let correct = 0;
    p.forEach((q, i) => {
      kl += dp[i].reduce((s, pd, c) => s + (pd > 0 ? pd * Math.log(pd / Math.max(q[c], 1e-30)) : 0), 0);
      if (argmax(q) === argmax(dp[i])) agree++;
      if (argmax(q) === dev[i].label) correct++;
    });
    const row = {
      key: spec.key,
      setting: spec.setting,
      bytes: weightBytes(dir),
      seconds,
      kl: kl / p.length,
      agree: agree / p.length,
      accuracy: correct / p.length,
    };
    bertRows.push(row);
    log(
      `bert ${spec.setting}: ${(row.bytes / 2 ** 20).toFixed(2)} MiB, KL ${row.kl.toFixed(5)}, agreement ${(100 * row.agree).toFixed(2)}%, accuracy ${(100 * row.accuracy).toFixed(2)}% (${seconds.toFixed(1)} s)`,
    );
  }
}
fs.rmSync(work, { recursive: true, force: true });

// ---------------------------------------------------------------------------------------------------------------
// results

const pct = (x: number, d = 1) => `${(100 * x).toFixed(d)}%`;
const cmd = `npm run bench:quant${process.argv.slice(2).length ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`;
let md = `# bench:quant\n\nCommand: \`${cmd}\`  \n`;
md += `Machine: ${machineInfo().cpu}, ${os.cpus().length} cores, load average ${os
  .loadavg()
  .map((x) => x.toFixed(1))
  .join(
    " ",
  )} at the end; ${new Date().toISOString()}; wall time ${((Date.now() - t0) / 60000).toFixed(1)} min.\n\n`;
const ortDense = rows.find((r) => r.key === "dense");
if (rows.length) {
  md += `## llama-gqa-6l\n\nWikiText-2 test perplexity (L = 256, first ${windows} windows${allWindows ? `; "PPL all": all ${pplWindowsAll} windows` : ""}), KL(dense‖model) and top-1 agreement on ${klWindows} windows; calibration WikiText-2 validation, 128 × 256 tokens (seed 0). q4: 4 bits, group ${G}, symmetric. Prunes: flap-wifv · global · liar, FFN widths a multiple of ${G}. Size: the weights on disk (embeddings, norms and the LM head stay in the input's float precision). Seconds: the prune / quantization run (this machine is shared: compare within a run only).${ort.length ? ` ORT: CPU tokens/s of onnx/model.onnx (float rows) or onnx/model_q4.onnx (MatMulNBits, quantized rows), prefill ${DEFAULT_WORKLOAD.batch} × ${DEFAULT_WORKLOAD.seqLen} and generation of ${DEFAULT_WORKLOAD.genTokens} tokens (batch 1, KV cache), ${THREADS} thread, timed interleaved in one run (medians of ${speedRuns}); ×: the ratio to the dense float32 model.onnx.` : ""}\n\n`;
  const header = [
    "setting",
    "weights MiB",
    "× dense",
    "PPL",
    ...(allWindows ? ["PPL all"] : []),
    "KL",
    "top-1",
  ];
  if (ort.length) header.push("ORT prefill tok/s", "×", "ORT gen tok/s", "×");
  header.push("s");
  md += markdownTable(
    header,
    rows.map((r) => [
      r.setting,
      (r.bytes / 2 ** 20).toFixed(2),
      (r.bytes / (ortDense ?? rows[0]).bytes).toFixed(3),
      r.ppl.toFixed(2),
      ...(allWindows ? [r.pplAll?.toFixed(2) ?? "—"] : []),
      r.kl.toFixed(4),
      pct(r.top1),
      ...(ort.length && r.ortPrefill && r.ortGen && ortDense?.ortPrefill && ortDense.ortGen
        ? [
            r.ortPrefill.toFixed(0),
            (r.ortPrefill / ortDense.ortPrefill).toFixed(2),
            r.ortGen.toFixed(1),
            (r.ortGen / ortDense.ortGen).toFixed(2),
          ]
        : ort.length
          ? ["—", "—", "—", "—"]
          : []),
      r.seconds.toFixed(1),
    ]),
    header.map((_, i) => i > 0),
  );
  md += "\n";
  const pairs: [string, string][] = [
    ["dense-gptq-natural", "dense-rtn"],
    ["dense-gptq-act", "dense-rtn"],
    ["dense-gptq-act", "dense-gptq-natural"],
    ["p3-gptq-natural", "p3-rtn"],
    ["p3-gptq-act", "p3-rtn"],
    ["p3-gptq-act", "p3-gptq-natural"],
    ["p3-gptq-act", "p3-then-gptq"],
    ["dense-rtn", "dense"],
    ["dense-gptq-act", "dense"],
  ];
  const cmp = pairs.flatMap(([a, b]) => {
    const sets = [pairedLogPpl(a, b, windows), ...(allWindows ? [pairedLogPpl(a, b)] : [])];
    if (!sets[0]) return [];
    const name = (k: string) => rows.find((r) => r.key === k)!.setting;
    return [
      [
        `${name(a)} vs ${name(b)}`,
        ...sets.flatMap((c) => [
          `${(100 * (Math.exp(c!.diff) - 1)).toFixed(3)}%`,
          `± ${(200 * c!.se).toFixed(3)}%`,
          (c!.diff / c!.se).toFixed(1),
        ]),
      ],
    ];
  });
  if (cmp.length) {
    md += `\nPerplexity differences, paired over windows: PPL(a)/PPL(b) − 1 and ± 2 standard errors of the mean per-window difference of log-perplexity (z = difference / standard error), on the first ${windows} windows${allWindows ? ` and on all ${pplWindowsAll}` : ""}.\n\n`;
    const h = ["a vs b", `Δ PPL (${windows})`, "± 2 SE", "z"];
    if (allWindows) h.push(`Δ PPL (${pplWindowsAll})`, "± 2 SE", "z");
    md += `${markdownTable(
      h,
      cmp,
      h.map((_, i) => i > 0),
    )}\n`;
  }
}
if (gguf.length) {
  const f32Row = gguf.find((g) => g.outtype === "f32");
  md += `\n## llama.cpp speed (node-llama-cpp, CPU, ${THREADS} thread)\n\nThe dense model exported as F32 and F16 GGUF, the GPTQ folders as Q4_0 GGUF (their symmetric group-${G} integers kept exactly); pp: 256 prompt tokens in one batch, tg: 64 generated tokens (greedy), tokens/s, medians of ${speedRuns} runs interleaved; ×: the ratio to dense F32 of the same run. The Q4_0 file also stores the embeddings in Q4_0 and the output matrix in Q8_0 (as bench:gguf).\n\n`;
  md += `${markdownTable(
    ["model", "type", "file MiB", "pp tok/s", "×", "tg tok/s", "×"],
    gguf.map((g) => [
      g.setting,
      g.outtype.toUpperCase(),
      (g.bytes / 2 ** 20).toFixed(2),
      g.ppTokS.toFixed(0),
      f32Row ? (g.ppTokS / f32Row.ppTokS).toFixed(2) : "—",
      g.tgTokS.toFixed(0),
      f32Row ? (g.tgTokS / f32Row.tgTokS).toFixed(2) : "—",
    ]),
    [false, false, true, true, true, true, true],
  )}\n`;
}
if (bertRows.length) {
  const bd = bertRows.find((r) => r.key === "bert-dense") ?? bertRows[0];
  md += `\n## bert-sst2-4l\n\nSST-2 dev (${bertN} sentences): mean KL(dense‖model) of the class probabilities, agreement with the dense model's prediction, accuracy. Calibration: SST-2 training sentences, 128 × 128 tokens (seed 0); q4: 4 bits, group ${G}, symmetric (GPTQ column order: the default); prunes flap-wifv · global · liar with FFN widths a multiple of ${G}; the pooler and classifier stay float.\n\n`;
  md += `${markdownTable(
    ["setting", "weights MiB", "× dense", "KL", "agreement", "accuracy", "s"],
    bertRows.map((r) => [
      r.setting,
      (r.bytes / 2 ** 20).toFixed(2),
      (r.bytes / bd.bytes).toFixed(3),
      r.kl.toFixed(5),
      pct(r.agree, 2),
      pct(r.accuracy, 2),
      r.seconds.toFixed(1),
    ]),
    [false, true, true, true, true, true, true],
  )}\n`;
}
if (write)
  writeResults(
    resultsName,
    {
      machine: machineInfo(),
      args: process.argv.slice(2),
      windows,
      windowsAll: allWindows ? pplWindowsAll : undefined,
      klWindows,
      group: G,
      actOrderDefault: QUANT_DEFAULTS.actOrder,
      rows,
      ort,
      gguf,
      bert: bertRows,
    },
    md,
  );
process.stdout.write(md);
