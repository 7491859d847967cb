/**
 * Allocation (docs/methods.md §3) against slow references on small random problems: uniform (coarse module rounds
 * r·n, the finest module's count found by brute-force search), global (per-module standardized scores, lowest
 * first, cost-weighted greedy), the guards (minimum units, skipped layers, roundTo), preflight errors, and the
 * accuracy guarantees as fast-check properties.
 *
 * What is guaranteed (read from the code and proven below):
 *  - uniform, per layer: the coarse module (attention, the larger unit cost) removes clamp(round(r·n)); the MLP
 *    then removes the channel count bringing the layer closest to r of its parameters, so whenever that count
 *    is not clamped by [0, n − min], |removed_layer − r·P_layer| ≤ c_mlp / 2 (half an MLP unit; the total is
 *    within Σ_layers c_mlp/2).
 *  - global, with roundTo = 1 and whenever preflight accepts the ratio: |removed − r·P| ≤ c_max / 2, c_max the
 *    largest unit cost among the modules that are not skipped (each removal must bring the count closer to the
 *    target, so the overshoot is < c/2; a declined unit means the count was already within c/2 below the target;
 *    if none was declined, everything removable went, which preflight guarantees is ≥ the target).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  allocate,
  type ModuleUnits,
  preflight,
  standardize,
  topK,
  uniformCounts,
} from "../../src/allocate/allocate.ts";
import { Rng } from "../helpers/rng.ts";
import { refGlobalCounts, refStandardize, refTopK, refUniformCounts } from "../reference/pipeline.ts";

interface Problem {
  mods: ModuleUnits[];
  scores: Float64Array[];
}

/** layers × (attention: few expensive units, MLP: many cheap units) */
function randomProblem(
  rng: Rng,
  opts: { layers?: number; skip?: boolean; min?: boolean; roundTo?: number } = {},
): Problem {
  const L = opts.layers ?? 1 + rng.int(4);
  const mods: ModuleUnits[] = [];
  for (let l = 0; l < L; l++) {
    const skip = !!opts.skip && rng.uniform() < 0.3;
    const na = 1 + rng.int(6);
    const nm = 1 + rng.int(40);
    mods.push({
      layer: l,
      module: "attn",
      n: na,
      cost: 40 + rng.int(400),
      min: opts.min ? 1 + rng.int(na) : 1,
      skip,
      roundTo: 1,
    });
    mods.push({
      layer: l,
      module: "mlp",
      n: nm,
      cost: 2 + rng.int(30),
      min: opts.min ? 1 + rng.int(nm) : 1,
      skip,
      roundTo: opts.roundTo ?? 1,
    });
  }
  const scores = mods.map((m) => Float64Array.from({ length: m.n }, () => Math.exp(rng.normal())));
  return { mods, scores };
}

const removedOf = (mods: ModuleUnits[], keep: ArrayLike<number>[]) =>
  mods.reduce((s, m, i) => s + (m.n - keep[i].length) * m.cost, 0);
const totalOf = (mods: ModuleUnits[]) => mods.reduce((s, m) => s + m.n * m.cost, 0);
const code = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (e) {
    return (e as { code?: string }).code ?? "no code";
  }
  return undefined;
};

describe("topK", () => {
  it("keeps the k highest scores as sorted indices; ties keep the lower index", () => {
    expect(Array.from(topK(Float64Array.from([3, 1, 4, 1, 5, 9, 2, 6]), 3))).toEqual([4, 5, 7]);
    expect(Array.from(topK(Float64Array.from([1, 2, 2, 2, 0]), 2))).toEqual([1, 2]);
    expect(Array.from(topK(Float64Array.from([1, 2]), 0))).toEqual([]);
    const rng = new Rng(30);
    for (let t = 0; t < 50; t++) {
      const s = Float64Array.from({ length: 1 + rng.int(20) }, () => rng.int(5));
      const k = rng.int(s.length + 1);
      expect(Array.from(topK(s, k))).toEqual(refTopK(s, k));
    }
  });

  it("standardize: (s − mean) / sample sd; constant scores → 0", () => {
    const z = standardize(Float64Array.from([1, 2, 3, 4]));
    const sd = Math.sqrt(5 / 3);
    expect(Array.from(z).map((v) => v * sd)).toEqual(
      [-1.5, -0.5, 0.5, 1.5].map((v) => expect.closeTo(v, 12)),
    );
    expect(Array.from(standardize(Float64Array.from([7, 7, 7])))).toEqual([0, 0, 0]);
    expect(Array.from(standardize(Float64Array.from([5])))).toEqual([0]);
  });
});

