/**
 * runPrune: the LIAR pipeline, stage by stage.
 *
 *   depth        (--depth) choose decoder blocks to remove, compensate, renumber the rest      (depth.ts)
 *   plan         check the settings against the model, the units, the cost plan, checkpoints  (prepare.ts)
 *   calibrate    calibration windows and their embeddings                                      (calibrate.ts)
 *                dense calibration: statistics of every layer in one unpruned pass             (densePass.ts)
 *   score        the criterion's unit scores                                                   (score.ts)
 *   allocate     global: all layers ranked together (scores of a dense pass); uniform: per module (allocation.ts)
 *   per layer    sequential calibration on the partly pruned model (sequential.ts) → keep → reconstruct the
 *                consumers → cut (layer.ts, reconstruct.ts) → checkpoint (checkpoint.ts) → write the layer
 *   write        pruned config, remaining tensors, pare-pruning.json; the folder renamed into place (output.ts)
 *
 * Calibration data that waits between steps lives in typed streams within a memory budget (spill.ts); ONNX
 * Runtime work goes through one `Ops` (src/ops), released at the end. Prints nothing; reports progress through
 * `onEvent` and stops between batches and layers when its AbortSignal fires (E_ABORTED: no output, no temporary
 * files; checkpoints kept for --resume).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { preflight } from "../allocate/allocate.ts";
import { type LoadedModel, loadModel } from "../arch/load.ts";
import { checkFinite } from "../arch/model.ts";
import { countParams, type ParamCounts } from "../arch/params.ts";
import { Ops, type TokenBatch } from "../ops/index.ts";
import { quantizationCost } from "../quant/cost.ts";
import { rewriteAsGptq } from "../quant/folder.ts";
import { headName } from "../quant/head.ts";
import { checkQuantizablePrune } from "../quant/sequential.ts";
import { type LayerStats, Selection } from "./allocation.ts";
import { calibrationWindows } from "./calibrate.ts";
import { checkpointDir, releaseCheckpointLock } from "./checkpoint.ts";
import { RunContext } from "./context.ts";
import { densePass } from "./densePass.ts";
import { checkDepthSettings, depthCount, depthStage } from "./depth.ts";
import { LayerPruner } from "./layer.ts";
import { PrunedOutput } from "./output.ts";
import { checkMemory, estimatePlan, measureRates, type PrunePlan } from "./plan.ts";
import { type Job, planUnits, prepare } from "./prepare.ts";
import { quantSettingsOf, type Recipe } from "./recipe.ts";
import { SequentialCalibration } from "./sequential.ts";
import { Streams } from "./spill.ts";
import { runTarget } from "./target.ts";
import type { DepthReport, LayerReport, PruneEvent, PruneOptions, PruneReport } from "./types.ts";

export { PARE_VERSION } from "./output.ts";
export { canHoldBias, planUnits } from "./prepare.ts";
export type { LayerReport, PruneEvent, PruneOptions, PruneReport } from "./types.ts";

/** Tests' knobs (the third argument of the positional form). */
export type PruneInternals = Pick<PruneOptions, "heldBudgetBytes" | "signal">;

/**
 * Prune `recipe.model` into `recipe.out`. Call as `runPrune(recipe, onEvent?, { signal })` or
 * `runPrune(recipe, { onEvent, signal })`.
 */
