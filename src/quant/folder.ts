/**
 * Writing a quantized model as a Hugging Face GPTQ folder (io/gptqFormat.ts): each quantized linear as
 * qweight / qzeros / scales (f16) / g_idx, every other tensor in the given float dtype, config.json with its
 * `quantization_config`, the tokenizer files; atomically (export/atomic.ts: complete or not at all).
 */

import fs from "node:fs";
import path from "node:path";
import { loadModel } from "../arch/load.ts";
import type { WeightSource } from "../arch/model.ts";
import { writeAtomically } from "../export/atomic.ts";
import { fillFolderFiles } from "../export/folder.ts";
import { gptqQuantizationConfig, groupIndex, packQweight, packQzeros } from "../io/gptqFormat.ts";
import { bytesOf, type RawTensor, writeRawSafetensors } from "../io/gptqSafetensors.ts";
import { AUX_FILES } from "../io/modelFolder.ts";
import { encodeTensor } from "../io/safetensors.ts";
import { f32ToF16 } from "../tensor/dtype.ts";
import type { QuantizedLinear } from "./linear.ts";

export interface GptqFolderContents {
  config: Record<string, unknown>;
  /** every tensor of the model (the quantized linears' float weights are not read) */
  weights: WeightSource;
  /** `.weight` name → its quantization */
  quantized: Map<string, QuantizedLinear>;
  bits: number;
  groupSize: number;
  sym: boolean;
  /** the LM head is among the quantized linears */
  lmHead?: boolean;
  /** storage dtype of the tensors that stay in float */
  dtype: "F32" | "F16" | "BF16";
  auxFrom?: string;
  json?: Record<string, unknown>;
}

/** The stored tensors of one quantized linear `base` (= name without `.weight`). */
export function gptqTensors(base: string, ql: QuantizedLinear): RawTensor[] {
  const p = 32 / ql.bits;
  const groups = ql.cols / ql.groupSize;
  return [
    {
      name: `${base}.qweight`,
      dtype: "I32",
      shape: [ql.cols / p, ql.rows],
      bytes: bytesOf(packQweight(ql.q, ql.rows, ql.cols, ql.bits)),
    },
    {
      name: `${base}.qzeros`,
      dtype: "I32",
      shape: [groups, ql.rows / p],
      bytes: bytesOf(packQzeros(ql.zeros, groups, ql.rows, ql.bits)),
    },
    {
      name: `${base}.scales`,
      dtype: "F16",
      shape: [groups, ql.rows],
      bytes: bytesOf(f32ToF16(Float32Array.from(ql.scales))),
    },
    {
      name: `${base}.g_idx`,
      dtype: "I32",
      shape: [ql.cols],
      bytes: bytesOf(groupIndex(ql.cols, ql.groupSize)),
    },
  ];
}

export function writeGptqFolder(target: string, c: GptqFolderContents, force = false): void {
  writeAtomically(target, force, (dir) => {
    const tensors: RawTensor[] = [];
    for (const name of c.weights.names().sort()) {
      const ql = c.quantized.get(name);
      if (ql) {
        tensors.push(...gptqTensors(name.replace(/\.weight$/, ""), ql));
        continue;
      }
      const shape = c.weights.shape(name);
      tensors.push({
        name,
        dtype: c.dtype,
        shape,
        bytes: encodeTensor({ name, shape, data: c.weights.get(name), dtype: c.dtype }),
      });
    }
    writeRawSafetensors(path.join(dir, "model.safetensors"), tensors);
    fillFolderFiles(dir, {
      config: {
        ...c.config,
        quantization_config: gptqQuantizationConfig(c.bits, c.groupSize, c.sym, c.lmHead ?? false),
      },
      dtype: c.dtype,
      auxFrom: c.auxFrom,
      json: c.json,
    });
  });
}

/**
 * A model folder just written (by a prune with --quantize) rewritten in place as a GPTQ folder: its quantized
 * linears from `quantized`, every other tensor, config and JSON file kept; atomic (the folder is replaced
 * complete, or left as it was).
 */
export function rewriteAsGptq(
  dir: string,
  quantized: Map<string, QuantizedLinear>,
  s: { bits: number; groupSize: number; sym: boolean; lmHead?: boolean },
  quantization: Record<string, unknown>,
  /** where to write the GPTQ folder (default: replace `dir` itself) */
  into = dir,
): void {
  const m = loadModel(dir);
  try {
    const json: Record<string, unknown> = { "pare-quantization.json": quantization };
    for (const f of fs.readdirSync(m.dir))
      if (f.endsWith(".json") && !AUX_FILES.includes(f) && f !== "config.json" && !f.includes("safetensors"))
        json[f] = JSON.parse(fs.readFileSync(path.join(m.dir, f), "utf8"));
    const dtype = m.dtypes.includes("F16") ? "F16" : m.dtypes.includes("BF16") ? "BF16" : "F32";
    writeGptqFolder(
      into,
      { config: m.config, weights: m.weights, quantized, ...s, dtype, auxFrom: m.dir, json },
      into === dir,
    );
  } finally {
    m.close();
  }
}
