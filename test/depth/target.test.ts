/**
 * --target-speedup: the plan (least width ratio per depth reaching the target), the measured shapes equal the
 * shapes a prune gives, the latency table cache, and the choice of the least held-out loss among pruned
 * candidates (with an injected speedup model, so that the test does not depend on this machine's timing).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel } from "../../src/arch/load.ts";
import { runPrune } from "../../src/pipeline/prune.ts";
import { type Recipe, resolveRecipe } from "../../src/pipeline/recipe.ts";
import {
  MAX_RATIO,
  measuredProbe,
  planCandidates,
  runTarget,
  shapeModel,
} from "../../src/pipeline/target.ts";
import { makeByteBpeTokenizerJson, makeTinyLlama, writeTinyModel } from "../helpers/tinyModels.ts";

let root: string;
let model: string;
let calib: string;
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-target-"));
  model = path.join(root, "tiny");
  writeTinyModel(
    model,
    makeTinyLlama({ seed: 31, layers: 4, intermediate: 40 }),
    makeByteBpeTokenizerJson(300),
  );
  calib = path.join(root, "calib.txt");
  fs.writeFileSync(
    calib,
    "the early bird catches the worm while the night owl sleeps until noon. ".repeat(120),
  );
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const recipe = (out: string, extra: Partial<Recipe> = {}) =>
  resolveRecipe({ model, out, calib: [calib], samples: 8, seqLen: 24, ...extra } as Recipe);

/** a speedup model: time ∝ kept blocks × (1 − 0.6 r) */
const model6 = (L: number) => async (n: number, r: number) => 1 / ((1 - n / L) * (1 - 0.6 * r));

describe("planCandidates", () => {
  it("finds, per depth, the least ratio reaching the target, and stops where depth alone overshoots", async () => {
    const c = await planCandidates(1.3, 5, model6(6));
    expect(c.map((x) => x.depth)).toEqual([0, 1]);
    // exact thresholds: (1 − 0.6 r) ≤ 1/1.3 → r ≥ 0.3846; (5/6)(1 − 0.6 r) ≤ 1/1.3 → r ≥ 0.1282
    expect(c[0].ratio).toBeGreaterThanOrEqual(0.3846);
    expect(c[0].ratio - 0.3846).toBeLessThan(MAX_RATIO / 64 + 1e-4);
    expect(c[1].ratio).toBeGreaterThanOrEqual(0.1282);
    expect(c[1].ratio - 0.1282).toBeLessThan(MAX_RATIO / 64 + 1e-4);
    for (const x of c) expect(x.predictedSpeedup).toBeGreaterThanOrEqual(1.3);
  });
  it("takes a depth that reaches the target by itself when within 10%", async () => {
    const c = await planCandidates(1.2, 5, model6(6)); // one block of six: 1.2×
    expect(c.at(-1)).toEqual({ depth: 1, ratio: 0, predictedSpeedup: 1.2 });
  });
  it("returns nothing when no candidate reaches the target", async () => {
    expect(await planCandidates(50, 2, model6(6))).toEqual([]);
  });
});

describe("shapes and the latency table", () => {
  it("the measured shapes are the shapes of the pruned model", async () => {
    const out = path.join(root, "shapes");
    await runPrune(recipe(out, { depth: 1, ratio: 0.4, allocation: "uniform" }));
    const input = loadModel(model);
    const pruned = loadModel(out);
    const s = shapeModel(input, 1, 0.4, recipe(path.join(root, "unused")));
    const widths = (m: { dims: { layers: { nHeads: number; nKv: number; ffn: number }[] } }) =>
      m.dims.layers.map((l) => [l.nHeads, l.nKv, l.ffn]);
    expect(widths(s)).toEqual(widths(pruned));
    expect(s.weights.get(`model.layers.0.mlp.down_proj.weight`).every((v) => v === 0)).toBe(true);
    input.close();
    pruned.close();
  });

  it("speedups are measured once per shape and read back from the table", async () => {
    const dir = path.join(root, "cache");
    const prev = process.env.PARE_CACHE_DIR;
    process.env.PARE_CACHE_DIR = dir;
    try {
      const input = loadModel(model);
      const w = { kind: "prefill" as const, batch: 1, seqLen: 8, promptLen: 4, genTokens: 2 };
      const a = measuredProbe(input, recipe(path.join(root, "u")), w);
      const s1 = await a.probe(1, 0.25);
      expect(Number.isFinite(s1) && s1 > 0).toBe(true);
      expect(a.stats).toEqual({ measured: 1, cached: 0 });
      const b = measuredProbe(input, recipe(path.join(root, "u")), w);
      expect(b.file).toBe(a.file);
      expect(await b.probe(1, 0.25)).toBe(s1);
      expect(b.stats).toEqual({ measured: 0, cached: 1 });
      input.close();
    } finally {
      if (prev === undefined) delete process.env.PARE_CACHE_DIR;
      else process.env.PARE_CACHE_DIR = prev;
    }
  });
});

describe("runTarget", () => {
  it("prunes every candidate and keeps the least held-out loss; the rest is cleaned up", async () => {
    const out = path.join(root, "target");
    const r = recipe(out, { targetSpeedup: 1.3 });
    const report = await runTarget(r, {}, (x, o) => runPrune(x, o), model6(4));
    const t = report.target!;
    expect(t.candidates.length).toBeGreaterThanOrEqual(2);
    const chosen = t.candidates.filter((c) => c.chosen);
    expect(chosen).toHaveLength(1);
    expect(chosen[0].loss).toBe(Math.min(...t.candidates.map((c) => c.loss)));
    const cfg = JSON.parse(fs.readFileSync(path.join(out, "config.json"), "utf8"));
    expect(cfg.num_hidden_layers).toBe(4 - chosen[0].depth);
    const written = JSON.parse(fs.readFileSync(path.join(out, "pare-pruning.json"), "utf8"));
    expect(written.target.candidates).toEqual(t.candidates);
    expect(written.recipe.targetSpeedup).toBe(1.3);
    expect(fs.readdirSync(root).filter((f) => f.includes(".target-"))).toEqual([]);
  });

  it("refuses --depth or --ratio together with --target-speedup", () => {
    expect(() => recipe(path.join(root, "x"), { targetSpeedup: 1.3, depth: 1 })).toThrow(/chooses the depth/);
    expect(() => recipe(path.join(root, "x"), { targetSpeedup: 1.3, ratio: 0.2 })).toThrow(
      /chooses the depth/,
    );
  });
});
