/**
 * The only module that imports onnxruntime-node. Everything else sees plain typed arrays.
 */
import { createRequire } from "node:module";
import type * as OrtModule from "onnxruntime-node";
import { PareError } from "../errors.ts";
import type { ElemType } from "../onnx/proto.ts";

/**
 * onnxruntime-node, loaded on first use: importing pare (or running `pare --help`) does not load the
 * native binding.
 */
let loaded: typeof OrtModule | undefined;
function ortModule(): typeof OrtModule {
  loaded ??= createRequire(import.meta.url)("onnxruntime-node") as typeof OrtModule;
  return loaded;
}
const ort = new Proxy({} as typeof OrtModule, {
  get: (_, key) => ortModule()[key as keyof typeof OrtModule],
});

export type TensorData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;

export interface HostTensor {
  type: ElemType;
  dims: number[];
  data: TensorData;
}

export interface SessionOptions {
  /** intra-op threads; default: ORT's choice (all cores). */
  threads?: number;
  /** graph optimization level; f64 graphs need "basic" (see docs/runtime-notes.md: QuickGelu fusion). */
  optLevel?: "disabled" | "basic" | "extended" | "all";
  /** write ORT's per-node profile (JSON) under this file prefix; `endProfiling` returns the file */
  profilePrefix?: string;
}

/** Versions of the runtime pieces (recorded in pare-pruning.json). */
export function runtimeVersions(): Record<string, string> {
  const v = (ort.env as unknown as { versions?: Record<string, string> }).versions ?? {};
  return { node: process.version, onnxruntime: v.node ?? v.common ?? "unknown" };
}

export function f32(dims: number[], data: Float32Array): HostTensor {
  return { type: "float32", dims, data };
}
export function f64(dims: number[], data: Float64Array): HostTensor {
  return { type: "float64", dims, data };
}
export function i64(dims: number[], data: BigInt64Array): HostTensor {
  return { type: "int64", dims, data };
}
export function i64From(dims: number[], values: ArrayLike<number>): HostTensor {
  const d = new BigInt64Array(values.length);
  for (let i = 0; i < values.length; i++) d[i] = BigInt(values[i]);
  return i64(dims, d);
}

const ORT_TYPE: Record<ElemType, OrtModule.Tensor.Type> = {
  float32: "float32",
  float64: "float64",
  int64: "int64",
  int32: "int32",
  bool: "bool",
  float16: "float16",
  uint8: "uint8",
};

let live = 0;

/** ORT sessions created and not yet released in this process (tests: a finished prune holds none). */
export function liveSessions(): number {
  return live;
}

export class Session {
  private released = false;

  private constructor(
    private readonly s: OrtModule.InferenceSession,
    readonly inputNames: readonly string[],
    readonly outputNames: readonly string[],
  ) {}

  static async create(model: Uint8Array | string, opts: SessionOptions = {}): Promise<Session> {
    const o: OrtModule.InferenceSession.SessionOptions = {
      graphOptimizationLevel: opts.optLevel ?? "all",
      executionProviders: ["cpu"],
    };
    if (opts.profilePrefix) {
      o.enableProfiling = true;
      o.profileFilePrefix = opts.profilePrefix;
    }
    if (opts.threads) {
      o.intraOpNumThreads = opts.threads;
      o.interOpNumThreads = 1;
    }
    try {
      const s =
        typeof model === "string"
          ? await ort.InferenceSession.create(model, o)
          : await ort.InferenceSession.create(model, o);
      live++;
      return new Session(s, s.inputNames, s.outputNames);
    } catch (e) {
      throw new PareError(
        "E_RUNTIME",
        `ONNX Runtime could not load the graph: ${(e as Error).message.split("\n")[0]}`,
        "this is a bug in pare's graph emission or an unsupported model variant; please report it with the model's config.json",
      );
    }
  }

  async run(feeds: Record<string, HostTensor>, outputs?: string[]): Promise<Record<string, HostTensor>> {
    const f: Record<string, OrtModule.Tensor> = {};
    for (const [k, t] of Object.entries(feeds)) {
      f[k] = new ort.Tensor(ORT_TYPE[t.type], t.data as OrtModule.Tensor.DataType, t.dims);
    }
    let r: OrtModule.InferenceSession.ReturnType;
    try {
      r = outputs ? await this.s.run(f, outputs) : await this.s.run(f);
    } catch (e) {
      throw new PareError(
        "E_RUNTIME",
        `ONNX Runtime failed while running the graph: ${(e as Error).message.split("\n")[0]}`,
        "check that the inputs match the model (sequence length within max_position_embeddings, token ids within the vocabulary)",
      );
    }
    const out: Record<string, HostTensor> = {};
    for (const [k, t] of Object.entries(r)) {
      out[k] = { type: t.type as ElemType, dims: [...t.dims], data: t.data as TensorData };
    }
    return out;
  }

  /** stop profiling: ORT writes `<profilePrefix>_<timestamp>.json` (see SessionOptions.profilePrefix) */
  endProfiling(): void {
    this.s.endProfiling();
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    live--;
    await this.s.release();
  }
}
