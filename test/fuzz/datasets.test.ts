/**
 * Property tests of the data readers (fixed seeds and run counts): random bytes, random text and random
 * TSV-shaped lines given to the text, JSONL, calibration and classification readers end in a result or a
 * PareError (never another exception); a result is well-formed (integer labels, non-empty texts), and text that
 * is read back is exactly the file's UTF-8 content; the multiple-choice reader likewise on malformed rows.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PareError } from "../../src/errors.ts";
import {
  readCalibrationText,
  readClassificationFile,
  readJsonl,
  readTextFile,
} from "../../src/io/datasets.ts";
import { MC_FORMATS, readMultipleChoice } from "../../src/io/mcData.ts";

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "pare-fuzz-data-"));
});
afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function pare<T>(f: () => T): T | PareError {
  try {
    return f();
  } catch (e) {
    if (e instanceof PareError) {
      expect(e.message).not.toMatch(/\n/);
      expect(e.hint).not.toBe("");
      return e;
    }
    throw e;
  }
}

function write(name: string, content: string | Uint8Array): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, content);
  return p;
}

/** Every reader on one file; checks the shape of what they return. */
function readAll(content: string | Uint8Array): boolean {
  const txt = write("data.txt", content);
  const jsonl = write("data.jsonl", content);
  const text = pare(() => readTextFile(txt));
  if (!(text instanceof PareError)) {
    expect(text.trim()).not.toBe("");
    const bytes = typeof content === "string" ? Buffer.from(content) : Buffer.from(content);
    expect(Buffer.from(text).equals(bytes) || Buffer.from(`\uFEFF${text}`).equals(bytes)).toBe(true);
  }
  const rows = pare(() => readJsonl(jsonl));
  if (!(rows instanceof PareError)) expect(Array.isArray(rows)).toBe(true);
  for (const f of [[txt], [jsonl], [txt, jsonl]]) {
    const calib = pare(() => readCalibrationText(f));
    if (!(calib instanceof PareError)) expect(calib.trim()).not.toBe("");
  }
  for (const opts of [
    {},
    { textColumn: 0, labelColumn: 1 },
    { textColumn: "sentence", labelColumn: "label" },
    { labelMap: { pos: 1, neg: 0 } },
    { textColumn: 1, labelColumn: 0, textPairColumn: 2 },
  ]) {
    const ex = pare(() => readClassificationFile(txt, opts));
    if (ex instanceof PareError) continue;
    expect(ex.length).toBeGreaterThan(0);
    for (const e of ex) {
      expect(Number.isInteger(e.label)).toBe(true);
      expect(typeof e.text).toBe("string");
    }
  }
  return true;
}

/** The multiple-choice reader in every format on one .jsonl file. */
function readMc(content: string | Uint8Array): boolean {
  const jsonl = write("mc.jsonl", content);
  write("mc-labels.lst", "0\n1\n0\n1\n0\n1\n");
  for (const format of MC_FORMATS) {
    const items = pare(() => readMultipleChoice(jsonl, format));
    if (items instanceof PareError) continue;
    for (const it of items) {
      expect(it.contexts.length).toBe(it.continuations.length);
      expect(Number.isInteger(it.label)).toBe(true);
    }
  }
  return true;
}

const cell = fc.oneof(
  fc.constantFrom(
    "0",
    "1",
    "-1",
    "2",
    "pos",
    "neg",
    "label",
    "sentence",
    "sentence1",
    "sentence2",
    "text",
    "",
    " ",
  ),
  fc.string({ maxLength: 8 }),
);
const tsvLine = fc.array(cell, { maxLength: 5 }).map((cells) => cells.join("\t"));
const jsonLine = fc.oneof(
  fc.json({ maxDepth: 2 }),
  fc
    .record(
      {
        text: fc.string({ maxLength: 10 }),
        context: fc.string({ maxLength: 10 }),
        choices: fc.array(fc.string({ maxLength: 5 }), { maxLength: 4 }),
        label: fc.oneof(fc.integer({ min: -2, max: 5 }), fc.string({ maxLength: 2 })),
        goal: fc.string({ maxLength: 5 }),
        sol1: fc.string({ maxLength: 5 }),
        sol2: fc.string({ maxLength: 5 }),
        question: fc.oneof(fc.string({ maxLength: 5 }), fc.json({ maxDepth: 1 })),
        answerKey: fc.constantFrom("A", "B", "1", "Z", ""),
        sentence: fc.string({ maxLength: 8 }),
        option1: fc.string({ maxLength: 5 }),
        option2: fc.string({ maxLength: 5 }),
        answer: fc.constantFrom("1", "2", "option1", "answer2", ""),
        ctx: fc.string({ maxLength: 5 }),
        endings: fc.array(fc.string({ maxLength: 5 }), { maxLength: 4 }),
        instruction: fc.string({ maxLength: 8 }),
      },
      { requiredKeys: [] },
    )
    .map((o) => JSON.stringify(o)),
);

describe("data readers (fuzz)", () => {
  it("random bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (b) => readAll(b)),
      { seed: 61, numRuns: 200 },
    );
  });

  it("random text (any Unicode, odd line ends, BOMs)", () => {
    const piece = fc.oneof(
      fc.string({ unit: "grapheme", maxLength: 10 }),
      fc.constantFrom("\n", "\r\n", "\r", "\t", "\uFEFF", "\u2028", "\0", " ", "\u00a0"),
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 12 }), (parts) => readAll(parts.join(""))),
      { seed: 62, numRuns: 200 },
    );
  });

  it("TSV- and JSONL-shaped lines", () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(tsvLine, jsonLine), { minLength: 1, maxLength: 6 }),
        fc.constantFrom("\n", "\r\n"),
        (lines, eol) => readAll(lines.join(eol)),
      ),
      { seed: 63, numRuns: 300 },
    );
  });
});

describe("multiple-choice reader (fuzz)", () => {
  // KNOWN BUG (src/io/mcData.ts, readMultipleChoice): rows that are not objects (null, numbers), hellaswag rows
  // without `endings`, arc/openbookqa choices that are not objects / lists throw TypeError instead of
  // E_DATA_INVALID. Remove `.fails` once the reader validates its rows.
  it("JSONL-shaped lines: a result or a PareError", () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(jsonLine, fc.constantFrom("null", "0", "{}")), { minLength: 1, maxLength: 6 }),
        (lines) => readMc(lines.join("\n")),
      ),
      { seed: 64, numRuns: 200 },
    );
  });
});
