/**
 * pare's ONNX forward (emitModelGraph / emitLayerGraph + emitEmbedGraph, run by ONNX Runtime in float32) against
 * the naive float64 reference forward passes (test/reference/forward.ts) on tiny seeded models.
 *
 * Set PARE_DIFF_REPORT=<file> to have the observed maximum differences written there as JSON (nothing is printed).
 */
import fs from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { buildModel, MapWeights, type Model } from "../../src/arch/model.ts";
import { emitEmbedGraph, emitLayerGraph, emitModelGraph, genericName } from "../../src/onnx/emit.ts";
import { f32, type HostTensor, i64From, Session } from "../../src/runtime/ort.ts";
import { Rng } from "../helpers/rng.ts";
import { makeTinyBert, makeTinyLlama, type TinyModel, tensorMap } from "../helpers/tinyModels.ts";
import { referenceBertForward, referenceDecoderForward } from "../reference/forward.ts";

const observed: Record<string, number> = {};
afterAll(() => {
  const file = process.env.PARE_DIFF_REPORT;
  if (file) fs.writeFileSync(file, `${JSON.stringify(observed, null, 2)}\n`);
});

/** max |a − b| over all elements (lengths must agree); recorded under `label` (keeps the largest). */
function diff(label: string, a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length, `${label}: length`).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) {
    const x = Math.abs(a[i] - b[i]);
    if (!(x <= d)) d = x; // NaN propagates
  }
  observed[label] = Math.max(observed[label] ?? 0, d);
  return d;
}

const randomIds = (n: number, vocab: number, rng: Rng): number[] =>
  Array.from({ length: n }, () => rng.int(vocab));

/** Row b of a [B, …] output as a plain array of `per` elements. */
const row = (t: HostTensor, b: number, per: number): Float32Array =>
  (t.data as Float32Array).subarray(b * per, (b + 1) * per);

const modelOf = (tiny: TinyModel): Model => buildModel(tiny.config, new MapWeights(tensorMap(tiny)));

/** Adds `pare_layer_widths` (+ head_dim) as a pruned model's config carries them. */
function withLayerWidths(
  tiny: TinyModel,
  widths: { num_attention_heads: number; num_key_value_heads?: number; intermediate_size: number }[],
): TinyModel {
  return { ...tiny, config: { ...tiny.config, pare_layer_widths: widths } };
}

// ---------------------------------------------------------------------------------------------------------
// decoders

interface DecoderCase {
  name: string;
  tiny: () => TinyModel;
  /** expected per-layer (heads, kv heads, ffn) as pare must read them */
  widths?: [number, number, number][];
}

const DECODERS: DecoderCase[] = [
  { name: "llama GQA (4 heads / 2 kv)", tiny: () => makeTinyLlama({ seed: 11, heads: 4, kvHeads: 2 }) },
  { name: "llama MHA (4 / 4)", tiny: () => makeTinyLlama({ seed: 12, heads: 4, kvHeads: 4 }) },
  {
    name: "qwen2 (q/k/v biases)",
    tiny: () => makeTinyLlama({ seed: 13, modelType: "qwen2", heads: 6, kvHeads: 2 }),
  },
  { name: "mistral", tiny: () => makeTinyLlama({ seed: 14, modelType: "mistral", layers: 3 }) },
  { name: "tied embeddings", tiny: () => makeTinyLlama({ seed: 15, tie: true }) },
  {
    name: "consumer biases (o_proj.bias, down_proj.bias)",
    tiny: () => makeTinyLlama({ seed: 16, consumerBias: true }),
  },
  {
    name: "llama attention_bias (q/k/v/o biases)",
    tiny: () => makeTinyLlama({ seed: 17, qkvBias: true, consumerBias: true }),
  },
  {
    name: "per-layer non-uniform widths",
    tiny: () =>
      withLayerWidths(
        makeTinyLlama({
          seed: 18,
          layers: 3,
          headDim: 8,
          perLayer: { heads: [4, 2, 6], kvHeads: [2, 2, 3], intermediate: [48, 20, 33] },
        }),
        [
          { num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 48 },
          { num_attention_heads: 2, num_key_value_heads: 2, intermediate_size: 20 },
          { num_attention_heads: 6, num_key_value_heads: 3, intermediate_size: 33 },
        ],
      ),
    widths: [
      [4, 2, 48],
      [2, 2, 20],
      [6, 3, 33],
    ],
  },
];

