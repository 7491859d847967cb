/** What a prune reports: progress events while it runs, and the report it returns (also pare-pruning.json). */
import type { ParamCounts } from "../arch/params.ts";
import type { PrunePlan } from "./plan.ts";
import type { Recipe } from "./recipe.ts";

export type PruneEvent =
  | { type: "phase"; phase: string; detail?: string }
  | { type: "layer"; layer: number; layers: number; step: string }
  | { type: "note"; message: string }
  | { type: "plan"; plan: PrunePlan };

export interface LayerReport {
  layer: number;
  heads: [number, number];
  kvHeads: [number, number];
  ffn: [number, number];
  keptKvGroups: number[];
  keptHeads: number[];
  keptChannels: number[];
  skipped: boolean;
  /** the unit scores the keep decision used (global: standardized), 4 significant digits */
  scores?: { attn: number[]; mlp: number[] };
  ridge?: { attn?: number; mlp?: number; retries: number };
}

/** --target-speedup: the plan and the candidates measured. */
export interface TargetReport {
  speedup: number;
  workload: {
    kind: "prefill" | "generation";
    batch: number;
    seqLen: number;
    promptLen: number;
    genTokens: number;
  };
  /** the latency table (speedups of candidate shapes on this machine), absent when not measured */
  latencyTable?: string;
  measuredShapes: number;
  cachedShapes: number;
  /** each candidate: depth, width ratio, predicted (measured-shape) speedup, held-out calibration loss */
  candidates: { depth: number; ratio: number; predictedSpeedup: number; loss: number; chosen: boolean }[];
  heldOutWindows: number;
}

/** What the depth stage decided (original layer indices). */
export interface DepthReport {
  criterion: "bi" | "angular" | "sleb";
  unit: "block";
  /** removed blocks, ascending */
  removed: number[];
  /** kept blocks: kept[j] is the original index of output layer j */
  kept: number[];
  /** the criterion's score per block (bi, sleb's first round: loss without it) or per span start (angular); null: not a candidate */
  scores: (number | null)[];
  /** sleb: the block removed in each round and the calibration loss (NLL per token) after it */
  rounds?: { removed: number; loss: number }[];
  compensation: "none" | "liar";
  /** the calibration windows the depth stage read (the width stages draw the same ones) */
  calibration: { sequences: number; tokens: number; protocol: string };
  /**
   * per compensated span [first, last]: the block whose down projection was refitted, the ridge used, and the
   * calibration error ‖out − target‖² / ‖target − mid‖² of dropping the span vs after the fit
   */
  folds: {
    layer: number;
    span: [number, number];
    ridge: number;
    relError: { dropped: number | null; fitted: number | null };
  }[];
  notes: string[];
}

export interface PruneReport {
  pare: string;
  versions: Record<string, string>;
  created: string;
  recipe: Recipe;
  input: { dir: string; family: string; files: Record<string, string> };
  output: string;
  calibration?: { sequences: number; tokens: number; protocol: string };
  params: { before: Omit<ParamCounts, "perLayer">; after: Omit<ParamCounts, "perLayer"> };
  requestedRatio: number;
  achievedRatio: number;
  plan?: PrunePlan;
  layers: LayerReport[];
  /** depth pruning (--depth / --depth-ratio): which original blocks were removed, why, and the compensation */
  depth?: DepthReport;
  /** --target-speedup: how the depth and width ratio were chosen */
  target?: TargetReport;
  timings: Record<string, number>;
  /** seconds spent in layer forwards, statistics (moments/Gram), solves and writing the output */
  busySeconds?: { forward: number; statistics: number; solve: number; output: number };
  notes: string[];
}

/** How to run a prune (all optional). */
export interface PruneOptions {
  /** progress events (nothing is printed) */
  onEvent?: (e: PruneEvent) => void;
  /**
   * Stops the prune between batches and layers with E_ABORTED: no output folder and no temporary files are
   * left; the per-layer checkpoints stay for `--resume`.
   */
  signal?: AbortSignal;
  /** tests: the in-memory budget of waiting calibration data (bytes; beyond it, data goes to a temporary file) */
  heldBudgetBytes?: number;
  /**
   * Called with the complete, not yet published output folder (a temporary sibling of `recipe.out`) just before
   * it is renamed into place: what it adds there (an ONNX export, say) is published with the prune, all or
   * nothing. Paths inside the folder are final relative to `recipe.out`.
   */
  beforePublish?: (dir: string) => void | Promise<void>;
}

/** The modules of a layer that lose units: attention (KV groups) and MLP (FFN channels). */
export type Module = "attn" | "mlp";
