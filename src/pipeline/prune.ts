/**
 * runPrune: the LIAR pipeline, top to bottom.
 *   load → plan units and check the ratio → calibration windows → (global: score all layers)
 *   → per layer: statistics of the consumer inputs → criterion scores → keep masks
 *     → reconstruction → surgery → (sequential: the pruned layer feeds the next one)
 *   → pruned config → write the folder atomically with pare-pruning.json.
 * Prints nothing; reports progress through `onEvent`.
 */
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import {
  type Allocation,
  allocate,
  type ModuleUnits,
  preflight,
  standardize,
  topK,
  uniformCounts,
} from "../allocate/allocate.ts";
import { CachedWeights } from "../arch/cache.ts";
import { storedTensors } from "../arch/fused.ts";
import { consumerWidth, layerLinearElems, unitCost } from "../arch/groups.ts";
import { type LoadedModel, loadModel } from "../arch/load.ts";
import { buildModel, checkFinite, type LayerDims, type Model } from "../arch/model.ts";
import { countParams, type ParamCounts } from "../arch/params.ts";
import { embedBatches, LayerRunner, validRows } from "../calib/layers.ts";
import { type CalibSet, decoderCalibration, encoderCalibration } from "../calib/sampling.ts";
import { CrossAccumulator, type StatKind, TapAccumulator, type TapStats } from "../calib/stats.ts";
import { attentionUnitScores, CRITERIA, type Criterion } from "../criteria/index.ts";
import { PareError } from "../errors.ts";
import { AtomicDir } from "../export/atomic.ts";
import { fillFolderFiles } from "../export/folder.ts";
import { readCalibrationText } from "../io/datasets.ts";
import type { NamedTensor } from "../io/safetensors.ts";
import { ShardWriter } from "../io/shardWriter.ts";
import { loadTokenizer } from "../io/tokenizer.ts";
import { complement, RECONSTRUCTORS, type ReconResult } from "../reconstruct/index.ts";
import { runtimeVersions } from "../runtime/ort.ts";
import {
  blockChannels,
  cutLayer,
  keptHeads,
  OverlayWeights,
  prunedConfig,
  withLayers,
} from "../surgery/surgery.ts";
import { checkpointDir, loadCheckpoint, resumeKey, saveCheckpoint } from "./checkpoint.ts";
import { checkMemory, estimatePlan, measureRates, type PrunePlan } from "./plan.ts";
import type { Recipe } from "./recipe.ts";
import { SpillStore } from "./spill.ts";

interface CheckpointState {
  dims: LayerDims[];
  layerReports: LayerReport[];
  removedHeads: number[][];
}

export const PARE_VERSION = "0.1.0";

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
  timings: Record<string, number>;
  /** seconds spent in layer forwards, statistics (moments/Gram), solves and writing the output */
  busySeconds?: { forward: number; statistics: number; solve: number; output: number };
  notes: string[];
}

type Module = "attn" | "mlp";

/** The prunable units of every layer: attention KV groups and FFN channels, with their parameter cost. */
export function planUnits(
  model: Model,
  r: Pick<Recipe, "skipLayers" | "minGroups" | "minChannels" | "roundTo">,
): ModuleUnits[] {
  const D = model.dims.hidden;
  const hd = model.dims.headDim;
  const mods: ModuleUnits[] = [];
  model.dims.layers.forEach((L, i) => {
    // per KV group (e.g. its query heads' q rows and o columns, one k and one v head, with their biases) / per channel
    const attnCost = unitCost(model.spec, "attn", L, D, hd);
    const mlpCost = unitCost(model.spec, "mlp", L, D, hd);
    const skip = r.skipLayers.includes(i);
    mods.push({
      layer: i,
      module: "attn",
      n: L.nKv,
      cost: attnCost,
      min: Math.min(r.minGroups, L.nKv),
      skip,
      roundTo: 1,
    });
    mods.push({
      layer: i,
      module: "mlp",
      n: L.ffn,
      cost: mlpCost,
      min: Math.min(r.minChannels, L.ffn),
      skip,
      roundTo: r.roundTo,
    });
  });
  return mods;
}

