/**
 * One layer's prune, once its statistics can be had: for attention, then MLP — calibrate (sequential: on the
 * partly pruned model) → score and keep (allocation) → reconstruct the consumer → cut. Returns the layer's
 * report.
 */

import type { TapStats } from "../calib/moments.ts";
import type { Ops } from "../ops/index.ts";
import { quantizeHead } from "../quant/head.ts";
import type { QuantizedLinear } from "../quant/linear.ts";
import { type LinearQuantReport, quantizeLayer } from "../quant/sequential.ts";
import { complement } from "../reconstruct/index.ts";
import { keptHeads } from "../surgery/surgery.ts";
import type { LayerStats, Selection } from "./allocation.ts";
import type { RunContext } from "./context.ts";
import { canHoldBias, type Job } from "./prepare.ts";
import { quantSettingsOf, ridgeAlpha } from "./recipe.ts";
import { reconstructModule } from "./reconstruct.ts";
import type { SequentialCalibration } from "./sequential.ts";
import type { Streams } from "./spill.ts";
import type { LayerReport, Module } from "./types.ts";

export interface LayerOutcome {
  report: LayerReport;
  /** removed query heads (BERT's pruned_heads) */
  removedHeads: number[];
}

const everyUnit = (n: number) => Int32Array.from({ length: n }, (_, j) => j);

export class LayerPruner {
  /** --quantize: the quantized linears so far (`.weight` name → integers and grid) and their reports */
  readonly quantized = new Map<string, QuantizedLinear>();
  readonly quantReports: LinearQuantReport[] = [];

  constructor(
    private readonly job: Job,
    private readonly ops: Ops,
    private readonly run: RunContext,
    private readonly selection: Selection,
    private readonly streams: Streams,
    /** sequential calibration; absent: dense calibration (or none) */
    private readonly sequential?: SequentialCalibration,
    /** dense calibration: every layer's statistics (their Grams wait in `streams.grams`) */
    private readonly denseStats?: LayerStats,
  ) {}