export async function runPrune(
  recipe: Recipe,
  onEvent: ((e: PruneEvent) => void) | PruneOptions = {},
  options: PruneInternals = {},
): Promise<PruneReport> {
  const opts: PruneOptions =
    typeof onEvent === "function" ? { ...options, onEvent } : { ...onEvent, ...options };
  // --target-speedup: candidates of depth and width, each a prune of its own
  if (recipe.targetSpeedup !== undefined) return runTarget(recipe, opts, (r, o) => runPrune(r, o));
  const run = new RunContext(opts.onEvent ?? (() => {}), opts.signal);
  run.checkAborted();
  run.phase("load", recipe.model);
  const input = loadModel(recipe.model);
  const ops = new Ops({ threads: recipe.threads });
  try {
    if (depthCount(recipe, input.dims.nLayers) === 0) return await prune(input, recipe, run, ops, opts);
    // depth first: the width stages prune a view of the input without the removed blocks
    checkFinite(input);
    const before = countParams(input);
    const budget = recipe.maxMemory !== undefined ? recipe.maxMemory * 1024 ** 3 : os.totalmem() / 4;
    const depth = await depthStage(input, recipe, run, ops, budget);
    run.notes.push(...depth.report.notes);
    // the width stages see the view's layer indices
    const kept = depth.report.kept;
    const widthRecipe = {
      ...recipe,
      skipLayers: recipe.skipLayers.flatMap((s) => (kept.includes(s) ? [kept.indexOf(s)] : [])),
    };
    return await prune(depth.model, widthRecipe, run, ops, opts, {
      recipe,
      before,
      depth: depth.report,
    });
  } finally {
    await ops.close();
    input.close();
    releaseCheckpointLock(recipe.out);
  }
}

/** After a depth stage: the user's recipe, the input's parameter counts and the depth report. */
interface AfterDepth {
  recipe: Recipe;
  before: ParamCounts;
  depth: DepthReport;
}

