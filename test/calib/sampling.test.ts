/**
 * Calibration sampling: seeded windows of a token stream (decoders) and seeded lines (encoders), batched with
 * padding masks.
 */
import { describe, expect, it } from "vitest";
import {
  decoderCalibration,
  decoderCalibrationFromText,
  encoderCalibration,
  PIECE_CHARS,
  seededRandom,
  textPieces,
} from "../../src/calib/sampling.ts";
import type { PareTokenizer } from "../../src/io/tokenizer.ts";

/** a tokenizer stand-in: [CLS]=2, one id per word (its length + 10), [SEP]=3 */
const encode = (text: string) => [
  2,
  ...text
    .split(/\s+/)
    .filter(Boolean)
    .map((w) => w.length + 10),
  3,
];
const fakeTok: PareTokenizer = {
  encode,
  encodeWithTypes: (text) => ({ ids: encode(text), typeIds: encode(text).map(() => 0) }),
  decode: () => "",
  tokenToId: () => undefined,
  padId: 0,
  vocabSize: 100,
};

describe("decoderCalibration", () => {
  const ids = Array.from({ length: 50 }, (_, i) => 100 + i);

  it("windows are contiguous slices of the stream, batched without padding", () => {
    const c = decoderCalibration(ids, 7, 10, 3, 3);
    expect(c.sequences).toBe(7);
    expect(c.tokens).toBe(70);
    expect(c.batches.map((b) => b.b)).toEqual([3, 3, 1]);
    for (const b of c.batches) {
      expect(b.T).toBe(10);
      expect(b.mask.every((m) => m === 1)).toBe(true);
      for (let r = 0; r < b.b; r++) {
        const w = b.ids.slice(r * 10, (r + 1) * 10);
        const start = w[0] - 100;
        expect(start).toBeGreaterThanOrEqual(0);
        expect(start).toBeLessThanOrEqual(40);
        expect(w).toEqual(ids.slice(start, start + 10));
      }
    }
    expect(c.protocol).toContain("seed 3");
  });

  it("is deterministic per seed and independent of the batch size", () => {
    const flat = (s: number, bs: number) =>
      decoderCalibration(ids, 9, 8, s, bs).batches.flatMap((b) => b.ids);
    expect(flat(5, 4)).toEqual(flat(5, 4));
    expect(flat(5, 4)).toEqual(flat(5, 9));
    expect(flat(5, 4)).not.toEqual(flat(6, 4));
  });

  it("a stream of exactly one window works; a shorter one is E_DATA_TOO_SHORT", () => {
    const c = decoderCalibration(ids.slice(0, 10), 2, 10, 0, 8);
    expect(c.batches[0].ids).toEqual([...ids.slice(0, 10), ...ids.slice(0, 10)]);
    expect(() => decoderCalibration(ids.slice(0, 9), 2, 10, 0, 8)).toThrow(
      expect.objectContaining({ code: "E_DATA_TOO_SHORT" }),
    );
  });

  it("seededRandom is uniform-ish in [0, 1) and seed-dependent", () => {
    const r = seededRandom(1);
    const xs = Array.from({ length: 2000 }, r);
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
    expect(Math.abs(xs.reduce((a, b) => a + b, 0) / xs.length - 0.5)).toBeLessThan(0.03);
    expect(seededRandom(2)()).not.toBe(seededRandom(1)());
  });
});

describe("encoderCalibration", () => {
  const text = ["a bb ccc", "", "  dddd eeeee  ", "f", "gg hh ii jj kk ll mm nn oo pp", "qqq"].join("\n");

  it("takes seeded distinct non-empty lines, truncates keeping the final special token, pads with the pad id", () => {
    const c = encoderCalibration(text, fakeTok, 4, 5, 1, 3);
    expect(c.sequences).toBe(4);
    const seqs: number[][] = [];
    for (const b of c.batches) {
      for (let r = 0; r < b.b; r++) {
        const row = b.ids.slice(r * b.T, (r + 1) * b.T);
        const m = b.mask.slice(r * b.T, (r + 1) * b.T);
        const len = m.reduce((s, v) => s + v, 0);
        expect(m).toEqual(Array.from({ length: b.T }, (_, t) => (t < len ? 1 : 0)));
        expect(row.slice(len).every((v) => v === 0)).toBe(true);
        seqs.push(row.slice(0, len));
      }
      expect(b.T).toBe(Math.max(...seqs.slice(-b.b).map((s) => s.length)));
    }
    expect(c.tokens).toBe(seqs.reduce((s, x) => s + x.length, 0));
    const lines = text
      .split("\n")
      .map((l) => l.trim())
      .filter(Boolean);
    const encoded = lines.map((l) => {
      const e = fakeTok.encode(l);
      return e.length > 5 ? [...e.slice(0, 4), e[e.length - 1]] : e;
    });
    const keys = seqs.map((s) => JSON.stringify(s));
    expect(new Set(keys).size).toBe(4);
    for (const k of keys) expect(encoded.map((e) => JSON.stringify(e))).toContain(k);
    for (const s of seqs) {
      expect(s.length).toBeLessThanOrEqual(5);
      expect(s[0]).toBe(2);
      expect(s[s.length - 1]).toBe(3);
    }
  });

  it("more samples than lines takes every line once; no lines is E_DATA_TOO_SHORT", () => {
    const c = encoderCalibration(text, fakeTok, 100, 64, 0, 8);
    expect(c.sequences).toBe(5);
    expect(() => encoderCalibration(" \n\n  \n", fakeTok, 4, 8, 0, 2)).toThrow(
      expect.objectContaining({ code: "E_DATA_TOO_SHORT" }),
    );
  });
});

