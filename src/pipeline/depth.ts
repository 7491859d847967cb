/**
 * The depth stage (before any width pruning): choose decoder blocks to remove from the calibration hidden
 * states (bi | angular | sleb, src/depth/criteria.ts), compensate each removed span by refitting the down
 * projection of the block before it (liar; src/depth/fit.ts) or drop it (none), and hand the width stages a
 * view of the input with the kept blocks renumbered (src/surgery/depth.ts).
 *
 *   dense pass   h_0 (embeddings) … h_L: every block's input on the calibration windows
 *   choose       scores from h (bi, angular) or calibration losses of candidate models (sleb)
 *   compensate   in order along the pruned model's stream: the block before each removed span refits its down
 *                projection so that its output matches the unpruned model's stream after the span
 */
import { CachedWeights } from "../arch/cache.ts";
import { layerLinearElems } from "../arch/groups.ts";
import type { LoadedModel } from "../arch/load.ts";
import type { Model } from "../arch/model.ts";
import { CrossAccumulator, TapAccumulator, validRows } from "../calib/stats.ts";
import { chooseByInfluence, chooseSpan, cosineSums, removedRuns } from "../depth/criteria.ts";
import { fitFold } from "../depth/fit.ts";
import { PareError } from "../errors.ts";
import { headNll } from "../ops/head.ts";
import { type Ops, type TokenBatch, WHOLE_LAYER } from "../ops/index.ts";
import { RIDGE_DEFAULT } from "../reconstruct/index.ts";
import { depthConfig, depthOverlay, depthView, keptDims } from "../surgery/depth.ts";
import { declareCreatedBiases } from "../surgery/surgery.ts";
import { calibrationWindows } from "./calibrate.ts";
import type { RunContext } from "./context.ts";
import { canHoldBias, consumer } from "./prepare.ts";
import type { Recipe } from "./recipe.ts";
import type { DepthReport } from "./types.ts";

type Stream = Float32Array[]; // per batch [b·T, D]

/** Blocks to remove: --depth n, or round(--depth-ratio · layers). */
export function depthCount(recipe: Pick<Recipe, "depth" | "depthRatio">, nLayers: number): number {
  return recipe.depth > 0 ? recipe.depth : Math.round(recipe.depthRatio * nLayers);
}

/** Depth settings against the model, before any work (also for --dry-run). */
export function checkDepthSettings(model: Model, recipe: Recipe): number {
  const nL = model.dims.nLayers;
  const n = depthCount(recipe, nL);
  if (n === 0) return 0;
  if (model.spec.kind !== "decoder")
    throw new PareError(
      "E_RECIPE_INVALID",
      `depth pruning removes decoder blocks; ${model.spec.family} is an encoder`,
      "prune encoders by width: drop --depth / --depth-ratio",
    );
  if (n >= nL)
    throw new PareError(
      "E_RECIPE_INVALID",
      `--depth ${n}: the model has ${nL} blocks and at least one must stay`,
      `remove at most ${nL - 1} blocks`,
    );
  const allowed = nL - new Set(recipe.skipLayers.filter((s) => s < nL)).size;
  if (n > allowed)
    throw new PareError(
      "E_RECIPE_INVALID",
      `--depth ${n}: only ${allowed} blocks may be removed (--skip-layers keeps ${nL - allowed})`,
      "remove fewer blocks or skip fewer layers",
    );
  if (recipe.calib.length === 0)
    throw new PareError(
      "E_RECIPE_INVALID",
      "depth pruning chooses blocks from calibration activations",
      "add --calib <file.txt|file.jsonl>",
    );
  return n;
}

/** The memory the stage holds: every block boundary's hidden states (bytes). */
export function depthBytes(model: Model, tokens: number): number {
  return (model.dims.nLayers + 1) * tokens * model.dims.hidden * 4;
}

