/**
 * Tokenizer families against the reference library. Gemma (the Gemma 2 and Gemma 3 layouts), Phi-3 (the legacy and
 * the Metaspace layouts) and WordLevel tokenizer.json files (test/helpers/tokenizerJsons.ts) must give the same ids
 * and decode to the same text through pare's loadTokenizer as through the Rust Hugging Face `tokenizers` library
 * (the npm package `tokenizers`, a devDependency with prebuilt binaries): wikitext lines, hostile strings and
 * random strings, with and without special tokens, and text pairs (ids and type ids). Variants exercise what pare
 * does itself rather than the JS library: the Metaspace pre-tokenizer (split, prepend_scheme) and decoder, the
 * ByteFallback decoder, added tokens (lstrip / rstrip / single_word, normalized ones, ids as the reference gives
 * them), TemplateProcessing's listed ids, the Unicode \w / \s / digits of Whitespace, WhitespaceSplit and Digits.
 *
 * Without the package, the comparisons are skipped (their describe block says so); the expectations derived by
 * hand at the end run always.
 */
import fs from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { PareError } from "../../src/errors.ts";
import { loadTokenizer, type PareTokenizer } from "../../src/io/tokenizer.ts";
import {
  addedToken,
  exampleLines,
  gemmaTokenizer,
  type Json,
  phi3Tokenizer,
  SP,
  type TokenizerFiles,
  wordLevelTokenizer,
} from "../helpers/tokenizerJsons.ts";

/** The parts of the `tokenizers` package (Node bindings of the Rust library) used here. */
interface RustEncoding {
  getIds(): number[];
  getTypeIds(): number[];
  getTokens(): string[];
}
interface RustTokenizer {
  encode(text: string, pair: string | null, opts: { addSpecialTokens: boolean }): Promise<RustEncoding>;
  decode(ids: number[], skipSpecialTokens: boolean): Promise<string>;
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
const REFERENCE = rustLib
  ? "against the reference library (Rust tokenizers)"
  : "against the reference library — SKIPPED: the npm package `tokenizers` (Rust reference) is not installed";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});
function folder(files: object): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "pare-tokfam-"));
  dirs.push(d);
  for (const [name, content] of Object.entries(files))
    fs.writeFileSync(path.join(d, name), JSON.stringify(content));
  return d;
}
function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof PareError) return e.code;
    throw e;
  }
  return "no error";
}

/** Strings the JS library got wrong, or might: Unicode classes, whitespace kinds, special tokens inside text. */
const HOSTILE = [
  "",
  " ",
  "   ",
  "hello",
  " hello",
  "  hello  world  ",
  "\thello\tworld",
  "line one\nline two\n\nthree\n",
  "\r\nwindows\r\n",
  "naïve café résumé",
  "e\u0301 combining",
  "日本語のテキスト",
  "中文 mixed with English",
  "한국어 텍스트",
  "emoji 😀👍🏽 family 👨‍👩‍👧",
  "ΟΔΟΣ Σίσυφος",
  "İstanbul",
  "ﬁne ligature",
  "x²y³ ½ ٣٤ 12345 67.89",
  "a\u200db",
  "\u00a0nbsp\u00a0",
  "\u0085nel\u0085",
  "\ufeffbom",
  "\u3000ideographic\u3000space",
  "a\u0000b\u0001c\u007f",
  "\u{10FFFF}\u{E000}",
  "lone \ud800 surrogate \udc00",
  "<bos>hello<eos>",
  "<s> hello </s>",
  "<unk>text<unk>",
  "<pad><pad>",
  "<|user|>\nHi there<|end|>\n<|assistant|>",
  "<|user|>   spaced",
  "<|user|>\u0085nel",
  "<|user|>\ufeffbom",
  "text<|endoftext|>more",
  "<|endoftext|>",
  "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n",
  "<start_of_image><image_soft_token><end_of_image>",
  "<h1>Title</h1>",
  "[CLS] hi [SEP]",
  "[UNK]",
  `${SP}already${SP}marked`,
  `${SP}${SP} double`,
  "tab\t\tx",
  "don't won't I'm",
  "...!!!???",
  "A",
  `x${" ".repeat(40)}y`,
  "ab".repeat(600),
  "the ".repeat(200),
  "newword in text, newwordglued, <|lst|> a<|lst|>b a\u0085<|lst|>\ufeffb",
  "<|sw|> a<|sw|>b a <|sw|> b é<|sw|> <|sw|>_x 1<|sw|>",
];
/** wikitext lines from both example files */
const LINES = [
  ...exampleLines("calib-wikitext2-valid.txt").slice(0, 200),
  ...exampleLines("eval-wikitext2-valid.txt").slice(0, 100),
];
const TEXTS = [...HOSTILE, ...LINES];
/** pairs: each hostile string with a wikitext line (odd places) or with another hostile string (even places) */
const PAIRS: [string, string][] = HOSTILE.map((h, i) => [
  h,
  i % 2 ? LINES[i] : HOSTILE[(i * 7) % HOSTILE.length],
]);