  async prune(i: number): Promise<LayerOutcome> {
    const { job, run } = this;
    const pruned = job.pruned;
    const nL = pruned.model.dims.nLayers;
    const L0 = pruned.model.dims.layers[i];
    const skipped = job.recipe.skipLayers.includes(i);
    const keep = async (m: Module, stats?: TapStats) =>
      skipped
        ? everyUnit(m === "attn" ? L0.nKv : L0.ffn)
        : this.selection.keep(pruned.model, i, m, stats, {
            ops: this.ops,
            intercept: canHoldBias(pruned.model, i, m, job.recipe.createBias),
            alpha: ridgeAlpha(job.recipe),
            run,
          });
    const solve = (m: Module, units: Int32Array, tap?: { stats?: TapStats; cross?: Float64Array }) =>
      reconstructModule(job, this.ops, run, pruned.model, i, m, units, tap);
    let retries = 0;
    const ridge: { attn?: number; mlp?: number } = {};
    let keepGroups: Int32Array;
    let keepChannels: Int32Array;
    if (this.sequential) {
      // attention: statistics of o_proj's input on the pruned stream
      run.layer(i, nL, "attention");
      const a = await this.sequential.attention(i);
      keepGroups = await keep("attn", a.stats);
      const attn = await solve("attn", keepGroups, a);
      ridge.attn = attn.alphaUsed;
      retries += attn.retries;
      pruned.cut(i, { keepGroups, attn });
      // MLP: statistics of down_proj's input after the attention cut
      run.layer(i, nL, "mlp");
      const m = await this.sequential.mlp(i);
      keepChannels = await keep("mlp", m.stats);
      const mlp = await solve("mlp", keepChannels, m);
      ridge.mlp = mlp.alphaUsed;
      retries += mlp.retries;
      pruned.cut(i, { keepChannels, mlp });
      await this.quantize(i);
      // the pruned layer's output feeds the next layer
      run.layer(i, nL, "propagate");
      await this.sequential.propagate(i);
    } else {
      run.layer(i, nL, "reconstruct");
      const waiting = (m: Module) => {
        const st = this.denseStats?.[i][m];
        return st && { ...st, gram: this.streams.grams.take(i, m) };
      };
      const sa = waiting("attn");
      const sm = waiting("mlp");
      keepGroups = await keep("attn", sa);
      keepChannels = await keep("mlp", sm);
      const attn = await solve("attn", keepGroups, { stats: sa });
      const mlp = await solve("mlp", keepChannels, { stats: sm });
      ridge.attn = attn.alphaUsed;
      ridge.mlp = mlp.alphaUsed;
      retries += attn.retries + mlp.retries;
      pruned.cut(i, { keepGroups, attn, keepChannels, mlp });
      await this.quantize(i);
    }
    if (retries > 0) {
      run.notes.push(
        `layer ${i}: the Cholesky factorization failed at ridge α=${job.recipe.ridge}; retried with α=${Math.max(ridge.attn ?? 0, ridge.mlp ?? 0)}`,
      );
    }
    const heads = keptHeads(keepGroups, L0.nHeads, L0.nKv);
    if (this.quantReports.some((q) => q.retries && q.name.includes(`.${i}.`)))
      run.notes.push(`layer ${i}: a GPTQ Hessian needed more than 1% damping (see pare-quantization.json)`);
    const L1 = pruned.model.dims.layers[i];
    return {
      removedHeads: Array.from(complement(heads, L0.nHeads)),
      report: {
        layer: i,
        heads: [L0.nHeads, L1.nHeads],
        kvHeads: [L0.nKv, L1.nKv],
        ffn: [L0.ffn, L1.ffn],
        keptKvGroups: Array.from(keepGroups),
        keptHeads: Array.from(heads),
        keptChannels: Array.from(keepChannels),
        skipped,
        scores: skipped ? undefined : this.selection.scores(i),
        ridge: job.reconstructor.needs.includes("gram") ? { ...ridge, retries } : undefined,
      },
    };
  }

  /**
   * --quantize: layer i's linears right after their reconstruction (quant/sequential.ts; GPTQ on the pruned,
   * already quantized stream), dequantized into the model so that propagate and later layers see them.
   */
  private async quantize(i: number): Promise<void> {
    const r = this.job.recipe;
    if (!r.quantize) return;
    const s = quantSettingsOf(r);
    const S = this.streams;
    const gptq = s.method === "gptq" && this.sequential !== undefined;
    this.run.layer(i, this.job.pruned.model.dims.nLayers, "quantize");
    // mid was computed before the attention was quantized: propagate starts from x instead
    if (gptq) for (let b = 0; b < S.modelMid.batches; b++) if (S.modelMid.has(b)) S.modelMid.take(b);
    const q = await this.run.timed("solve", () =>
      quantizeLayer(
        this.ops,
        this.job.pruned.model,
        this.job.pruned.weights,
        i,
        gptq ? (b) => S.model.peek(b) : undefined,
        this.sequential?.batches ?? [],
        s,
        { propagate: false, checkAborted: () => this.run.checkAborted() },
      ),
    );
    for (const [k, v] of q.quantized) this.quantized.set(k, v);
    this.quantReports.push(...q.reports);
  }

  /** --quantize-head, after the last layer: the LM head on the final norm of the quantized stream (quant/head.ts). */
  async quantizeHead(): Promise<void> {
    const r = this.job.recipe;
    const s = quantSettingsOf(r);
    const gptq = s.method === "gptq" && this.sequential !== undefined;
    this.run.phase("quantize", "LM head");
    const h = await this.run.timed("solve", () =>
      quantizeHead(
        this.ops,
        this.job.pruned.model,
        this.job.pruned.weights,
        gptq ? (b) => this.streams.model.peek(b) : undefined,
        this.sequential?.batches ?? [],
        s,
      ),
    );
    this.quantized.set(h.name, h.linear);
    this.quantReports.push(h.report);
  }
}
