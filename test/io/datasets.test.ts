import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { PareError } from "../../src/errors.ts";
import {
  readCalibrationText,
  readClassificationFile,
  readDocuments,
  readJsonl,
  readTextFile,
  unescapeSeparator,
} from "../../src/io/datasets.ts";

const root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-data-"));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
let n = 0;
function file(name: string, content: string): string {
  const p = path.join(root, `${n++}-${name}`);
  fs.writeFileSync(p, content);
  return p;
}

function err(f: () => unknown): PareError {
  try {
    f();
  } catch (e) {
    if (e instanceof PareError) return e;
    throw e;
  }
  throw new Error("expected a PareError");
}

describe("readTextFile", () => {
  it("strips a BOM", () => {
    expect(readTextFile(file("a.txt", "\uFEFFhello"))).toBe("hello");
  });
  it("missing file → E_IO naming the path", () => {
    const e = err(() => readTextFile(path.join(root, "nope.txt")));
    expect(e.code).toBe("E_IO");
    expect(e.message).toContain("nope.txt");
  });
  it("a folder → E_IO", () => {
    expect(err(() => readTextFile(root)).code).toBe("E_IO");
  });
  it("empty or whitespace-only → E_DATA_EMPTY", () => {
    expect(err(() => readTextFile(file("e.txt", ""))).code).toBe("E_DATA_EMPTY");
    expect(err(() => readTextFile(file("w.txt", " \n\t\n"))).code).toBe("E_DATA_EMPTY");
  });
});

describe("JSONL and calibration text", () => {
  it("readJsonl parses each non-blank line", () => {
    expect(readJsonl(file("a.jsonl", '{"a":1}\n\n[2]\r\n"x"\n'))).toEqual([{ a: 1 }, [2], "x"]);
  });

  it("a broken JSONL line → E_DATA_INVALID with file:line", () => {
    const p = file("bad.jsonl", '{"text":"a"}\n{oops\n');
    const e = err(() => readJsonl(p));
    expect(e.code).toBe("E_DATA_INVALID");
    expect(e.message).toContain(`${p}:2`);
  });

  it("concatenates .txt files and the text/content fields of .jsonl files", () => {
    const txt = file("a.txt", "Plain text.");
    const jsonl = file("b.jsonl", '{"text": "First."}\n{"content": "Second.", "id": 3}\n');
    expect(readCalibrationText([txt, jsonl])).toBe("Plain text.\n\nFirst.\n\nSecond.");
  });

  it("a JSONL line without text → E_DATA_INVALID naming the line", () => {
    const p = file("c.jsonl", '{"text": "ok"}\n{"body": "no"}\n');
    const e = err(() => readCalibrationText([p]));
    expect(e.code).toBe("E_DATA_INVALID");
    expect(e.message).toContain(":2");
  });

  it("the line named is the file's line, blank lines counted", () => {
    const p = file("d.jsonl", '{"text": "ok"}\n\n\n{"body": "no"}\n');
    expect(err(() => readCalibrationText([p])).message).toContain(`${p}:4:`);
  });

  it("no files → E_USAGE; empty text → E_DATA_EMPTY", () => {
    expect(err(() => readCalibrationText([])).code).toBe("E_USAGE");
    expect(err(() => readCalibrationText([file("e.jsonl", '{"text": "  "}\n')])).code).toBe("E_DATA_EMPTY");
  });
});

