/**
 * readMultipleChoice: every supported format parsed from small fixture files written to a temp folder, with the
 * contexts / continuations / labels lm-evaluation-harness builds for the same rows (PIQA, ARC, OpenBookQA,
 * WinoGrande partial evaluation, HellaSwag preprocessing, the LLM-Adapters "commonsense" instruction JSON), the
 * coded errors, and — when ../shared is present — the real evaluation files.
 *
 * The fixture rows are made up, modeled on the real files' layout (no data is copied from ../shared).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isPareError } from "../../src/errors.ts";
import { type McFormat, type McItem, readMultipleChoice } from "../../src/io/mcData.ts";
import { REPO_ROOT } from "../helpers/cli.ts";

let root: string;
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-mcdata-"));
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** Writes `name` under the temp root and returns its path. */
function write(name: string, text: string): string {
  const p = path.join(root, name);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, text);
  return p;
}

const jsonl = (rows: unknown[]) => `${rows.map((r) => JSON.stringify(r)).join("\n")}\n`;

/** The PareError code thrown by `fn` (fails the test when it does not throw a PareError). */
function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (isPareError(e)) return e.code;
    throw new Error(`expected a PareError, got ${String(e)}`);
  }
  throw new Error("expected a PareError, nothing was thrown");
}

/** An item whose choices all share one context (the usual case). */
function uniformItem(context: string, continuations: string[], label: number): McItem {
  return { contexts: continuations.map(() => context), continuations, label };
}

describe("generic JSONL {context, choices, label}", () => {
  it("keeps context and choices verbatim (no delimiter added)", () => {
    const f = write(
      "generic.jsonl",
      jsonl([
        { context: "The capital of France is", choices: [" Paris", " Rome", " Berlin"], label: 0 },
        { context: "2 + 2 =", choices: [" 5", " 4"], label: 1 },
      ]),
    );
    expect(readMultipleChoice(f, "generic")).toEqual([
      uniformItem("The capital of France is", [" Paris", " Rome", " Berlin"], 0),
      uniformItem("2 + 2 =", [" 5", " 4"], 1),
    ]);
  });
});

describe("PIQA (X.jsonl + X-labels.lst)", () => {
  it('"Question: {goal}\\nAnswer:" + " {sol}", labels from the parallel .lst file', () => {
    const f = write(
      "piqa/valid.jsonl",
      jsonl([
        {
          goal: "How do I keep bread from going stale?",
          sol1: "Store it in an airtight bag at room temperature.",
          sol2: "Store it in an open bowl next to the oven.",
        },
        {
          goal: "bookshelf",
          sol1: "hold up books with a shelf bracket ",
          sol2: "hold up books with a  paper clip ",
        },
      ]),
    );
    write("piqa/valid-labels.lst", "0\n1\n");
    expect(readMultipleChoice(f, "piqa")).toEqual([
      uniformItem(
        "Question: How do I keep bread from going stale?\nAnswer:",
        [" Store it in an airtight bag at room temperature.", " Store it in an open bowl next to the oven."],
        0,
      ),
      // the harness keeps the solutions' stray spaces
      uniformItem(
        "Question: bookshelf\nAnswer:",
        [" hold up books with a shelf bracket ", " hold up books with a  paper clip "],
        1,
      ),
    ]);
  });
});

describe("ARC", () => {
  const expected = uniformItem(
    "Question: Which tool is best for measuring the mass of a rock?\nAnswer:",
    [" a ruler", " a balance", " a thermometer", " a graduated cylinder"],
    1,
  );

  it('original nested JSONL: "Question: {stem}\\nAnswer:" + " {text}", answerKey letter → index', () => {
    const f = write(
      "arc-original.jsonl",
      jsonl([
        {
          id: "Mercury_0000001",
          question: {
            stem: "Which tool is best for measuring the mass of a rock?",
            choices: [
              { text: "a ruler", label: "A" },
              { text: "a balance", label: "B" },
              { text: "a thermometer", label: "C" },
              { text: "a graduated cylinder", label: "D" },
            ],
          },
          answerKey: "B",
        },
      ]),
    );
    expect(readMultipleChoice(f, "arc")).toEqual([expected]);
  });

  it("Hugging Face rows, numeric answerKeys (labels 1..4) and a five-choice item", () => {
    const f = write(
      "arc-hf.jsonl",
      jsonl([
        {
          id: "NYSEDREGENTS_2000_4_1",
          question: "Which tool is best for measuring the mass of a rock?",
          choices: {
            text: ["a ruler", "a balance", "a thermometer", "a graduated cylinder"],
            label: ["1", "2", "3", "4"],
          },
          answerKey: "2",
        },
        {
          id: "Mercury_0000002",
          question: "Which of these is a renewable resource?",
          choices: {
            text: ["coal", "oil", "natural gas", "wind", "uranium"],
            label: ["A", "B", "C", "D", "E"],
          },
          answerKey: "D",
        },
      ]),
    );
    expect(readMultipleChoice(f, "arc")).toEqual([
      expected,
      uniformItem(
        "Question: Which of these is a renewable resource?\nAnswer:",
        [" coal", " oil", " natural gas", " wind", " uranium"],
        3,
      ),
    ]);
  });
});

