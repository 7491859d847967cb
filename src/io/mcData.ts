/**
 * Zero-shot multiple-choice data (lm-evaluation-harness conventions). Every item becomes one
 * context and one continuation per choice (WinoGrande: one context per option, shared continuation).
 * Formats: generic JSONL {context, choices, label}; PIQA (X.jsonl + X-labels.lst); ARC and
 * OpenBookQA (original JSONL or Hugging Face rows); WinoGrande; HellaSwag; and the instruction-style
 * JSON of LLM-Adapters' commonsense sets ({instruction, answer: "answer2" | "option1"}; see docs/cli.md).
 */
import fs from "node:fs";
import path from "node:path";
import { PareError } from "../errors.ts";
import { readJsonl } from "./datasets.ts";

export interface McItem {
  /** one per choice (usually all equal) */
  contexts: string[];
  /** one per choice */
  continuations: string[];
  label: number;
}

export const MC_FORMATS = [
  "generic",
  "piqa",
  "arc",
  "openbookqa",
  "winogrande",
  "hellaswag",
  "commonsense",
] as const;
export type McFormat = (typeof MC_FORMATS)[number];

const bad = (file: string, i: number, what: string): never => {
  throw new PareError(
    "E_DATA_INVALID",
    `${file}: item ${i + 1}: ${what}`,
    "check --format and the file's schema (see README: pare eval --task mc)",
  );
};

function uniform(context: string, choices: string[], label: number): McItem {
  return { contexts: choices.map(() => context), continuations: choices, label };
}

/** WinoGrande partial evaluation: the option fills the blank; the text after the blank is scored. */
function blank(sentence: string, options: string[], label: number, file: string, i: number): McItem {
  const k = sentence.indexOf("_");
  if (k < 0) bad(file, i, "WinoGrande sentence without a '_' blank");
  const after = sentence.slice(k + 1).trim();
  return {
    contexts: options.map((o) => sentence.slice(0, k) + o),
    continuations: options.map(() => ` ${after}`),
    label,
  };
}

function letterIndex(labels: string[], key: string, file: string, i: number): number {
  const j = labels.indexOf(key);
  if (j < 0) bad(file, i, `answer "${key}" is not one of the choice labels ${labels.join(", ")}`);
  return j;
}

function hellaswagClean(t: string): string {
  return t
    .trim()
    .replace(/ \[title\]/g, ". ")
    .replace(/\[.*?\]/g, "")
    .replace(/ {2}/g, " ");
}

function parseCommonsense(row: Record<string, unknown>, file: string, i: number): McItem {
  const ins = String(row.instruction ?? "");
  const ans = String(row.answer ?? "")
    .trim()
    .toLowerCase();
  const m = /^(answer|option|solution|ending)(\d+)$/.exec(ans);
  if (!m) bad(file, i, `answer "${ans}" is not like answer2 / option1`);
  const label = Number(m![2]) - 1;
  const marker = new RegExp(`\\b${m![1]}(\\d+):\\s*`, "gi");
  const body = ins.split(/\s*Answer format:/i)[0];
  const parts = body.split(marker);
  // parts = [prefix, "1", text1, "2", text2, …]
  const choices: string[] = [];
  for (let k = 1; k + 1 < parts.length; k += 2) choices.push(parts[k + 1].trim());
  if (choices.length < 2 || label >= choices.length)
    bad(file, i, "could not find the numbered choices in the instruction");
  const prefix = parts[0].trim();
  const q = prefix.replace(/^Please choose the correct [^:]*:\s*/i, "").trim();
  if (m![1].toLowerCase() === "option" && q.includes("_")) return blank(q, choices, label, file, i);
  return uniform(
    `Question: ${q}\nAnswer:`,
    choices.map((c) => ` ${c}`),
    label,
  );
}

