/** Classification accuracy (+ Matthews correlation) for encoder classifiers. */
import { PareError } from "../errors.ts";
import type { LabeledExample } from "../io/datasets.ts";
import type { PareTokenizer } from "../io/tokenizer.ts";
import type { Runner } from "./runner.ts";

export interface ClassifyResult {
  accuracy: number;
  mcc: number;
  n: number;
  correct: number;
  truncated: number;
  predictions: number[];
  protocol: string;
}

/** Matthews correlation coefficient, multiclass form (Gorodkin 2004); binary = the usual MCC. */
export function matthews(labels: number[], preds: number[], k: number): number {
  const C = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  labels.forEach((y, i) => {
    C[y][preds[i]]++;
  });
  const n = labels.length;
  let c = 0;
  const t = new Array<number>(k).fill(0);
  const p = new Array<number>(k).fill(0);
  for (let i = 0; i < k; i++) {
    c += C[i][i];
    for (let j = 0; j < k; j++) {
      t[i] += C[i][j];
      p[j] += C[i][j];
    }
  }
  const num = c * n - t.reduce((s, ti, i) => s + ti * p[i], 0);
  const den = Math.sqrt(
    (n * n - p.reduce((s, x) => s + x * x, 0)) * (n * n - t.reduce((s, x) => s + x * x, 0)),
  );
  return den === 0 ? 0 : num / den;
}

export async function classify(
  runner: Runner,
  tok: PareTokenizer,
  data: LabeledExample[],
  opts: { batchSize?: number; onProgress?: (done: number, total: number) => void } = {},
): Promise<ClassifyResult> {
  const k = runner.model.dims.numLabels;
  if (k === 0)
    throw new PareError(
      "E_USAGE",
      "this model has no classification head",
      "use a *ForSequenceClassification checkpoint",
    );
  const bad = data.find((d) => d.label < 0 || d.label >= k);
  if (bad)
    throw new PareError(
      "E_DATA_INVALID",
      `label ${bad.label} is outside the model's ${k} classes`,
      "check the label column and the model's id2label",
    );
  const maxLen = runner.model.dims.maxPos;
  let truncated = 0;
  const enc = data.map((d) => {
    let { ids, typeIds } = tok.encodeWithTypes(d.text, d.textPair);
    if (ids.length > maxLen) {
      truncated++;
      ids = [...ids.slice(0, maxLen - 1), ids[ids.length - 1]];
      typeIds = [...typeIds.slice(0, maxLen - 1), typeIds[typeIds.length - 1]];
    }
    return { ids, typeIds };
  });
  // sort by length so that batches carry little padding; results are mapped back by index
  const order = enc.map((_, i) => i).sort((a, b) => enc[a].ids.length - enc[b].ids.length);
  const preds = new Array<number>(data.length);
  const bs = opts.batchSize ?? 32;
  for (let i = 0; i < order.length; i += bs) {
    const idx = order.slice(i, i + bs);
    const logits = await runner.classify(
      idx.map((j) => enc[j]),
      tok.padId ?? 0,
    );
    idx.forEach((j, b) => {
      let best = 0;
      for (let c = 1; c < k; c++) if (logits[b][c] > logits[b][best]) best = c;
      preds[j] = best;
    });
    opts.onProgress?.(Math.min(i + bs, order.length), order.length);
  }
  const labels = data.map((d) => d.label);
  const correct = labels.filter((y, i) => y === preds[i]).length;
  return {
    accuracy: correct / data.length,
    mcc: matthews(labels, preds, k),
    n: data.length,
    correct,
    truncated,
    predictions: preds,
    protocol: `${data.length} examples, argmax of the classifier logits, ${truncated} truncated to ${maxLen} tokens`,
  };
}