describe("OpenBookQA", () => {
  const expected = uniformItem(
    "Frost is most likely to form on",
    [" a hot stove", " grass on a cold morning", " a running engine", " a sunny beach"],
    1,
  );

  it("original nested JSONL: the stem alone is the context", () => {
    const f = write(
      "obqa-original.jsonl",
      jsonl([
        {
          id: "9-001",
          question: {
            stem: "Frost is most likely to form on",
            choices: [
              { text: "a hot stove", label: "A" },
              { text: "grass on a cold morning", label: "B" },
              { text: "a running engine", label: "C" },
              { text: "a sunny beach", label: "D" },
            ],
          },
          answerKey: "B",
        },
      ]),
    );
    expect(readMultipleChoice(f, "openbookqa")).toEqual([expected]);
  });

  it("Hugging Face rows (question_stem, choices {text, label})", () => {
    const f = write(
      "obqa-hf.jsonl",
      jsonl([
        {
          id: "9-001",
          question_stem: "Frost is most likely to form on",
          choices: {
            text: ["a hot stove", "grass on a cold morning", "a running engine", "a sunny beach"],
            label: ["A", "B", "C", "D"],
          },
          answerKey: "B",
        },
      ]),
    );
    expect(readMultipleChoice(f, "openbookqa")).toEqual([expected]);
  });
});

describe("WinoGrande (partial evaluation)", () => {
  it('contexts = sentence up to "_" + each option; continuation = " " + the rest; answer "1"/"2" → 0/1', () => {
    const f = write(
      "winogrande.jsonl",
      jsonl([
        {
          qID: "3QHITW7OYO-1",
          sentence: "The trophy would not fit in the suitcase because the _ was too big.",
          option1: "trophy",
          option2: "suitcase",
          answer: "1",
        },
        {
          qID: "3QHITW7OYO-2",
          sentence: "Maria lent her umbrella to Sarah, so _ stayed dry on the walk home.",
          option1: "Maria",
          option2: "Sarah",
          answer: "2",
        },
      ]),
    );
    expect(readMultipleChoice(f, "winogrande")).toEqual([
      {
        contexts: [
          "The trophy would not fit in the suitcase because the trophy",
          "The trophy would not fit in the suitcase because the suitcase",
        ],
        continuations: [" was too big.", " was too big."],
        label: 0,
      },
      {
        contexts: [
          "Maria lent her umbrella to Sarah, so Maria",
          "Maria lent her umbrella to Sarah, so Sarah",
        ],
        continuations: [" stayed dry on the walk home.", " stayed dry on the walk home."],
        label: 1,
      },
    ]);
  });
});

