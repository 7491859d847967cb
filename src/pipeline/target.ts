/**
 * --target-speedup X: choose the depth and the width ratio that reach a measured speedup of one workload on
 * this machine, at the least calibration loss (docs/algorithms.md §Depth + width to a target).
 *
 *   latency   for a candidate (depth n, uniform width ratio r), a model of exactly the shapes such a prune
 *             gives (zero weights: ONNX Runtime's time does not depend on the values) runs the workload
 *             interleaved with the dense shapes, as `pare bench` measures; the speedups are cached per machine,
 *             ONNX Runtime version, model shape and workload (a latency table under ~/.cache/pare)
 *   plan      for each depth n = 0, 1, …: the least r whose speedup reaches X (bisection), until removing
 *             blocks alone reaches X
 *   choose    each candidate is pruned (the user's recipe with --depth n --ratio r and uniform allocation, so
 *             that its shapes are the measured ones); the one with the least
 *             loss on held-out calibration windows (drawn with seed + 1) becomes the output
 */
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { uniformCounts } from "../allocate/allocate.ts";
import { type LoadedModel, loadModel } from "../arch/load.ts";
import type { Model, WeightSource } from "../arch/model.ts";
import { decoderCalibrationFromText } from "../calib/sampling.ts";
import { PareError } from "../errors.ts";
import { DEFAULT_WORKLOAD, type DecoderWorkload, decoderWorkloadSeconds } from "../eval/latency.ts";
import { Runner } from "../eval/runner.ts";
import { trackTemporary, untrackTemporary } from "../export/atomic.ts";
import { readCalibrationText } from "../io/datasets.ts";
import { fsyncDir, fsyncTree } from "../io/durable.ts";
import { acquireLock } from "../io/lock.ts";
import { loadTokenizer } from "../io/tokenizer.ts";
import { runtimeVersions } from "../runtime/ort.ts";
import { depthOverlay, depthView } from "../surgery/depth.ts";
import { cutLayer, keptHeads, withLayers } from "../surgery/surgery.ts";
import { checkDepthSettings } from "./depth.ts";
import { planUnits } from "./prepare.ts";
import type { Recipe } from "./recipe.ts";
import type { PruneEvent, PruneOptions, PruneReport, TargetReport } from "./types.ts";

/** Measured speedup (dense time / candidate time) of a candidate (depth n, width ratio r). */
export type SpeedupProbe = (depth: number, ratio: number) => Promise<number>;

export interface Candidate {
  depth: number;
  ratio: number;
  predictedSpeedup: number;
}

const round4 = (x: number) => Math.round(x * 1e4) / 1e4;
/** the largest width ratio considered */
export const MAX_RATIO = 0.9;

/**
 * For each depth n (up to `maxDepth`), the least width ratio whose measured speedup reaches `x` (bisection in
 * 6 steps); stops at the first depth that reaches x by itself (more blocks would only overshoot).
 */
export async function planCandidates(x: number, maxDepth: number, probe: SpeedupProbe): Promise<Candidate[]> {
  const out: Candidate[] = [];
  for (let n = 0; n <= maxDepth; n++) {
    const s0 = n === 0 ? 1 : await probe(n, 0);
    if (s0 >= x) {
      if (s0 <= 1.1 * x || out.length === 0) out.push({ depth: n, ratio: 0, predictedSpeedup: s0 });
      break;
    }
    const sMax = await probe(n, MAX_RATIO);
    if (sMax < x) continue;
    let lo = 0;
    let hi = MAX_RATIO;
    let sHi = sMax;
    for (let it = 0; it < 6; it++) {
      const mid = round4((lo + hi) / 2);
      const s = await probe(n, mid);
      if (s >= x) {
        hi = mid;
        sHi = s;
      } else lo = mid;
    }
    out.push({ depth: n, ratio: hi, predictedSpeedup: sHi });
  }
  return out;
}

/** Zero weights of the input's shapes (allocated when read). */
function zeroWeights(w: WeightSource): WeightSource {
  return {
    names: () => w.names(),
    has: (n) => w.has(n),
    shape: (n) => w.shape(n),
    get: (n) => new Float32Array(w.shape(n).reduce((a, b) => a * b, 1)),
  };
}