describe("ORT forward vs float64 reference: decoders", () => {
  it.each(DECODERS)("$name: logits ≤ 1e-4 and taps ≤ 1e-4 for a batch of 2", async (c) => {
    const tiny = c.tiny();
    const model = modelOf(tiny);
    if (c.widths) expect(model.dims.layers.map((l) => [l.nHeads, l.nKv, l.ffn])).toEqual(c.widths);
    const session = await Session.create(emitModelGraph(model, { taps: true }));
    try {
      const rng = new Rng(100);
      const B = 2;
      const T = 13;
      const V = model.dims.vocab;
      const seqs = Array.from({ length: B }, () => randomIds(T, V, rng));
      const out = await session.run({ input_ids: i64From([B, T], seqs.flat()) });
      expect(out.logits.dims).toEqual([B, T, V]);
      for (let b = 0; b < B; b++) {
        const ref = referenceDecoderForward(tiny.config, tensorMap(tiny), seqs[b]);
        expect(diff(`decoder ${c.name}: logits`, row(out.logits, b, T * V), ref.logits)).toBeLessThan(1e-4);
        for (let i = 0; i < model.dims.nLayers; i++) {
          const L = model.dims.layers[i];
          const a = out[`attn_in.${i}`];
          const m = out[`mlp_in.${i}`];
          expect(a.dims).toEqual([B, T, L.nHeads * model.dims.headDim]);
          expect(m.dims).toEqual([B, T, L.ffn]);
          expect(diff(`decoder ${c.name}: taps`, row(a, b, a.data.length / B), ref.attnTaps[i])).toBeLessThan(
            1e-4,
          );
          expect(diff(`decoder ${c.name}: taps`, row(m, b, m.data.length / B), ref.mlpTaps[i])).toBeLessThan(
            1e-4,
          );
        }
      }
    } finally {
      await session.release();
    }
  });

  it("nll graph: per-token NLL equals −log softmax of the reference logits; labels < 0 give 0", async () => {
    const tiny = makeTinyLlama({ seed: 21 });
    const model = modelOf(tiny);
    const session = await Session.create(emitModelGraph(model, { nll: true, logits: true }));
    try {
      const rng = new Rng(5);
      const T = 10;
      const V = model.dims.vocab;
      const ids = randomIds(T, V, rng);
      const labels = [...ids.slice(1), -1];
      const out = await session.run({ input_ids: i64From([1, T], ids), labels: i64From([1, T], labels) });
      expect(out.nll.dims).toEqual([1, T]);
      const ref = referenceDecoderForward(tiny.config, tensorMap(tiny), ids);
      const want = new Float64Array(T);
      for (let t = 0; t < T - 1; t++) {
        const z = ref.logits.subarray(t * V, (t + 1) * V);
        let mx = Number.NEGATIVE_INFINITY;
        for (const v of z) mx = Math.max(mx, v);
        let s = 0;
        for (const v of z) s += Math.exp(v - mx);
        want[t] = mx + Math.log(s) - z[labels[t]];
      }
      expect(diff("nll graph: nll", out.nll.data as Float32Array, want)).toBeLessThan(1e-4);
      expect((out.nll.data as Float32Array)[T - 1]).toBe(0);
      expect(diff("nll graph: logits", out.logits.data as Float32Array, ref.logits)).toBeLessThan(1e-4);
    } finally {
      await session.release();
    }
  });

  it("nll-only graph has no logits output", async () => {
    const model = modelOf(makeTinyLlama({ seed: 22 }));
    const session = await Session.create(emitModelGraph(model, { nll: true }));
    try {
      expect(session.outputNames).toEqual(["nll"]);
      expect([...session.inputNames].sort()).toEqual(["input_ids", "labels"]);
    } finally {
      await session.release();
    }
  });
});

// ---------------------------------------------------------------------------------------------------------
// BERT