export async function depthStage(
  input: LoadedModel,
  recipe: Recipe,
  run: RunContext,
  ops: Ops,
  budgetBytes: number,
): Promise<{ model: LoadedModel; report: DepthReport }> {
  const n = checkDepthSettings(input, recipe);
  const nL = input.dims.nLayers;
  const D = input.dims.hidden;
  const { calib, embedded } = await calibrationWindows(input, input.dir, recipe, run, ops);
  const batches = calib.batches;
  const need = depthBytes(input, calib.tokens) * (recipe.depthCriterion === "sleb" ? 2 : 1);
  if (need > budgetBytes)
    throw new PareError(
      "E_MEMORY_BUDGET",
      `depth pruning holds every block's calibration hidden states: ${(need / 1024 ** 3).toFixed(2)} GiB, over the ${(budgetBytes / 1024 ** 3).toFixed(2)} GiB budget`,
      "use fewer --samples or a shorter --seq-len, or raise --max-memory",
    );

  // dense pass: h[ℓ] = input of block ℓ (h[L]: output of the last block); weights read once per layer
  run.phase("depth", `${recipe.depthCriterion}: hidden states of every block`);
  const largest = Math.max(
    ...input.dims.layers.map((L) => layerLinearElems(input.spec, L, D, input.dims.headDim)),
  );
  const dense: Model = {
    ...input,
    weights: new CachedWeights(input.weights, Math.max(64 << 20, 3 * 4 * largest)),
  };
  const h: Stream[] = [embedded];
  for (let i = 0; i < nL; i++) {
    run.layer(i, nL, "depth statistics");
    h.push(await forward(dense, i, h[i], batches, ops, run));
  }
  run.lap("depth statistics");

  // choose
  const allowed = (l: number) => l >= 0 && l < nL && !recipe.skipLayers.includes(l);
  const round4 = (v: number) => (Number.isFinite(v) ? Number(v.toPrecision(4)) : null);
  let removed: number[];
  let scores: (number | null)[];
  let rounds: DepthReport["rounds"];
  if (recipe.depthCriterion === "sleb") {
    const r = await sleb(dense, h, batches, n, allowed, ops, run);
    removed = r.removed;
    scores = r.first.map(round4);
    rounds = r.rounds;
  } else {
    const span = recipe.depthCriterion === "angular" ? n : 1;
    const d = Array.from({ length: nL - span + 1 }, (_, l) => {
      let cos = 0;
      let angle = 0;
      let cnt = 0;
      batches.forEach((b, k) => {
        const s = cosineSums(h[l][k], h[l + span][k], D, b.mask);
        cos += s.cos;
        angle += s.angle;
        cnt += s.n;
      });
      return recipe.depthCriterion === "angular" ? angle / cnt / Math.PI : 1 - cos / cnt;
    });
    const chosen =
      recipe.depthCriterion === "angular" ? chooseSpan(d, n, allowed) : chooseByInfluence(d, n, allowed);
    removed = chosen.removed;
    scores = chosen.scores.map(round4);
  }
  const kept = Array.from({ length: nL }, (_, l) => l).filter((l) => !removed.includes(l));
  run.lap("depth selection");

  // compensate
  const overlay = depthOverlay(input, kept);
  const config = depthConfig(input, kept);
  let view = depthView(input, kept, overlay, config);
  const folds: DepthReport["folds"] = [];
  const notes: string[] = [];
  if (recipe.reconstruct !== "none") {
    run.phase("depth", "compensating the removed spans (least squares, folded into the down projection)");
    const runs = removedRuns(removed);
    if (runs[0][0] === 0) {
      notes.push(
        "depth: block 0 was removed and no block precedes it to fold a compensation into: that span is dropped uncompensated",
      );
    }
    const original = keptDims(input, kept);
    // the pruned model's stream, from the first block that compensates (before it, it equals the unpruned one)
    const first = runs.find((r) => r[0] > 0);
    if (first) {
      let p = first[0] - 1; // original index
      let x: Stream = h[p];
      while (p < nL) {
        if (removed.includes(p)) {
          p++;
          continue;
        }
        const j = kept.indexOf(p);
        const span = runs.find((r) => r[0] === p + 1);
        run.checkAborted();
        if (!span) {
          run.layer(j, kept.length, "depth propagate");
          x = await forward(view, j, x, batches, ops, run);
          p++;
          continue;
        }
        run.layer(j, kept.length, "depth compensation");
        const target = h[span[1] + 1];
        const outNorm = view.spec.names.mlpOutNorm;
        if (outNorm) {
          // the FFN output is normalized before the residual: the fit scales the norm's channels instead
          const fit = await compensateScale(view, j, x, target, batches, recipe, ops, run);
          overlay.set(`${view.path(outNorm, j)}.weight`, { shape: [D], data: fit.weight });
          view = depthView(input, kept, overlay, config);
          const out = await forward(view, j, x, batches, ops, run);
          folds.push({
            layer: p,
            span: [span[0], span[1]],
            ridge: fit.alpha,
            relError: {
              dropped: round4(fit.errBefore / fit.norm),
              fitted: round4(residual(out, target, batches, D) / fit.norm),
            },
          });
          x = out;
          p = span[1] + 1;
          continue;
        }
        const fold = await compensate(view, j, x, target, batches, recipe, ops, run, input, p);
        const { mod } = consumer(view, j, "mlp");
        overlay.set(`${mod}.weight`, { shape: [D, fold.dIn], data: fold.W });
        if (fold.b) overlay.set(`${mod}.bias`, { shape: [D], data: fold.b });
        if (fold.b && !view.dims.layers[j].bias.down) {
          // a created bias: the family's flag declares it (and zero biases where the flag implies them)
          const layers = view.dims.layers.map((l, k) => ({
            ...l,
            bias: { ...l.bias, down: l.bias.down || k === j },
          }));
          notes.push(...declareCreatedBiases(config, view, layers, overlay, original));
        }
        view = depthView(input, kept, overlay, config);
        const out = await forward(view, j, x, batches, ops, run);
        const errAfter = residual(out, target, batches, D);
        folds.push({
          layer: p,
          span: [span[0], span[1]],
          ridge: fold.alphaUsed,
          relError: { dropped: round4(fold.errBefore / fold.norm), fitted: round4(errAfter / fold.norm) },
        });
        if (fold.retries > 0)
          notes.push(`depth: the fit after block ${p} needed ridge α=${fold.alphaUsed} (Cholesky retries)`);
        x = out;
        p = span[1] + 1;
      }
    }
    run.lap("depth compensation");
  }
  h.length = 0;
  const model: LoadedModel = {
    ...view,
    dir: input.dir,
    hasTokenizer: input.hasTokenizer,
    dtypes: input.dtypes,
    close: () => {},
  };
  return {
    model,
    report: {
      criterion: recipe.depthCriterion,
      unit: "block",
      removed,
      kept,
      scores,
      rounds,
      compensation: recipe.reconstruct === "none" ? "none" : "liar",
      calibration: { sequences: calib.sequences, tokens: calib.tokens, protocol: calib.protocol },
      folds,
      notes,
    },
  };
}

