/**
 * The cost model of a prune: what runs (passes over the calibration tokens), its FLOPs, its peak
 * memory, and a time estimate from this machine's measured rates. `pare prune` prints it before
 * starting; `--dry-run` prints it and stops; `--max-memory` refuses a plan that does not fit.
 */
import os from "node:os";
import { layerLinearElems } from "../arch/groups.ts";
import type { Model } from "../arch/model.ts";
import { countParams } from "../arch/params.ts";
import { chunkRowsFor, gramBlocks, gramIsMixed } from "../calib/stats.ts";
import { CRITERIA } from "../criteria/index.ts";
import { PareError } from "../errors.ts";
import { GraphBuilder } from "../onnx/graph.ts";
import { RECONSTRUCTORS } from "../reconstruct/index.ts";
import { f32, f64, Session } from "../runtime/ort.ts";
import { SPD_BASE } from "../tensor/spd.ts";
import type { Recipe } from "./recipe.ts";

/** This machine's ORT MatMul rates, FLOP/s. */
export interface Rates {
  matmulF32: number;
  matmulF64: number;
}

export interface PrunePlan {
  calibrationTokens: number;
  /** forward passes of one layer over all calibration tokens */
  layerPasses: number;
  /** FLOPs actually computed; statistics split by precision (f32 = mixed Gram products) */
  flops: {
    forward: number;
    statistics: number;
    statisticsF32: number;
    statisticsF64: number;
    solve: number;
    total: number;
  };
  memoryBytes: {
    weightsCache: number;
    /** one layer's pruned tensors (written to the output as soon as the layer is done) */
    prunedWeights: number;
    streams: number;
    batch: number;
    /** Gram matrices being accumulated or solved */
    gram: number;
    /**
     * calibration data waiting between steps — the activations between layers of a dense pass and,
     * under dense calibration, every layer's Grams until reconstruction: the part held in memory …
     */
    held: number;
    /** … and the part spilled to a temporary file next to the output (beyond --max-memory) */
    spilled: number;
    peak: number;
  };
  rates?: Rates;
  estimateSeconds?: { forward: number; statistics: number; solve: number; total: number };
  /** sequential calibration: the estimate of the same prune with --calibration dense (one pass) */
  denseAlternativeSeconds?: number;
}

/** FLOPs of one chunk-summed Gram of X̃ [N, D]: full product in f64, lower block triangle in mixed. */
function gramFlops(N: number, D: number, mixed: boolean): number {
  if (!mixed) return 2 * N * D * D;
  return gramBlocks(D).reduce(
    (s, [, wi], i, b) => s + b.slice(0, i + 1).reduce((t, [, wj]) => t + 2 * N * wi * wj, 0),
    0,
  );
}

/**
 * @param heldBudget bytes of waiting calibration data (activations of a dense pass, Grams under dense
 *   calibration) kept in memory; the rest is spilled. Default: what --max-memory leaves beyond the
 *   rest of the plan, else a quarter of RAM.
 */
