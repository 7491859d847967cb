/**
 * `evaluate`: measure a model — perplexity (windows over a text, windows over documents, lm-eval's rolling
 * protocol), sequence classification, zero-shot multiple choice. Every result carries its protocol line.
 */
import { type LoadedModel, loadModel } from "../arch/load.ts";
import { PareError } from "../errors.ts";
import { type ClassifyResult, classify } from "../eval/classify.ts";
import { type McResult, multipleChoice } from "../eval/multipleChoice.ts";
import {
  type DocPplResult,
  documentPerplexity,
  type PplResult,
  perplexity,
  type RollingPplResult,
  rollingPerplexity,
} from "../eval/perplexity.ts";
import { Runner } from "../eval/runner.ts";
import { isJsonl, readClassificationFile, readDocuments, readTextFile } from "../io/datasets.ts";
import { MC_FORMATS, type McFormat, readMultipleChoice } from "../io/mcData.ts";
import { loadTokenizer } from "../io/tokenizer.ts";

export type { McFormat };

interface Common {
  /** the data file */
  data: string;
  /** sequences per forward pass (never changes a result) */
  batchSize?: number;
  /** ONNX Runtime intra-op threads */
  threads?: number;
  /** (done, total) units of work: windows, documents, sentences or items */
  onProgress?: (done: number, total: number) => void;
  /** what the evaluation tells along the way (tokenizing, skipped empty documents) */
  onNote?: (message: string) => void;
  /** stops between batches with E_ABORTED */
  signal?: AbortSignal;
}

export interface PplTask extends Common {
  task: "ppl";
  /** window length in tokens (default 256) */
  seqLen?: number;
  /** windows: only the first n windows */
  maxWindows?: number;
  /** windows (default; over documents for .jsonl or docSeparator) | rolling (lm-evaluation-harness) */
  protocol?: "windows" | "rolling";
  /** a plain text file's documents are separated by this string */
  docSeparator?: string;
  /** over documents: only the first n documents */
  maxDocs?: number;
}

export interface ClassifyTask extends Common {
  task: "classify";
  /** the sentence column (name or 0-based index); detected when absent */
  textColumn?: string | number;
  /** the label column (name or 0-based index); detected when absent */
  labelColumn?: string | number;
}

export interface McTask extends Common {
  task: "mc";
  /** generic (default) | piqa | arc | openbookqa | winogrande | hellaswag | commonsense */
  format?: McFormat;
  maxItems?: number;
}

export type EvalTask = PplTask | ClassifyTask | McTask;

export type EvalResult =
  | ({ task: "ppl"; model: string; data: string } & (PplResult | DocPplResult | RollingPplResult))
  | ({ task: "classify"; model: string; data: string } & Omit<ClassifyResult, "predictions"> & {
        predictions: number[];
      })
  | ({ task: "mc"; model: string; data: string; format: McFormat } & McResult);

const TASKS = ["ppl", "classify", "mc"] as const;

function count(v: number | undefined, name: string, min: number): number | undefined {
  if (v === undefined) return undefined;
  if (!Number.isInteger(v) || v < min)
    throw new PareError(
      "E_USAGE",
      `${name} must be an integer ≥ ${min} (got ${JSON.stringify(v)})`,
      `e.g. ${name} ${Math.max(min, 8)}`,
    );
  return v;
}

