/**
 * GPTQ and RTN kernels (src/quant) against the float64 reference (test/quant/reference.ts) on tiny seeded
 * layers: equal integers, scales and zero points on well-conditioned inputs, output error no worse than the
 * reference's, GPTQ better than RTN on every layer, and bad settings refused before any work.
 */
import { afterAll, describe, expect, it } from "vitest";
import { PareError } from "../../src/errors.ts";
import { closeSharedOps, sharedOps } from "../../src/ops/index.ts";
import { actOrderPermutation, gptqQuantize, upperCholeskyOfInverse } from "../../src/quant/gptq.ts";
import { roundHalfEven } from "../../src/quant/grid.ts";
import { dequantize, type QuantizedLinear } from "../../src/quant/linear.ts";
import { rtnQuantize } from "../../src/quant/rtn.ts";
import { checkQuantSettings, type QuantSettings } from "../../src/quant/settings.ts";
import { Rng } from "../helpers/rng.ts";
import { gptqRef, outputError, rtnRef } from "./reference.ts";

afterAll(() => closeSharedOps());

/** A seeded layer: W [out, in] and H = XᵀX of correlated inputs X [n, in] (well conditioned). */
function layer(seed: number, out: number, cols: number, n = 4 * cols) {
  const rng = new Rng(seed);
  const W = Array.from({ length: out }, () => Array.from({ length: cols }, () => 0.1 * rng.normal()));
  // X = Z M with M = I + 0.3·random: correlated channels, channel scales that differ
  const M = Array.from({ length: cols }, (_, i) =>
    Array.from({ length: cols }, (_, j) => (i === j ? 1 : 0) + (0.3 * rng.normal()) / Math.sqrt(cols)),
  );
  const scale = Array.from({ length: cols }, () => 0.5 + rng.uniform());
  const X = Array.from({ length: n }, () => {
    const z = Array.from({ length: cols }, () => rng.normal());
    return M[0].map((_, j) => scale[j] * z.reduce((a, zi, i) => a + zi * M[i][j], 0));
  });
  const H = Array.from({ length: cols }, () => new Array(cols).fill(0));
  for (const x of X) for (let a = 0; a < cols; a++) for (let b = 0; b < cols; b++) H[a][b] += x[a] * x[b];
  return { W, H, Wf: Float32Array.from(W.flat()), Hf: Float64Array.from(H.flat()) };
}

function rowsOf(a: ArrayLike<number>, rows: number, cols: number): number[][] {
  return Array.from({ length: rows }, (_, j) => Array.from({ length: cols }, (_, c) => a[j * cols + c]));
}

function expectEqualToRef(
  ql: QuantizedLinear,
  ref: { q: number[][]; scales: number[][]; zeros: number[][] },
) {
  expect(rowsOf(ql.q, ql.rows, ql.cols)).toEqual(ref.q);
  const groups = ql.cols / ql.groupSize;
  expect(rowsOf(ql.scales, groups, ql.rows)).toEqual(ref.scales);
  expect(rowsOf(ql.zeros, groups, ql.rows)).toEqual(ref.zeros);
}

const CASES: { seed: number; out: number; cols: number; s: Partial<QuantSettings> }[] = [
  { seed: 1, out: 16, cols: 64, s: { groupSize: 32, sym: true, actOrder: false } },
  { seed: 2, out: 16, cols: 64, s: { groupSize: 32, sym: false, actOrder: false } },
  { seed: 3, out: 8, cols: 128, s: { groupSize: 64, sym: true, blockSize: 32, actOrder: false } }, // block rounded up to 64
  { seed: 4, out: 24, cols: 96, s: { groupSize: 32, sym: false, blockSize: 64, actOrder: false } }, // a partial last block
  { seed: 5, out: 8, cols: 64, s: { groupSize: 16, bits: 8, sym: true, actOrder: false } },
  { seed: 6, out: 16, cols: 128, s: { groupSize: 128, sym: true, actOrder: false } },
  // act-order with static groups
  { seed: 11, out: 16, cols: 64, s: { groupSize: 32, sym: true, actOrder: true } },
  { seed: 12, out: 16, cols: 64, s: { groupSize: 32, sym: false, actOrder: true } },
  { seed: 13, out: 8, cols: 128, s: { groupSize: 32, sym: true, blockSize: 64, actOrder: true } },
  { seed: 14, out: 24, cols: 96, s: { groupSize: 32, sym: false, blockSize: 64, actOrder: true } },
  { seed: 15, out: 8, cols: 64, s: { groupSize: 16, bits: 8, sym: true, actOrder: true } },
];

