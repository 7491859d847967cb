/**
 * Small but structurally faithful tokenizer.json builders for the tokenizer families pare must encode exactly as
 * the reference library (Rust Hugging Face `tokenizers`) does:
 * - Gemma (SentencePiece BPE, byte fallback, normalizer Replace " " → "▁"): the Gemma 2 layout (no pre-tokenizer)
 *   and the Gemma 3 layout (the same plus a no-op pre-tokenizer Split(" ", MergedWithPrevious), as transformers'
 *   GemmaConverter writes it, and the image / turn added tokens);
 * - Phi-3 / Llama (SentencePiece BPE, byte fallback): the legacy layout (normalizer Prepend "▁" + Replace) and
 *   the newer one (pre-tokenizer Metaspace, prepend_scheme "first", split false), with <unk>/<s>/</s>,
 *   <|endoftext|> and the chat tokens (rstrip, as Phi-3's are);
 * - a WordLevel tokenizer (NFD + Lowercase + StripAccents, Whitespace + individual Digits, [CLS] … [SEP]), as
 *   tokenizers' WordLevelTrainer writes one.
 *
 * The BPE merges are learned (plain BPE, most frequent pair first, ties broken by the pair's text) from the
 * words of examples/data/calib-wikitext2-valid.txt, so that common English words are one or two tokens; every
 * merge's parts and result are in the vocab, as the reference library requires. Vocab ids: the special tokens,
 * the 256 byte tokens <0x00> … <0xFF>, the corpus' characters, then one id per merge.
 */
import fs from "node:fs";
import { fileURLToPath } from "node:url";

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export interface TokenizerFiles {
  "tokenizer.json": { [k: string]: Json };
  "tokenizer_config.json": { [k: string]: Json };
}

/** The SentencePiece word-boundary mark. */
export const SP = "\u2581";

const CORPUS_FILE = fileURLToPath(new URL("../../examples/data/calib-wikitext2-valid.txt", import.meta.url));

/** Non-empty lines of an examples/data file (wikitext-2 validation text). */
export function exampleLines(name = "calib-wikitext2-valid.txt"): string[] {
  const file = fileURLToPath(new URL(`../../examples/data/${name}`, import.meta.url));
  return fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "");
}

export function addedToken(
  id: number,
  content: string,
  o: { special?: boolean; normalized?: boolean; lstrip?: boolean; rstrip?: boolean } = {},
): { [k: string]: Json } {
  const special = o.special ?? true;
  return {
    id,
    content,
    single_word: false,
    lstrip: o.lstrip ?? false,
    rstrip: o.rstrip ?? false,
    normalized: o.normalized ?? !special,
    special,
  };
}

/** TemplateProcessing that puts `bos` (id `bosId`) before each sequence: "bos:0 $A:0" / "bos:0 $A:0 bos:1 $B:1". */
function bosTemplate(bos: string, bosId: number): { [k: string]: Json } {
  const st = (typeId: number) => ({ SpecialToken: { id: bos, type_id: typeId } });
  const seq = (id: string, typeId: number) => ({ Sequence: { id, type_id: typeId } });
  return {
    type: "TemplateProcessing",
    single: [st(0), seq("A", 0)],
    pair: [st(0), seq("A", 0), st(1), seq("B", 1)],
    special_tokens: { [bos]: { id: bos, ids: [bosId], tokens: [bos] } },
  };
}

const byteToken = (b: number) => `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`;

/** Words of the corpus as SentencePiece sees them ("▁" + word, split on spaces), with their counts. */
function spWordCounts(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of fs.readFileSync(CORPUS_FILE, "utf8").split("\n")) {
    for (const w of line.split(" ")) {
      if (w === "") continue;
      const word = SP + w;
      counts.set(word, (counts.get(word) ?? 0) + 1);
    }
  }
  return counts;
}

let learned: { chars: string[]; merges: [string, string][] } | undefined;

/**
 * Plain BPE training on the corpus words seen at least twice: `nMerges` merges, the most frequent adjacent pair
 * first (ties: the pair first met in the sorted word list). Digits are never merged (SentencePiece's
 * split_digits, as in Gemma and Llama). The characters are those of all the corpus words.
 */