/** A model of the shapes `--depth n --ratio r --allocation uniform` gives (zero weights). */
export function shapeModel(input: Model, depth: number, ratio: number, recipe: Recipe): Model {
  const base: Model = { ...input, weights: zeroWeights(input.weights) };
  const kept = Array.from({ length: input.dims.nLayers - depth }, (_, j) => j);
  const overlay = depthOverlay(base, kept);
  let m = depthView(base, kept, overlay);
  if (ratio === 0) return m;
  const counts = uniformCounts(planUnits(m, { ...recipe, skipLayers: [] }), ratio);
  const D = m.dims.hidden;
  const hd = m.dims.headDim;
  const range = (k: number) => Int32Array.from({ length: k }, (_, j) => j);
  for (let i = 0; i < m.dims.nLayers; i++) {
    const L = m.dims.layers[i];
    const keepGroups = range(counts[2 * i]);
    const keepChannels = range(counts[2 * i + 1]);
    const heads = keptHeads(keepGroups, L.nHeads, L.nKv).length;
    const dims = m.dims.layers.slice();
    dims[i] = cutLayer(m, overlay, i, {
      keepGroups,
      attn: { W: new Float32Array(D * heads * hd), retries: 0 },
      keepChannels,
      mlp: { W: new Float32Array(D * keepChannels.length), retries: 0 },
    });
    m = withLayers(m, overlay, dims);
  }
  return m;
}

function cacheDir(): string {
  return process.env.PARE_CACHE_DIR ?? path.join(os.homedir(), ".cache", "pare");
}

/** The measured probe: shapes timed against the dense shapes, cached in a latency table per machine and shape. */
export function measuredProbe(
  input: Model,
  recipe: Recipe,
  workload: DecoderWorkload,
): { probe: SpeedupProbe; file: string; stats: { measured: number; cached: number } } {
  const d = input.dims;
  const key = {
    cpu: os.cpus()[0]?.model ?? "unknown",
    cores: os.cpus().length,
    threads: recipe.threads ?? null,
    versions: runtimeVersions(),
    family: input.spec.family,
    shape: {
      hidden: d.hidden,
      headDim: d.headDim,
      vocab: d.vocab,
      layers: d.layers,
      layerTypes: d.layerTypes,
    },
    workload,
  };
  const hash = crypto.createHash("sha256").update(JSON.stringify(key)).digest("hex").slice(0, 16);
  const file = path.join(cacheDir(), `latency-${hash}.json`);
  let table: Record<string, number> = {};
  try {
    table = JSON.parse(fs.readFileSync(file, "utf8")).speedups ?? {};
  } catch {
    // no table yet
  }
  const stats = { measured: 0, cached: 0 };
  let dense: Model | undefined;
  const probe: SpeedupProbe = async (n, r) => {
    const k = `${n}/${r.toFixed(4)}`;
    if (table[k] !== undefined) {
      stats.cached++;
      return table[k];
    }
    dense ??= shapeModel(input, 0, 0, recipe);
    const [td, tc] = await decoderWorkloadSeconds([dense, shapeModel(input, n, r, recipe)], workload, {
      threads: recipe.threads,
    });
    const s = td / tc;
    table[k] = s;
    stats.measured++;
    try {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      const tmp = `${file}.tmp-${process.pid}`;
      fs.writeFileSync(tmp, JSON.stringify({ key, speedups: table }));
      fs.renameSync(tmp, file);
    } catch {
      // a cache that cannot be written is only slower next time
    }
    return s;
  };
  return { probe, file, stats };
}

/** Mean NLL per token of `dir` on the held-out windows. */
async function heldOutLoss(dir: string, windows: number[][], threads?: number): Promise<number> {
  const m = loadModel(dir);
  const r = await Runner.create(m, { threads });
  try {
    let s = 0;
    let n = 0;
    for (let i = 0; i < windows.length; i += 8) {
      for (const row of await r.windowNll(windows.slice(i, i + 8))) {
        for (const v of row) s += v;
        n += row.length;
      }
    }
    return s / n;
  } finally {
    await r.close();
    m.close();
  }
}

/**
 * Prune to a target speedup: plan the candidates, prune each into a temporary sibling of the output, keep the
 * one of least held-out calibration loss. `prune` is runPrune (passed in: this module sits below prune.ts).
 */
