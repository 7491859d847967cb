/**
 * The reconstruct stage for one module of one layer: the chosen reconstruction (none | bias | liar |
 * liar-seq) fits the consumer (o_proj / down_proj) to its kept input channels; the layer is then cut.
 */
import type { Model } from "../arch/model.ts";
import type { Ops } from "../ops/index.ts";
import type { ReconResult } from "../reconstruct/index.ts";
import { blockChannels, keptHeads } from "../surgery/surgery.ts";
import type { RunContext } from "./context.ts";
import { canHoldBias, consumer, type Job } from "./prepare.ts";
import type { Tap } from "./taps.ts";
import type { Module } from "./types.ts";

/** Reconstruct module m's consumer of layer i for the kept units (KV groups or FFN channels). */
export function reconstructModule(
  job: Job,
  ops: Ops,
  run: RunContext,
  model: Model,
  i: number,
  m: Module,
  keepUnits: Int32Array,
  tap?: Partial<Tap>,
): Promise<ReconResult> {
  const { mod, dIn } = consumer(model, i, m);
  const L = model.dims.layers[i];
  const hd = model.dims.headDim;
  const keep = m === "attn" ? blockChannels(keptHeads(keepUnits, L.nHeads, L.nKv), hd) : keepUnits;
  const w = model.weights;
  return run.timed("solve", () =>
    job.reconstructor.reconstruct({
      intercept: canHoldBias(model, i, m, job.recipe.createBias),
      W: w.get(`${mod}.weight`),
      dOut: model.dims.hidden,
      dIn,
      b: w.has(`${mod}.bias`) ? w.get(`${mod}.bias`) : undefined,
      keep,
      stats: tap?.stats,
      cross: tap?.cross,
      alpha: job.recipe.ridge,
      split: tap?.split,
      where: `layer ${i} ${m === "attn" ? "attention output" : "FFN down"} projection`,
      ops,
    }),
  );
}
