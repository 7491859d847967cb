/**
 * A naive float64 reference of pare's pruning pipeline (docs/methods.md §1–4), written from the spec with plain loops:
 * taps from the reference forward passes (`forward.ts`), statistics (mean, unbiased variance, squared norm, Gram of
 * [X, 1]) in float64 loops over stored rows, criteria from their formulas, uniform / global allocation, none / bias /
 * liar reconstruction by a Gaussian-elimination ridge solve, and surgery by plain slicing.
 *
 * Supported: LLaMA-style decoders (tensor names `model.layers.{i}.…`) and BertForSequenceClassification
 * (`bert.encoder.layer.{i}.…`); dense or sequential calibration; skip lists / roundTo are not modelled
 * (min groups / channels are).
 *
 * It also exports the small linear-algebra references the unit tests use (Gaussian elimination, matmul).
 */
import {
  type RefTensor,
  referenceBertForward,
  referenceDecoderForward,
  type WeightSource,
} from "./forward.ts";

// ---------------------------------------------------------------------------------------------------------
// linear algebra, the obvious way

/** Solve A X = B (A [n, n], B [n, m], row-major) by Gaussian elimination with partial pivoting. Throws if singular. */
export function gaussSolve(A: ArrayLike<number>, n: number, B: ArrayLike<number>, m: number): Float64Array {
  const a = Float64Array.from(A);
  const b = Float64Array.from(B);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(a[r * n + c]) > Math.abs(a[p * n + c])) p = r;
    if (a[p * n + c] === 0) throw new Error("gaussSolve: singular matrix");
    if (p !== c) {
      for (let k = 0; k < n; k++) [a[c * n + k], a[p * n + k]] = [a[p * n + k], a[c * n + k]];
      for (let k = 0; k < m; k++) [b[c * m + k], b[p * m + k]] = [b[p * m + k], b[c * m + k]];
    }
    for (let r = c + 1; r < n; r++) {
      const f = a[r * n + c] / a[c * n + c];
      if (f === 0) continue;
      for (let k = c; k < n; k++) a[r * n + k] -= f * a[c * n + k];
      for (let k = 0; k < m; k++) b[r * m + k] -= f * b[c * m + k];
    }
  }
  const x = new Float64Array(n * m);
  for (let r = n - 1; r >= 0; r--) {
    for (let k = 0; k < m; k++) {
      let s = b[r * m + k];
      for (let j = r + 1; j < n; j++) s -= a[r * n + j] * x[j * m + k];
      x[r * m + k] = s / a[r * n + r];
    }
  }
  return x;
}

/** C [n, p] = A [n, k] · B [k, p], triple loop. */
export function naiveMatmul(
  A: ArrayLike<number>,
  B: ArrayLike<number>,
  n: number,
  k: number,
  p: number,
): Float64Array {
  const C = new Float64Array(n * p);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < p; j++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += A[i * k + t] * B[t * p + j];
      C[i * p + j] = s;
    }
  return C;
}

// ---------------------------------------------------------------------------------------------------------
// statistics

/** Rows of one tap, [n, d] float64. */
export interface Rows {
  n: number;
  d: number;
  x: Float64Array;
}

export interface RefStats {
  n: number;
  d: number;
  mean: Float64Array;
  /** unbiased, two-pass */
  variance: Float64Array;
  /** Σ_n x² */
  sqnorm: Float64Array;
  /** [(d+1)²] Gram of [X, 1] */
  gram: Float64Array;
}

export function concatRows(parts: Float64Array[], d: number): Rows {
  const n = parts.reduce((s, p) => s + p.length / d, 0);
  const x = new Float64Array(n * d);
  let at = 0;
  for (const p of parts) {
    x.set(p, at);
    at += p.length;
  }
  return { n, d, x };
}

