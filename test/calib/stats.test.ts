/**
 * Streaming tap statistics (docs/methods.md §1) against plain float64 loops: TapAccumulator's moments and Gram of [X, 1]
 * (accumulated in ONNX graphs, chunk by chunk), CrossAccumulator's X̃_aᵀX̃_b, padding excluded through validRows,
 * and the mean / unbiased variance helpers.
 */
import { describe, expect, it } from "vitest";
import {
  CrossAccumulator,
  GRAM_F64_MAX_WIDTH,
  gramBlocks,
  mean,
  type StatKind,
  TapAccumulator,
  validRows,
  variance,
} from "../../src/calib/stats.ts";
import { Rng } from "../helpers/rng.ts";

/** rows [n, d] float32, per-channel offsets so that means are not ~0 */
function randRows(rng: Rng, n: number, d: number): Float32Array {
  const x = new Float32Array(n * d);
  for (let t = 0; t < n; t++)
    for (let j = 0; j < d; j++) x[t * d + j] = rng.normal() * (1 + j / 3) + (j % 3) - 1;
  return x;
}

function loopMoments(x: Float32Array, n: number, d: number) {
  const sum = new Float64Array(d);
  const sumsq = new Float64Array(d);
  for (let t = 0; t < n; t++)
    for (let j = 0; j < d; j++) {
      sum[j] += x[t * d + j];
      sumsq[j] += x[t * d + j] * x[t * d + j];
    }
  return { sum, sumsq };
}

/** X̃_aᵀ X̃_b with X̃ = [X, 1] */
function loopCross(a: Float32Array, da: number, b: Float32Array, db: number, n: number): Float64Array {
  const out = new Float64Array((da + 1) * (db + 1));
  for (let i = 0; i <= da; i++)
    for (let j = 0; j <= db; j++) {
      let s = 0;
      for (let t = 0; t < n; t++) s += (i === da ? 1 : a[t * da + i]) * (j === db ? 1 : b[t * db + j]);
      out[i * (db + 1) + j] = s;
    }
  return out;
}

function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  expect(got.length).toBe(want.length);
  let d = 0;
  let m = 0;
  for (let i = 0; i < want.length; i++) {
    d = Math.max(d, Math.abs(got[i] - want[i]));
    m = Math.max(m, Math.abs(want[i]));
  }
  return d / Math.max(m, 1e-300);
}

/** feed `x` in uneven pieces */
async function feed(
  acc: TapAccumulator,
  x: Float32Array,
  n: number,
  d: number,
  pieces: number[],
): Promise<void> {
  let at = 0;
  for (const p of pieces) {
    const k = Math.min(p, n - at);
    await acc.add(x.subarray(at * d, (at + k) * d), k);
    at += k;
  }
  if (at < n) await acc.add(x.subarray(at * d), n - at);
}

