import { loadModel } from "../arch/load.ts";
import { PareError } from "../errors.ts";
import { exportGguf, GGUF_OUTTYPES, type GgufOuttype } from "../export/gguf.ts";
import { exportOnnx } from "../export/onnx.ts";
import { checkOutputPath } from "../export/paths.ts";
import type { Console } from "./io.ts";

const FORMATS = ["onnx", "gguf"];

export async function exportCommand(
  dir: string,
  f: { format: string; out?: string; force?: boolean; outtype?: string },
  con: Console,
): Promise<void> {
  if (!FORMATS.includes(f.format))
    throw new PareError(
      "E_USAGE",
      `unknown export format "${f.format}"`,
      "--format onnx (transformers.js layout) or --format gguf (llama.cpp); the model folder itself is already safetensors",
    );
  if (!f.out)
    throw new PareError(
      "E_USAGE",
      `no output ${f.format === "gguf" ? "file" : "folder"} given`,
      `add --out ${f.format === "gguf" ? "<file.gguf>" : "<dir>"}`,
    );
  if (f.outtype !== undefined && f.format !== "gguf")
    throw new PareError("E_USAGE", "--outtype applies to --format gguf only", "drop --outtype");
  const outtype = (f.outtype ?? "f16") as GgufOuttype;
  if (!GGUF_OUTTYPES.includes(outtype))
    throw new PareError(
      "E_USAGE",
      `unknown --outtype "${f.outtype}"`,
      `use one of: ${GGUF_OUTTYPES.join(", ")}`,
    );
  // gguf: exportGguf checks the output file itself (after loading, before writing)
  if (f.format !== "gguf") checkOutputPath(dir, f.out, f.force ?? false);
  const m = loadModel(dir);
  try {
    if (f.format === "gguf") {
      con.info(`» exporting ${m.dir} to GGUF (${outtype})`);
      const r = exportGguf(m, f.out, {
        outtype,
        force: f.force,
        onTensor: (i, n) => {
          if ((i + 1) % 50 === 0 || i + 1 === n) con.info(`  ${i + 1}/${n} tensors`);
        },
      });
      for (const n of r.notes) con.info(`  note: ${n}`);
      con.result({ ...r, model: m.dir }, () =>
        [
          `exported ${m.dir} → ${r.out}`,
          `  format      GGUF v3, llama.cpp architecture ${r.arch}${r.perLayerWidths ? " (per-layer widths)" : ""}`,
          `  tensors     ${r.tensors} (${Object.entries(r.types)
            .map(([t, n]) => `${n} ${t}`)
            .join(", ")}), ${(r.bytes / 1024 ** 2).toFixed(1)} MiB`,
          `  tokenizer   ${r.tokenizer.model} (${r.tokenizer.pre}), ${r.tokenizer.tokens} tokens`,
          "  loads with  llama.cpp (llama-cli -m …), Ollama (FROM …), node-llama-cpp, LM Studio",
        ].join("\n"),
      );
      return;
    }
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