/** Evaluate the model folder (or Hugging Face cache id) `model` on a task; nothing is kept open. */
export async function evaluate(model: string, t: EvalTask): Promise<EvalResult> {
  if (!TASKS.includes(t.task))
    throw new PareError("E_USAGE", `unknown task "${t.task}"`, `the task is one of: ${TASKS.join(", ")}`);
  if (t.task === "ppl" && t.protocol !== undefined && !["windows", "rolling"].includes(t.protocol))
    throw new PareError(
      "E_USAGE",
      `unknown protocol "${t.protocol}"`,
      "the protocol is windows (non-overlapping windows; over documents for .jsonl or a document separator) or " +
        "rolling (lm-evaluation-harness' per-document rolling log-likelihood)",
    );
  const threads = count(t.threads, "threads", 1);
  const batchSize = count(t.batchSize, "batch-size", 1);
  const aborted = () => new PareError("E_ABORTED", "the evaluation was aborted", "run it again");
  if (t.signal?.aborted) throw aborted();
  const onProgress = (done: number, total: number) => {
    if (t.signal?.aborted) throw aborted();
    t.onProgress?.(done, total);
  };
  const note = (m: string) => t.onNote?.(m);
  const m = loadModel(model);
  let runner: Runner | undefined;
  const run = async () => {
    runner = await Runner.create(m, { threads });
    return runner;
  };
  try {
    if (!m.hasTokenizer) loadTokenizer(m.dir); // throws the coded "no tokenizer.json" error
    const base = { model: m.dir, data: t.data };
    if (t.task === "mc") {
      const format = t.format ?? "generic";
      if (!MC_FORMATS.includes(format))
        throw new PareError("E_USAGE", `unknown format "${format}"`, `use one of: ${MC_FORMATS.join(", ")}`);
      needDecoder(m, "mc");
      const items = readMultipleChoice(t.data, format);
      const tok = loadTokenizer(m.dir);
      const r = await multipleChoice(await run(), tok, items, {
        batchSize,
        maxItems: count(t.maxItems, "max-items", 1),
        onProgress,
      });
      return { task: "mc", ...base, format, ...r };
    }
    if (t.task === "ppl") {
      needDecoder(m, "ppl");
      const protocol = t.protocol ?? "windows";
      const rolling = protocol === "rolling";
      const documents = rolling || isJsonl(t.data) || t.docSeparator !== undefined;
      const seqLen = count(t.seqLen ?? 256, "seq-len", rolling ? 1 : 2) as number;
      if (!documents) {
        if (t.maxDocs !== undefined)
          throw new PareError(
            "E_USAGE",
            "--max-docs needs documents",
            "give a .jsonl file, --doc-separator or --protocol rolling",
          );
        const text = readTextFile(t.data);
        const tok = loadTokenizer(m.dir);
        note(`tokenizing ${t.data} …`);
        const ids = tok.encode(text);
        const r = await perplexity(await run(), ids, {
          seqLen,
          batchSize,
          maxWindows: count(t.maxWindows, "max-windows", 1),
          onProgress,
        });
        return { task: "ppl", ...base, ...r };
      }
      if (rolling && t.maxWindows !== undefined)
        throw new PareError(
          "E_USAGE",
          "--max-windows does not apply to --protocol rolling (documents are scored whole)",
          "use --max-docs n to evaluate only the first n documents",
        );
      const { docs, empty } = readDocuments(t.data, { separator: t.docSeparator });
      const tok = loadTokenizer(m.dir);
      if (empty > 0) note(`skipping ${empty} empty document${empty === 1 ? "" : "s"} of ${t.data}`);
      note(`tokenizing ${docs.length} document${docs.length === 1 ? "" : "s"} of ${t.data} …`);
      const common = {
        seqLen,
        batchSize,
        maxDocs: count(t.maxDocs, "max-docs", 1),
        emptySkipped: empty,
        onProgress,
      };
      const r = rolling
        ? await rollingPerplexity(await run(), tok, docs, common)
        : await documentPerplexity(await run(), tok, docs, {
            ...common,
            maxWindows: count(t.maxWindows, "max-windows", 1),
          });
      return { task: "ppl", ...base, ...r };
    }
    if (m.dims.head !== "classifier")
      throw new PareError(
        "E_USAGE",
        "--task classify needs a sequence-classification model",
        "use a *ForSequenceClassification checkpoint",
      );
    const tok = loadTokenizer(m.dir);
    const data = readClassificationFile(t.data, {
      textColumn: t.textColumn,
      labelColumn: t.labelColumn,
      labelMap: m.config.label2id as Record<string, number> | undefined,
    });
    const r = await classify(await run(), tok, data, { batchSize, onProgress });
    return { task: "classify", ...base, ...r };
  } finally {
    await (runner as Runner | undefined)?.close();
    m.close();
  }
}

function needDecoder(m: LoadedModel, task: "ppl" | "mc"): void {
  if (m.spec.kind !== "decoder")
    throw new PareError(
      "E_USAGE",
      task === "ppl"
        ? `--task ppl needs a decoder (causal LM); ${m.spec.family} is an encoder`
        : "--task mc needs a decoder (causal LM)",
      "use --task classify for encoders",
    );
}
