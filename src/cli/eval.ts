import { loadModel } from "../arch/load.ts";
import { PareError } from "../errors.ts";
import { classify } from "../eval/classify.ts";
import { multipleChoice } from "../eval/multipleChoice.ts";
import { perplexity } from "../eval/perplexity.ts";
import { Runner } from "../eval/runner.ts";
import { readClassificationFile, readTextFile } from "../io/datasets.ts";
import { MC_FORMATS, type McFormat, readMultipleChoice } from "../io/mcData.ts";
import { loadTokenizer } from "../io/tokenizer.ts";
import type { Console } from "./io.ts";

export interface EvalFlags {
  task: string;
  data: string;
  seqLen: string;
  batchSize?: string;
  maxWindows?: string;
  threads?: string;
  textColumn?: string;
  labelColumn?: string;
  format?: string;
  maxItems?: string;
}

function int(v: string | undefined, name: string, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min)
    throw new PareError(
      "E_USAGE",
      `${name} must be an integer ≥ ${min} (got "${v}")`,
      `e.g. ${name} ${Math.max(min, 8)}`,
    );
  return n;
}

export async function evalCommand(dir: string, f: EvalFlags, con: Console): Promise<void> {
  const tasks = ["ppl", "classify", "mc"];
  if (!tasks.includes(f.task))
    throw new PareError("E_USAGE", `unknown task "${f.task}"`, `--task is one of: ${tasks.join(", ")}`);
  const threads = int(f.threads, "--threads", 1);
  const batchSize = int(f.batchSize, "--batch-size", 1);
  const m = loadModel(dir);
  try {
    if (!m.hasTokenizer) loadTokenizer(m.dir); // throws the coded "no tokenizer.json" error
    if (f.task === "mc") {
      const format = (f.format ?? "generic") as McFormat;
      if (!MC_FORMATS.includes(format))
        throw new PareError(
          "E_USAGE",
          `unknown --format "${f.format}"`,
          `use one of: ${MC_FORMATS.join(", ")}`,
        );
      if (m.spec.kind !== "decoder")
        throw new PareError(
          "E_USAGE",
          "--task mc needs a decoder (causal LM)",
          "use --task classify for encoders",
        );
      const items = readMultipleChoice(f.data, format);
      const tok = loadTokenizer(m.dir);
      const runner = await Runner.create(m, { threads });
      const r = await multipleChoice(runner, tok, items, {
        batchSize,
        maxItems: int(f.maxItems, "--max-items", 1),
        onProgress: (d, t) => con.progress("multiple choice", d, t),
      });
      await runner.close();
      con.result({ task: "mc", format, model: m.dir, data: f.data, ...r, acc_norm: r.accNorm }, () =>
        [
          `acc ${(100 * r.acc).toFixed(2)}%   acc_norm ${(100 * r.accNorm).toFixed(2)}%   (${r.n} items)`,
          `  protocol: ${r.protocol}`,
          `  data: ${f.data} (${format})`,
        ].join("\n"),
      );
    } else if (f.task === "ppl") {
      if (m.spec.kind !== "decoder")
        throw new PareError(
          "E_USAGE",
          `--task ppl needs a decoder (causal LM); ${m.spec.family} is an encoder`,
          "use --task classify for encoders",
        );
      const seqLen = int(f.seqLen, "--seq-len", 2)!;
      const maxWindows = int(f.maxWindows, "--max-windows", 1);
      const text = readTextFile(f.data);
      const tok = loadTokenizer(m.dir);
      con.info(`tokenizing ${f.data} …`);
      const ids = tok.encode(text);
      const runner = await Runner.create(m, { threads });
      const r = await perplexity(runner, ids, {
        seqLen,
        batchSize,
        maxWindows,
        onProgress: (d, t) => con.progress("perplexity", d, t),
      });
      await runner.close();
      con.result({ task: "ppl", model: m.dir, data: f.data, ...r }, () =>
        [
          `perplexity ${r.ppl.toFixed(3)}  (mean NLL ${r.nll.toFixed(5)})`,
          `  protocol: ${r.protocol}`,
          `  data: ${f.data}`,
        ].join("\n"),
      );
    } else {
      if (m.dims.head !== "classifier")
        throw new PareError(
          "E_USAGE",
          "--task classify needs a sequence-classification model",
          "use a *ForSequenceClassification checkpoint",
        );
      const tok = loadTokenizer(m.dir);
      const label2id = m.config.label2id as Record<string, number> | undefined;
      const col = (v?: string) => (v === undefined ? undefined : /^\d+$/.test(v) ? Number(v) : v);
      const data = readClassificationFile(f.data, {
        textColumn: col(f.textColumn),
        labelColumn: col(f.labelColumn),
        labelMap: label2id,
      });
      const runner = await Runner.create(m, { threads });
      const r = await classify(runner, tok, data, {
        batchSize,
        onProgress: (d, t) => con.progress("classify", d, t),
      });
      await runner.close();
      const { predictions: _p, ...rest } = r;
      con.result({ task: "classify", model: m.dir, data: f.data, ...rest }, () =>
        [
          `accuracy ${(100 * r.accuracy).toFixed(2)}%  (${r.correct}/${r.n})   Matthews corr. ${r.mcc.toFixed(4)}`,
          `  protocol: ${r.protocol}`,
          `  data: ${f.data}`,
        ].join("\n"),
      );
    }
  } finally {
    m.close();
  }
}