describe("readClassificationFile", () => {
  it("'label sentence' lines (SST-2 stsa.binary)", () => {
    const p = file("stsa.binary.dev", "0 one long string of cliches .\n1 a stirring , funny film\n\n");
    expect(readClassificationFile(p)).toEqual([
      { label: 0, text: "one long string of cliches ." },
      { label: 1, text: "a stirring , funny film" },
    ]);
  });

  it("GLUE TSV with a header (SST-2 dev.tsv)", () => {
    const p = file("dev.tsv", "sentence\tlabel\nit 's a charming journey . \t1\nbleak and desperate \t0\n");
    expect(readClassificationFile(p)).toEqual([
      { text: "it 's a charming journey .", label: 1 },
      { text: "bleak and desperate", label: 0 },
    ]);
  });

  it("GLUE TSV with sentence1/sentence2 gives pairs", () => {
    const p = file(
      "rte.tsv",
      "index\tsentence1\tsentence2\tlabel\n0\tA man runs.\tA person moves.\tentailment\n",
    );
    expect(readClassificationFile(p, { labelMap: { entailment: 0, not_entailment: 1 } })).toEqual([
      { text: "A man runs.", textPair: "A person moves.", label: 0 },
    ]);
  });

  it("header-less CoLA TSV (source, label, mark, sentence)", () => {
    const p = file(
      "in_domain_dev.tsv",
      "gj04\t1\t\tThe sailors rode the breeze clear of the rocks.\ngj04\t0\t*\tThe more does Bill smoke.\n",
    );
    expect(readClassificationFile(p)).toEqual([
      { text: "The sailors rode the breeze clear of the rocks.", label: 1 },
      { text: "The more does Bill smoke.", label: 0 },
    ]);
  });

  it("explicit columns override detection (by index and by name)", () => {
    const p = file("x.tsv", "a\t1\tfirst\nb\t0\tsecond\n");
    expect(readClassificationFile(p, { textColumn: 2, labelColumn: 1 })).toEqual([
      { text: "first", label: 1 },
      { text: "second", label: 0 },
    ]);
    const q = file("y.tsv", "id\tbody\tlabel\n7\thello\t1\n");
    expect(readClassificationFile(q, { textColumn: "body", labelColumn: "label" })).toEqual([
      { text: "hello", label: 1 },
    ]);
    const e = err(() => readClassificationFile(q, { textColumn: "missing" }));
    expect(e.code).toBe("E_DATA_INVALID");
  });

  it("string labels map through labelMap; unknown labels name the line", () => {
    const p = file("s.txt", "positive great film\nnegative dull\nneutral meh\n");
    const labelMap = { negative: 0, positive: 1 };
    const e = err(() => readClassificationFile(p, { labelMap }));
    expect(e.code).toBe("E_DATA_INVALID");
    expect(e.message).toContain(`${p}:3`);
    expect(e.message).toContain("neutral");
    const ok = file("s2.txt", "positive great film\nnegative dull\n");
    expect(readClassificationFile(ok, { labelMap }).map((x) => x.label)).toEqual([1, 0]);
  });

  it("malformed lines → E_DATA_INVALID with the line number", () => {
    const short = file("short.tsv", "sentence\tlabel\ngood\t1\nno label here\n");
    const e = err(() => readClassificationFile(short));
    expect(e.code).toBe("E_DATA_INVALID");
    expect(e.message).toContain(`${short}:3`);
    const oneWord = file("one.txt", "1 fine\n0\n");
    expect(err(() => readClassificationFile(oneWord)).message).toContain(`${oneWord}:2`);
    const unknownLayout = file("u.tsv", "a\tb\tc\n");
    expect(err(() => readClassificationFile(unknownLayout)).code).toBe("E_DATA_INVALID");
  });

  it("empty file or header only → E_DATA_EMPTY", () => {
    expect(err(() => readClassificationFile(file("e.tsv", "\n\n"))).code).toBe("E_DATA_EMPTY");
    expect(err(() => readClassificationFile(file("h.tsv", "sentence\tlabel\n"))).code).toBe("E_DATA_EMPTY");
  });

  const shared = path.resolve(process.cwd(), "../shared/data");
  it.skipIf(!fs.existsSync(shared))(
    "reads the shared SST-2 and CoLA files (skipped without ../shared)",
    () => {
      const sst = readClassificationFile(path.join(shared, "sst2/stsa.binary.dev"));
      expect(sst.length).toBeGreaterThan(800);
      expect(new Set(sst.map((x) => x.label))).toEqual(new Set([0, 1]));
      const cola = readClassificationFile(path.join(shared, "cola/cola_public/raw/in_domain_dev.tsv"));
      expect(cola.length).toBeGreaterThan(500);
      expect(cola[0]).toEqual({ text: "The sailors rode the breeze clear of the rocks.", label: 1 });
    },
  );
});