describe("uniform allocation", () => {
  it("equals the brute-force reference on 300 random problems (with skipped layers and minimums)", () => {
    const rng = new Rng(31);
    for (let t = 0; t < 300; t++) {
      const { mods } = randomProblem(rng, { skip: t % 2 === 0, min: t % 3 === 0 });
      const ratio = rng.uniform() * 0.95;
      expect(uniformCounts(mods, ratio), `problem ${t}`).toEqual(refUniformCounts(mods, ratio));
    }
  });

  it("allocate(uniform) keeps the top-scored units of each module in those counts", () => {
    const rng = new Rng(32);
    let checked = 0;
    for (let t = 0; t < 200; t++) {
      const { mods, scores } = randomProblem(rng, { skip: true });
      const ratio = rng.uniform() * 0.6;
      if (code(() => preflight(mods, ratio, "uniform"))) continue;
      const a = allocate(mods, scores, ratio, "uniform");
      const counts = refUniformCounts(mods, ratio);
      a.keep.forEach((k, i) => {
        expect(Array.from(k)).toEqual(refTopK(scores[i], counts[i]));
      });
      expect(a.prunableBefore).toBe(totalOf(mods));
      expect(a.prunableAfter).toBe(totalOf(mods) - removedOf(mods, a.keep));
      expect(a.achievedRatio).toBeCloseTo(removedOf(mods, a.keep) / totalOf(mods), 12);
      checked++;
    }
    expect(checked).toBeGreaterThan(100);
  });

  it("ratio 0 keeps everything; skipped layers keep everything", () => {
    const rng = new Rng(33);
    for (let t = 0; t < 50; t++) {
      const { mods, scores } = randomProblem(rng, { skip: true });
      const a0 = allocate(mods, scores, 0, "uniform");
      a0.keep.forEach((k, i) => {
        expect(k.length).toBe(mods[i].n);
      });
      const ratio = rng.uniform() * 0.4;
      if (code(() => preflight(mods, ratio, "uniform"))) continue;
      const a = allocate(mods, scores, ratio, "uniform");
      mods.forEach((m, i) => {
        if (m.skip) expect(a.keep[i].length).toBe(m.n);
        expect(a.keep[i].length).toBeGreaterThanOrEqual(m.min);
      });
    }
  });

  it("property: each layer's removed parameters are within c_mlp/2 of r·P_layer unless the MLP count is clamped", () => {
    let layersChecked = 0;
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        fc.double({ min: 0, max: 0.9, noNaN: true }),
        (seed, ratio) => {
          const { mods } = randomProblem(new Rng(seed));
          const counts = uniformCounts(mods, ratio);
          for (let l = 0; 2 * l < mods.length; l++) {
            const [a, m] = [mods[2 * l], mods[2 * l + 1]];
            const target = ratio * (a.n * a.cost + m.n * m.cost);
            const removedA = (a.n - counts[2 * l]) * a.cost;
            expect(a.n - counts[2 * l]).toBe(Math.max(0, Math.min(a.n - a.min, Math.round(ratio * a.n))));
            const want = (target - removedA) / m.cost;
            if (want < -0.5 || want > m.n - m.min + 0.5) continue; // the MLP guard binds
            const removed = removedA + (m.n - counts[2 * l + 1]) * m.cost;
            expect(Math.abs(removed - target)).toBeLessThanOrEqual(m.cost / 2 + 1e-9);
            layersChecked++;
          }
        },
      ),
      { seed: 4242, numRuns: 100 },
    );
    expect(layersChecked).toBeGreaterThan(100);
  });
});

