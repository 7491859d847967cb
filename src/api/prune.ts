/** `prune` and `planPrune`: the library's entry to the pruning pipeline (validated settings, progress, abort). */
import { PareError } from "../errors.ts";
import type { PrunePlan } from "../pipeline/plan.ts";
import { dryRun, type PruneEvent, type PruneReport, runPrune } from "../pipeline/prune.ts";
import { type RecipeOptions, resolveRecipe } from "../pipeline/recipe.ts";

export type { PruneEvent, PrunePlan, PruneReport };

export interface PruneOptions extends RecipeOptions {
  /** progress: phases, per-layer steps, the cost plan, notes */
  onProgress?: (event: PruneEvent) => void;
  /** stops the prune between steps with E_ABORTED; nothing is written (checkpoints stay for `resume`) */
  signal?: AbortSignal;
}

function aborted(): PareError {
  return new PareError("E_ABORTED", "the prune was aborted", "run it again (with resume: true to continue)");
}

/**
 * Prune a model folder into `out`: settings are checked before any work (a PareError with a code otherwise),
 * then the LIAR pipeline runs; the result is also written to `out/pare-pruning.json`.
 */
export async function prune(options: PruneOptions): Promise<PruneReport> {
  const { onProgress, signal, ...settings } = options;
  const recipe = resolveRecipe(settings);
  if (signal?.aborted) throw aborted();
  // the pipeline reports progress between steps: an abort is raised there, and cleans up like any failure
  const onEvent = (e: PruneEvent) => {
    if (signal?.aborted) throw aborted();
    onProgress?.(e);
  };
  return runPrune(recipe, onEvent, { signal } as Parameters<typeof runPrune>[2]);
}

/** The cost plan of a prune (layer passes, FLOPs, peak memory, estimated time on this machine); no pruning. */
export async function planPrune(options: RecipeOptions): Promise<PrunePlan> {
  return dryRun(resolveRecipe(options));
}
