import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { SafetensorsFile } from "../../src/io/safetensors.ts";
import { Rng } from "../helpers/rng.ts";
import {
  makeTinyBert,
  makeTinyLlama,
  type TinyModel,
  type TinyTensor,
  tensorMap,
} from "../helpers/tinyModels.ts";
import {
  argmax,
  erf,
  type RefTensor,
  referenceBertForward,
  referenceDecoderForward,
  referenceGreedy,
  softmax,
} from "./forward.ts";

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
};

const randomIds = (n: number, vocab: number, seed: number, min = 0): number[] => {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => min + rng.int(vocab - min));
};

/** A copy of the model's tensors as a mutable map (data copied). */
const cloneMap = (m: TinyModel): Map<string, TinyTensor> =>
  new Map(m.tensors.map((t) => [t.name, { name: t.name, shape: [...t.shape], data: t.data.slice() }]));

/** Keeps the given rows of a [rows, cols] (or 1-D) tensor, in the given order. */
function takeRows(t: TinyTensor, rows: number[]): TinyTensor {
  const cols = t.shape.length === 2 ? t.shape[1] : 1;
  const data = new Float32Array(rows.length * cols);
  rows.forEach((r, i) => {
    data.set(t.data.subarray(r * cols, (r + 1) * cols), i * cols);
  });
  return { name: t.name, shape: t.shape.length === 2 ? [rows.length, cols] : [rows.length], data };
}

/** Keeps the given columns of a [rows, cols] tensor, in the given order. */
function takeCols(t: TinyTensor, cols: number[]): TinyTensor {
  const [R, C] = t.shape;
  const data = new Float32Array(R * cols.length);
  for (let r = 0; r < R; r++) {
    for (let i = 0; i < cols.length; i++) data[r * cols.length + i] = t.data[r * C + cols[i]];
  }
  return { name: t.name, shape: [R, cols.length], data };
}

/** Indices of whole heads (each `hd` wide) in order. */
const headIdx = (heads: number[], hd: number): number[] =>
  heads.flatMap((h) => Array.from({ length: hd }, (_, d) => h * hd + d));

