/**
 * The plan stage: before any work, check the settings against the model, list the prunable units, make the
 * cost plan (refused when it does not fit --max-memory), and open the checkpoints (--resume).
 */
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { type ModuleUnits, preflight } from "../allocate/allocate.ts";
import { consumerWidth, unitCost } from "../arch/groups.ts";
import type { LoadedModel } from "../arch/load.ts";
import { checkFinite, type LayerDims, type Model } from "../arch/model.ts";
import { countParams, type ParamCounts } from "../arch/params.ts";
import type { StatKind } from "../calib/moments.ts";
import { CRITERIA, type Criterion } from "../criteria/index.ts";
import { PareError } from "../errors.ts";
import { RECONSTRUCTORS, type Reconstructor } from "../reconstruct/index.ts";
import { Checkpoints, type Restored, resumeKey } from "./checkpoint.ts";
import type { RunContext } from "./context.ts";
import { checkMemory, estimatePlan, measureRates, type PrunePlan } from "./plan.ts";
import { PrunedModel } from "./prunedModel.ts";
import type { Recipe } from "./recipe.ts";
import type { LayerReport, Module } from "./types.ts";

/** What a resume continues with (saved in each checkpoint). */
export interface CheckpointState {
  dims: LayerDims[];
  layerReports: LayerReport[];
  removedHeads: number[][];
}

/** Everything the later stages need to know, decided before any work. */
export interface Job {
  recipe: Recipe;
  input: LoadedModel;
  pruned: PrunedModel;
  units: ModuleUnits[];
  plan: PrunePlan;
  before: ParamCounts;
  inputFiles: Record<string, string>;
  criterion: Criterion;
  reconstructor: Reconstructor;
  /** statistics of the consumer inputs: for the criterion, for the reconstruction, for both */
  kinds: {
    criterion: ReadonlySet<StatKind>;
    reconstruction: ReadonlySet<StatKind>;
    all: ReadonlySet<StatKind>;
  };
  /** layer ℓ is calibrated on the outputs of the pruned layers 0..ℓ−1 */
  sequential: boolean;
  checkpoints: Checkpoints<CheckpointState>;
  restored?: Restored<CheckpointState>;
}

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

/** Consumer of a module (o_proj / down_proj): its module path and input width. */
export function consumer(model: Model, i: number, m: Module): { mod: string; dIn: number } {
  const L = model.dims.layers[i];
  const role = model.spec.groups[m].consumer;
  return {
    mod: model.path(model.spec.names[role]!, i),
    dIn: consumerWidth(model.spec, m, L, model.dims.headDim),
  };
}

/**
 * Can this consumer carry a bias in a config stock loaders read? (it has one, or the family has a flag for it and
 * the recipe lets reconstruction create biases)
 */
export function canHoldBias(
  model: Model,
  i: number,
  m: Module,
  createBias: Recipe["createBias"] = "auto",
): boolean {
  const L = model.dims.layers[i];
  const has = L.bias[model.spec.groups[m].consumer];
  const flag = model.spec.biasFlags?.[m === "attn" ? "attention" : "mlp"] !== undefined;
  return has || (createBias === "auto" && flag);
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

/** Settings that cannot work for this model fail here, before checkpoints or outputs exist. */
function checkSettings(model: Model, recipe: Recipe, run: RunContext): void {
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
      i < nL ? (["attn", "mlp"] as Module[]).filter((m) => !canHoldBias(model, i, m, recipe.createBias)) : [],
    );
    if (cannot.length) {
      throw new PareError(
        "E_RECIPE_INVALID",
        `bias compensation needs ${cannot.includes("attn") ? "o_proj" : "down_proj"} biases, which a ${model.spec.family} config cannot declare (stock loaders would drop them)`,
        "use --reconstruct liar (it then fits without an intercept) or --reconstruct none",
      );
    }
  }
  if (recipe.createBias === "never") {
    run.notes.push(
      "--create-bias never: reconstruction fits without an intercept where a consumer has no bias, so no new biases are created",
    );
  } else if (!canHoldBias(model, 0, "attn") || !canHoldBias(model, 0, "mlp")) {
    run.notes.push(
      `${model.spec.family}'s config cannot declare created o_proj/down_proj biases: reconstruction fits without an intercept so that stock loaders read the model exactly`,
    );
  }
}

export async function prepare(
  input: LoadedModel,
  recipe: Recipe,
  run: RunContext,
  heldBudgetBytes?: number,
): Promise<Job> {
  const inputFiles = inputHashes(input.dir);
  checkFinite(input); // NaN/Inf anywhere fails now, before checkpoints or outputs exist
  const { checkpoints, restored } = Checkpoints.open<CheckpointState>(
    recipe.out,
    resumeKey(recipe, inputFiles),
    recipe.resume,
  );
  if (recipe.resume && !restored)
    run.notes.push("--resume: no checkpoints found, starting from the first layer");
  const pruned = new PrunedModel(input);
  checkSettings(pruned.model, recipe, run);
  const units = planUnits(pruned.model, recipe);
  preflight(units, recipe.ratio, recipe.allocation);
  // nothing to remove by width (e.g. --depth alone): no scores, no reconstruction, no calibration
  const widthOff = recipe.ratio === 0;
  const planned = widthOff
    ? { ...recipe, criterion: "magnitude-l2" as const, reconstruct: "none" as const }
    : recipe;
  const plan = estimatePlan(pruned.dense, planned, await measureRates(recipe.threads), heldBudgetBytes);
  checkMemory(plan, recipe.maxMemory);
  run.event({ type: "plan", plan });
  const criterion: Criterion = CRITERIA[planned.criterion];
  const reconstructor: Reconstructor = RECONSTRUCTORS[planned.reconstruct];
  const crit = new Set<StatKind>(criterion.needs);
  const rec = new Set<StatKind>(reconstructor.needs);
  const all = new Set<StatKind>([...crit, ...rec]);
  return {
    recipe,
    input,
    pruned,
    units,
    plan,
    before: countParams(pruned.model),
    inputFiles,
    criterion,
    reconstructor,
    kinds: { criterion: crit, reconstruction: rec, all },
    sequential: recipe.calibration === "sequential" && all.size > 0,
    checkpoints,
    restored,
  };
}
