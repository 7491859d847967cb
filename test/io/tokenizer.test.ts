import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { PareError } from "../../src/errors.ts";
import { loadTokenizer } from "../../src/io/tokenizer.ts";

const dirs: string[] = [];
function folder(files: Record<string, unknown>): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "pare-tok-"));
  dirs.push(d);
  for (const [name, content] of Object.entries(files)) {
    fs.writeFileSync(path.join(d, name), typeof content === "string" ? content : JSON.stringify(content));
  }
  return d;
}
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof PareError) return e.code;
    throw e;
  }
  return "no error";
}

const added = (id: number, content: string) => ({
  id,
  content,
  single_word: false,
  lstrip: false,
  rstrip: false,
  normalized: false,
  special: true,
});

const WORDPIECE_VOCAB = [
  "[PAD]",
  "[UNK]",
  "[CLS]",
  "[SEP]",
  "[MASK]",
  "the",
  "cat",
  "sat",
  "on",
  "mat",
  "##s",
  "un",
  "##believ",
  "##able",
  ".",
  ",",
  "!",
];

/** A BERT-style (lowercasing WordPiece) tokenizer.json. */
const wordPiece = {
  version: "1.0",
  truncation: null,
  padding: null,
  added_tokens: WORDPIECE_VOCAB.slice(0, 5).map((t, i) => added(i, t)),
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
    vocab: Object.fromEntries(WORDPIECE_VOCAB.map((t, i) => [t, i])),
  },
};

/** GPT-2's byte → printable character table. */
function byteChars(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const out: string[] = [];
  let n = 0;
  for (let b = 0; b < 256; b++) out[b] = String.fromCharCode(bs.includes(b) ? b : 256 + n++);
  return out;
}

const MERGES = ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or"];
const bpeVocab: Record<string, number> = Object.fromEntries(byteChars().map((c, b) => [c, b]));
for (const m of MERGES) bpeVocab[m.replace(" ", "")] = Object.keys(bpeVocab).length;
bpeVocab["<|endoftext|>"] = Object.keys(bpeVocab).length; // 263

/** A GPT-2-style byte-level BPE tokenizer.json. */
const byteLevel = {
  version: "1.0",
  truncation: null,
  padding: null,
  added_tokens: [added(263, "<|endoftext|>")],
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
    vocab: bpeVocab,
    merges: MERGES,
  },
};

describe("loadTokenizer", () => {
  it("WordPiece: encode, pairs, decode, special ids", () => {
    const tok = loadTokenizer(
      folder({
        "tokenizer.json": wordPiece,
        "special_tokens_map.json": { pad_token: { content: "[PAD]" } },
        "config.json": { bos_token_id: 2, eos_token_id: [3, 4] },
      }),
    );
    expect(tok.encode("The cats sat on the mat.")).toEqual([2, 5, 6, 10, 7, 8, 5, 9, 14, 3]);
    expect(tok.encode("Unbelievable!")).toEqual([2, 11, 12, 13, 16, 3]);
    expect(tok.encode("dog")).toEqual([2, 1, 3]);
    expect(tok.encode("the cat", { addSpecialTokens: false })).toEqual([5, 6]);
    expect(tok.encode("the cat", { textPair: "sat" })).toEqual([2, 5, 6, 3, 7, 3]);
    expect(tok.decode([2, 5, 6, 10, 7, 3], true)).toBe("the cats sat");
    expect(tok.decode([])).toBe("");
    expect(tok.tokenToId("mat")).toBe(9);
    expect(tok.tokenToId("dog")).toBeUndefined();
    expect([tok.padId, tok.bosId, tok.eosId, tok.vocabSize]).toEqual([0, 2, 3, 17]);
  });

  it("byte-level BPE: merges, unicode round trip, special tokens from tokenizer_config.json", () => {
    const tok = loadTokenizer(
      folder({
        "tokenizer.json": byteLevel,
        "tokenizer_config.json": {
          bos_token: { content: "<|endoftext|>" },
          eos_token: "<|endoftext|>",
          pad_token: null,
        },
      }),
    );
    const id = (t: string) => bpeVocab[t];
    expect(tok.encode("hello world")).toEqual([id("hello"), id("Ġwor"), id("l"), id("d")]);
    expect(tok.encode("hello<|endoftext|>")).toEqual([id("hello"), 263]);
    for (const text of ["hello world", "héllo wörld ✓ 日本", "  spaces\tand\nnewlines  "]) {
      expect(tok.decode(tok.encode(text))).toBe(text);
    }
    expect(tok.decode([id("hello"), 263], true)).toBe("hello");
    expect([tok.bosId, tok.eosId, tok.padId, tok.vocabSize]).toEqual([263, 263, undefined, 264]);
  });

  it("a folder without tokenizer.json is incomplete, even with tokenizer.model", () => {
    const dir = folder({ "tokenizer.model": "sp" });
    expect(codeOf(() => loadTokenizer(dir))).toBe("E_FOLDER_INCOMPLETE");
    try {
      loadTokenizer(dir);
    } catch (e) {
      expect((e as PareError).hint).toMatch(/save_pretrained/);
    }
  });

  it.each([
    ["garbage JSON", "{this is not json"],
    ["a JSON array", "[1, 2]"],
    ["an unknown model type", { ...wordPiece, model: { type: "Nope" } }],
    ["no added_tokens", { ...wordPiece, added_tokens: undefined }],
    ["an empty object", {}],
  ])("tokenizer.json with %s is invalid", (_name, content) => {
    expect(codeOf(() => loadTokenizer(folder({ "tokenizer.json": content })))).toBe("E_TOKENIZER_INVALID");
  });

  it("garbage tokenizer_config.json is invalid", () => {
    const dir = folder({ "tokenizer.json": wordPiece, "tokenizer_config.json": "{," });
    expect(codeOf(() => loadTokenizer(dir))).toBe("E_TOKENIZER_INVALID");
  });
});

const models = path.resolve(process.cwd(), "../shared/models");
const haveModels = fs.existsSync(path.join(models, "llama-gqa-6l"));

describe("real fixture models (../shared/models)", () => {
  // Skipped when ../shared is absent: users of pare do not have the fixture models.
  it.skipIf(!haveModels)(
    `encode matches the documented ids and every reference.json input${haveModels ? "" : " (SKIPPED: ../shared/models not found)"}`,
    () => {
      const expected: Record<string, number[]> = {
        "llama-gqa-6l": [1, 468, 1063, 691, 261, 586],
        "bert-sst2-4l": [2, 322, 259, 43, 224, 3],
      };
      for (const [name, ids] of Object.entries(expected)) {
        const dir = path.join(models, name);
        const tok = loadTokenizer(dir);
        expect(tok.encode("Once upon a time"), name).toEqual(ids);
        const ref = JSON.parse(fs.readFileSync(path.join(dir, "reference", "reference.json"), "utf8")) as {
          inputs: { text: string; input_ids: number[] }[];
        };
        expect(ref.inputs.length).toBeGreaterThan(0);
        for (const input of ref.inputs)
          expect(tok.encode(input.text), `${name}: ${input.text}`).toEqual(input.input_ids);
      }
      const llama = loadTokenizer(path.join(models, "llama-gqa-6l"));
      expect([llama.bosId, llama.eosId, llama.padId, llama.vocabSize]).toEqual([1, 2, undefined, 4096]);
      expect(llama.decode(llama.encode("Once upon a time"), true)).toBe("Once upon a time");
      const bert = loadTokenizer(path.join(models, "bert-sst2-4l"));
      expect([bert.padId, bert.vocabSize]).toEqual([0, 6000]);
    },
  );
});
