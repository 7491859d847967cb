/**
 * Sequential calibration (the default): layer ℓ is calibrated on the outputs of the already pruned layers.
 * Each step runs only a part of the layer (src/ops/layers.ts) on every calibration batch [b, T, D]:
 *
 *   attention  o_proj's input with the layer's attention still whole: x → attnIn [b, T, heads·hd]
 *   mlp        after the attention cut, down_proj's input: x → mid, mlpIn [b, T, ffn] (mid = x + o_proj(…),
 *              kept for propagate)
 *   propagate  after the MLP cut, the rest of the layer: mid → out [b, T, D], the next layer's input — and, in
 *              the same graph, layer ℓ+1's attention taps on it, so that layer ℓ+1 starts with its attention
 *              statistics ready (only the first layer, or the first after --resume, runs an attention pass)
 *
 * So per layer two passes over the batches, in which the attention runs twice (whole, then cut), the gate/up
 * projections twice (whole, then cut), o_proj and down_proj once each — where three whole-layer runs ran
 * everything three times. liar-seq follows the unpruned model along (its targets): x_d → attnIn_d, mid_d in the
 * attention step, mid_d → mlpIn_d, out_d in the MLP step: the unpruned layer once, where it ran twice. Every
 * part computes the numbers the whole layer computes (checked per block structure, else the whole layer runs),
 * so the results are those of whole-layer runs, bit for bit.
 */
import type { StatKind } from "../calib/moments.ts";
import type { LayerPart, Ops, TokenBatch } from "../ops/index.ts";
import type { RunContext } from "./context.ts";
import type { Job } from "./prepare.ts";
import type { Streams } from "./spill.ts";
import { type Tap, TapCollector, tapWidth } from "./taps.ts";
import type { Module } from "./types.ts";

const ATTENTION: LayerPart = { from: "x", outputs: ["attnIn"] };
const MLP: LayerPart = { from: "x", outputs: ["mid", "mlpIn"] };
/** the unpruned model (liar-seq): its attention pass keeps mid for its MLP pass */
const DENSE_ATTENTION: LayerPart = { from: "x", outputs: ["attnIn", "mid"] };
const DENSE_MLP: LayerPart = { from: "mid", outputs: ["mlpIn", "out"] };

export class SequentialCalibration {
  /** the attention taps of a layer, collected while the previous layer's output was computed */
  private pending?: { layer: number; tap: Tap };
  private readonly withCross: boolean;

  constructor(
    private readonly job: Job,
    private readonly streams: Streams,
    readonly batches: TokenBatch[],
    private readonly ops: Ops,
    private readonly run: RunContext,
    private readonly kinds: ReadonlySet<StatKind>,
  ) {
    this.withCross = job.reconstructor.needsCross;
  }

  private collector(i: number, m: Module): TapCollector {
    const d = tapWidth(this.job.pruned.model, i, m);
    return new TapCollector(d, this.kinds, this.job.recipe, this.withCross, this.ops, this.run);
  }

  private forward(f: () => ReturnType<Ops["layers"]["run"]>) {
    return this.run.timed("forward", f);
  }

  /** Statistics of o_proj's input of layer i on the pruned model's stream. */
  async attention(i: number): Promise<Tap> {
    if (this.pending?.layer === i) {
      const { tap } = this.pending;
      this.pending = undefined;
      return tap;
    }
    const model = this.job.pruned.model;
    const S = this.streams;
    const taps = this.collector(i, "attn");
    for (let b = 0; b < this.batches.length; b++) {
      this.run.checkAborted();
      const batch = this.batches[b];
      const r = await this.forward(() =>
        this.ops.layers.run(model, i, ATTENTION, { x: S.model.peek(b) }, batch),
      );
      let target: Float32Array | undefined;
      if (this.withCross) target = await this.denseAttention(i, b);
      await taps.add(r.attnIn!, batch, target);
    }
    return taps.finish();
  }

  /** liar-seq: the unpruned model's attention pass of layer i on batch b (its tap; mid kept). */
  private async denseAttention(i: number, b: number): Promise<Float32Array> {
    const S = this.streams;
    const d = await this.forward(() =>
      this.ops.layers.run(this.job.pruned.dense, i, DENSE_ATTENTION, { x: S.dense.peek(b) }, this.batches[b]),
    );
    if (d.mid) S.denseMid.put(b, d.mid);
    return d.attnIn!;
  }

  /** Statistics of down_proj's input of layer i after its attention was cut; keeps mid for `propagate`. */
  async mlp(i: number): Promise<Tap> {
    const { model, dense } = this.job.pruned;
    const S = this.streams;
    const taps = this.collector(i, "mlp");
    for (let b = 0; b < this.batches.length; b++) {
      this.run.checkAborted();
      const batch = this.batches[b];
      const r = await this.forward(() => this.ops.layers.run(model, i, MLP, { x: S.model.peek(b) }, batch));
      if (r.mid) S.modelMid.put(b, r.mid); // (no mid: the part ran as the whole layer; propagate starts at x)
      let target: Float32Array | undefined;
      if (this.withCross) {
        const mid = S.denseMid.has(b) ? S.denseMid.take(b) : undefined;
        const d = await this.forward(() =>
          this.ops.layers.run(dense, i, DENSE_MLP, { x: S.dense.peek(b), mid }, batch),
        );
        S.dense.put(b, d.out!); // the unpruned model's stream moves on to layer i + 1
        target = d.mlpIn;
      }
      await taps.add(r.mlpIn!, batch, target);
    }
    return taps.finish();
  }

  /** The pruned layer i's output feeds layer i + 1; that layer's attention statistics are taken on the way. */
  async propagate(i: number): Promise<void> {
    const model = this.job.pruned.model;
    const S = this.streams;
    const next = i + 1 < model.dims.nLayers;
    const taps = next ? this.collector(i + 1, "attn") : undefined;
    const part: LayerPart = { from: "mid", outputs: ["out"], nextAttnIn: next };
    for (let b = 0; b < this.batches.length; b++) {
      this.run.checkAborted();
      const batch = this.batches[b];
      const mid = S.modelMid.has(b) ? S.modelMid.take(b) : undefined;
      const r = await this.forward(() =>
        this.ops.layers.run(model, i, part, { x: S.model.peek(b), mid }, batch),
      );
      S.model.put(b, r.out!);
      if (taps) {
        let target: Float32Array | undefined;
        if (this.withCross) target = await this.denseAttention(i + 1, b);
        await taps.add(r.nextAttnIn!, batch, target);
      }
    }
    if (taps) this.pending = { layer: i + 1, tap: await taps.finish() };
  }
}