describe("mixed-precision Gram (f32 chunk products, f64 sums, lower block triangle)", () => {
  it("gramBlocks partitions [0, D) into ⌈D/1024⌉ contiguous near-equal blocks", () => {
    for (const D of [1, 7, 1024, 1025, 2049, 5633]) {
      const b = gramBlocks(D);
      expect(b.length).toBe(Math.ceil(D / 1024));
      let at = 0;
      for (const [s, w] of b) {
        expect(s).toBe(at);
        expect(w).toBeGreaterThan(0);
        at += w;
      }
      expect(at).toBe(D);
      expect(Math.max(...b.map((x) => x[1])) - Math.min(...b.map((x) => x[1]))).toBeLessThanOrEqual(1);
    }
  });

  // d + 1 = 1101 columns: two blocks, so the off-diagonal block and the mirroring are exercised
  const d = 1100;
  const n = 45;
  const x = randRows(new Rng(77), n, d);
  const want = loopCross(x, d, x, d, n);

  for (const chunkRows of [7, 1000]) {
    it(`equals the float64 loop to f32 accuracy and is exactly symmetric (chunkRows ${chunkRows})`, async () => {
      const acc = new TapAccumulator(d, new Set<StatKind>(["gram"]), chunkRows, "mixed");
      expect(acc.mixed).toBe(true);
      await feed(acc, x, n, d, [13, 2, 20]);
      const st = await acc.finish();
      const G = st.gram!;
      const D = d + 1;
      expect(relErr(G, want)).toBeLessThan(1e-5);
      expect(relErr(G, want)).toBeGreaterThan(0); // really the f32 path, not the f64 one
      for (let i = 0; i < D; i += 37) for (let j = 0; j < D; j += 41) expect(G[i * D + j]).toBe(G[j * D + i]);
      expect(G[D * D - 1]).toBe(n);
      expect(st.n).toBe(n);
    });
  }

  it('"auto" keeps f64 up to GRAM_F64_MAX_WIDTH channels and goes mixed above', () => {
    const g = new Set<StatKind>(["gram"]);
    expect(new TapAccumulator(GRAM_F64_MAX_WIDTH, g, 4, "auto").mixed).toBe(false);
    expect(new TapAccumulator(GRAM_F64_MAX_WIDTH + 1, g, 4, "auto").mixed).toBe(true);
    expect(new TapAccumulator(GRAM_F64_MAX_WIDTH + 1, g, 4, "f64").mixed).toBe(false);
    expect(new TapAccumulator(8, new Set<StatKind>(["moments"]), 4, "mixed").mixed).toBe(false);
  });
});

