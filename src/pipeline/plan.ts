/**
 * The cost model of a prune: what runs (passes over the calibration tokens), its FLOPs, its peak
 * memory, and a time estimate from this machine's measured rates. `pare prune` prints it before
 * starting; `--dry-run` prints it and stops; `--max-memory` refuses a plan that does not fit.
 */
import os from "node:os";
import { layerLinearElems } from "../arch/groups.ts";
import type { Model } from "../arch/model.ts";
import { chunkRowsFor, gramBlocks, gramIsMixed } from "../calib/stats.ts";
import { CRITERIA, type Criterion } from "../criteria/index.ts";
import { obsLoopRate, obsPathWork } from "../criteria/obs.ts";
import { PareError } from "../errors.ts";
import { matmulRate, SPD_BASE } from "../ops/index.ts";
import type { QuantizationCost } from "../quant/cost.ts";
import { RECONSTRUCTORS, RIDGE_GRID } from "../reconstruct/index.ts";
import type { Recipe } from "./recipe.ts";

export { matmulRate } from "../ops/index.ts";

/** This machine's ORT MatMul rates, FLOP/s, and its rate of obs's JavaScript downdate loop. */
export interface Rates {
  matmulF32: number;
  matmulF64: number;
  /** element operations per second of obs's exact single-channel step (src/criteria/obs.ts obsLoopRate) */
  obsLoop: number;
  /** ORT f64 MatMul [2048, 64]·[64, 2048]: the rate of obs's low-rank downdates */
  rankF64: number;
}