export function planPrune(model: Model, recipe: Recipe, heldBudget?: number): PrunePlan {
  const d = model.dims;
  const crit = CRITERIA[recipe.criterion];
  const rec = RECONSTRUCTORS[recipe.reconstruct];
  const needs = new Set([...crit.needs, ...rec.needs]);
  const calibrated = needs.size > 0;
  const N = calibrated ? recipe.samples * Math.min(recipe.seqLen, d.maxPos) : 0;
  const T = Math.min(recipe.seqLen, d.maxPos);
  const sequential = recipe.calibration === "sequential" && calibrated;
  const scoringPass = recipe.allocation === "global" && crit.needs.length > 0 && sequential;
  // per layer: sequential = attention taps, MLP taps, propagate (+2 dense runs for liar-seq); dense = 1 run
  const perLayer = sequential ? 3 + (rec.needsCross ? 2 : 0) : calibrated ? 1 : 0;
  const layerPasses = d.nLayers * (perLayer + (scoringPass ? 1 : 0));
  const p = countParams(model);
  const attnFlops = d.layers.reduce((s, L) => s + 4 * T * L.nHeads * d.headDim, 0) / d.nLayers;
  const layerFlopsPerToken = (2 * p.prunable) / d.nLayers + attnFlops;
  const forward = N * layerFlopsPerToken * layerPasses;
  let statisticsF32 = 0;
  let statisticsF64 = 0;
  let solve = 0;
  let waiting = 0;
  const r = recipe.ratio;
  for (const L of d.layers) {
    for (const din of [L.nHeads * d.headDim, L.ffn]) {
      if (needs.has("gram")) {
        const mixed = gramIsMixed(recipe.gramPrecision, din);
        const f = gramFlops(N, din + 1, mixed) + (rec.needsCross ? 2 * N * (din + 1) ** 2 : 0);
        if (mixed) statisticsF32 += f;
        else statisticsF64 += f;
        if (!sequential) waiting += 8 * (din + 1) ** 2;
      } else if (needs.size) statisticsF64 += 3 * N * din;
      if (rec.needs.includes("gram")) {
        // ORT float64 (src/tensor/spd.ts): blocked Cholesky (≈ 0.42 u³), two triangular solves with m
        // right-hand sides (u²·m + 2·u·256·m each), the consumer update W_m·Qᵀ (2·d_out·m·u)
        const u = (1 - r) * din + 1;
        const m = rec.needsCross ? d.hidden : r * din;
        solve +=
          0.42 * u ** 3 + 2 * u * u * m + 4 * u * SPD_BASE * m + (rec.needsCross ? 0 : 2 * d.hidden * m * u);
      }
    }
  }
  const statistics = statisticsF32 + statisticsF64;
  const largestLayer = Math.max(
    ...d.layers.map((L) => 4 * layerLinearElems(model.spec, L, d.hidden, d.headDim)),
  );
  const maxIn = Math.max(...d.layers.map((L) => Math.max(L.nHeads * d.headDim, L.ffn)));
  const weightsCache = Math.max(64 << 20, 3 * largestLayer) + 4 * d.vocab * d.hidden;
  const prunedWeights = largestLayer;
  // calibration streams between layers, all in the spill store: the model's (liar-seq: + the dense model's
  // and its next output) and, in a dense pass (dense calibration, global scoring), the next layer's input
  const streams = calibrated ? 4 * N * d.hidden * (rec.needsCross ? 3 : 1) : 0;
  waiting += streams + (calibrated && (!sequential || scoringPass) ? 4 * N * d.hidden : 0);
  // one calibration batch in flight: ORT's working set of the layer graph (attention scores and their
  // softmax, q/k/v and attention output, the MLP's gate/up/product), its three outputs (in ORT and as
  // JavaScript copies), and the mixed Gram's chunk (X̃, its column blocks, the block products)
  const rows = recipe.batchSize * T;
  const maxHeads = Math.max(...d.layers.map((L) => L.nHeads));
  const maxKv = Math.max(...d.layers.map((L) => L.nKv));
  const layerWork =
    2 * recipe.batchSize * maxHeads * T * T +
    2 * rows * (2 * maxHeads * d.headDim + 2 * maxKv * d.headDim) +
    3 * rows * maxIn;
  const outputs = 2 * rows * (d.hidden + maxHeads * d.headDim + maxIn);
  const chunk = needs.has("gram") ? 2 * chunkRowsFor(maxIn, true) * (maxIn + 1) + 0.6 * (maxIn + 1) ** 2 : 0;
  const batch = 4 * (layerWork + outputs + chunk);
  const gram = needs.has("gram") ? 8 * (maxIn + 1) ** 2 * (rec.needsCross ? 4 : 3) : 0;
  let base = Math.round((weightsCache + prunedWeights + batch + gram) * 1.15);
  const budgetFor = (b: number) =>
    heldBudget ??
    (recipe.maxMemory !== undefined ? Math.max(0, recipe.maxMemory * 1024 ** 3 - b) : os.totalmem() / 4);
  let held = Math.min(waiting, budgetFor(base));
  // a sequential checkpoint reads spilled streams back (all batches at once) to save them
  if (sequential && held < waiting) {
    base += Math.round(4 * N * d.hidden * (rec.needsCross ? 2 : 1) * 1.15);
    held = Math.min(waiting, budgetFor(base));
  }
  return {
    calibrationTokens: N,
    layerPasses,
    flops: { forward, statistics, statisticsF32, statisticsF64, solve, total: forward + statistics + solve },
    memoryBytes: {
      weightsCache,
      prunedWeights,
      streams,
      batch,
      gram,
      held,
      spilled: waiting - held,
      peak: base + held,
    },
  };
}