/** Block i of `model` on every batch of stream x. */
async function forward(model: Model, i: number, x: Stream, batches: TokenBatch[], ops: Ops, run: RunContext) {
  const out: Stream = [];
  for (let k = 0; k < batches.length; k++) {
    run.checkAborted();
    const r = await run.timed("forward", () =>
      ops.layers.run(model, i, WHOLE_LAYER, { x: x[k] }, batches[k]),
    );
    out.push(r.out!);
  }
  return out;
}

/** Σ‖a − b‖² over the valid rows. */
function residual(a: Stream, b: Stream, batches: TokenBatch[], D: number): number {
  let s = 0;
  batches.forEach((bt, k) => {
    const x = a[k];
    const y = b[k];
    bt.mask.forEach((m, t) => {
      if (!m) return;
      for (let c = t * D; c < (t + 1) * D; c++) s += (x[c] - y[c]) ** 2;
    });
  });
  return s;
}

/** Refit block j's down projection on stream x to reach `target` (the unpruned stream after the span). */
async function compensate(
  view: Model,
  j: number,
  x: Stream,
  target: Stream,
  batches: TokenBatch[],
  recipe: Recipe,
  ops: Ops,
  run: RunContext,
  input: Model,
  original: number,
) {
  const D = view.dims.hidden;
  const { mod, dIn } = consumer(view, j, "mlp");
  const gram = new TapAccumulator(dIn, new Set(["gram"]), undefined, recipe.gramPrecision, ops);
  const cross = new CrossAccumulator(dIn, D, undefined, ops);
  let errBefore = 0;
  let norm = 0;
  for (let k = 0; k < batches.length; k++) {
    run.checkAborted();
    const b = batches[k];
    const r = await run.timed("forward", () =>
      ops.layers.run(view, j, { from: "x", outputs: ["mid", "mlpIn", "out"] }, { x: x[k] }, b),
    );
    // Y = target − mid: what the refitted down projection should add to the stream
    const mid = r.mid;
    if (!mid)
      throw new PareError(
        "E_INTERNAL",
        `internal: no mid stream for ${view.spec.family}`,
        "this is a bug in pare; please report it",
      );
    const y = new Float32Array(target[k].length);
    for (let c = 0; c < y.length; c++) y[c] = target[k][c] - mid[c];
    await run.timed("statistics", async () => {
      const a = validRows(r.mlpIn!, dIn, b.mask);
      await gram.add(a.rows, a.n);
      await cross.add(a.rows, validRows(y, D, b.mask).rows, a.n);
    });
    errBefore += residual([r.out!], [target[k]], [b], D);
    norm += residual([target[k]], [mid], [b], D); // ‖Y‖²
  }
  const stats = await gram.finish();
  const C = await cross.finish();
  const w = view.weights;
  const fit = await run.timed("solve", () =>
    fitFold({
      gram: stats.gram!,
      cross: C,
      W: w.get(`${mod}.weight`),
      b: w.has(`${mod}.bias`) ? w.get(`${mod}.bias`) : undefined,
      dOut: D,
      dIn,
      // --ridge auto chooses per width module on held-out windows; the depth fit uses the default α then
      alpha: typeof recipe.ridge === "number" ? recipe.ridge : RIDGE_DEFAULT,
      intercept: canHoldBias(input, original, "mlp", recipe.createBias),
      where: `depth: block ${original}'s FFN down projection`,
      ops,
    }),
  );
  return { ...fit, dIn, errBefore, norm };
}

