/**
 * The running prune's bookkeeping, shared by its stages: progress events, notes for the report, wall time per
 * phase, busy time per kind of work, and the abort signal (checked between batches and between layers).
 */
import { PareError } from "../errors.ts";
import type { PruneEvent } from "./types.ts";

export type Work = "forward" | "statistics" | "solve" | "output";

export class RunContext {
  readonly t0 = performance.now();
  /** wall seconds per phase */
  readonly timings: Record<string, number> = {};
  /** seconds spent in each kind of work (the benchmarks divide FLOPs by them) */
  readonly busy: Record<Work, number> = { forward: 0, statistics: 0, solve: 0, output: 0 };
  readonly notes: string[] = [];
  private mark = this.t0;

  constructor(
    private readonly onEvent: (e: PruneEvent) => void,
    private readonly signal?: AbortSignal,
  ) {}

  phase(phase: string, detail?: string): void {
    this.onEvent({ type: "phase", phase, detail });
  }

  /** progress of layer i: its step ("attention", "mlp", "propagate", "statistics", "reconstruct") */
  layer(layer: number, layers: number, step: string): void {
    this.onEvent({ type: "layer", layer, layers, step });
  }

  event(e: PruneEvent): void {
    this.onEvent(e);
  }

  /** Close the current phase: the wall time since the last lap goes to `name`. */
  lap(name: string): void {
    const now = performance.now();
    this.timings[name] = (this.timings[name] ?? 0) + (now - this.mark) / 1000;
    this.mark = now;
  }

  async timed<T>(work: Work, f: () => Promise<T> | T): Promise<T> {
    const t = performance.now();
    try {
      return await f();
    } finally {
      this.busy[work] += (performance.now() - t) / 1000;
    }
  }

  /** Throws E_ABORTED when the signal has fired. */
  checkAborted(): void {
    if (this.signal?.aborted) {
      throw new PareError(
        "E_ABORTED",
        "the prune was aborted",
        "nothing was written; run it again with --resume to continue from the last finished layer",
      );
    }
  }
}
