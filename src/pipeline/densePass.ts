/**
 * A dense pass: one pass of the unpruned model over the calibration batches, layer by layer (each layer whole,
 * on all batches, before the next), collecting statistics of both consumer inputs of every layer. It serves
 * `--calibration dense` (all statistics; the Grams wait in the spill store until their layer is reconstructed)
 * and global allocation under sequential calibration (the criterion's statistics, for the scores).
 */
import type { StatKind } from "../calib/moments.ts";
import { hasNormGain, type LayerPart, type Ops, type TokenBatch, WHOLE_LAYER } from "../ops/index.ts";
import type { LayerStats } from "./allocation.ts";
import type { RunContext } from "./context.ts";
import type { Job } from "./prepare.ts";
import type { Streams } from "./spill.ts";
import { TapCollector, tapWidth } from "./taps.ts";

/**
 * Moments of every layer's taps; their Grams (if collected) go to `streams.grams`. With `gains`, also each
 * module's mean normalization gain over the calibration tokens (`LayerGains`, where the block has the norm).
 */
export async function densePass(
  job: Job,
  streams: Streams,
  batches: TokenBatch[],
  ops: Ops,
  run: RunContext,
  kinds: ReadonlySet<StatKind>,
  gains = false,
): Promise<LayerStats> {
  const dense = job.pruned.dense;
  const nL = dense.dims.nLayers;
  const stats: LayerStats = [];
  const unsplit = { gramPrecision: job.recipe.gramPrecision };
  const extra: ("attnGain" | "mlpGain")[] = [];
  if (gains && hasNormGain(dense, "attn")) extra.push("attnGain");
  if (gains && hasNormGain(dense, "mlp")) extra.push("mlpGain");
  const part: LayerPart = extra.length
    ? { from: "x", outputs: [...WHOLE_LAYER.outputs, ...extra] }
    : WHOLE_LAYER;
  for (let i = 0; i < nL; i++) {
    run.layer(i, nL, "statistics");
    // no held-out split here: --ridge auto chooses on held-out batches of the sequential pass only (the dense
    // pass's statistics are used whole), and a split would hold two accumulators per tap and a merged copy
    const a = new TapCollector(tapWidth(dense, i, "attn"), kinds, unsplit, false, ops, run);
    const m = new TapCollector(tapWidth(dense, i, "mlp"), kinds, unsplit, false, ops, run);
    const sum = { attnGain: 0, mlpGain: 0 };
    let tokens = 0;
    for (let b = 0; b < batches.length; b++) {
      run.checkAborted();
      // layer 0 reads the embeddings (kept for later passes), deeper layers the previous layer's output
      const x = i === 0 ? streams.model.peek(b) : streams.next.take(b);
      const r = await run.timed("forward", () => ops.layers.run(dense, i, part, { x }, batches[b]));
      await a.add(r.attnIn!, batches[b]);
      await m.add(r.mlpIn!, batches[b]);
      for (const o of extra) {
        const g = r[o]!; // [b, T]
        for (let t = 0; t < g.length; t++) if (batches[b].mask[t]) sum[o] += g[t];
      }
      tokens += batches[b].mask.reduce((s, v) => s + (v ? 1 : 0), 0);
      if (i < nL - 1) streams.next.put(b, r.out!);
    }
    const sa = (await a.finish()).stats;
    const sm = (await m.finish()).stats;
    const gain = extra.length
      ? {
          attn: extra.includes("attnGain") ? sum.attnGain / tokens : undefined,
          mlp: extra.includes("mlpGain") ? sum.mlpGain / tokens : undefined,
        }
      : undefined;
    stats.push({ attn: { ...sa, gram: undefined }, mlp: { ...sm, gram: undefined }, gain });
    if (sa.gram) streams.grams.put(i, "attn", sa.gram);
    if (sm.gram) streams.grams.put(i, "mlp", sm.gram);
  }
  return stats;
}
