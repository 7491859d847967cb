/** `writeReport`: report.html for a pruned folder — kept units, scores, optional dense vs pruned metrics and speed. */
import fs from "node:fs";
import path from "node:path";
import { loadModel } from "../arch/load.ts";
import { PareError } from "../errors.ts";
import { classify } from "../eval/classify.ts";
import { benchSpeed } from "../eval/latency.ts";
import { perplexity } from "../eval/perplexity.ts";
import { Runner } from "../eval/runner.ts";
import { writeFileAtomically } from "../export/atomic.ts";
import { readClassificationFile, readTextFile } from "../io/datasets.ts";
import { readJsonObject } from "../io/modelFolder.ts";
import { loadTokenizer } from "../io/tokenizer.ts";
import type { PruneReport } from "../pipeline/prune.ts";
import { type ReportData, renderReport } from "../pipeline/report.ts";

export type { ReportData };

export interface ReportOptions {
  /** measure dense vs pruned on this file (perplexity for decoders, accuracy for classifiers) */
  data?: string;
  /** the dense model (default: the input recorded in pare-pruning.json) */
  dense?: string;
  /** perplexity window length (default 256) */
  seqLen?: number;
  maxWindows?: number;
  /** also measure latency, dense vs pruned */
  bench?: boolean;
  /** where to write the HTML (default: <pruned>/report.html) */
  out?: string;
  /** what the report tells along the way */
  onNote?: (message: string) => void;
}

/** Measure dense vs pruned (optional) and write report.html next to the pruned model (or --out). */
export async function writeReport(
  prunedDir: string,
  f: ReportOptions = {},
): Promise<{ file: string; data: ReportData }> {
  const note = (m: string) => f.onNote?.(m);
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
      let runner: Runner | undefined;
      try {
        const tok = loadTokenizer(m.dir);
        runner = await Runner.create(m);
        note(`measuring ${m.dir}`);
        if (m.spec.kind === "decoder") {
          const seqLen = f.seqLen ?? 256;
          const r = await perplexity(runner, tok.encode(readTextFile(f.data)), {
            seqLen,
            maxWindows: f.maxWindows,
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
      } finally {
        await runner?.close();
        m.close();
      }
    }
    metrics.push({ name, dense: vals[0], pruned: vals[1], protocol });
    data.metrics = metrics;
  }
  if (f.bench) {
    const models = [loadModel(denseDir!), loadModel(prunedDir)];
    try {
      data.speed = await benchSpeed(models, { runs: 5, onProgress: note });
    } finally {
      for (const m of models) m.close();
    }
  }
  const out = f.out ?? path.join(prunedDir, "report.html");
  writeFileAtomically(out, renderReport(data)); // lock, fsync, rename (export/atomic.ts)
  return { file: path.resolve(out), data };
}
