import { loadModel } from "../arch/load.ts";
import { PareError } from "../errors.ts";
import { classify } from "../eval/classify.ts";
import { multipleChoice } from "../eval/multipleChoice.ts";
import { documentPerplexity, perplexity, rollingPerplexity } from "../eval/perplexity.ts";
import { Runner } from "../eval/runner.ts";
import {
  isJsonl,
  readClassificationFile,
  readDocuments,
  readTextFile,
  unescapeSeparator,
} from "../io/datasets.ts";
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
  /** ppl: windows (default) | rolling */
  protocol?: string;
  /** ppl: split a text file into documents at this string (escapes \n \r \t \\) */
  docSeparator?: string;
  /** ppl over documents: only the first n documents */
  maxDocs?: string;
}

const PROTOCOLS = ["windows", "rolling"];

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
  const protocol = f.protocol ?? "windows";
  if (f.task !== "ppl") {
    const flag = [
      ["--protocol", f.protocol],
      ["--doc-separator", f.docSeparator],
      ["--max-docs", f.maxDocs],
    ].find(([, v]) => v !== undefined)?.[0];
    if (flag) throw new PareError("E_USAGE", `${flag} applies to --task ppl only`, `drop ${flag}`);
  } else if (!PROTOCOLS.includes(protocol)) {
    throw new PareError(
      "E_USAGE",
      `unknown --protocol "${protocol}"`,
      "--protocol is windows (non-overlapping windows; over documents for .jsonl or --doc-separator) or " +
        "rolling (lm-evaluation-harness' per-document rolling log-likelihood)",
    );
  }
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
      const documents = protocol === "rolling" || isJsonl(f.data) || f.docSeparator !== undefined;
      if (documents) {
        await documentsPpl(m, f, protocol, { threads, batchSize }, con);
        return;
      }
      if (f.maxDocs !== undefined)
        throw new PareError(
          "E_USAGE",
          "--max-docs needs documents",
          "give a .jsonl file, --doc-separator or --protocol rolling",
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

/** --task ppl over documents: windows over BOS-separated documents, or lm-eval's rolling protocol. */
async function documentsPpl(
  m: ReturnType<typeof loadModel>,
  f: EvalFlags,
  protocol: string,
  run: { threads?: number; batchSize?: number },
  con: Console,
): Promise<void> {
  const rolling = protocol === "rolling";
  const seqLen = int(f.seqLen, "--seq-len", rolling ? 1 : 2)!;
  const maxDocs = int(f.maxDocs, "--max-docs", 1);
  if (rolling && f.maxWindows !== undefined)
    throw new PareError(
      "E_USAGE",
      "--max-windows does not apply to --protocol rolling (documents are scored whole)",
      "use --max-docs n to evaluate only the first n documents",
    );
  const maxWindows = int(f.maxWindows, "--max-windows", 1);
  const separator = f.docSeparator === undefined ? undefined : unescapeSeparator(f.docSeparator);
  const { docs, empty, source } = readDocuments(f.data, { separator });
  const tok = loadTokenizer(m.dir);
  if (empty > 0) con.info(`skipping ${empty} empty document${empty === 1 ? "" : "s"} of ${f.data}`);
  con.info(`tokenizing ${docs.length} document${docs.length === 1 ? "" : "s"} of ${f.data} …`);
  const runner = await Runner.create(m, { threads: run.threads });
  try {
    const common = { seqLen, batchSize: run.batchSize, maxDocs, emptySkipped: empty };
    const from =
      source === "jsonl"
        ? "one per line"
        : source === "separator"
          ? `split at ${JSON.stringify(separator)}`
          : "the whole file";
    const dataLine = `  data: ${f.data} (documents: ${from})`;
    if (rolling) {
      const r = await rollingPerplexity(runner, tok, docs, {
        ...common,
        onProgress: (d, t) => con.progress("perplexity (rolling)", d, t),
      });
      con.result({ task: "ppl", model: m.dir, data: f.data, ...r }, () =>
        [
          `perplexity ${r.ppl.toFixed(3)} per token  (mean NLL ${r.nll.toFixed(5)})`,
          `  word perplexity ${r.wordPerplexity.toFixed(3)}   byte perplexity ${r.bytePerplexity.toFixed(4)}   bits per byte ${r.bitsPerByte.toFixed(4)}`,
          `  protocol: ${r.protocol}`,
          dataLine,
        ].join("\n"),
      );
    } else {
      const r = await documentPerplexity(runner, tok, docs, {
        ...common,
        maxWindows,
        onProgress: (d, t) => con.progress("perplexity", d, t),
      });
      con.result({ task: "ppl", model: m.dir, data: f.data, ...r }, () =>
        [
          `perplexity ${r.ppl.toFixed(3)}  (mean NLL ${r.nll.toFixed(5)})`,
          `  protocol: ${r.protocol}`,
          dataLine,
        ].join("\n"),
      );
    }
  } finally {
    await runner.close();
  }
}
