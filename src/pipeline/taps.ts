/**
 * Accumulating the statistics of one consumer input (a tap) over the calibration batches: moments / Gram
 * of the rows that are tokens (padding excluded), and for liar-seq the cross-Gram with the unpruned
 * model's tap. Busy time goes to "statistics".
 */
import type { Model } from "../arch/model.ts";
import type { StatKind, TapStats } from "../calib/moments.ts";
import { CrossAccumulator, TapAccumulator, validRows } from "../calib/stats.ts";
import type { Ops, TokenBatch } from "../ops/index.ts";
import type { RunContext } from "./context.ts";
import type { Recipe } from "./recipe.ts";
import type { Module } from "./types.ts";

/** Statistics of one consumer input, and (liar-seq) its cross-Gram X̃ₚᵀX̃_d with the unpruned model's. */
export interface Tap {
  stats: TapStats;
  cross?: Float64Array;
  /**
   * --ridge auto: the same statistics of two disjoint parts of the calibration batches — `held` of every
   * HOLD_OUT-th batch, `fit` of the others (stats = fit + held); absent with fewer than two batches
   */
  split?: { fit: TapStats; fitCross?: Float64Array; held: TapStats; heldCross?: Float64Array };
}

/** --ridge auto holds out every HOLD_OUT-th calibration batch (a quarter of the windows). */
export const HOLD_OUT = 4;

/** Statistics of the union of two disjoint row sets (every field is a sum over rows). */
function mergeStats(a: TapStats, b: TapStats): TapStats {
  const add = (x: Float64Array, y: Float64Array) => x.map((v, k) => v + y[k]);
  return {
    d: a.d,
    n: a.n + b.n,
    sum: add(a.sum, b.sum),
    sumsq: add(a.sumsq, b.sumsq),
    gram: a.gram && b.gram ? add(a.gram, b.gram) : undefined,
  };
}

/** Width of the consumer input of module m in layer i (o_proj: heads × head_dim; down_proj: FFN channels). */
export function tapWidth(model: Model, i: number, m: Module): number {
  const L = model.dims.layers[i];
  return m === "attn" ? L.nHeads * model.dims.headDim : L.ffn;
}

export class TapCollector {
  private readonly acc: TapAccumulator;
  private readonly crossAcc?: CrossAccumulator;
  /** --ridge auto with a Gram: the held-out batches' accumulators (acc then holds the fit batches) */
  private readonly held?: { acc: TapAccumulator; cross?: CrossAccumulator };
  private batches = 0;

  constructor(
    readonly d: number,
    kinds: ReadonlySet<StatKind>,
    recipe: Pick<Recipe, "gramPrecision"> & Partial<Pick<Recipe, "ridge">>,
    withCross: boolean,
    ops: Ops,
    private readonly run: RunContext,
  ) {
    this.acc = new TapAccumulator(d, kinds, undefined, recipe.gramPrecision, ops);
    if (withCross) this.crossAcc = new CrossAccumulator(d, d, undefined, ops);
    if (recipe.ridge === "auto" && kinds.has("gram")) {
      this.held = {
        acc: new TapAccumulator(d, kinds, undefined, recipe.gramPrecision, ops),
        cross: withCross ? new CrossAccumulator(d, d, undefined, ops) : undefined,
      };
    }
  }

  /** One batch's tap [b·T, d] (+ the unpruned model's, row-aligned, for the cross-Gram). */
  add(x: Float32Array, batch: TokenBatch, dense?: Float32Array): Promise<void> {
    return this.run.timed("statistics", async () => {
      const rows = validRows(x, this.d, batch.mask);
      const heldOut = this.held && this.batches++ % HOLD_OUT === HOLD_OUT - 1;
      const acc = heldOut ? this.held!.acc : this.acc;
      const crossAcc = heldOut ? this.held!.cross : this.crossAcc;
      await acc.add(rows.rows, rows.n);
      if (crossAcc) await crossAcc.add(rows.rows, validRows(dense!, this.d, batch.mask).rows, rows.n);
    });
  }

  finish(): Promise<Tap> {
    return this.run.timed("statistics", async () => {
      const fit = await this.acc.finish();
      const fitCross = await this.crossAcc?.finish();
      if (!this.held) return { stats: fit, cross: fitCross };
      const held = await this.held.acc.finish();
      const heldCross = await this.held.cross?.finish();
      const cross = fitCross && heldCross ? fitCross.map((v, k) => v + heldCross[k]) : undefined;
      const stats = mergeStats(fit, held);
      // fewer than HOLD_OUT batches: nothing held out, no choice to make
      return held.n > 0 && fit.n > 0
        ? { stats, cross, split: { fit, fitCross, held, heldCross } }
        : { stats, cross };
    });
  }
}
