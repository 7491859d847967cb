/**
 * The allocate stage: which units each module keeps. `global` (FLAP's AL-AM) ranks every layer's units
 * together, so it needs all scores before the first layer is cut (from the unpruned model's statistics);
 * `uniform` keeps the same fraction in each module and decides per module when its statistics are ready
 * (under sequential calibration: on the partly pruned model).
 *
 * A structured criterion (`obs`) orders each module's units greedily by their cost after compensation; uniform
 * keeps the units that survive its greedy path, global compares the steps' costs across modules (costCounts),
 * normalized per module (see `ObsNormalization`).
 */
import {
  type Allocation,
  allocate,
  costCounts,
  type ModuleUnits,
  standardize,
  topK,
  uniformCounts,
} from "../allocate/allocate.ts";
import type { Model } from "../arch/model.ts";
import type { TapStats } from "../calib/moments.ts";
import type { Criterion, ObsOrder } from "../criteria/index.ts";
import { hasNormGain, type Ops } from "../ops/index.ts";
import type { RunContext } from "./context.ts";
import { canHoldBias, consumer } from "./prepare.ts";
import { type Recipe, ridgeAlpha } from "./recipe.ts";
import { globalUnitScores, type StructuredEnv, structuredOrder, unitScores } from "./score.ts";
import type { Module } from "./types.ts";

/**
 * Statistics of both consumer inputs of every layer (a dense pass), and (--obs-normalization stream) each
 * module's mean normalization gain over the calibration tokens (Emitter.normGain; absent where the consumer's
 * output joins the residual stream as it is).
 */
export type LayerStats = { attn?: TapStats; mlp?: TapStats; gain?: { attn?: number; mlp?: number } }[];

/**
 * How global allocation makes one module's OBS costs comparable with another's (--obs-normalization):
 *  auto          (default) standardized for post-norm blocks, none otherwise (obsNormalizationOf)
 *  none          the raw costs: squared output error summed over the calibration tokens
 *  stream        the cost as it reaches the residual stream: an error e of the consumer's output
 *                that passes a normalization first (post-norm blocks: the norm after the residual add; sandwich
 *                norms: the sublayer-output norm) leaves it scaled per token by γ/σ_t, so its cost is multiplied
 *                by mean(γ²) · mean_t(1/σ_t²) (σ_t² the variance — RMSNorm: mean square — of the norm's input
 *                for token t, measured in the dense pass); an error added to the residual stream as it is
 *                keeps its raw cost (every such error reaches the same final norm). = none for pre-norm blocks;
 *                on bert-sst2-4l it chose nearly what none chose (docs/results.md), so it is not the default.
 *  output        cost / ‖Y‖², Y = X̃W̃ᵀ the consumer's dense output on the calibration tokens (a relative error)
 *  standardized  each module's step costs standardized (mean 0, sd 1), as FLAP standardizes its scores
 * Measured in docs/results.md (bench:quality --selection).
 */
export type ObsNormalization = Recipe["obsNormalization"];

/** Where global allocation of a structured criterion finds the Grams that a dense pass set aside. */
export interface GramSource {
  take(layer: number, module: Module): Float64Array | undefined;
  put(layer: number, module: Module, gram: Float64Array): void;
}

export interface GlobalEnv {
  ops: Ops;
  recipe: Pick<Recipe, "ridge" | "createBias" | "obsNormalization">;
  /** the Grams of the dense pass (its stats carry none) */
  grams?: GramSource;
  /** put each Gram back after use (dense calibration reconstructs from them later) */
  keepGrams?: boolean;
  /** progress: module k of n (a structured criterion's greedy paths can take minutes on wide layers) */
  onModule?: (layer: number, module: Module) => void;
  /** the greedy paths' time counts as solve work */
  run?: RunContext;
}

const index = (i: number, m: Module) => 2 * i + (m === "attn" ? 0 : 1);

