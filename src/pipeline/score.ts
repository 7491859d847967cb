/**
 * The score stage: the criterion's scores of the units of one module (attention KV groups or FFN channels),
 * from the consumer's weights and the statistics of its input.
 */
import { standardize } from "../allocate/allocate.ts";
import type { Model } from "../arch/model.ts";
import type { TapStats } from "../calib/moments.ts";
import {
  attentionUnitScores,
  type ChannelCriterion,
  type ObsOrder,
  type StructuredCriterion,
} from "../criteria/index.ts";
import { PareError } from "../errors.ts";
import type { Ops } from "../ops/index.ts";
import type { RunContext } from "./context.ts";
import { consumer } from "./prepare.ts";
import type { Module } from "./types.ts";

/** What a structured criterion needs beyond the weights and statistics. */
export interface StructuredEnv {
  ops: Ops;
  /** may the consumer hold / gain a bias (liar fits an intercept) */
  intercept: boolean;
  /** ridge α (as liar's) */
  alpha: number;
  /** the greedy path's time counts as solve work (its FLOPs are in the plan's solves) */
  run?: RunContext;
}

/**
 * A structured criterion's greedy order of module m's units (KV groups: their heads' contiguous channels; FFN
 * channels), run until `keep` units remain. Needs the Gram of the consumer input.
 */
export function structuredOrder(
  model: Model,
  i: number,
  m: Module,
  crit: StructuredCriterion,
  stats: TapStats | undefined,
  keep: number,
  env: StructuredEnv,
): Promise<ObsOrder> {
  const { mod, dIn } = consumer(model, i, m);
  const where = `layer ${i} ${m === "attn" ? "attention output" : "FFN down"} projection`;
  const gram = stats?.gram;
  if (!gram) throw new Error(`criterion ${crit.name} needs the Gram of the ${where}'s input`);
  const L = model.dims.layers[i];
  const w = model.weights;
  const order = () =>
    crit.order({
      gram,
      d: dIn,
      W: w.get(`${mod}.weight`),
      dOut: model.dims.hidden,
      b: w.has(`${mod}.bias`) ? w.get(`${mod}.bias`) : undefined,
      unit: m === "attn" ? (L.nHeads / L.nKv) * model.dims.headDim : 1,
      intercept: env.intercept,
      alpha: env.alpha,
      keep,
      ops: env.ops,
      where,
    });
  return env.run ? env.run.timed("solve", order) : order();
}

/** Per input channel of the consumer (o_proj / down_proj); E_NUMERIC on NaN or Inf. */
function channelScores(
  model: Model,
  i: number,
  m: Module,
  crit: ChannelCriterion,
  stats?: TapStats,
): Float64Array {
  const { mod, dIn } = consumer(model, i, m);
  const ch = crit.channelScores(model.weights.get(`${mod}.weight`), model.dims.hidden, dIn, stats);
  for (const v of ch) {
    if (!Number.isFinite(v)) {
      throw new PareError(
        "E_NUMERIC",
        `layer ${i} ${m}: the ${crit.name} scores contain NaN or Inf`,
        "check the weights (NaN/Inf) and the calibration text",
      );
    }
  }
  return ch;
}

/** Unit scores within one module (uniform allocation): a KV group sums its channels' scores. */
export function unitScores(
  model: Model,
  i: number,
  m: Module,
  crit: ChannelCriterion,
  stats?: TapStats,
): Float64Array {
  const ch = channelScores(model, i, m, crit, stats);
  const L = model.dims.layers[i];
  return m === "attn"
    ? attentionUnitScores(ch, L.nHeads, L.nKv, model.dims.headDim, crit.squareAttention)
    : ch;
}

/**
 * Unit scores comparable across modules (global allocation, FLAP's AL-AM): channel scores
 * (squared for attention under FLAP criteria) standardized over the module's channels, then
 * averaged over each unit's channels.
 */
export function globalUnitScores(
  model: Model,
  i: number,
  m: Module,
  crit: ChannelCriterion,
  stats?: TapStats,
): Float64Array {
  let ch = channelScores(model, i, m, crit, stats);
  if (m === "mlp") return standardize(ch);
  if (crit.squareAttention) ch = ch.map((v) => v * v);
  const z = standardize(ch);
  const L = model.dims.layers[i];
  // a head scores the mean of its standardized channels, a KV group the sum over its heads (docs/methods.md §2)
  return attentionUnitScores(z, L.nHeads, L.nKv, model.dims.headDim, false).map(
    (s) => s / model.dims.headDim,
  );
}