export function refStats(r: Rows): RefStats {
  const { n, d, x } = r;
  const mean = new Float64Array(d);
  const variance = new Float64Array(d);
  const sqnorm = new Float64Array(d);
  for (let j = 0; j < d; j++) {
    let s = 0;
    for (let t = 0; t < n; t++) s += x[t * d + j];
    mean[j] = s / n;
    let v = 0;
    let q = 0;
    for (let t = 0; t < n; t++) {
      const e = x[t * d + j] - mean[j];
      v += e * e;
      q += x[t * d + j] * x[t * d + j];
    }
    variance[j] = v / Math.max(1, n - 1);
    sqnorm[j] = q;
  }
  const D = d + 1;
  const gram = new Float64Array(D * D);
  const at = (t: number, j: number) => (j === d ? 1 : x[t * d + j]);
  for (let a = 0; a < D; a++)
    for (let b = 0; b < D; b++) {
      let s = 0;
      for (let t = 0; t < n; t++) s += at(t, a) * at(t, b);
      gram[a * D + b] = s;
    }
  return { n, d, mean, variance, sqnorm, gram };
}

// ---------------------------------------------------------------------------------------------------------
// criteria (docs/methods.md §2), per consumer input channel j; W [dOut, dIn]

export type RefCriterion =
  | "magnitude-l1"
  | "magnitude-l2"
  | "wanda-sp"
  | "flap-ifv"
  | "flap-wifv"
  | "flap-wifn";

export function refChannelScores(
  crit: RefCriterion,
  W: ArrayLike<number>,
  dOut: number,
  dIn: number,
  st?: RefStats,
): Float64Array {
  const s = new Float64Array(dIn);
  for (let j = 0; j < dIn; j++) {
    let l1 = 0;
    let l2sq = 0;
    for (let i = 0; i < dOut; i++) {
      l1 += Math.abs(W[i * dIn + j]);
      l2sq += W[i * dIn + j] ** 2;
    }
    const need = () => {
      if (!st) throw new Error(`reference: ${crit} needs statistics`);
      return st;
    };
    switch (crit) {
      case "magnitude-l1":
        s[j] = l1;
        break;
      case "magnitude-l2":
        s[j] = Math.sqrt(l2sq);
        break;
      case "wanda-sp":
        s[j] = (l1 / dOut) * Math.sqrt(need().sqnorm[j]);
        break;
      case "flap-ifv":
        s[j] = need().variance[j];
        break;
      case "flap-wifv":
        s[j] = need().variance[j] * l2sq;
        break;
      case "flap-wifn":
        s[j] = (l1 / dOut) * Math.sqrt(need().sqnorm[j] / need().n);
        break;
    }
  }
  return s;
}

export const SQUARES_ATTENTION: Record<RefCriterion, boolean> = {
  "magnitude-l1": false,
  "magnitude-l2": false,
  "wanda-sp": false,
  "flap-ifv": true,
  "flap-wifv": true,
  "flap-wifn": true,
};

