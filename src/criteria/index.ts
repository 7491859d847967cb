/**
 * Pruning criteria (docs/methods.md §2): a score per input channel j of the consumer layer
 * (W [d_out, d_in], column j); higher = keep. A plain registry; each entry names its paper.
 * `obs` is structured: it orders whole units by their cost after compensation (obs.ts).
 */
import { type StatKind, type TapStats, variance } from "../calib/moments.ts";
import { type ObsInput, type ObsOrder, obsOrder } from "./obs.ts";

/** A criterion that scores each input channel on its own (units sum their channels). */
export interface ChannelCriterion {
  name: string;
  paper: string;
  /** statistics of the consumer input it needs (empty: weights only, no calibration) */
  needs: StatKind[];
  /** FLAP squares attention channel scores before summing/standardizing */
  squareAttention: boolean;
  structured?: false;
  channelScores(W: Float32Array, dOut: number, dIn: number, stats?: TapStats): Float64Array;
}

/** A criterion that orders whole units (KV groups, FFN channels) greedily by their post-compensation cost. */
export interface StructuredCriterion {
  name: string;
  paper: string;
  needs: StatKind[];
  squareAttention: false;
  structured: true;
  order(x: ObsInput): Promise<ObsOrder>;
}

export type Criterion = ChannelCriterion | StructuredCriterion;
export type { ObsInput, ObsOrder } from "./obs.ts";

/** Per column j of W [dOut, dIn]: Σ_i |W_ij|^p (p = 1 or 2). */
export function columnNorms(W: Float32Array, dOut: number, dIn: number, p: 1 | 2): Float64Array {
  const s = new Float64Array(dIn);
  for (let i = 0; i < dOut; i++) {
    const row = i * dIn;
    if (p === 1) for (let j = 0; j < dIn; j++) s[j] += Math.abs(W[row + j]);
    else
      for (let j = 0; j < dIn; j++) {
        const w = W[row + j];
        s[j] += w * w;
      }
  }
  return s;
}

function need(stats: TapStats | undefined, name: string): TapStats {
  if (!stats) throw new Error(`criterion ${name} needs calibration statistics`);
  return stats;
}

export const CRITERIA = {
  "magnitude-l1": {
    name: "magnitude-l1",
    paper: "Li et al. 2017, Pruning Filters for Efficient ConvNets (L1 norm of weights)",
    needs: [],
    squareAttention: false,
    channelScores: (W, o, i) => columnNorms(W, o, i, 1),
  },
  "magnitude-l2": {
    name: "magnitude-l2",
    paper: "L2 norm of the consumer's weight column (magnitude baseline)",
    needs: [],
    squareAttention: false,
    channelScores: (W, o, i) => columnNorms(W, o, i, 2).map(Math.sqrt),
  },
  "wanda-sp": {
    name: "wanda-sp",
    paper: "Sun et al. 2023, Wanda; structured form as in An et al. 2024 (FLAP)",
    needs: ["moments"],
    squareAttention: false,
    channelScores: (W, o, i, st) => {
      const s = need(st, "wanda-sp");
      const l1 = columnNorms(W, o, i, 1);
      return l1.map((v, j) => (v / o) * Math.sqrt(s.sumsq[j]));
    },
  },
  "flap-ifv": {
    name: "flap-ifv",
    paper: "An et al. 2024, FLAP: Fluctuation-based Adaptive Structured Pruning (input feature variance)",
    needs: ["moments"],
    squareAttention: true,
    channelScores: (_W, _o, _i, st) => variance(need(st, "flap-ifv")),
  },
  "flap-wifv": {
    name: "flap-wifv",
    paper: "An et al. 2024, FLAP (weighted input feature variance; FLAP's default)",
    needs: ["moments"],
    squareAttention: true,
    channelScores: (W, o, i, st) => {
      const v = variance(need(st, "flap-wifv"));
      const l2 = columnNorms(W, o, i, 2);
      return v.map((x, j) => x * l2[j]);
    },
  },
  "flap-wifn": {
    name: "flap-wifn",
    paper: "An et al. 2024, FLAP (weighted input feature norm)",
    needs: ["moments"],
    squareAttention: true,
    channelScores: (W, o, i, st) => {
      const s = need(st, "flap-wifn");
      const l1 = columnNorms(W, o, i, 1);
      return l1.map((v, j) => (v / o) * Math.sqrt(s.sumsq[j] / Math.max(1, s.n)));
    },
  },
  obs: {
    name: "obs",
    paper:
      "structured Optimal Brain Surgeon: Kurtić et al. 2023, ZipLM; Ling et al. 2024, SlimGPT (greedy removal by the cost after least-squares compensation)",
    needs: ["gram"],
    squareAttention: false,
    structured: true,
    order: obsOrder,
  },
} satisfies Record<string, Criterion>;

/**
 * Unit scores from channel scores. Attention units are KV groups: a head's score is the
 * sum over its head_dim channels (squared first for FLAP), a group's the sum over its query heads.
 */
export function attentionUnitScores(
  ch: Float64Array,
  nHeads: number,
  nKv: number,
  headDim: number,
  square: boolean,
): Float64Array {
  const g = nHeads / nKv;
  const out = new Float64Array(nKv);
  for (let h = 0; h < nHeads; h++) {
    let s = 0;
    for (let j = 0; j < headDim; j++) {
      const v = ch[h * headDim + j];
      s += square ? v * v : v;
    }
    out[Math.floor(h / g)] += s;
  }
  return out;
}
