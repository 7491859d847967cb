/**
 * ONNX export laid out as transformers.js expects a model folder: `onnx/model.onnx`
 * (opset 17, IR 8; weights beyond 1.5 GiB go to `onnx/model.onnx_data` as ONNX external data),
 * config.json, generation_config.json and the tokenizer files (tokenizer_config.json is
 * written when the source has none). Decoders get KV-cache inputs/outputs; encoders take
 * input_ids / attention_mask / token_type_ids.
 */
import fs from "node:fs";
import path from "node:path";
import type { Model } from "../arch/model.ts";
import { PareError } from "../errors.ts";
import { GptqWeights } from "../io/gptqWeights.ts";
import { copyAuxFiles } from "../io/modelFolder.ts";
import { buildCachedDecoderGraph, buildModelGraph, type NBitsWeight } from "../onnx/emit.ts";
import { IR_VERSION, OPSET } from "../onnx/graph.ts";
import { nbitsRefusal, toMatMulNBits } from "../quant/matmulNBits.ts";
import { writeAtomically } from "./atomic.ts";
import { checkOutputPath } from "./paths.ts";

export interface OnnxExportResult {
  out: string;
  files: string[];
  opset: number;
  irVersion: number;
  externalData: boolean;
  inputs: string[];
  outputs: string[];
  notes: string[];
}

const EXTERNAL_ABOVE = 1.5 * 1024 ** 3;

/** What the export can and cannot express; throws before anything is written. */
export function checkExportable(model: Model): string[] {
  const notes: string[] = [];
  if (model.spec.kind === "decoder" && model.dims.head !== "lm") {
    throw new PareError(
      "E_USAGE",
      `pare export writes decoders with their language-model head; this ${model.spec.family} checkpoint has none`,
      "export the *ForCausalLM checkpoint",
    );
  }
  model.dims.layers.forEach((L, i) => {
    if (L.nHeads === 0 || L.nKv === 0 || L.ffn === 0) {
      throw new PareError(
        "E_LAYER_EMPTIED",
        `layer ${i} has ${L.nHeads} heads / ${L.ffn} FFN channels: an emptied layer cannot be exported to ONNX opset ${OPSET}`,
        "prune again with --min-groups 1 --min-channels 1 (the defaults)",
      );
    }
  });
  if (model.spec.kind === "decoder") {
    const kv = new Set(model.dims.layers.map((l) => l.nKv));
    if (kv.size > 1) {
      notes.push(
        "KV-head counts differ between layers: transformers.js reads each layer's cache shape from the graph and runs it, " +
          "but runtimes that size the KV cache from config.json's num_key_value_heads need a model pruned with --allocation uniform",
      );
    }
  }
  return notes;
}

/** Weights (as f32) beyond 1.5 GiB go to an external data file: one protobuf cannot exceed 2 GiB. */
function needsExternalData(model: Model): boolean {
  const w = model.weights;
  return w.names().reduce((s, n) => s + 4 * w.shape(n).reduce((a, b) => a * b, 1), 0) > EXTERNAL_ABOVE;
}

export function exportOnnx(
  model: Model & { dir: string },
  out: string,
  opts: { force?: boolean } = {},
): OnnxExportResult {
  checkOutputPath(model.dir, out, opts.force ?? false);
  const notes = checkExportable(model);
  const external = needsExternalData(model);
  const files: string[] = [];
  let inputs: string[] = [];
  let outputs: string[] = [];
  writeAtomically(out, opts.force ?? false, (tmp) => {
    fs.mkdirSync(path.join(tmp, "onnx"));
    ({ inputs, outputs } = writeOnnxFiles(model, tmp, external, files, notes));
    const config: Record<string, unknown> = { ...model.config };
    delete config.quantization_config; // the ONNX files carry their own weights (model_q4.onnx: MatMulNBits)
    if (external) config["transformers.js_config"] = { use_external_data_format: true };
    fs.writeFileSync(path.join(tmp, "config.json"), `${JSON.stringify(config, null, 2)}\n`);
    files.push("config.json", ...copyAuxFiles(model.dir, tmp));
    if (!fs.existsSync(path.join(tmp, "tokenizer_config.json"))) {
      fs.writeFileSync(
        path.join(tmp, "tokenizer_config.json"),
        `${JSON.stringify({ model_max_length: model.dims.maxPos }, null, 2)}\n`,
      );
      files.push("tokenizer_config.json");
    }
  });
  return {
    out: path.resolve(out),
    files: [...new Set(files)],
    opset: OPSET,
    irVersion: IR_VERSION,
    externalData: external,
    inputs,
    outputs,
    notes,
  };
}