describe("HellaSwag", () => {
  it("ActivityNet row: activity_label + ctx_a + capitalized ctx_b; endings get a leading space", () => {
    const f = write(
      "hellaswag-anet.jsonl",
      jsonl([
        {
          ind: 24,
          activity_label: "Roof shingle removal",
          ctx_a: "A man is sitting on a roof.",
          ctx_b: "he",
          ctx: "A man is sitting on a roof. he",
          endings: [
            "is using wrap to wrap a pair of skis.",
            "is ripping level tiles off.",
            "is holding a rubik's cube.",
            "starts pulling up roofing on a roof.",
          ],
          source_id: "activitynet~v_0000000",
          split: "val",
          split_type: "indomain",
          label: "3",
        },
      ]),
    );
    expect(readMultipleChoice(f, "hellaswag")).toEqual([
      uniformItem(
        "Roof shingle removal: A man is sitting on a roof. He",
        [
          " is using wrap to wrap a pair of skis.",
          " is ripping level tiles off.",
          " is holding a rubik's cube.",
          " starts pulling up roofing on a roof.",
        ],
        3,
      ),
    ]);
  });

  it("WikiHow row: [title] → '. ', other [tags] removed, double spaces collapsed (harness preprocess)", () => {
    const f = write(
      "hellaswag-wikihow.jsonl",
      jsonl([
        {
          ind: 4,
          activity_label: "Personal Care and Style",
          ctx_a: "[header] How to dye your hair with kool aid [title] Wash your hair.",
          ctx_b: "",
          endings: [
            "[substeps] Use a clarifying shampoo. [title] Dry your hair.",
            "Then eat the kool aid  powder.",
            "[step] Pour the drink mix into a bowl.",
            "Cut your hair short first.",
          ],
          label: "0",
        },
      ]),
    );
    // expected strings produced by lm-evaluation-harness's hellaswag preprocess() on the same row
    expect(readMultipleChoice(f, "hellaswag")).toEqual([
      uniformItem(
        "Personal Care and Style: How to dye your hair with kool aid. Wash your hair.",
        [
          "  Use a clarifying shampoo.. Dry your hair.",
          " Then eat the kool aid powder.",
          "  Pour the drink mix into a bowl.",
          " Cut your hair short first.",
        ],
        0,
      ),
    ]);
  });

  // src bug (src/io/mcData.ts, hellaswag case): the harness builds ctx_a + " " + ctx_b.capitalize(); Python's
  // str.capitalize() also lowercases the rest of ctx_b, pare only uppercases the first character.
  it("ctx_b is capitalized as Python's str.capitalize() does (rest lowercased)", () => {
    const f = write(
      "hellaswag-caps.jsonl",
      jsonl([
        {
          activity_label: "Baseball",
          ctx_a: "A crowd watches a pitcher on the mound.",
          ctx_b: "the man in the Red Sox cap waves.",
          endings: ["He throws the ball.", "He eats a hot dog."],
          label: "0",
        },
      ]),
    );
    expect(readMultipleChoice(f, "hellaswag")[0].contexts[0]).toBe(
      "Baseball: A crowd watches a pitcher on the mound. The man in the red sox cap waves.",
    );
  });
});

describe("commonsense instruction JSON (LLM-Adapters layout)", () => {
  it("ARC-like row: choices parsed out of the instruction, ARC-style context, answerN → N−1", () => {
    const f = write(
      "commonsense/ARC-Easy/test.json",
      JSON.stringify([
        {
          instruction:
            "Please choose the correct answer to the question: Which tool is best for measuring the mass of a rock?\n\n" +
            "Answer1: a ruler Answer2: a balance Answer3: a thermometer Answer4: a graduated cylinder\n\n" +
            "Answer format: answer1/answer2/answer3/answer4",
          input: "",
          output: "the correct answer is answer2",
          answer: "answer2",
        },
        {
          instruction:
            "Please choose the correct answer to the question: Which of these is a renewable resource?\n\n" +
            "Answer1: coal. Answer2: oil. Answer3: natural gas. Answer4: wind. Answer5: uranium.\n\n" +
            "Answer format: answer1/answer2/answer3/answer4/answer5",
          input: "",
          output: "the correct answer is answer4",
          answer: "answer4",
        },
      ]),
    );
    expect(readMultipleChoice(f, "commonsense")).toEqual([
      uniformItem(
        "Question: Which tool is best for measuring the mass of a rock?\nAnswer:",
        [" a ruler", " a balance", " a thermometer", " a graduated cylinder"],
        1,
      ),
      uniformItem(
        "Question: Which of these is a renewable resource?\nAnswer:",
        [" coal.", " oil.", " natural gas.", " wind.", " uranium."],
        3,
      ),
    ]);
  });

  it("WinoGrande-like row with 'Answer format' on its own line: blank filled by each option", () => {
    const f = write(
      "commonsense/wino-newline.json",
      JSON.stringify([
        {
          instruction:
            "Please choose the correct answer to fill in the blank to complete the given sentence: " +
            "The trophy would not fit in the suitcase because the _ was too big.\n\n" +
            "Option1: trophy Option2: suitcase\n\nAnswer format: option1/option2",
          input: "",
          output: "the correct answer is option1",
          answer: "option1",
        },
      ]),
    );
    expect(readMultipleChoice(f, "commonsense")).toEqual([
      {
        contexts: [
          "The trophy would not fit in the suitcase because the trophy",
          "The trophy would not fit in the suitcase because the suitcase",
        ],
        continuations: [" was too big.", " was too big."],
        label: 0,
      },
    ]);
  });

  // src bug (src/io/mcData.ts, parseCommonsense: `ins.split(/\n\s*Answer format:/i)`): in the real WinoGrande
  // test.json (all 1267 rows) "Answer format:" follows the last option on the same line ("Option2: Maria Answer
  // format: option1/option2"), so the trailer is not cut off and option 2 becomes "suitcase Answer format:
  // option1/option2"; its context then ends "... because the suitcase Answer format: option1/option2".
  it("WinoGrande-like row in the real layout ('Answer format' on the options' line)", () => {
    const f = write(
      "commonsense/winogrande/test.json",
      JSON.stringify([
        {
          instruction:
            "Please choose the correct answer to fill in the blank to complete the given sentence: " +
            "The trophy would not fit in the suitcase because the _ was too big.\n\n" +
            "Option1: trophy Option2: suitcase Answer format: option1/option2",
          input: "",
          output: "the correct answer is option1",
          answer: "option1",
        },
      ]),
    );
    expect(readMultipleChoice(f, "commonsense")).toEqual([
      {
        contexts: [
          "The trophy would not fit in the suitcase because the trophy",
          "The trophy would not fit in the suitcase because the suitcase",
        ],
        continuations: [" was too big.", " was too big."],
        label: 0,
      },
    ]);
  });
});

