import path from "node:path";
import { loadModel } from "../arch/load.ts";
import { PareError } from "../errors.ts";
import { exportOnnxInto } from "../export/onnx.ts";
import { describePlan } from "../pipeline/plan.ts";
import { dryRun, type PruneEvent, runPrune } from "../pipeline/prune.ts";
import { type RecipeKey, readRecipeFile, recipeFlags, resolveRecipe } from "../pipeline/recipe.ts";
import type { Console } from "./io.ts";
import { buildReport } from "./report.ts";

/** the recipe's flags (strings as commander gives them; validated by resolveRecipe) plus the command's own */
export type PruneFlags = Partial<Record<RecipeKey, string | string[] | boolean>> & {
  recipe?: string;
  dryRun?: boolean;
  export?: string;
  report?: boolean;
  reportData?: string;
};

export async function pruneCommand(model: string, f: PruneFlags, con: Console): Promise<void> {
  const fromFile = f.recipe ? readRecipeFile(f.recipe) : {};
  const flags: Partial<Record<RecipeKey, unknown>> = {};
  for (const [k] of recipeFlags()) if (f[k] !== undefined) flags[k] = f[k];
  const recipe = resolveRecipe({ ...fromFile, ...flags, model });
  if (f.export !== undefined && f.export !== "onnx") {
    throw new PareError("E_USAGE", `unknown --export format "${f.export}"`, "--export onnx");
  }

  const onEvent = (e: PruneEvent) => {
    if (e.type === "phase") con.info(`» ${e.phase}${e.detail ? `: ${e.detail}` : ""}`);
    else if (e.type === "layer")
      con.progress(
        `  layer ${e.layer + 1}/${e.layers} ${e.step.padEnd(11)}`,
        e.layer + (e.step === "propagate" || e.step === "reconstruct" || e.step === "statistics" ? 1 : 0.5),
        e.layers,
      );
    else if (e.type === "plan") for (const l of describePlan(e.plan)) con.info(l);
    else con.info(`  note: ${e.message}`);
  };
  if (f.dryRun) {
    const plan = await dryRun(recipe);
    con.result({ dryRun: true, recipe, plan } as unknown as Record<string, unknown>, () =>
      describePlan(plan).join("\n"),
    );
    return;
  }
  const extra: Record<string, unknown> = {};
  // --export onnx: written into the output folder before it is published (all or nothing)
  const beforePublish = f.export
    ? (dir: string) => {
        con.info("» export: onnx/ inside the output folder");
        const m = loadModel(dir);
        try {
          const e = exportOnnxInto(m);
          for (const n of e.notes) con.info(`  note: ${n}`);
          extra.export = { ...e, out: path.resolve(recipe.out) };
        } finally {
          m.close();
        }
      }
    : undefined;
  const r = await runPrune(recipe, { onEvent, beforePublish });
  if (f.report) {
    con.info("» report");
    extra.report = (await buildReport(r.output, { data: f.reportData }, con)).file;
  }
  con.result({ ...(r as unknown as Record<string, unknown>), ...extra }, () => {
    const f0 = (n: number) => n.toLocaleString("en-US");
    const lines = [
      `pruned ${r.input.dir} → ${r.output}`,
      ...(r.target
        ? [
            `  target      ${r.target.speedup}× ${r.target.workload.kind}: ${r.target.candidates
              .map(
                (c) =>
                  `${c.chosen ? "[chosen] " : ""}--depth ${c.depth} --ratio ${c.ratio} (measured shapes ${c.predictedSpeedup.toFixed(2)}×, held-out loss ${c.loss.toFixed(4)})`,
              )
              .join("; ")}`,
          ]
        : []),
      ...(r.depth
        ? [
            `  depth       removed ${r.depth.removed.length} of ${r.depth.removed.length + r.depth.kept.length} blocks: ${r.depth.removed.join(", ")} (${r.depth.criterion}) · ${
              r.depth.compensation === "liar"
                ? `least-squares compensation (calibration error ${r.depth.folds.map((f) => `${f.relError.dropped} → ${f.relError.fitted}`).join(", ") || "none to fold"})`
                : "dropped, no compensation"
            }`,
          ]
        : []),
      recipe.ratio === 0 && r.depth
        ? "  width       none (--ratio 0)"
        : `  method      ${recipe.criterion} · ${recipe.allocation} · ${recipe.reconstruct} · ${recipe.calibration} calibration`,
      r.calibration ? `  calibration ${r.calibration.protocol}` : "  calibration none (weights only)",
      `  ratio       requested ${recipe.ratio}, achieved ${r.achievedRatio.toFixed(4)} of attention+MLP parameters`,
      `  params      attention+MLP ${f0(r.params.before.prunable)} → ${f0(r.params.after.prunable)};  total ${f0(r.params.before.total)} → ${f0(r.params.after.total)}`,
      "  layer  heads    kv     FFN",
      ...r.layers.map(
        (l) =>
          `  ${(r.depth ? `${l.layer} (was ${r.depth.kept[l.layer]})` : String(l.layer)).padStart(5)}  ${`${l.heads[0]}→${l.heads[1]}`.padEnd(8)} ${`${l.kvHeads[0]}→${l.kvHeads[1]}`.padEnd(6)} ${l.ffn[0]}→${l.ffn[1]}${l.skipped ? "  (skipped)" : ""}`,
      ),
      `  time        ${Object.entries(r.timings)
        .map(([k, v]) => `${k} ${v.toFixed(2)}s`)
        .join(", ")}`,
      ...(r.busySeconds
        ? [
            `  busy        forward ${r.busySeconds.forward.toFixed(1)}s, statistics ${r.busySeconds.statistics.toFixed(1)}s, solves ${r.busySeconds.solve.toFixed(1)}s, output ${r.busySeconds.output.toFixed(1)}s`,
          ]
        : []),
      "  report      pare-pruning.json in the output folder",
    ];
    if (extra.export)
      lines.push("  export      onnx/model.onnx in the output folder (transformers.js layout)");
    if (extra.report) lines.push(`  html        ${extra.report}`);
    return lines.join("\n");
  });
}