describe("global allocation", () => {
  it("equals the reference greedy (standardized per module, lowest first, cost-weighted) on 300 random problems", () => {
    const rng = new Rng(34);
    let checked = 0;
    for (let t = 0; t < 300; t++) {
      const { mods, scores } = randomProblem(rng, { skip: t % 2 === 0, min: t % 3 === 0 });
      const ratio = rng.uniform() * 0.9;
      if (code(() => preflight(mods, ratio, "global"))) continue;
      const a = allocate(mods, scores, ratio, "global");
      const counts = refGlobalCounts(mods, scores.map(refStandardize), ratio);
      a.keep.forEach((k, i) => {
        expect(Array.from(k), `problem ${t} module ${i}`).toEqual(refTopK(scores[i], counts[i]));
      });
      // already comparable scores are taken as they are
      const z = scores.map(refStandardize);
      const b = allocate(mods, z, ratio, "global", { standardized: true });
      expect(b.keep.map((k) => k.length)).toEqual(counts);
      checked++;
    }
    expect(checked).toBeGreaterThan(150);
  });

  it("standardized: true ranks the given scores across modules without rescaling them", () => {
    // two modules of equal cost: the four lowest raw scores go, whatever module they are in
    const mods: ModuleUnits[] = [
      { layer: 0, module: "attn", n: 4, cost: 10, min: 1, skip: false, roundTo: 1 },
      { layer: 0, module: "mlp", n: 4, cost: 10, min: 1, skip: false, roundTo: 1 },
    ];
    const s = [Float64Array.from([-3, -2, 5, 6]), Float64Array.from([-1, -0.5, 7, 8])];
    const a = allocate(mods, s, 0.5, "global", { standardized: true });
    expect(a.keep.map((k) => Array.from(k))).toEqual([
      [2, 3],
      [2, 3],
    ]);
    // scaling one module's scores changes the outcome only without standardization
    const s2 = [s[0].map((v) => v * 100), s[1]];
    const raw = allocate(mods, s2, 0.25, "global", { standardized: true });
    expect(raw.keep.map((k) => k.length)).toEqual([2, 4]);
    const std = allocate(mods, s2, 0.25, "global");
    expect(std.keep.map((k) => k.length)).toEqual(
      allocate(mods, s, 0.25, "global").keep.map((k) => k.length),
    );
  });

  it("the cheaper unit goes first among equal scores only through the cost-weighted target", () => {
    // one expensive unit (cost 100) has the lowest score, but removing it overshoots a target of 30: skipped
    const mods: ModuleUnits[] = [
      { layer: 0, module: "attn", n: 2, cost: 100, min: 1, skip: false, roundTo: 1 },
      { layer: 0, module: "mlp", n: 10, cost: 10, min: 1, skip: false, roundTo: 1 },
    ];
    const s = [Float64Array.from([-10, 10]), Float64Array.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])];
    const a = allocate(mods, s, 30 / 300, "global", { standardized: true });
    expect(a.keep.map((k) => Array.from(k))).toEqual([
      [0, 1],
      [3, 4, 5, 6, 7, 8, 9],
    ]);
    expect(a.prunableAfter).toBe(270);
  });

  it("guards: every module keeps ≥ min units, skipped modules keep all, and the units removed are the lowest-scored", () => {
    const rng = new Rng(35);
    for (let t = 0; t < 200; t++) {
      const { mods, scores } = randomProblem(rng, { skip: true, min: true });
      const ratio = rng.uniform() * 0.9;
      if (code(() => preflight(mods, ratio, "global"))) continue;
      const a = allocate(mods, scores, ratio, "global");
      mods.forEach((m, i) => {
        expect(a.keep[i].length).toBeGreaterThanOrEqual(m.min);
        if (m.skip) expect(a.keep[i].length).toBe(m.n);
        const kept = new Set(a.keep[i]);
        const minKept = Math.min(...[...kept].map((u) => scores[i][u]));
        for (let u = 0; u < m.n; u++) if (!kept.has(u)) expect(scores[i][u]).toBeLessThanOrEqual(minKept);
      });
    }
  });

  it("exchange property: a kept unit with a lower standardized score than a removed one costs more", () => {
    const rng = new Rng(36);
    for (let t = 0; t < 200; t++) {
      const { mods, scores } = randomProblem(rng);
      const ratio = rng.uniform() * 0.8;
      if (code(() => preflight(mods, ratio, "global"))) continue;
      const a = allocate(mods, scores, ratio, "global");
      const z = scores.map(refStandardize);
      const removed: [number, number][] = [];
      const keptFree: [number, number][] = []; // kept units of modules whose minimum did not bind
      mods.forEach((m, i) => {
        const k = new Set(a.keep[i]);
        for (let u = 0; u < m.n; u++) {
          if (!k.has(u)) removed.push([z[i][u], m.cost]);
          else if (a.keep[i].length > m.min) keptFree.push([z[i][u], m.cost]);
        }
      });
      for (const [zb, cb] of keptFree)
        for (const [za, ca] of removed) if (zb < za) expect(cb).toBeGreaterThan(ca);
    }
  });

  it("property: with roundTo 1, |removed − r·P| ≤ c_max/2 whenever preflight accepts the ratio", () => {
    let accepted = 0;
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        fc.double({ min: 0, max: 0.95, noNaN: true }),
        fc.boolean(),
        (seed, ratio, guards) => {
          const { mods, scores } = randomProblem(new Rng(seed), { skip: guards, min: guards });
          if (code(() => preflight(mods, ratio, "global"))) return;
          const a = allocate(mods, scores, ratio, "global");
          const cmax = Math.max(...mods.filter((m) => !m.skip).map((m) => m.cost), 0);
          const gone = removedOf(mods, a.keep);
          expect(Math.abs(gone - ratio * totalOf(mods))).toBeLessThanOrEqual(cmax / 2 + 1e-6);
          expect(a.achievedRatio).toBeCloseTo(gone / totalOf(mods), 12);
          accepted++;
        },
      ),
      { seed: 4243, numRuns: 100 },
    );
    expect(accepted).toBeGreaterThan(50);
  });
});

