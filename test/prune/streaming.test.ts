/**
 * Streaming changes no result (issue 5): calibration data that waits between steps — the activations between layers
 * (sequential streams, dense passes), every layer's Gram under dense calibration — goes through a temporary file when it does not fit the
 * memory budget. A run that spills everything and a run that holds everything in memory write bit-identical outputs,
 * and the temporary files are gone afterwards (also after a failure).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PruneEvent, runPrune } from "../../src/pipeline/prune.ts";
import { type Recipe, resolveRecipe } from "../../src/pipeline/recipe.ts";
import {
  makeByteBpeTokenizerJson,
  makeTinyBert,
  makeTinyLlama,
  makeWordPieceTokenizerJson,
  writeTinyModel,
} from "../helpers/tinyModels.ts";

let root: string;
let llama: string;
let bert: string;
let calib: string;

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-stream-"));
  llama = path.join(root, "llama");
  writeTinyModel(
    llama,
    makeTinyLlama({ seed: 21, layers: 3, intermediate: 40 }),
    makeByteBpeTokenizerJson(300),
  );
  bert = path.join(root, "bert");
  const words = "a stitch in time saves nine the early bird catches worm".split(" ");
  writeTinyModel(bert, makeTinyBert({ seed: 22, layers: 2 }), makeWordPieceTokenizerJson(words));
  calib = path.join(root, "calib.txt");
  fs.writeFileSync(calib, "a stitch in time saves nine; the early bird catches the worm.\n".repeat(150));
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const recipe = (model: string, out: string, extra: Partial<Recipe>) =>
  resolveRecipe({ model, out, ratio: 0.4, calib: [calib], samples: 8, seqLen: 24, batchSize: 3, ...extra });

const leftovers = () => fs.readdirSync(root).filter((f) => f.includes(".spill-") || f.includes(".tmp-"));

const cases: [string, () => string, Partial<Recipe>][] = [
  ["llama: dense calibration, global, liar", () => llama, { calibration: "dense" }],
  [
    "llama: dense calibration, liar, mixed-precision Gram",
    () => llama,
    { calibration: "dense", gramPrecision: "mixed", allocation: "uniform" },
  ],
  ["llama: sequential, global (dense scoring pass, stream between layers)", () => llama, {}],
  ["llama: sequential, liar-seq (pruned and dense streams)", () => llama, { reconstruct: "liar-seq" }],
  ["llama: dense calibration, uniform, bias", () => llama, { calibration: "dense", reconstruct: "bias" }],
  ["bert: dense calibration, global, liar", () => bert, { calibration: "dense" }],
];

describe.each(cases)("%s", (name, model, extra) => {
  it("spilling everything to disk and holding everything in memory give bit-identical outputs", async () => {
    const tag = name.replace(/[^a-z]+/g, "-");
    const mem = path.join(root, `mem-${tag}`);
    const disk = path.join(root, `disk-${tag}`);
    const a = await runPrune(recipe(model(), mem, extra));
    const b = await runPrune(recipe(model(), disk, extra), () => {}, { heldBudgetBytes: 0 });
    const spilled = (n: string[]) => n.some((x) => x.includes("went through a temporary file"));
    expect(spilled(a.notes)).toBe(false);
    expect(spilled(b.notes)).toBe(true);
    expect(b.plan?.memoryBytes.held).toBe(0);
    expect(b.plan?.memoryBytes.spilled).toBeGreaterThan(0);
    for (const f of ["model.safetensors", "config.json"]) {
      expect(fs.readFileSync(path.join(disk, f)).equals(fs.readFileSync(path.join(mem, f))), f).toBe(true);
    }
    expect(b.layers).toEqual(a.layers);
    expect(leftovers()).toEqual([]);
  });
});

it("a failed run removes its spill files and its partial output", async () => {
  const out = path.join(root, "failed");
  const stop = (e: PruneEvent) => {
    if (e.type === "layer" && e.step === "reconstruct" && e.layer === 1) throw new Error("stop here");
  };
  let sawSpill = false;
  const watch = (e: PruneEvent) => {
    if (e.type === "layer" && e.step === "reconstruct")
      sawSpill ||= fs.readdirSync(root).some((f) => f.includes(".spill-"));
    stop(e);
  };
  await expect(
    runPrune(recipe(llama, out, { calibration: "dense" }), watch, { heldBudgetBytes: 0 }),
  ).rejects.toThrow("stop here");
  expect(sawSpill).toBe(true);
  expect(fs.existsSync(out)).toBe(false);
  expect(leftovers()).toEqual([]);
});

it("an interrupted spilled run resumes to the same output as an uninterrupted in-memory run", async () => {
  const full = path.join(root, "resume-full");
  const part = path.join(root, "resume-part");
  await runPrune(recipe(llama, full, {}));
  const stop = (e: PruneEvent) => {
    if (e.type === "layer" && e.layer === 2 && e.step === "attention") throw new Error("stop here");
  };
  await expect(runPrune(recipe(llama, part, {}), stop, { heldBudgetBytes: 0 })).rejects.toThrow("stop here");
  await runPrune(recipe(llama, part, { resume: true }), () => {}, { heldBudgetBytes: 0 });
  expect(
    fs
      .readFileSync(path.join(part, "model.safetensors"))
      .equals(fs.readFileSync(path.join(full, "model.safetensors"))),
  ).toBe(true);
  expect(leftovers()).toEqual([]);
});
