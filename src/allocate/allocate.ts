/**
 * Allocation (docs/methods.md §3): scores → which units each (layer, module) keeps.
 * uniform: every module removes the same fraction of its units (FLAP's UL-UM).
 * global: scores standardized per module, ranked together, removed lowest first while
 * weighing each unit by its parameter cost (FLAP's AL-AM).
 */
import { PareError } from "../errors.ts";

export interface ModuleUnits {
  layer: number;
  module: "attn" | "mlp";
  /** number of units (KV groups or FFN channels) */
  n: number;
  /** parameters removed with one unit */
  cost: number;
  /** minimum units to keep */
  min: number;
  /** keep every unit (skipped layer) */
  skip: boolean;
  /** round the kept count to a multiple of this (1 = off) */
  roundTo: number;
}

export interface Allocation {
  /** sorted kept unit indices, one array per module (same order as the input) */
  keep: Int32Array[];
  prunableBefore: number;
  prunableAfter: number;
  achievedRatio: number;
}

function round(n: number, k: number, to: number, min: number): number {
  if (to <= 1) return k;
  let r = Math.round(k / to) * to;
  if (r < Math.max(min, to)) r = Math.min(n, Math.max(min, to));
  return Math.min(n, r);
}

/** Check before any work that the ratio can be met without emptying a module. */
export function preflight(mods: ModuleUnits[], ratio: number, method: "uniform" | "global"): void {
  if (!(ratio >= 0 && ratio < 1)) {
    throw new PareError(
      "E_RATIO_INVALID",
      `ratio ${ratio} is outside [0, 1)`,
      "use e.g. --ratio 0.3 to remove 30% of attention+MLP parameters",
    );
  }
  const total = mods.reduce((s, m) => s + m.n * m.cost, 0);
  if (method === "uniform") {
    for (const m of mods) {
      if (m.skip) continue;
      const kept = m.n - Math.round(ratio * m.n);
      if (kept < m.min) {
        throw new PareError(
          "E_LAYER_EMPTIED",
          `ratio ${ratio} would leave layer ${m.layer} with ${kept} of ${m.n} ${m.module === "attn" ? "KV groups" : "FFN channels"} (minimum ${m.min})`,
          "lower --ratio, or use --allocation global which spreads the removal over layers",
        );
      }
    }
  } else {
    const removable = mods.reduce((s, m) => s + (m.skip ? 0 : (m.n - m.min) * m.cost), 0);
    if (ratio * total > removable + 1e-9) {
      throw new PareError(
        "E_LAYER_EMPTIED",
        `ratio ${ratio} needs ${Math.round(ratio * total)} parameters removed but only ${removable} can go without emptying a layer`,
        "lower --ratio or remove layers from --skip-layers",
      );
    }
  }
}

/**
 * Kept unit counts of uniform allocation: in each layer, attention removes round(r·n) KV groups
 * and the MLP removes the channels that bring the layer's removed parameters closest to r of
 * its prunable parameters (so the achieved ratio meets the request within one FFN channel
 * per layer, although KV groups are coarse).
 */
export function uniformCounts(mods: ModuleUnits[], ratio: number): number[] {
  const counts = mods.map((m) => m.n);
  const layers = [...new Set(mods.map((m) => m.layer))];
  for (const layer of layers) {
    const idx = mods.map((m, i) => (m.layer === layer ? i : -1)).filter((i) => i >= 0);
    if (mods[idx[0]].skip) continue;
    const target = ratio * idx.reduce((s, i) => s + mods[i].n * mods[i].cost, 0);
    let removed = 0;
    // coarse modules first (attention groups), the finest last takes the remainder
    const order = idx.slice().sort((a, b) => mods[b].cost - mods[a].cost);
    order.forEach((i, k) => {
      const m = mods[i];
      const last = k === order.length - 1;
      let r = last ? Math.round((target - removed) / m.cost) : Math.round(ratio * m.n);
      r = Math.max(0, Math.min(m.n - m.min, r));
      counts[i] = round(m.n, m.n - r, m.roundTo, m.min);
      removed += (m.n - counts[i]) * m.cost;
    });
  }
  return counts;
}