/**
 * Compensation where the FFN output passes through a norm before the residual (out = mid + n̂ ⊙ s, n̂ the
 * normalized down projection, s = offset + w the norm's scale): refit s per channel,
 *   s'_c = argmin Σ_t (n̂_tc s'_c − Y_tc)² + λ (s'_c − s_c)² = (Σ n̂Y + λ s_c) / (Σ n̂² + λ),  λ = α · mean_c Σ n̂²,
 * with Y = target − mid as for the down-projection fit; n̂ = (out − mid) / s (channels with s_c = 0 keep w).
 */
async function compensateScale(
  view: Model,
  j: number,
  x: Stream,
  target: Stream,
  batches: TokenBatch[],
  recipe: Recipe,
  ops: Ops,
  run: RunContext,
) {
  const D = view.dims.hidden;
  const name = `${view.path(view.spec.names.mlpOutNorm!, j)}.weight`;
  const w = view.weights.get(name);
  const off = view.spec.block.normOffset;
  const s = Float64Array.from(w, (v) => v + off);
  const nn = new Float64Array(D); // Σ n̂²
  const ny = new Float64Array(D); // Σ n̂ Y
  let errBefore = 0;
  let norm = 0;
  for (let k = 0; k < batches.length; k++) {
    run.checkAborted();
    const b = batches[k];
    const r = await run.timed("forward", () =>
      ops.layers.run(view, j, { from: "x", outputs: ["mid", "out"] }, { x: x[k] }, b),
    );
    const mid = r.mid;
    if (!mid)
      throw new PareError(
        "E_INTERNAL",
        `internal: no mid stream for ${view.spec.family}`,
        "this is a bug in pare",
      );
    const out = r.out!;
    const tg = target[k];
    b.mask.forEach((m, t) => {
      if (!m) return;
      for (let c = 0; c < D; c++) {
        const i = t * D + c;
        const y = tg[i] - mid[i];
        errBefore += (out[i] - tg[i]) ** 2;
        norm += y * y;
        if (s[c] === 0) continue;
        const n = (out[i] - mid[i]) / s[c];
        nn[c] += n * n;
        ny[c] += n * y;
      }
    });
  }
  const alpha = typeof recipe.ridge === "number" ? recipe.ridge : RIDGE_DEFAULT;
  let mean = 0;
  for (const v of nn) mean += v / D;
  const lambda = alpha * mean;
  const weight = Float32Array.from(w);
  for (let c = 0; c < D; c++)
    if (s[c] !== 0 && nn[c] + lambda > 0) weight[c] = (ny[c] + lambda * s[c]) / (nn[c] + lambda) - off;
  return { weight, alpha, errBefore, norm };
}