/**
 * The MatMulNBits weights of a GPTQ folder's linears (quant/matmulNBits.ts), or undefined (with a note) when
 * the model is not quantized or a linear cannot be expressed.
 */
function q4Weights(model: Model, notes: string[]): ((weight: string) => NBitsWeight | undefined) | undefined {
  const w = model.weights;
  if (!(w instanceof GptqWeights)) return undefined;
  for (const n of w.quantizedNames()) {
    const t = w.quantizedLinear(n)!;
    const why = nbitsRefusal(w.cfg, t, t.cols);
    if (why) {
      notes.push(
        `onnx/model_q4.onnx not written: ${n} has ${why}; onnx/model.onnx holds the dequantized weights`,
      );
      return undefined;
    }
  }
  return (n) => {
    const t = w.quantizedLinear(n);
    return t && toMatMulNBits(w.cfg, t, t.out, t.cols);
  };
}

/** onnx/model.onnx (+ model.onnx_data) into `dir`/onnx (which exists). */
function writeOnnxFiles(
  model: Model,
  dir: string,
  external: boolean,
  files: string[],
  notes: string[] = [],
): { inputs: string[]; outputs: string[] } {
  {
    const tmp = dir;
    const decoder = model.spec.kind === "decoder";
    const g = decoder ? buildCachedDecoderGraph(model) : buildModelGraph(model);
    const graph = g.serialize({
      producer: "pare",
      external: external ? { location: "model.onnx_data" } : undefined,
    });
    fs.writeFileSync(path.join(tmp, "onnx", "model.onnx"), graph.model);
    files.push("onnx/model.onnx");
    if (graph.external.length) {
      const fd = fs.openSync(path.join(tmp, "onnx", "model.onnx_data"), "w");
      try {
        for (const c of graph.external) fs.writeSync(fd, c);
      } finally {
        fs.closeSync(fd);
      }
      files.push("onnx/model.onnx_data");
    }
    // a GPTQ folder: also onnx/model_q4.onnx, its linears as MatMulNBits (transformers.js dtype "q4")
    const nbits = decoder ? q4Weights(model, notes) : undefined;
    if (nbits) {
      const q4 = buildCachedDecoderGraph(model, { nbits }).serialize({
        producer: "pare",
        external: external ? { location: "model_q4.onnx_data" } : undefined,
      });
      fs.writeFileSync(path.join(tmp, "onnx", "model_q4.onnx"), q4.model);
      files.push("onnx/model_q4.onnx");
      if (q4.external.length) {
        const fd = fs.openSync(path.join(tmp, "onnx", "model_q4.onnx_data"), "w");
        try {
          for (const c of q4.external) fs.writeSync(fd, c);
        } finally {
          fs.closeSync(fd);
        }
        files.push("onnx/model_q4.onnx_data");
      }
    }
    return { inputs: g.inputNames, outputs: g.outputNames };
  }
}

/**
 * Add `onnx/` (the transformers.js layout) inside an existing model folder, e.g. the output of
 * pare prune: written to a temporary sibling and renamed; tokenizer_config.json is added if missing.
 */
export function exportOnnxInto(model: Model & { dir: string }): OnnxExportResult {
  const notes = checkExportable(model);
  const external = needsExternalData(model);
  const files: string[] = [];
  let io = { inputs: [] as string[], outputs: [] as string[] };
  writeAtomically(path.join(model.dir, "onnx"), true, (tmp) => {
    fs.mkdirSync(path.join(tmp, "onnx"));
    io = writeOnnxFiles(model, tmp, external, files);
    for (const f of fs.readdirSync(path.join(tmp, "onnx")))
      fs.renameSync(path.join(tmp, "onnx", f), path.join(tmp, f));
    fs.rmdirSync(path.join(tmp, "onnx"));
  });
  if (!fs.existsSync(path.join(model.dir, "tokenizer_config.json"))) {
    fs.writeFileSync(
      path.join(model.dir, "tokenizer_config.json"),
      `${JSON.stringify({ model_max_length: model.dims.maxPos }, null, 2)}\n`,
    );
    files.push("tokenizer_config.json");
  }
  if (external)
    notes.push(
      "weights are in onnx/model.onnx_data: set transformers.js_config.use_external_data_format in config.json for transformers.js",
    );
  return {
    out: path.resolve(model.dir),
    files,
    opset: OPSET,
    irVersion: IR_VERSION,
    externalData: external,
    ...io,
    notes,
  };
}
