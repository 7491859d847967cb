/**
 * ops: everything pare computes in ONNX Runtime during a prune — float64 products and SPD solves (the
 * reconstructions), the calibration statistics (moments, Gram matrices), and layer graphs run in parts
 * (calibration passes) — behind one session cache that `close()` releases.
 *
 * Layering (a module imports only from its own layer or the ones above it in this list):
 *
 *   errors.ts, version.ts, tensor/   plain data and pure JavaScript math (dtype conversions, small float64 kernels)
 *   io/                     files: safetensors, model folders, tokenizers, datasets
 *   arch/                   families as data, models (dims + weights), parameter counts
 *   onnx/, runtime/ort.ts   graph building and emission; the only import of onnxruntime-node
 *   ops/                    this folder: ORT-backed math and layer passes, one SessionCache per Ops
 *   calib/, criteria/, allocate/, reconstruct/, surgery/, export/, eval/
 *   pipeline/               the prune, stage by stage
 *   api/                    the library calls
 *   cli/                    argv, stdout/stderr, exit codes
 *
 * A prune makes one `Ops` and closes it at its end (also after a failure), so that a library user's
 * process holds no ORT sessions afterwards. Code without an `Ops` of its own (tests, one-off calls) uses
 * `sharedOps()`, released by `closeSharedOps()`.
 */
import { Gemm64, type GemmOptions } from "./gemm.ts";
import { GramOps } from "./gram.ts";
import { LayerGraphs } from "./layers.ts";
import { SessionCache } from "./sessions.ts";
import { choleskyInverse, SPD_BASE, spdSolve } from "./spd.ts";

export type { GemmOptions } from "./gemm.ts";
export { gramBlocks } from "./gram.ts";
export {
  hasNormGain,
  type LayerInputs,
  type LayerPart,
  type LayerRun,
  type LayerValue,
  type TokenBatch,
  WHOLE_LAYER,
} from "./layers.ts";
export { matmulRate } from "./rates.ts";
export { SessionCache } from "./sessions.ts";
export { SPD_BASE } from "./spd.ts";

export interface OpsOptions {
  /** intra-op threads of the layer graphs (default: ORT's choice, all cores) */
  threads?: number;
}

export class Ops {
  readonly sessions = new SessionCache();
  readonly f64: Gemm64;
  /** calibration statistics: moments, Gram and cross-Gram chunks */
  readonly stats: GramOps;
  /** layer parts and the embedding on calibration batches */
  readonly layers: LayerGraphs;

  constructor(opts: OpsOptions = {}) {
    this.f64 = new Gemm64(this.sessions);
    this.stats = new GramOps(this.sessions);
    this.layers = new LayerGraphs(this.sessions, { threads: opts.threads });
  }

  /** float64 op(A)·op(B) (+ beta·C), see Gemm64.gemm */
  gemm64(A: Float64Array, B: Float64Array, n: number, k: number, p: number, opts?: GemmOptions) {
    return this.f64.gemm(A, B, n, k, p, opts);
  }

  /** A⁻¹B for SPD A [n, n], B [n, m], or null when A is not positive definite (see spd.ts) */
  spdSolve(A: Float64Array, n: number, B: Float64Array, m: number, base = SPD_BASE) {
    return spdSolve(this.f64, A, n, B, m, base);
  }

  /** L⁻¹ of A = L Lᵀ, or null (see spd.ts) */
  choleskyInverse(A: Float64Array, n: number, base = SPD_BASE) {
    return choleskyInverse(this.f64, A, n, base);
  }

  /** Release every ORT session (the Ops can be used again afterwards: sessions are made anew). */
  close(): Promise<void> {
    return this.sessions.close();
  }
}

let shared: Ops | undefined;

/** The Ops of code that has none of its own (ORT's default threads). */
export function sharedOps(): Ops {
  shared ??= new Ops();
  return shared;
}

/** Release the shared Ops' sessions. */
export async function closeSharedOps(): Promise<void> {
  await shared?.close();
}