/**
 * Unicode blocks whose characters were all assigned long before Unicode 15: the reference library's Unicode tables
 * (its \w, \s, alphabetic, numeric) are older than Node's (Unicode 17 in Node 20.20), so characters assigned since
 * differ (e.g. U+323B0 is a letter for Node only) — a difference of Unicode versions, not of pare.
 */
const STABLE_BLOCKS: [number, number][] = [
  [0x20, 0x7e],
  [0xa0, 0x24f],
  [0x370, 0x3ff],
  [0x400, 0x4ff],
  [0x5d0, 0x5ea],
  [0x621, 0x64a],
  [0x900, 0x97f],
  [0x2000, 0x206f],
  [0x3040, 0x30ff],
  [0x4e00, 0x9fa5],
  [0xac00, 0xd7a3],
  [0x1f300, 0x1f5ff],
];

const FAMILIES: [string, () => TokenizerFiles][] = [
  ["Gemma 2", () => gemmaTokenizer("gemma2")],
  ["Gemma 3", () => gemmaTokenizer("gemma3")],
  ["Phi-3 (legacy normalizer)", () => phi3Tokenizer("legacy")],
  ["Phi-3 (Metaspace)", () => phi3Tokenizer("metaspace")],
  ["WordLevel", () => wordLevelTokenizer()],
];

/** `files` with its tokenizer.json changed by `edit` */
function variant(files: TokenizerFiles, edit: (tok: { [k: string]: Json }) => void): TokenizerFiles {
  const copy = structuredClone(files);
  edit(copy["tokenizer.json"]);
  return copy;
}
/** the next id after the vocab and the added tokens (the id the reference gives a new added token) */
function nextId(tok: { [k: string]: Json }): number {
  const vocab = (tok.model as { vocab: Record<string, number> }).vocab;
  const ids = [...Object.values(vocab), ...(tok.added_tokens as { id: number }[]).map((t) => t.id)];
  return Math.max(...ids) + 1;
}
/** added tokens the hostile strings use: a user-added (normalized, not special) word, lstrip+rstrip, single_word */
function withExtraAdded(tok: { [k: string]: Json }, idShift = 0): void {
  const added = tok.added_tokens as Json[];
  const id = nextId(tok) + idShift;
  added.push(addedToken(id, "newword", { special: false }));
  added.push(addedToken(id + 1, "<|lst|>", { lstrip: true, rstrip: true }));
  added.push({ ...addedToken(id + 2, "<|sw|>"), single_word: true });
}

const S = (id: string, typeId = 0) => ({ SpecialToken: { id, type_id: typeId } });
const Q = (id: "A" | "B", typeId = 0) => ({ Sequence: { id, type_id: typeId } });