describe("TapAccumulator", () => {
  const d = 5;
  const n = 37;
  const x = randRows(new Rng(10), n, d);
  const want = loopMoments(x, n, d);
  const wantGram = loopCross(x, d, x, d, n);

  for (const chunkRows of [1, 3, 8, 1000]) {
    it(`moments (chunkRows ${chunkRows}, uneven pieces) equal the float64 loop`, async () => {
      const acc = new TapAccumulator(d, new Set<StatKind>(["moments"]), chunkRows);
      await feed(acc, x, n, d, [4, 1, 11, 2, 9]);
      const st = await acc.finish();
      expect(st.n).toBe(n);
      expect(st.d).toBe(d);
      expect(st.gram).toBeUndefined();
      expect(relErr(st.sum, want.sum)).toBeLessThan(1e-12);
      expect(relErr(st.sumsq, want.sumsq)).toBeLessThan(1e-12);
    });

    it(`Gram of [X, 1] (chunkRows ${chunkRows}) equals the float64 loop; sums come from its last column`, async () => {
      const acc = new TapAccumulator(d, new Set<StatKind>(["moments", "gram"]), chunkRows);
      await feed(acc, x, n, d, [7, 7, 3]);
      const st = await acc.finish();
      expect(st.n).toBe(n);
      const G = st.gram!;
      expect(G.length).toBe((d + 1) * (d + 1));
      expect(relErr(G, wantGram)).toBeLessThan(1e-12);
      expect(G[(d + 1) * (d + 1) - 1]).toBe(n); // 1ᵀ1
      // symmetric
      for (let i = 0; i <= d; i++)
        for (let j = 0; j <= d; j++) expect(G[i * (d + 1) + j]).toBe(G[j * (d + 1) + i]);
      expect(relErr(st.sum, want.sum)).toBeLessThan(1e-12);
      expect(relErr(st.sumsq, want.sumsq)).toBeLessThan(1e-12);
    });
  }

  it("a small chunk size and one big chunk give the same numbers", async () => {
    const one = new TapAccumulator(d, new Set<StatKind>(["gram"]));
    const many = new TapAccumulator(d, new Set<StatKind>(["gram"]), 2);
    await one.add(x, n);
    await many.add(x, n);
    const a = await one.finish();
    const b = await many.finish();
    expect(relErr(b.gram!, a.gram!)).toBeLessThan(1e-13);
    expect(b.n).toBe(a.n);
  });

  it("mean and unbiased variance match a two-pass float64 computation", async () => {
    const acc = new TapAccumulator(d, new Set<StatKind>(["moments"]), 4);
    await acc.add(x, n);
    const st = await acc.finish();
    const mu = mean(st);
    const v = variance(st);
    for (let j = 0; j < d; j++) {
      let s = 0;
      for (let t = 0; t < n; t++) s += x[t * d + j];
      const m = s / n;
      let q = 0;
      for (let t = 0; t < n; t++) q += (x[t * d + j] - m) ** 2;
      expect(Math.abs(mu[j] - m)).toBeLessThan(1e-12 * Math.max(1, Math.abs(m)));
      expect(Math.abs(v[j] - q / (n - 1)) / (q / (n - 1))).toBeLessThan(1e-10);
    }
  });

  it("no rows: n = 0, zero sums (and a zero Gram)", async () => {
    const acc = new TapAccumulator(3, new Set<StatKind>(["gram"]), 4);
    const st = await acc.finish();
    expect(st.n).toBe(0);
    expect(Array.from(st.sum)).toEqual([0, 0, 0]);
    expect(Array.from(st.gram!)).toEqual(new Array(16).fill(0));
  });

  it("padded rows are excluded through validRows (garbage in padding does not leak)", async () => {
    const rng = new Rng(11);
    const b = 3;
    const T = 6;
    const lens = [6, 2, 4];
    const mask = lens.flatMap((l) => Array.from({ length: T }, (_, t) => (t < l ? 1 : 0)));
    const x = randRows(rng, b * T, d);
    for (let r = 0; r < b * T; r++) if (!mask[r]) x.fill(1e6, r * d, (r + 1) * d);
    const { rows, n: nv } = validRows(x, d, mask);
    expect(nv).toBe(12);
    const kept = new Float32Array(nv * d);
    let k = 0;
    for (let r = 0; r < b * T; r++) if (mask[r]) kept.set(x.subarray(r * d, (r + 1) * d), k++ * d);
    expect(Array.from(rows)).toEqual(Array.from(kept));
    const acc = new TapAccumulator(d, new Set<StatKind>(["gram"]), 5);
    await acc.add(rows, nv);
    const st = await acc.finish();
    expect(st.n).toBe(nv);
    expect(relErr(st.gram!, loopCross(kept, d, kept, d, nv))).toBeLessThan(1e-12);
    expect(Math.max(...st.sumsq)).toBeLessThan(1e5);
  });

  it("validRows returns the input itself when nothing is padded", () => {
    const x = new Float32Array(12);
    const r = validRows(x, 3, [1, 1, 1, 1]);
    expect(r.rows).toBe(x);
    expect(r.n).toBe(4);
  });
});

describe("CrossAccumulator", () => {
  const rng = new Rng(12);
  const n = 29;
  const da = 4;
  const db = 6;
  const a = randRows(rng, n, da);
  const b = randRows(rng, n, db);
  const want = loopCross(a, da, b, db, n);

  for (const chunkRows of [1, 5, 1000]) {
    it(`X̃_aᵀX̃_b (chunkRows ${chunkRows}, uneven pieces) equals the float64 loop`, async () => {
      const acc = new CrossAccumulator(da, db, chunkRows);
      let at = 0;
      for (const p of [3, 10, 1, 15]) {
        await acc.add(a.subarray(at * da, (at + p) * da), b.subarray(at * db, (at + p) * db), p);
        at += p;
      }
      expect(at).toBe(n);
      const C = await acc.finish();
      expect(C.length).toBe((da + 1) * (db + 1));
      expect(relErr(C, want)).toBeLessThan(1e-12);
      expect(C[(da + 1) * (db + 1) - 1]).toBe(n);
    });
  }

  it("with both taps equal it is the Gram of TapAccumulator", async () => {
    const c = new CrossAccumulator(da, da, 7);
    await c.add(a, a, n);
    const t = new TapAccumulator(da, new Set<StatKind>(["gram"]), 3);
    await t.add(a, n);
    expect(relErr(await c.finish(), (await t.finish()).gram!)).toBeLessThan(1e-13);
  });
});
