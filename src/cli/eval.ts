import { type EvalTask, evaluate, type McFormat } from "../api/evaluate.ts";
import { PareError } from "../errors.ts";
import { isJsonl, unescapeSeparator } from "../io/datasets.ts";
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
  if (f.task !== "ppl") {
    const flag = [
      ["--protocol", f.protocol],
      ["--doc-separator", f.docSeparator],
      ["--max-docs", f.maxDocs],
    ].find(([, v]) => v !== undefined)?.[0];
    if (flag) throw new PareError("E_USAGE", `${flag} applies to --task ppl only`, `drop ${flag}`);
  } else if (f.protocol !== undefined && !PROTOCOLS.includes(f.protocol)) {
    throw new PareError(
      "E_USAGE",
      `unknown --protocol "${f.protocol}"`,
      "--protocol is windows (non-overlapping windows; over documents for .jsonl or --doc-separator) or " +
        "rolling (lm-evaluation-harness' per-document rolling log-likelihood)",
    );
  }
  const common = {
    data: f.data,
    threads: int(f.threads, "--threads", 1),
    batchSize: int(f.batchSize, "--batch-size", 1),
    onNote: (m: string) => con.info(m),
  };
  const col = (v?: string) => (v === undefined ? undefined : /^\d+$/.test(v) ? Number(v) : v);
  const task: EvalTask =
    f.task === "mc"
      ? {
          ...common,
          task: "mc",
          format: (f.format ?? "generic") as McFormat,
          maxItems: int(f.maxItems, "--max-items", 1),
          onProgress: (d, t) => con.progress("multiple choice", d, t),
        }
      : f.task === "ppl"
        ? {
            ...common,
            task: "ppl",
            protocol: f.protocol as "windows" | "rolling" | undefined,
            seqLen: int(f.seqLen, "--seq-len", f.protocol === "rolling" ? 1 : 2),
            maxWindows: int(f.maxWindows, "--max-windows", 1),
            maxDocs: int(f.maxDocs, "--max-docs", 1),
            docSeparator: f.docSeparator === undefined ? undefined : unescapeSeparator(f.docSeparator),
            onProgress: (d, t) =>
              con.progress(f.protocol === "rolling" ? "perplexity (rolling)" : "perplexity", d, t),
          }
        : {
            ...common,
            task: "classify",
            textColumn: col(f.textColumn),
            labelColumn: col(f.labelColumn),
            onProgress: (d, t) => con.progress("classify", d, t),
          };
  const r = await evaluate(dir, task);
  if (r.task === "mc") {
    con.result({ ...r, acc_norm: r.accNorm }, () =>
      [
        `acc ${(100 * r.acc).toFixed(2)}%   acc_norm ${(100 * r.accNorm).toFixed(2)}%   (${r.n} items)`,
        `  protocol: ${r.protocol}`,
        `  data: ${f.data} (${r.format})`,
      ].join("\n"),
    );
  } else if (r.task === "classify") {
    const { predictions: _p, ...rest } = r;
    con.result(rest, () =>
      [
        `accuracy ${(100 * r.accuracy).toFixed(2)}%  (${r.correct}/${r.n})   Matthews corr. ${r.mcc.toFixed(4)}`,
        `  protocol: ${r.protocol}`,
        `  data: ${f.data}`,
      ].join("\n"),
    );
  } else {
    const docs = "protocolName" in r;
    const source = isJsonl(f.data)
      ? "one per line"
      : f.docSeparator !== undefined
        ? `split at ${JSON.stringify(unescapeSeparator(f.docSeparator))}`
        : "the whole file";
    con.result(r as unknown as Record<string, unknown>, () =>
      [
        "protocolName" in r && r.protocolName === "rolling"
          ? `perplexity ${r.ppl.toFixed(3)} per token  (mean NLL ${r.nll.toFixed(5)})\n  word perplexity ${r.wordPerplexity.toFixed(3)}   byte perplexity ${r.bytePerplexity.toFixed(4)}   bits per byte ${r.bitsPerByte.toFixed(4)}`
          : `perplexity ${r.ppl.toFixed(3)}  (mean NLL ${r.nll.toFixed(5)})`,
        `  protocol: ${r.protocol}`,
        docs ? `  data: ${f.data} (documents: ${source})` : `  data: ${f.data}`,
      ].join("\n"),
    );
  }
}