describe("roundTo", () => {
  for (const method of ["uniform", "global"] as const) {
    it(`${method}: rounded kept widths are multiples of roundTo (or the whole module, or the guard) near the unrounded ones`, () => {
      const rng = new Rng(method === "uniform" ? 37 : 38);
      let checked = 0;
      for (let t = 0; t < 200; t++) {
        const to = [2, 4, 8][rng.int(3)];
        const seed = rng.int(1e9);
        const plain = randomProblem(new Rng(seed));
        const rounded = randomProblem(new Rng(seed), { roundTo: to });
        const ratio = rng.uniform() * 0.7;
        if (code(() => preflight(plain.mods, ratio, method))) continue;
        const a = allocate(plain.mods, plain.scores, ratio, method);
        const b = allocate(rounded.mods, rounded.scores, ratio, method);
        rounded.mods.forEach((m, i) => {
          const k = b.keep[i].length;
          if (m.module === "attn") {
            expect(k).toBe(a.keep[i].length);
            return;
          }
          const floor = Math.min(m.n, Math.max(m.min, to));
          expect(k % to === 0 || k === m.n || k === floor, `kept ${k} of ${m.n}, roundTo ${to}`).toBe(true);
          expect(k).toBeGreaterThanOrEqual(Math.min(m.min, m.n));
          if (k !== floor && k !== m.n) expect(Math.abs(k - a.keep[i].length)).toBeLessThanOrEqual(to / 2);
          expect(Array.from(b.keep[i])).toEqual(refTopK(rounded.scores[i], k));
        });
        checked++;
      }
      expect(checked).toBeGreaterThan(100);
    });
  }
});

describe("preflight", () => {
  const mods: ModuleUnits[] = [
    { layer: 0, module: "attn", n: 2, cost: 100, min: 1, skip: false, roundTo: 1 },
    { layer: 0, module: "mlp", n: 10, cost: 10, min: 1, skip: false, roundTo: 1 },
    { layer: 1, module: "attn", n: 1, cost: 100, min: 1, skip: true, roundTo: 1 },
    { layer: 1, module: "mlp", n: 10, cost: 10, min: 1, skip: true, roundTo: 1 },
  ];

  it("E_RATIO_INVALID outside [0, 1) (also NaN), for both methods", () => {
    for (const r of [-0.1, 1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(code(() => preflight(mods, r, "uniform"))).toBe("E_RATIO_INVALID");
      expect(code(() => preflight(mods, r, "global"))).toBe("E_RATIO_INVALID");
      expect(code(() => allocate(mods, [], r, "global"))).toBe("E_RATIO_INVALID");
    }
    expect(code(() => preflight(mods, 0, "uniform"))).toBeUndefined();
    expect(code(() => preflight(mods, 0.999, "global"))).toBe("E_LAYER_EMPTIED");
  });

  it("uniform: E_LAYER_EMPTIED when round(r·n) would leave fewer than min units in a module that is not skipped", () => {
    // layer 0 attention: 2 groups, round(0.75·2) = 2 → 0 kept
    expect(code(() => preflight(mods, 0.74, "uniform"))).toBeUndefined();
    expect(code(() => preflight(mods, 0.75, "uniform"))).toBe("E_LAYER_EMPTIED");
    // the skipped layer 1 (one group, which any r ≥ 0.5 would empty) is not checked
    expect(code(() => preflight(mods, 0.6, "uniform"))).toBeUndefined();
    const strict = mods.map((m) => ({ ...m, min: m.module === "mlp" ? 5 : m.min }));
    expect(code(() => preflight(strict, 0.5, "uniform"))).toBeUndefined(); // 10 − 5 = 5 ≥ 5
    expect(code(() => preflight(strict, 0.55, "uniform"))).toBe("E_LAYER_EMPTIED");
  });

  it("global: E_LAYER_EMPTIED when r of all parameters exceeds what can go without emptying a module", () => {
    // total 2·100 + 10·10 + 100 + 10·10 = 500; removable: layer 0 only, (2−1)·100 + (10−1)·10 = 190
    expect(code(() => preflight(mods, 190 / 500, "global"))).toBeUndefined();
    expect(code(() => preflight(mods, 191 / 500, "global"))).toBe("E_LAYER_EMPTIED");
    const { scores } = { scores: mods.map((m) => Float64Array.from({ length: m.n }, (_, u) => u)) };
    const a = allocate(mods, scores, 190 / 500, "global");
    expect(a.keep.map((k) => k.length)).toEqual([1, 1, 1, 10]);
  });
});