/** Consumer of a module: module path template, input width. */
function consumer(model: Model, i: number, m: Module): { mod: string; dIn: number } {
  const L = model.dims.layers[i];
  const role = model.spec.groups[m].consumer;
  return {
    mod: model.path(model.spec.names[role]!, i),
    dIn: consumerWidth(model.spec, m, L, model.dims.headDim),
  };
}

function channelScores(model: Model, i: number, m: Module, crit: Criterion, stats?: TapStats): Float64Array {
  const { mod, dIn } = consumer(model, i, m);
  const ch = crit.channelScores(model.weights.get(`${mod}.weight`), model.dims.hidden, dIn, stats);
  for (const v of ch) {
    if (!Number.isFinite(v)) {
      throw new PareError(
        "E_NUMERIC",
        `layer ${i} ${m}: the ${crit.name} scores contain NaN or Inf`,
        "check the weights (NaN/Inf) and the calibration text",
      );
    }
  }
  return ch;
}

/** Unit scores within one module (uniform allocation): a KV group sums its channels' scores. */
function unitScores(model: Model, i: number, m: Module, crit: Criterion, stats?: TapStats): Float64Array {
  const ch = channelScores(model, i, m, crit, stats);
  const L = model.dims.layers[i];
  return m === "attn"
    ? attentionUnitScores(ch, L.nHeads, L.nKv, model.dims.headDim, crit.squareAttention)
    : ch;
}

/**
 * Unit scores comparable across modules (global allocation, FLAP's AL-AM): channel scores
 * (squared for attention under FLAP criteria) standardized over the module's channels, then
 * averaged over each unit's channels.
 */
function globalUnitScores(
  model: Model,
  i: number,
  m: Module,
  crit: Criterion,
  stats?: TapStats,
): Float64Array {
  let ch = channelScores(model, i, m, crit, stats);
  if (m === "mlp") return standardize(ch);
  if (crit.squareAttention) ch = ch.map((v) => v * v);
  const z = standardize(ch);
  const L = model.dims.layers[i];
  // a head scores the mean of its standardized channels, a KV group the sum over its heads (METHODS §2)
  return attentionUnitScores(z, L.nHeads, L.nKv, model.dims.headDim, false).map(
    (s) => s / model.dims.headDim,
  );
}

async function reconstruct(
  model: Model,
  i: number,
  m: Module,
  keepUnits: Int32Array,
  recipe: Recipe,
  stats?: TapStats,
  cross?: Float64Array,
): Promise<ReconResult> {
  const { mod, dIn } = consumer(model, i, m);
  const L = model.dims.layers[i];
  const hd = model.dims.headDim;
  const keep = m === "attn" ? blockChannels(keptHeads(keepUnits, L.nHeads, L.nKv), hd) : keepUnits;
  const w = model.weights;
  return RECONSTRUCTORS[recipe.reconstruct].reconstruct({
    intercept: canHoldBias(model, i, m),
    W: w.get(`${mod}.weight`),
    dOut: model.dims.hidden,
    dIn,
    b: w.has(`${mod}.bias`) ? w.get(`${mod}.bias`) : undefined,
    keep,
    stats,
    cross,
    alpha: recipe.ridge,
    where: `layer ${i} ${m === "attn" ? "attention output" : "FFN down"} projection`,
  });
}

/** Can this consumer carry a bias in a config stock loaders read? (it has one, or the family has a flag for it) */
export function canHoldBias(model: Model, i: number, m: Module): boolean {
  const L = model.dims.layers[i];
  const has = L.bias[model.spec.groups[m].consumer];
  return has || model.spec.biasFlags?.[m === "attn" ? "attention" : "mlp"] !== undefined;
}

