import { loadModel } from "../arch/load.ts";
import { PareError } from "../errors.ts";
import { exportOnnx } from "../export/onnx.ts";
import { checkOutputPath } from "../export/paths.ts";
import type { Console } from "./io.ts";

export async function exportCommand(
  dir: string,
  f: { format: string; out?: string; force?: boolean },
  con: Console,
): Promise<void> {
  if (f.format !== "onnx")
    throw new PareError(
      "E_USAGE",
      `unknown export format "${f.format}"`,
      "--format onnx (the model folder itself is already safetensors)",
    );
  if (!f.out) throw new PareError("E_USAGE", "no output folder given", "add --out <dir>");
  checkOutputPath(dir, f.out, f.force ?? false);
  const m = loadModel(dir);
  try {
    con.info(`» exporting ${m.dir} to ONNX`);
    const r = exportOnnx(m, f.out, { force: f.force });
    for (const n of r.notes) con.info(`  note: ${n}`);
    con.result({ ...r, model: m.dir }, () =>
      [
        `exported ${m.dir} → ${r.out}`,
        `  format      ONNX opset ${r.opset}, IR ${r.irVersion}${r.externalData ? ", weights in onnx/model.onnx_data" : ""}`,
        `  inputs      ${r.inputs.length > 6 ? `${r.inputs.slice(0, 3).join(", ")}, … (${r.inputs.length} in all: KV cache per layer)` : r.inputs.join(", ")}`,
        `  outputs     ${r.outputs.length > 6 ? `${r.outputs.filter((o) => !o.startsWith("present")).join(", ")} + present.{i}.key/value` : r.outputs.join(", ")}`,
        `  files       ${r.files.join(", ")}`,
        "  loads with  @huggingface/transformers (from_pretrained on this folder), onnxruntime-node / -web",
      ].join("\n"),
    );
  } finally {
    m.close();
  }
}
