/**
 * Text inputs: calibration text (.txt, .jsonl) and labeled classification sets
 * ("label sentence" lines, GLUE TSV with a header, CoLA-style TSV without one).
 */
import { isUtf8 } from "node:buffer";
import fs from "node:fs";
import { PareError } from "../errors.ts";

const TEXT_HINT =
  "give a UTF-8 text file (convert other encodings, e.g. `iconv -f latin1 -t utf-8 in.txt > out.txt`)";

/** 1-based line and column (in characters) of byte offset `at` of `bytes`. */
function position(bytes: Uint8Array, at: number): { line: number; column: number } {
  let line = 1;
  let start = 0;
  for (let i = 0; i < at; i++) {
    if (bytes[i] === 0x0a) {
      line++;
      start = i + 1;
    }
  }
  const column = new TextDecoder().decode(bytes.subarray(start, at)).length + 1;
  return { line, column };
}

/** Byte offset of the first invalid UTF-8 sequence, or -1 (overlongs, surrogates and > U+10FFFF are invalid). */
export function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    let n: number;
    let min: number;
    if (c >= 0xc2 && c <= 0xdf) [n, min] = [1, 0x80];
    else if (c >= 0xe0 && c <= 0xef) [n, min] = [2, 0x800];
    else if (c >= 0xf0 && c <= 0xf4) [n, min] = [3, 0x10000];
    else return i;
    let cp = c & (0x3f >> n);
    for (let k = 1; k <= n; k++) {
      const d = b[i + k];
      if (d === undefined || (d & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (d & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += n + 1;
  }
  return -1;
}

/**
 * Whole file as text: UTF-8 (a BOM is stripped), not binary (no NUL bytes), not UTF-16; must contain something
 * besides whitespace.
 */
export function readTextFile(file: string): string {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === "ENOENT" ? "no such file" : err.code === "EISDIR" ? "is a folder" : err.message;
    throw new PareError("E_IO", `${file}: cannot read (${why})`, "check the path and permissions", {
      file,
      errno: err.code,
    });
  }
  if ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff)) {
    throw new PareError(
      "E_DATA_INVALID",
      `${file}: UTF-16 text (it starts with a UTF-16 byte order mark)`,
      TEXT_HINT,
      {
        file,
      },
    );
  }
  const nul = bytes.indexOf(0);
  if (nul >= 0) {
    const { line, column } = position(bytes, nul);
    throw new PareError(
      "E_DATA_INVALID",
      `${file}:${line}:${column}: binary data (a NUL byte at byte ${nul}), not text`,
      TEXT_HINT,
      { file, line, column, byte: nul },
    );
  }
  const bad = isUtf8(bytes) ? -1 : Math.max(0, firstInvalidUtf8(bytes));
  if (bad >= 0) {
    const { line, column } = position(bytes, bad);
    throw new PareError(
      "E_DATA_INVALID",
      `${file}:${line}:${column}: not UTF-8 (byte 0x${bytes[bad].toString(16).padStart(2, "0")} at byte ${bad})`,
      TEXT_HINT,
      { file, line, column, byte: bad },
    );
  }
  const text = bytes.toString("utf8").replace(/^\uFEFF/, "");
  if (text.trim() === "") {
    throw new PareError("E_DATA_EMPTY", `${file} is empty`, "give a file with text in it", { file });
  }
  return text;
}

function dataError(file: string, line: number, what: string, hint: string): PareError {
  return new PareError("E_DATA_INVALID", `${file}:${line}: ${what}`, hint, { file, line });
}

/** Non-blank lines with their 1-based line numbers. */
function lines(text: string): { text: string; line: number }[] {
  return text
    .split(/\r?\n/)
    .map((t, i) => ({ text: t, line: i + 1 }))
    .filter((l) => l.text.trim() !== "");
}

/** One JSON value per non-blank line, with its 1-based line number. */
export function readJsonlLines(file: string): { value: unknown; line: number }[] {
  return lines(readTextFile(file)).map(({ text, line }) => {
    try {
      return { value: JSON.parse(text) as unknown, line };
    } catch (e) {
      throw dataError(
        file,
        line,
        `not valid JSON (${(e as Error).message})`,
        "each line of a .jsonl file must be one JSON value",
      );
    }
  });
}

/** One JSON value per non-blank line. */
export function readJsonl(file: string): unknown[] {
  return readJsonlLines(file).map((r) => r.value);
}

