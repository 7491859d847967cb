/**
 * Layer parts (src/ops/layers.ts) compute, bit for bit, what the whole layer graph of onnx/emit.ts computes —
 * for every family: the attention taps alone, the MLP taps with mid, the rest of the layer from mid, the rest
 * fused with the next layer's attention taps, the unpruned model's parts of liar-seq. Where ONNX Runtime would
 * fuse a part differently (BERT's post-norm block), the whole layer runs instead, with the same results. Ops
 * releases its sessions on close.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel } from "../../src/arch/load.ts";
import { emitLayerGraph } from "../../src/onnx/emit.ts";
import { type LayerPart, Ops } from "../../src/ops/index.ts";
import { f32, type HostTensor, i64From, liveSessions, Session } from "../../src/runtime/ort.ts";
import { makeTinyGemma2, makeTinyGemma3, makeTinyPhi3, makeTinyQwen3 } from "../helpers/tinyFamilies.ts";
import {
  makeTinyBert,
  makeTinyLlama,
  nonUniformLlama,
  type TinyModel,
  writeTinyModel,
} from "../helpers/tinyModels.ts";

let root: string;
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-layers-"));
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const CASES: [string, () => TinyModel][] = [
  ["llama (GQA)", () => makeTinyLlama({ seed: 21, layers: 3, intermediate: 40 })],
  ["qwen2 (q/k/v biases)", () => makeTinyLlama({ seed: 23, layers: 2, modelType: "qwen2" })],
  ["llama (per-layer widths)", () => nonUniformLlama(7)],
  ["bert (post-norm, padding)", () => makeTinyBert({ seed: 22, layers: 2 })],
  [
    "qwen3 (q/k norms, sliding)",
    () => makeTinyQwen3({ seed: 102, layers: 3, useSlidingWindow: true, maxWindowLayers: 1 }),
  ],
  ["gemma2 (sandwich norms, soft-capping)", () => makeTinyGemma2({ seed: 201 })],
  ["gemma3_text (local RoPE)", () => makeTinyGemma3({ seed: 301 })],
  ["phi3 (fused, partial rotary)", () => makeTinyPhi3({ seed: 401 })],
];

const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

describe.each(CASES)("%s", (name, tiny) => {
  it("every part equals the whole layer graph bit for bit", async () => {
    const dir = path.join(root, name.replace(/[^a-z0-9]+/g, "-"));
    writeTinyModel(dir, tiny());
    const model = loadModel(dir);
    const sessions = liveSessions();
    const ops = new Ops();
    try {
      const D = model.dims.hidden;
      const b = 3;
      const T = 13;
      let s = 7;
      const x = Float32Array.from({ length: b * T * D }, () => {
        s = (s * 16807) % 2147483647;
        return (s / 2147483647 - 0.5) * 2;
      });
      const enc = model.spec.kind === "encoder";
      const mask = Array.from({ length: b * T }, (_, k) => (enc && k >= T && k % T > T - 4 ? 0 : 1));
      const batch = { ids: [], mask, b, T };
      const run = (i: number, part: LayerPart, inputs: { x: Float32Array; mid?: Float32Array }) =>
        ops.layers.run(model, i, part, inputs, batch);
      for (let i = 0; i < model.dims.nLayers; i++) {
        // the reference: the whole layer as emit.ts builds it
        const { bytes, weightInputs } = emitLayerGraph(model, i);
        const whole = await Session.create(bytes);
        const feeds: Record<string, HostTensor> = { x: f32([b, T, D], x) };
        if (enc) feeds.attention_mask = i64From([b, T], mask);
        for (const n of weightInputs.values()) {
          const t = n.replace(".L.", `.${i}.`);
          feeds[n] = f32(model.weights.shape(t), model.weights.get(t));
        }
        const want = await whole.run(feeds);
        await whole.release();
        const same = (got: Float32Array | undefined, k: string) =>
          expect(bits(got!).equals(bits(want[k].data as Float32Array)), `layer ${i} ${k}`).toBe(true);

        same((await run(i, { from: "x", outputs: ["attnIn"] }, { x })).attnIn, "attn_in");
        const m = await run(i, { from: "x", outputs: ["mid", "mlpIn"] }, { x });
        same(m.mlpIn, "mlp_in");
        same((await run(i, { from: "mid", outputs: ["out"] }, { x, mid: m.mid })).out, "out");
        const da = await run(i, { from: "x", outputs: ["attnIn", "mid"] }, { x });
        same(da.attnIn, "attn_in");
        const dm = await run(i, { from: "mid", outputs: ["mlpIn", "out"] }, { x, mid: da.mid });
        same(dm.mlpIn, "mlp_in");
        same(dm.out, "out");
        if (enc) expect(m.mid, "post-norm: no mid (the whole layer runs)").toBeUndefined();
        else expect(m.mid).toBeDefined();
        if (i + 1 < model.dims.nLayers) {
          const f = await run(i, { from: "mid", outputs: ["out"], nextAttnIn: true }, { x, mid: m.mid });
          same(f.out, "out");
          const next = await run(i + 1, { from: "x", outputs: ["attnIn"] }, { x: f.out! });
          expect(bits(f.nextAttnIn!).equals(bits(next.attnIn!))).toBe(true);
        }
      }
      expect(ops.sessions.size).toBeGreaterThan(0);
    } finally {
      await ops.close();
      model.close();
    }
    expect(ops.sessions.size).toBe(0);
    expect(liveSessions()).toBe(sessions);
  });
});