describe("ORT forward vs float64 reference: BERT classifier", () => {
  const bertCases: { name: string; tiny: () => TinyModel }[] = [
    { name: "uniform (3 labels)", tiny: () => makeTinyBert({ seed: 31, numLabels: 3 }) },
    {
      name: "per-layer non-uniform widths",
      tiny: () =>
        withLayerWidths(
          makeTinyBert({ seed: 32, layers: 3, perLayer: { heads: [4, 2, 3], intermediate: [64, 40, 17] } }),
          [
            { num_attention_heads: 4, intermediate_size: 64 },
            { num_attention_heads: 2, intermediate_size: 40 },
            { num_attention_heads: 3, intermediate_size: 17 },
          ],
        ),
    },
  ];

  it.each(bertCases)(
    "$name: logits, pooled, last_hidden_state and taps ≤ 1e-4 (token types 0/1)",
    async (c) => {
      const tiny = c.tiny();
      const model = modelOf(tiny);
      const H = model.dims.hidden;
      const C = model.dims.numLabels;
      const session = await Session.create(emitModelGraph(model, { taps: true }));
      try {
        const rng = new Rng(7);
        const T = 12;
        const ids = randomIds(T, model.dims.vocab, rng);
        const types = ids.map((_, t) => (t < 7 ? 0 : 1));
        const out = await session.run({
          input_ids: i64From([1, T], ids),
          attention_mask: i64From([1, T], new Array(T).fill(1)),
          token_type_ids: i64From([1, T], types),
        });
        const ref = referenceBertForward(tiny.config, tensorMap(tiny), ids, types);
        expect(out.logits.dims).toEqual([1, C]);
        expect(out.last_hidden_state.dims).toEqual([1, T, H]);
        expect(diff(`bert ${c.name}: logits`, out.logits.data as Float32Array, ref.logits!)).toBeLessThan(
          1e-4,
        );
        expect(diff(`bert ${c.name}: pooled`, out.pooled.data as Float32Array, ref.pooled)).toBeLessThan(
          1e-4,
        );
        expect(
          diff(
            `bert ${c.name}: last_hidden_state`,
            out.last_hidden_state.data as Float32Array,
            ref.lastHidden,
          ),
        ).toBeLessThan(1e-4);
        for (let i = 0; i < model.dims.nLayers; i++) {
          expect(
            diff(`bert ${c.name}: taps`, out[`attn_in.${i}`].data as Float32Array, ref.attnTaps[i]),
          ).toBeLessThan(1e-4);
          expect(
            diff(`bert ${c.name}: taps`, out[`mlp_in.${i}`].data as Float32Array, ref.mlpTaps[i]),
          ).toBeLessThan(1e-4);
        }
      } finally {
        await session.release();
      }
    },
  );

  it("right-padded batch of 3 (attention_mask 0): each row equals the sequence run alone (≤ 1e-5)", async () => {
    const tiny = makeTinyBert({ seed: 33, numLabels: 2 });
    const model = modelOf(tiny);
    const H = model.dims.hidden;
    const C = model.dims.numLabels;
    const session = await Session.create(emitModelGraph(model, { taps: true }));
    try {
      const rng = new Rng(9);
      const lens = [5, 14, 9];
      const seqs = lens.map((n) => [
        2,
        ...randomIds(n - 2, model.dims.vocab, rng).map((x) => Math.max(5, x)),
        3,
      ]);
      const B = seqs.length;
      const T = Math.max(...lens);
      const ids: number[] = [];
      const mask: number[] = [];
      for (const s of seqs) {
        for (let t = 0; t < T; t++) {
          ids.push(t < s.length ? s[t] : 0);
          mask.push(t < s.length ? 1 : 0);
        }
      }
      const zeros = new Array(B * T).fill(0);
      const batch = await session.run({
        input_ids: i64From([B, T], ids),
        attention_mask: i64From([B, T], mask),
        token_type_ids: i64From([B, T], zeros),
      });
      expect(batch.logits.dims).toEqual([B, C]);
      for (let b = 0; b < B; b++) {
        const n = seqs[b].length;
        const alone = await session.run({
          input_ids: i64From([1, n], seqs[b]),
          attention_mask: i64From([1, n], new Array(n).fill(1)),
          token_type_ids: i64From([1, n], new Array(n).fill(0)),
        });
        expect(
          diff(
            "bert padded batch vs alone: logits",
            row(batch.logits, b, C),
            alone.logits.data as Float32Array,
          ),
        ).toBeLessThanOrEqual(1e-5);
        const hidden = row(batch.last_hidden_state, b, T * H).subarray(0, n * H);
        expect(
          diff(
            "bert padded batch vs alone: last_hidden_state (valid positions)",
            hidden,
            alone.last_hidden_state.data as Float32Array,
          ),
        ).toBeLessThanOrEqual(1e-5);
        const ref = referenceBertForward(tiny.config, tensorMap(tiny), seqs[b]);
        expect(
          diff("bert padded batch vs reference: logits", row(batch.logits, b, C), ref.logits!),
        ).toBeLessThan(1e-4);
        // the reference with the same padding and mask gives the same logits too
        const padded = ids.slice(b * T, (b + 1) * T);
        const refPadded = referenceBertForward(
          tiny.config,
          tensorMap(tiny),
          padded,
          undefined,
          mask.slice(b * T, (b + 1) * T),
        );
        expect(
          diff("bert padded batch vs reference: logits", row(batch.logits, b, C), refPadded.logits!),
        ).toBeLessThan(1e-4);
      }
    } finally {
      await session.release();
    }
  });
});

