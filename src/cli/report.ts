import fs from "node:fs";
import path from "node:path";
import { loadModel } from "../arch/load.ts";
import { PareError } from "../errors.ts";
import { classify } from "../eval/classify.ts";
import { benchSpeed } from "../eval/latency.ts";
import { perplexity } from "../eval/perplexity.ts";
import { Runner } from "../eval/runner.ts";
import { readClassificationFile, readTextFile } from "../io/datasets.ts";
import { readJsonObject } from "../io/modelFolder.ts";
import { loadTokenizer } from "../io/tokenizer.ts";
import type { PruneReport } from "../pipeline/prune.ts";
import { type ReportData, renderReport } from "../pipeline/report.ts";
import type { Console } from "./io.ts";

export interface ReportFlags {
  data?: string;
  dense?: string;
  seqLen?: string;
  maxWindows?: string;
  bench?: boolean;
  out?: string;
}

/** Measure dense vs pruned (optional) and write report.html next to the pruned model (or --out). */
export async function buildReport(
  prunedDir: string,
  f: ReportFlags,
  con: Console,
): Promise<{ file: string; data: ReportData }> {
  const file = path.join(prunedDir, "pare-pruning.json");
  if (!fs.existsSync(file)) {
    throw new PareError(
      "E_FOLDER_INCOMPLETE",
      `${prunedDir} has no pare-pruning.json`,
      "pare report reads the folder written by pare prune",
    );
  }
  const pruning = readJsonObject(file, "E_DATA_INVALID") as unknown as PruneReport;
  const denseDir = f.dense ?? pruning.input?.dir;
  const data: ReportData = { pruning };
  const needDense = f.data || f.bench;
  if (needDense && (!denseDir || !fs.existsSync(denseDir))) {
    throw new PareError(
      "E_FOLDER_MISSING",
      `the dense model ${denseDir} is not available`,
      "pass --dense <folder> to compare against it",
    );
  }
  if (f.data) {
    const metrics: NonNullable<ReportData["metrics"]> = [];
    const vals: number[] = [];
    let protocol = "";
    let name = "";
    for (const dir of [denseDir!, prunedDir]) {
      const m = loadModel(dir);
      try {
        const tok = loadTokenizer(m.dir);
        const runner = await Runner.create(m);
        con.info(`» measuring ${m.dir}`);
        if (m.spec.kind === "decoder") {
          const seqLen = Number(f.seqLen ?? 256);
          const r = await perplexity(runner, tok.encode(readTextFile(f.data)), {
            seqLen,
            maxWindows: f.maxWindows ? Number(f.maxWindows) : undefined,
          });
          vals.push(r.ppl);
          protocol = r.protocol;
          name = `perplexity (${path.basename(f.data)}, L=${seqLen})`;
        } else {
          const r = await classify(
            runner,
            tok,
            readClassificationFile(f.data, {
              labelMap: m.config.label2id as Record<string, number> | undefined,
            }),
          );
          vals.push(r.accuracy);
          protocol = r.protocol;
          name = `accuracy (${path.basename(f.data)})`;
        }
        await runner.close();
      } finally {
        m.close();
      }
    }
    metrics.push({ name, dense: vals[0], pruned: vals[1], protocol });
    data.metrics = metrics;
  }
  if (f.bench) {
    const models = [loadModel(denseDir!), loadModel(prunedDir)];
    try {
      data.speed = await benchSpeed(models, { runs: 5, onProgress: (m) => con.info(`» ${m}`) });
    } finally {
      for (const m of models) m.close();
    }
  }
  const out = f.out ?? path.join(prunedDir, "report.html");
  const tmp = `${out}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, renderReport(data));
  fs.renameSync(tmp, out);
  return { file: path.resolve(out), data };
}

export async function reportCommand(prunedDir: string, f: ReportFlags, con: Console): Promise<void> {
  const { file, data } = await buildReport(prunedDir, f, con);
  con.result({ report: file, metrics: data.metrics, speed: data.speed }, () => `wrote ${file}`);
}
