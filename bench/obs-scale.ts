/**
 * OBS selection at scale (`npx tsx bench/obs-scale.ts [--sizes 704,1408,2816,5632] [--before-max 2816]
 * [--quality-d 1408] [--no-quality] [--merge]`): the time of one module's structured OBS path (`obsOrder`, unit = one FFN
 * channel of down_proj's input, path to keep = 1 as global allocation runs it) on a synthetic layer: X [2D, D]
 * Gaussian with per-channel scales, X̃ = [X, 1] (intercept), Gram X̃ᵀX̃ (ORT float64), W [2048, D] Gaussian, ridge
 * α = 0.01 (the default). "before": the one-channel-at-a-time implementation of commit 705f0ed (a verbatim copy
 * in test/criteria/obsV0.ts, `obsOrderV0`), run for D ≤ --before-max (it is O(D³) in JavaScript); "after": `obsOrder` with its
 * defaults (blocked above 1024 units, exact below). Where both ran with D ≤ 1024 the outputs (order, cost, score
 * as bytes) must be identical.
 *
 * Quality: at D = --quality-d with exactBelow forced to 256, keep = D/2: the reconstruction error of the kept set,
 * err(S) = tr(W̃_S [(H⁻¹)_SS]⁻¹ W̃_Sᵀ) for the removed set S (recomputed from the original H⁻¹ with an ORT solve,
 * independent of either path), blocked vs the exact greedy (exactBelow = Infinity), and the sum of each path's
 * recorded costs (equal to err(S) when the costs are the path's true increments).
 * Results: bench/results/obs-scale.{json,md}.
 */

import fs from "node:fs";
import path from "node:path";
import { type ObsInput, type ObsOrder, obsOrder } from "../src/criteria/obs.ts";
import { closeSharedOps, type Ops, sharedOps } from "../src/ops/index.ts";
import { obsOrderV0 } from "../test/criteria/obsV0.ts";
import { machineInfo, markdownTable, REPO_ROOT, writeResults } from "./lib.ts";

// ---------------------------------------------------------------------------------------------------------
// The benchmark

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : dflt;
}
const sizes = arg("--sizes", "704,1408,2816,5632").split(",").filter(Boolean).map(Number);
const beforeMax = Number(arg("--before-max", "2816"));
const qualityD = Number(arg("--quality-d", "1408"));
const qualityBelow = Number(arg("--quality-below", "256"));
const qualityKinds = arg("--quality-kinds", "iid,correlated").split(",");
const withQuality = !process.argv.includes("--no-quality");
const dOut = 2048;
const alpha = 0.01;

/** mulberry32 + Box–Muller, seeded */
function normals(n: number, seed: number): Float64Array {
  let s = seed >>> 0;
  const u = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = new Float64Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - u()));
    const th = 2 * Math.PI * u();
    out[i] = r * Math.cos(th);
    if (i + 1 < n) out[i + 1] = r * Math.sin(th);
  }
  return out;
}

/** `correlated`: X = Z F + 0.3·noise with r = D/8 latent factors (channels that can stand in for each other). */
async function layer(ops: Ops, D: number, correlated = false): Promise<Omit<ObsInput, "keep">> {
  const N = 2 * D;
  const z = normals(N * D, D);
  if (correlated) {
    const r = Math.max(1, D >> 3);
    const zf = await ops.gemm64(normals(N * r, 3 * D), normals(r * D, 5 * D), N, r, D); // [N, D]
    for (let k = 0; k < z.length; k++) z[k] = 0.3 * z[k] + zf[k] / Math.sqrt(r);
  }
  const Xt = new Float64Array(N * (D + 1)); // [N, D+1] = [X, 1]
  for (let t = 0; t < N; t++) {
    for (let j = 0; j < D; j++) Xt[t * (D + 1) + j] = z[t * D + j] * (0.5 + (j % 7) / 4) + 0.1 * (j % 3);
    Xt[t * (D + 1) + D] = 1;
  }
  const gram = await ops.gemm64(Xt, Xt, D + 1, N, D + 1, { transA: true }); // X̃ᵀX̃
  const W = Float32Array.from(normals(dOut * D, D + 1), (v) => v * 0.02);
  const b = Float32Array.from(normals(dOut, D + 2), (v) => v * 0.01);
  return { gram, d: D, W, dOut, b, unit: 1, intercept: true, alpha, ops, where: `bench D=${D}` };
}