// ---------------------------------------------------------------------------------------------------------
// layer graphs

/** Runs emitEmbedGraph then emitLayerGraph per layer (weights fed as inputs); returns the taps and final x. */
async function chainLayers(
  model: Model,
  B: number,
  T: number,
  feeds: { input_ids: HostTensor; token_type_ids?: HostTensor; attention_mask?: HostTensor },
  opts: { reuseLayer0?: boolean } = {},
): Promise<{ attn: Float32Array[]; mlp: Float32Array[]; x: Float32Array }> {
  const embed = await Session.create(emitEmbedGraph(model));
  const embFeeds: Record<string, HostTensor> = { input_ids: feeds.input_ids };
  if (feeds.token_type_ids) embFeeds.token_type_ids = feeds.token_type_ids;
  let x = (await embed.run(embFeeds)).x;
  await embed.release();
  expect(x.dims).toEqual([B, T, model.dims.hidden]);
  const attn: Float32Array[] = [];
  const mlp: Float32Array[] = [];
  const layer0 = opts.reuseLayer0 ? emitLayerGraph(model, 0) : undefined;
  for (let i = 0; i < model.dims.nLayers; i++) {
    const lg = layer0 ?? emitLayerGraph(model, i);
    const session = await Session.create(lg.bytes);
    const f: Record<string, HostTensor> = { x };
    if (feeds.attention_mask) f.attention_mask = feeds.attention_mask;
    // the layer-i tensor for each weight input of the graph (reusing layer 0's graph: names mapped through genericName)
    const byInput = new Map<string, string>();
    for (const name of model.weights.names()) {
      if (name.includes(`.${i}.`)) byInput.set(genericName(name, i), name);
    }
    for (const [tensor, input] of lg.weightInputs) {
      const own = layer0 ? byInput.get(genericName(tensor, 0)) : tensor;
      expect(own, `weight for input ${input}`).toBeDefined();
      f[input] = f32(model.weights.shape(own!), model.weights.get(own!));
    }
    const r = await session.run(f);
    await session.release();
    attn.push(r.attn_in.data as Float32Array);
    mlp.push(r.mlp_in.data as Float32Array);
    x = r.out;
  }
  return { attn, mlp, x: x.data as Float32Array };
}