describe("GPTQ against the float64 reference", () => {
  for (const { seed, out, cols, s } of CASES) {
    it(`seed ${seed}: [${out}, ${cols}] ${JSON.stringify(s)}`, async () => {
      const set = checkQuantSettings(s);
      const { W, H, Wf, Hf } = layer(seed, out, cols);
      const Wd = rowsOf(Wf, out, cols); // the float32 weights the kernel sees
      const r = await gptqQuantize(sharedOps(), "w", Wf, out, cols, Hf, set);
      const ref = gptqRef(Wd, H, set.groupSize, set.bits, set.sym, 0.01, set.actOrder);
      expect(r.retries).toBe(0);
      expect(r.damp).toBe(0.01);
      expectEqualToRef(r.linear, ref);
      const deq = rowsOf(dequantize(r.linear), out, cols);
      const err = outputError(Wd, deq, H);
      expect(err).toBeLessThanOrEqual(outputError(Wd, ref.deq, H) * (1 + 1e-6));
      // RTN: the reference's integers, and a larger output error than GPTQ's
      const rtn = rtnQuantize("w", Wf, out, cols, set);
      const rref = rtnRef(Wd, set.groupSize, set.bits, set.sym);
      expectEqualToRef(rtn, rref);
      const rtnErr = outputError(Wd, rowsOf(dequantize(rtn), out, cols), H);
      expect(err).toBeLessThan(rtnErr);
      expect(W.length).toBe(out);
    });
  }

  it("the lazy block size does not change the result", async () => {
    const { Wf, Hf } = layer(7, 16, 128);
    const a = await gptqQuantize(
      sharedOps(),
      "w",
      Wf,
      16,
      128,
      Hf,
      checkQuantSettings({ groupSize: 32, blockSize: 32 }),
    );
    const b = await gptqQuantize(
      sharedOps(),
      "w",
      Wf,
      16,
      128,
      Hf,
      checkQuantSettings({ groupSize: 32, blockSize: 128 }),
    );
    expect(Array.from(a.linear.q)).toEqual(Array.from(b.linear.q));
    for (let k = 0; k < a.linear.scales.length; k++) expect(a.linear.scales[k]).toBe(b.linear.scales[k]);
  });

  it("act-order: decreasing diag(H), ties by index; static grids are RTN's; integers back in natural columns", async () => {
    const H = Float64Array.from([3, 0, 0, 0, 0, 5, 0, 0, 0, 0, 3, 0, 0, 0, 0, 7]);
    expect(Array.from(actOrderPermutation(H, 4))).toEqual([3, 1, 0, 2]);
    const { Wf, H: Hr, Hf } = layer(16, 16, 64);
    const set = checkQuantSettings({ groupSize: 32, actOrder: true });
    const r = await gptqQuantize(sharedOps(), "w", Wf, 16, 64, Hf, set);
    // the grids are fixed before the pass: RTN's grids of the same groups
    const rtn = rtnQuantize("w", Wf, 16, 64, set);
    expect(Array.from(r.linear.scales)).toEqual(Array.from(rtn.scales));
    expect(Array.from(r.linear.zeros)).toEqual(Array.from(rtn.zeros));
    // and the order matters: not the natural-order result
    const nat = await gptqQuantize(
      sharedOps(),
      "w",
      Wf,
      16,
      64,
      Hf,
      checkQuantSettings({ groupSize: 32, actOrder: false }),
    );
    expect(Array.from(r.linear.q)).not.toEqual(Array.from(nat.linear.q));
    // a dead channel stays zero under act-order too (it sorts with diag 1)
    for (let a = 0; a < 64; a++) {
      Hr[7][a] = 0;
      Hr[a][7] = 0;
    }
    const d = await gptqQuantize(sharedOps(), "w", Wf, 16, 64, Float64Array.from(Hr.flat()), set);
    expect(d.dead).toBe(1);
    expectEqualToRef(d.linear, gptqRef(rowsOf(Wf, 16, 64), Hr, 32, 4, true, 0.01, true));
    for (let j = 0; j < 16; j++) expect(dequantize(d.linear)[j * 64 + 7]).toBe(0);
  });

  it("act-order beats natural order when a few input channels carry most of the energy", async () => {
    // channels 40..47 scaled ×8 (outlier features): natural order reaches them last, act-order first
    let wins = 0;
    for (const seed of [21, 22, 23, 24]) {
      const { W, H } = layer(seed, 16, 64);
      const Hs = H.map((row, a) =>
        row.map((v, b) => v * (a >= 40 && a < 48 ? 8 : 1) * (b >= 40 && b < 48 ? 8 : 1)),
      );
      const Wf = Float32Array.from(W.flat());
      const Wd = rowsOf(Wf, 16, 64);
      const Hf = Float64Array.from(Hs.flat());
      const err = async (actOrder: boolean) => {
        const r = await gptqQuantize(
          sharedOps(),
          "w",
          Wf,
          16,
          64,
          Hf,
          checkQuantSettings({ groupSize: 32, actOrder }),
        );
        return outputError(Wd, rowsOf(dequantize(r.linear), 16, 64), Hs);
      };
      if ((await err(true)) < (await err(false))) wins++;
    }
    expect(wins).toBe(4);
  });

  it("dequantized values lie on the f16 grid and the integers in range", async () => {
    const { Wf, Hf } = layer(8, 16, 64);
    const r = await gptqQuantize(
      sharedOps(),
      "w",
      Wf,
      16,
      64,
      Hf,
      checkQuantSettings({ groupSize: 32, sym: false }),
    );
    expect(Math.max(...r.linear.q)).toBeLessThanOrEqual(15);
    for (const s of r.linear.scales) expect(Math.fround(s)).toBe(s);
    expect(Math.max(...r.linear.zeros)).toBeLessThanOrEqual(15);
  });

  it("dead input channels are quantized as zeros", async () => {
    const { Wf, H } = layer(9, 8, 64);
    for (let a = 0; a < 64; a++) {
      H[5][a] = 0;
      H[a][5] = 0;
    }
    const r = await gptqQuantize(
      sharedOps(),
      "w",
      Wf,
      8,
      64,
      Float64Array.from(H.flat()),
      checkQuantSettings({ groupSize: 32, actOrder: false }),
    );
    expect(r.dead).toBe(1);
    const deq = dequantize(r.linear);
    for (let j = 0; j < 8; j++) expect(deq[j * 64 + 5]).toBe(0);
    const ref = gptqRef(rowsOf(Wf, 8, 64), H, 32, 4, true);
    expectEqualToRef(r.linear, ref);
  });

  it("an indefinite Hessian is retried with more damping (and says so), never NaN", async () => {
    const cols = 32;
    const { Wf, H } = layer(10, 8, cols, cols / 2); // fewer samples than channels: H is singular
    const meanDiag = H.reduce((a, r, i) => a + r[i], 0) / cols;
    // shift the spectrum down so that λ = 1% · mean(diag) is not enough but 10% is
    const Hs = H.map((r, i) => r.map((v, j) => (i === j ? v - 0.05 * meanDiag : v)));
    const Hf = Float64Array.from(Hs.flat());
    // H − 0.05·m·I has negative eigenvalues (−0.05·m): its Cholesky fails
    expect(await upperCholeskyOfInverse(sharedOps(), Hf, cols)).toBeNull();
    for (const actOrder of [false, true]) {
      const set = checkQuantSettings({ groupSize: 32, actOrder });
      const r = await gptqQuantize(sharedOps(), "w", Wf, 8, cols, Hf, set);
      expect(r.retries).toBeGreaterThanOrEqual(1);
      expect(r.damp).toBeCloseTo(0.01 * 10 ** r.retries, 12);
      const ref = gptqRef(rowsOf(Wf, 8, cols), Hs, 32, 4, true, 0.01, actOrder);
      expect(ref.damp).toBeCloseTo(r.damp, 12);
      expectEqualToRef(r.linear, ref);
      for (const v of dequantize(r.linear)) expect(Number.isFinite(v)).toBe(true);
    }
  });

  it("a Hessian that stays singular is a PareError, not NaN weights", async () => {
    const Hneg = new Float64Array(32 * 32);
    for (let i = 0; i < 32; i++) Hneg[i * 32 + i] = i === 0 ? -1e9 : 1;
    const W = new Float32Array(8 * 32).fill(0.1);
    const p = gptqQuantize(sharedOps(), "w", W, 8, 32, Hneg, checkQuantSettings({ groupSize: 32 }));
    await expect(p).rejects.toMatchObject({ code: "E_NUMERIC" });
  });
});