export function readMultipleChoice(file: string, format: McFormat): McItem[] {
  if (!fs.existsSync(file)) throw new PareError("E_IO", `${file}: not found`, "check the --data path");
  let rows: Record<string, unknown>[];
  if (format === "commonsense" || file.endsWith(".json")) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(fs.readFileSync(file, "utf8"));
    } catch (e) {
      throw new PareError(
        "E_DATA_INVALID",
        `${file}: not valid JSON (${(e as Error).message})`,
        "give a JSON array or a JSONL file",
      );
    }
    if (!Array.isArray(parsed))
      throw new PareError("E_DATA_INVALID", `${file}: expected a JSON array of items`, "check --format");
    rows = parsed as Record<string, unknown>[];
  } else {
    rows = readJsonl(file) as Record<string, unknown>[];
  }
  if (rows.length === 0)
    throw new PareError("E_DATA_EMPTY", `${file}: no items`, "give a file with at least one item");
  let labels: number[] | undefined;
  if (format === "piqa") {
    const lf = file.replace(/\.jsonl$/, "-labels.lst");
    if (!fs.existsSync(lf))
      throw new PareError(
        "E_DATA_INVALID",
        `${file}: PIQA labels file ${path.basename(lf)} not found next to it`,
        "PIQA ships X.jsonl with X-labels.lst; keep them together",
      );
    labels = fs
      .readFileSync(lf, "utf8")
      .split(/\r?\n/)
      .filter((l) => l.trim() !== "")
      .map(Number);
    if (labels.length !== rows.length)
      throw new PareError(
        "E_DATA_INVALID",
        `${file}: ${rows.length} items but ${labels.length} labels`,
        "the .jsonl and -labels.lst files must be aligned",
      );
  }
  const items = rows.map((r, i) => {
    if (typeof r !== "object" || r === null || Array.isArray(r))
      return bad(file, i, "an item must be a JSON object");
    switch (format) {
      case "generic": {
        const choices = r.choices as unknown[];
        if (typeof r.context !== "string" || !Array.isArray(choices) || !Number.isInteger(r.label))
          bad(file, i, "expected {context, choices, label}");
        return uniform(r.context as string, choices.map(String), r.label as number);
      }
      case "piqa":
        return uniform(`Question: ${r.goal}\nAnswer:`, [` ${r.sol1}`, ` ${r.sol2}`], labels![i]);
      case "arc":
      case "openbookqa": {
        const q = r.question as Record<string, unknown> | string;
        const stem = typeof q === "object" && q !== null ? String(q.stem) : String(r.question_stem ?? q);
        const ch = (typeof q === "object" && q !== null ? q.choices : r.choices) as unknown;
        let texts: string[];
        let keys: string[];
        if (Array.isArray(ch)) {
          if (!ch.every((c) => typeof c === "object" && c !== null))
            return bad(file, i, "choices must be objects {text, label}");
          texts = ch.map((c) => String((c as Record<string, unknown>).text));
          keys = ch.map((c) => String((c as Record<string, unknown>).label));
        } else if (ch && typeof ch === "object") {
          const t = (ch as Record<string, unknown>).text;
          const l = (ch as Record<string, unknown>).label;
          if (!Array.isArray(t) || !Array.isArray(l) || t.length !== l.length)
            return bad(file, i, "choices.text and choices.label must be lists of equal length");
          texts = t.map(String);
          keys = l.map(String);
        } else return bad(file, i, "no choices");
        const label = letterIndex(keys, String(r.answerKey), file, i);
        return format === "arc"
          ? uniform(
              `Question: ${stem}\nAnswer:`,
              texts.map((t) => ` ${t}`),
              label,
            )
          : uniform(
              stem,
              texts.map((t) => ` ${t}`),
              label,
            );
      }
      case "winogrande":
        return blank(
          String(r.sentence),
          [String(r.option1), String(r.option2)],
          Number(r.answer) - 1,
          file,
          i,
        );
      case "hellaswag": {
        // the harness: ctx_a + " " + ctx_b.capitalize() (Python's capitalize also lowercases the rest)
        const b = String(r.ctx_b ?? "");
        const ctx =
          r.ctx_a !== undefined
            ? `${r.ctx_a} ${b.charAt(0).toUpperCase()}${b.slice(1).toLowerCase()}`
            : String(r.ctx);
        const query = hellaswagClean(`${r.activity_label ?? ""}: ${ctx}`);
        if (!Array.isArray(r.endings)) return bad(file, i, "HellaSwag rows need an endings list");
        return uniform(
          query,
          (r.endings as unknown[]).map((e) => ` ${hellaswagClean(String(e))}`),
          Number(r.label),
        );
      }
      case "commonsense":
        return parseCommonsense(r, file, i);
      default:
        return bad(file, i, `unknown format ${format}`);
    }
  });
  items.forEach((it, i) => {
    if (!Number.isInteger(it.label) || it.label < 0 || it.label >= it.continuations.length) {
      bad(file, i, `label ${it.label} is not one of the ${it.continuations.length} choices`);
    }
  });
  return items;
}