describe("emitEmbedGraph + emitLayerGraph chained reproduce the full forward", () => {
  it("llama GQA: every layer's attn_in / mlp_in vs reference taps, final norm + lm_head vs reference logits", async () => {
    const tiny = makeTinyLlama({ seed: 41, layers: 3, consumerBias: true });
    const model = modelOf(tiny);
    const rng = new Rng(3);
    const T = 11;
    const ids = randomIds(T, model.dims.vocab, rng);
    const ref = referenceDecoderForward(tiny.config, tensorMap(tiny), ids);
    const got = await chainLayers(model, 1, T, { input_ids: i64From([1, T], ids) });
    for (let i = 0; i < model.dims.nLayers; i++) {
      expect(diff("layer graphs llama: taps", got.attn[i], ref.attnTaps[i])).toBeLessThan(1e-4);
      expect(diff("layer graphs llama: taps", got.mlp[i], ref.mlpTaps[i])).toBeLessThan(1e-4);
    }
    // final RMSNorm + lm_head in float64 on the chained output
    const H = model.dims.hidden;
    const V = model.dims.vocab;
    const nw = model.weights.get("model.norm.weight");
    const head = model.weights.get("lm_head.weight");
    const logits = new Float64Array(T * V);
    for (let t = 0; t < T; t++) {
      const h = got.x.subarray(t * H, (t + 1) * H);
      let ss = 0;
      for (const v of h) ss += v * v;
      const inv = 1 / Math.sqrt(ss / H + model.dims.eps);
      for (let v = 0; v < V; v++) {
        let s = 0;
        for (let j = 0; j < H; j++) s += h[j] * inv * nw[j] * head[v * H + j];
        logits[t * V + v] = s;
      }
    }
    expect(diff("layer graphs llama: logits", logits, ref.logits)).toBeLessThan(1e-4);
  });

  it("one layer graph (layer 0's) is reusable for every equal-shape layer by feeding that layer's weights", async () => {
    const tiny = makeTinyLlama({ seed: 42, layers: 3, modelType: "qwen2" });
    const model = modelOf(tiny);
    const rng = new Rng(4);
    const B = 2;
    const T = 9;
    const seqs = [randomIds(T, model.dims.vocab, rng), randomIds(T, model.dims.vocab, rng)];
    const got = await chainLayers(
      model,
      B,
      T,
      { input_ids: i64From([B, T], seqs.flat()) },
      { reuseLayer0: true },
    );
    for (let b = 0; b < B; b++) {
      const ref = referenceDecoderForward(tiny.config, tensorMap(tiny), seqs[b]);
      for (let i = 0; i < model.dims.nLayers; i++) {
        const a = got.attn[i];
        const m = got.mlp[i];
        expect(
          diff(
            "layer graphs qwen2 reused: taps",
            a.subarray((b * a.length) / B, ((b + 1) * a.length) / B),
            ref.attnTaps[i],
          ),
        ).toBeLessThan(1e-4);
        expect(
          diff(
            "layer graphs qwen2 reused: taps",
            m.subarray((b * m.length) / B, ((b + 1) * m.length) / B),
            ref.mlpTaps[i],
          ),
        ).toBeLessThan(1e-4);
      }
    }
  });

  it("BERT (padded batch with attention_mask): every layer's taps at valid positions vs reference", async () => {
    const tiny = makeTinyBert({ seed: 43, layers: 3 });
    const model = modelOf(tiny);
    const rng = new Rng(6);
    const lens = [10, 6];
    const T = 10;
    const B = 2;
    const seqs = lens.map((n) => randomIds(n, model.dims.vocab, rng));
    const ids: number[] = [];
    const mask: number[] = [];
    for (const s of seqs) {
      for (let t = 0; t < T; t++) {
        ids.push(s[t] ?? 0);
        mask.push(t < s.length ? 1 : 0);
      }
    }
    const got = await chainLayers(model, B, T, {
      input_ids: i64From([B, T], ids),
      token_type_ids: i64From([B, T], new Array(B * T).fill(0)),
      attention_mask: i64From([B, T], mask),
    });
    for (let b = 0; b < B; b++) {
      const n = lens[b];
      const ref = referenceBertForward(tiny.config, tensorMap(tiny), seqs[b]);
      for (let i = 0; i < model.dims.nLayers; i++) {
        const aw = got.attn[i].length / (B * T);
        const mw = got.mlp[i].length / (B * T);
        expect(
          diff(
            "layer graphs bert: taps",
            got.attn[i].subarray(b * T * aw, (b * T + n) * aw),
            ref.attnTaps[i],
          ),
        ).toBeLessThan(1e-4);
        expect(
          diff("layer graphs bert: taps", got.mlp[i].subarray(b * T * mw, (b * T + n) * mw), ref.mlpTaps[i]),
        ).toBeLessThan(1e-4);
      }
      const H = model.dims.hidden;
      expect(
        diff("layer graphs bert: last hidden", got.x.subarray(b * T * H, (b * T + n) * H), ref.lastHidden),
      ).toBeLessThan(1e-4);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------
// config features that change the forward pass but that the emitter does not read (reported as src bugs)

describe("config features the forward must honour or reject", () => {
  /** Passes when pare's logits match the reference, or when pare refuses the config with a PareError. */
  async function matchesOrRejects(tiny: TinyModel, T: number): Promise<void> {
    let model: Model;
    let bytes: Uint8Array;
    try {
      model = modelOf(tiny);
      bytes = emitModelGraph(model);
    } catch (e) {
      expect((e as Error).name).toBe("PareError");
      return;
    }
    const session = await Session.create(bytes);
    try {
      const ids = randomIds(T, model.dims.vocab, new Rng(8));
      const out = await session.run({ input_ids: i64From([1, T], ids) });
      const ref = referenceDecoderForward(tiny.config, tensorMap(tiny), ids);
      expect(diff("unsupported config: logits", out.logits.data as Float32Array, ref.logits)).toBeLessThan(
        1e-4,
      );
    } finally {
      await session.release();
    }
  }

  it("mistral with sliding_window 4 < T = 13", async () => {
    const tiny = makeTinyLlama({ seed: 19, modelType: "mistral" });
    tiny.config.sliding_window = 4;
    await matchesOrRejects(tiny, 13);
  });

  it("llama with rope_scaling {type: linear, factor: 4}", async () => {
    const tiny = makeTinyLlama({ seed: 20 });
    tiny.config.rope_scaling = { type: "linear", rope_type: "linear", factor: 4 };
    await matchesOrRejects(tiny, 13);
  });

  it("mistral with sliding_window ≥ T is the plain causal forward", async () => {
    const tiny = makeTinyLlama({ seed: 19, modelType: "mistral" });
    tiny.config.sliding_window = 16;
    await matchesOrRejects(tiny, 13);
  });
});
