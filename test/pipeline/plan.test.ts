/**
 * The cost model (issues 5, 11): layer passes per calibration mode, FLOPs that follow from them, the memory split into
 * what must fit and what may spill, the --max-memory refusal before any work (with the number needed), and the
 * --dry-run / plan output of the CLI.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel } from "../../src/arch/load.ts";
import type { Model } from "../../src/arch/model.ts";
import { obsPathWork } from "../../src/criteria/obs.ts";
import { isPareError } from "../../src/errors.ts";
import { checkMemory, describePlan, estimatePlan, planPrune } from "../../src/pipeline/plan.ts";
import { runPrune } from "../../src/pipeline/prune.ts";
import { type Recipe, resolveRecipe } from "../../src/pipeline/recipe.ts";
import { runCli } from "../helpers/cli.ts";
import { makeByteBpeTokenizerJson, makeTinyLlama, writeTinyModel } from "../helpers/tinyModels.ts";

let root: string;
let dir: string;
let calib: string;
let model: Model & { close(): void };
const nL = 3;

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-plan-"));
  dir = path.join(root, "tiny");
  writeTinyModel(
    dir,
    makeTinyLlama({ seed: 5, layers: nL, intermediate: 40 }),
    makeByteBpeTokenizerJson(300),
  );
  calib = path.join(root, "calib.txt");
  fs.writeFileSync(calib, "the quick brown fox jumps over the lazy dog. ".repeat(200));
  model = loadModel(dir);
});
afterAll(() => {
  model.close();
  fs.rmSync(root, { recursive: true, force: true });
});

const recipe = (extra: Partial<Recipe> = {}) =>
  resolveRecipe({
    model: dir,
    out: path.join(root, "out"),
    calib: [calib],
    samples: 8,
    seqLen: 32,
    ...extra,
  });
const rates = { matmulF32: 100e9, matmulF64: 25e9, obsLoop: 1e9, rankF64: 5e9 };

describe("layer passes and FLOPs", () => {
  it("in whole-layer equivalents: dense = 1 per layer; sequential = the layer's parts (between 1 and 2 per layer), +1 dense scoring pass for global, +1 unpruned layer for liar-seq; weights-only 0", () => {
    expect(planPrune(model, recipe({ calibration: "dense" })).layerPasses).toBe(nL);
    const uniform = planPrune(model, recipe({ allocation: "uniform" })).layerPasses;
    expect(uniform).toBeGreaterThan(nL);
    expect(uniform).toBeLessThan(2 * nL);
    expect(planPrune(model, recipe({ allocation: "global" })).layerPasses).toBeCloseTo(uniform + nL, 1);
    expect(
      planPrune(model, recipe({ reconstruct: "liar-seq", allocation: "uniform" })).layerPasses,
    ).toBeCloseTo(uniform + nL, 1);
    // the cut parts shrink with the ratio
    expect(planPrune(model, recipe({ allocation: "uniform", ratio: 0.6 })).layerPasses).toBeLessThan(uniform);
    const w = planPrune(model, recipe({ criterion: "magnitude-l2", reconstruct: "none" }));
    expect(w.layerPasses).toBe(0);
    expect(w.calibrationTokens).toBe(0);
    expect(w.flops.total).toBe(0);
  });

  it("forward FLOPs are proportional to the layer passes; tokens = samples × seq-len", () => {
    const seq = planPrune(model, recipe());
    const dense = planPrune(model, recipe({ calibration: "dense" }));
    expect(seq.calibrationTokens).toBe(8 * 32);
    expect(seq.flops.forward / dense.flops.forward).toBeCloseTo(seq.layerPasses / dense.layerPasses, 2);
    expect(seq.flops.total).toBeCloseTo(seq.flops.forward + seq.flops.statistics + seq.flops.solve, 0);
  });

  it("the mixed Gram counts only the lower block triangle: between half and all of the f64 product", () => {
    const f64 = planPrune(model, recipe({ gramPrecision: "f64" })).flops;
    const mixed = planPrune(model, recipe({ gramPrecision: "mixed" })).flops;
    expect(f64.statisticsF32).toBe(0);
    expect(mixed.statisticsF64).toBe(0);
    expect(mixed.statisticsF32).toBeGreaterThan(0.5 * f64.statisticsF64);
    expect(mixed.statisticsF32).toBeLessThanOrEqual(f64.statisticsF64);
  });
});

describe("memory", () => {
  it("waiting calibration data is held up to the budget and spilled beyond it; the peak counts only what is held", () => {
    const all = planPrune(model, recipe({ calibration: "dense" }), Number.POSITIVE_INFINITY).memoryBytes;
    const none = planPrune(model, recipe({ calibration: "dense" }), 0).memoryBytes;
    expect(all.spilled).toBe(0);
    expect(none.held).toBe(0);
    expect(none.spilled).toBe(all.held);
    expect(all.peak - none.peak).toBe(all.held);
    const half = planPrune(model, recipe({ calibration: "dense" }), all.held / 2).memoryBytes;
    expect(half.held).toBe(all.held / 2);
    expect(half.held + half.spilled).toBe(all.held);
  });

  it("with --max-memory the plan fits it when the layer fits; checkMemory refuses with the number needed otherwise", () => {
    const big = planPrune(model, recipe({ calibration: "dense", maxMemory: 4 }));
    expect(big.memoryBytes.peak).toBeLessThanOrEqual(4 * 1024 ** 3);
    expect(() => checkMemory(big, 4)).not.toThrow();
    const tiny = planPrune(model, recipe({ calibration: "dense", maxMemory: 0.001 }));
    expect(tiny.memoryBytes.held).toBe(0);
    let err: unknown;
    try {
      checkMemory(tiny, 0.001);
    } catch (e) {
      err = e;
    }
    expect(isPareError(err) && err.code).toBe("E_MEMORY_BUDGET");
    const need = tiny.memoryBytes.peak / 1024 ** 3;
    expect((err as Error).message).toContain(need.toFixed(2));
  });

  it("a prune that does not fit --max-memory is refused before any work: no output, no temporary files", async () => {
    const out = path.join(root, "refused");
    const phases: string[] = [];
    await expect(
      runPrune(recipe({ out, maxMemory: 0.001 }), (e) => {
        if (e.type === "phase") phases.push(e.phase);
      }),
    ).rejects.toMatchObject({ code: "E_MEMORY_BUDGET" });
    expect(phases).toEqual(["load"]);
    expect(fs.readdirSync(root).filter((f) => f.includes("refused"))).toEqual([]);
  });
});

describe("estimates and the printed plan", () => {
  it("sequential plans carry the dense alternative's estimate; dense and liar-seq plans do not", () => {
    const seq = estimatePlan(model, recipe(), rates);
    expect(seq.denseAlternativeSeconds).toBeCloseTo(
      estimatePlan(model, recipe({ calibration: "dense" }), rates).estimateSeconds!.total,
      9,
    );
    expect(
      estimatePlan(model, recipe({ calibration: "dense" }), rates).denseAlternativeSeconds,
    ).toBeUndefined();
    expect(
      estimatePlan(model, recipe({ reconstruct: "liar-seq" }), rates).denseAlternativeSeconds,
    ).toBeUndefined();
    const text = describePlan(seq).join("\n");
    expect(text).toContain(`${seq.layerPasses} layer passes`);
    expect(text).toContain("--calibration dense");
  });

  it("pare prune --dry-run prints the plan and writes nothing", async () => {
    const out = path.join(root, "dry");
    const r = await runCli([
      "prune",
      dir,
      "--out",
      out,
      "--calib",
      calib,
      "--samples",
      "8",
      "--seq-len",
      "32",
      "--dry-run",
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout + r.stderr).toMatch(/plan: 256 calibration tokens, [\d.]+ layer passes/);
    expect(r.stdout + r.stderr).toMatch(/peak ≈/);
    expect(fs.existsSync(out)).toBe(false);
  });
});

describe("obs's path in the plan, module by module", () => {
  it("an FFN exactly as wide as the attention output is costed as FFN channels, not as KV groups", () => {
    const d2 = path.join(root, "square");
    // 4 heads × 8 = 32 attention channels, FFN 32: the two consumers have the same input width
    writeTinyModel(
      d2,
      makeTinyLlama({ seed: 6, layers: 2, intermediate: 32 }),
      makeByteBpeTokenizerJson(300),
    );
    const m2 = loadModel(d2);
    try {
      const p = planPrune(
        m2,
        resolveRecipe({ model: d2, out: path.join(root, "o2"), calib: [calib], criterion: "obs" }),
      );
      let js = 0;
      let rank = 0;
      for (const L of m2.dims.layers) {
        const attn = obsPathWork({
          n: L.nKv,
          unit: (L.nHeads * m2.dims.headDim) / L.nKv,
          dOut: m2.dims.hidden,
          keep: 1,
          intercept: true,
        });
        const ffn = obsPathWork({ n: L.ffn, unit: 1, dOut: m2.dims.hidden, keep: 1, intercept: true });
        js += attn.js + ffn.js;
        rank += attn.ortRank + ffn.ortRank;
      }
      expect(p.selectionOps).toBe(js);
      expect(p.selectionRankFlops).toBe(rank);
    } finally {
      m2.close();
    }
  });
});

describe("obs and --ridge auto in the plan", () => {
  it("global obs holds every module's Gram until all are scored; its selection and the ridge fits count as solves", () => {
    const flap = planPrune(model, recipe({ criterion: "flap-wifv", ridge: 0.01 }), Number.POSITIVE_INFINITY);
    const obsUniform = planPrune(
      model,
      recipe({ criterion: "obs", allocation: "uniform" }),
      Number.POSITIVE_INFINITY,
    );
    const obsGlobal = planPrune(model, recipe({ criterion: "obs" }), Number.POSITIVE_INFINITY);
    const auto = planPrune(
      model,
      recipe({ criterion: "flap-wifv", ridge: "auto" }),
      Number.POSITIVE_INFINITY,
    );
    const d = model.dims;
    let grams = 0;
    for (const L of d.layers) for (const din of [L.nHeads * d.headDim, L.ffn]) grams += 8 * (din + 1) ** 2;
    // the same streams wait in both; global obs adds every module's Gram
    expect(obsGlobal.memoryBytes.held - flap.memoryBytes.held).toBe(grams);
    const flapUniform = planPrune(
      model,
      recipe({ criterion: "flap-wifv", allocation: "uniform", ridge: 0.01 }),
      Number.POSITIVE_INFINITY,
    );
    expect(obsUniform.memoryBytes.held).toBe(flapUniform.memoryBytes.held);
    // obs's working set: the Gram plus H, L⁻¹, H⁻¹ and a blocked downdate's copies (9 D² vs liar's 3)
    expect(obsGlobal.memoryBytes.gram).toBe(3 * flap.memoryBytes.gram);
    // the greedy path: uniform stops at the kept width, global runs to the minimum
    expect(obsUniform.flops.solve).toBeGreaterThan(flap.flops.solve);
    expect(obsGlobal.flops.solve).toBeGreaterThanOrEqual(obsUniform.flops.solve);
    // its exact steps run in JavaScript: counted apart, timed at the measured loop rate, printed
    expect(flap.selectionOps).toBe(0);
    expect(obsUniform.selectionOps).toBeGreaterThan(0);
    expect(obsGlobal.selectionOps).toBeGreaterThan(obsUniform.selectionOps);
    const est = estimatePlan(model, recipe({ criterion: "obs" }), rates);
    expect(est.estimateSeconds!.selection).toBeCloseTo(est.selectionOps / rates.obsLoop, 12);
    // its low-rank ORT work at the rank-update rate, the rest of the solves at the f64 MatMul rate
    expect(est.selectionRankFlops).toBeGreaterThan(0);
    expect(est.estimateSeconds!.solve).toBeCloseTo(
      (est.flops.solve - est.selectionRankFlops) / rates.matmulF64 + est.selectionRankFlops / rates.rankF64,
      12,
    );
    const e = est.estimateSeconds!;
    expect(e.total).toBeCloseTo(e.forward + e.statistics + e.solve + e.selection, 12);
    expect(describePlan(est).join("\n")).toContain("OBS selection loops");
    expect(
      describePlan(estimatePlan(model, recipe({ criterion: "flap-wifv" }), rates)).join("\n"),
    ).not.toContain("OBS selection loops");
    // --ridge auto: the grid's fits and the final one (8 solves instead of 1); dense calibration: 1 (no held-out)
    expect(auto.flops.solve).toBeCloseTo(8 * flap.flops.solve, -3);
    const autoDense = planPrune(
      model,
      recipe({ criterion: "flap-wifv", ridge: "auto", calibration: "dense" }),
      Number.POSITIVE_INFINITY,
    );
    const flapDense = planPrune(
      model,
      recipe({ criterion: "flap-wifv", ridge: 0.01, calibration: "dense" }),
      Number.POSITIVE_INFINITY,
    );
    expect(autoDense.flops.solve).toBe(flapDense.flops.solve);
  });
});
