/**
 * Long texts (src/io/tokenizer.ts, bpeWordSplitter): a BPE model gets a pre-token longer than
 * splitWordsLongerThan as its pieces between the places where no merge can join, and the tokens must be exactly
 * those of one model call on the whole pre-token (splitWordsLongerThan: Infinity), token for token. Tiny seeded
 * tokenizers built here cover SentencePiece-style BPE (the legacy Llama layout: Prepend "▁" + Replace, no
 * pre-tokenizer; Metaspace with prepend_scheme "first" and "always", split or not; byte fallback or unk_token with
 * fuse_unk; ignore_merges), byte-level BPE (GPT-2) and WordPiece (BERT, which is never split), on seeded texts
 * with long pre-tokens, added tokens, unknown characters and whitespace runs. Their merges are learned from whole
 * lines, so some merges join across "▁" (a cut at every "▁" would be wrong). Where the Rust reference library (npm
 * `tokenizers`) is installed, the split encoding is compared with it too. With ../shared: the shared llama and
 * bert tokenizers on a 100k-character slice of WikiText-2, and the whole WikiText-2 test file.
 */
import fs from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import * as tokenizersJs from "@huggingface/tokenizers";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import type { PareError } from "../../src/errors.ts";
import { loadTokenizer, type PareTokenizer } from "../../src/io/tokenizer.ts";
import { Rng } from "../helpers/rng.ts";
import { gemmaTokenizer, type Json, phi3Tokenizer } from "../helpers/tokenizerJsons.ts";

type Obj = { [k: string]: Json };
const SP = "\u2581";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});
function folder(files: Record<string, Obj>): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "pare-toklong-"));
  dirs.push(d);
  for (const [name, content] of Object.entries(files))
    fs.writeFileSync(path.join(d, name), JSON.stringify(content));
  return d;
}

/** The words each call of the library's BPE model gets (one list per model call), while `f` runs. */
const BPE = (tokenizersJs as unknown as { BPE: { prototype: { encode(words: string[]): string[] } } }).BPE;
function modelCalls<T>(f: () => T): { result: T; calls: string[][] } {
  const calls: string[][] = [];
  const original = BPE.prototype.encode;
  const spy = vi.spyOn(BPE.prototype, "encode").mockImplementation(function (this: unknown, words: string[]) {
    calls.push([...words]);
    return original.call(this, words);
  });
  try {
    return { result: f(), calls };
  } finally {
    spy.mockRestore();
  }
}
afterEach(() => {
  vi.restoreAllMocks();
});

// ---------------------------------------------------------------------------------------------------------------
// seeded corpus, texts and tokenizers

const LETTERS = "abcdefghijklmno";
function lexicon(rng: Rng, n: number): string[] {
  const words = new Set<string>();
  while (words.size < n) {
    const len = 1 + rng.int(6);
    let w = "";
    for (let i = 0; i < len; i++) w += LETTERS[rng.int(LETTERS.length)];
    words.add(w);
  }
  return [...words];
}
const LEX = lexicon(new Rng(7), 60);
/** a lexicon word, the first ones far more often (Zipf-like) */
const word = (rng: Rng) => LEX[Math.floor(LEX.length * rng.uniform() ** 2.5)];
function line(rng: Rng): string {
  const n = 3 + rng.int(13);
  const out: string[] = [];
  for (let i = 0; i < n; i++)
    out.push(word(rng) + (rng.uniform() < 0.1 ? (rng.uniform() < 0.5 ? "." : ",") : ""));
  return out.join(" ");
}
/** training lines: lexicon words only */
const CORPUS = (() => {
  const rng = new Rng(11);
  return Array.from({ length: 400 }, () => line(rng));
})();

/**
 * A seeded text of about `n` characters: lines (with double spaces and blank lines), and now and then a long run
 * of letters without spaces, a run of spaces, unknown characters (é, Ω, an emoji, a tab) and added tokens.
 */
