/**
 * --resume: a prune interrupted after some layers continues from its per-layer checkpoints and writes
 * exactly the files an uninterrupted run writes; checkpoints of other settings are refused.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isPareError } from "../../src/errors.ts";
import { checkpointDir } from "../../src/pipeline/checkpoint.ts";
import { type PruneEvent, runPrune } from "../../src/pipeline/prune.ts";
import { type Recipe, resolveRecipe } from "../../src/pipeline/recipe.ts";
import { makeByteBpeTokenizerJson, makeTinyLlama, writeTinyModel } from "../helpers/tinyModels.ts";

let root: string;
let model: string;
let calib: string;

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-resume-"));
  model = path.join(root, "tiny");
  writeTinyModel(
    model,
    makeTinyLlama({ seed: 11, layers: 4, intermediate: 40 }),
    makeByteBpeTokenizerJson(300),
  );
  calib = path.join(root, "calib.txt");
  fs.writeFileSync(calib, "a stitch in time saves nine; the early bird catches the worm. ".repeat(150));
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const recipe = (out: string, extra: Partial<Recipe> = {}) =>
  resolveRecipe({ model, out, ratio: 0.4, calib: [calib], samples: 8, seqLen: 32, ...extra });

/** Throws from the progress callback when layer `at` starts: an interruption after layers 0..at−1. */
const interruptAt = (at: number) => (e: PruneEvent) => {
  // scoring steps (the dense pass's statistics, global obs's selection) come before any layer is pruned
  if (e.type === "layer" && e.layer === at && e.step !== "statistics" && !e.step.startsWith("select"))
    throw new Error("interrupted");
};

describe.each([
  ["liar, sequential, global", {}],
  ["liar-seq (two streams)", { reconstruct: "liar-seq" }],
  ["bias, dense calibration, uniform", { reconstruct: "bias", calibration: "dense", allocation: "uniform" }],
] as [string, Partial<Recipe>][])("%s", (_name, extra) => {
  it("interrupted and resumed equals uninterrupted, bit for bit", async () => {
    const tag = Object.values(extra).join("-") || "default";
    const full = path.join(root, `full-${tag}`);
    await runPrune(recipe(full, extra));
    const part = path.join(root, `part-${tag}`);
    await expect(runPrune(recipe(part, extra), interruptAt(2))).rejects.toThrow("interrupted");
    expect(fs.existsSync(part)).toBe(false); // no partial output
    const ck = checkpointDir(part);
    expect(JSON.parse(fs.readFileSync(path.join(ck, "progress.json"), "utf8")).layerDone).toBe(1);
    const phases: string[] = [];
    await runPrune(recipe(part, { ...extra, resume: true }), (e) => {
      if (e.type === "phase") phases.push(e.phase);
    });
    expect(phases).toContain("resume");
    expect(fs.existsSync(ck)).toBe(false); // checkpoints removed after success
    expect(
      fs
        .readFileSync(path.join(part, "model.safetensors"))
        .equals(fs.readFileSync(path.join(full, "model.safetensors"))),
    ).toBe(true);
    expect(fs.readFileSync(path.join(part, "config.json"), "utf8")).toBe(
      fs.readFileSync(path.join(full, "config.json"), "utf8"),
    );
    const a = JSON.parse(fs.readFileSync(path.join(part, "pare-pruning.json"), "utf8"));
    const b = JSON.parse(fs.readFileSync(path.join(full, "pare-pruning.json"), "utf8"));
    expect(a.layers).toEqual(b.layers);
  });
});

describe("resume guards", () => {
  it("checkpoints of other settings are refused with a coded error; a run without --resume starts over", async () => {
    const out = path.join(root, "guard");
    await expect(runPrune(recipe(out), interruptAt(1))).rejects.toThrow("interrupted");
    let code = "";
    try {
      await runPrune(recipe(out, { ratio: 0.2, resume: true }));
    } catch (e) {
      code = isPareError(e) ? e.code : String(e);
    }
    expect(code).toBe("E_RECIPE_INVALID");
    expect(fs.existsSync(out)).toBe(false);
    await runPrune(recipe(out, { ratio: 0.2 }));
    expect(fs.existsSync(checkpointDir(out))).toBe(false);
    expect(fs.existsSync(path.join(out, "model.safetensors"))).toBe(true);
  });

  it("--resume without checkpoints starts from the first layer and says so", async () => {
    const r = await runPrune(recipe(path.join(root, "fresh"), { resume: true }));
    expect(r.notes.join(" ")).toMatch(/no checkpoints found/);
  });
});

describe("reproducibility", () => {
  it("the same settings give bit-identical model files across runs and across --threads 1 / 2; the report records versions and input hashes", async () => {
    const a = path.join(root, "rep-a");
    const b = path.join(root, "rep-b");
    const ra = await runPrune(recipe(a, { threads: 1, dtype: "F32" }));
    await runPrune(recipe(b, { threads: 2, dtype: "F32" }));
    for (const f of ["model.safetensors", "config.json"]) {
      expect(fs.readFileSync(path.join(a, f)).equals(fs.readFileSync(path.join(b, f))), f).toBe(true);
    }
    expect(ra.versions.pare).toBe("0.1.0");
    expect(ra.versions.onnxruntime).toMatch(/^\d+\.\d+/);
    expect(Object.values(ra.input.files).every((h) => /^sha256:[0-9a-f]{64}$/.test(h))).toBe(true);
    expect(Object.keys(ra.input.files)).toContain("model.safetensors");
  });
});