async function prune(
  input: LoadedModel,
  recipe: Recipe,
  run: RunContext,
  ops: Ops,
  opts: Pick<PruneOptions, "heldBudgetBytes" | "beforePublish">,
  afterDepth?: AfterDepth,
): Promise<PruneReport> {
  // plan: settings, units and the cost plan, before any work
  const job = await prepare(input, recipe, run, opts.heldBudgetBytes);
  if (recipe.quantize) {
    const qs = quantSettingsOf(recipe);
    checkQuantizablePrune(job.pruned.model, qs);
    if (recipe.quantizeHead) headName(job.pruned.model, qs);
  }
  run.lap("load");

  // calibrate: windows and their embeddings (the first calibration stream)
  const calibrated = job.kinds.all.size > 0;
  const { calib, embedded } = calibrated
    ? await calibrationWindows(job.pruned.model, input.dir, recipe, run, ops)
    : { calib: undefined, embedded: [] };
  if (calibrated) run.lap("calibration");
  const batches = calib?.batches ?? [];
  const streams = new Streams(spillDir(recipe.out), job.plan.memoryBytes.held, batches.length);
  const output = PrunedOutput.open(recipe, input, job.pruned, run);
  try {
    streams.model.fill(embedded);
    embedded.length = 0;

    // dense calibration: statistics of every layer from one pass of the unpruned model
    let denseStats: LayerStats | undefined;
    if (!job.sequential && calibrated) {
      run.phase("statistics", "dense calibration pass");
      denseStats = await densePass(job, streams, batches, ops, run, job.kinds.all, needsGains(job));
      run.lap("statistics");
    }

    // score → allocate: global allocation ranks every layer's units before the first cut
    const selection = await select(job, streams, batches, ops, run, denseStats);

    run.phase(
      "prune",
      recipe.ratio === 0
        ? "no width pruning (--ratio 0): writing the kept layers"
        : `${recipe.criterion} · ${recipe.allocation} · ${recipe.reconstruct} · ${job.sequential ? "sequential" : "dense"} calibration`,
    );
    if (!job.sequential) streams.model.clear();
    // liar-seq: the unpruned model's stream starts at the embeddings too
    if (job.reconstructor.needsCross) streams.dense.copyFrom(streams.model);
    const layers: LayerReport[] = [];
    const removedHeads: number[][] = [];
    const start = await resume(job, streams, output, layers, removedHeads, run);

    // per layer: calibrate (sequential) → keep → reconstruct → cut → checkpoint → write
    const sequential = job.sequential
      ? new SequentialCalibration(
          job,
          streams,
          batches,
          ops,
          run,
          selection.isGlobal ? job.kinds.reconstruction : job.kinds.all,
        )
      : undefined;
    const pruner = new LayerPruner(job, ops, run, selection, streams, sequential, denseStats);
    const nL = job.pruned.model.dims.nLayers;
    for (let i = start; i < nL; i++) {
      run.checkAborted();
      const { report, removedHeads: removed } = await pruner.prune(i);
      layers.push(report);
      removedHeads.push(removed);
      checkpoint(job, streams, i, layers, removedHeads);
      await output.writeLayer(i);
    }
    if (recipe.quantize && recipe.quantizeHead) await pruner.quantizeHead();
    await ops.close(); // frees ORT's working memory before the write
    run.lap("prune");

    // write: config, the remaining tensors, pare-pruning.json; the folder moves into place
    if (streams.spilledBytes > 0)
      run.notes.push(
        `${(streams.spilledBytes / 1024 ** 3).toFixed(2)} GiB of calibration data (activations between layers, Gram matrices) went through a temporary file to stay within the memory budget`,
      );
    run.phase("write", recipe.out);
    // --quantize: the written folder becomes a GPTQ folder (quant/folder.ts) before it is published, and so does
    // what the caller adds (beforePublish): the output appears complete or not at all
    const beforeCommit = async (dir: string) => {
      if (recipe.quantize) {
        run.lap("write");
        run.phase("quantize", `${recipe.out} as a GPTQ folder`);
        const s = {
          bits: recipe.quantize,
          groupSize: recipe.groupSize,
          sym: !recipe.asym,
          lmHead: recipe.quantizeHead,
        };
        const gptq = recipe.quantMethod === "gptq";
        gptqInPlace(dir, pruner.quantized, s, {
          ...s,
          method: recipe.quantMethod,
          // GPTQ's column order (src/quant/settings.ts): act-order with static groups, desc_act stays false
          act_order: gptq ? recipe.gptqOrder === "act" : null,
          static_groups: gptq ? recipe.gptqOrder === "act" : null,
          linears: pruner.quantReports,
        });
        run.lap("quantize");
      }
      if (opts.beforePublish) await opts.beforePublish(dir);
    };
    const report = await output.finish(
      afterDepth?.recipe ?? recipe,
      input,
      {
        inputFiles: job.inputFiles,
        calibration:
          (calib && { sequences: calib.sequences, tokens: calib.tokens, protocol: calib.protocol }) ??
          afterDepth?.depth.calibration,
        before: afterDepth?.before ?? job.before,
        depth: afterDepth?.depth,
        plan: job.plan,
        layers,
        removedHeads,
      },
      beforeCommit,
    );
    if (!recipe.quantize) run.lap("write");
    job.checkpoints.remove();
    run.timings.total = (performance.now() - run.t0) / 1000;
    for (const n of run.notes) run.event({ type: "note", message: n });
    return report;
  } catch (e) {
    output.abort();
    throw e;
  } finally {
    streams.close();
  }
}

/**
 * The unpublished output folder `dir` rewritten as a GPTQ folder in place: written into a staging folder inside
 * it, then its files replace the float ones (a kill meanwhile leaves only the output's temporary folder, which the
 * next run removes; --resume restarts from the checkpoints).
 */
function gptqInPlace(dir: string, ...rest: DropFirst<Parameters<typeof rewriteAsGptq>>): void {
  const staging = path.join(dir, ".gptq");
  fs.rmSync(staging, { recursive: true, force: true });
  rewriteAsGptq(dir, rest[0], rest[1], rest[2], staging);
  for (const f of fs.readdirSync(dir)) if (f !== ".gptq") fs.rmSync(path.join(dir, f), { recursive: true });
  for (const f of fs.readdirSync(staging)) fs.renameSync(path.join(staging, f), path.join(dir, f));
  fs.rmdirSync(staging);
}
type DropFirst<T extends unknown[]> = T extends [unknown, ...infer R] ? R : never;

