/**
 * `quantize`: a model folder → a Hugging Face GPTQ folder (bits 4 or 8, groups, symmetric or not), with GPTQ
 * (Frantar et al. 2023) on calibration text, layer by layer (quant/sequential.ts), or round-to-nearest without
 * calibration. Embeddings, norms and the LM head stay in the input precision. Settings are checked before any
 * work; the output appears complete or not at all; nothing is printed.
 */
import fs from "node:fs";
import { CachedWeights } from "../arch/cache.ts";
import { loadModel } from "../arch/load.ts";
import { PareError } from "../errors.ts";
import { Ops } from "../ops/index.ts";
import { calibrationWindows } from "../pipeline/calibrate.ts";
import { RunContext } from "../pipeline/context.ts";
import { resolveRecipe } from "../pipeline/recipe.ts";
import type { PruneEvent } from "../pipeline/types.ts";
import { writeGptqFolder } from "../quant/folder.ts";
import { headName, quantizeHead } from "../quant/head.ts";
import type { QuantizedLinear } from "../quant/linear.ts";
import { checkQuantizable, type LinearQuantReport, quantizeLayer } from "../quant/sequential.ts";
import { checkQuantSettings, type QuantBits, type QuantMethod } from "../quant/settings.ts";
import { OverlayWeights } from "../surgery/surgery.ts";

export interface QuantizeOptions {
  model: string;
  out: string;
  bits?: QuantBits;
  /** default 128 */
  groupSize?: number;
  /** default "gptq" */
  method?: QuantMethod;
  /** asymmetric grid (default symmetric) */
  asym?: boolean;
  /** GPTQ's column order: "act" (default: decreasing Hessian diagonal, static groups) or "natural" */
  gptqOrder?: "act" | "natural";
  /** also quantize the LM head (untied heads only) */
  quantizeHead?: boolean;
  /** calibration text files (GPTQ needs them) */
  calib?: string[];
  samples?: number;
  seqLen?: number;
  seed?: number;
  batchSize?: number;
  force?: boolean;
  onProgress?: (e: PruneEvent) => void;
  signal?: AbortSignal;
}

export interface QuantizeReport {
  out: string;
  bits: number;
  groupSize: number;
  sym: boolean;
  method: QuantMethod;
  linears: LinearQuantReport[];
  notes: string[];
  seconds: number;
  /** bytes of the output's model.safetensors */
  bytes: number;
}

function gptqOrderIsAct(o: string): boolean {
  if (o !== "act" && o !== "natural")
    throw new PareError(
      "E_USAGE",
      `GPTQ order ${JSON.stringify(o)} is unknown`,
      "use --gptq-order act or natural",
      {
        gptqOrder: o,
      },
    );
  return o === "act";
}

export async function quantize(o: QuantizeOptions): Promise<QuantizeReport> {
  const s = checkQuantSettings({
    bits: o.bits,
    groupSize: o.groupSize,
    method: o.method,
    sym: o.asym === undefined ? undefined : !o.asym,
    actOrder: o.gptqOrder === undefined ? undefined : gptqOrderIsAct(o.gptqOrder),
  });
  const recipe = resolveRecipe({
    model: o.model,
    out: o.out,
    calib: o.calib ?? [],
    criterion: "magnitude-l2",
    reconstruct: "none",
    force: o.force ?? false,
    ...(o.samples !== undefined ? { samples: o.samples } : {}),
    ...(o.seqLen !== undefined ? { seqLen: o.seqLen } : {}),
    ...(o.seed !== undefined ? { seed: o.seed } : {}),
    ...(o.batchSize !== undefined ? { batchSize: o.batchSize } : {}),
  });
  if (s.method === "gptq" && recipe.calib.length === 0)
    throw new PareError(
      "E_USAGE",
      "GPTQ needs calibration text",
      "add --calib <file.txt|file.jsonl>, or use --quant-method rtn",
    );
  const aborted = () => new PareError("E_ABORTED", "the quantization was aborted", "run it again");
  if (o.signal?.aborted) throw aborted();
  const run = new RunContext((e) => {
    if (o.signal?.aborted) throw aborted();
    o.onProgress?.(e);
  }, o.signal);
  const model = loadModel(recipe.model);
  const ops = new Ops();
  try {
    checkQuantizable(model, s);
    if (o.quantizeHead) headName(model, s); // refused before any work
    // the layer graphs read every weight of a layer per batch: a bounded cache, as the prune has
    const overlay = new OverlayWeights(new CachedWeights(model.weights, 256 << 20));
    let xs: Float32Array[] | undefined;
    let batches: Parameters<typeof quantizeLayer>[5] = [];
    if (s.method === "gptq") {
      const c = await calibrationWindows(model, model.dir, recipe, run, ops);
      xs = c.embedded;
      batches = c.calib.batches;
    }
    const quantized = new Map<string, QuantizedLinear>();
    const linears: LinearQuantReport[] = [];
    run.phase(
      "quantize",
      `${s.method} ${s.bits}-bit, group ${s.groupSize}, ${s.sym ? "symmetric" : "asymmetric"}`,
    );
    const L = model.dims.nLayers;
    for (let i = 0; i < L; i++) {
      run.layer(i, L, "quantize");
      const inputs = xs;
      const r = await quantizeLayer(ops, model, overlay, i, inputs && ((b) => inputs[b]), batches, s, {
        checkAborted: () => run.checkAborted(),
      });
      for (const [k, v] of r.quantized) quantized.set(k, v);
      linears.push(...r.reports);
      if (r.out) xs = r.out;
      for (const rep of r.reports)
        if (rep.retries)
          run.notes.push(
            `${rep.name}: the Hessian was not positive definite with 1% damping; quantized with ${rep.damp} · mean(diag H)`,
          );
    }
    if (o.quantizeHead) {
      run.phase("quantize", "LM head");
      const inputs = xs;
      const h = await quantizeHead(ops, model, overlay, inputs && ((b) => inputs[b]), batches, s);
      quantized.set(h.name, h.linear);
      linears.push(h.report);
    }
    run.phase("write", recipe.out);
    const dtype = model.dtypes.includes("F16") ? "F16" : model.dtypes.includes("BF16") ? "BF16" : "F32";
    writeGptqFolder(
      recipe.out,
      {
        config: model.config,
        weights: model.weights,
        quantized,
        bits: s.bits,
        groupSize: s.groupSize,
        sym: s.sym,
        lmHead: o.quantizeHead ?? false,
        dtype,
        auxFrom: model.dir,
        json: {
          "pare-quantization.json": {
            method: s.method,
            bits: s.bits,
            group_size: s.groupSize,
            sym: s.sym,
            damp_percent: s.dampPercent,
            // GPTQ's column order: act-order with static groups (the folder's desc_act stays false)
            act_order: s.method === "gptq" ? s.actOrder : null,
            static_groups: s.method === "gptq" ? s.actOrder : null,
            calibration:
              s.method === "gptq"
                ? { samples: recipe.samples, seq_len: recipe.seqLen, seed: recipe.seed }
                : null,
            linears,
            notes: run.notes,
          },
        },
      },
      recipe.force,
    );
    const bytes = fs.statSync(`${recipe.out}/model.safetensors`).size;
    return {
      out: recipe.out,
      bits: s.bits,
      groupSize: s.groupSize,
      sym: s.sym,
      method: s.method,
      linears,
      notes: run.notes,
      seconds: (performance.now() - run.t0) / 1000,
      bytes,
    };
  } finally {
    await ops.close();
    model.close();
  }
}