describe("readDocuments (evaluation over documents)", () => {
  it(".jsonl: one document per line (text, else content), texts exactly as written", () => {
    const p = file(
      "docs.jsonl",
      '{"text": " First doc.\\n"}\n\n{"content": "Second.", "id": 2}\r\n{"text": "Third"}\n',
    );
    expect(readDocuments(p)).toEqual({
      docs: [" First doc.\n", "Second.", "Third"],
      empty: 0,
      source: "jsonl",
    });
  });

  it(".jsonl: a bad line → E_DATA_INVALID naming file:line (blank lines counted)", () => {
    const cases: [string, RegExp][] = [
      ['{"text": "a"}\n\n{oops\n', /not valid JSON/],
      ['{"text": "a"}\n\n{"body": "b"}\n', /no "text"/],
      ['{"text": "a"}\n\n{"text": 3}\n', /"text" is number/],
      ['{"text": "a"}\n\n{"text": null}\n', /"text" is null/],
      ['{"text": "a"}\n\n["text"]\n', /a JSON array, not an object/],
      ['{"text": "a"}\n\n"just a string"\n', /a JSON string, not an object/],
    ];
    for (const [content, what] of cases) {
      const p = file("bad.jsonl", content);
      const e = err(() => readDocuments(p));
      expect(e.code, content).toBe("E_DATA_INVALID");
      expect(e.message, content).toContain(`${p}:3: `);
      expect(e.message, content).toMatch(what);
      expect(e.context.line).toBe(3);
      expect(e.hint).toMatch(/one JSON value|\{"text": "\.\.\."\}/);
    }
  });

  it("empty documents are skipped and counted (whitespace only)", () => {
    const p = file("some-empty.jsonl", '{"text": ""}\n{"text": "a"}\n{"text": " \\n "}\n{"text": "b"}\n');
    expect(readDocuments(p)).toEqual({ docs: ["a", "b"], empty: 2, source: "jsonl" });
    const t = file("sep.txt", "one\n\n\n\ntwo\n\n \n\nthree");
    expect(readDocuments(t, { separator: "\n\n" })).toEqual({
      docs: ["one", "two", "three"],
      empty: 2,
      source: "separator",
    });
  });

  it("only empty documents → E_DATA_EMPTY", () => {
    const e = err(() => readDocuments(file("all-empty.jsonl", '{"text": ""}\n{"text": "  "}\n')));
    expect(e.code).toBe("E_DATA_EMPTY");
    expect(err(() => readDocuments(file("all-empty.txt", "x"), { separator: "x" })).code).toBe(
      "E_DATA_EMPTY",
    );
  });

  it("a text file split at a separator; without one, the whole file is one document", () => {
    const t = file("plain.txt", " = A = \nalpha\n<|doc|> = B = \nbeta\n");
    expect(readDocuments(t, { separator: "<|doc|>" })).toEqual({
      docs: [" = A = \nalpha\n", " = B = \nbeta\n"],
      empty: 0,
      source: "separator",
    });
    expect(readDocuments(t)).toEqual({
      docs: [" = A = \nalpha\n<|doc|> = B = \nbeta\n"],
      empty: 0,
      source: "whole",
    });
  });

  it("a separator that never occurs → E_USAGE saying so; an empty one, or one with .jsonl → E_USAGE", () => {
    const t = file("nosep.txt", "one\ntwo\n");
    const e = err(() => readDocuments(t, { separator: "\n\n" }));
    expect(e.code).toBe("E_USAGE");
    expect(e.message).toContain('"\\n\\n" never occurs');
    expect(e.message).toContain(t);
    expect(e.hint).toContain("escapes");
    expect(err(() => readDocuments(t, { separator: "" })).code).toBe("E_USAGE");
    const j = file("x.jsonl", '{"text": "a"}\n');
    expect(err(() => readDocuments(j, { separator: "\n" })).code).toBe("E_USAGE");
  });

  it("unescapeSeparator: \\n \\r \\t \\\\ become the characters; other backslashes stay", () => {
    expect(unescapeSeparator("\\n\\n")).toBe("\n\n");
    expect(unescapeSeparator("a\\tb\\r\\n")).toBe("a\tb\r\n");
    expect(unescapeSeparator("\\\\n")).toBe("\\n");
    expect(unescapeSeparator("\\x\\")).toBe("\\x\\");
    expect(unescapeSeparator("\n")).toBe("\n");
  });
});
