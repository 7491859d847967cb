/**
 * Runs a model's forward graph on batches: token NLL for decoders, class logits for
 * encoders. Padding is handled so that batching never changes a result.
 */
import type { Model } from "../arch/model.ts";
import { PareError } from "../errors.ts";
import { emitModelGraph } from "../onnx/emit.ts";
import { f32, i64From, Session } from "../runtime/ort.ts";

export interface RunnerOptions {
  threads?: number;
}

export class Runner {
  private constructor(
    readonly model: Model,
    private readonly session: Session,
  ) {}

  static async create(
    model: Model,
    opts: RunnerOptions & { logits?: boolean; mode?: "nll" | "logprobs" | "compare" } = {},
  ): Promise<Runner> {
    const decoder = model.spec.kind === "decoder";
    if (decoder && model.dims.head !== "lm") {
      throw new PareError(
        "E_USAGE",
        "this decoder checkpoint has no language-model head",
        "use a *ForCausalLM checkpoint",
      );
    }
    const mode = opts.mode ?? "nll";
    const bytes = emitModelGraph(
      model,
      decoder
        ? {
            nll: mode === "nll",
            logprobs: mode === "logprobs",
            compare: mode === "compare",
            logits: opts.logits ?? false,
          }
        : {},
    );
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

  /**
   * Per-position NLL of explicit labels: inputs [B, L] and labels [B, L] (label < 0: not scored, 0), so that the
   * last input position can be scored (lm-eval's rolling windows at the model's full context length).
   */
  async labeledNll(inputs: number[][], labels: number[][]): Promise<Float64Array[]> {
    const B = inputs.length;
    const L = inputs[0].length;
    if (L > this.model.dims.maxPos) {
      throw new PareError(
        "E_USAGE",
        `window of ${L} tokens exceeds max_position_embeddings ${this.model.dims.maxPos}`,
        "use a smaller --seq-len",
      );
    }
    if (inputs.some((r) => r.length !== L) || labels.length !== B || labels.some((r) => r.length !== L))
      throw new Error("inputs and labels must be [B, L] alike");
    const r = await this.session.run(
      { input_ids: i64From([B, L], inputs.flat()), labels: i64From([B, L], labels.flat()) },
      ["nll"],
    );
    const nll = r.nll.data as Float32Array;
    return inputs.map((_, b) => Float64Array.from(nll.subarray(b * L, (b + 1) * L)));
  }

  /** Log-probabilities [B·T·V] of equal-length windows (a reference for `compareWindows`). */
  async windowLogprobs(windows: number[][]): Promise<Float32Array> {
    const B = windows.length;
    const L = windows[0].length;
    const r = await this.session.run({ input_ids: i64From([B, L], windows.flat()) }, ["logp"]);
    return r.logp.data as Float32Array;
  }

  /** Per-token KL(ref‖this) and top-1 agreement against reference log-probs of the same windows. */
  async compareWindows(
    windows: number[][],
    refLogp: Float32Array,
  ): Promise<{ kl: Float32Array; agree: Float32Array }> {
    const B = windows.length;
    const L = windows[0].length;
    const r = await this.session.run(
      { input_ids: i64From([B, L], windows.flat()), ref_logp: f32([B, L, this.model.dims.vocab], refLogp) },
      ["kl", "agree"],
    );
    return { kl: r.kl.data as Float32Array, agree: r.agree.data as Float32Array };
  }

  /**
   * Per-position NLL of variable-length sequences (right-padded in one batch; causal
   * attention makes padding invisible): result[b][t] = −log p(seq[t+1] | seq[..t]).
   */
  async sequenceNll(seqs: number[][], padId = 0): Promise<Float64Array[]> {
    const B = seqs.length;
    const T = Math.max(...seqs.map((s) => s.length));
    const ids = new Array<number>(B * T).fill(padId);
    const labels = new Array<number>(B * T).fill(-1);
    seqs.forEach((s, b) => {
      s.forEach((id, t) => {
        ids[b * T + t] = id;
        if (t + 1 < s.length) labels[b * T + t] = s[t + 1];
      });
    });
    const r = await this.session.run({ input_ids: i64From([B, T], ids), labels: i64From([B, T], labels) }, [
      "nll",
    ]);
    const nll = r.nll.data as Float32Array;
    return seqs.map((s, b) => Float64Array.from(nll.subarray(b * T, b * T + Math.max(0, s.length - 1))));
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