describe("errors", () => {
  it("missing data file → E_IO", () => {
    expect(codeOf(() => readMultipleChoice(path.join(root, "nope.jsonl"), "generic"))).toBe("E_IO");
  });

  it("PIQA without its -labels.lst file → E_DATA_INVALID", () => {
    const f = write("piqa-nolabels/valid.jsonl", jsonl([{ goal: "g", sol1: "a", sol2: "b" }]));
    expect(codeOf(() => readMultipleChoice(f, "piqa"))).toBe("E_DATA_INVALID");
  });

  it("PIQA labels not aligned with the items → E_DATA_INVALID", () => {
    const f = write(
      "piqa-misaligned/valid.jsonl",
      jsonl([
        { goal: "g1", sol1: "a", sol2: "b" },
        { goal: "g2", sol1: "a", sol2: "b" },
        { goal: "g3", sol1: "a", sol2: "b" },
      ]),
    );
    write("piqa-misaligned/valid-labels.lst", "0\n1\n");
    expect(codeOf(() => readMultipleChoice(f, "piqa"))).toBe("E_DATA_INVALID");
  });

  it("empty files → E_DATA_EMPTY (empty JSONL, blank-lines JSONL, empty JSON array)", () => {
    expect(codeOf(() => readMultipleChoice(write("empty.jsonl", ""), "generic"))).toBe("E_DATA_EMPTY");
    expect(codeOf(() => readMultipleChoice(write("blank.jsonl", "\n  \n\n"), "arc"))).toBe("E_DATA_EMPTY");
    expect(codeOf(() => readMultipleChoice(write("empty.json", "[]"), "commonsense"))).toBe("E_DATA_EMPTY");
  });

  it("malformed JSON → E_DATA_INVALID (a JSONL line, a JSON file, a JSON file that is not an array)", () => {
    const badLine = write(
      "bad.jsonl",
      `${JSON.stringify({ context: "a", choices: ["b"], label: 0 })}\n{"context": "a",\n`,
    );
    expect(codeOf(() => readMultipleChoice(badLine, "generic"))).toBe("E_DATA_INVALID");
    expect(codeOf(() => readMultipleChoice(write("bad.json", '[{"instruction": "x"'), "commonsense"))).toBe(
      "E_DATA_INVALID",
    );
    expect(codeOf(() => readMultipleChoice(write("obj.json", '{"instruction": "x"}'), "commonsense"))).toBe(
      "E_DATA_INVALID",
    );
  });

  it("rows that do not fit the format → E_DATA_INVALID", () => {
    const cases: [McFormat, string, unknown][] = [
      ["generic", "g-noch.jsonl", { context: "a", label: 0 }],
      ["generic", "g-frac.jsonl", { context: "a", choices: ["x", "y"], label: 0.5 }],
      [
        "arc",
        "arc-key.jsonl",
        { question: "q", choices: { text: ["x", "y"], label: ["A", "B"] }, answerKey: "E" },
      ],
      ["arc", "arc-noch.jsonl", { question: "q", answerKey: "A" }],
      [
        "winogrande",
        "wino-noblank.jsonl",
        { sentence: "no blank here.", option1: "a", option2: "b", answer: "1" },
      ],
      ["commonsense", "cs-answer.json", [{ instruction: "Answer1: a Answer2: b", answer: "maybe" }]],
      ["commonsense", "cs-nochoices.json", [{ instruction: "Please choose: no choices", answer: "answer1" }]],
    ];
    for (const [format, name, row] of cases) {
      const f = write(name, name.endsWith(".json") ? JSON.stringify(row) : jsonl([row]));
      expect(
        codeOf(() => readMultipleChoice(f, format)),
        `${format} ${name}`,
      ).toBe("E_DATA_INVALID");
    }
  });

  // src bug (src/io/mcData.ts, readMultipleChoice): labels are not range-checked. A generic row with label 5 and
  // two choices (or a PIQA label "2") is accepted and silently scored as wrong for acc and acc_norm.
  it("a generic label outside [0, choices) → E_DATA_INVALID", () => {
    const f = write("g-range.jsonl", jsonl([{ context: "a", choices: [" x", " y"], label: 5 }]));
    expect(codeOf(() => readMultipleChoice(f, "generic"))).toBe("E_DATA_INVALID");
  });

  it("a PIQA label other than 0/1 → E_DATA_INVALID", () => {
    const f = write("piqa-range/valid.jsonl", jsonl([{ goal: "g", sol1: "a", sol2: "b" }]));
    write("piqa-range/valid-labels.lst", "2\n");
    expect(codeOf(() => readMultipleChoice(f, "piqa"))).toBe("E_DATA_INVALID");
  });
});