/** ‖Y‖² = tr(W̃ G W̃ᵀ) of a consumer, W̃ = [W, b] and G the Gram of [X, 1] (ORT product). */
async function outputEnergy(
  model: Model,
  i: number,
  m: Module,
  gram: Float64Array,
  ops: Ops,
): Promise<number> {
  const { mod, dIn } = consumer(model, i, m);
  const dOut = model.dims.hidden;
  const D = dIn + 1;
  const W = model.weights.get(`${mod}.weight`);
  const b = model.weights.has(`${mod}.bias`) ? model.weights.get(`${mod}.bias`) : undefined;
  const Wt = new Float64Array(dOut * D); // [dOut, D]
  for (let r = 0; r < dOut; r++) {
    for (let j = 0; j < dIn; j++) Wt[r * D + j] = W[r * dIn + j];
    Wt[r * D + dIn] = b ? b[r] : 0;
  }
  const WG = await ops.gemm64(Wt, gram, dOut, D, D); // [dOut, D]
  let e = 0;
  for (let k = 0; k < WG.length; k++) e += WG[k] * Wt[k];
  return e;
}

/**
 * --obs-normalization auto: `standardized` for post-norm blocks, `none` otherwise — the measured best of each on
 * the shared models (bert-sst2-4l, llama-gqa-6l; docs/results.md), not a derivation.
 */
export function obsNormalizationOf(model: Model, n: ObsNormalization): Exclude<ObsNormalization, "auto"> {
  if (n !== "auto") return n;
  return model.spec.block.placement === "post" ? "standardized" : "none";
}

/**
 * --obs-normalization stream: mean(γ²) · gain for a module whose consumer output passes a norm first (gain =
 * mean_t 1/σ_t² from the dense pass), 1 where it joins the residual stream as it is.
 */
export function streamFactor(model: Model, i: number, m: Module, gain: number | undefined): number {
  if (!hasNormGain(model, m)) return 1;
  if (gain === undefined) throw new Error(`internal: no normalization gain measured for layer ${i} ${m}`);
  const N = model.spec.names;
  const post = model.spec.block.placement === "post";
  const norm =
    m === "attn"
      ? post && !N.attnOutNorm
        ? N.norm1
        : N.attnOutNorm
      : post && !N.mlpOutNorm
        ? N.norm2
        : N.mlpOutNorm;
  const w = model.weights.get(`${model.path(norm!, i)}.weight`);
  const off = model.spec.block.normOffset ?? 0;
  let g2 = 0;
  for (let k = 0; k < w.length; k++) g2 += (w[k] + off) ** 2;
  return (g2 / w.length) * gain;
}

export class Selection {
  /** the unit scores each decision used, per (layer, module) (structured: each unit's OBS cost) */
  private readonly used = new Map<number, Float64Array>();
  private readonly counts: number[];

  private constructor(
    units: ModuleUnits[],
    private readonly criterion: Criterion,
    ratio: number,
    private readonly global?: Allocation,
  ) {
    this.counts = uniformCounts(units, ratio);
  }

  /** Global allocation: every module's standardized unit scores, ranked together now. */
  static async global(
    model: Model,
    units: ModuleUnits[],
    criterion: Criterion,
    ratio: number,
    stats?: LayerStats,
    env?: GlobalEnv,
  ): Promise<Selection> {
    if (criterion.structured) return Selection.globalStructured(model, units, criterion, ratio, stats, env);
    const scores = units.map((u) =>
      globalUnitScores(model, u.layer, u.module, criterion, stats?.[u.layer][u.module]),
    );
    const sel = new Selection(
      units,
      criterion,
      ratio,
      allocate(units, scores, ratio, "global", { standardized: true }),
    );
    units.forEach((u, k) => {
      sel.used.set(index(u.layer, u.module), scores[k]);
    });
    return sel;
  }

