/**
 * runPrune as a library call: an AbortSignal stops it between batches and layers with E_ABORTED and cleans up
 * like a failure (no output folder, no temporary files; the checkpoints stay, and --resume gives the
 * uninterrupted result bit for bit); the options-object form works; a finished or failed prune holds no ONNX
 * Runtime sessions.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isPareError } from "../../src/errors.ts";
import { checkpointDir } from "../../src/pipeline/checkpoint.ts";
import { type PruneEvent, runPrune } from "../../src/pipeline/prune.ts";
import { type Recipe, resolveRecipe } from "../../src/pipeline/recipe.ts";
import { liveSessions } from "../../src/runtime/ort.ts";
import { makeByteBpeTokenizerJson, makeTinyLlama, writeTinyModel } from "../helpers/tinyModels.ts";

let root: string;
let model: string;
let calib: string;

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-abort-"));
  model = path.join(root, "tiny");
  writeTinyModel(
    model,
    makeTinyLlama({ seed: 31, layers: 3, intermediate: 40 }),
    makeByteBpeTokenizerJson(300),
  );
  calib = path.join(root, "calib.txt");
  fs.writeFileSync(calib, "a stitch in time saves nine; the early bird catches the worm. ".repeat(150));
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const recipe = (out: string, extra: Partial<Recipe> = {}) =>
  resolveRecipe({
    model,
    out: path.join(root, out),
    ratio: 0.4,
    calib: [calib],
    samples: 8,
    seqLen: 24,
    batchSize: 3,
    ...extra,
  });

const leftovers = () => fs.readdirSync(root).filter((f) => f.includes(".spill-") || f.includes(".tmp-"));

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return isPareError(e) ? e.code : String(e);
  }
  return "resolved";
}

describe.each([
  ["sequential calibration", {}],
  ["dense calibration", { calibration: "dense" }],
  ["liar-seq", { reconstruct: "liar-seq", allocation: "uniform" }],
] as [string, Partial<Recipe>][])("abort: %s", (_name, extra) => {
  it("stops with E_ABORTED, leaves no output and no temporary files, keeps the checkpoints; --resume then equals an uninterrupted run", async () => {
    const tag = Object.values(extra).join("-") || "default";
    const sessions = liveSessions();
    const full = `full-${tag}`;
    await runPrune(recipe(full, extra));
    const part = `part-${tag}`;
    const controller = new AbortController();
    // abort while layer 1 is being pruned (the prune notices at its next batch or layer)
    let seen = 0;
    const onEvent = (e: PruneEvent) => {
      if (e.type === "layer" && e.layer === 1 && e.step !== "statistics" && !e.step.startsWith("select")) {
        seen++;
        queueMicrotask(() => controller.abort());
      }
    };
    const aborted = runPrune(recipe(part, extra), onEvent, { signal: controller.signal, heldBudgetBytes: 0 });
    expect(await code(aborted)).toBe("E_ABORTED");
    expect(seen).toBeGreaterThan(0);
    expect(fs.existsSync(path.join(root, part))).toBe(false);
    expect(leftovers()).toEqual([]);
    const progress = JSON.parse(
      fs.readFileSync(path.join(checkpointDir(path.join(root, part)), "progress.json"), "utf8"),
    );
    expect(progress.layerDone).toBeLessThan(2);
    expect(liveSessions()).toBe(sessions);

    await runPrune(recipe(part, { ...extra, resume: true }), { onEvent: () => {} });
    for (const f of ["model.safetensors", "config.json"]) {
      expect(
        fs.readFileSync(path.join(root, part, f)).equals(fs.readFileSync(path.join(root, full, f))),
        f,
      ).toBe(true);
    }
    expect(liveSessions()).toBe(sessions);
  });
});

describe("abort before any work; options object", () => {
  it("an already aborted signal stops before the model is read", async () => {
    const controller = new AbortController();
    controller.abort();
    const phases: string[] = [];
    const p = runPrune(recipe("never"), {
      onEvent: (e) => {
        if (e.type === "phase") phases.push(e.phase);
      },
      signal: controller.signal,
    });
    expect(await code(p)).toBe("E_ABORTED");
    expect(phases).toEqual([]);
    expect(fs.existsSync(path.join(root, "never"))).toBe(false);
  });

  it("runPrune(recipe, { onEvent }) reports progress like the positional form", async () => {
    const steps: string[] = [];
    const sessions = liveSessions();
    await runPrune(recipe("object-form"), {
      onEvent: (e) => {
        if (e.type === "layer") steps.push(`${e.layer}:${e.step}`);
      },
    });
    expect(steps).toContain("0:attention");
    expect(steps).toContain("2:propagate");
    expect(liveSessions()).toBe(sessions);
  });

  it("a failed prune releases its ORT sessions too", async () => {
    const sessions = liveSessions();
    const stop = (e: PruneEvent) => {
      if (e.type === "layer" && e.layer === 1 && e.step === "mlp") throw new Error("stop here");
    };
    await expect(runPrune(recipe("failed"), stop)).rejects.toThrow("stop here");
    expect(liveSessions()).toBe(sessions);
    expect(fs.existsSync(path.join(root, "failed"))).toBe(false);
  });
});