// ---------------------------------------------------------------------------------------------------------
// the real files

const SHARED = path.resolve(REPO_ROOT, "../shared");
const HAVE_SHARED = fs.existsSync(path.join(SHARED, "data"));
const COMMONSENSE = ["ARC-Challenge", "ARC-Easy", "openbookqa", "winogrande"];

/** Problems of parsed items (empty when every item has ≥ minChoices aligned, non-blank choices and a label in range). */
function problems(items: McItem[], minChoices: number): string[] {
  const out: string[] = [];
  items.forEach((it, i) => {
    const n = it.continuations.length;
    if (n < minChoices) out.push(`item ${i}: ${n} choices`);
    if (it.contexts.length !== n) out.push(`item ${i}: ${it.contexts.length} contexts for ${n} choices`);
    if (!(Number.isInteger(it.label) && it.label >= 0 && it.label < n))
      out.push(`item ${i}: label ${it.label}`);
    if ([...it.contexts, ...it.continuations].some((s) => s.trim() === "")) out.push(`item ${i}: blank text`);
  });
  return out;
}

describe.skipIf(!HAVE_SHARED)("real data in ../shared/data (skipped when ../shared is absent)", () => {
  it("PIQA valid.jsonl + valid-labels.lst: 1838 two-choice items, labels 0/1", () => {
    const items = readMultipleChoice(path.join(SHARED, "data/piqa/valid.jsonl"), "piqa");
    expect(items).toHaveLength(1838);
    expect(problems(items, 2)).toEqual([]);
    expect(items.filter((it) => it.continuations.length !== 2)).toEqual([]);
    expect(items.filter((it) => !/^Question: [\s\S]*\nAnswer:$/.test(it.contexts[0]))).toEqual([]);
  });

  it.each(COMMONSENSE)("commonsense %s/test.json parses, labels in range", (name) => {
    const file = path.join(SHARED, "data/commonsense", name, "test.json");
    const rows = JSON.parse(fs.readFileSync(file, "utf8")) as unknown[];
    const items = readMultipleChoice(file, "commonsense");
    expect(items).toHaveLength(rows.length);
    expect(problems(items, 2)).toEqual([]);
  });

  // src bug: see "WinoGrande-like row in the real layout" above — every real WinoGrande row's second context
  // ends with " Answer format: option1/option2".
  it("commonsense winogrande: no context or continuation carries the 'Answer format' trailer", () => {
    const items = readMultipleChoice(
      path.join(SHARED, "data/commonsense/winogrande/test.json"),
      "commonsense",
    );
    const leaked = items.filter((it) =>
      [...it.contexts, ...it.continuations].some((s) => /Answer format/i.test(s)),
    );
    expect(leaked).toHaveLength(0);
  });
});