function sameBytes(a: ObsOrder, b: ObsOrder): boolean {
  const eq = (x: ArrayBufferView, y: ArrayBufferView) =>
    Buffer.compare(
      Buffer.from(x.buffer, x.byteOffset, x.byteLength),
      Buffer.from(y.buffer, y.byteOffset, y.byteLength),
    ) === 0;
  return eq(a.order, b.order) && eq(a.cost, b.cost) && eq(a.score, b.score) && a.alphaUsed === b.alphaUsed;
}

async function seconds<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = process.hrtime.bigint();
  const r = await fn();
  return [r, Number(process.hrtime.bigint() - t0) / 1e9];
}

/** err(S) = tr(W̃_S [(H⁻¹)_SS]⁻¹ W̃_Sᵀ) for removed channels S, from the original H⁻¹ (ORT solve). */
async function errOf(x: Omit<ObsInput, "keep">, removed: ArrayLike<number>): Promise<number> {
  const { ops, d } = x;
  const D = d + 1;
  const H = x.gram.slice();
  let diag = 0;
  for (let j = 0; j < d; j++) diag += H[j * D + j];
  for (let j = 0; j < d; j++) H[j * D + j] += (x.alpha * diag) / d;
  const Linv = await ops.choleskyInverse(H, D);
  if (!Linv) throw new Error("bench: H is not positive definite");
  const Hinv = await ops.gemm64(Linv, Linv, D, D, D, { transA: true });
  const S = Array.from(removed);
  const s = S.length;
  const M = new Float64Array(s * s);
  for (let i = 0; i < s; i++) for (let j = 0; j < s; j++) M[i * s + j] = Hinv[S[i] * D + S[j]];
  const WsT = new Float64Array(s * x.dOut); // [s, dOut]
  for (let i = 0; i < s; i++) for (let o = 0; o < x.dOut; o++) WsT[i * x.dOut + o] = x.W[o * d + S[i]];
  const Z = await ops.spdSolve(M, s, WsT, x.dOut);
  if (!Z) throw new Error("bench: (H⁻¹)_SS is not positive definite");
  let e = 0;
  for (let k = 0; k < Z.length; k++) e += Z[k] * WsT[k];
  return e;
}

// --merge: keep the rows (and the quality table, under --no-quality) of bench/results/obs-scale.json for sizes
// this run does not measure (e.g. a separate long `--sizes 5632 --before-max 5632 --no-quality --merge` run)
const merge = process.argv.includes("--merge");
const cmd = ["npx tsx bench/obs-scale.ts", ...process.argv.slice(2).map((a) => a || '""')].join(" ");
const previous = (() => {
  const file = path.join(REPO_ROOT, "bench", "results", "obs-scale.json");
  if (!merge || !fs.existsSync(file)) return null;
  return JSON.parse(fs.readFileSync(file, "utf8")) as {
    rows: Record<string, unknown>[];
    quality: Record<string, number | string>[];
  };
})();

const ops = sharedOps();
const rows: Record<string, unknown>[] = (previous?.rows ?? []).filter((r) => !sizes.includes(r.D as number));
const fmt = (v: number | null, digits = 1) => (v === null ? "—" : v.toFixed(digits));
for (const D of sizes) {
  const x = await layer(ops, D);
  let before: number | null = null;
  let legacy: ObsOrder | null = null;
  if (D <= beforeMax) [legacy, before] = await seconds(() => obsOrderV0({ ...x, keep: 1 }));
  const [after, tAfter] = await seconds(() => obsOrder({ ...x, keep: 1 }));
  const identical = legacy ? sameBytes(legacy, after) : null;
  const row = {
    command: cmd,
    D,
    beforeS: before,
    afterS: tAfter,
    speedup: before ? before / tAfter : null,
    identical,
  };
  rows.push(row);
  console.log(JSON.stringify(row));
}
rows.sort((p, q) => (p.D as number) - (q.D as number));

