/**
 * The families added as specs (Qwen3, Gemma 2, Gemma 3, Phi-3): pare's ONNX forward against the float64
 * reference twins (test/reference/families.ts) on tiny seeded models — the full graph, the per-layer
 * calibration graphs chained, and the exported KV-cache graph (prefill, cached greedy, left-padded batches) —
 * on inputs longer than the sliding windows.
 */
import { describe, expect, it } from "vitest";
import { buildModel, MapWeights, type Model } from "../../src/arch/model.ts";
import {
  emitCachedDecoderGraph,
  emitEmbedGraph,
  emitLayerGraph,
  emitModelGraph,
  genericName,
} from "../../src/onnx/emit.ts";
import { f32, type HostTensor, i64From, Session } from "../../src/runtime/ort.ts";
import { Rng } from "../helpers/rng.ts";
import { type TinyModel, tensorMap } from "../helpers/tinyModels.ts";
import { hfGeneratePositionIds, referenceFamilyForward } from "../reference/families.ts";
import { argmax } from "../reference/forward.ts";
import { FAMILY_CASES } from "./cases.ts";

/** max |a − b| / max(1, max |b|) */
function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  let scale = 1;
  for (let i = 0; i < a.length; i++) {
    const x = Math.abs(a[i] - b[i]);
    if (!(x <= d)) d = x;
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return d / scale;
}

/** Positions whose top-2 margin in `ref` exceeds `tol` must have the same argmax in `got`. */
function sameArgmax(got: ArrayLike<number>, ref: ArrayLike<number>, T: number, V: number, tol = 1e-3): void {
  for (let t = 0; t < T; t++) {
    const r = Array.from({ length: V }, (_, v) => ref[t * V + v]);
    const sorted = [...r].sort((x, y) => y - x);
    if (sorted[0] - sorted[1] <= tol) continue;
    expect(argmax(got, t * V, V), `argmax at position ${t}`).toBe(argmax(r));
  }
}

const modelOf = (tiny: TinyModel): Model => buildModel(tiny.config, new MapWeights(tensorMap(tiny)));

const ids = (n: number, seed: number, V = 300) => {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => rng.int(V));
};

const T = 14; // longer than every tiny model's sliding window (4)

describe.each(FAMILY_CASES)("ONNX forward vs float64 reference: $name", (c) => {
  const tiny = c.tiny();
  const model = modelOf(tiny);
  const w = tensorMap(tiny);
  const input = ids(T, 7);
  const ref = referenceFamilyForward(tiny.config, w, input);
  const V = model.dims.vocab;

  it("full graph: logits ≤ 1e-4 relative, argmax equal", async () => {
    const s = await Session.create(emitModelGraph(model));
    const r = await s.run({ input_ids: i64From([1, T], input) });
    await s.release();
    const logits = r.logits.data as Float32Array;
    expect(relDiff(logits, ref.logits)).toBeLessThan(1e-4);
    sameArgmax(logits, ref.logits, T, V);
  });

  it("embedding + per-layer graphs chained: every layer's taps and the logits match the reference", async () => {
    const D = model.dims.hidden;
    const emb = await Session.create(emitEmbedGraph(model));
    let x = (await emb.run({ input_ids: i64From([1, T], input) })).x.data as Float32Array;
    await emb.release();
    for (let i = 0; i < model.dims.nLayers; i++) {
      const { bytes, weightInputs } = emitLayerGraph(model, i);
      const s = await Session.create(bytes);
      const feeds: Record<string, HostTensor> = { x: f32([1, T, D], x) };
      for (const [name, input] of weightInputs) {
        expect(input).toBe(genericName(name, i));
        feeds[input] = f32(model.weights.shape(name), model.weights.get(name));
      }
      const r = await s.run(feeds);
      await s.release();
      expect(relDiff(r.attn_in.data as Float32Array, ref.attnTaps[i]), `layer ${i} attn_in`).toBeLessThan(
        1e-4,
      );
      expect(relDiff(r.mlp_in.data as Float32Array, ref.mlpTaps[i]), `layer ${i} mlp_in`).toBeLessThan(1e-4);
      x = r.out.data as Float32Array;
    }
  });

  it("KV-cache graph: prefill = full forward; then one token at a time = the reference on the longer sequence", async () => {
    const s = await Session.create(emitCachedDecoderGraph(model));
    const hd = model.dims.headDim;
    const past: Record<string, HostTensor> = {};
    model.dims.layers.forEach((L, i) => {
      for (const kv of ["key", "value"])
        past[`past_key_values.${i}.${kv}`] = f32([1, L.nKv, 0, hd], new Float32Array(0));
    });
    const P = 9;
    const step = async (tokens: number[], start: number) => {
      const n = tokens.length;
      const r = await s.run({
        input_ids: i64From([1, n], tokens),
        attention_mask: i64From([1, start + n], new Array(start + n).fill(1)),
        position_ids: i64From(
          [1, n],
          tokens.map((_, t) => start + t),
        ),
        ...past,
      });
      model.dims.layers.forEach((_, i) => {
        for (const kv of ["key", "value"]) past[`past_key_values.${i}.${kv}`] = r[`present.${i}.${kv}`];
      });
      return r.logits.data as Float32Array;
    };
    const pre = await step(input.slice(0, P), 0);
    expect(relDiff(pre, ref.logits.subarray(0, P * V))).toBeLessThan(1e-4);
    for (let t = P; t < T; t++) {
      const got = await step([input[t]], t);
      expect(relDiff(got, ref.logits.subarray(t * V, (t + 1) * V)), `position ${t}`).toBeLessThan(1e-4);
    }
    await s.release();
  });

  it("KV-cache graph, left-padded batch of 2: each row equals the reference with HF's mask and positions", async () => {
    const s = await Session.create(emitCachedDecoderGraph(model));
    const hd = model.dims.headDim;
    const long = ids(12, 11);
    const short = ids(7, 12);
    const pad = long.length - short.length;
    const rows = [long, [...new Array(pad).fill(0), ...short]];
    const masks = [long.map(() => 1), [...new Array(pad).fill(0), ...short.map(() => 1)]];
    const feeds: Record<string, HostTensor> = {
      input_ids: i64From([2, long.length], rows.flat()),
      attention_mask: i64From([2, long.length], masks.flat()),
      position_ids: i64From(
        [2, long.length],
        masks.flatMap((m) => hfGeneratePositionIds(m)),
      ),
    };
    model.dims.layers.forEach((L, i) => {
      for (const kv of ["key", "value"])
        feeds[`past_key_values.${i}.${kv}`] = f32([2, L.nKv, 0, hd], new Float32Array(0));
    });
    const r = await s.run(feeds);
    await s.release();
    const logits = r.logits.data as Float32Array;
    const n = long.length;
    for (let b = 0; b < 2; b++) {
      const expected = referenceFamilyForward(tiny.config, w, rows[b], {
        attentionMask: masks[b],
        positionIds: hfGeneratePositionIds(masks[b]),
      }).logits;
      // compare the real (unpadded) positions
      const from = b === 0 ? 0 : pad;
      const got = logits.subarray((b * n + from) * V, (b + 1) * n * V);
      expect(relDiff(got, expected.subarray(from * V)), `row ${b}`).toBeLessThan(1e-4);
    }
  });
});