/**
 * SLEB: remove, n times, the allowed block whose removal gives the least calibration loss (NLL per token),
 * re-measured on the model without the blocks removed so far. `h`: the unpruned model's block inputs.
 */
async function sleb(
  input: Model,
  h: Stream[],
  batches: TokenBatch[],
  n: number,
  allowed: (l: number) => boolean,
  ops: Ops,
  run: RunContext,
): Promise<{ removed: number[]; first: number[]; rounds: { removed: number; loss: number }[] }> {
  const nL = input.dims.nLayers;
  const removed: number[] = [];
  // cur[ℓ]: the input of block ℓ in the model without `removed` (blocks before the first removal: h)
  let cur = h.slice();
  const rounds: { removed: number; loss: number }[] = [];
  let first: number[] = [];
  const loss = async (from: number, x: Stream, skip: Set<number>) => {
    let s = x;
    for (let l = from; l < nL; l++) if (!skip.has(l)) s = await forward(input, l, s, batches, ops, run);
    let sum = 0;
    let cnt = 0;
    for (let k = 0; k < batches.length; k++) {
      const r = await run.timed("forward", () => headNll(ops.sessions, input, s[k], batches[k]));
      sum += r.sum;
      cnt += r.n;
    }
    return sum / cnt;
  };
  for (let round = 0; round < n; round++) {
    run.phase("depth", `sleb: round ${round + 1} of ${n}`);
    const losses = new Array<number>(nL).fill(Number.NaN);
    for (let k = 0; k < nL; k++) {
      if (!allowed(k) || removed.includes(k)) continue;
      run.layer(k, nL, "sleb candidate");
      losses[k] = await loss(k + 1, cur[k], new Set(removed));
    }
    if (round === 0) first = losses;
    let best = -1;
    losses.forEach((v, k) => {
      if (Number.isFinite(v) && (best < 0 || v < losses[best])) best = k;
    });
    removed.push(best);
    rounds.push({ removed: best, loss: Number(losses[best].toPrecision(6)) });
    // the inputs of the blocks after `best` in the model without it
    const next = cur.slice(0, best + 1);
    next[best + 1] = cur[best];
    for (let l = best + 1; l < nL; l++) {
      next[l + 1] = removed.includes(l) ? next[l] : await forward(input, l, next[l], batches, ops, run);
    }
    cur = next;
  }
  return { removed: removed.sort((a, b) => a - b), first, rounds };
}