function longText(seed: number, n: number, added: string[]): string {
  const rng = new Rng(seed);
  let t = "";
  while (t.length < n) {
    const r = rng.uniform();
    if (r < 0.05) {
      let run = "";
      const len = 200 + rng.int(600);
      while (run.length < len) run += word(rng);
      t += run;
    } else if (r < 0.08) t += " ".repeat(2 + rng.int(300));
    else if (r < 0.14) t += ["é", "Ω", "\u{1F642}", "\t", "éé", "\u{1F642}\u{1F642}"][rng.int(6)];
    else if (r < 0.18 && added.length > 0) t += added[rng.int(added.length)];
    else t += line(rng);
    t += ["\n", " ", "\n\n", "  ", ""][rng.int(5)];
  }
  return t;
}

/**
 * Plain BPE training: `nMerges` times, the most frequent adjacent pair of symbols in `words` (code points) is
 * merged (ties: the pair whose text sorts first).
 */
function trainMerges(words: (string | string[])[], nMerges: number): [string, string][] {
  let ws = words.map((w) => (typeof w === "string" ? Array.from(w) : [...w]));
  const merges: [string, string][] = [];
  for (let m = 0; m < nMerges; m++) {
    const counts = new Map<string, { n: number; pair: [string, string] }>();
    for (const w of ws) {
      for (let i = 0; i + 1 < w.length; i++) {
        const key = JSON.stringify([w[i], w[i + 1]]);
        const c = counts.get(key);
        if (c) c.n++;
        else counts.set(key, { n: 1, pair: [w[i], w[i + 1]] });
      }
    }
    let best: { key: string; n: number; pair: [string, string] } | undefined;
    for (const [key, c] of counts) {
      if (best === undefined || c.n > best.n || (c.n === best.n && key < best.key)) best = { key, ...c };
    }
    if (best === undefined || best.n < 2) break;
    const [a, b] = best.pair;
    merges.push([a, b]);
    ws = ws.map((w) => {
      const out: string[] = [];
      for (let i = 0; i < w.length; i++) {
        if (i + 1 < w.length && w[i] === a && w[i + 1] === b) {
          out.push(a + b);
          i++;
        } else out.push(w[i]);
      }
      return out;
    });
  }
  return merges;
}