describe("decoder calibration from text: only the pieces windows are drawn from are tokenized", () => {
  /** a counting stand-in: one id per character (its code), BOS = 1 when special tokens are added */
  const counting = () => {
    const calls: { chars: number; special: boolean }[] = [];
    const tok: PareTokenizer = {
      ...fakeTok,
      encode: (text, opts = {}) => {
        const special = opts.addSpecialTokens ?? true;
        calls.push({ chars: text.length, special });
        return [...(special ? [1] : []), ...Array.from(text, (c) => c.charCodeAt(0))];
      },
    };
    return { tok, calls };
  };
  const line = (k: number) => `${String(k).padStart(6, "0")} ${"abcdefghij".repeat(5)}\n`;

  it("textPieces: cut after line ends, at most the limit, concatenating to the text", () => {
    const text = Array.from({ length: 400 }, (_, k) => line(k)).join("");
    const pieces = textPieces(text, 1000);
    expect(pieces.join("")).toBe(text);
    expect(pieces.every((p) => p.length <= 1000 && p.endsWith("\n"))).toBe(true);
    expect(pieces.length).toBe(Math.ceil(text.length / (Math.floor(1000 / line(0).length) * line(0).length)));
    // a line longer than the limit is cut at whitespace, else hard
    expect(textPieces("aaaa bbbb cccc dddd", 10).join("")).toBe("aaaa bbbb cccc dddd");
    expect(textPieces("aaaa bbbb cccc dddd", 10)).toEqual(["aaaa bbbb ", "cccc dddd"]);
    expect(textPieces("aaaa bbbbbbcccc", 10)).toEqual(["aaaa ", "bbbbbbcccc"]);
    expect(textPieces("x".repeat(25), 10)).toEqual(["x".repeat(10), "x".repeat(10), "x".repeat(5)]);
  });

  it("a text up to PIECE_CHARS gives exactly decoderCalibration of its whole token stream", () => {
    const text = Array.from({ length: 300 }, (_, k) => line(k)).join("");
    expect(text.length).toBeLessThanOrEqual(PIECE_CHARS);
    const { tok, calls } = counting();
    const got = decoderCalibrationFromText(text, tok, 9, 40, 5, 4);
    expect(got).toEqual(decoderCalibration(tok.encode(text), 9, 40, 5, 4));
    expect(calls[0]).toEqual({ chars: text.length, special: true });
  });

  it("a longer text: windows lie inside one piece's tokens; only drawn pieces are tokenized; seeded", () => {
    const text = Array.from({ length: Math.ceil((40 * PIECE_CHARS) / line(0).length) }, (_, k) =>
      line(k),
    ).join("");
    const pieces = textPieces(text);
    expect(pieces.length).toBeGreaterThanOrEqual(40);
    const { tok, calls } = counting();
    const c = decoderCalibrationFromText(text, tok, 6, 32, 11, 4);
    expect(c.sequences).toBe(6);
    expect(c.tokens).toBe(6 * 32);
    expect(calls.length).toBeLessThanOrEqual(6);
    expect(calls.every((k) => k.chars <= PIECE_CHARS)).toBe(true);
    expect(calls.filter((k) => k.special).length).toBeLessThanOrEqual(1); // only the first piece starts with BOS
    expect(c.protocol).toMatch(/pieces tokenized/);
    for (const b of c.batches) {
      for (let r = 0; r < b.b; r++) {
        const w = String.fromCharCode(...b.ids.slice(r * b.T, (r + 1) * b.T).filter((x) => x !== 1));
        expect(text).toContain(w);
      }
    }
    expect(decoderCalibrationFromText(text, counting().tok, 6, 32, 11, 4)).toEqual(c);
  });
});