/** ORT MatMul [m, k]·[k, n] rate in FLOP/s: the best of `reps` runs after a warm-up. */
export async function matmulRate(
  type: "float32" | "float64",
  m: number,
  k: number,
  n: number,
  opts: { threads?: number; reps?: number } = {},
): Promise<number> {
  const g = new GraphBuilder("rate");
  const a = g.input("a", type, [m, k]);
  const b = g.input("b", type, [k, n]);
  g.output(g.op("MatMul", [a, b], {}, "y"), type, [m, n]);
  const s = await Session.create(g.toModel(), { threads: opts.threads, optLevel: "basic" });
  const fill = (len: number) => Array.from({ length: len }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
  const t = (dims: number[]) =>
    type === "float32"
      ? f32(dims, Float32Array.from(fill(dims[0] * dims[1])))
      : f64(dims, Float64Array.from(fill(dims[0] * dims[1])));
  const feeds = { a: t([m, k]), b: t([k, n]) };
  await s.run(feeds);
  let best = Infinity;
  for (let i = 0; i < (opts.reps ?? 4); i++) {
    const t0 = performance.now();
    await s.run(feeds);
    best = Math.min(best, (performance.now() - t0) / 1000);
  }
  await s.release();
  return (2 * m * k * n) / best;
}

/** This machine's ORT MatMul rates (f32, f64; 1024³, best of 4), in FLOP/s (≈0.3 s). */
export async function measureRates(threads?: number): Promise<Rates> {
  return {
    matmulF32: await matmulRate("float32", 1024, 1024, 1024, { threads }),
    matmulF64: await matmulRate("float64", 1024, 1024, 1024, { threads }),
  };
}

export function withEstimate(plan: PrunePlan, rates: Rates): PrunePlan {
  const forward = plan.flops.forward / rates.matmulF32;
  const statistics = plan.flops.statisticsF32 / rates.matmulF32 + plan.flops.statisticsF64 / rates.matmulF64;
  const solve = plan.flops.solve / rates.matmulF64;
  return {
    ...plan,
    rates,
    estimateSeconds: { forward, statistics, solve, total: forward + statistics + solve },
  };
}

/** The plan with its time estimate and, for sequential calibration, the dense alternative's estimate. */
export function estimatePlan(model: Model, recipe: Recipe, rates: Rates, heldBudget?: number): PrunePlan {
  const plan = withEstimate(planPrune(model, recipe, heldBudget), rates);
  const rec = RECONSTRUCTORS[recipe.reconstruct];
  if (recipe.calibration === "sequential" && !rec.needsCross && plan.calibrationTokens > 0) {
    const alt = withEstimate(planPrune(model, { ...recipe, calibration: "dense" }, heldBudget), rates);
    plan.denseAlternativeSeconds = alt.estimateSeconds?.total;
  }
  return plan;
}

export function checkMemory(plan: PrunePlan, maxGiB: number | undefined): void {
  if (maxGiB === undefined) return;
  const need = plan.memoryBytes.peak / 1024 ** 3;
  if (need > maxGiB) {
    throw new PareError(
      "E_MEMORY_BUDGET",
      `this prune needs about ${need.toFixed(2)} GiB (peak), more than --max-memory ${maxGiB} GiB`,
      "raise --max-memory, or lower --samples / --seq-len / --batch-size (activations): one layer's weights, its Gram matrices and the activations must fit; calibration data waiting between steps is spilled to disk",
      { needGiB: need },
    );
  }
}

export function describePlan(plan: PrunePlan): string[] {
  const g = (b: number) => `${(b / 1024 ** 3).toFixed(2)} GiB`;
  const tf = (f: number) => `${(f / 1e9).toFixed(1)} GFLOP`;
  const m = plan.memoryBytes;
  const lines = [
    `plan: ${plan.calibrationTokens.toLocaleString("en-US")} calibration tokens, ${plan.layerPasses} layer passes`,
    `  work    forward ${tf(plan.flops.forward)}, statistics ${tf(plan.flops.statistics)}, solves ${tf(plan.flops.solve)}`,
    `  memory  peak ≈ ${g(m.peak)} (weights cache ${g(m.weightsCache)}, one pruned layer ${g(m.prunedWeights)}, activations ${g(m.streams + m.batch)}, Grams ${g(m.gram)}, waiting calibration data ${g(m.held)})${m.spilled > 0 ? `; ${g(m.spilled)} spilled to a temporary file` : ""}`,
  ];
  if (plan.estimateSeconds && plan.rates) {
    const e = plan.estimateSeconds;
    const gf = (r: number) => (r / 1e9).toFixed(0);
    lines.push(
      `  time    ≈ ${e.total.toFixed(1)} s (forward ${e.forward.toFixed(1)} s at ${gf(plan.rates.matmulF32)} GFLOP/s, statistics ${e.statistics.toFixed(1)} s, solves ${e.solve.toFixed(1)} s at ${gf(plan.rates.matmulF64)} GFLOP/s f64)`,
    );
    const alt = plan.denseAlternativeSeconds;
    if (alt !== undefined && alt < 0.75 * e.total) {
      lines.push(
        `  faster  --calibration dense: one pass of the unpruned model instead of ${plan.layerPasses} layer passes, ≈ ${alt.toFixed(1)} s`,
      );
    }
  }
  return lines;
}