export interface PrunePlan {
  calibrationTokens: number;
  /**
   * layer forwards over all calibration tokens, in whole-layer equivalents (FLOPs of the layer parts run ÷
   * FLOPs of a whole unpruned layer, summed over layers; 2 decimals): a dense pass counts 1 per layer
   */
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
  /**
   * a structured criterion's (obs) selection work in JavaScript loops, element operations (its ORT part is in
   * flops.solve) …
   */
  selectionOps: number;
  /** … and the low-rank part of its ORT work (in flops.solve too), timed at the rank-update rate */
  selectionRankFlops: number;
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
  /** solve = the ORT float64 work (least squares, obs's ORT part); selection = obs's JavaScript loops */
  estimateSeconds?: { forward: number; statistics: number; solve: number; selection: number; total: number };
  /** sequential calibration: the estimate of the same prune with --calibration dense (one pass) */
  denseAlternativeSeconds?: number;
  /** --quantize: what quantizing the layers adds (quant/cost.ts) */
  quantization?: QuantizationCost;
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
/**
 * FLOPs per token of the parts of a layer (src/ops/layers.ts) with these widths: the attention (q/k/v
 * projections, q·kᵀ and the weighted values over T positions), o_proj, the MLP's gate/up (up) projections,
 * down_proj.
 */
function partFlops(model: Model, nHeads: number, nKv: number, ffn: number, T: number) {
  const { hidden: D, headDim: hd } = model.dims;
  const gated = model.spec.block.mlp === "gated" ? 2 : 1;
  return {
    attention: 2 * D * hd * (nHeads + 2 * nKv) + 4 * T * nHeads * hd,
    o: 2 * nHeads * hd * D,
    up: 2 * D * ffn * gated,
    down: 2 * ffn * D,
  };
}

/**
 * Forward FLOPs per token of the calibration passes over one layer, and of one whole unpruned layer.
 * Sequential (src/pipeline/sequential.ts): the attention taps (the layer's attention, whole), the MLP taps
 * after the attention cut (cut attention, o_proj, whole gate/up), the rest of the cut layer (cut gate/up,
 * down_proj); widths after the cut estimated as (1 − ratio) of the whole. liar-seq adds the unpruned layer
 * once, global allocation a dense scoring pass; dense calibration runs each layer once, whole. Blocks whose
 * parts after attention ONNX Runtime computes differently from the whole layer (post-norm: BERT) run those
 * passes as whole layers: the layer with its attention cut, the cut layer (liar-seq: the unpruned layer twice).
 */
function layerPassFlops(
  model: Model,
  i: number,
  T: number,
  r: number,
  sequential: boolean,
  cross: boolean,
  scoring: boolean,
): { passes: number; whole: number } {
  const L = model.dims.layers[i];
  const full = partFlops(model, L.nHeads, L.nKv, L.ffn, T);
  const cut = partFlops(model, L.nHeads * (1 - r), L.nKv * (1 - r), L.ffn * (1 - r), T);
  const sum = (f: typeof full) => f.attention + f.o + f.up + f.down;
  const whole = sum(full);
  if (!sequential) return { passes: whole, whole };
  const split = model.spec.block.placement === "pre";
  let passes = split
    ? full.attention + cut.attention + cut.o + full.up + cut.up + cut.down
    : full.attention + cut.attention + cut.o + full.up + full.down + sum(cut);
  if (cross) passes += split ? whole : 2 * whole;
  if (scoring) passes += whole;
  return { passes, whole };
}

/**
 * @param heldBudget bytes of waiting calibration data (activations of a dense pass, Grams under dense
 *   calibration) kept in memory; the rest is spilled. Default: what --max-memory leaves beyond the
 *   rest of the plan, else a quarter of RAM.
 */
export function planPrune(model: Model, recipe: Recipe, heldBudget?: number): PrunePlan {
  const d = model.dims;
  const crit: Criterion = CRITERIA[recipe.criterion];
  const rec = RECONSTRUCTORS[recipe.reconstruct];
  const needs = new Set([...crit.needs, ...rec.needs]);
  const calibrated = needs.size > 0;
  const N = calibrated ? recipe.samples * Math.min(recipe.seqLen, d.maxPos) : 0;
  const T = Math.min(recipe.seqLen, d.maxPos);
  const sequential = recipe.calibration === "sequential" && calibrated;
  const scoringPass = recipe.allocation === "global" && crit.needs.length > 0 && sequential;
  let perToken = 0;
  let wholeLayers = 0;
  if (calibrated) {
    for (let i = 0; i < d.nLayers; i++) {
      const f = layerPassFlops(model, i, T, recipe.ratio, sequential, rec.needsCross, scoringPass);
      perToken += f.passes;
      wholeLayers += f.passes / f.whole;
    }
  }
  const layerPasses = Math.round(100 * wholeLayers) / 100;
  const forward = N * perToken;
  let statisticsF32 = 0;
  let statisticsF64 = 0;
  let solve = 0;
  let selectionOps = 0;
  let selectionRankFlops = 0;
  let waiting = 0;
  const r = recipe.ratio;
  // a structured criterion (obs) under global allocation runs every module's greedy path on the dense pass's
  // Grams, which wait (spilled beyond the budget) until all are scored
  const structuredGlobal = crit.structured === true && recipe.allocation === "global" && r > 0;
  // --ridge auto (sequential calibration: held-out batches): each α of the grid fitted on the fit batches, then
  // the chosen one on all; under dense calibration auto means the default α (src/reconstruct/index.ts)
  const fits =
    recipe.ridge === "auto" && rec.needs.includes("gram") && sequential ? RIDGE_GRID.length + 1 : 1;
  for (const L of d.layers) {
    for (const [module, din] of [
      ["attn", L.nHeads * d.headDim],
      ["mlp", L.ffn],
    ] as const) {
      if (needs.has("gram")) {
        const mixed = gramIsMixed(recipe.gramPrecision, din);
        const f = gramFlops(N, din + 1, mixed) + (rec.needsCross ? 2 * N * (din + 1) ** 2 : 0);
        if (mixed) statisticsF32 += f;
        else statisticsF64 += f;
        if (!sequential || structuredGlobal) waiting += 8 * (din + 1) ** 2;
      } else if (needs.size) statisticsF64 += 3 * N * din;
      if (rec.needs.includes("gram")) {
        // ORT float64 (src/ops/spd.ts): blocked Cholesky (≈ 0.42 u³), two triangular solves with m
        // right-hand sides (u²·m + 2·u·256·m each), the consumer update W_m·Qᵀ (2·d_out·m·u)
        const u = (1 - r) * din + 1;
        const m = rec.needsCross ? d.hidden : r * din;
        solve +=
          fits *
          (0.42 * u ** 3 +
            2 * u * u * m +
            4 * u * SPD_BASE * m +
            (rec.needsCross ? 0 : 2 * d.hidden * m * u));
      }
      if (crit.structured && r > 0) {
        // obs (src/criteria/obs.ts): its path step by step — blocked rank-B downdates in ORT while more than
        // 1024 units are active, then exact steps (JavaScript for channels, ORT for KV groups) down to the kept
        // count (global: to the module's minimum, 1)
        const attn = module === "attn";
        const n = attn ? L.nKv : din;
        const w = obsPathWork({
          n,
          unit: attn ? din / L.nKv : 1,
          dOut: d.hidden,
          keep: structuredGlobal ? 1 : n - Math.round(r * n),
          intercept: true,
        });
        solve += w.ort + w.ortRank;
        selectionRankFlops += w.ortRank;
        selectionOps += w.js;
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
  // calibration streams between layers, all in the spill store: the model's input of the layer being pruned
  // (sequential: + its stream between attention and MLP; liar-seq: + both of the unpruned model) and, in a
  // dense pass (dense calibration, global scoring), the next layer's input
  const streams = calibrated ? 4 * N * d.hidden * (sequential ? (rec.needsCross ? 4 : 2) : 1) : 0;
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
  // Grams being accumulated or solved; obs's greedy path (src/criteria/obs.ts) holds, besides the Gram, H, L⁻¹,
  // H⁻¹ and a blocked downdate's kept copy and ORT output: ≈ 6 more D² matrices (bench:scale --criterion obs
  // peaked 1.55 GiB above a plan that counted 3, D = 5633)
  const gram = needs.has("gram") ? 8 * (maxIn + 1) ** 2 * (crit.structured ? 9 : rec.needsCross ? 4 : 3) : 0;
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
    selectionOps,
    selectionRankFlops,
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

/**
 * This machine's ORT MatMul rates (f32, f64; 1024³, best of 4; f64 at rank 64), in FLOP/s, and obs's loop rate
 * (≈0.5 s).
 */
export async function measureRates(threads?: number): Promise<Rates> {
  return {
    matmulF32: await matmulRate("float32", 1024, 1024, 1024, { threads }),
    matmulF64: await matmulRate("float64", 1024, 1024, 1024, { threads }),
    obsLoop: obsLoopRate(),
    rankF64: await matmulRate("float64", 2048, 64, 2048, { threads }),
  };
}

export function withEstimate(plan: PrunePlan, rates: Rates): PrunePlan {
  const forward = plan.flops.forward / rates.matmulF32;
  const statistics = plan.flops.statisticsF32 / rates.matmulF32 + plan.flops.statisticsF64 / rates.matmulF64;
  const solve =
    (plan.flops.solve - plan.selectionRankFlops) / rates.matmulF64 + plan.selectionRankFlops / rates.rankF64;
  const selection = plan.selectionOps / rates.obsLoop;
  return {
    ...plan,
    rates,
    estimateSeconds: {
      forward,
      statistics,
      solve,
      selection,
      total: forward + statistics + solve + selection,
    },
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
    `plan: ${plan.calibrationTokens.toLocaleString("en-US")} calibration tokens, ${plan.layerPasses} layer passes (whole-layer equivalents)`,
    `  work    forward ${tf(plan.flops.forward)}, statistics ${tf(plan.flops.statistics)}, solves ${tf(plan.flops.solve)} (least squares, with OBS selection and --ridge auto fits where chosen)`,
    `  memory  peak ≈ ${g(m.peak)} (weights cache ${g(m.weightsCache)}, one pruned layer ${g(m.prunedWeights)}, activations ${g(m.streams + m.batch)}, Grams ${g(m.gram)}, waiting calibration data ${g(m.held)})${m.spilled > 0 ? `; ${g(m.spilled)} spilled to a temporary file` : ""}`,
  ];
  const qc = plan.quantization;
  if (qc)
    lines.push(
      `  quantize + ${qc.layerPasses} layer passes, forward ${tf(qc.flops.forward)}, statistics ${tf(qc.flops.statistics)}, solves ${tf(qc.flops.solve)}${qc.seconds !== undefined ? `, ≈ ${qc.seconds.toFixed(1)} s` : ""}`,
    );
  if (plan.estimateSeconds && plan.rates) {
    const e = plan.estimateSeconds;
    const gf = (r: number) => (r / 1e9).toFixed(0);
    lines.push(
      `  time    ≈ ${e.total.toFixed(1)} s (forward ${e.forward.toFixed(1)} s at ${gf(plan.rates.matmulF32)} GFLOP/s, statistics ${e.statistics.toFixed(1)} s, solves ${e.solve.toFixed(1)} s at ${gf(plan.rates.matmulF64)} GFLOP/s f64${plan.selectionRankFlops > 0 ? ` (OBS downdates at ${gf(plan.rates.rankF64)})` : ""}${plan.selectionOps > 0 ? `, OBS selection loops ${e.selection.toFixed(1)} s at ${(plan.rates.obsLoop / 1e9).toFixed(2)} G element updates/s` : ""})`,
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