  /** Global allocation of a structured criterion: each module's greedy path, its step costs compared. */
  private static async globalStructured(
    model: Model,
    units: ModuleUnits[],
    criterion: Criterion & { structured: true },
    ratio: number,
    stats: LayerStats | undefined,
    env: GlobalEnv | undefined,
  ): Promise<Selection> {
    if (!env) throw new Error(`criterion ${criterion.name} under global allocation needs its GlobalEnv`);
    const orders: ObsOrder[] = [];
    const steps: Float64Array[] = [];
    for (const u of units) {
      env.onModule?.(u.layer, u.module);
      const gram = env.grams?.take(u.layer, u.module) ?? stats?.[u.layer][u.module]?.gram;
      if (u.skip || !gram) {
        if (gram && env.keepGrams) env.grams?.put(u.layer, u.module, gram);
        const all = Float64Array.from({ length: u.n }, (_, j) => u.n + j);
        orders.push({ order: new Int32Array(0), cost: new Float64Array(u.n), score: all, alphaUsed: 0 });
        steps.push(new Float64Array(0));
        continue;
      }
      const st = { ...(stats?.[u.layer][u.module] as TapStats), gram };
      const o = await structuredOrder(model, u.layer, u.module, criterion, st, Math.max(1, u.min), {
        ops: env.ops,
        intercept: canHoldBias(model, u.layer, u.module, env.recipe.createBias),
        alpha: ridgeAlpha(env.recipe),
        run: env.run,
      });
      let c: Float64Array = Float64Array.from(o.order, (k) => o.cost[k]); // step costs, in removal order
      const norm = obsNormalizationOf(model, env.recipe.obsNormalization);
      if (norm === "stream") {
        const f = streamFactor(model, u.layer, u.module, stats?.[u.layer].gain?.[u.module]);
        c = c.map((v) => v * f);
      } else if (norm === "output") {
        const e = await outputEnergy(model, u.layer, u.module, gram, env.ops);
        c = c.map((v) => (e > 0 ? v / e : v));
      } else if (norm === "standardized") c = standardize(c);
      if (env.keepGrams) env.grams?.put(u.layer, u.module, gram);
      orders.push(o);
      steps.push(c);
    }
    const counts = costCounts(units, steps, ratio);
    const keep = orders.map((o, k) => topK(o.score, counts[k]));
    const total = units.reduce((s, m) => s + m.n * m.cost, 0);
    const after = units.reduce((s, m, k) => s + keep[k].length * m.cost, 0);
    const sel = new Selection(units, criterion, ratio, {
      keep,
      prunableBefore: total,
      prunableAfter: after,
      achievedRatio: 1 - after / total,
    });
    units.forEach((u, k) => {
      sel.used.set(index(u.layer, u.module), orders[k].cost);
    });
    return sel;
  }

  /** Uniform allocation: each module decides when `keep` is asked. */
  static uniform(units: ModuleUnits[], criterion: Criterion, ratio: number) {
    return new Selection(units, criterion, ratio);
  }

  /**
   * The kept units (sorted) of module m of layer i; `stats` of its consumer input (uniform only); `env` for a
   * structured criterion.
   */
  async keep(model: Model, i: number, m: Module, stats?: TapStats, env?: StructuredEnv): Promise<Int32Array> {
    const k = index(i, m);
    if (this.global) return this.global.keep[k];
    if (this.criterion.structured) {
      if (!env) throw new Error(`criterion ${this.criterion.name} needs its StructuredEnv`);
      const o = await structuredOrder(model, i, m, this.criterion, stats, this.counts[k], env);
      this.used.set(k, o.cost);
      return topK(o.score, this.counts[k]);
    }
    const sc = unitScores(model, i, m, this.criterion, stats);
    this.used.set(k, sc);
    return topK(sc, this.counts[k]);
  }

  /** The scores layer i's decisions used, 4 significant digits (for the report). */
  scores(i: number): { attn: number[]; mlp: number[] } {
    const round4 = (a?: Float64Array) => (a ? Array.from(a, (v) => Number(v.toPrecision(4))) : []);
    return { attn: round4(this.used.get(index(i, "attn"))), mlp: round4(this.used.get(index(i, "mlp"))) };
  }

  /** global allocation: the keep decisions are made; statistics are needed only for reconstruction */
  get isGlobal(): boolean {
    return this.global !== undefined;
  }
}