/** The "text" (or "content") string of a JSONL row; a coded error naming the line otherwise. */
function rowText(file: string, value: unknown, line: number): string {
  const r = (typeof value === "object" && value !== null && !Array.isArray(value) ? value : {}) as Record<
    string,
    unknown
  >;
  const text = typeof r.text === "string" ? r.text : r.content;
  if (typeof text !== "string") {
    const what =
      typeof value !== "object" || value === null || Array.isArray(value)
        ? `a JSON ${value === null ? "null" : Array.isArray(value) ? "array" : typeof value}, not an object`
        : "text" in r
          ? `"text" is ${r.text === null ? "null" : typeof r.text}, not a string`
          : 'no "text" (or "content") string field';
    throw dataError(file, line, what, 'write one object per line, like {"text": "..."}');
  }
  return text;
}

/** Calibration text: .jsonl files contribute each line's "text" (or "content"); other files are plain text. */
export function readCalibrationText(paths: string[]): string {
  if (paths.length === 0) {
    throw new PareError("E_USAGE", "no calibration files given", "give at least one .txt or .jsonl file");
  }
  const parts = paths.map((file) => {
    if (!file.toLowerCase().endsWith(".jsonl")) return readTextFile(file);
    return readJsonlLines(file)
      .map(({ value, line }) => rowText(file, value, line))
      .join("\n\n");
  });
  const text = parts.join("\n\n");
  if (text.trim() === "") {
    throw new PareError("E_DATA_EMPTY", "the calibration text is empty", "give files with text", { paths });
  }
  return text;
}

/** Documents of an evaluation file, and how they were found. */
export interface Documents {
  /** the documents, in file order, without the empty ones */
  docs: string[];
  /** documents skipped because they were empty (nothing but whitespace) */
  empty: number;
  /** "jsonl": one per line ("text" field); "separator": the text split at a separator; "whole": the whole file */
  source: "jsonl" | "separator" | "whole";
}

/** Is `file` read as JSONL (one document per line)? By its extension, as for calibration files. */
export const isJsonl = (file: string): boolean => file.toLowerCase().endsWith(".jsonl");

/**
 * Documents for evaluation: a .jsonl file gives one per line (its "text", or "content", string), a text file
 * split at `separator`, or the whole text file as one. Documents that hold nothing but whitespace are skipped and
 * counted; texts are kept exactly as written (no trimming). A separator that never occurs is an error (the file
 * would be one document, which is rarely what was meant).
 */
export function readDocuments(file: string, opts: { separator?: string } = {}): Documents {
  let docs: string[];
  let source: Documents["source"];
  if (isJsonl(file)) {
    if (opts.separator !== undefined) {
      throw new PareError(
        "E_USAGE",
        `--doc-separator does not apply to ${file}: each line of a .jsonl file is one document`,
        "drop --doc-separator, or give a plain text file",
        { file },
      );
    }
    docs = readJsonlLines(file).map(({ value, line }) => rowText(file, value, line));
    source = "jsonl";
  } else if (opts.separator !== undefined) {
    const sep = opts.separator;
    if (sep === "") {
      throw new PareError(
        "E_USAGE",
        "--doc-separator is empty",
        'give the text between documents, e.g. "\\n\\n"',
      );
    }
    const text = readTextFile(file);
    if (!text.includes(sep)) {
      throw new PareError(
        "E_USAGE",
        `the document separator ${JSON.stringify(sep)} never occurs in ${file} (it would be one document)`,
        "check the separator (\\n, \\r, \\t and \\\\ are understood as escapes), or drop --doc-separator to " +
          "evaluate the file as one text",
        { file, separator: sep },
      );
    }
    docs = text.split(sep);
    source = "separator";
  } else {
    docs = [readTextFile(file)];
    source = "whole";
  }
  const kept = docs.filter((d) => d.trim() !== "");
  if (kept.length === 0) {
    throw new PareError(
      "E_DATA_EMPTY",
      `${file} has no documents with text in them`,
      "give documents with text",
      {
        file,
      },
    );
  }
  return { docs: kept, empty: docs.length - kept.length, source };
}

/**
 * A --doc-separator as typed on a command line: the escapes \n, \r, \t and \\ become newline, carriage
 * return, tab and backslash; any other backslash stays as it is.
 */
export function unescapeSeparator(s: string): string {
  return s.replace(
    /\\([nrt\\])/g,
    (_, c: string) => ({ n: "\n", r: "\r", t: "\t", "\\": "\\" })[c] as string,
  );
}

export interface LabeledExample {
  text: string;
  textPair?: string;
  label: number;
}

export interface ClassificationOptions {
  /** Column name (needs a header row) or 0-based index of the text; overrides detection. */
  textColumn?: string | number;
  /** Column name or 0-based index of the label; overrides detection. */
  labelColumn?: string | number;
  /** Column name or index of the second text of a pair (e.g. sentence2). */
  textPairColumn?: string | number;
  /** String labels → ids, e.g. config.json's label2id. */
  labelMap?: Record<string, number>;
}

