/**
 * A dense pass: one pass of the unpruned model over the calibration batches, layer by layer (each layer whole,
 * on all batches, before the next), collecting statistics of both consumer inputs of every layer. It serves
 * `--calibration dense` (all statistics; the Grams wait in the spill store until their layer is reconstructed)
 * and global allocation under sequential calibration (the criterion's statistics, for the scores).
 */
import type { StatKind } from "../calib/moments.ts";
import { type Ops, type TokenBatch, WHOLE_LAYER } from "../ops/index.ts";
import type { LayerStats } from "./allocation.ts";
import type { RunContext } from "./context.ts";
import type { Job } from "./prepare.ts";
import type { Streams } from "./spill.ts";
import { TapCollector, tapWidth } from "./taps.ts";

/** Moments of every layer's taps; their Grams (if collected) go to `streams.grams`. */
export async function densePass(
  job: Job,
  streams: Streams,
  batches: TokenBatch[],
  ops: Ops,
  run: RunContext,
  kinds: ReadonlySet<StatKind>,
): Promise<LayerStats> {
  const dense = job.pruned.dense;
  const nL = dense.dims.nLayers;
  const stats: LayerStats = [];
  for (let i = 0; i < nL; i++) {
    run.layer(i, nL, "statistics");
    const a = new TapCollector(tapWidth(dense, i, "attn"), kinds, job.recipe, false, ops, run);
    const m = new TapCollector(tapWidth(dense, i, "mlp"), kinds, job.recipe, false, ops, run);
    for (let b = 0; b < batches.length; b++) {
      run.checkAborted();
      // layer 0 reads the embeddings (kept for later passes), deeper layers the previous layer's output
      const x = i === 0 ? streams.model.peek(b) : streams.next.take(b);
      const r = await run.timed("forward", () => ops.layers.run(dense, i, WHOLE_LAYER, { x }, batches[b]));
      await a.add(r.attnIn!, batches[b]);
      await m.add(r.mlpIn!, batches[b]);
      if (i < nL - 1) streams.next.put(b, r.out!);
    }
    const sa = (await a.finish()).stats;
    const sm = (await m.finish()).stats;
    stats.push({ attn: { ...sa, gram: undefined }, mlp: { ...sm, gram: undefined } });
    if (sa.gram) streams.grams.put(i, "attn", sa.gram);
    if (sm.gram) streams.grams.put(i, "mlp", sm.gram);
  }
  return stats;
}