export async function runTarget(
  recipe: Recipe,
  opts: PruneOptions,
  prune: (r: Recipe, o: PruneOptions) => Promise<PruneReport>,
  probeOverride?: SpeedupProbe,
): Promise<PruneReport> {
  const x = recipe.targetSpeedup!;
  const emit = (e: PruneEvent) => opts.onEvent?.(e);
  const workload: DecoderWorkload = { kind: recipe.targetWorkload, ...DEFAULT_WORKLOAD };
  const input: LoadedModel = loadModel(recipe.model);
  let candidates: Candidate[];
  let measured: ReturnType<typeof measuredProbe> | undefined;
  try {
    if (input.spec.kind !== "decoder")
      throw new PareError(
        "E_RECIPE_INVALID",
        `--target-speedup measures decoder workloads; ${input.spec.family} is an encoder`,
        "prune encoders with --ratio",
      );
    let maxDepth = input.dims.nLayers - 1 - new Set(recipe.skipLayers).size;
    try {
      checkDepthSettings(input, { ...recipe, depth: 1 });
    } catch {
      maxDepth = 0; // the family cannot lose blocks with this recipe: width only
    }
    emit({
      type: "phase",
      phase: "target",
      detail: `measuring ${workload.kind} speedups of candidate shapes`,
    });
    measured = probeOverride ? undefined : measuredProbe(input, recipe, workload);
    candidates = await planCandidates(x, Math.max(0, maxDepth), probeOverride ?? measured!.probe);
  } finally {
    input.close();
  }
  if (candidates.length === 0)
    throw new PareError(
      "E_RECIPE_INVALID",
      `no depth and width ratio ≤ ${MAX_RATIO} reaches a ${x}× ${workload.kind} speedup of this model on this machine`,
      "ask for a smaller --target-speedup, or try the other --target-workload",
    );

  // held-out windows: the calibration text with the next seed
  const tok = loadTokenizer(recipe.model);
  const heldOut = calibrationRows(
    decoderCalibrationFromText(
      readCalibrationText(recipe.calib),
      tok,
      Math.min(recipe.samples, 32),
      recipe.seqLen,
      recipe.seed + 1,
      8,
    ).batches,
  );

  const dir = path.dirname(path.resolve(recipe.out));
  const tmp = (k: number) => path.join(dir, `.${path.basename(recipe.out)}.target-${k}-${process.pid}`);
  const results: (Candidate & { loss: number; out: string; report: PruneReport })[] = [];
  // the output is ours until the chosen candidate is renamed into place (E_OUTPUT_LOCKED for a second run)
  const lock = acquireLock(recipe.out);
  for (let k = 0; k < candidates.length; k++) trackTemporary(tmp(k));
  try {
    for (const [k, c] of candidates.entries()) {
      emit({
        type: "phase",
        phase: "target",
        detail: `candidate ${k + 1} of ${candidates.length}: --depth ${c.depth} --ratio ${c.ratio} (predicted ${c.predictedSpeedup.toFixed(2)}×)`,
      });
      const out = tmp(k);
      fs.rmSync(out, { recursive: true, force: true });
      const report = await prune(
        {
          ...recipe,
          targetSpeedup: undefined,
          depth: c.depth,
          depthRatio: 0,
          ratio: c.ratio,
          // uniform widths: the shapes whose speed was measured
          allocation: "uniform",
          out,
          force: false,
          resume: false,
        },
        { ...opts, beforePublish: undefined },
      );
      const loss = await heldOutLoss(out, heldOut, recipe.threads);
      results.push({ ...c, loss: Number(loss.toPrecision(6)), out, report });
    }
    const best = results.reduce((a, b) => (b.loss < a.loss ? b : a));
    const target: TargetReport = {
      speedup: x,
      workload,
      latencyTable: measured?.file,
      measuredShapes: measured?.stats.measured ?? 0,
      cachedShapes: measured?.stats.cached ?? 0,
      candidates: results.map(({ out: _o, report: _r, ...c }, k) => ({ ...c, chosen: results[k] === best })),
      heldOutWindows: heldOut.length,
    };
    const report: PruneReport = { ...best.report, recipe, output: path.resolve(recipe.out), target };
    fs.writeFileSync(path.join(best.out, "pare-pruning.json"), `${JSON.stringify(report, null, 2)}\n`);
    if (fs.existsSync(recipe.out)) {
      if (!recipe.force)
        throw new PareError("E_OUTPUT_EXISTS", `${recipe.out} already exists`, "use --force to replace it");
      fs.rmSync(recipe.out, { recursive: true, force: true });
    }
    if (opts.beforePublish) await opts.beforePublish(best.out);
    fsyncTree(best.out); // on disk before it is published
    fs.renameSync(best.out, recipe.out);
    fsyncDir(dir);
    return report;
  } finally {
    for (let k = 0; k < candidates.length; k++) {
      fs.rmSync(tmp(k), { recursive: true, force: true });
      untrackTemporary(tmp(k));
    }
    lock.release();
  }
}

/** Valid token ids of every calibration row, as equal-length windows (decoder windows have no padding). */
function calibrationRows(batches: { ids: number[]; mask: number[]; b: number; T: number }[]): number[][] {
  const rows: number[][] = [];
  for (const b of batches)
    for (let r = 0; r < b.b; r++) {
      const row = b.ids.slice(r * b.T, (r + 1) * b.T).filter((_, t) => b.mask[r * b.T + t]);
      if (row.length === b.T) rows.push(row);
    }
  return rows;
}
