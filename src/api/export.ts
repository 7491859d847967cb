/** `exportModel`: write a model folder in another format (ONNX in the transformers.js layout today). */
import { loadModel } from "../arch/load.ts";
import { PareError } from "../errors.ts";
import { exportOnnx, type OnnxExportResult } from "../export/onnx.ts";
import { checkOutputPath } from "../export/paths.ts";

export type ExportFormat = "onnx";

export interface ExportOptions {
  format: ExportFormat;
  /** output folder (written atomically) */
  out: string;
  /** replace an existing output */
  force?: boolean;
}

export type ExportResult = OnnxExportResult;

const FORMATS: readonly ExportFormat[] = ["onnx"];

/** Export the model folder `model` (a path or a Hugging Face cache id); nothing is kept open. */
export function exportModel(model: string, options: ExportOptions): ExportResult {
  if (!FORMATS.includes(options.format))
    throw new PareError(
      "E_USAGE",
      `unknown export format "${options.format}"`,
      `use one of: ${FORMATS.join(", ")} (the model folder itself is already safetensors)`,
    );
  if (!options.out) throw new PareError("E_USAGE", "no output folder given", "set out");
  checkOutputPath(model, options.out, options.force ?? false);
  const m = loadModel(model);
  try {
    return exportOnnx(m, options.out, { force: options.force });
  } finally {
    m.close();
  }
}
