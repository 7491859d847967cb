/**
 * Every criterion in the registry against a direct float64 implementation of its docs/methods.md §2 formula (statistics
 * computed two-pass from the raw rows), and the head / KV-group aggregation with grouped-query attention.
 */
import { describe, expect, it } from "vitest";
import type { TapStats } from "../../src/calib/stats.ts";
import { attentionUnitScores, CRITERIA, columnNorms } from "../../src/criteria/index.ts";
import { Rng } from "../helpers/rng.ts";
import {
  concatRows,
  type RefCriterion,
  refChannelScores,
  refGroupScores,
  refStats,
  SQUARES_ATTENTION,
} from "../reference/pipeline.ts";

const dOut = 7;
const dIn = 12;
const n = 40;
const rng = new Rng(20);
const W = rng.randn(dOut * dIn, 0.5);
// channels with different scales and offsets (offsets make var ≠ mean square)
const X = new Float64Array(n * dIn);
for (let t = 0; t < n; t++)
  for (let j = 0; j < dIn; j++) X[t * dIn + j] = Math.fround(rng.normal() * (0.2 + j / 4) + (j % 4) - 1.5);
const ref = refStats(concatRows([X], dIn));

/** pare's TapStats from a plain loop (count, Σx, Σx²) */
const stats: TapStats = (() => {
  const sum = new Float64Array(dIn);
  const sumsq = new Float64Array(dIn);
  for (let t = 0; t < n; t++)
    for (let j = 0; j < dIn; j++) {
      sum[j] += X[t * dIn + j];
      sumsq[j] += X[t * dIn + j] ** 2;
    }
  return { d: dIn, n, sum, sumsq };
})();

function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < want.length; i++) {
    d = Math.max(d, Math.abs(got[i] - want[i]));
    m = Math.max(m, Math.abs(want[i]));
  }
  return d / m;
}

describe("criteria registry", () => {
  it("holds the docs/methods.md §2 criteria and structured OBS, each under its own name and citing a paper", () => {
    expect(Object.keys(CRITERIA).sort()).toEqual(
      ["flap-ifv", "flap-wifn", "flap-wifv", "magnitude-l1", "magnitude-l2", "obs", "wanda-sp"].sort(),
    );
    // obs orders whole units (test/criteria/obs.test.ts); it needs the Gram
    expect(CRITERIA.obs.structured).toBe(true);
    expect(CRITERIA.obs.needs).toEqual(["gram"]);
    for (const [k, c] of Object.entries(CRITERIA)) {
      expect(c.name).toBe(k);
      expect(c.paper.length).toBeGreaterThan(5);
    }
  });

  const channelCriteria = (Object.keys(CRITERIA) as (keyof typeof CRITERIA)[]).filter((k) => k !== "obs");
  for (const name of channelCriteria) {
    it(`${name} equals the direct formula`, () => {
      const c = CRITERIA[name as Exclude<keyof typeof CRITERIA, "obs">];
      const want = refChannelScores(name as RefCriterion, W, dOut, dIn, ref);
      const got = c.channelScores(W, dOut, dIn, stats);
      expect(got.length).toBe(dIn);
      expect(relErr(got, want)).toBeLessThan(1e-10);
      // declared needs: weights-only criteria need nothing and ignore statistics
      const usesStats = !name.startsWith("magnitude");
      expect(c.needs.length > 0).toBe(usesStats);
      if (usesStats) expect(() => c.channelScores(W, dOut, dIn, undefined)).toThrow();
      else expect(Array.from(c.channelScores(W, dOut, dIn, undefined))).toEqual(Array.from(got));
      expect(c.squareAttention).toBe(SQUARES_ATTENTION[name as RefCriterion]);
    });
  }

  it("flap-wifv = flap-ifv · ‖W_{:,j}‖², wanda-sp = flap-wifn · √n (two readings of the same formulas)", () => {
    const ifv = CRITERIA["flap-ifv"].channelScores(W, dOut, dIn, stats);
    const wifv = CRITERIA["flap-wifv"].channelScores(W, dOut, dIn, stats);
    const wanda = CRITERIA["wanda-sp"].channelScores(W, dOut, dIn, stats);
    const wifn = CRITERIA["flap-wifn"].channelScores(W, dOut, dIn, stats);
    const l2 = columnNorms(W, dOut, dIn, 2);
    for (let j = 0; j < dIn; j++) {
      expect(wifv[j]).toBeCloseTo(ifv[j] * l2[j], 12);
      expect(wanda[j] / (wifn[j] * Math.sqrt(n))).toBeCloseTo(1, 12);
    }
  });

  it("columnNorms: Σ_i |W_ij| and Σ_i W_ij²", () => {
    const l1 = columnNorms(W, dOut, dIn, 1);
    const l2 = columnNorms(W, dOut, dIn, 2);
    for (let j = 0; j < dIn; j++) {
      let a = 0;
      let b = 0;
      for (let i = 0; i < dOut; i++) {
        a += Math.abs(W[i * dIn + j]);
        b += W[i * dIn + j] ** 2;
      }
      expect(l1[j]).toBeCloseTo(a, 12);
      expect(l2[j]).toBeCloseTo(b, 12);
    }
  });
});

describe("attentionUnitScores", () => {
  const hd = 3;
  const ch = Float64Array.from({ length: 6 * hd }, (_, i) => Math.sin(i + 1) * (1 + i / 5));

  for (const [nH, nKv] of [
    [6, 6],
    [6, 3],
    [6, 2],
    [6, 1],
  ]) {
    for (const square of [false, true]) {
      it(`${nH} heads / ${nKv} KV groups, ${square ? "squared" : "plain"} channel scores: groups sum their heads`, () => {
        const got = attentionUnitScores(ch, nH, nKv, hd, square);
        expect(got.length).toBe(nKv);
        const want = refGroupScores(ch, nH, nKv, hd, square);
        expect(relErr(got, want)).toBeLessThan(1e-14);
        // explicitly: group k covers heads k·g … k·g+g−1, i.e. channels [k·g·hd, (k+1)·g·hd)
        const g = nH / nKv;
        for (let k = 0; k < nKv; k++) {
          let s = 0;
          for (let j = k * g * hd; j < (k + 1) * g * hd; j++) s += square ? ch[j] * ch[j] : ch[j];
          expect(got[k]).toBeCloseTo(s, 12);
        }
      });
    }
  }
});