function zeroCols(t: TinyTensor, cols: number[]): void {
  const [R, C] = t.shape;
  for (let r = 0; r < R; r++) for (const c of cols) t.data[r * C + c] = 0;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

describe("erf / softmax helpers", () => {
  it("erf matches 40-digit mpmath values within 2 ulp", () => {
    const cases: [number, number][] = [
      [1e-8, 1.1283791670955126e-8],
      [0.1, 0.1124629160182849],
      [0.5, 0.5204998778130465],
      [-0.7, -0.6778011938374184],
      [0.9999, 0.8426592780487595],
      [1, 0.8427007929497149],
      [1.5, 0.9661051464753108],
      [-1.97, -0.9946637246465299],
      [2, 0.9953222650189527],
      [2.5, 0.999593047982555],
      [3, 0.9999779095030014],
      [3.5, 0.9999992569016276],
      [4.5, 0.9999999998033839],
      [5.5, 0.9999999999999927],
      [5.9, 0.9999999999999999],
    ];
    for (const [x, want] of cases) {
      expect(Math.abs(erf(x) - want)).toBeLessThanOrEqual(2 * Number.EPSILON * Math.abs(want));
    }
    expect(erf(0)).toBe(0);
    expect(erf(7)).toBe(1);
    expect(erf(-7)).toBe(-1);
  });

  it("softmax sums to 1 and argmax picks the first maximum", () => {
    const p = softmax([1000, 1001, 999]);
    expect(p[0] + p[1] + p[2]).toBeCloseTo(1, 15);
    expect(argmax([1, 3, 3, 2])).toBe(1);
    expect(argmax([9, 1, 3, 7], 2, 2)).toBe(1);
  });
});

describe("referenceDecoderForward: self-consistency on tiny seeded models", () => {
  it("is causal: a prefix's logits do not depend on later tokens", () => {
    const m = makeTinyLlama({ seed: 1 });
    const w = tensorMap(m);
    const ids = randomIds(9, 300, 2);
    const full = referenceDecoderForward(m.config, w, ids);
    const pre = referenceDecoderForward(m.config, w, ids.slice(0, 5));
    expect(maxAbsDiff(pre.logits, full.logits.subarray(0, 5 * 300))).toBeLessThan(1e-12);
    expect(full.attnTaps).toHaveLength(2);
    expect(full.attnTaps[0]).toHaveLength(9 * 4 * 8);
    expect(full.mlpTaps[1]).toHaveLength(9 * 48);
    const std = Math.sqrt(full.logits.reduce((s, x) => s + x * x, 0) / full.logits.length);
    expect(std).toBeGreaterThan(0.1); // the tiny model is non-trivial
  });

  it("is invariant to permuting kv groups together with their query heads and o_proj columns (qwen2, biases)", () => {
    const hd = 8;
    const m = makeTinyLlama({
      seed: 3,
      modelType: "qwen2",
      heads: 6,
      kvHeads: 3,
      consumerBias: true,
      layers: 2,
    });
    const ids = randomIds(7, 300, 4);
    const base = referenceDecoderForward(m.config, tensorMap(m), ids);
    const perm = [2, 0, 1]; // new kv head g takes old kv head perm[g]
    const group = 2;
    const qHeads = perm.flatMap((g) => range(group).map((r) => g * group + r));
    const w = cloneMap(m);
    for (let l = 0; l < 2; l++) {
      const p = `model.layers.${l}.self_attn.`;
      for (const n of ["q_proj.weight", "q_proj.bias"])
        w.set(p + n, takeRows(w.get(p + n)!, headIdx(qHeads, hd)));
      for (const n of ["k_proj.weight", "k_proj.bias", "v_proj.weight", "v_proj.bias"]) {
        w.set(p + n, takeRows(w.get(p + n)!, headIdx(perm, hd)));
      }
      w.set(`${p}o_proj.weight`, takeCols(w.get(`${p}o_proj.weight`)!, headIdx(qHeads, hd)));
    }
    const out = referenceDecoderForward(m.config, w, ids);
    expect(maxAbsDiff(out.logits, base.logits)).toBeLessThan(1e-12);
    // the taps are permuted the same way
    const cols = headIdx(qHeads, hd);
    const T = ids.length;
    const permuted = new Float64Array(base.attnTaps[1].length);
    for (let t = 0; t < T; t++) {
      for (let i = 0; i < cols.length; i++) permuted[t * 48 + i] = base.attnTaps[1][t * 48 + cols[i]];
    }
    expect(maxAbsDiff(out.attnTaps[1], permuted)).toBeLessThan(1e-13);
    expect(maxAbsDiff(out.mlpTaps[1], base.mlpTaps[1])).toBeLessThan(1e-12);
  });

  it("GQA equals MHA with each kv head duplicated for its query heads", () => {
    const hd = 8;
    const m = makeTinyLlama({ seed: 5, heads: 4, kvHeads: 2 });
    const ids = randomIds(6, 300, 6);
    const base = referenceDecoderForward(m.config, tensorMap(m), ids);
    const w = cloneMap(m);
    for (let l = 0; l < 2; l++) {
      for (const n of ["k_proj", "v_proj"]) {
        const name = `model.layers.${l}.self_attn.${n}.weight`;
        w.set(name, takeRows(w.get(name)!, headIdx([0, 0, 1, 1], hd)));
      }
    }
    const out = referenceDecoderForward({ ...m.config, num_key_value_heads: 4 }, w, ids);
    expect(maxAbsDiff(out.logits, base.logits)).toBeLessThan(1e-12);
  });

  it("pruned per-layer widths (from weight shapes) equal zeroing the pruned consumer columns", () => {
    const hd = 8;
    const m = makeTinyLlama({ seed: 7, heads: 4, kvHeads: 2, intermediate: 48 });
    const ids = randomIds(8, 300, 8);
    // dense with layer-0 kv group 1 (query heads 2,3) and layer-1 FFN channels {0, 5, 17, 40} silenced
    const dropCh = [0, 5, 17, 40];
    const zeroed = cloneMap(m);
    zeroCols(zeroed.get("model.layers.0.self_attn.o_proj.weight")!, headIdx([2, 3], hd));
    zeroCols(zeroed.get("model.layers.1.mlp.down_proj.weight")!, dropCh);
    const want = referenceDecoderForward(m.config, zeroed, ids);
    // physically pruned
    const pruned = cloneMap(m);
    const a = "model.layers.0.self_attn.";
    pruned.set(`${a}q_proj.weight`, takeRows(pruned.get(`${a}q_proj.weight`)!, headIdx([0, 1], hd)));
    pruned.set(`${a}k_proj.weight`, takeRows(pruned.get(`${a}k_proj.weight`)!, headIdx([0], hd)));
    pruned.set(`${a}v_proj.weight`, takeRows(pruned.get(`${a}v_proj.weight`)!, headIdx([0], hd)));
    pruned.set(`${a}o_proj.weight`, takeCols(pruned.get(`${a}o_proj.weight`)!, headIdx([0, 1], hd)));
    const keep = range(48).filter((c) => !dropCh.includes(c));
    const f = "model.layers.1.mlp.";
    pruned.set(`${f}gate_proj.weight`, takeRows(pruned.get(`${f}gate_proj.weight`)!, keep));
    pruned.set(`${f}up_proj.weight`, takeRows(pruned.get(`${f}up_proj.weight`)!, keep));
    pruned.set(`${f}down_proj.weight`, takeCols(pruned.get(`${f}down_proj.weight`)!, keep));
    const got = referenceDecoderForward(m.config, pruned, ids);
    expect(maxAbsDiff(got.logits, want.logits)).toBeLessThan(1e-12);
    expect(got.attnTaps[0]).toHaveLength(8 * 2 * hd);
    expect(got.attnTaps[1]).toHaveLength(8 * 4 * hd);
    expect(got.mlpTaps[1]).toHaveLength(8 * 44);
  });

  it("per-layer widths from makeTinyLlama({ perLayer }) run, including an emptied layer", () => {
    const m = makeTinyLlama({
      seed: 9,
      layers: 3,
      perLayer: { heads: [4, 2, 0], kvHeads: [2, 1, 0], intermediate: [48, 10, 0] },
      consumerBias: true,
    });
    const out = referenceDecoderForward(m.config, tensorMap(m), randomIds(5, 300, 10));
    expect(out.attnTaps.map((t) => t.length / 5)).toEqual([32, 16, 0]);
    expect(out.mlpTaps.map((t) => t.length / 5)).toEqual([48, 10, 0]);
    expect(out.logits.every(Number.isFinite)).toBe(true);
  });

  it("tied embeddings: tie_word_embeddings or a missing lm_head both use embed_tokens", () => {
    const tied = makeTinyLlama({ seed: 11, tie: true });
    const ids = randomIds(5, 300, 12);
    const a = referenceDecoderForward(tied.config, tensorMap(tied), ids);
    const w = cloneMap(tied);
    const emb = w.get("model.embed_tokens.weight")!;
    w.set("lm_head.weight", { ...emb, name: "lm_head.weight", data: emb.data.slice() });
    const b = referenceDecoderForward({ ...tied.config, tie_word_embeddings: false }, w, ids);
    expect(maxAbsDiff(a.logits, b.logits)).toBeLessThan(1e-15);
    // with tie_word_embeddings true, a present lm_head is ignored (HF ties it)
    w.get("lm_head.weight")!.data.fill(0);
    const c = referenceDecoderForward(tied.config, w, ids);
    expect(maxAbsDiff(a.logits, c.logits)).toBe(0);
  });

  it("accepts a lookup function and Float64Array weights", () => {
    const m = makeTinyLlama({ seed: 13 });
    const ids = randomIds(4, 300, 14);
    const base = referenceDecoderForward(m.config, tensorMap(m), ids);
    const f64 = new Map<string, RefTensor>(
      m.tensors.map((t) => [t.name, { shape: t.shape, data: Float64Array.from(t.data) }]),
    );
    const out = referenceDecoderForward(m.config, (n) => f64.get(n), ids);
    expect(maxAbsDiff(out.logits, base.logits)).toBe(0);
    expect(() => referenceDecoderForward(m.config, tensorMap(m), [300])).toThrow(/out of range/);
  });

  it("mistral sliding_window + RoPE relativity: a 1-layer model sees only the last `window` tokens", () => {
    const m = makeTinyLlama({ seed: 17, modelType: "mistral", layers: 1 });
    const w = tensorMap(m);
    const ids = randomIds(8, 300, 18);
    const cfg = { ...m.config, sliding_window: 3 };
    const full = referenceDecoderForward(cfg, w, ids);
    const tail = referenceDecoderForward(cfg, w, ids.slice(5));
    // rotary scores depend only on i - j, so the shifted window gives the same last row
    expect(maxAbsDiff(full.logits.subarray(7 * 300), tail.logits.subarray(2 * 300))).toBeLessThan(1e-12);
    const noWindow = referenceDecoderForward(m.config, w, ids);
    expect(maxAbsDiff(full.logits.subarray(7 * 300), noWindow.logits.subarray(7 * 300))).toBeGreaterThan(
      1e-6,
    );
    expect(maxAbsDiff(full.logits.subarray(0, 3 * 300), noWindow.logits.subarray(0, 3 * 300))).toBe(0);
  });

  it("greedy decoding appends the argmax of the last position", () => {
    const m = makeTinyLlama({ seed: 15 });
    const w = tensorMap(m);
    const prompt = randomIds(3, 300, 16);
    const gen = referenceGreedy(m.config, w, prompt, 3);
    const ids = [...prompt];
    for (let s = 0; s < 3; s++) {
      const { logits } = referenceDecoderForward(m.config, w, ids);
      ids.push(argmax(logits, (ids.length - 1) * 300, 300));
    }
    expect(gen).toEqual(ids.slice(3));
  });
});

describe("referenceBertForward: self-consistency on tiny seeded models", () => {
  it("right padding with attention_mask 0 leaves the real positions unchanged", () => {
    const m = makeTinyBert({ seed: 21 });
    const w = tensorMap(m);
    const ids = [2, ...randomIds(5, 300, 22, 5), 3];
    const types = [0, 0, 0, 0, 1, 1, 1];
    const base = referenceBertForward(m.config, w, ids, types);
    const padded = referenceBertForward(
      m.config,
      w,
      [...ids, 0, 0, 0, 0],
      [...types, 0, 0, 0, 0],
      [...ids.map(() => 1), 0, 0, 0, 0],
    );
    expect(maxAbsDiff(padded.logits!, base.logits!)).toBeLessThan(1e-13);
    expect(maxAbsDiff(padded.pooled, base.pooled)).toBeLessThan(1e-13);
    expect(maxAbsDiff(padded.lastHidden.subarray(0, 7 * 32), base.lastHidden)).toBeLessThan(1e-13);
    expect(maxAbsDiff(padded.attnTaps[1].subarray(0, 7 * 32), base.attnTaps[1])).toBeLessThan(1e-13);
    // token types matter
    const other = referenceBertForward(m.config, w, ids);
    expect(maxAbsDiff(other.logits!, base.logits!)).toBeGreaterThan(1e-6);
  });

  it("accepts BertModel names (no bert. prefix)", () => {
    const m = makeTinyBert({ seed: 23 });
    const ids = [2, ...randomIds(6, 300, 24, 5), 3];
    const base = referenceBertForward(m.config, tensorMap(m), ids);
    const plain = new Map(m.tensors.map((t) => [t.name.replace(/^bert\./, ""), t]));
    const out = referenceBertForward(m.config, plain, ids);
    expect(maxAbsDiff(out.logits!, base.logits!)).toBe(0);
    plain.delete("classifier.weight");
    expect(referenceBertForward(m.config, plain, ids).logits).toBeUndefined();
  });

  it("is invariant to permuting heads (query/key/value rows, output.dense columns)", () => {
    const hd = 8;
    const m = makeTinyBert({ seed: 25 });
    const ids = [2, ...randomIds(6, 300, 26, 5), 3];
    const base = referenceBertForward(m.config, tensorMap(m), ids);
    const w = cloneMap(m);
    const perm = headIdx([3, 1, 0, 2], hd);
    for (let l = 0; l < 2; l++) {
      const p = `bert.encoder.layer.${l}.attention.`;
      for (const n of ["query", "key", "value"]) {
        for (const s of ["weight", "bias"])
          w.set(`${p}self.${n}.${s}`, takeRows(w.get(`${p}self.${n}.${s}`)!, perm));
      }
      w.set(`${p}output.dense.weight`, takeCols(w.get(`${p}output.dense.weight`)!, perm));
    }
    const out = referenceBertForward(m.config, w, ids);
    expect(maxAbsDiff(out.logits!, base.logits!)).toBeLessThan(1e-13);
    expect(maxAbsDiff(out.lastHidden, base.lastHidden)).toBeLessThan(1e-12);
  });

  it("pruned heads / intermediate channels equal zeroing the consumer columns", () => {
    const hd = 8;
    const m = makeTinyBert({ seed: 27 });
    const ids = [2, ...randomIds(9, 300, 28, 5), 3];
    const zeroed = cloneMap(m);
    const a = "bert.encoder.layer.1.attention.";
    const o = "bert.encoder.layer.0.";
    zeroCols(zeroed.get(`${a}output.dense.weight`)!, headIdx([1], hd));
    const drop = [3, 4, 50];
    zeroCols(zeroed.get(`${o}output.dense.weight`)!, drop);
    const want = referenceBertForward(m.config, zeroed, ids);
    const pruned = cloneMap(m);
    const keepHeads = headIdx([0, 2, 3], hd);
    for (const n of ["query", "key", "value"]) {
      for (const s of ["weight", "bias"]) {
        pruned.set(`${a}self.${n}.${s}`, takeRows(pruned.get(`${a}self.${n}.${s}`)!, keepHeads));
      }
    }
    pruned.set(`${a}output.dense.weight`, takeCols(pruned.get(`${a}output.dense.weight`)!, keepHeads));
    const keep = range(64).filter((c) => !drop.includes(c));
    for (const s of ["weight", "bias"]) {
      pruned.set(`${o}intermediate.dense.${s}`, takeRows(pruned.get(`${o}intermediate.dense.${s}`)!, keep));
    }
    pruned.set(`${o}output.dense.weight`, takeCols(pruned.get(`${o}output.dense.weight`)!, keep));
    const got = referenceBertForward(m.config, pruned, ids);
    expect(maxAbsDiff(got.logits!, want.logits!)).toBeLessThan(1e-13);
    expect(got.attnTaps[1]).toHaveLength(11 * 24);
    expect(got.mlpTaps[0]).toHaveLength(11 * 61);
    const std = Math.sqrt(want.lastHidden.reduce((s, x) => s + x * x, 0) / want.lastHidden.length);
    expect(std).toBeGreaterThan(0.5); // post-LN hidden states are unit-scale
  });
});

// ---------------------------------------------------------------------------------------------------------
// integration: the references shipped with the fixture models (computed in float64 by an independent
// implementation of HF semantics)

const SHARED = path.resolve(process.cwd(), "../shared/models");
const HAVE_SHARED = fs.existsSync(SHARED);

interface Loaded {
  config: Record<string, unknown>;
  weights: Map<string, RefTensor>;
  ref: Record<string, unknown>;
  layer0: Record<string, unknown>;
}

function loadFixture(name: string): Loaded {
  const dir = path.join(SHARED, name);
  const readJson = (p: string) => JSON.parse(fs.readFileSync(path.join(dir, p), "utf8"));
  const f = SafetensorsFile.open(path.join(dir, "model.safetensors"));
  const weights = new Map<string, RefTensor>();
  try {
    for (const [n, info] of f.tensors) weights.set(n, { shape: info.shape, data: f.readF32(n) });
  } finally {
    f.close();
  }
  return {
    config: readJson("config.json"),
    weights,
    ref: readJson("reference/reference.json"),
    layer0: readJson("reference/layer0.json"),
  };
}

interface DecoderInput {
  text: string;
  input_ids: number[];
  last_logits: number[];
  logits_sum: number;
  argmax: number[];
}

interface BertInput {
  text: string;
  input_ids: number[];
  token_type_ids: number[];
  attention_mask: number[];
  logits: number[];
  probs: Record<string, number>;
  last_hidden_state_cls: number[];
  last_hidden_state_sum: number;
  pooled_sum: number;
}

const sum = (a: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return s;
};

describe.each(["llama-gqa-6l", "aidreams-260k"])(
  "referenceDecoderForward vs shared %s references",
  (name) => {
    const skipMsg = HAVE_SHARED ? "" : " (SKIPPED: ../shared/models not found)";
    let cached: Loaded | undefined;
    const fixture = () => (cached ??= loadFixture(name));

    it.skipIf(!HAVE_SHARED)(
      `last-position logits within 1e-6 and per-position argmax equal${skipMsg}`,
      () => {
        const { config, weights, ref } = fixture();
        for (const inp of ref.inputs as DecoderInput[]) {
          const T = inp.input_ids.length;
          const out = referenceDecoderForward(config, weights, inp.input_ids);
          const V = out.logits.length / T;
          expect(V).toBe(config.vocab_size);
          expect(maxAbsDiff(out.logits.subarray((T - 1) * V), inp.last_logits)).toBeLessThan(1e-6);
          expect(Math.abs(sum(out.logits) - inp.logits_sum)).toBeLessThan(1e-6);
          expect(range(T).map((t) => argmax(out.logits, t * V, V))).toEqual(inp.argmax);
        }
      },
    );

    it.skipIf(!HAVE_SHARED)(`layer-0 o_proj / down_proj inputs within 1e-6${skipMsg}`, () => {
      const { config, weights, layer0 } = fixture();
      const out = referenceDecoderForward(config, weights, layer0.input_ids as number[]);
      const o = layer0.o_proj_input as { data: number[] };
      const d = layer0.down_proj_input as { data: number[] };
      expect(maxAbsDiff(out.attnTaps[0], o.data)).toBeLessThan(1e-6);
      expect(maxAbsDiff(out.mlpTaps[0], d.data)).toBeLessThan(1e-6);
      const sums = layer0.all_layers_sums as Record<string, number>;
      for (let l = 0; l < out.attnTaps.length; l++) {
        expect(Math.abs(sum(out.attnTaps[l]) - sums[`layers.${l}.o_proj_in`])).toBeLessThan(1e-8);
        expect(Math.abs(sum(out.mlpTaps[l]) - sums[`layers.${l}.down_proj_in`])).toBeLessThan(1e-8);
      }
    });

    it.skipIf(!HAVE_SHARED)(`greedy continuation (20 tokens, full recompute) identical${skipMsg}`, () => {
      const { config, weights, ref } = fixture();
      const g = ref.greedy as { prompt_ids: number[]; new_ids: number[] };
      expect(referenceGreedy(config, weights, g.prompt_ids, g.new_ids.length)).toEqual(g.new_ids);
    });
  },
);

describe("referenceBertForward vs shared bert-sst2-4l references", () => {
  const skipMsg = HAVE_SHARED ? "" : " (SKIPPED: ../shared/models not found)";
  let cached: Loaded | undefined;
  const fixture = () => (cached ??= loadFixture("bert-sst2-4l"));

  it.skipIf(!HAVE_SHARED)(`logits, probs, [CLS] hidden state within 1e-6${skipMsg}`, () => {
    const { config, weights, ref } = fixture();
    const labels = ref.labels as Record<string, string>;
    for (const inp of ref.inputs as BertInput[]) {
      const out = referenceBertForward(
        config,
        weights,
        inp.input_ids,
        inp.token_type_ids,
        inp.attention_mask,
      );
      expect(maxAbsDiff(out.logits!, inp.logits)).toBeLessThan(1e-6);
      const probs = softmax(out.logits!);
      expect(
        maxAbsDiff(
          probs,
          [labels["0"], labels["1"]].map((l) => inp.probs[l]),
        ),
      ).toBeLessThan(1e-6);
      expect(maxAbsDiff(out.lastHidden.subarray(0, 256), inp.last_hidden_state_cls)).toBeLessThan(1e-6);
      expect(Math.abs(sum(out.lastHidden) - inp.last_hidden_state_sum)).toBeLessThan(1e-8);
      expect(Math.abs(sum(out.pooled) - inp.pooled_sum)).toBeLessThan(1e-8);
    }
  });

  it.skipIf(!HAVE_SHARED)(`right-padded batch rows match their logits and probs${skipMsg}`, () => {
    const { config, weights, ref } = fixture();
    const pb = ref.padded_batch as {
      input_ids: number[][];
      attention_mask: number[][];
      logits: number[][];
      probs: number[][];
    };
    for (let b = 0; b < pb.input_ids.length; b++) {
      const out = referenceBertForward(config, weights, pb.input_ids[b], undefined, pb.attention_mask[b]);
      expect(maxAbsDiff(out.logits!, pb.logits[b])).toBeLessThan(1e-6);
      expect(maxAbsDiff(softmax(out.logits!), pb.probs[b])).toBeLessThan(1e-6);
    }
  });

  it.skipIf(!HAVE_SHARED)(
    `layer-0 attention.output.dense / output.dense inputs within 1e-6${skipMsg}`,
    () => {
      const { config, weights, layer0 } = fixture();
      const out = referenceBertForward(config, weights, layer0.input_ids as number[]);
      const a = layer0.attention_output_dense_input as { data: number[] };
      const o = layer0.output_dense_input as { data: number[] };
      expect(maxAbsDiff(out.attnTaps[0], a.data)).toBeLessThan(1e-6);
      expect(maxAbsDiff(out.mlpTaps[0], o.data)).toBeLessThan(1e-6);
      const sums = layer0.all_layers_sums as Record<string, number>;
      for (let l = 0; l < out.attnTaps.length; l++) {
        expect(Math.abs(sum(out.attnTaps[l]) - sums[`layers.${l}.attn_out_in`])).toBeLessThan(1e-8);
        expect(Math.abs(sum(out.mlpTaps[l]) - sums[`layers.${l}.out_in`])).toBeLessThan(1e-8);
      }
    },
  );
});