const VARIANTS: [string, () => TokenizerFiles][] = [
  ...(["always", "first", "never"] as const).flatMap((scheme) =>
    [true, false].map(
      (split) =>
        [
          `Metaspace prepend_scheme ${scheme}, split ${split}, with its decoder`,
          () =>
            variant(phi3Tokenizer("metaspace"), (t) => {
              t.pre_tokenizer = { type: "Metaspace", replacement: SP, prepend_scheme: scheme, split };
              t.decoder = { type: "Metaspace", replacement: SP, prepend_scheme: scheme, split };
              withExtraAdded(t);
            }),
        ] as [string, () => TokenizerFiles],
    ),
  ),
  [
    "Metaspace of an old file (add_prefix_space, no prepend_scheme, split by default)",
    () =>
      variant(phi3Tokenizer("metaspace"), (t) => {
        t.pre_tokenizer = { type: "Metaspace", replacement: SP, add_prefix_space: true };
      }),
  ],
  [
    "Phi-3 legacy + lstrip/rstrip, single_word, normalized added tokens",
    () => variant(phi3Tokenizer("legacy"), (t) => withExtraAdded(t)),
  ],
  [
    "Gemma 2 + lstrip/rstrip, single_word, normalized added tokens",
    () => variant(gemmaTokenizer("gemma2"), (t) => withExtraAdded(t)),
  ],
  [
    "WordLevel + lstrip/rstrip, single_word, normalized added tokens",
    () => variant(wordLevelTokenizer(), (t) => withExtraAdded(t)),
  ],
  [
    "added tokens whose written ids are not the reference's (inside the vocab, after a gap)",
    () =>
      variant(wordLevelTokenizer(), (t) => {
        withExtraAdded(t, 50);
        (t.added_tokens as { id: number }[])[5].id = 7; // "newword" written with the id of a vocab word
      }),
  ],
  [
    "WordLevel with WhitespaceSplit and Digits (runs)",
    () =>
      variant(wordLevelTokenizer(), (t) => {
        t.pre_tokenizer = {
          type: "Sequence",
          pretokenizers: [{ type: "WhitespaceSplit" }, { type: "Digits", individual_digits: false }],
        };
      }),
  ],
  [
    "WordLevel with the hostile words in its vocab (Unicode classes, final sigma)",
    () =>
      variant(wordLevelTokenizer(), (t) => {
        const vocab = (t.model as { vocab: Record<string, number> }).vocab;
        let next = Object.keys(vocab).length;
        const words = [
          "οδοσ",
          "οδος",
          "σισυφος",
          "日本語のテキスト",
          "中文",
          "a\u200db",
          "x",
          "y",
          "²",
          "½",
          "٣",
          "\ufeff",
        ];
        for (const w of [
          ...words,
          "😀👍🏽",
          "istanbul",
          "i\u0307stanbul",
          "ﬁne",
          "nel",
          "bom",
          "nbsp",
          "ideographic",
        ]) {
          if (!Object.hasOwn(vocab, w)) vocab[w] = next++;
        }
      }),
  ],
  [
    "TemplateProcessing with listed ids that differ from the vocab's, several ids per token",
    () =>
      variant(phi3Tokenizer("legacy"), (t) => {
        t.post_processor = {
          type: "TemplateProcessing",
          single: [S("<s>"), Q("A")],
          pair: [S("<s>"), Q("A"), S("</s>", 1), Q("B", 1)],
          special_tokens: {
            "<s>": { id: "<s>", ids: [5], tokens: ["<s>"] },
            "</s>": { id: "</s>", ids: [2, 7], tokens: ["</s>", "x"] },
          },
        };
      }),
  ],
  [
    "TemplateProcessing with a pair template of $A twice, inside a Sequence with ByteLevel",
    () =>
      variant(gemmaTokenizer("gemma2"), (t) => {
        t.post_processor = {
          type: "Sequence",
          processors: [
            { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
            {
              type: "TemplateProcessing",
              single: [Q("A", 3)],
              pair: [Q("A"), S("key", 2), Q("A", 1)],
              special_tokens: { key: { id: "other", ids: [2], tokens: ["<bos>"] } },
            },
          ],
        };
      }),
  ],
];

/** Differences between pare and the reference on `texts` (ids, type ids of pairs, decoded text), as lines. */
async function differences(
  tok: PareTokenizer,
  rust: RustTokenizer,
  texts: string[],
  pairs: [string, string][],
): Promise<string[]> {
  const out: string[] = [];
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  const show = (x: unknown) => JSON.stringify(x).slice(0, 160);
  // the reference's answers, asked all at once (each call is a round trip to its thread pool)
  const encodings = await Promise.all(
    texts.flatMap((text) =>
      [true, false].map(async (special) => ({
        text,
        special,
        want: await rust.encode(text, null, { addSpecialTokens: special }),
      })),
    ),
  );
  const decodes: Promise<string | undefined>[] = [];
  for (const { text, special, want } of encodings) {
    const got = tok.encode(text, { addSpecialTokens: special });
    if (!same(got, want.getIds())) {
      out.push(
        `${show(text)} (special ${special}): ${show(got)}, reference ${show(want.getIds())} = ${show(want.getTokens())}`,
      );
      continue;
    }
    // the encoding, pieces of it (cut byte sequences, lone byte tokens) and an id outside the vocab
    const lists = [
      got,
      got.slice(1, -1),
      got.slice(0, Math.ceil(got.length / 2)),
      got.filter((_, i) => i % 2 === 0),
    ];
    lists.push([...got, tok.vocabSize + 1000]);
    for (const list of lists) {
      for (const skip of [false, true]) {
        decodes.push(
          rust.decode(list, skip).then((want) => {
            const got = tok.decode(list, skip);
            return got === want
              ? undefined
              : `decode${skip ? " (skip special)" : ""} of ${show(list)} (${show(text)}): ${show(got)}, reference ${show(want)}`;
          }),
        );
      }
    }
  }
  for (const d of await Promise.all(decodes)) if (d !== undefined) out.push(d);
  for (const [a, b] of pairs) {
    const [want, plain] = await Promise.all([
      rust.encode(a, b, { addSpecialTokens: true }),
      rust.encode(a, b, { addSpecialTokens: false }),
    ]);
    const got = tok.encodeWithTypes(a, b);
    if (!same(got.ids, want.getIds()) || !same(got.typeIds, want.getTypeIds())) {
      out.push(
        `pair ${show([a, b])}: ${show(got)}, reference ${show({ ids: want.getIds(), typeIds: want.getTypeIds() })}`,
      );
    }
    const gotPlain = tok.encode(a, { textPair: b, addSpecialTokens: false });
    if (!same(gotPlain, plain.getIds())) {
      out.push(
        `pair without special tokens ${show([a, b])}: ${show(gotPlain)}, reference ${show(plain.getIds())}`,
      );
    }
  }
  return out;
}

describe.skipIf(!rustLib)(REFERENCE, () => {
  const load = (files: TokenizerFiles) => ({
    tok: loadTokenizer(folder(files)),
    rust: (rustLib as NonNullable<typeof rustLib>).Tokenizer.fromString(
      JSON.stringify(files["tokenizer.json"]),
    ),
  });

  describe.each(FAMILIES)("%s", (_name, build) => {
    const files = build();
    it(`encodes ${TEXTS.length} texts (wikitext lines, hostile strings) and ${PAIRS.length} pairs to the reference's ids, and decodes as it does`, async () => {
      const { tok, rust } = load(files);
      expect(await differences(tok, rust, TEXTS, PAIRS)).toEqual([]);
    });

    it("random strings of tricky characters: the reference's ids and decoded text", async () => {
      const { tok, rust } = load(files);
      const unit = fc.oneof(
        fc.constantFrom(
          ..." \t\n\r\u00a0\u0085\ufeff\u3000\u200d\u0301_-.,'!?²½٣0123456789",
          "ΣσςΟΔ",
          "İıéÉßﬁ",
        ),
        fc.constantFrom(
          "<bos>",
          "<s>",
          "</s>",
          "<unk>",
          "<|user|>",
          "<|end|>",
          "<start_of_turn>",
          "[CLS]",
          SP,
        ),
        fc.constantFrom("the", "The", "lobster", " of", "and", "日本", "😀", "👍🏽", "\ud800", "\udc00x"),
        fc
          .constantFrom(...STABLE_BLOCKS)
          .chain(([lo, hi]) => fc.integer({ min: lo, max: hi }).map((c) => String.fromCodePoint(c))),
      );
      await fc.assert(
        fc.asyncProperty(fc.array(unit, { maxLength: 12 }), fc.boolean(), async (parts, special) => {
          const text = parts.join("");
          const want = await rust.encode(text, null, { addSpecialTokens: special });
          const got = tok.encode(text, { addSpecialTokens: special });
          expect(got, JSON.stringify(text)).toEqual(want.getIds());
          expect(tok.decode(got, !special), JSON.stringify(text)).toBe(await rust.decode(got, !special));
        }),
        { seed: 20240611, numRuns: 400 },
      );
    });
  });

  describe.each(VARIANTS)("%s", (_name, build) => {
    it("ids, type ids and decoded text as the reference's", async () => {
      const { tok, rust } = load(build());
      expect(await differences(tok, rust, [...HOSTILE, ...LINES.slice(0, 40)], PAIRS)).toEqual([]);
    });
  });

  it("a WordLevel vocab without its unk_token: both refuse an unknown word, and encode known ones", async () => {
    const files = wordLevelTokenizer({ unkToken: "<missing>" });
    const { tok, rust } = load(files);
    await expect(rust.encode("the lobster zzzq", null, { addSpecialTokens: true })).rejects.toThrow(
      /unk|UNK/,
    );
    expect(codeOf(() => tok.encode("the lobster zzzq"))).toBe("E_TOKENIZER_INVALID");
    const want = await rust.encode("the first", null, { addSpecialTokens: true });
    expect(tok.encode("the first")).toEqual(want.getIds());
  });
});

/** A WordLevel tokenizer whose ids can be worked out by hand. */
function handWordLevel(
  o: { unk?: Json; vocab?: Record<string, Json>; postProcessor?: Json } = {},
): TokenizerFiles {
  const vocab: Record<string, Json> = o.vocab ?? {
    "[UNK]": 0,
    "[CLS]": 1,
    "[SEP]": 2,
    hello: 3,
    world: 4,
    ",": 5,
    "!": 6,
    "1": 7,
    "2": 8,
    "a\u200db": 9,
    οδοσ: 10,
    x: 11,
  };
  const specials = ["[UNK]", "[CLS]", "[SEP]"].filter((t) => Object.hasOwn(vocab, t));
  return {
    "tokenizer.json": {
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: specials.map((t) => addedToken(vocab[t] as number, t)),
      normalizer: { type: "Lowercase" },
      pre_tokenizer: {
        type: "Sequence",
        pretokenizers: [{ type: "Whitespace" }, { type: "Digits", individual_digits: true }],
      },
      post_processor: o.postProcessor ?? {
        type: "TemplateProcessing",
        single: [S("[CLS]"), Q("A"), S("[SEP]")],
        pair: [S("[CLS]"), Q("A"), S("[SEP]"), Q("B", 1), S("[SEP]", 1)],
        special_tokens: {
          "[CLS]": { id: "[CLS]", ids: [1], tokens: ["[CLS]"] },
          "[SEP]": { id: "[SEP]", ids: [2], tokens: ["[SEP]"] },
        },
      },
      decoder: null,
      model:
        o.unk === undefined
          ? { type: "WordLevel", vocab, unk_token: "[UNK]" }
          : { type: "WordLevel", vocab, unk_token: o.unk },
    },
    "tokenizer_config.json": { cls_token: "[CLS]", sep_token: "[SEP]", unk_token: "[UNK]" },
  };
}

describe("WordLevel (expected ids worked out by hand)", () => {
  const tok = loadTokenizer(folder(handWordLevel()));

  it("each word is its vocab id, an unknown one unk_token's; [CLS] … [SEP] around, type ids from the template", () => {
    // lowercased, then Whitespace: \w+ | [^\w\s]+ → hello , world ! → 3 5 4 6
    expect(tok.encode("Hello, world!")).toEqual([1, 3, 5, 4, 6, 2]);
    expect(tok.encode("Hello, world!", { addSpecialTokens: false })).toEqual([3, 5, 4, 6]);
    // Digits(individual): "12" → 1, 2
    expect(tok.encode("hello 12")).toEqual([1, 3, 7, 8, 2]);
    // dog, cat: not in the vocab → [UNK] each (no fusing)
    expect(tok.encode("dog cat hello")).toEqual([1, 0, 0, 3, 2]);
    expect(tok.encodeWithTypes("hello", "world")).toEqual({ ids: [1, 3, 2, 4, 2], typeIds: [0, 0, 0, 1, 1] });
    expect(tok.tokenToId("world")).toBe(4);
    expect(tok.vocabSize).toBe(12);
  });

  it("Unicode word characters, whitespace and lowercasing as the reference's (not JavaScript's ASCII \\w, \\s)", () => {
    // U+200D (zero-width joiner) is a word character (Join_Control) for the reference: one word, id 9
    expect(tok.encode("a\u200db")).toEqual([1, 9, 2]);
    // Σ lowercases to σ one character at a time (String.toLowerCase would give the final ς, an unknown word)
    expect(tok.encode("ΟΔΟΣ")).toEqual([1, 10, 2]);
    // U+0085 is whitespace (dropped); U+FEFF is not (a word of its own, unknown)
    expect(tok.encode("x\u0085hello")).toEqual([1, 11, 3, 2]);
    expect(tok.encode("\ufeffhello")).toEqual([1, 0, 3, 2]);
    // "é" is one word character: "xé" is one unknown word, not "x" + "é"
    expect(tok.encode("xé")).toEqual([1, 0, 2]);
    // ² is numeric (char::is_numeric): a digit of its own after Whitespace keeps "x²" apart as x, ²
    expect(tok.encode("x²")).toEqual([1, 11, 0, 2]);
  });

  it("decodes without a decoder by joining the tokens with spaces; skips special tokens and unknown ids", () => {
    expect(tok.decode([1, 3, 5, 4, 6, 2])).toBe("[CLS] hello , world ! [SEP]");
    expect(tok.decode([1, 3, 5, 4, 6, 2], true)).toBe("hello , world !");
    expect(tok.decode([3, 999, 4])).toBe("hello world");
    expect(tok.decode([999])).toBe("");
  });

  it("an unk_token that is not in the vocab: loads; a known text encodes, an unknown word is a clear error", () => {
    const noUnk = loadTokenizer(folder(handWordLevel({ unk: "<unk>" })));
    expect(noUnk.encode("hello world")).toEqual([1, 3, 4, 2]);
    try {
      noUnk.encode("hello dog");
      expect.unreachable("an unknown word without unk_token must fail");
    } catch (e) {
      expect(e).toBeInstanceOf(PareError);
      const err = e as PareError;
      expect(err.code).toBe("E_TOKENIZER_INVALID");
      expect(err.message).toMatch(/WordLevel vocab has no "dog".*unk_token "<unk>" is not in the vocab/);
      expect(err.hint).toMatch(/unk_token/);
    }
  });

  it.each([
    ["no unk_token", { unk: null as Json }],
    ["a numeric unk_token", { unk: 3 }],
    ["a negative id", { vocab: { "[UNK]": 0, a: -1 } }],
    ["a fractional id", { vocab: { "[UNK]": 0, a: 1.5 } }],
    ["an empty vocab", { vocab: {} }],
  ] as [string, NonNullable<Parameters<typeof handWordLevel>[0]>][])(
    "a WordLevel model with %s is invalid",
    (_name, o) => {
      const files = handWordLevel(o);
      if (o.unk === null) delete (files["tokenizer.json"].model as Record<string, Json>).unk_token;
      expect(codeOf(() => loadTokenizer(folder(files)))).toBe("E_TOKENIZER_INVALID");
    },
  );

  it("a vocab given as a list is invalid for WordLevel", () => {
    const files = handWordLevel();
    (files["tokenizer.json"].model as Record<string, Json>).vocab = [["[UNK]", 0]];
    expect(codeOf(() => loadTokenizer(folder(files)))).toBe("E_TOKENIZER_INVALID");
  });

  it("added tokens get the reference's ids, not the written ones (the next ids after the vocab, in order)", () => {
    const files = handWordLevel();
    const added = files["tokenizer.json"].added_tokens as Json[];
    added.push(addedToken(40, "<x>"), addedToken(3, "<y>"), addedToken(7, "hello"));
    const t = loadTokenizer(folder(files));
    // the vocab has 12 entries: <x> → 12, <y> → 13; "hello" keeps its vocab id 3
    expect(t.encode("<x> hello<y>", { addSpecialTokens: false })).toEqual([12, 3, 13]);
    expect([t.tokenToId("<x>"), t.tokenToId("<y>"), t.tokenToId("hello"), t.vocabSize]).toEqual([
      12, 13, 3, 14,
    ]);
    expect(t.decode([3, 12, 13])).toBe("hello <x> <y>");
  });

  it("TemplateProcessing: the listed ids, all of them, in template order", () => {
    const files = handWordLevel({
      postProcessor: {
        type: "TemplateProcessing",
        single: [S("[CLS]"), Q("A"), S("[SEP]")],
        pair: [S("[CLS]"), Q("A"), Q("B", 1)],
        special_tokens: {
          "[CLS]": { id: "[CLS]", ids: [1, 11], tokens: ["[CLS]", "x"] },
          "[SEP]": { id: "[SEP]", ids: [6], tokens: ["!"] },
        },
      },
    });
    const t = loadTokenizer(folder(files));
    expect(t.encode("hello")).toEqual([1, 11, 3, 6]);
    expect(t.encodeWithTypes("hello", "world")).toEqual({ ids: [1, 11, 3, 4], typeIds: [0, 0, 0, 1] });
  });

  it.each([
    ["a special token that special_tokens does not list", [S("[CLS]"), Q("A"), S("[END]")]],
    ["a $B in the single template", [Q("A"), Q("B")]],
    ["a piece of neither kind", [{ Other: {} }]],
  ] as [string, Json][])("TemplateProcessing with %s is invalid", (_name, single) => {
    const files = handWordLevel();
    (files["tokenizer.json"].post_processor as Record<string, Json>).single = single;
    expect(codeOf(() => loadTokenizer(folder(files)))).toBe("E_TOKENIZER_INVALID");
  });
});

describe("Gemma and Phi-3 (expected ids worked out from the vocab by hand)", () => {
  const gemmaFiles = gemmaTokenizer("gemma2");
  const gemma = loadTokenizer(folder(gemmaFiles));
  const gv = (gemmaFiles["tokenizer.json"].model as { vocab: Record<string, number> }).vocab;
  const phiFiles = phi3Tokenizer("legacy");
  const phi = loadTokenizer(folder(phiFiles));
  const pv = (phiFiles["tokenizer.json"].model as { vocab: Record<string, number> }).vocab;
  const byte = (v: Record<string, number>, b: number) =>
    v[`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`];

  it("Gemma: <bos> first, byte fallback for what no piece covers, tab as its own piece, turn tokens whole", () => {
    // U+1F600 is F0 9F 98 80 in UTF-8, and no piece holds it: four byte tokens
    expect(gemma.encode("😀")).toEqual([gv["<bos>"], ...[0xf0, 0x9f, 0x98, 0x80].map((b) => byte(gv, b))]);
    // Gemma's vocab has "\t" in place of <0x09>
    expect(gemma.encode("\t", { addSpecialTokens: false })).toEqual([gv["\t"]]);
    expect(gemma.encode("<start_of_turn><end_of_turn>", { addSpecialTokens: false })).toEqual([
      gv["<start_of_turn>"],
      gv["<end_of_turn>"],
    ]);
    expect([gemma.bosId, gemma.eosId, gemma.padId]).toEqual([2, 1, 0]);
  });

  it("ByteFallback decoding as the reference: one U+FFFD per byte of a broken sequence, a byte-order mark kept", () => {
    // E6 97 A5 is 日; E6 97 alone is not UTF-8: two bytes, two U+FFFD (TextDecoder would give one)
    expect(gemma.decode([byte(gv, 0xe6), byte(gv, 0x97)])).toBe("\uFFFD\uFFFD");
    expect(gemma.decode([byte(gv, 0xe6), byte(gv, 0x97), byte(gv, 0xa5)])).toBe("日");
    // EF BB BF is U+FEFF; TextDecoder's default drops it at the start
    expect(gemma.decode([byte(gv, 0xef), byte(gv, 0xbb), byte(gv, 0xbf), gv.b])).toBe("\ufeffb");
  });

  it("Phi-3: <|user|> takes the whitespace on its right, U+0085 included but not U+FEFF; <s> first", () => {
    const user = phi.tokenToId("<|user|>") as number;
    const end = phi.tokenToId("<|end|>") as number;
    // rstrip: the spaces and U+0085 go with <|user|>, nothing is left between the two tokens
    expect(phi.encode("<|user|> \u0085 <|end|>")).toEqual([pv["<s>"], user, end]);
    // U+FEFF is not whitespace: the part between is "\ufeff", normalized "▁\ufeff" → ▁ and the bytes EF BB BF
    expect(phi.encode("<|user|>\ufeff<|end|>")).toEqual([
      pv["<s>"],
      user,
      pv[SP],
      ...[0xef, 0xbb, 0xbf].map((b) => byte(pv, b)),
      end,
    ]);
    // a lone surrogate is U+FFFD (EF BF BD), as the reference receives it
    expect(phi.encode("\ud800", { addSpecialTokens: false })).toEqual([
      pv[SP],
      ...[0xef, 0xbf, 0xbd].map((b) => byte(pv, b)),
    ]);
    expect(phi.decode([pv["<s>"], pv[SP], byte(pv, 0x41)])).toBe("<s> A");
    expect(phi.decode([pv[SP], byte(pv, 0x41)])).toBe("A");
  });
});

describe("tokenizer.json and tokenizer_config.json as the reference library reads them", () => {
  /** a BPE tokenizer with the merges given: vocab a b ab c ##b, an unknown character → c */
  const bpe = (merges: Json, extra: Record<string, Json> = {}) => ({
    "tokenizer.json": {
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: [],
      normalizer: null,
      pre_tokenizer: null,
      post_processor: null,
      decoder: null,
      model: {
        type: "BPE",
        dropout: null,
        unk_token: "c",
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        vocab: { a: 0, b: 1, ab: 2, c: 3, "##b": 4 },
        merges,
        ...extra,
      },
    },
  });

  it.each([
    ["merged token (ba) is not in the vocab", [["b", "a"]], {}],
    ["part (z) is not in the vocab", ["a z"], {}],
    [
      "merged token (b + ##b without ## = bb) is not in the vocab",
      [["b", "##b"]],
      { continuing_subword_prefix: "##" },
    ],
  ] as [string, Json, Record<string, Json>][])(
    "a merge whose %s is refused at load, as the reference does",
    (_name, merges, extra) => {
      const files = bpe(merges, extra);
      expect(codeOf(() => loadTokenizer(folder(files)))).toBe("E_TOKENIZER_INVALID");
      if (rustLib)
        expect(() => rustLib.Tokenizer.fromString(JSON.stringify(files["tokenizer.json"]))).toThrow();
    },
  );

  it("consistent merges load; with continuing_subword_prefix ##, a + ##b merges to ab", async () => {
    const plain = bpe([["a", "b"]]);
    expect(loadTokenizer(folder(plain)).encode("abc")).toEqual([2, 3]);
    const prefixed = bpe([["a", "##b"]], { continuing_subword_prefix: "##" });
    expect(codeOf(() => loadTokenizer(folder(prefixed)))).toBe("no error");
    if (rustLib) {
      const rust = rustLib.Tokenizer.fromString(JSON.stringify(plain["tokenizer.json"]));
      expect((await rust.encode("abc", null, { addSpecialTokens: true })).getIds()).toEqual([2, 3]);
      expect(() => rustLib.Tokenizer.fromString(JSON.stringify(prefixed["tokenizer.json"]))).not.toThrow();
    }
  });

  it("tokenizer_config.json's remove_space (a slow-tokenizer option) changes nothing", () => {
    const files = phi3Tokenizer("legacy");
    const plain = loadTokenizer(folder(files));
    const withOption = loadTokenizer(
      folder({
        ...files,
        "tokenizer_config.json": { ...files["tokenizer_config.json"], remove_space: true },
      }),
    );
    for (const text of ["  two  spaces  ", "a\t\tb\n\nc"])
      expect(withOption.encode(text)).toEqual(plain.encode(text));
  });

  it("decoding cleans up spaces before punctuation only when tokenizer_config.json asks for it", () => {
    const files = handWordLevel();
    const ids = [3, 5, 4, 6]; // hello , world !
    expect(loadTokenizer(folder(files)).decode(ids)).toBe("hello , world !");
    const cleaning = { ...files, "tokenizer_config.json": { clean_up_tokenization_spaces: true } };
    expect(loadTokenizer(folder(cleaning)).decode(ids)).toBe("hello, world!");
  });
});