/** head h = Σ_{j < hd} s (or s²) of its channels; KV group = Σ of its query heads (h in group ⌊h / (nH/nKv)⌋). */
export function refGroupScores(
  ch: Float64Array,
  nH: number,
  nKv: number,
  hd: number,
  square: boolean,
): Float64Array {
  const g = nH / nKv;
  const out = new Float64Array(nKv);
  for (let k = 0; k < nKv; k++) {
    for (let h = k * g; h < (k + 1) * g; h++) {
      for (let j = 0; j < hd; j++) {
        const v = ch[h * hd + j];
        out[k] += square ? v * v : v;
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// allocation (docs/methods.md §3)

export interface RefModule {
  layer: number;
  module: "attn" | "mlp";
  n: number;
  cost: number;
  min: number;
  /** a skipped layer's module keeps every unit (its parameters still count in the total) */
  skip?: boolean;
}

/** The k highest scores (ties: lower index first), as sorted indices. */
export function refTopK(s: ArrayLike<number>, k: number): number[] {
  const idx = Array.from({ length: s.length }, (_, i) => i);
  idx.sort((a, b) => (s[b] !== s[a] ? s[b] - s[a] : a - b));
  return idx.slice(0, k).sort((a, b) => a - b);
}

/**
 * Uniform: per layer the coarse module (largest cost) removes round(r·n) units (within its guard); the finest
 * module removes the count (within its guard) whose total comes closest to r of the layer's parameters
 * (brute-force search; on an exact tie the larger count, like Math.round).
 */
export function refUniformCounts(mods: RefModule[], ratio: number): number[] {
  const keep = mods.map((m) => m.n);
  for (const layer of new Set(mods.map((m) => m.layer))) {
    const idx = mods.map((_, i) => i).filter((i) => mods[i].layer === layer);
    if (idx.some((i) => mods[i].skip)) continue;
    const target = ratio * idx.reduce((s, i) => s + mods[i].n * mods[i].cost, 0);
    const byCost = idx.slice().sort((a, b) => mods[b].cost - mods[a].cost);
    let removed = 0;
    byCost.forEach((i, k) => {
      const m = mods[i];
      let r: number;
      if (k < byCost.length - 1) {
        r = Math.max(0, Math.min(m.n - m.min, Math.round(ratio * m.n)));
      } else {
        r = 0;
        let best = Number.POSITIVE_INFINITY;
        for (let c = 0; c <= m.n - m.min; c++) {
          const dist = Math.abs(removed + c * m.cost - target);
          if (dist <= best) {
            best = dist;
            r = c;
          }
        }
      }
      keep[i] = m.n - r;
      removed += r * m.cost;
    });
  }
  return keep;
}

/** (s − mean) / sample standard deviation (0 when all scores are equal). */
export function refStandardize(s: Float64Array): Float64Array {
  const n = s.length;
  let mu = 0;
  for (const v of s) mu += v;
  mu /= n;
  let ss = 0;
  for (const v of s) ss += (v - mu) * (v - mu);
  const sd = Math.sqrt(ss / Math.max(1, n - 1));
  return s.map((v) => (sd > 0 ? (v - mu) / sd : 0));
}

/**
 * Global: given unit scores that are comparable across modules (standardized), walk all units from the lowest
 * score up (ties: module order, then unit order) and remove a unit when that brings the removed parameter count
 * closer to r of the total (never below a module's minimum). Returns kept counts.
 */
export function refGlobalCounts(mods: RefModule[], z: Float64Array[], ratio: number): number[] {
  const total = mods.reduce((s, m) => s + m.n * m.cost, 0);
  const target = ratio * total;
  const cand: [number, number, number][] = [];
  mods.forEach((m, mi) => {
    if (!m.skip) for (let u = 0; u < m.n; u++) cand.push([z[mi][u], mi, u]);
  });
  cand.sort((a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2]);
  const removed = mods.map(() => 0);
  let gone = 0;
  for (const [, mi] of cand) {
    const m = mods[mi];
    if (m.n - removed[mi] <= m.min) continue;
    if (Math.abs(gone + m.cost - target) < Math.abs(gone - target)) {
      removed[mi]++;
      gone += m.cost;
    }
  }
  return mods.map((m, i) => m.n - removed[i]);
}

// ---------------------------------------------------------------------------------------------------------
// reconstruction (docs/methods.md §4)

export type RefReconstruct = "none" | "bias" | "liar";

export interface RefRecon {
  W: Float64Array; // [dOut, |u|]
  b?: Float64Array;
}

export function complementOf(keep: number[], n: number): number[] {
  const s = new Set(keep);
  return Array.from({ length: n }, (_, j) => j).filter((j) => !s.has(j));
}

export function refReconstruct(
  method: RefReconstruct,
  W: ArrayLike<number>,
  dOut: number,
  dIn: number,
  b: ArrayLike<number> | undefined,
  keep: number[],
  st: RefStats | undefined,
  alpha: number,
): RefRecon {
  const m = complementOf(keep, dIn);
  const Wu = new Float64Array(dOut * keep.length);
  for (let i = 0; i < dOut; i++)
    for (let k = 0; k < keep.length; k++) Wu[i * keep.length + k] = W[i * dIn + keep[k]];
  const b0 = b ? Float64Array.from(b) : undefined;
  if (method === "none") return { W: Wu, b: b0 };
  if (!st) throw new Error(`reference: ${method} needs statistics`);
  if (method === "bias") {
    const nb = new Float64Array(dOut);
    for (let i = 0; i < dOut; i++) {
      let s = b0 ? b0[i] : 0;
      for (const j of m) s += W[i * dIn + j] * st.mean[j];
      nb[i] = s;
    }
    return { W: Wu, b: nb };
  }
  if (m.length === 0) return { W: Wu, b: b0 };
  // [Q; pᵀ] = (X̃_uᵀX̃_u + λĨ)⁻¹ X̃_uᵀX_m
  const D = dIn + 1;
  const u1 = [...keep, dIn];
  const n = u1.length;
  let diag = 0;
  for (const j of keep) diag += st.gram[j * D + j];
  const lambda = alpha * (keep.length > 0 ? diag / keep.length : 1);
  const A = new Float64Array(n * n);
  for (let a = 0; a < n; a++) for (let c = 0; c < n; c++) A[a * n + c] = st.gram[u1[a] * D + u1[c]];
  for (let a = 0; a < n - 1; a++) A[a * n + a] += lambda;
  const B = new Float64Array(n * m.length);
  for (let a = 0; a < n; a++)
    for (let c = 0; c < m.length; c++) B[a * m.length + c] = st.gram[u1[a] * D + m[c]];
  const Z = gaussSolve(A, n, B, m.length); // rows: kept channels then the intercept; cols: removed channels
  const Wn = Wu.slice();
  const bn = new Float64Array(dOut);
  for (let i = 0; i < dOut; i++) {
    for (let k = 0; k < keep.length; k++) {
      let s = 0;
      for (let c = 0; c < m.length; c++) s += W[i * dIn + m[c]] * Z[k * m.length + c];
      Wn[i * keep.length + k] += s;
    }
    let s = b0 ? b0[i] : 0;
    for (let c = 0; c < m.length; c++) s += W[i * dIn + m[c]] * Z[keep.length * m.length + c];
    bn[i] = s;
  }
  return { W: Wn, b: bn };
}

// ---------------------------------------------------------------------------------------------------------
// the pipeline

export interface RefTensor64 {
  shape: number[];
  data: Float64Array;
}

export type Family = "decoder" | "encoder";

export interface RefRecipe {
  ratio: number;
  criterion: RefCriterion;
  allocation: "uniform" | "global";
  reconstruct: RefReconstruct;
  calibration: "dense" | "sequential";
  ridge: number;
  minGroups?: number;
  minChannels?: number;
  /** global allocation: how a KV group's score is formed from standardized channel scores (see globalScores) */
  groupScore?: "mean-of-channels" | "sum-of-head-means";
}

export interface RefLayer {
  keptGroups: number[];
  keptHeads: number[];
  keptChannels: number[];
  /** the unit scores the keep decision used (uniform: raw unit scores; global: the standardized ones) */
  scores: { attn: Float64Array; mlp: Float64Array };
}

export interface RefResult {
  layers: RefLayer[];
  weights: Map<string, RefTensor64>;
}

interface Names {
  q: string;
  k: string;
  v: string;
  o: string;
  gate?: string;
  up: string;
  down: string;
}

function namesOf(family: Family, i: number): Names {
  if (family === "decoder") {
    const p = `model.layers.${i}.`;
    return {
      q: `${p}self_attn.q_proj`,
      k: `${p}self_attn.k_proj`,
      v: `${p}self_attn.v_proj`,
      o: `${p}self_attn.o_proj`,
      gate: `${p}mlp.gate_proj`,
      up: `${p}mlp.up_proj`,
      down: `${p}mlp.down_proj`,
    };
  }
  const p = `bert.encoder.layer.${i}.`;
  return {
    q: `${p}attention.self.query`,
    k: `${p}attention.self.key`,
    v: `${p}attention.self.value`,
    o: `${p}attention.output.dense`,
    up: `${p}intermediate.dense`,
    down: `${p}output.dense`,
  };
}

/** Valid (unpadded) token ids of every calibration row, in batch order. */
export function calibrationSequences(
  batches: { ids: number[]; mask: number[]; b: number; T: number }[],
): number[][] {
  const out: number[][] = [];
  for (const bt of batches) {
    for (let r = 0; r < bt.b; r++) {
      const ids: number[] = [];
      for (let t = 0; t < bt.T; t++) if (bt.mask[r * bt.T + t]) ids.push(bt.ids[r * bt.T + t]);
      out.push(ids);
    }
  }
  return out;
}

function size(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Prune a model the slow way. `weights` holds every tensor (float32 or float64 data); the result holds every
 * output tensor in float64 (including the zero q/k/v or gate/up biases a decoder's config flags imply once
 * reconstruction created o_proj / down_proj biases).
 */
export function referencePrune(
  family: Family,
  config: Record<string, unknown>,
  input: ReadonlyMap<string, RefTensor>,
  sequences: number[][],
  recipe: RefRecipe,
): RefResult {
  const W = new Map<string, RefTensor64>();
  for (const [k, t] of input) W.set(k, { shape: [...t.shape], data: Float64Array.from(t.data) });
  const nL = Number(config.num_hidden_layers);
  const H = Number(config.hidden_size);
  const hd =
    family === "decoder" && typeof config.head_dim === "number"
      ? config.head_dim
      : H / Number(config.num_attention_heads);
  const minG = recipe.minGroups ?? 1;
  const minC = recipe.minChannels ?? 1;
  const get = (n: string) => {
    const t = W.get(n);
    if (!t) throw new Error(`reference: missing ${n}`);
    return t;
  };
  const forward = (src: WeightSource, ids: number[]) =>
    family === "decoder" ? referenceDecoderForward(config, src, ids) : referenceBertForward(config, src, ids);
  /** taps of every layer over all sequences with the current weights */
  const taps = () => {
    const attn: Float64Array[][] = Array.from({ length: nL }, () => []);
    const mlp: Float64Array[][] = Array.from({ length: nL }, () => []);
    const src = new Map(W) as ReadonlyMap<string, RefTensor>;
    for (const ids of sequences) {
      const r = forward(src, ids);
      for (let l = 0; l < nL; l++) {
        attn[l].push(r.attnTaps[l]);
        mlp[l].push(r.mlpTaps[l]);
      }
    }
    return { attn, mlp };
  };
  const widths = (i: number) => {
    const N = namesOf(family, i);
    const nH = get(`${N.q}.weight`).shape[0] / hd;
    const nKv = get(`${N.k}.weight`).shape[0] / hd;
    const F = get(`${N.down}.weight`).shape[1];
    return { nH, nKv, F };
  };
  const statsOf = (parts: Float64Array[], d: number) => refStats(concatRows(parts, d));

  // unit costs from the weight shapes: the parameters that scale with the number of units
  const mods: RefModule[] = [];
  for (let i = 0; i < nL; i++) {
    const N = namesOf(family, i);
    const { nKv, F } = widths(i);
    const sz = (n: string) => (W.has(n) ? size(get(n).shape) : 0);
    const attnScaled =
      [N.q, N.k, N.v].reduce((s, p) => s + sz(`${p}.weight`) + sz(`${p}.bias`), 0) + sz(`${N.o}.weight`);
    const mlpProducers = [N.gate, N.up].filter((x): x is string => !!x);
    const mlpScaled =
      mlpProducers.reduce((s, p) => s + sz(`${p}.weight`) + sz(`${p}.bias`), 0) + sz(`${N.down}.weight`);
    mods.push({ layer: i, module: "attn", n: nKv, cost: attnScaled / nKv, min: Math.min(minG, nKv) });
    mods.push({ layer: i, module: "mlp", n: F, cost: mlpScaled / F, min: Math.min(minC, F) });
  }

  const unitScores = (i: number, module: "attn" | "mlp", st?: RefStats): Float64Array => {
    const N = namesOf(family, i);
    const { nH, nKv, F } = widths(i);
    const c = get(`${module === "attn" ? N.o : N.down}.weight`);
    const dIn = module === "attn" ? nH * hd : F;
    const ch = refChannelScores(recipe.criterion, c.data, H, dIn, st);
    return module === "attn" ? refGroupScores(ch, nH, nKv, hd, SQUARES_ATTENTION[recipe.criterion]) : ch;
  };

  /**
   * Global (FLAP's AL-AM): channel scores (squared for attention under FLAP criteria) standardized over the
   * module's channels; a KV group scores the mean of its g·hd channels ("mean-of-channels"), or — the literal
   * reading of docs/methods.md §2, "head = mean over its head_dim channels, group = sum over its query heads" — g times
   * that ("sum-of-head-means").
   */
  const globalScores = (i: number, module: "attn" | "mlp", st?: RefStats): Float64Array => {
    const N = namesOf(family, i);
    const { nH, nKv, F } = widths(i);
    const c = get(`${module === "attn" ? N.o : N.down}.weight`);
    if (module === "mlp") return refStandardize(refChannelScores(recipe.criterion, c.data, H, F, st));
    let ch = refChannelScores(recipe.criterion, c.data, H, nH * hd, st);
    if (SQUARES_ATTENTION[recipe.criterion]) ch = ch.map((v) => v * v);
    const z = refStandardize(ch);
    const g = nH / nKv;
    const per = (recipe.groupScore ?? "sum-of-head-means") === "mean-of-channels" ? g * hd : hd;
    return refGroupScores(z, nH, nKv, hd, false).map((v) => v / per);
  };

  const needsStats = recipe.criterion !== "magnitude-l1" && recipe.criterion !== "magnitude-l2";
  let denseStats: { attn: RefStats; mlp: RefStats }[] | undefined;
  if (needsStats || recipe.reconstruct !== "none") {
    if (recipe.calibration === "dense" || recipe.allocation === "global") {
      const t = taps();
      denseStats = t.attn.map((_, l) => ({
        attn: statsOf(t.attn[l], widths(l).nH * hd),
        mlp: statsOf(t.mlp[l], widths(l).F),
      }));
    }
  }

  // global: counts and kept units are fixed up front from dense scores (also in sequential mode)
  let keepCounts: number[];
  let global: Float64Array[] | undefined;
  if (recipe.allocation === "global") {
    global = mods.map((m) => globalScores(m.layer, m.module, denseStats?.[m.layer][m.module]));
    keepCounts = refGlobalCounts(mods, global, recipe.ratio);
  } else {
    keepCounts = refUniformCounts(mods, recipe.ratio);
  }
  const keepOf = (i: number, module: "attn" | "mlp", st?: RefStats) => {
    const k = 2 * i + (module === "attn" ? 0 : 1);
    const scores = global ? global[k] : unitScores(i, module, st);
    return { keep: refTopK(scores, keepCounts[k]), scores };
  };

  const cutAttention = (i: number, keepGroups: number[], st?: RefStats) => {
    const N = namesOf(family, i);
    const { nH, nKv } = widths(i);
    const g = nH / nKv;
    const heads = keepGroups.flatMap((k) => Array.from({ length: g }, (_, j) => k * g + j));
    const qRows = heads.flatMap((h) => Array.from({ length: hd }, (_, j) => h * hd + j));
    const kvRows = keepGroups.flatMap((k) => Array.from({ length: hd }, (_, j) => k * hd + j));
    const o = get(`${N.o}.weight`);
    const r = refReconstruct(
      recipe.reconstruct,
      o.data,
      H,
      nH * hd,
      W.get(`${N.o}.bias`)?.data,
      qRows,
      st,
      recipe.ridge,
    );
    sliceRows(W, N.q, qRows);
    sliceRows(W, N.k, kvRows);
    sliceRows(W, N.v, kvRows);
    W.set(`${N.o}.weight`, { shape: [H, qRows.length], data: r.W });
    if (r.b) W.set(`${N.o}.bias`, { shape: [H], data: r.b });
    return heads;
  };
  const cutMlp = (i: number, keep: number[], st?: RefStats) => {
    const N = namesOf(family, i);
    const { F } = widths(i);
    const d = get(`${N.down}.weight`);
    const r = refReconstruct(
      recipe.reconstruct,
      d.data,
      H,
      F,
      W.get(`${N.down}.bias`)?.data,
      keep,
      st,
      recipe.ridge,
    );
    if (N.gate) sliceRows(W, N.gate, keep);
    sliceRows(W, N.up, keep);
    W.set(`${N.down}.weight`, { shape: [H, keep.length], data: r.W });
    if (r.b) W.set(`${N.down}.bias`, { shape: [H], data: r.b });
  };

  const layers: RefLayer[] = [];
  const sequential = recipe.calibration === "sequential" && (needsStats || recipe.reconstruct !== "none");
  for (let i = 0; i < nL; i++) {
    let stA: RefStats | undefined;
    let stM: RefStats | undefined;
    if (sequential) {
      stA = statsOf(taps().attn[i], widths(i).nH * hd);
    } else {
      stA = denseStats?.[i].attn;
      stM = denseStats?.[i].mlp;
    }
    // uniform in sequential mode: scores from the pruned stream (the MLP's after this layer's attention cut)
    const a = keepOf(i, "attn", stA);
    const heads = cutAttention(i, a.keep, stA);
    if (sequential) stM = statsOf(taps().mlp[i], widths(i).F);
    const m = keepOf(i, "mlp", stM);
    cutMlp(i, m.keep, stM);
    layers.push({
      keptGroups: a.keep,
      keptHeads: heads,
      keptChannels: m.keep,
      scores: { attn: a.scores, mlp: m.scores },
    });
  }

  // decoders: a consumer bias created by reconstruction switches on attention_bias / mlp_bias, which implies
  // zero biases on the other projections of that block
  if (family === "decoder") {
    for (const [consumerKey, modules] of [
      ["o", ["q", "k", "v", "o"]],
      ["down", ["gate", "up", "down"]],
    ] as const) {
      const created = Array.from({ length: nL }, (_, i) => i).some(
        (i) =>
          W.has(`${namesOf(family, i)[consumerKey]}.bias`) &&
          !input.has(`${namesOf(family, i)[consumerKey]}.bias`),
      );
      if (!created) continue;
      for (let i = 0; i < nL; i++) {
        const N = namesOf(family, i);
        for (const m of modules) {
          const p = N[m];
          if (p && !W.has(`${p}.bias`)) {
            const rows = get(`${p}.weight`).shape[0];
            W.set(`${p}.bias`, { shape: [rows], data: new Float64Array(rows) });
          }
        }
      }
    }
  }
  return { layers, weights: W };
}

function sliceRows(W: Map<string, RefTensor64>, prefix: string, rows: number[]): void {
  const w = W.get(`${prefix}.weight`);
  if (!w) throw new Error(`reference: missing ${prefix}.weight`);
  const c = w.shape[1];
  const out = new Float64Array(rows.length * c);
  rows.forEach((r, k) => {
    for (let j = 0; j < c; j++) out[k * c + j] = w.data[r * c + j];
  });
  W.set(`${prefix}.weight`, { shape: [rows.length, c], data: out });
  const b = W.get(`${prefix}.bias`);
  if (b) W.set(`${prefix}.bias`, { shape: [rows.length], data: Float64Array.from(rows, (r) => b.data[r]) });
}