const qKey = (q: Record<string, number | string>) => `${q.kind}:${q.D}:${q.exactBelow}`;
const quality: Record<string, number | string>[] = (previous?.quality ?? []).filter(
  (q) => !withQuality || !qualityKinds.some((kind) => qKey(q) === `${kind}:${qualityD}:${qualityBelow}`),
);
if (withQuality) {
  for (const kind of qualityKinds) {
    const D = qualityD;
    const x = await layer(ops, D, kind === "correlated");
    const keep = D / 2;
    const [exact, tExact] = await seconds(() =>
      obsOrder({ ...x, keep, exactBelow: Number.POSITIVE_INFINITY }),
    );
    const [blocked, tBlocked] = await seconds(() => obsOrder({ ...x, keep, exactBelow: qualityBelow }));
    const sum = (r: ObsOrder) => Array.from(r.order).reduce((s, k) => s + r.cost[k], 0);
    const errExact = await errOf(x, exact.order);
    const errBlocked = await errOf(x, blocked.order);
    const kept = (r: ObsOrder) => {
      const gone = new Set(r.order);
      return Array.from({ length: D }, (_, k) => k).filter((k) => !gone.has(k));
    };
    const ke = new Set(kept(exact));
    const overlap = kept(blocked).filter((k) => ke.has(k)).length;
    const q = {
      command: cmd,
      kind,
      D,
      keep,
      exactBelow: qualityBelow,
      exactS: tExact,
      blockedS: tBlocked,
      errExact,
      errBlocked,
      ratio: errBlocked / errExact,
      costSumExact: sum(exact),
      costSumBlocked: sum(blocked),
      keptOverlap: overlap,
    };
    quality.push(q);
    console.log(JSON.stringify(q));
  }
}
closeSharedOps();

const info = machineInfo();
let md = `# OBS selection at scale\n\n\`${cmd}\`${previous ? " (merged into the previous results)" : ""} (${info.date}, ${info.cpu}, ${info.cores} cores,`;
md += ` Node ${info.node}, ORT ${info.onnxruntime}). One module's structured OBS path, unit = 1 FFN channel, keep = 1,`;
md += ` d_out ${dOut}, α ${alpha}; Gram of [X, 1], X [2D, D] Gaussian. Before: the one-at-a-time implementation`;
md += " (commit 705f0ed); after: blocked above 1024 active units (⌈active/32⌉ per step), exact below.\n\n";
const commands = [...new Set([...rows, ...quality].map((r) => String(r.command ?? cmd)))];
if (commands.length > 1)
  md += `Measured by ${commands.map((c) => `\`${c}\``).join(", ")} (see the JSON per row).\n\n`;
md += markdownTable(
  ["D", "before (s)", "after (s)", "speedup", "identical output"],
  rows.map((r) => [
    r.D as number,
    fmt(r.beforeS as number | null),
    fmt(r.afterS as number),
    r.speedup === null ? "—" : `${(r.speedup as number).toFixed(1)}×`,
    r.identical === null ? "—" : r.identical ? "yes (bytes)" : "no",
  ]),
  [true, true, true, true, false],
);
if (quality.length > 0) {
  md +=
    "\n\nReconstruction error of the kept set at keep = D/2, blocked (exactBelow as given, ⌈active/32⌉ per step)";
  md +=
    " vs the exact greedy (exactBelow = ∞): err(S) = tr(W̃_S [(H⁻¹)_SS]⁻¹ W̃_Sᵀ) from the original H⁻¹; X iid";
  md += " as above, or correlated (X = Z F + 0.3·noise, D/8 latent factors).\n\n";
  md += markdownTable(
    ["X", "D", "path", "time (s)", "err(S)", "Σ recorded costs", "blocked / exact", "kept sets share"],
    quality.flatMap((qq) => {
      const q = qq as Record<string, number>;
      return [
        [
          qq.kind as string,
          q.D,
          "exact",
          q.exactS.toFixed(1),
          q.errExact.toPrecision(7),
          q.costSumExact.toPrecision(7),
          "",
          "",
        ],
        [
          qq.kind as string,
          q.D,
          `blocked (exactBelow ${q.exactBelow})`,
          q.blockedS.toFixed(1),
          q.errBlocked.toPrecision(7),
          q.costSumBlocked.toPrecision(7),
          q.ratio.toFixed(5),
          `${q.keptOverlap} / ${q.keep}`,
        ],
      ];
    }),
    [false, true, false, true, true, true, true, true],
  );
  md += "\n";
}
const out = writeResults("obs-scale", { machine: info, dOut, alpha, rows, quality }, md);
console.log(md);
console.log(`wrote ${out.md}`);
