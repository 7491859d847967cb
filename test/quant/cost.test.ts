/**
 * `prune --dry-run --quantize`: the plan carries what quantizing adds (quant/cost.ts) — GPTQ's extra layer passes,
 * Gram and solve FLOPs; nothing for RTN; no entry without --quantize.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { planPrune } from "../../src/api/prune.ts";
import { loadModel } from "../../src/arch/load.ts";
import { describePlan } from "../../src/pipeline/plan.ts";
import { quantizationCost } from "../../src/quant/cost.ts";
import { makeByteBpeTokenizerJson, makeTinyLlama, writeTinyModel } from "../helpers/tinyModels.ts";

let root: string;
let dense: string;
let text: string;
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-qcost-"));
  dense = path.join(root, "dense");
  writeTinyModel(dense, makeTinyLlama({ seed: 3, intermediate: 64 }), makeByteBpeTokenizerJson(300));
  text = path.join(root, "calib.txt");
  fs.writeFileSync(text, "the cat sat on the mat and the dog ran to the hills. ".repeat(300));
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

it("the dry-run plan shows the quantization cost", async () => {
  const base = {
    model: dense,
    out: path.join(root, "out"),
    calib: [text],
    samples: 8,
    seqLen: 32,
    ratio: 0.25,
  };
  expect((await planPrune(base)).quantization).toBeUndefined();
  const plan = await planPrune({ ...base, quantize: 4, groupSize: 16 });
  const q = plan.quantization!;
  expect(q.layerPasses).toBeGreaterThan(0);
  expect(q.flops.forward).toBeGreaterThan(0);
  expect(q.flops.statistics).toBeGreaterThan(0);
  expect(q.flops.solve).toBeGreaterThan(0);
  expect(q.seconds).toBeGreaterThan(0);
  expect(describePlan(plan).join("\n")).toMatch(/quantize \+ [\d.]+ layer passes/);
  const rtn = await planPrune({ ...base, quantize: 4, groupSize: 16, quantMethod: "rtn" });
  expect(rtn.quantization).toMatchObject({ layerPasses: 0, flops: { forward: 0, statistics: 0, solve: 0 } });
});

it("forward FLOPs per token: 3 attentions, 2 o_proj and gate/up per layer", () => {
  const m = loadModel(dense);
  try {
    const c = quantizationCost(m, "gptq", 10, 4, 0);
    // D 32, 4 heads / 2 KV heads of 8, FFN 64 (gated), 2 layers; T = 4
    const attention = 2 * 32 * (32 + 2 * 16) + 4 * 4 * 32;
    const o = 2 * 32 * 32;
    const up = 2 * 32 * 64 * 2;
    expect(c.flops.forward).toBe(10 * 2 * (3 * attention + 2 * o + up));
    expect(c.flops.statistics).toBe(2 * 10 * 2 * (32 * 32 + 32 * 32 + 32 * 32 + 64 * 64));
  } finally {
    m.close();
  }
});