function learnMerges(nMerges = 420): { chars: string[]; merges: [string, string][] } {
  if (learned) return learned;
  const counts = spWordCounts();
  const chars = [...new Set([...counts.keys()].flatMap((w) => Array.from(w)))].sort();
  // symbols as numbers: index into `symbols`
  const symbols: string[] = [];
  const symbolId = new Map<string, number>();
  const intern = (sym: string) => {
    let id = symbolId.get(sym);
    if (id === undefined) {
      id = symbols.length;
      symbols.push(sym);
      symbolId.set(sym, id);
    }
    return id;
  };
  const words = [...counts]
    .filter(([, n]) => n >= 2)
    .sort((a, b) => (a[0] < b[0] ? -1 : 1))
    .map(([w, n]) => ({ syms: Array.from(w, intern), n }));
  const noMerge = new Set(symbols.filter((c) => /\p{Nd}/u.test(c)).map((c) => symbolId.get(c)));
  const SHIFT = 2 ** 21;
  const merges: [string, string][] = [];
  for (let m = 0; m < nMerges; m++) {
    const pairs = new Map<number, number>();
    for (const { syms, n } of words) {
      for (let i = 0; i + 1 < syms.length; i++) {
        if (noMerge.has(syms[i]) || noMerge.has(syms[i + 1])) continue;
        const key = syms[i] * SHIFT + syms[i + 1];
        pairs.set(key, (pairs.get(key) ?? 0) + n);
      }
    }
    let best = -1;
    let bestN = 1;
    for (const [key, n] of pairs) {
      if (n > bestN) {
        best = key;
        bestN = n;
      }
    }
    if (best < 0) break;
    const a = Math.floor(best / SHIFT);
    const b = best % SHIFT;
    const merged = intern(symbols[a] + symbols[b]);
    merges.push([symbols[a], symbols[b]]);
    for (const w of words) {
      const out: number[] = [];
      for (let i = 0; i < w.syms.length; i++) {
        if (i + 1 < w.syms.length && w.syms[i] === a && w.syms[i + 1] === b) {
          out.push(merged);
          i++;
        } else out.push(w.syms[i]);
      }
      w.syms = out;
    }
  }
  learned = { chars, merges };
  return learned;
}

/**
 * A SentencePiece-BPE vocab: `specials` first (ids 0 …), the 256 byte tokens (with `byteOverride` naming some of
 * them differently, e.g. Gemma's "\t" for <0x09>), "▁", the corpus characters, `extraPieces`, then the results
 * of `extraMerges` and of the learned merges, in that rank order. Returns the vocab and the merges in rank order.
 */
function spVocab(
  specials: string[],
  extraPieces: string[],
  extraMerges: [string, string][],
  byteOverride: Record<number, string> = {},
): { vocab: Record<string, number>; merges: [string, string][] } {
  const vocab: Record<string, number> = {};
  const add = (t: string) => {
    if (!Object.hasOwn(vocab, t)) vocab[t] = Object.keys(vocab).length;
  };
  for (const s of specials) add(s);
  for (let b = 0; b < 256; b++) add(byteOverride[b] ?? byteToken(b));
  const { chars, merges } = learnMerges();
  add(SP);
  for (const c of [...chars, ...extraPieces]) add(c);
  const all: [string, string][] = [];
  for (const [a, b] of [...extraMerges, ...merges]) {
    if (!Object.hasOwn(vocab, a) || !Object.hasOwn(vocab, b)) continue;
    add(a + b);
    all.push([a, b]);
  }
  return { vocab, merges: all };
}

/** Whitespace-run pieces, as SentencePiece models with allow_whitespace_only_pieces have them. */
const SPACE_MERGES: [string, string][] = [
  [SP, SP],
  [SP + SP, SP + SP],
  [SP + SP + SP + SP, SP + SP + SP + SP],
];

const SP_DECODER = (strip: boolean): { [k: string]: Json } => ({
  type: "Sequence",
  decoders: [
    { type: "Replace", pattern: { String: SP }, content: " " },
    { type: "ByteFallback" },
    { type: "Fuse" },
    ...(strip ? [{ type: "Strip", content: " ", start: 1, stop: 0 }] : []),
  ],
});