/** Layer i is done: its cut tensors, the streams after it and the reports so far, for --resume. */
function checkpoint(
  job: Job,
  streams: Streams,
  i: number,
  layers: LayerReport[],
  removedHeads: number[][],
): void {
  job.checkpoints.save(
    i,
    job.pruned.cutTensors(i),
    {
      stream: job.sequential ? streams.model.all() : undefined,
      dense: job.reconstructor.needsCross ? streams.dense.all() : undefined,
    },
    { dims: job.pruned.model.dims.layers, layerReports: layers, removedHeads },
  );
}

/** Temporary folder of spilled calibration data: a hidden sibling of the output, per process. */
function spillDir(out: string): string {
  return `${checkpointDir(out).replace(/\.partial$/, "")}.spill-${process.pid}`;
}

/** --obs-normalization stream under global allocation: the dense pass measures the norms' gains. */
function needsGains(job: Job): boolean {
  const { recipe, criterion } = job;
  return (
    recipe.allocation === "global" &&
    recipe.ratio > 0 &&
    criterion.structured === true &&
    recipe.obsNormalization === "stream"
  );
}

/** The allocation: global needs every layer's scores first (a dense pass unless dense calibration made one). */
async function select(
  job: Job,
  streams: Streams,
  batches: TokenBatch[],
  ops: Ops,
  run: RunContext,
  denseStats?: LayerStats,
): Promise<Selection> {
  const { recipe, units, criterion } = job;
  if (recipe.allocation !== "global" || recipe.ratio === 0)
    return Selection.uniform(units, criterion, recipe.ratio);
  let stats = denseStats;
  if (!stats && job.kinds.criterion.size > 0) {
    run.phase("scoring", "dense pass for global allocation");
    stats = await densePass(job, streams, batches, ops, run, job.kinds.criterion, needsGains(job));
    run.lap("scoring");
  }
  const nL = job.pruned.model.dims.nLayers;
  if (criterion.structured)
    run.phase("select", `${criterion.name}: every module's greedy path, then the costs ranked across layers`);
  return Selection.global(job.pruned.model, units, criterion, recipe.ratio, stats, {
    ops,
    recipe,
    grams: streams.grams,
    keepGrams: denseStats !== undefined,
    run,
    onModule: (layer, m) => {
      run.checkAborted();
      run.layer(layer, nL, m === "attn" ? "select heads" : "select FFN");
    },
  });
}

/** --resume: restore the finished layers (written again to the new output) and the streams after them. */
async function resume(
  job: Job,
  streams: Streams,
  output: PrunedOutput,
  layers: LayerReport[],
  removedHeads: number[][],
  run: RunContext,
): Promise<number> {
  const r = job.restored;
  if (!r) return 0;
  job.pruned.restoreDims(r.state.dims);
  for (let i = 0; i <= r.layerDone; i++) {
    job.pruned.restoreTensors(r.layerTensors(i));
    await output.writeLayer(i);
    streams.grams.take(i, "attn");
    streams.grams.take(i, "mlp");
  }
  layers.push(...r.state.layerReports);
  removedHeads.push(...r.state.removedHeads);
  if (job.sequential) streams.model.fill(r.streams("stream", streams.model.batches));
  if (job.reconstructor.needsCross) streams.dense.fill(r.streams("dense", streams.dense.batches));
  run.phase("resume", `layers 0..${r.layerDone} restored from ${job.checkpoints.dir}`);
  return r.layerDone + 1;
}

/** Load the model, check the settings and return the cost plan (with this machine's rates) — no pruning. */
export async function dryRun(recipe: Recipe): Promise<PrunePlan> {
  const base = loadModel(recipe.model);
  try {
    checkDepthSettings(base, recipe);
    const mods = planUnits(base, recipe);
    preflight(mods, recipe.ratio, recipe.allocation);
    const plan = estimatePlan(base, recipe, await measureRates(recipe.threads));
    checkMemory(plan, recipe.maxMemory);
    if (recipe.quantize)
      plan.quantization = quantizationCost(
        base,
        recipe.quantMethod,
        plan.calibrationTokens,
        recipe.seqLen,
        recipe.ratio,
        plan.rates,
      );
    return plan;
  } finally {
    base.close();
  }
}
