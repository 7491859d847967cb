/** `exportModel`: write a model folder in another format (ONNX in the transformers.js layout, or GGUF for llama.cpp). */
import { loadModel } from "../arch/load.ts";
import { PareError } from "../errors.ts";
import { exportGguf, GGUF_OUTTYPES, type GgufExportResult, type GgufOuttype } from "../export/gguf.ts";
import { exportOnnx, type OnnxExportResult } from "../export/onnx.ts";
import { checkOutputPath } from "../export/paths.ts";

export type ExportFormat = "onnx" | "gguf";
export type { GgufExportResult, GgufOuttype };

export interface ExportOptions {
  format: ExportFormat;
  /** output folder (onnx) or file (gguf), written atomically */
  out: string;
  /** replace an existing output */
  force?: boolean;
  /** gguf only: tensor encoding (default f16; norms and biases stay f32 as llama.cpp's converter keeps them) */
  outtype?: GgufOuttype;
}

export type ExportResult = OnnxExportResult | GgufExportResult;

const FORMATS: readonly ExportFormat[] = ["onnx", "gguf"];

/** Export the model folder `model` (a path or a Hugging Face cache id); nothing is kept open. */
export function exportModel(model: string, options: ExportOptions & { format: "gguf" }): GgufExportResult;
export function exportModel(model: string, options: ExportOptions & { format: "onnx" }): OnnxExportResult;
export function exportModel(model: string, options: ExportOptions): ExportResult;
export function exportModel(model: string, options: ExportOptions): ExportResult {
  if (!FORMATS.includes(options.format))
    throw new PareError(
      "E_USAGE",
      `unknown export format "${options.format}"`,
      `use one of: ${FORMATS.join(", ")} (the model folder itself is already safetensors)`,
    );
  if (!options.out) throw new PareError("E_USAGE", "no output given", "set out");
  if (options.outtype !== undefined && options.format !== "gguf")
    throw new PareError("E_USAGE", "outtype applies to the gguf format only", "drop outtype");
  if (options.outtype !== undefined && !GGUF_OUTTYPES.includes(options.outtype))
    throw new PareError(
      "E_USAGE",
      `unknown outtype "${options.outtype}"`,
      `use one of: ${GGUF_OUTTYPES.join(", ")}`,
    );
  checkOutputPath(model, options.out, options.force ?? false);
  const m = loadModel(model);
  try {
    if (options.format === "gguf")
      return exportGguf(m, options.out, { outtype: options.outtype, force: options.force });
    return exportOnnx(m, options.out, { force: options.force });
  } finally {
    m.close();
  }
}