function sha256(file: string): string {
  const h = crypto.createHash("sha256");
  const fd = fs.openSync(file, "r");
  const buf = Buffer.allocUnsafe(1 << 22);
  try {
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest("hex");
}

function inputHashes(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of fs.readdirSync(dir).sort()) {
    if (
      f === "config.json" ||
      f.endsWith(".safetensors") ||
      f === "model.safetensors.index.json" ||
      f === "tokenizer.json"
    ) {
      out[f] = `sha256:${sha256(path.join(dir, f))}`;
    }
  }
  return out;
}

/** Cache budget: three times the largest layer's weights (f32), at least 64 MiB. */
function layerCacheBytes(m: Model): number {
  const largest = Math.max(
    ...m.dims.layers.map((L) => layerLinearElems(m.spec, L, m.dims.hidden, m.dims.headDim)),
  );
  return Math.max(64 << 20, 3 * 4 * largest);
}

/** Knobs for tests: `heldBudgetBytes` overrides the in-memory budget of waiting calibration data. */
export interface PruneInternals {
  heldBudgetBytes?: number;
}

export async function runPrune(
  recipe: Recipe,
  onEvent: (e: PruneEvent) => void = () => {},
  internals: PruneInternals = {},
): Promise<PruneReport> {
  const t0 = performance.now();
  const timings: Record<string, number> = {};
  let mark = t0;
  const lap = (name: string) => {
    const now = performance.now();
    timings[name] = (timings[name] ?? 0) + (now - mark) / 1000;
    mark = now;
  };
  const notes: string[] = [];
  const phase = (p: string, detail?: string) => onEvent({ type: "phase", phase: p, detail });
  phase("load", recipe.model);
  const base = loadModel(recipe.model);
  try {
    return await prune(base, recipe, onEvent, { t0, timings, notes, lap, internals });
  } finally {
    base.close();
  }
}