const bpeModel = (
  vocab: Record<string, number>,
  merges: [string, string][],
  unk: string,
  mergeStrings: boolean,
): { [k: string]: Json } => ({
  type: "BPE",
  dropout: null,
  unk_token: unk,
  continuing_subword_prefix: null,
  end_of_word_suffix: null,
  fuse_unk: true,
  byte_fallback: true,
  ignore_merges: false,
  vocab,
  merges: mergeStrings ? merges.map(([a, b]) => `${a} ${b}`) : merges,
});

/**
 * A Gemma tokenizer: <pad>=0 <eos>=1 <bos>=2 <unk>=3 <mask>=4, <start_of_turn>/<end_of_turn> (special), two
 * user-defined pieces (HTML tags: added tokens that are not special and not normalized), "\t" in place of
 * <0x09> and "\n", "\n\n" pieces, BPE with byte_fallback and fuse_unk, TemplateProcessing adding <bos>, decoder
 * Replace ▁→" ", ByteFallback, Fuse. "gemma3" adds the pre-tokenizer Split(" ", MergedWithPrevious) and the
 * image tokens after the vocab (ids beyond the model's pieces, as Gemma 3's <start_of_image> etc.).
 */
export function gemmaTokenizer(variant: "gemma2" | "gemma3" = "gemma2"): TokenizerFiles {
  const specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"];
  const userDefined = ["<h1>", "</h1>"];
  const { vocab, merges } = spVocab([...specials, ...userDefined], ["\n"], [["\n", "\n"], ...SPACE_MERGES], {
    9: "\t",
  });
  const added = [
    ...specials.map((t) => addedToken(vocab[t], t)),
    ...userDefined.map((t) => addedToken(vocab[t], t, { special: false, normalized: false })),
  ];
  if (variant === "gemma3") {
    let next = Object.keys(vocab).length;
    for (const t of ["<start_of_image>", "<end_of_image>", "<image_soft_token>"]) {
      vocab[t] = next;
      added.push(addedToken(next++, t));
    }
  }
  return {
    "tokenizer.json": {
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: added,
      normalizer: { type: "Replace", pattern: { String: " " }, content: SP },
      pre_tokenizer:
        variant === "gemma3"
          ? { type: "Split", pattern: { String: " " }, behavior: "MergedWithPrevious", invert: false }
          : null,
      post_processor: bosTemplate("<bos>", vocab["<bos>"]),
      decoder: SP_DECODER(false),
      model: bpeModel(vocab, merges, "<unk>", variant === "gemma2"),
    },
    "tokenizer_config.json": {
      add_bos_token: true,
      add_eos_token: false,
      bos_token: "<bos>",
      eos_token: variant === "gemma3" ? "<end_of_turn>" : "<eos>",
      pad_token: "<pad>",
      unk_token: "<unk>",
      clean_up_tokenization_spaces: false,
      tokenizer_class: "GemmaTokenizer",
    },
  };
}

/** Phi-3's chat tokens: <|endoftext|> (no strip), the others strip the whitespace on their right. */
export const PHI3_CHAT_TOKENS = [
  "<|endoftext|>",
  "<|assistant|>",
  "<|placeholder1|>",
  "<|system|>",
  "<|end|>",
  "<|user|>",
];

/**
 * A Phi-3 (Llama-style SentencePiece) tokenizer: <unk>=0 <s>=1 </s>=2, byte tokens, "▁▁" pieces, merges, then the
 * chat tokens after the vocab; TemplateProcessing adding <s>; decoder Replace, ByteFallback, Fuse, Strip(" ", 1).
 * "legacy": normalizer Sequence[Prepend "▁", Replace " " → "▁"], no pre-tokenizer (Phi-3-mini's file);
 * "metaspace": no normalizer, pre-tokenizer Metaspace(▁, prepend_scheme "first", split false) (newer conversions).
 */
