/**
 * costCounts (global allocation by greedy removal costs, structured criteria) against a brute-force reference:
 * with each module's removals in a fixed order, the counts that minimize the summed cost of the removed steps among
 * all count vectors within half the largest unit cost of the target coincide with the greedy by cost per
 * parameter when the step costs increase (exchange argument) — checked on small random problems with increasing
 * costs — plus the guards (minimum units, skipped modules) and the prefix order with non-monotone costs.
 */
import { describe, expect, it } from "vitest";
import { costCounts, type ModuleUnits } from "../../src/allocate/allocate.ts";
import { Rng } from "../helpers/rng.ts";

const mod = (
  layer: number,
  module: "attn" | "mlp",
  n: number,
  cost: number,
  min = 1,
  skip = false,
): ModuleUnits => ({
  layer,
  module,
  n,
  cost,
  min,
  skip,
  roundTo: 1,
});

describe("costCounts", () => {
  it("takes the cheapest removals per parameter first, across modules", () => {
    const mods = [mod(0, "mlp", 4, 1), mod(1, "mlp", 4, 1)];
    // module 0's removals are cheap, module 1's expensive: 3 of the 4 removals (ratio 3/8) come from module 0
    const counts = costCounts(mods, [Float64Array.of(1, 2, 3), Float64Array.of(10, 20, 30)], 3 / 8);
    expect(counts).toEqual([1, 4]);
    // cost per parameter: the MLP's first removal (1 per parameter), then a 4-parameter unit of step cost 8
    // (2 per parameter) before the MLP's second (3); that reaches 5 of the 4 targeted, nearer than 6
    const mixed = [mod(0, "attn", 2, 4), mod(0, "mlp", 8, 1)];
    const c2 = costCounts(mixed, [Float64Array.of(8), Float64Array.of(1, 3, 5, 7, 9, 11, 13)], 4 / 16);
    expect(c2).toEqual([1, 7]);
  });

  it("keeps a module's removals in order (running maximum): a cheap late step cannot jump the queue", () => {
    const mods = [mod(0, "mlp", 4, 1), mod(1, "mlp", 4, 1)];
    // module 0: 5 then 0.1 — the second removal is only available after the first (key max(5, 0.1) = 5)
    const counts = costCounts(mods, [Float64Array.of(5, 0.1, 0.1), Float64Array.of(1, 2, 3)], 2 / 8);
    expect(counts).toEqual([4, 2]);
  });

  it("respects minimum units and skipped modules", () => {
    const mods = [mod(0, "mlp", 4, 1, 3), mod(1, "mlp", 4, 1, 1, true), mod(2, "mlp", 4, 1)];
    const counts = costCounts(
      mods,
      [Float64Array.of(0, 0, 0), new Float64Array(0), Float64Array.of(9, 9, 9)],
      3 / 12,
    );
    expect(counts).toEqual([3, 4, 2]);
  });

  it("with increasing step costs, minimizes the summed cost among counts that meet the target (brute force)", () => {
    const rng = new Rng(5);
    for (let trial = 0; trial < 200; trial++) {
      const mods = [mod(0, "mlp", 4, 1), mod(1, "mlp", 4, 1), mod(2, "mlp", 3, 1)];
      const steps = mods.map((m) => {
        let c = 0;
        return Float64Array.from({ length: m.n - m.min }, () => (c += rng.uniform() + 0.01));
      });
      const total = mods.reduce((s, m) => s + m.n, 0);
      const removeN = 1 + Math.floor(rng.uniform() * 7);
      const counts = costCounts(mods, steps, removeN / total);
      const removed = mods.map((m, i) => m.n - counts[i]);
      expect(removed.reduce((a, b) => a + b, 0)).toBe(removeN);
      const sum = (r: number[]) =>
        r.reduce((s, k, i) => s + steps[i].slice(0, k).reduce((a, b) => a + b, 0), 0);
      let best = Number.POSITIVE_INFINITY;
      for (let a = 0; a <= 3; a++)
        for (let b = 0; b <= 3; b++)
          for (let c = 0; c <= 2; c++) if (a + b + c === removeN) best = Math.min(best, sum([a, b, c]));
      expect(sum(removed)).toBeCloseTo(best, 12);
    }
  });
});
