/**
 * The write stage: the pruned model folder, filled while the prune runs. Each pruned layer is written (shard
 * by shard, in the input's dtype and stored layout) as soon as it is done and its tensors dropped from memory;
 * `finish` writes what is left (embeddings, final norm, head, biases the config now declares), config.json,
 * the tokenizer files and pare-pruning.json, and renames the temporary sibling folder into place. `abort`
 * removes it.
 */
import path from "node:path";
import { storedTensors } from "../arch/fused.ts";
import type { LoadedModel } from "../arch/load.ts";
import { buildModel } from "../arch/model.ts";
import { countParams, type ParamCounts } from "../arch/params.ts";
import { AtomicDir } from "../export/atomic.ts";
import { fillFolderFiles } from "../export/folder.ts";
import { ShardWriter } from "../io/shardWriter.ts";
import { runtimeVersions } from "../runtime/ort.ts";
import { prunedConfig } from "../surgery/surgery.ts";
import { PARE_VERSION } from "../version.ts";
import type { RunContext } from "./context.ts";
import type { PrunePlan } from "./plan.ts";
import type { PrunedModel } from "./prunedModel.ts";
import type { Recipe } from "./recipe.ts";
import type { DepthReport, LayerReport, PruneReport } from "./types.ts";

export { PARE_VERSION };

/** the stored name of a tensor (a fused tensor's view part → the fused tensor) */
const storedName = (n: string) => n.replace(/\[[a-z]+\](\.weight|\.bias)$/, "$1");

/** What the report says beyond the model itself. */
export interface ReportParts {
  inputFiles: Record<string, string>;
  calibration?: { sequences: number; tokens: number; protocol: string };
  before: ParamCounts;
  plan: PrunePlan;
  layers: LayerReport[];
  removedHeads: number[][];
  depth?: DepthReport;
}

export class PrunedOutput {
  private readonly written = new Set<string>();

  private constructor(
    private readonly out: AtomicDir,
    private readonly writer: ShardWriter,
    readonly dtype: "F32" | "F16" | "BF16",
    private readonly pruned: PrunedModel,
    private readonly run: RunContext,
  ) {}

  /** The temporary output folder (E_OUTPUT_EXISTS unless `force`) and its shard writer. */
  static open(recipe: Recipe, input: LoadedModel, pruned: PrunedModel, run: RunContext): PrunedOutput {
    const src = new Set(input.dtypes);
    const dtype =
      recipe.dtype !== "auto"
        ? recipe.dtype
        : src.size === 1 && (src.has("F16") || src.has("BF16"))
          ? ([...src][0] as "F16" | "BF16")
          : "F32";
    const out = AtomicDir.open(recipe.out, recipe.force);
    const nL = pruned.model.dims.nLayers;
    const layerNames = Array.from({ length: nL }, (_, i) => pruned.layerNames(i)).flat();
    const writer = new ShardWriter(out.dir, {
      dtype,
      expectedNames: [...new Set([...pruned.dense.weights.names(), ...layerNames].map(storedName))],
    });
    return new PrunedOutput(out, writer, dtype, pruned, run);
  }

  /** write these tensors in the family's stored layout (fused parts concatenated) and drop them from memory */
  private emit(names: string[]): void {
    const w = this.pruned.weights;
    for (const t of storedTensors(this.pruned.model.spec, names, w)) {
      this.writer.add(t.name, t.shape, t.read());
      for (const n of t.from) {
        this.written.add(n);
        w.release(n);
      }
    }
  }

  /** Write layer i's tensors now and drop the pruned copies from memory. */
  writeLayer(i: number): Promise<void> {
    const w = this.pruned.weights;
    return this.run.timed("output", () =>
      this.emit(this.pruned.layerNames(i).filter((name) => w.has(name) && !this.written.has(name))),
    );
  }

  /**
   * The rest of the weights, config.json, tokenizer files and pare-pruning.json; then `beforeCommit` on the
   * complete temporary folder (--quantize's GPTQ rewrite, an export); then the folder is renamed into place.
   */
  async finish(
    recipe: Recipe,
    input: LoadedModel,
    parts: ReportParts,
    beforeCommit?: (dir: string) => void | Promise<void>,
  ): Promise<PruneReport> {
    const { run, pruned } = this;
    const model = pruned.model;
    const weights = pruned.weights;
    const layers = model.dims.layers.map((l) => ({ ...l, bias: { ...l.bias } }));
    const { config, notes } = prunedConfig(
      model,
      layers,
      parts.removedHeads,
      weights,
      pruned.dense.dims.layers,
    );
    run.notes.push(...notes);
    // the weights are written in float: a quantized input's quantization_config no longer describes them
    // (--quantize writes its own afterwards)
    if (config.quantization_config !== undefined) {
      delete config.quantization_config;
      run.notes.push(
        "the input was quantized: the output holds its dequantized weights in float (no quantization_config)",
      );
    }
    // the written config must describe the written weights exactly
    const after = countParams(buildModel(config, weights));
    const strip = ({ perLayer: _p, ...rest }: ParamCounts) => rest;
    // everything not written with its layer: embeddings, final norm, head, biases the config now declares
    await run.timed("output", () => {
      this.emit(
        weights
          .names()
          .sort()
          .filter((name) => !this.written.has(name)),
      );
      this.writer.close();
    });
    const report: PruneReport = {
      pare: PARE_VERSION,
      versions: { pare: PARE_VERSION, ...runtimeVersions() },
      created: new Date().toISOString(),
      recipe,
      input: { dir: input.dir, family: model.spec.family, files: parts.inputFiles },
      output: path.resolve(recipe.out),
      calibration: parts.calibration,
      params: { before: strip(parts.before), after: strip(after) },
      requestedRatio: recipe.ratio,
      plan: parts.plan,
      achievedRatio: 1 - after.prunable / parts.before.prunable,
      layers: parts.layers,
      depth: parts.depth,
      timings: run.timings,
      busySeconds: run.busy,
      notes: run.notes,
    };
    fillFolderFiles(this.out.dir, {
      config,
      dtype: this.dtype,
      auxFrom: input.dir,
      json: { "pare-pruning.json": report },
    });
    if (beforeCommit) await beforeCommit(this.out.dir);
    this.out.commit();
    return report;
  }

  /** Remove the temporary output (after a failure). */
  abort(): void {
    this.writer.abort();
    this.out.abort();
  }
}
