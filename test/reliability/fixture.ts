/**
 * The tiny seeded model and settings of the fault tests: a 4-layer Llama built in TypeScript, calibration text,
 * and the prune arguments — with a memory budget just small enough that calibration data spills to disk, so
 * that the spill files are among the writes a kill can hit.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { loadModel } from "../../src/arch/load.ts";
import { planPrune } from "../../src/pipeline/plan.ts";
import { resolveRecipe } from "../../src/pipeline/recipe.ts";
import { makeByteBpeTokenizerJson, makeTinyLlama, writeTinyModel } from "../helpers/tinyModels.ts";

export interface Fixture {
  model: string;
  calib: string;
  /** --max-memory (GiB) that makes this prune spill part of its calibration data */
  maxMemory: string;
  pruneArgs(out: string, extra?: string[]): string[];
}

const SETTINGS = { samples: 8, seqLen: 32, ratio: 0.4 };

export function makeFixture(root: string, seed = 21): Fixture {
  const model = path.join(root, "model");
  writeTinyModel(
    model,
    makeTinyLlama({ seed, layers: 4, hidden: 32, heads: 4, kvHeads: 2, headDim: 8, intermediate: 64 }),
    makeByteBpeTokenizerJson(300),
  );
  const calib = path.join(root, "calib.txt");
  fs.writeFileSync(calib, "the early bird catches the worm, and a stitch in time saves nine. ".repeat(100));
  const maxMemory = spillingBudget(model, calib, SETTINGS);
  return {
    model,
    calib,
    maxMemory,
    pruneArgs: (out, extra = []) => [
      "prune",
      model,
      "--out",
      out,
      "--calib",
      calib,
      "--samples",
      String(SETTINGS.samples),
      "--seq-len",
      String(SETTINGS.seqLen),
      "--ratio",
      String(SETTINGS.ratio),
      "--max-memory",
      maxMemory,
      ...extra,
    ],
  };
}

/** A --max-memory that fits the prune but holds only part of the waiting calibration data (the rest spills). */
export function spillingBudget(
  model: string,
  calib: string,
  settings: { samples: number; seqLen: number; ratio: number },
): string {
  const m = loadModel(model);
  try {
    const recipe = (maxMemory?: number) =>
      resolveRecipe({
        model,
        out: path.join(os.tmpdir(), "pare-unused-out"),
        calib: [calib],
        ...settings,
        maxMemory,
      });
    const free = planPrune(m, recipe()).memoryBytes;
    const base = free.peak - free.held;
    for (let extra = 0; extra < 64 * free.held; extra += free.held / 8) {
      const gib = (base + extra) / 1024 ** 3;
      const mb = planPrune(m, recipe(gib)).memoryBytes;
      if (mb.spilled > 0 && mb.held > 0 && mb.peak <= gib * 1024 ** 3) return String(gib);
    }
    throw new Error("no memory budget makes this prune spill");
  } finally {
    m.close();
  }
}
