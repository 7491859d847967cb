/**
 * Runs a model's forward graph on batches: token NLL for decoders, class logits for
 * encoders. Padding is handled so that batching never changes a result.
 */
import type { Model } from "../arch/model.ts";
import { PareError } from "../errors.ts";
import { emitModelGraph } from "../onnx/emit.ts";
import { i64From, Session } from "../runtime/ort.ts";

export interface RunnerOptions {
  threads?: number;
}

export class Runner {
  private constructor(
    readonly model: Model,
    private readonly session: Session,
  ) {}

  static async create(model: Model, opts: RunnerOptions & { logits?: boolean } = {}): Promise<Runner> {
    const decoder = model.spec.kind === "decoder";
    if (decoder && model.dims.head !== "lm") {
      throw new PareError(
        "E_USAGE",
        "this decoder checkpoint has no language-model head",
        "use a *ForCausalLM checkpoint",
      );
    }
    const bytes = emitModelGraph(model, decoder ? { nll: true, logits: opts.logits ?? false } : {});
    return new Runner(model, await Session.create(bytes, { threads: opts.threads }));
  }

  /**
   * Per-token NLL for equal-length windows: result[b][t] = −log p(ids[b][t+1] | ids[b][0..t]),
   * t = 0..L−2 (the first token of each window is context only).
   */
  async windowNll(windows: number[][]): Promise<Float64Array[]> {
    const B = windows.length;
    const L = windows[0].length;
    if (L > this.model.dims.maxPos) {
      throw new PareError(
        "E_USAGE",
        `window of ${L} tokens exceeds max_position_embeddings ${this.model.dims.maxPos}`,
        "use a smaller --seq-len",
      );
    }
    const ids = new Array<number>(B * L);
    const labels = new Array<number>(B * L);
    for (let b = 0; b < B; b++) {
      if (windows[b].length !== L) throw new Error("windows must have equal length");
      for (let t = 0; t < L; t++) {
        ids[b * L + t] = windows[b][t];
        labels[b * L + t] = t + 1 < L ? windows[b][t + 1] : -1;
      }
    }
    const r = await this.session.run({ input_ids: i64From([B, L], ids), labels: i64From([B, L], labels) }, [
      "nll",
    ]);
    const nll = r.nll.data as Float32Array;
    return windows.map((_, b) => Float64Array.from(nll.subarray(b * L, b * L + L - 1)));
  }

  /** Encoder classification logits for variable-length inputs (right-padded, masked). */
  async classify(batch: { ids: number[]; typeIds?: number[] }[], padId = 0): Promise<Float32Array[]> {
    const B = batch.length;
    const T = Math.max(...batch.map((x) => x.ids.length));
    const ids = new Array<number>(B * T).fill(padId);
    const mask = new Array<number>(B * T).fill(0);
    const types = new Array<number>(B * T).fill(0);
    batch.forEach((x, b) => {
      x.ids.forEach((id, t) => {
        ids[b * T + t] = id;
        mask[b * T + t] = 1;
        types[b * T + t] = x.typeIds?.[t] ?? 0;
      });
    });
    const feeds = {
      input_ids: i64From([B, T], ids),
      attention_mask: i64From([B, T], mask),
      token_type_ids: i64From([B, T], types),
    };
    const r = await this.session.run(feeds, ["logits"]);
    const C = this.model.dims.numLabels;
    const lg = r.logits.data as Float32Array;
    return batch.map((_, b) => lg.slice(b * C, b * C + C));
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}