export function phi3Tokenizer(variant: "legacy" | "metaspace" = "legacy"): TokenizerFiles {
  const { vocab, merges } = spVocab(["<unk>", "<s>", "</s>"], [], SPACE_MERGES);
  const added = ["<unk>", "<s>", "</s>"].map((t) => addedToken(vocab[t], t));
  let next = Object.keys(vocab).length;
  for (const t of PHI3_CHAT_TOKENS) {
    added.push(addedToken(next, t, { rstrip: t !== "<|endoftext|>" }));
    next++;
  }
  return {
    "tokenizer.json": {
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: added,
      normalizer:
        variant === "legacy"
          ? {
              type: "Sequence",
              normalizers: [
                { type: "Prepend", prepend: SP },
                { type: "Replace", pattern: { String: " " }, content: SP },
              ],
            }
          : null,
      pre_tokenizer:
        variant === "metaspace"
          ? { type: "Metaspace", replacement: SP, prepend_scheme: "first", split: false }
          : null,
      post_processor: bosTemplate("<s>", vocab["<s>"]),
      decoder: SP_DECODER(true),
      model: bpeModel(vocab, merges, "<unk>", false),
    },
    "tokenizer_config.json": {
      add_bos_token: true,
      add_eos_token: false,
      bos_token: "<s>",
      eos_token: "<|endoftext|>",
      pad_token: "<|endoftext|>",
      unk_token: "<unk>",
      clean_up_tokenization_spaces: false,
      legacy: variant === "legacy",
      tokenizer_class: "LlamaTokenizer",
    },
  };
}

/**
 * A WordLevel tokenizer as tokenizers' WordLevelTrainer writes one: [UNK]=0 [CLS]=1 [SEP]=2 [PAD]=3 [MASK]=4,
 * then the `nWords` most frequent words of the corpus (lowercased, accents stripped, split as the Whitespace
 * pre-tokenizer does, digits one by one); normalizer NFD + Lowercase + StripAccents, pre-tokenizer
 * Sequence[Whitespace, Digits(individual)], TemplateProcessing [CLS] $A [SEP] / [CLS] $A [SEP] $B:1 [SEP]:1,
 * no decoder. `unkToken` overrides model.unk_token (e.g. one that is not in the vocab).
 */
export function wordLevelTokenizer(o: { nWords?: number; unkToken?: string } = {}): TokenizerFiles {
  const specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"];
  const counts = new Map<string, number>();
  for (const line of fs.readFileSync(CORPUS_FILE, "utf8").split("\n")) {
    const norm = line.normalize("NFD").toLowerCase().replace(/\p{M}/gu, "");
    for (const w of norm.match(/[\p{L}\p{M}\p{Nd}\p{Pc}]+|[^\p{L}\p{M}\p{Nd}\p{Pc}\s]+/gu) ?? []) {
      for (const piece of w.split(/(\p{N})/u)) {
        if (piece !== "") counts.set(piece, (counts.get(piece) ?? 0) + 1);
      }
    }
  }
  const words = [...counts]
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .slice(0, o.nWords ?? 400)
    .map(([w]) => w);
  const vocab: Record<string, number> = {};
  for (const t of [...specials, ...words]) if (!Object.hasOwn(vocab, t)) vocab[t] = Object.keys(vocab).length;
  const st = (id: string, typeId: number) => ({ SpecialToken: { id, type_id: typeId } });
  const seq = (id: string, typeId: number) => ({ Sequence: { id, type_id: typeId } });
  return {
    "tokenizer.json": {
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: specials.map((t) => addedToken(vocab[t], t)),
      normalizer: {
        type: "Sequence",
        normalizers: [{ type: "NFD" }, { type: "Lowercase" }, { type: "StripAccents" }],
      },
      pre_tokenizer: {
        type: "Sequence",
        pretokenizers: [{ type: "Whitespace" }, { type: "Digits", individual_digits: true }],
      },
      post_processor: {
        type: "TemplateProcessing",
        single: [st("[CLS]", 0), seq("A", 0), st("[SEP]", 0)],
        pair: [st("[CLS]", 0), seq("A", 0), st("[SEP]", 0), seq("B", 1), st("[SEP]", 1)],
        special_tokens: {
          "[CLS]": { id: "[CLS]", ids: [vocab["[CLS]"]], tokens: ["[CLS]"] },
          "[SEP]": { id: "[SEP]", ids: [vocab["[SEP]"]], tokens: ["[SEP]"] },
        },
      },
      decoder: null,
      model: { type: "WordLevel", vocab, unk_token: o.unkToken ?? "[UNK]" },
    },
    "tokenizer_config.json": {
      cls_token: "[CLS]",
      sep_token: "[SEP]",
      pad_token: "[PAD]",
      unk_token: "[UNK]",
      mask_token: "[MASK]",
      clean_up_tokenization_spaces: false,
      tokenizer_class: "PreTrainedTokenizerFast",
    },
  };
}