async function prune(
  base: LoadedModel,
  recipe: Recipe,
  onEvent: (e: PruneEvent) => void,
  ctx: {
    t0: number;
    timings: Record<string, number>;
    notes: string[];
    lap: (name: string) => void;
    internals: PruneInternals;
  },
): Promise<PruneReport> {
  const { t0, timings, notes, lap } = ctx;
  const phase = (p: string, detail?: string) => onEvent({ type: "phase", phase: p, detail });
  const files = inputHashes(base.dir);
  checkFinite(base); // NaN/Inf anywhere fails now, before checkpoints or outputs exist
  const ckDir = checkpointDir(recipe.out);
  const ckKey = resumeKey(recipe as unknown as Record<string, unknown>, files);
  const restored = recipe.resume ? loadCheckpoint<CheckpointState>(ckDir, ckKey) : undefined;
  if (!recipe.resume) fs.rmSync(ckDir, { recursive: true, force: true });
  else if (!restored) notes.push("--resume: no checkpoints found, starting from the first layer");
  // weights are read from safetensors on demand and kept in a bounded cache (about one layer's worth)
  const dense: Model = { ...base, weights: new CachedWeights(base.weights, layerCacheBytes(base)) };
  const weights = new OverlayWeights(dense.weights);
  let model: Model = {
    ...dense,
    weights,
    dims: { ...dense.dims, layers: dense.dims.layers.map((l) => ({ ...l, bias: { ...l.bias } })) },
  };
  const nL = model.dims.nLayers;
  for (const s of recipe.skipLayers) {
    if (s >= nL)
      throw new PareError(
        "E_RECIPE_INVALID",
        `--skip-layers ${s}: the model has layers 0..${nL - 1}`,
        "list existing layer indices",
      );
  }
  if (recipe.reconstruct === "bias" && recipe.ratio > 0) {
    const cannot = [0, 1].flatMap((i) =>
      i < nL ? (["attn", "mlp"] as Module[]).filter((m) => !canHoldBias(model, i, m)) : [],
    );
    if (cannot.length) {
      throw new PareError(
        "E_RECIPE_INVALID",
        `bias compensation needs ${cannot.includes("attn") ? "o_proj" : "down_proj"} biases, which a ${model.spec.family} config cannot declare (stock loaders would drop them)`,
        "use --reconstruct liar (it then fits without an intercept) or --reconstruct none",
      );
    }
  }
  if (!canHoldBias(model, 0, "attn") || !canHoldBias(model, 0, "mlp")) {
    notes.push(
      `${model.spec.family}'s config cannot declare created o_proj/down_proj biases: reconstruction fits without an intercept so that stock loaders read the model exactly`,
    );
  }
  const mods = planUnits(model, recipe);
  preflight(mods, recipe.ratio, recipe.allocation);
  const plan = estimatePlan(dense, recipe, await measureRates(recipe.threads), ctx.internals.heldBudgetBytes);
  checkMemory(plan, recipe.maxMemory);
  onEvent({ type: "plan", plan });
  const before = countParams(model);
  lap("load");

  const crit = CRITERIA[recipe.criterion];
  const rec = RECONSTRUCTORS[recipe.reconstruct];
  const critKinds = new Set<StatKind>(crit.needs);
  const recKinds = new Set<StatKind>(rec.needs);
  const allKinds = new Set<StatKind>([...critKinds, ...recKinds]);

  let calib: CalibSet | undefined;
  let embedded: Float32Array[] = [];
  if (allKinds.size > 0) {
    phase("calibration", "reading and tokenizing calibration text");
    const text = readCalibrationText(recipe.calib);
    const tok = loadTokenizer(base.dir);
    const maxLen = Math.min(recipe.seqLen, model.dims.maxPos);
    if (maxLen < recipe.seqLen)
      notes.push(`--seq-len ${recipe.seqLen} exceeds max_position_embeddings; calibration uses ${maxLen}`);
    calib =
      model.spec.kind === "decoder"
        ? decoderCalibration(tok.encode(text), recipe.samples, maxLen, recipe.seed, recipe.batchSize)
        : encoderCalibration(text, tok, recipe.samples, maxLen, recipe.seed, recipe.batchSize);
    embedded = await embedBatches(model, calib.batches, recipe.threads);
    lap("calibration");
  }
  const batches = calib?.batches ?? [];
  const runner = new LayerRunner(recipe.threads);
  let layerReports: LayerReport[] = [];
  let removedHeads: number[][] = [];
  const ridgeOf = (r: ReconResult) => r.alphaUsed;
  // seconds spent in each kind of work (the benchmark divides FLOPs by them)
  const busy = { forward: 0, statistics: 0, solve: 0, output: 0 };
  const timed = async <T>(k: keyof typeof busy, f: () => Promise<T> | T): Promise<T> => {
    const t = performance.now();
    try {
      return await f();
    } finally {
      busy[k] += (performance.now() - t) / 1000;
    }
  };
  const runLayer = (m: Model, i: number, x: Float32Array<ArrayBufferLike>, b: (typeof batches)[number]) =>
    timed("forward", () => runner.run(m, i, x as Float32Array, b));
  const tap = (d: number, kinds: Set<StatKind>) =>
    new TapAccumulator(d, kinds, undefined, recipe.gramPrecision);
  const addRows = (acc: TapAccumulator, x: Float32Array, d: number, mask: number[]) =>
    timed("statistics", () => {
      const r = validRows(x, d, mask);
      return acc.add(r.rows, r.n);
    });
  // statistics of the dense pass wait here for their layer (Grams spilled to disk beyond the budget)
  const store = new SpillStore(
    `${checkpointDir(recipe.out).replace(/\.partial$/, "")}.spill-${process.pid}`,
    plan.memoryBytes.held,
  );

  embedded.forEach((x, b) => {
    store.put(`s:${b}`, x);
  });
  embedded = [];

  /** one pass of the (dense) model over the stream, collecting stats for both taps of every layer */
  const densePass = async (kinds: Set<StatKind>) => {
    const moments: { attn: TapStats; mlp: TapStats }[] = [];
    for (let i = 0; i < nL; i++) {
      onEvent({ type: "layer", layer: i, layers: nL, step: "statistics" });
      const L = dense.dims.layers[i];
      const a = tap(L.nHeads * dense.dims.headDim, kinds);
      const m = tap(L.ffn, kinds);
      for (let b = 0; b < batches.length; b++) {
        // layer 0 reads the embeddings (kept for later passes), deeper layers the previous output
        const x = i === 0 ? store.peek(`s:${b}`) : store.take(`x:${b}`);
        const r = await runLayer(dense, i, x, batches[b]);
        await addRows(a, r.attnIn, a.d, batches[b].mask);
        await addRows(m, r.mlpIn, m.d, batches[b].mask);
        if (i < nL - 1) store.put(`x:${b}`, r.out);
      }
      const sa = await timed("statistics", () => a.finish());
      const sm = await timed("statistics", () => m.finish());
      moments.push({ attn: { ...sa, gram: undefined }, mlp: { ...sm, gram: undefined } });
      if (sa.gram) store.put(`gram:${i}:attn`, sa.gram);
      if (sm.gram) store.put(`gram:${i}:mlp`, sm.gram);
    }
    return moments;
  };

  // the output folder is filled layer by layer (temporary sibling, renamed at the end)
  const srcDtypes = new Set(base.dtypes);
  const dtype =
    recipe.dtype !== "auto"
      ? recipe.dtype
      : srcDtypes.size === 1 && (srcDtypes.has("F16") || srcDtypes.has("BF16"))
        ? ([...srcDtypes][0] as "F16" | "BF16")
        : "F32";
  const layerNames = (i: number) =>
    Object.values(model.spec.names)
      .filter((t): t is string => typeof t === "string" && t.includes("{i}"))
      .flatMap((t) => [`${model.path(t, i)}.weight`, `${model.path(t, i)}.bias`]);
  const out = AtomicDir.open(recipe.out, recipe.force);
  /** the stored name of a tensor (a fused tensor's view part → the fused tensor) */
  const storedName = (n: string) => n.replace(/\[[a-z]+\](\.weight|\.bias)$/, "$1");
  const writer = new ShardWriter(out.dir, {
    dtype,
    expectedNames: [
      ...new Set(
        [...dense.weights.names(), ...Array.from({ length: nL }, (_, i) => layerNames(i)).flat()].map(
          storedName,
        ),
      ),
    ],
  });
  const written = new Set<string>();
  /** write these tensors in the family's stored layout (fused parts concatenated) and drop them from memory */
  const emit = (names: string[]) => {
    for (const t of storedTensors(model.spec, names, weights)) {
      writer.add(t.name, t.shape, t.read());
      for (const n of t.from) {
        written.add(n);
        weights.release(n);
      }
    }
  };
  /** write layer i's tensors now and drop the pruned copies from memory */
  const writeLayer = (i: number) =>
    timed("output", () => emit(layerNames(i).filter((name) => weights.has(name) && !written.has(name))));

  try {
    let alloc: Allocation | undefined;
    let globalScores: Float64Array[] | undefined;
    let denseMoments: { attn: TapStats; mlp: TapStats }[] | undefined;
    const sequential = recipe.calibration === "sequential" && allKinds.size > 0;
    if (!sequential && allKinds.size > 0) {
      phase("statistics", "dense calibration pass");
      denseMoments = await densePass(allKinds);
      lap("statistics");
    }
    if (recipe.allocation === "global") {
      let st = denseMoments;
      if (!st && critKinds.size > 0) {
        phase("scoring", "dense pass for global allocation");
        st = await densePass(critKinds);
        lap("scoring");
      }
      globalScores = mods.map((m) =>
        globalUnitScores(model, m.layer, m.module, crit, st?.[m.layer][m.module]),
      );
      alloc = allocate(mods, globalScores, recipe.ratio, "global", { standardized: true });
    }

    const counts = uniformCounts(mods, recipe.ratio);
    const usedScores = new Map<string, Float64Array>();
    if (alloc) {
      mods.forEach((m, idx) => {
        usedScores.set(`${m.layer}:${m.module}`, globalScores![idx]);
      });
    }
    const keepFor = (i: number, m: Module, stats?: TapStats): Int32Array => {
      const idx = 2 * i + (m === "attn" ? 0 : 1);
      if (alloc) return alloc.keep[idx];
      const sc = unitScores(model, i, m, crit, stats);
      usedScores.set(`${i}:${m}`, sc);
      return topK(sc, counts[idx]);
    };
    const round4 = (a?: Float64Array) => (a ? Array.from(a, (v) => Number(v.toPrecision(4))) : []);

    phase(
      "prune",
      `${recipe.criterion} · ${recipe.allocation} · ${recipe.reconstruct} · ${sequential ? "sequential" : "dense"} calibration`,
    );
    // the calibration stream(s) between layers live in the store: s:b the (pruned) model's, d:b the dense one's
    if (!sequential) for (let b = 0; b < batches.length; b++) store.drop(`s:${b}`);
    if (rec.needsCross)
      for (let b = 0; b < batches.length; b++) store.put(`d:${b}`, store.peek(`s:${b}`).slice());
    let start = 0;
    if (restored) {
      const st = restored.progress.state;
      model = withLayers(model, weights, st.dims);
      for (let i = 0; i <= restored.progress.layerDone; i++) {
        for (const t of restored.layerTensors(i)) weights.set(t.name, { shape: t.shape, data: t.data });
        await writeLayer(i);
        for (const k of [`gram:${i}:attn`, `gram:${i}:mlp`]) if (store.has(k)) store.take(k);
      }
      layerReports = st.layerReports;
      removedHeads = st.removedHeads;
      for (const [k, name, wanted] of [
        ["s", "stream", sequential],
        ["d", "dense", rec.needsCross],
      ] as const) {
        if (!wanted) continue;
        restored.streams(name, batches.length).forEach((x, b) => {
          store.put(`${k}:${b}`, x);
        });
      }
      start = restored.progress.layerDone + 1;
      phase("resume", `layers 0..${restored.progress.layerDone} restored from ${ckDir}`);
    }
    const solve = (i: number, m: Module, keep: Int32Array, stats?: TapStats, cross?: Float64Array) =>
      timed("solve", () => reconstruct(model, i, m, keep, recipe, stats, cross));
    for (let i = start; i < nL; i++) {
      const L0: LayerDims = model.dims.layers[i];
      const skipped = recipe.skipLayers.includes(i);
      let retries = 0;
      const ridge: { attn?: number; mlp?: number } = {};
      let keepGroups: Int32Array;
      let keepChannels: Int32Array;
      if (sequential) {
        const kinds = alloc ? recKinds : allKinds;
        /** statistics of one consumer input on the pruned stream (+ the cross-Gram with the dense stream) */
        const collect = async (which: "attnIn" | "mlpIn", d: number, keepDenseOutput = false) => {
          const acc = tap(d, kinds);
          const cross = rec.needsCross ? new CrossAccumulator(d, d) : undefined;
          for (let b = 0; b < batches.length; b++) {
            const r = await runLayer(model, i, store.peek(`s:${b}`), batches[b]);
            const rows = validRows(r[which], d, batches[b].mask);
            await timed("statistics", () => acc.add(rows.rows, rows.n));
            if (cross) {
              const rd = await runLayer(dense, i, store.peek(`d:${b}`), batches[b]);
              await timed("statistics", () =>
                cross.add(rows.rows, validRows(rd[which], d, batches[b].mask).rows, rows.n),
              );
              if (keepDenseOutput) store.put(`dn:${b}`, rd.out);
            }
          }
          return {
            stats: await timed("statistics", () => acc.finish()),
            cross: await timed("statistics", () => cross?.finish()),
          };
        };
        // attention: statistics of o_proj's input on the pruned stream
        onEvent({ type: "layer", layer: i, layers: nL, step: "attention" });
        const sA = await collect("attnIn", L0.nHeads * model.dims.headDim, true);
        keepGroups = skipped
          ? Int32Array.from({ length: L0.nKv }, (_, j) => j)
          : keepFor(i, "attn", sA.stats);
        const attn = await solve(i, "attn", keepGroups, sA.stats, sA.cross);
        ridge.attn = ridgeOf(attn);
        retries += attn.retries;
        let dims = model.dims.layers.slice();
        dims[i] = cutLayer(model, weights, i, { keepGroups, attn });
        model = withLayers(model, weights, dims);
        // MLP: statistics of down_proj's input after the attention cut
        onEvent({ type: "layer", layer: i, layers: nL, step: "mlp" });
        const sM = await collect("mlpIn", L0.ffn);
        keepChannels = skipped
          ? Int32Array.from({ length: L0.ffn }, (_, j) => j)
          : keepFor(i, "mlp", sM.stats);
        const mlp = await solve(i, "mlp", keepChannels, sM.stats, sM.cross);
        ridge.mlp = ridgeOf(mlp);
        retries += mlp.retries;
        dims = model.dims.layers.slice();
        dims[i] = cutLayer(model, weights, i, { keepChannels, mlp });
        model = withLayers(model, weights, dims);
        // the pruned layer's output feeds the next layer
        onEvent({ type: "layer", layer: i, layers: nL, step: "propagate" });
        for (let b = 0; b < batches.length; b++)
          store.put(`s:${b}`, (await runLayer(model, i, store.peek(`s:${b}`), batches[b])).out);
        if (rec.needsCross) for (let b = 0; b < batches.length; b++) store.rename(`dn:${b}`, `d:${b}`);
      } else {
        onEvent({ type: "layer", layer: i, layers: nL, step: "reconstruct" });
        const waiting = (k: Module) => {
          const st = denseMoments?.[i][k];
          const key = `gram:${i}:${k}`;
          return st && { ...st, gram: store.has(key) ? store.take<Float64Array>(key) : undefined };
        };
        const sa = waiting("attn");
        const sm = waiting("mlp");
        keepGroups = skipped ? Int32Array.from({ length: L0.nKv }, (_, j) => j) : keepFor(i, "attn", sa);
        keepChannels = skipped ? Int32Array.from({ length: L0.ffn }, (_, j) => j) : keepFor(i, "mlp", sm);
        const attn = await solve(i, "attn", keepGroups, sa);
        const mlp = await solve(i, "mlp", keepChannels, sm);
        ridge.attn = ridgeOf(attn);
        ridge.mlp = ridgeOf(mlp);
        retries += attn.retries + mlp.retries;
        const dims = model.dims.layers.slice();
        dims[i] = cutLayer(model, weights, i, { keepGroups, attn, keepChannels, mlp });
        model = withLayers(model, weights, dims);
      }
      if (retries > 0) {
        notes.push(
          `layer ${i}: the Cholesky factorization failed at ridge α=${recipe.ridge}; retried with α=${Math.max(ridge.attn ?? 0, ridge.mlp ?? 0)}`,
        );
      }
      const heads = keptHeads(keepGroups, L0.nHeads, L0.nKv);
      removedHeads.push(Array.from(complement(heads, L0.nHeads)));
      const L1 = model.dims.layers[i];
      layerReports.push({
        layer: i,
        heads: [L0.nHeads, L1.nHeads],
        kvHeads: [L0.nKv, L1.nKv],
        ffn: [L0.ffn, L1.ffn],
        keptKvGroups: Array.from(keepGroups),
        keptHeads: Array.from(heads),
        keptChannels: Array.from(keepChannels),
        skipped,
        scores: skipped
          ? undefined
          : { attn: round4(usedScores.get(`${i}:attn`)), mlp: round4(usedScores.get(`${i}:mlp`)) },
        ridge: rec.needs.includes("gram") ? { ...ridge, retries } : undefined,
      });
      const cut: NamedTensor[] = [];
      for (const name of layerNames(i)) {
        const o = weights.overlay.get(name);
        if (o) cut.push({ name, shape: o.shape, data: o.data });
      }
      const streams: Record<string, Float32Array[]> = {};
      const all = (k: string) => batches.map((_, b) => store.peek(`${k}:${b}`));
      if (sequential) streams.stream = all("s");
      if (rec.needsCross) streams.dense = all("d");
      saveCheckpoint<CheckpointState>(ckDir, i, cut, streams, {
        key: ckKey,
        layerDone: i,
        state: { dims: model.dims.layers, layerReports, removedHeads },
      });
      await writeLayer(i);
    }
    await runner.close(); // frees ORT's working memory before the write (closing again in `finally` is a no-op)
    lap("prune");

    if (store.spilledBytes > 0)
      notes.push(
        `${(store.spilledBytes / 1024 ** 3).toFixed(2)} GiB of calibration data (activations between layers, Gram matrices) went through a temporary file to stay within the memory budget`,
      );
    phase("write", recipe.out);
    const layers = model.dims.layers.map((l) => ({ ...l, bias: { ...l.bias } }));
    const { config, notes: cfgNotes } = prunedConfig(model, layers, removedHeads, weights, dense.dims.layers);
    notes.push(...cfgNotes);
    // the written config must describe the written weights exactly
    const final = buildModel(config, weights);
    const after = countParams(final);
    const strip = ({ perLayer: _p, ...rest }: ParamCounts) => rest;
    // everything not written with its layer: embeddings, final norm, head, biases the config now declares
    await timed("output", () => {
      emit(
        weights
          .names()
          .sort()
          .filter((name) => !written.has(name)),
      );
      writer.close();
    });
    const report: PruneReport = {
      pare: PARE_VERSION,
      versions: { pare: PARE_VERSION, ...runtimeVersions() },
      created: new Date().toISOString(),
      recipe,
      input: { dir: base.dir, family: model.spec.family, files },
      output: path.resolve(recipe.out),
      calibration: calib
        ? { sequences: calib.sequences, tokens: calib.tokens, protocol: calib.protocol }
        : undefined,
      params: { before: strip(before), after: strip(after) },
      requestedRatio: recipe.ratio,
      plan,
      achievedRatio: 1 - after.prunable / before.prunable,
      layers: layerReports,
      timings,
      busySeconds: busy,
      notes,
    };
    fillFolderFiles(out.dir, {
      config,
      dtype,
      auxFrom: base.dir,
      json: { "pare-pruning.json": report },
    });
    out.commit();
    lap("write");
    fs.rmSync(ckDir, { recursive: true, force: true });
    timings.total = (performance.now() - t0) / 1000;
    for (const n of notes) onEvent({ type: "note", message: n });
    return report;
  } catch (e) {
    writer.abort();
    out.abort();
    throw e;
  } finally {
    store.close();
    await runner.close();
  }
}

/** Load the model, check the settings and return the cost plan (with this machine's rates) — no pruning. */
export async function dryRun(recipe: Recipe): Promise<PrunePlan> {
  const base = loadModel(recipe.model);
  try {
    const mods = planUnits(base, recipe);
    preflight(mods, recipe.ratio, recipe.allocation);
    const plan = estimatePlan(base, recipe, await measureRates(recipe.threads));
    checkMemory(plan, recipe.maxMemory);
    return plan;
  } finally {
    base.close();
  }
}
