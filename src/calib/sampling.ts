/**
 * Calibration samples: seeded random windows of `seqLen` tokens from the calibration token
 * stream (decoders), or seeded random lines truncated to `seqLen` (encoders).
 *
 * Decoders, long texts: a text of more than PIECE_CHARS characters is cut at line ends into pieces of at
 * most PIECE_CHARS, and a window is drawn from a piece drawn by its length: only the pieces that hold a
 * window are tokenized (tokenizing a long text whole is slow, and a Llama-style tokenizer without a
 * pre-tokenizer cannot take a megabyte at once). Shorter texts are tokenized whole, as one piece, and give
 * the windows `decoderCalibration` gives for their token stream.
 */
import { PareError } from "../errors.ts";
import type { PareTokenizer } from "../io/tokenizer.ts";

/** mulberry32: a small seeded PRNG (uniform in [0, 1)). */
export function seededRandom(seed: number): () => number {
  return mulberry32((seed >>> 0) ^ 0x9e3779b9);
}

/** The mulberry32 generator from a 32-bit state (uniform in [0, 1)). */
export function mulberry32(state: number): () => number {
  let a = state >>> 0;
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

/** Texts longer than this (characters) are tokenized piece by piece, only where a window is drawn. */
export const PIECE_CHARS = 1 << 18;

/** `text` cut after line ends into pieces of at most `max` characters (a longer line is cut at whitespace). */
export function textPieces(text: string, max = PIECE_CHARS): string[] {
  const pieces: string[] = [];
  let start = 0;
  while (start < text.length) {
    if (text.length - start <= max) {
      pieces.push(text.slice(start));
      break;
    }
    let end = text.lastIndexOf("\n", start + max - 1) + 1;
    if (end <= start) {
      const ws = text.slice(start, start + max).search(/\s\S*$/);
      end = ws > 0 ? start + ws + 1 : start + max;
    }
    pieces.push(text.slice(start, end));
    start = end;
  }
  return pieces;
}

/**
 * Decoder calibration from text (see the file comment): the text's windows, tokenizing only what is drawn
 * from. Up to PIECE_CHARS characters, exactly `decoderCalibration(tok.encode(text), …)`.
 */
export function decoderCalibrationFromText(
  text: string,
  tok: PareTokenizer,
  samples: number,
  seqLen: number,
  seed: number,
  batchSize: number,
): CalibSet {
  if (text.length <= PIECE_CHARS)
    return decoderCalibration(tok.encode(text), samples, seqLen, seed, batchSize);
  const pieces = textPieces(text);
  // the first piece starts the text (with the tokenizer's special tokens, e.g. BOS); the others continue it
  const tokens = new Map<number, number[]>();
  const tokensOf = (p: number) => {
    let ids = tokens.get(p);
    if (!ids) {
      ids = tok.encode(pieces[p], { addSpecialTokens: p === 0 });
      tokens.set(p, ids);
    }
    return ids;
  };
  const ends: number[] = [];
  pieces.reduce((at, p) => {
    ends.push(at + p.length);
    return at + p.length;
  }, 0);
  const rnd = seededRandom(seed);
  const seqs: number[][] = [];
  for (let s = 0; s < samples; s++) {
    let window: number[] | undefined;
    for (let tries = 0; !window && tries < 64 * pieces.length; tries++) {
      const at = Math.floor(rnd() * text.length);
      let p = 0;
      while (ends[p] <= at) p++;
      const ids = tokensOf(p);
      if (ids.length < seqLen) continue; // a short last piece: draw again
      const start = Math.floor(rnd() * (ids.length - seqLen + 1));
      window = ids.slice(start, start + seqLen);
    }
    if (!window) {
      throw new PareError(
        "E_DATA_TOO_SHORT",
        `no piece of the calibration text holds a window of ${seqLen} tokens`,
        "give a longer --calib text or a smaller --seq-len",
      );
    }
    seqs.push(window);
  }
  return {
    batches: batchesOf(seqs, batchSize, 0),
    sequences: samples,
    tokens: samples * seqLen,
    protocol: `${samples} random windows × ${seqLen} tokens (seed ${seed}) from ${pieces.length} pieces of the calibration text (${text.length} characters; piece drawn by length, window uniform in its tokens; ${tokens.size} pieces tokenized)`,
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
