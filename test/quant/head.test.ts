/**
 * `quantize --quantize-head`: the LM head quantized with GPTQ on the final-norm output of the quantized stream,
 * stored like the other linears (quantization_config.lm_head), read back and exported as MatMulNBits; a tied head
 * is refused before any work.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { evaluate } from "../../src/api/evaluate.ts";
import { prune } from "../../src/api/prune.ts";
import { quantize } from "../../src/api/quantize.ts";
import { loadModel } from "../../src/arch/load.ts";
import { exportOnnx } from "../../src/export/onnx.ts";
import { TensorStore } from "../../src/io/safetensors.ts";
import { closeSharedOps } from "../../src/ops/index.ts";
import { makeByteBpeTokenizerJson, makeTinyLlama, writeTinyModel } from "../helpers/tinyModels.ts";

let root: string;
let text: string;
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-qhead-"));
  writeTinyModel(
    path.join(root, "untied"),
    makeTinyLlama({ seed: 51, vocab: 304 }),
    makeByteBpeTokenizerJson(300),
  );
  writeTinyModel(
    path.join(root, "tied"),
    makeTinyLlama({ seed: 52, tie: true }),
    makeByteBpeTokenizerJson(300),
  );
  text = path.join(root, "calib.txt");
  fs.writeFileSync(
    text,
    "the cat sat on the mat and the dog ran to the hills while birds sang. ".repeat(200),
  );
});
afterAll(async () => {
  fs.rmSync(root, { recursive: true, force: true });
  await closeSharedOps();
});

it("the head is quantized, read back dequantized, and exported as MatMulNBits", async () => {
  const out = path.join(root, "q");
  const r = await quantize({
    model: path.join(root, "untied"),
    out,
    groupSize: 16,
    quantizeHead: true,
    calib: [text],
    samples: 8,
    seqLen: 32,
  });
  expect(r.linears.map((l) => l.name)).toContain("lm_head.weight");
  const cfg = JSON.parse(fs.readFileSync(path.join(out, "config.json"), "utf8"));
  expect(cfg.quantization_config.lm_head).toBe(true);
  const store = TensorStore.openFolder(out);
  expect(store.info("lm_head.qweight").shape).toEqual([32 / 8, 304]);
  expect(store.has("lm_head.weight")).toBe(false);
  store.close();
  const m = loadModel(out);
  const d = loadModel(path.join(root, "untied"));
  try {
    const w = m.weights.get("lm_head.weight");
    const w0 = d.weights.get("lm_head.weight");
    let diff = 0;
    for (let k = 0; k < w.length; k++) diff = Math.max(diff, Math.abs(w[k] - w0[k]));
    expect(diff).toBeGreaterThan(0);
    expect(diff).toBeLessThan(0.2);
    const e = exportOnnx(m, path.join(root, "onnx"));
    expect(e.files).toContain("onnx/model_q4.onnx");
    const bytes = fs.readFileSync(path.join(root, "onnx", "onnx", "model_q4.onnx"));
    expect(bytes.includes("lm_head.weight.nbits_b")).toBe(true);
  } finally {
    m.close();
    d.close();
  }
  const ppl = (await evaluate(out, { task: "ppl", data: text, seqLen: 32 })) as { ppl: number };
  expect(Number.isFinite(ppl.ppl)).toBe(true);
});

it("a tied head is refused before any work", async () => {
  const out = path.join(root, "tied-q");
  await expect(
    quantize({ model: path.join(root, "tied"), out, groupSize: 16, quantizeHead: true, calib: [text] }),
  ).rejects.toMatchObject({ code: "E_USAGE" });
  expect(fs.existsSync(out)).toBe(false);
});

it("prune --quantize 4 --quantize-head: the pruned model's head quantized too", async () => {
  const out = path.join(root, "pq");
  const base = { model: path.join(root, "untied"), calib: [text], samples: 8, seqLen: 32, ratio: 0.25 };
  await prune({ ...base, out, allocation: "uniform", quantize: 4, groupSize: 16, quantizeHead: true });
  const cfg = JSON.parse(fs.readFileSync(path.join(out, "config.json"), "utf8"));
  expect(cfg.quantization_config.lm_head).toBe(true);
  const q = JSON.parse(fs.readFileSync(path.join(out, "pare-quantization.json"), "utf8"));
  expect(q.linears.map((l: { name: string }) => l.name)).toContain("lm_head.weight");
  const store = TensorStore.openFolder(out);
  expect(store.has("lm_head.qweight")).toBe(true);
  store.close();
  const ppl = (await evaluate(out, { task: "ppl", data: text, seqLen: 32 })) as { ppl: number };
  expect(Number.isFinite(ppl.ppl)).toBe(true);
  const bad = path.join(root, "pq-bad");
  await expect(prune({ ...base, out: bad, quantizeHead: true })).rejects.toMatchObject({
    code: "E_RECIPE_INVALID",
  });
});