describe("settings", () => {
  it("bad bits, group sizes and methods fail with a PareError", () => {
    for (const bad of [
      { bits: 3 },
      { bits: 2 },
      { groupSize: 48 },
      { groupSize: 0 },
      { method: "awq" },
      { actOrder: "yes" },
    ] as const) {
      expect(() => checkQuantSettings(bad as Partial<QuantSettings>)).toThrowError(PareError);
    }
    expect(checkQuantSettings({})).toMatchObject({
      bits: 4,
      groupSize: 128,
      sym: true,
      method: "gptq",
      actOrder: true,
    });
  });

  it("a group size that does not divide the input width fails before any work", async () => {
    const s = checkQuantSettings({ groupSize: 64 });
    const W = new Float32Array(8 * 96);
    expect(() => rtnQuantize("model.layers.0.mlp.up_proj.weight", W, 8, 96, s)).toThrowError(
      /does not divide/,
    );
    await expect(
      gptqQuantize(sharedOps(), "x", W, 8, 96, new Float64Array(96 * 96), s),
    ).rejects.toMatchObject({
      code: "E_CONFIG_MISMATCH",
    });
    // output width not a multiple of 8 (qzeros packing)
    expect(() => rtnQuantize("x", new Float32Array(12 * 64), 12, 64, s)).toThrowError(/multiple of 8/);
  });

  it("round half to even, as torch.round", () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, 2.4, 2.6, -2.6].map(roundHalfEven)).toEqual([
      0, 2, 2, -0, -2, 2, 3, -3,
    ]);
  });
});
