/**
 * The cost model of a prune: what runs (passes over the calibration tokens), its FLOPs, its peak
 * memory, and a time estimate from this machine's measured rates. `pare prune` prints it before
 * starting; `--dry-run` prints it and stops; `--max-memory` refuses a plan that does not fit.
 */
import type { Model } from "../arch/model.ts";
import { countParams } from "../arch/params.ts";
import { CRITERIA } from "../criteria/index.ts";
import { PareError } from "../errors.ts";
import { GraphBuilder } from "../onnx/graph.ts";
import { RECONSTRUCTORS } from "../reconstruct/index.ts";
import { f32, f64, Session } from "../runtime/ort.ts";
import { matmul } from "../tensor/linalg.ts";
import type { Recipe } from "./recipe.ts";

export interface PrunePlan {
  calibrationTokens: number;
  /** forward passes of one layer over all calibration tokens */
  layerPasses: number;
  flops: { forward: number; statistics: number; solve: number; total: number };
  memoryBytes: {
    weightsCache: number;
    prunedWeights: number;
    streams: number;
    batch: number;
    gram: number;
    peak: number;
  };
  rates?: { matmulF32: number; matmulF64: number; js: number };
  estimateSeconds?: { forward: number; statistics: number; solve: number; total: number };
}

export function planPrune(model: Model, recipe: Recipe): PrunePlan {
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
  let statistics = 0;
  let solve = 0;
  const r = recipe.ratio;
  for (const L of d.layers) {
    for (const din of [L.nHeads * d.headDim, L.ffn]) {
      if (needs.has("gram")) statistics += 2 * N * (din + 1) ** 2 * (rec.needsCross ? 2 : 1);
      else if (needs.size) statistics += 3 * N * din;
      if (rec.needs.includes("gram")) {
        const u = (1 - r) * din + 1;
        const m = r * din;
        solve += u ** 3 / 3 + 2 * u * u * (rec.needsCross ? d.hidden : m) + 2 * d.hidden * m * u;
      }
    }
  }
  const largestLayer = Math.max(
    ...d.layers.map(
      (L) =>
        4 *
        d.hidden *
        (L.nHeads * d.headDim * 2 + L.nKv * d.headDim * 2 + L.ffn * (model.spec.names.gate ? 3 : 2)),
    ),
  );
  const maxIn = Math.max(...d.layers.map((L) => Math.max(L.nHeads * d.headDim, L.ffn)));
  const weightsCache = Math.max(64 << 20, 3 * largestLayer) + 4 * d.vocab * d.hidden;
  const prunedWeights = 4 * (p.total - r * p.prunable);
  const streams = 4 * N * d.hidden * (rec.needsCross ? 3 : 1);
  const batch = 4 * recipe.batchSize * T * (d.hidden + 2 * maxIn) * 3;
  const gram = needs.has("gram") ? 8 * (maxIn + 1) ** 2 * (rec.needsCross ? 4 : 3) : 0;
  const peak = Math.max(weightsCache + prunedWeights + streams + batch + gram, prunedWeights * 2 + streams);
  return {
    calibrationTokens: N,
    layerPasses,
    flops: { forward, statistics, solve, total: forward + statistics + solve },
    memoryBytes: { weightsCache, prunedWeights, streams, batch, gram, peak: Math.round(peak * 1.15) },
  };
}

/** Measure this machine's ORT MatMul rates (f32, f64) and a JavaScript loop rate, in FLOP/s (≈0.3 s). */
export async function measureRates(
  threads?: number,
): Promise<{ matmulF32: number; matmulF64: number; js: number }> {
  const n = 512;
  const rate = async (type: "float32" | "float64") => {
    const g = new GraphBuilder("rate");
    const a = g.input("a", type, [n, n]);
    g.output(g.op("MatMul", [a, a], {}, "y"), type, [n, n]);
    const s = await Session.create(g.toModel(), { threads, optLevel: "basic" });
    const x =
      type === "float32"
        ? f32([n, n], new Float32Array(n * n).fill(0.5))
        : f64([n, n], new Float64Array(n * n).fill(0.5));
    await s.run({ a: x });
    const t0 = performance.now();
    const reps = 4;
    for (let i = 0; i < reps; i++) await s.run({ a: x });
    await s.release();
    return (reps * 2 * n ** 3) / ((performance.now() - t0) / 1000);
  };
  const m = 96;
  const A = new Float64Array(m * m).fill(0.5);
  const t0 = performance.now();
  matmul(A, A, m, m, m);
  matmul(A, A, m, m, m);
  const js = (2 * 2 * m ** 3) / Math.max(1e-6, (performance.now() - t0) / 1000);
  return { matmulF32: await rate("float32"), matmulF64: await rate("float64"), js };
}

export function withEstimate(
  plan: PrunePlan,
  rates: { matmulF32: number; matmulF64: number; js: number },
): PrunePlan {
  const forward = plan.flops.forward / rates.matmulF32;
  const statistics = plan.flops.statistics / rates.matmulF64;
  const solve = plan.flops.solve / rates.js;
  return {
    ...plan,
    rates,
    estimateSeconds: { forward, statistics, solve, total: forward + statistics + solve },
  };
}

export function checkMemory(plan: PrunePlan, maxGiB: number | undefined): void {
  if (maxGiB === undefined) return;
  const need = plan.memoryBytes.peak / 1024 ** 3;
  if (need > maxGiB) {
    throw new PareError(
      "E_MEMORY_BUDGET",
      `this prune needs about ${need.toFixed(2)} GiB (peak), more than --max-memory ${maxGiB} GiB`,
      "raise --max-memory, or lower --samples / --seq-len (calibration activations) — the weights of one layer and the pruned model must fit",
      { needGiB: need },
    );
  }
}

export function describePlan(plan: PrunePlan): string[] {
  const g = (b: number) => `${(b / 1024 ** 3).toFixed(2)} GiB`;
  const tf = (f: number) => `${(f / 1e9).toFixed(1)} GFLOP`;
  const lines = [
    `plan: ${plan.calibrationTokens.toLocaleString("en-US")} calibration tokens, ${plan.layerPasses} layer passes`,
    `  work    forward ${tf(plan.flops.forward)}, statistics ${tf(plan.flops.statistics)}, solves ${tf(plan.flops.solve)}`,
    `  memory  peak ≈ ${g(plan.memoryBytes.peak)} (weights cache ${g(plan.memoryBytes.weightsCache)}, pruned weights ${g(plan.memoryBytes.prunedWeights)}, activations ${g(plan.memoryBytes.streams + plan.memoryBytes.batch)}, Gram ${g(plan.memoryBytes.gram)})`,
  ];
  if (plan.estimateSeconds && plan.rates) {
    const e = plan.estimateSeconds;
    lines.push(
      `  time    ≈ ${e.total.toFixed(1)} s (forward ${e.forward.toFixed(1)} s at ${(plan.rates.matmulF32 / 1e9).toFixed(0)} GFLOP/s, statistics ${e.statistics.toFixed(1)} s at ${(plan.rates.matmulF64 / 1e9).toFixed(0)} GFLOP/s f64, solves ${e.solve.toFixed(1)} s at ${(plan.rates.js / 1e9).toFixed(2)} GFLOP/s)`,
    );
  }
  return lines;
}
