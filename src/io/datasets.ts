/**
 * Text inputs: calibration text (.txt, .jsonl) and labeled classification sets
 * ("label sentence" lines, GLUE TSV with a header, CoLA-style TSV without one).
 */
import fs from "node:fs";
import { PareError } from "../errors.ts";

/** Whole file as text (UTF-8, BOM stripped); must contain something besides whitespace. */
export function readTextFile(file: string): string {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === "ENOENT" ? "no such file" : err.code === "EISDIR" ? "is a folder" : err.message;
    throw new PareError("E_IO", `${file}: cannot read (${why})`, "check the path and permissions", {
      file,
      errno: err.code,
    });
  }
  text = text.replace(/^\uFEFF/, "");
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

/** One JSON value per non-blank line. */
export function readJsonl(file: string): unknown[] {
  return lines(readTextFile(file)).map(({ text, line }) => {
    try {
      return JSON.parse(text) as unknown;
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

/** Calibration text: .jsonl files contribute each line's "text" (or "content"); other files are plain text. */
export function readCalibrationText(paths: string[]): string {
  if (paths.length === 0) {
    throw new PareError("E_USAGE", "no calibration files given", "give at least one .txt or .jsonl file");
  }
  const parts = paths.map((file) => {
    if (!file.toLowerCase().endsWith(".jsonl")) return readTextFile(file);
    const rows = readJsonl(file);
    return rows
      .map((row, i) => {
        const r = (typeof row === "object" && row !== null ? row : {}) as Record<string, unknown>;
        const text = typeof r.text === "string" ? r.text : r.content;
        if (typeof text !== "string") {
          throw dataError(
            file,
            i + 1,
            'no "text" or "content" string field',
            'write lines like {"text": "..."}',
          );
        }
        return text;
      })
      .join("\n\n");
  });
  const text = parts.join("\n\n");
  if (text.trim() === "") {
    throw new PareError("E_DATA_EMPTY", "the calibration text is empty", "give files with text", { paths });
  }
  return text;
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