const added = (id: number, content: string, o: { lstrip?: boolean; rstrip?: boolean } = {}): Obj => ({
  id,
  content,
  single_word: false,
  lstrip: o.lstrip ?? false,
  rstrip: o.rstrip ?? false,
  normalized: false,
  special: true,
});
const byteToken = (b: number) => `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`;
const template = (first: string, firstId: number): Obj => ({
  type: "TemplateProcessing",
  single: [{ SpecialToken: { id: first, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
  pair: [
    { SpecialToken: { id: first, type_id: 0 } },
    { Sequence: { id: "A", type_id: 0 } },
    { SpecialToken: { id: first, type_id: 1 } },
    { Sequence: { id: "B", type_id: 1 } },
  ],
  special_tokens: { [first]: { id: first, ids: [firstId], tokens: [first] } },
});

/** SentencePiece-style merges, learned from whole lines with "▁" for spaces: some join across "▁" */
const SP_MERGES = trainMerges(
  CORPUS.map((l) => SP + l.replaceAll(" ", SP)),
  150,
);

/**
 * A SentencePiece-style BPE tokenizer: <unk> <s> </s>, byte tokens (with byteFallback), the corpus characters,
 * "▁", "\n", `extra` pieces (in the vocab, made by no merge), the merges. "legacy": normalizer Prepend "▁" +
 * Replace " " → "▁", no pre-tokenizer (Llama 2); "first" / "always": pre-tokenizer Metaspace with that
 * prepend_scheme (split as given).
 */
function sentencePiece(o: {
  layout: "legacy" | "first" | "always";
  split?: boolean;
  byteFallback: boolean;
  ignoreMerges?: boolean;
  extra?: string[];
}): Record<string, Obj> {
  const vocab: Record<string, number> = {};
  const add = (t: string) => {
    if (!Object.hasOwn(vocab, t)) vocab[t] = Object.keys(vocab).length;
  };
  for (const t of ["<unk>", "<s>", "</s>"]) add(t);
  if (o.byteFallback) for (let b = 0; b < 256; b++) add(byteToken(b));
  for (const c of [SP, "\n", ...new Set(CORPUS.join("").replaceAll(" ", "").split(""))].sort()) add(c);
  for (const t of o.extra ?? []) add(t);
  for (const [a, b] of SP_MERGES) add(a + b);
  return {
    "tokenizer.json": {
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")],
      normalizer:
        o.layout === "legacy"
          ? {
              type: "Sequence",
              normalizers: [
                { type: "Prepend", prepend: SP },
                { type: "Replace", pattern: { String: " " }, content: SP },
              ],
            }
          : null,
      pre_tokenizer:
        o.layout === "legacy"
          ? null
          : { type: "Metaspace", replacement: SP, prepend_scheme: o.layout, split: o.split ?? false },
      post_processor: template("<s>", 1),
      decoder: {
        type: "Sequence",
        decoders: [
          { type: "Replace", pattern: { String: SP }, content: " " },
          { type: "ByteFallback" },
          { type: "Fuse" },
          { type: "Strip", content: " ", start: 1, stop: 0 },
        ],
      },
      model: {
        type: "BPE",
        dropout: null,
        unk_token: "<unk>",
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: true,
        byte_fallback: o.byteFallback,
        ignore_merges: o.ignoreMerges ?? false,
        vocab,
        merges: SP_MERGES.map(([a, b]) => `${a} ${b}`),
      },
    },
    "tokenizer_config.json": { bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>" },
  };
}

/** GPT-2's byte → printable character table. */
const BYTE_CHARS = (() => {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const out: string[] = [];
  let n = 0;
  for (let b = 0; b < 256; b++) out[b] = String.fromCharCode(bs.includes(b) ? b : 256 + n++);
  return out;
})();
const byteLevel = (s: string) => Array.from(new TextEncoder().encode(s), (b) => BYTE_CHARS[b]).join("");

/** A GPT-2-style byte-level BPE tokenizer, merges learned from the corpus' words (and runs of spaces). */
function gpt2(): Record<string, Obj> {
  const words = CORPUS.flatMap((l) => l.match(/ ?\p{L}+| ?[^\s\p{L}]+|\s+/gu) ?? []);
  words.push("  ", "    ", "\n\n");
  const merges = trainMerges(words.map(byteLevel), 120);
  const vocab: Record<string, number> = {};
  for (const c of BYTE_CHARS) vocab[c] = Object.keys(vocab).length;
  for (const [a, b] of merges) if (!Object.hasOwn(vocab, a + b)) vocab[a + b] = Object.keys(vocab).length;
  const eot = Object.keys(vocab).length;
  vocab["<|endoftext|>"] = eot;
  return {
    "tokenizer.json": {
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: [added(eot, "<|endoftext|>")],
      normalizer: null,
      pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
      post_processor: { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
      decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: {
        type: "BPE",
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: "",
        end_of_word_suffix: "",
        fuse_unk: false,
        byte_fallback: false,
        vocab,
        merges: merges.map(([a, b]) => `${a} ${b}`),
      },
    },
    "tokenizer_config.json": { bos_token: "<|endoftext|>", eos_token: "<|endoftext|>" },
  };
}

/**
 * A BPE with an end-of-word suffix (CLIP-like: WhitespaceSplit, "</w>" on each word's last character), which
 * bpeWordSplitter does not cut (a cut would move the suffix).
 */
function endOfWord(): Record<string, Obj> {
  const EOW = "</w>";
  const words = CORPUS.flatMap((l) => l.split(" ")).map((w) => {
    const chars = Array.from(w);
    chars[chars.length - 1] += EOW;
    return chars;
  });
  const merges = trainMerges(words, 100);
  const vocab: Record<string, number> = { "<unk>": 0 };
  const add = (t: string) => {
    if (!Object.hasOwn(vocab, t)) vocab[t] = Object.keys(vocab).length;
  };
  for (const c of [...LETTERS, ".", ","]) {
    add(c);
    add(c + EOW);
  }
  for (const [a, b] of merges) add(a + b);
  return {
    "tokenizer.json": {
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: [added(0, "<unk>")],
      normalizer: null,
      pre_tokenizer: { type: "WhitespaceSplit" },
      post_processor: null,
      decoder: null,
      model: {
        type: "BPE",
        dropout: null,
        unk_token: "<unk>",
        continuing_subword_prefix: null,
        end_of_word_suffix: EOW,
        fuse_unk: false,
        byte_fallback: false,
        vocab,
        merges: merges.map(([a, b]) => `${a} ${b}`),
      },
    },
    "tokenizer_config.json": { unk_token: "<unk>" },
  };
}

/** A BERT-style WordPiece tokenizer: the lexicon words, their 1–2 letter pieces as ##pieces, the letters. */
function bert(): Record<string, Obj> {
  const specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
  const pieces = new Set<string>([...specials, ...LEX.slice(0, 40), ...LETTERS, ".", ","]);
  for (const c of LETTERS) pieces.add(`##${c}`);
  for (const w of LEX.slice(0, 20)) if (w.length >= 3) pieces.add(`##${w.slice(1, 3)}`);
  const vocab = Object.fromEntries([...pieces].map((t, i) => [t, i]));
  return {
    "tokenizer.json": {
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: specials.map((t, i) => added(i, t)),
      normalizer: {
        type: "BertNormalizer",
        clean_text: true,
        handle_chinese_chars: true,
        strip_accents: null,
        lowercase: true,
      },
      pre_tokenizer: { type: "BertPreTokenizer" },
      post_processor: {
        type: "TemplateProcessing",
        single: [
          { SpecialToken: { id: "[CLS]", type_id: 0 } },
          { Sequence: { id: "A", type_id: 0 } },
          { SpecialToken: { id: "[SEP]", type_id: 0 } },
        ],
        pair: [
          { SpecialToken: { id: "[CLS]", type_id: 0 } },
          { Sequence: { id: "A", type_id: 0 } },
          { SpecialToken: { id: "[SEP]", type_id: 0 } },
          { Sequence: { id: "B", type_id: 1 } },
          { SpecialToken: { id: "[SEP]", type_id: 1 } },
        ],
        special_tokens: {
          "[CLS]": { id: "[CLS]", ids: [2], tokens: ["[CLS]"] },
          "[SEP]": { id: "[SEP]", ids: [3], tokens: ["[SEP]"] },
        },
      },
      decoder: { type: "WordPiece", prefix: "##", cleanup: true },
      model: {
        type: "WordPiece",
        unk_token: "[UNK]",
        continuing_subword_prefix: "##",
        max_input_chars_per_word: 100,
        vocab,
      },
    },
    "tokenizer_config.json": { cls_token: "[CLS]", sep_token: "[SEP]", pad_token: "[PAD]" },
  };
}

/**
 * The pieces of a long word cut at every place where no merge (a, b) has a ending in the character before and b
 * starting with the one after (the rule of bpeWordSplitter, written again here).
 */
function cutEverywhere(word: string, merges: [string, string][]): string[] {
  const joined = new Set(merges.map(([a, b]) => `${Array.from(a).at(-1)}${Array.from(b)[0]}`));
  const chars = Array.from(word);
  const pieces: string[] = [];
  let piece = chars[0];
  for (let i = 1; i < chars.length; i++) {
    if (joined.has(chars[i - 1] + chars[i])) piece += chars[i];
    else {
      pieces.push(piece);
      piece = chars[i];
    }
  }
  pieces.push(piece);
  return pieces;
}
/**
 * Vocab entries that no merge makes: the pieces (of two characters or more) of the legacy layout's word for the
 * texts below (no added tokens: the whole text is one word), cut everywhere. Under ignore_merges a piece that is
 * in the vocab becomes that one token, where BPE of the whole word gives several: cutting there would change the
 * tokens, so bpeWordSplitter must keep each piece longer than the longest vocab entry.
 */
const IGNORE_MERGES_EXTRA = [
  ...new Set(
    [1, 2, 3, 5].flatMap((seed) =>
      cutEverywhere(SP + longText(seed, 6000, []).replaceAll(" ", SP), SP_MERGES).filter(
        (p) => Array.from(p).length >= 2 && !SP_MERGES.some(([a, b]) => a + b === p),
      ),
    ),
  ),
].slice(0, 400);

// ---------------------------------------------------------------------------------------------------------------
// the Rust reference library, where installed

interface RustTokenizer {
  encode(
    text: string,
    pair: string | null,
    opts: { addSpecialTokens: boolean },
  ): Promise<{ getIds(): number[] }>;
}
const rustLib = (() => {
  try {
    return createRequire(import.meta.url)("tokenizers") as {
      Tokenizer: { fromString(json: string): RustTokenizer };
    };
  } catch {
    return undefined;
  }
})();

// ---------------------------------------------------------------------------------------------------------------

interface Case {
  name: string;
  files: Record<string, Obj>;
  /** added tokens to put in the texts */
  added: string[];
  /** whether long pre-tokens must be split (false: no safe rule, one call per pre-token) */
  splits: boolean;
}
const CASES: Case[] = [
  {
    name: "SentencePiece legacy (Prepend + Replace, no pre-tokenizer), byte fallback",
    files: sentencePiece({ layout: "legacy", byteFallback: true }),
    added: ["<s>", "</s>"],
    splits: true,
  },
  {
    name: "SentencePiece legacy, no byte fallback (unknowns fused into <unk>)",
    files: sentencePiece({ layout: "legacy", byteFallback: false }),
    added: ["</s>"],
    splits: true,
  },
  {
    name: "SentencePiece legacy, ignore_merges, the pieces of a cut at every safe place in the vocab",
    files: sentencePiece({
      layout: "legacy",
      byteFallback: true,
      ignoreMerges: true,
      extra: IGNORE_MERGES_EXTRA,
    }),
    added: [],
    splits: true,
  },
  {
    name: 'Metaspace prepend_scheme "first", split false',
    files: sentencePiece({ layout: "first", byteFallback: true }),
    added: ["<s>", "</s>"],
    splits: true,
  },
  {
    name: 'Metaspace prepend_scheme "always", split false, no byte fallback',
    files: sentencePiece({ layout: "always", byteFallback: false }),
    added: ["<s>"],
    splits: true,
  },
  {
    name: 'Metaspace prepend_scheme "first", split true',
    files: sentencePiece({ layout: "first", split: true, byteFallback: true }),
    added: ["</s>"],
    splits: true,
  },
  { name: "byte-level BPE (GPT-2)", files: gpt2(), added: ["<|endoftext|>"], splits: true },
  { name: "WordPiece (BERT)", files: bert(), added: ["[CLS]", "[SEP]", "[MASK]"], splits: false },
  { name: 'BPE with end_of_word_suffix "</w>" (not cut)', files: endOfWord(), added: [], splits: false },
  {
    name: "Phi-3 legacy (test/helpers: merges from wikitext words, ▁▁ pieces)",
    files: phi3Tokenizer("legacy") as unknown as Record<string, Obj>,
    added: ["<s>", "<|user|>", "<|endoftext|>"],
    splits: true,
  },
  {
    name: 'Phi-3 Metaspace "first" (test/helpers)',
    files: phi3Tokenizer("metaspace") as unknown as Record<string, Obj>,
    added: ["<|assistant|>", "</s>"],
    splits: true,
  },
  {
    name: "Gemma 2 (test/helpers: Replace only, no pre-tokenizer)",
    files: gemmaTokenizer("gemma2") as unknown as Record<string, Obj>,
    added: ["<start_of_turn>", "<h1>"],
    splits: true,
  },
];

interface Loaded {
  whole: PareTokenizer;
  split: PareTokenizer;
  byDefault: PareTokenizer;
  json: Obj;
}
function load(c: Case): Loaded {
  const dir = folder(c.files);
  return {
    whole: loadTokenizer(dir, { splitWordsLongerThan: Number.POSITIVE_INFINITY }),
    split: loadTokenizer(dir, { splitWordsLongerThan: 1 }),
    byDefault: loadTokenizer(dir),
    json: c.files["tokenizer.json"],
  };
}
/** the longest word any model call got */
function longest(calls: string[][]): number {
  let n = 0;
  for (const words of calls) for (const w of words) n = Math.max(n, w.length);
  return n;
}
const caseNamed = (start: string) => CASES.find((c) => c.name.startsWith(start)) as Case;

describe("split long pre-tokens encode as one model call does (tiny seeded tokenizers)", () => {
  for (const c of CASES) {
    it(c.name, () => {
      const t = load(c);
      for (const seed of [1, 2, 3]) {
        const text = longText(seed, 6000, c.added);
        for (const addSpecialTokens of [true, false]) {
          const one = modelCalls(() => t.whole.encode(text, { addSpecialTokens }));
          const split = modelCalls(() => t.split.encode(text, { addSpecialTokens }));
          const byDefault = t.byDefault.encode(text, { addSpecialTokens });
          expect(one.result.length).toBeGreaterThan(text.length / 10);
          expect(split.result, `seed ${seed}`).toEqual(one.result);
          expect(byDefault, `seed ${seed}`).toEqual(one.result);
          if (c.splits) {
            // the text has long pre-tokens (letter runs, or the whole text), and they were cut
            expect(longest(one.calls)).toBeGreaterThan(300);
            expect(longest(split.calls)).toBeLessThan(longest(one.calls) / 4);
          } else {
            expect(split.calls).toEqual(one.calls);
          }
        }
        // a pair: each text is encoded on its own
        const pair = longText(seed + 100, 2000, c.added);
        expect(t.split.encodeWithTypes(text, pair)).toEqual(t.whole.encodeWithTypes(text, pair));
      }
    });
  }

  it("the SentencePiece merges join across ▁, so a cut at every ▁ would change tokens", () => {
    const t = load(caseNamed("SentencePiece legacy (Prepend"));
    const text = longText(1, 6000, []);
    const tokens = t.whole.encode(text).map((id) => t.whole.decode([id]));
    const vocab = (t.json.model as Obj).vocab as Record<string, number>;
    const inner = Object.keys(vocab).filter((p) => p.indexOf(SP, 1) > 0);
    expect(inner.length).toBeGreaterThan(0);
    // decode turns ▁ into a space: tokens with a space after their first character joined across a ▁
    expect(tokens.some((s) => s.indexOf(" ", 1) > 0)).toBe(true);
  });

  it("ignore_merges: no piece is a whole vocab entry (each is longer than the longest)", () => {
    const c = caseNamed("SentencePiece legacy, ignore_merges");
    const t = load(c);
    const vocab = (t.json.model as Obj).vocab as Record<string, number>;
    const maxLen = Math.max(...Object.keys(vocab).map((k) => k.length), "<unk>".length);
    const text = longText(5, 6000, c.added);
    const { calls } = modelCalls(() => t.split.encode(text));
    const cut = calls.filter((words) => words.length > 1);
    expect(cut.length).toBeGreaterThan(0);
    for (const words of cut) for (const w of words) expect(w.length).toBeGreaterThan(maxLen);
    // the extra entries are whole pieces: one token where a piece is the whole word, none in the long text's
    expect(IGNORE_MERGES_EXTRA.length).toBeGreaterThan(50);
    const extraIds = new Set(IGNORE_MERGES_EXTRA.map((p) => vocab[p]));
    const withSp = IGNORE_MERGES_EXTRA.filter((p) => p.startsWith(SP) && !p.slice(1).includes(SP));
    expect(withSp.length).toBeGreaterThan(0);
    expect(t.split.encode(withSp[0].slice(1), { addSpecialTokens: false })).toEqual([vocab[withSp[0]]]);
    expect(t.whole.encode(text).filter((id) => extraIds.has(id))).toEqual([]);
  });

  it("splitWordsLongerThan must be a number ≥ 0 (E_USAGE)", () => {
    const dir = folder(caseNamed("SentencePiece legacy (Prepend").files);
    for (const bad of [Number.NaN, -1]) {
      let code = "no error";
      try {
        loadTokenizer(dir, { splitWordsLongerThan: bad });
      } catch (e) {
        code = (e as PareError).code;
      }
      expect(code, String(bad)).toBe("E_USAGE");
    }
    expect(loadTokenizer(dir, { splitWordsLongerThan: 0 }).encode("ab ab")).toEqual(
      loadTokenizer(dir).encode("ab ab"),
    );
  });

  it("WordPiece: a word longer than max_input_chars_per_word stays one [UNK]", () => {
    const t = load(caseNamed("WordPiece"));
    const ids = t.split.encode(`${"abc".repeat(50)} ${LEX[0]}`, { addSpecialTokens: false });
    expect(ids[0]).toBe(t.split.tokenToId("[UNK]"));
    expect(ids).toEqual(t.whole.encode(`${"abc".repeat(50)} ${LEX[0]}`, { addSpecialTokens: false }));
  });
});

describe.skipIf(!rustLib)(
  rustLib
    ? "split encoding against the reference library (Rust tokenizers)"
    : "split encoding against the reference library — SKIPPED: the npm package `tokenizers` is not installed",
  () => {
    for (const c of CASES) {
      it(c.name, async () => {
        const t = load(c);
        const rust = (rustLib as NonNullable<typeof rustLib>).Tokenizer.fromString(
          JSON.stringify(c.files["tokenizer.json"]),
        );
        for (const seed of [1, 2]) {
          const text = longText(seed, 6000, c.added);
          const expected = (await rust.encode(text, null, { addSpecialTokens: true })).getIds();
          expect(t.byDefault.encode(text), `seed ${seed}`).toEqual(expected);
          expect(t.split.encode(text), `seed ${seed}`).toEqual(expected);
        }
      });
    }
  },
);

// ---------------------------------------------------------------------------------------------------------------
// the shared fixture models and WikiText-2

const SHARED = path.resolve(process.cwd(), "../shared");
const LLAMA = path.join(SHARED, "models", "llama-gqa-6l");
const BERT = path.join(SHARED, "models", "bert-sst2-4l");
const WIKI = path.join(SHARED, "data", "wikitext-2", "raw-v1", "wiki.test.raw");
const haveShared = [LLAMA, BERT, WIKI].every((p) => fs.existsSync(p));
const SKIP = haveShared ? "" : " — SKIPPED: ../shared (models, WikiText-2) not found";

describe(`shared tokenizers on WikiText-2 (../shared)${SKIP}`, () => {
  it.skipIf(!haveShared)("a 100k-character slice: split at a small threshold equals one call", () => {
    const text = fs.readFileSync(WIKI, "utf8").slice(0, 100_000);
    for (const dir of [LLAMA, BERT]) {
      const whole = loadTokenizer(dir, { splitWordsLongerThan: Number.POSITIVE_INFINITY });
      const one = modelCalls(() => whole.encode(text));
      for (const limit of [1, 64, undefined]) {
        const split = modelCalls(() => loadTokenizer(dir, { splitWordsLongerThan: limit }).encode(text));
        expect(split.result, `${path.basename(dir)} at ${limit}`).toEqual(one.result);
        if (dir === LLAMA) {
          // no pre-tokenizer: one call gets the whole slice as one word; split, the pieces are short
          expect(longest(one.calls)).toBeGreaterThan(100_000);
          expect(longest(split.calls)).toBeLessThan(200);
        }
      }
      expect(one.result.length).toBeGreaterThan(20_000);
    }
  });

  it.skipIf(!haveShared)("the whole WikiText-2 test file encodes", () => {
    const text = fs.readFileSync(WIKI, "utf8");
    expect(text.length).toBeGreaterThan(1_280_000);
    const llama = loadTokenizer(LLAMA).encode(text);
    // <s> and 457,650 tokens: what the Rust reference library gives for this file (checked when writing this test)
    expect(llama.length).toBe(457_651);
    expect(llama[0]).toBe(1);
    const bert = loadTokenizer(BERT).encode(text);
    expect(bert.length).toBeGreaterThan(300_000);
    expect([bert[0], bert.at(-1)]).toEqual([2, 3]);
  });
});
