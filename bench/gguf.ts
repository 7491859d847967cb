/**
 * `npm run bench:gguf`: what a llama.cpp user gets from pruning. The shared llama-gqa-6l decoder, dense and pruned by
 * pare (global and uniform allocation, 0.3 and 0.5), exported to GGUF (f16, q8_0 and q4_0) and run by llama.cpp on the CPU
 * (node-llama-cpp 3.21.1's prebuilt binary): prompt processing (256 tokens in one batch) and generation (64 tokens,
 * one at a time, greedy) in tokens/s, median of timed runs, with file sizes. Other agents share this machine's
 * cores: the load average before and after is recorded next to the numbers.
 *
 * Writes bench/results/gguf.json and bench/results/gguf.md and prints the table.
 */
import { execSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { getLlama, LlamaLogLevel, type Token } from "node-llama-cpp";
import { loadModel } from "../src/arch/load.ts";
import { countParams } from "../src/arch/params.ts";
import { exportGguf, type GgufOuttype } from "../src/export/gguf.ts";
import { loadTokenizer } from "../src/io/tokenizer.ts";
import { runPrune } from "../src/pipeline/prune.ts";
import { resolveRecipe } from "../src/pipeline/recipe.ts";
import { machineInfo, markdownTable, median, REPO_ROOT, writeResults } from "./lib.ts";

const SHARED = path.resolve(REPO_ROOT, "../shared");
const DENSE = path.join(SHARED, "models/llama-gqa-6l");
const THREADS = Number(process.env.GGUF_BENCH_THREADS ?? Math.min(2, os.cpus().length));
const PP_TOKENS = 256;
const TG_TOKENS = 64;
const RUNS = Number(process.env.GGUF_BENCH_RUNS ?? 5);

function load(): string {
  try {
    return execSync("uptime", { encoding: "utf8" }).trim();
  } catch {
    return os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(", ");
  }
}

async function main(): Promise<void> {
  if (!fs.existsSync(path.join(DENSE, "config.json"))) {
    console.error(`bench:gguf needs the shared decoder at ${DENSE}; nothing measured`);
    process.exit(1);
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "pare-bench-gguf-"));
  const loadBefore = load();
  try {
    const calib = path.join(REPO_ROOT, "examples/data/calib-wikitext2-valid.txt");
    const text = fs.readFileSync(path.join(REPO_ROOT, "examples/data/eval-wikitext2-valid.txt"), "utf8");
    const variants: { name: string; dir: string }[] = [{ name: "dense", dir: DENSE }];
    for (const allocation of ["global", "uniform"] as const) {
      for (const ratio of [0.3, 0.5]) {
        const out = path.join(tmp, `${allocation}-${ratio}`);
        console.error(`» pruning ${allocation} ${ratio}`);
        await runPrune(
          resolveRecipe({
            model: DENSE,
            out,
            calib: [calib],
            ratio,
            allocation,
            // the recorded results' criterion (the default before 2026-12-02)
            criterion: "flap-wifv",
            ridge: 0.01,
            samples: 32,
            seqLen: 128,
            threads: THREADS,
          }),
        );
        variants.push({ name: `${allocation} ${ratio}`, dir: out });
      }
    }

    const llama = await getLlama({
      gpu: false,
      build: "never",
      logLevel: LlamaLogLevel.error,
      progressLogs: false,
    });
    const tok = loadTokenizer(DENSE);
    const ids = tok.encode(text) as Token[];
    const pp = ids.slice(0, PP_TOKENS);
    const prompt = ids.slice(0, 16);
    // every file loaded at once; the timed runs interleave them (run r of each model, then run r + 1), so that
    // the other agents' load on these cores spreads over all models alike
    const cases: {
      name: string;
      outtype: GgufOuttype;
      arch: string;
      prunable: number;
      file: string;
      seq: Awaited<
        ReturnType<Awaited<ReturnType<typeof llama.loadModel>>["createContext"]>
      >["getSequence"] extends () => infer S
        ? S
        : never;
      pp: number[];
      tg: number[];
    }[] = [];
    const disposers: (() => Promise<void>)[] = [];
    for (const outtype of ["f16", "q8_0", "q4_0"] as GgufOuttype[]) {
      for (const v of variants) {
        const m = loadModel(v.dir);
        const file = path.join(tmp, `${v.name.replace(" ", "-")}.${outtype}.gguf`);
        let arch: string;
        let prunable: number;
        try {
          arch = exportGguf(m, file, { outtype, force: true }).arch;
          prunable = countParams(m).prunable;
        } finally {
          m.close();
        }
        const model = await llama.loadModel({ modelPath: file });
        const ctx = await model.createContext({
          contextSize: 512,
          batchSize: 512,
          sequences: 1,
          threads: { ideal: THREADS, min: THREADS },
        });
        disposers.push(async () => {
          await ctx.dispose();
          await model.dispose();
        });
        cases.push({ name: v.name, outtype, arch, prunable, file, seq: ctx.getSequence(), pp: [], tg: [] });
      }
    }
    const runPp = async (c: (typeof cases)[0]) => {
      await c.seq.clearHistory();
      await c.seq.evaluateWithoutGeneratingNewTokens(pp);
    };
    const runTg = async (c: (typeof cases)[0]) => {
      await c.seq.clearHistory();
      await c.seq.evaluateWithoutGeneratingNewTokens(prompt.slice(0, -1));
      let n = 0;
      for await (const _ of c.seq.evaluate(prompt.slice(-1), { temperature: 0, yieldEogToken: true })) {
        if (++n >= TG_TOKENS) break;
      }
    };
    for (let r = -1; r < RUNS; r++) {
      for (const c of cases) {
        const t0 = performance.now();
        await runPp(c);
        const t1 = performance.now();
        await runTg(c);
        const t2 = performance.now();
        if (r >= 0) {
          c.pp.push((t1 - t0) / 1000);
          c.tg.push((t2 - t1) / 1000);
        }
      }
      console.error(`  run ${r + 1}/${RUNS}${r < 0 ? " (warm-up)" : ""} done`);
    }
    for (const d of disposers) await d();
    const rows: Record<string, unknown>[] = cases.map((c) => {
      const row = {
        model: c.name,
        outtype: c.outtype,
        arch: c.arch,
        attnMlpParams: c.prunable,
        fileBytes: fs.statSync(c.file).size,
        ppTokensPerS: PP_TOKENS / median(c.pp),
        tgTokensPerS: TG_TOKENS / median(c.tg),
        ppSeconds: c.pp,
        tgSeconds: c.tg,
      };
      console.error(
        `  ${c.outtype} ${c.name.padEnd(12)} ${c.arch.padEnd(6)} ${(row.fileBytes / 2 ** 20).toFixed(2)} MiB  pp ${row.ppTokensPerS.toFixed(0)} tok/s  tg ${row.tgTokensPerS.toFixed(0)} tok/s`,
      );
      return row;
    });
    await llama.dispose();
    const loadAfter = load();
    const base = (outtype: string) =>
      rows.find((r) => r.model === "dense" && r.outtype === outtype) as Record<string, number>;
    const table = markdownTable(
      [
        "model",
        "type",
        "llama.cpp arch",
        "attn+MLP params",
        "file MiB",
        "pp tok/s",
        "pp ×",
        "tg tok/s",
        "tg ×",
      ],
      rows.map((r) => {
        const b = base(r.outtype as string);
        return [
          r.model as string,
          r.outtype as string,
          r.arch as string,
          (r.attnMlpParams as number).toLocaleString("en-US"),
          ((r.fileBytes as number) / 2 ** 20).toFixed(2),
          (r.ppTokensPerS as number).toFixed(0),
          ((r.ppTokensPerS as number) / b.ppTokensPerS).toFixed(2),
          (r.tgTokensPerS as number).toFixed(0),
          ((r.tgTokensPerS as number) / b.tgTokensPerS).toFixed(2),
        ];
      }),
      [false, false, false, true, true, true, true, true, true],
    );
    const md = [
      "# llama.cpp CPU speed of pare's GGUF exports (`npm run bench:gguf`)",
      "",
      `Shared llama-gqa-6l (6 layers, hidden 256, 8 q / 4 kv heads, FFN 704, vocab 4096), dense and pruned by pare ` +
        `(flap-wifv + liar, 32 × 128-token calibration windows), exported with \`pare export --format gguf\`, run by ` +
        `llama.cpp (node-llama-cpp 3.21.1, CPU, ${THREADS} threads, f16 KV cache). pp: ${PP_TOKENS} prompt tokens in one ` +
        `batch; tg: ${TG_TOKENS} greedy tokens one at a time; median of ${RUNS} runs after a warm-up, the models interleaved run by run. × = relative to ` +
        "the dense model of the same type. q4_0: llama.cpp's round-to-nearest Q4_0 for the attention and MLP " +
        "matrices and the embeddings; the output matrix (lm_head) in Q8_0 where llama-quantize would write Q6_K.",
      "",
      table,
      "",
      `Machine load (other agents share these cores): before \`${loadBefore}\`, after \`${loadAfter}\`.`,
      "",
    ].join("\n");
    const json = {
      machine: machineInfo(),
      threads: THREADS,
      ppTokens: PP_TOKENS,
      tgTokens: TG_TOKENS,
      runs: RUNS,
      loadBefore,
      loadAfter,
      rows,
    };
    const written = writeResults("gguf", json, md);
    console.log(table);
    console.error(`wrote ${written.json} and ${written.md}`);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
