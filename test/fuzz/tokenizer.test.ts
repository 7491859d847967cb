/**
 * Property tests of tokenizer loading (`loadTokenizer`), fixed seeds and run counts: tokenizer.json files with a
 * random part replaced or removed (byte-level BPE and WordPiece), and random bytes, end in a PareError or a
 * working tokenizer — one whose encode gives integer ids in [0, vocabSize) (or a PareError) for any text, and
 * whose decode gives text (or a PareError).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PareError } from "../../src/errors.ts";
import { loadTokenizer, type PareTokenizer } from "../../src/io/tokenizer.ts";
import { makeByteBpeTokenizerJson, makeWordPieceTokenizerJson } from "../helpers/tinyModels.ts";

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "pare-fuzz-tok-"));
});
afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function pare<T>(f: () => T): T | PareError {
  try {
    return f();
  } catch (e) {
    if (e instanceof PareError) return e;
    throw e;
  }
}

/** Loads `tokenizer.json` content; when it loads, checks that it works on `texts`. */
function loadsOrPareError(content: string | Uint8Array, texts: string[]): boolean {
  fs.writeFileSync(path.join(dir, "tokenizer.json"), content);
  const tok = pare(() => loadTokenizer(dir));
  if (tok instanceof PareError) {
    expect(tok.message).not.toMatch(/\n/);
    return true;
  }
  works(tok, texts);
  return true;
}

function works(tok: PareTokenizer, texts: string[]): void {
  expect(Number.isInteger(tok.vocabSize) && tok.vocabSize > 0).toBe(true);
  for (const text of texts) {
    for (const ids of [
      pare(() => tok.encode(text)),
      pare(() => tok.encode(text, { addSpecialTokens: false })),
      pare(() => tok.encodeWithTypes(text, "pair").ids),
    ]) {
      if (ids instanceof PareError) continue;
      for (const id of ids) expect(Number.isInteger(id) && id >= 0 && id < tok.vocabSize).toBe(true);
      const back = pare(() => tok.decode(ids));
      if (!(back instanceof PareError)) expect(typeof back).toBe("string");
    }
  }
  // the probe texts of loadTokenizer itself always work
  expect(tok.encode("Hello world 123.").length).toBeGreaterThan(0);
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Every path (list of keys / indices) into `v`, capped per array so big vocabularies do not dominate. */
function paths(
  v: Json,
  prefix: (string | number)[] = [],
  out: (string | number)[][] = [],
): (string | number)[][] {
  out.push(prefix);
  if (Array.isArray(v)) {
    v.slice(0, 6).forEach((x, i) => {
      paths(x, [...prefix, i], out);
    });
  } else if (v !== null && typeof v === "object") {
    const keys = Object.keys(v);
    const pick = keys.length > 12 ? [...keys.slice(0, 6), ...keys.slice(-6)] : keys;
    for (const k of pick) paths(v[k], [...prefix, k], out);
  }
  return out;
}

/** `base` with the value at `at` replaced by `value` (undefined: removed); unchanged if `at` is gone. */
function setAt(base: Json, at: (string | number)[], value: Json | undefined): Json | undefined {
  if (at.length === 0) return value;
  if (base === null || typeof base !== "object") return base;
  const copy = structuredClone(base) as Record<string | number, Json>;
  let o = copy as Record<string | number, Json>;
  for (const k of at.slice(0, -1)) {
    const next = o[k];
    if (next === null || typeof next !== "object") return copy; // an earlier edit removed this path
    o = next as Record<string | number, Json>;
  }
  const last = at[at.length - 1];
  if (value === undefined) {
    if (Array.isArray(o)) o.splice(Number(last), 1);
    else delete o[last];
  } else o[last] = value;
  return copy;
}

const replacement: fc.Arbitrary<Json | undefined> = fc.oneof(
  fc.constant(undefined),
  fc.constantFrom<Json>(
    null,
    true,
    false,
    0,
    -1,
    1.5,
    1e9,
    2 ** 31,
    "",
    "x",
    "[UNK]",
    "<s>",
    "(",
    "BPE",
    "WordPiece",
  ),
  fc.constantFrom<Json>([], {}, [1, 2], ["a b"], { type: "Nope" }, { Regex: "(a+)+" }, { String: " " }),
  fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<Json>,
);

const texts = fc.array(
  fc.oneof(fc.string({ maxLength: 20 }), fc.string({ unit: "grapheme", maxLength: 12 })),
  {
    minLength: 1,
    maxLength: 3,
  },
);

describe.each([
  ["byte-level BPE", makeByteBpeTokenizerJson(300) as Json, 1001],
  ["WordPiece", makeWordPieceTokenizerJson(["the", "cat", "sat"]) as Json, 2002],
])("loadTokenizer on mutated %s tokenizer.json", (_name, base, seed) => {
  const allPaths = paths(base);

  it("the unmutated file loads and works", () => {
    expect(loadsOrPareError(JSON.stringify(base), ["the cat sat", "Ünïcödé ✓ 你好"])).toBe(true);
    expect(loadTokenizer(dir)).toBeDefined();
  });

  it("one to three parts replaced or removed: PareError or a working tokenizer", () => {
    const edit = fc.tuple(fc.constantFrom(...allPaths), replacement);
    fc.assert(
      fc.property(fc.array(edit, { minLength: 1, maxLength: 3 }), texts, (edits, t) => {
        let json: Json | undefined = base;
        for (const [at, value] of edits) {
          if (json === undefined) break;
          json = setAt(json, at, value);
        }
        return loadsOrPareError(json === undefined ? "" : JSON.stringify(json), t);
      }),
      { seed, numRuns: 250 },
    );
  });

  it("cut short or with random bytes: PareError", () => {
    const text = Buffer.from(JSON.stringify(base));
    fc.assert(
      fc.property(
        fc.nat(text.length - 1),
        fc.array(fc.tuple(fc.nat(text.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
        (cut, flips) => {
          const b = Buffer.from(text);
          for (const [i, v] of flips) b[i] = v;
          return loadsOrPareError(flips.length > 0 ? b : b.subarray(0, cut), ["abc"]);
        },
      ),
      { seed: seed + 1, numRuns: 150 },
    );
  });
});

describe("loadTokenizer on random files", () => {
  it("random bytes and random JSON: PareError or a working tokenizer", () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.json({ maxDepth: 3 })), (content) =>
        loadsOrPareError(content, ["abc"]),
      ),
      { seed: 3003, numRuns: 200 },
    );
  });
});
