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
}

/** Width of the consumer input of module m in layer i (o_proj: heads × head_dim; down_proj: FFN channels). */
export function tapWidth(model: Model, i: number, m: Module): number {
  const L = model.dims.layers[i];
  return m === "attn" ? L.nHeads * model.dims.headDim : L.ffn;
}

export class TapCollector {
  private readonly acc: TapAccumulator;
  private readonly crossAcc?: CrossAccumulator;

  constructor(
    readonly d: number,
    kinds: ReadonlySet<StatKind>,
    recipe: Pick<Recipe, "gramPrecision">,
    withCross: boolean,
    ops: Ops,
    private readonly run: RunContext,
  ) {
    this.acc = new TapAccumulator(d, kinds, undefined, recipe.gramPrecision, ops);
    if (withCross) this.crossAcc = new CrossAccumulator(d, d, undefined, ops);
  }

  /** One batch's tap [b·T, d] (+ the unpruned model's, row-aligned, for the cross-Gram). */
  add(x: Float32Array, batch: TokenBatch, dense?: Float32Array): Promise<void> {
    return this.run.timed("statistics", async () => {
      const rows = validRows(x, this.d, batch.mask);
      await this.acc.add(rows.rows, rows.n);
      if (this.crossAcc)
        await this.crossAcc.add(rows.rows, validRows(dense!, this.d, batch.mask).rows, rows.n);
    });
  }

  finish(): Promise<Tap> {
    return this.run.timed("statistics", async () => ({
      stats: await this.acc.finish(),
      cross: await this.crossAcc?.finish(),
    }));
  }
}
