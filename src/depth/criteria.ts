/**
 * Depth criteria: which decoder blocks to remove, from the hidden states h_ℓ (the input of block ℓ; h_L the
 * output of the last block) of the calibration tokens. Plain data in, decisions out (docs/algorithms.md §Depth).
 *
 *  bi       ShortGPT (Men et al. 2024): Block Influence BI_ℓ = 1 − mean_t cos(h_ℓ[t], h_{ℓ+1}[t]); remove the n
 *           blocks of least influence (not necessarily contiguous).
 *  angular  Gromov et al. 2024: d(ℓ, n) = mean_t arccos(cos(h_ℓ[t], h_{ℓ+n}[t])) / π; remove the contiguous span
 *           [ℓ*, ℓ*+n) of least distance. (The paper reads the last token of each sequence; pare averages over
 *           every calibration token, which its windows of equal length make a lower-variance estimate.)
 *  sleb     Song et al. 2024: remove, one at a time, the block whose removal raises the calibration loss least,
 *           re-measured after each removal (the loss comes from the caller: it runs the model).
 */

/** Σ_t cos(a[t], b[t]) and Σ_t arccos(cos(a[t], b[t])) over rows where mask = 1. a, b: [rows, D]. */
export function cosineSums(
  a: Float32Array,
  b: Float32Array,
  D: number,
  mask: ArrayLike<number>,
): { cos: number; angle: number; n: number } {
  let cos = 0;
  let angle = 0;
  let n = 0;
  for (let t = 0; t < mask.length; t++) {
    if (!mask[t]) continue;
    let ab = 0;
    let aa = 0;
    let bb = 0;
    const o = t * D;
    for (let k = 0; k < D; k++) {
      const x = a[o + k];
      const y = b[o + k];
      ab += x * y;
      aa += x * x;
      bb += y * y;
    }
    const c = aa > 0 && bb > 0 ? Math.max(-1, Math.min(1, ab / Math.sqrt(aa * bb))) : 1;
    cos += c;
    angle += Math.acos(c);
    n++;
  }
  return { cos, angle, n };
}

/** A ranking of candidate blocks: lower score = removed first. */
export interface DepthScores {
  /** per block (bi, sleb's first round) or per span start (angular); NaN where not a candidate */
  scores: number[];
  /** removed blocks, ascending */
  removed: number[];
}

/** The n blocks of least Block Influence among `allowed`. bi[ℓ] = 1 − mean cos(h_ℓ, h_{ℓ+1}). */
export function chooseByInfluence(bi: number[], n: number, allowed: (l: number) => boolean): DepthScores {
  const cand = bi.map((s, l) => ({ s, l })).filter((c) => allowed(c.l) && Number.isFinite(c.s));
  if (cand.length < n) throw new Error(`only ${cand.length} blocks may be removed, ${n} asked`);
  cand.sort((x, y) => x.s - y.s || x.l - y.l);
  return {
    scores: bi.map((s, l) => (allowed(l) ? s : Number.NaN)),
    removed: cand
      .slice(0, n)
      .map((c) => c.l)
      .sort((x, y) => x - y),
  };
}

/** The contiguous span [ℓ, ℓ+n) of least angular distance d[ℓ] whose blocks are all `allowed`. */
export function chooseSpan(d: number[], n: number, allowed: (l: number) => boolean): DepthScores {
  const ok = (l: number) => Array.from({ length: n }, (_, k) => l + k).every(allowed);
  const scores = d.map((s, l) => (ok(l) ? s : Number.NaN));
  let best = -1;
  scores.forEach((s, l) => {
    if (Number.isFinite(s) && (best < 0 || s < scores[best])) best = l;
  });
  if (best < 0) throw new Error(`no span of ${n} removable blocks`);
  return { scores, removed: Array.from({ length: n }, (_, k) => best + k) };
}

/** Maximal runs of consecutive removed blocks: [first, last] inclusive, ascending. */
export function removedRuns(removed: number[]): [number, number][] {
  const runs: [number, number][] = [];
  for (const l of [...removed].sort((a, b) => a - b)) {
    const last = runs[runs.length - 1];
    if (last && last[1] === l - 1) last[1] = l;
    else runs.push([l, l]);
  }
  return runs;
}
