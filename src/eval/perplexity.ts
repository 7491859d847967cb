/**
 * Perplexity (METHODS §5): the whole text tokenized once (special tokens as the
 * tokenizer adds them, e.g. one leading <s>), cut into ⌊T/L⌋ non-overlapping windows of
 * L tokens (tail dropped); each window starts fresh and its first token is context only.
 * PPL = exp(mean token NLL over all predicted tokens).
 */
import { PareError } from "../errors.ts";
import type { Runner } from "./runner.ts";

export interface PplResult {
  ppl: number;
  nll: number;
  /** predicted tokens (windows × (L − 1)) */
  tokens: number;
  windows: number;
  seqLen: number;
  totalTokens: number;
  droppedTailTokens: number;
  protocol: string;
}

export function cutWindows(ids: number[], seqLen: number, maxWindows?: number): number[][] {
  const n = Math.min(Math.floor(ids.length / seqLen), maxWindows ?? Number.POSITIVE_INFINITY);
  return Array.from({ length: n }, (_, w) => ids.slice(w * seqLen, (w + 1) * seqLen));
}

export async function perplexity(
  runner: Runner,
  ids: number[],
  opts: {
    seqLen: number;
    batchSize?: number;
    maxWindows?: number;
    onProgress?: (done: number, total: number) => void;
  },
): Promise<PplResult> {
  const L = opts.seqLen;
  if (!Number.isInteger(L) || L < 2)
    throw new PareError("E_USAGE", `--seq-len must be an integer ≥ 2 (got ${L})`, "e.g. --seq-len 256");
  const windows = cutWindows(ids, L, opts.maxWindows);
  if (windows.length === 0) {
    throw new PareError(
      "E_DATA_TOO_SHORT",
      `the text has ${ids.length} tokens, fewer than one window of ${L}`,
      "use a longer text or a smaller --seq-len",
    );
  }
  const bs = opts.batchSize ?? 8;
  let sum = 0;
  let count = 0;
  for (let i = 0; i < windows.length; i += bs) {
    const nll = await runner.windowNll(windows.slice(i, i + bs));
    for (const w of nll) {
      for (const v of w) sum += v;
      count += w.length;
    }
    opts.onProgress?.(Math.min(i + bs, windows.length), windows.length);
  }
  const nll = sum / count;
  if (!Number.isFinite(nll))
    throw new PareError(
      "E_NUMERIC",
      "the model produced non-finite log-likelihoods",
      "check the weights for NaN/Inf",
    );
  return {
    ppl: Math.exp(nll),
    nll,
    tokens: count,
    windows: windows.length,
    seqLen: L,
    totalTokens: ids.length,
    droppedTailTokens: ids.length - windows.length * L,
    protocol: `${windows.length} non-overlapping windows of ${L} tokens (first token of each window is context only; ${ids.length - windows.length * L} tokens unused), ${count} predicted tokens`,
  };
}