const TEXT_NAMES = ["sentence", "text", "sentence1"];
const HEADER_NAMES = new Set([...TEXT_NAMES, "sentence2", "label"]);
const COLUMNS_HINT =
  "supported: 'label sentence' lines, TSV with a header (sentence/text/sentence1[+sentence2], label), " +
  "or CoLA-style TSV (source, label, mark, sentence); or name the columns explicitly";

/**
 * Labeled examples from (a) `label sentence` lines (SST-2 stsa.binary), (b) TSV with a header row
 * (GLUE: sentence/text/sentence1 [+ sentence2], label), (c) header-less TSV like CoLA
 * (source, label, mark, sentence). Explicit columns override the detection.
 */
export function readClassificationFile(file: string, opts: ClassificationOptions = {}): LabeledExample[] {
  const rows = lines(readTextFile(file));
  const parseLabel = (cell: string, line: number): number => {
    const s = cell.trim();
    if (opts.labelMap && Object.hasOwn(opts.labelMap, s)) return opts.labelMap[s];
    if (/^-?\d+$/.test(s)) return Number(s);
    throw dataError(
      file,
      line,
      `unknown label "${s}"`,
      "labels must be integers or keys of the label map (label2id)",
    );
  };
  const isLabel = (s: string | undefined) =>
    s !== undefined &&
    (/^-?\d+$/.test(s.trim()) || (opts.labelMap !== undefined && Object.hasOwn(opts.labelMap, s.trim())));

  const explicit = opts.textColumn !== undefined || opts.labelColumn !== undefined;
  let examples: LabeledExample[];
  if (!explicit && !rows.some((r) => r.text.includes("\t"))) {
    // (a) "label sentence"
    examples = rows.map(({ text, line }) => {
      const m = /^\s*(\S+)\s+(\S.*?)\s*$/.exec(text);
      if (!m) throw dataError(file, line, "expected 'label sentence'", COLUMNS_HINT);
      return { label: parseLabel(m[1], line), text: m[2] };
    });
  } else {
    const first = rows[0].text.split("\t").map((c) => c.trim());
    const hasHeader = first.some(
      (c) => HEADER_NAMES.has(c.toLowerCase()) || c === opts.textColumn || c === opts.labelColumn,
    );
    const named = (name: string) => first.findIndex((c) => c.toLowerCase() === name);
    const col = (c: string | number | undefined, what: string): number | undefined => {
      if (typeof c === "number" || c === undefined) return c;
      const i = hasHeader ? first.indexOf(c) : -1;
      if (i < 0) throw dataError(file, rows[0].line, `no ${what} column "${c}" in the header`, COLUMNS_HINT);
      return i;
    };
    let textCol = col(opts.textColumn, "text");
    let labelCol = col(opts.labelColumn, "label");
    let pairCol = col(opts.textPairColumn, "text pair");
    if (hasHeader) {
      const t = TEXT_NAMES.map(named).find((i) => i >= 0);
      textCol ??= t;
      labelCol ??= named("label");
      if (opts.textPairColumn === undefined && textCol === named("sentence1") && named("sentence2") >= 0) {
        pairCol = named("sentence2");
      }
    } else if (first.length === 4 && isLabel(first[1])) {
      // CoLA raw: source \t label \t original mark \t sentence
      textCol ??= 3;
      labelCol ??= 1;
    } else if (first.length === 2) {
      const labelFirst = isLabel(first[0]) && !isLabel(first[1]);
      textCol ??= labelFirst ? 1 : 0;
      labelCol ??= labelFirst ? 0 : 1;
    }
    const valid = (c: number | undefined): c is number => Number.isInteger(c) && (c as number) >= 0;
    if (!valid(textCol) || !valid(labelCol) || (pairCol !== undefined && !valid(pairCol))) {
      throw dataError(
        file,
        rows[0].line,
        "cannot tell which columns hold the text and the label",
        COLUMNS_HINT,
      );
    }
    const need = Math.max(textCol, labelCol, pairCol ?? 0) + 1;
    examples = rows.slice(hasHeader ? 1 : 0).map(({ text, line }) => {
      const cells = text.split("\t");
      if (cells.length < need) {
        throw dataError(
          file,
          line,
          `expected at least ${need} tab-separated columns, found ${cells.length}`,
          COLUMNS_HINT,
        );
      }
      const ex: LabeledExample = { text: cells[textCol].trim(), label: parseLabel(cells[labelCol], line) };
      if (ex.text === "") throw dataError(file, line, "empty text", COLUMNS_HINT);
      if (pairCol !== undefined) ex.textPair = cells[pairCol].trim();
      return ex;
    });
  }
  if (examples.length === 0) {
    const hint = "give a file with at least one labeled example";
    throw new PareError("E_DATA_EMPTY", `${file} has no examples`, hint, { file });
  }
  return examples;
}