/**
 * Kept unit counts of global allocation by removal costs (structured criteria): module mi removes its units in
 * a fixed greedy order, its t-th removal costing stepCosts[mi][t] (comparable across modules). A removal's key
 * is the running maximum of its module's costs up to t (so that a module's removals stay in order) divided by
 * the unit's parameter cost; removals are taken by increasing key while each brings the removed parameter count
 * closer to r of all attention+MLP parameters. Guards as in `allocate`.
 */
export function costCounts(mods: ModuleUnits[], stepCosts: Float64Array[], ratio: number): number[] {
  preflight(mods, ratio, "global");
  const total = mods.reduce((s, m) => s + m.n * m.cost, 0);
  const cand: { m: number; t: number; key: number }[] = [];
  mods.forEach((m, mi) => {
    if (m.skip) return;
    let run = Number.NEGATIVE_INFINITY;
    const steps = Math.min(stepCosts[mi].length, m.n - m.min);
    for (let t = 0; t < steps; t++) {
      run = Math.max(run, stepCosts[mi][t]);
      cand.push({ m: mi, t, key: run / m.cost });
    }
  });
  cand.sort((a, b) => a.key - b.key || a.m - b.m || a.t - b.t);
  const target = ratio * total;
  const removed = mods.map(() => 0);
  let gone = 0;
  for (const c of cand) {
    const m = mods[c.m];
    if (c.t !== removed[c.m]) continue; // an earlier removal of this module was not taken
    if (Math.abs(gone + m.cost - target) < Math.abs(gone - target)) {
      removed[c.m]++;
      gone += m.cost;
    }
  }
  return mods.map((m, i) => round(m.n, m.n - removed[i], m.roundTo, m.min));
}

export function topK(scores: Float64Array, k: number): Int32Array {
  const idx = Array.from(scores, (_, i) => i).sort((a, b) => scores[b] - scores[a] || a - b);
  return Int32Array.from(idx.slice(0, k)).sort();
}

export function standardize(s: Float64Array): Float64Array {
  const n = s.length;
  const mu = s.reduce((a, b) => a + b, 0) / n;
  const sd = Math.sqrt(s.reduce((a, b) => a + (b - mu) * (b - mu), 0) / Math.max(1, n - 1));
  return s.map((v) => (sd > 0 ? (v - mu) / sd : 0));
}

/**
 * `scores` per module (higher = keep). Global allocation standardizes them per module unless
 * `standardized` says they already are comparable across modules.
 */
export function allocate(
  mods: ModuleUnits[],
  scores: Float64Array[],
  ratio: number,
  method: "uniform" | "global",
  opts: { standardized?: boolean } = {},
): Allocation {
  preflight(mods, ratio, method);
  const total = mods.reduce((s, m) => s + m.n * m.cost, 0);
  let keepCounts: number[];
  if (method === "uniform") {
    keepCounts = uniformCounts(mods, ratio);
  } else {
    const z = opts.standardized ? scores : scores.map(standardize);
    const cand: { m: number; u: number; z: number }[] = [];
    mods.forEach((m, mi) => {
      if (!m.skip) for (let u = 0; u < m.n; u++) cand.push({ m: mi, u, z: z[mi][u] });
    });
    cand.sort((a, b) => a.z - b.z || a.m - b.m || a.u - b.u);
    const target = ratio * total;
    const removed = mods.map(() => 0);
    let gone = 0;
    for (const c of cand) {
      const m = mods[c.m];
      if (m.n - removed[c.m] <= m.min) continue;
      // remove while it brings the removed parameter count closer to the target
      if (Math.abs(gone + m.cost - target) < Math.abs(gone - target)) {
        removed[c.m]++;
        gone += m.cost;
      }
    }
    keepCounts = mods.map((m, i) => round(m.n, m.n - removed[i], m.roundTo, m.min));
  }
  const keep = mods.map((m, i) =>
    keepCounts[i] === m.n ? Int32Array.from({ length: m.n }, (_, j) => j) : topK(scores[i], keepCounts[i]),
  );
  const after = mods.reduce((s, m, i) => s + keep[i].length * m.cost, 0);
  return { keep, prunableBefore: total, prunableAfter: after, achievedRatio: 1 - after / total };
}
