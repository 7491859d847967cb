/**
 * Calibration samples: seeded random windows of `seqLen` tokens from the calibration token
 * stream (decoders), or seeded random lines truncated to `seqLen` (encoders).
 */
import { PareError } from "../errors.ts";
import type { PareTokenizer } from "../io/tokenizer.ts";

/** mulberry32: a small seeded PRNG (uniform in [0, 1)). */
export function seededRandom(seed: number): () => number {
  let a = (seed >>> 0) ^ 0x9e3779b9;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface CalibBatch {
  ids: number[]; // [b, T] row-major
  mask: number[]; // [b, T] 1 = token, 0 = padding
  b: number;
  T: number;
}

export interface CalibSet {
  batches: CalibBatch[];
  sequences: number;
  tokens: number;
  protocol: string;
}

function batchesOf(seqs: number[][], batchSize: number, padId: number): CalibBatch[] {
  const out: CalibBatch[] = [];
  for (let i = 0; i < seqs.length; i += batchSize) {
    const chunk = seqs.slice(i, i + batchSize);
    const T = Math.max(...chunk.map((s) => s.length));
    const ids: number[] = [];
    const mask: number[] = [];
    for (const s of chunk) {
      for (let t = 0; t < T; t++) {
        ids.push(t < s.length ? s[t] : padId);
        mask.push(t < s.length ? 1 : 0);
      }
    }
    out.push({ ids, mask, b: chunk.length, T });
  }
  return out;
}

export function decoderCalibration(
  ids: number[],
  samples: number,
  seqLen: number,
  seed: number,
  batchSize: number,
): CalibSet {
  if (ids.length < seqLen) {
    throw new PareError(
      "E_DATA_TOO_SHORT",
      `the calibration text has ${ids.length} tokens, fewer than one window of ${seqLen}`,
      "give a longer --calib text or a smaller --seq-len",
    );
  }
  const rnd = seededRandom(seed);
  const seqs = Array.from({ length: samples }, () => {
    const start = Math.floor(rnd() * (ids.length - seqLen + 1));
    return ids.slice(start, start + seqLen);
  });
  return {
    batches: batchesOf(seqs, batchSize, 0),
    sequences: samples,
    tokens: samples * seqLen,
    protocol: `${samples} random windows × ${seqLen} tokens (seed ${seed}) from ${ids.length} calibration tokens`,
  };
}

export function encoderCalibration(
  text: string,
  tok: PareTokenizer,
  samples: number,
  seqLen: number,
  seed: number,
  batchSize: number,
): CalibSet {
  const lines = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
  if (lines.length === 0)
    throw new PareError(
      "E_DATA_TOO_SHORT",
      "the calibration text has no non-empty lines",
      "give a --calib file with one text per line",
    );
  const rnd = seededRandom(seed);
  const order = lines.map((_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const seqs = order.slice(0, samples).map((i) => {
    const ids = tok.encode(lines[i]);
    return ids.length > seqLen ? [...ids.slice(0, seqLen - 1), ids[ids.length - 1]] : ids;
  });
  return {
    batches: batchesOf(seqs, batchSize, tok.padId ?? 0),
    sequences: seqs.length,
    tokens: seqs.reduce((s, x) => s + x.length, 0),
    protocol: `${seqs.length} random lines (seed ${seed}) of ${lines.length}, at most ${seqLen} tokens each`,
  };
}
