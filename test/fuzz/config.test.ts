/**
 * Property tests of config validation (`buildModel`), fixed seeds and run counts: configs mutated around a valid
 * one (sizes replaced by random numbers, strings, negatives, fractions, null, NaN, or removed), and weights with a
 * tensor dropped, added or reshaped, end in success or a PareError — and success only when the config is
 * consistent with itself and with the weights.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { buildModel, checkFinite, MapWeights, type Model, type WeightSource } from "../../src/arch/model.ts";
import { PareError } from "../../src/errors.ts";
import { makeTinyBert, makeTinyLlama, type TinyModel } from "../helpers/tinyModels.ts";

/** Shapes only: buildModel never reads tensor data. */
class ShapeWeights implements WeightSource {
  constructor(readonly shapes: Map<string, number[]>) {}
  names() {
    return [...this.shapes.keys()];
  }
  has(n: string) {
    return this.shapes.has(n);
  }
  shape(n: string) {
    const s = this.shapes.get(n);
    if (!s) throw new PareError("E_TENSOR_MISSING", `no ${n}`, "-");
    return s;
  }
  get(): Float32Array {
    throw new Error("buildModel must not read tensor data");
  }
}

const shapesOf = (m: TinyModel) => new Map(m.tensors.map((t) => [t.name, [...t.shape]]));

/** Runs buildModel; the model, or undefined after a PareError (anything else fails the property). */
function tryBuild(config: Record<string, unknown>, weights: WeightSource): Model | undefined {
  try {
    return buildModel(config, weights);
  } catch (e) {
    if (e instanceof PareError) {
      expect(e.message).not.toMatch(/\n/);
      expect(e.hint).not.toBe("");
      return undefined;
    }
    throw e;
  }
}

const junk = fc.oneof(
  fc.integer({ min: -5, max: 70 }),
  fc.constantFrom(0, -1, 1, 2, 3, 4, 5, 8, 16, 32, 48, 64, 300, 301, 1e12, 2 ** 53, 4096, 4097),
  fc.double(),
  fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, -0, 0.5, 4.5, 1e-7),
  fc.constantFrom("32", "4", "", "abc", "1e3"),
  fc.constantFrom(null, undefined, true, false),
  fc.constantFrom([], [32], {}, { value: 32 }),
);

/** Mutations: key → new value (undefined: the key is removed). */
function mutated(base: Record<string, unknown>, edits: [string, unknown][]): Record<string, unknown> {
  const c = structuredClone(base);
  for (const [k, v] of edits) {
    if (v === undefined) delete c[k];
    else c[k] = v;
  }
  return c;
}

const LLAMA_KEYS = [
  "hidden_size",
  "num_attention_heads",
  "num_key_value_heads",
  "num_hidden_layers",
  "head_dim",
  "intermediate_size",
  "vocab_size",
  "max_position_embeddings",
  "rms_norm_eps",
  "rope_theta",
  "rope_scaling",
  "sliding_window",
  "tie_word_embeddings",
  "architectures",
  "model_type",
  "pare_layer_widths",
];

describe("buildModel on configs around a valid one", () => {
  const llama = makeTinyLlama({ seed: 3 });
  const llamaWeights = new ShapeWeights(shapesOf(llama));

  it("the unmutated configs build", () => {
    expect(tryBuild(llama.config, llamaWeights)).toBeDefined();
    const bert = makeTinyBert({ seed: 4 });
    expect(tryBuild(bert.config, new ShapeWeights(shapesOf(bert)))).toBeDefined();
  });

  it("llama: PareError, or success only with the sizes the weights have", () => {
    const editArb = fc.array(fc.tuple(fc.constantFrom(...LLAMA_KEYS), junk), { minLength: 1, maxLength: 4 });
    fc.assert(
      fc.property(editArb, (edits) => {
        const c = mutated(llama.config, edits);
        const m = tryBuild(c, llamaWeights);
        if (!m) return true;
        // consistent: every size the weights fix is exactly what config.json says
        expect(c.hidden_size).toBe(32);
        expect(c.num_attention_heads).toBe(4);
        expect(c.num_key_value_heads).toBe(2);
        expect(c.num_hidden_layers).toBe(2);
        expect(c.intermediate_size).toBe(48);
        expect(c.vocab_size).toBe(300);
        expect(c.head_dim == null || c.head_dim === 8).toBe(true);
        expect(m.dims).toMatchObject({ hidden: 32, headDim: 8, vocab: 300, nLayers: 2 });
        for (const L of m.dims.layers) expect(L).toMatchObject({ nHeads: 4, nKv: 2, ffn: 48 });
        expect(m.dims.eps >= 0 && m.dims.eps <= 1).toBe(true);
        expect(Number.isFinite(m.dims.ropeTheta) && m.dims.ropeTheta >= 1).toBe(true);
        expect(Number.isInteger(m.dims.maxPos) && m.dims.maxPos >= 1).toBe(true);
        if (m.dims.slidingWindow !== undefined) expect(Number.isInteger(m.dims.slidingWindow)).toBe(true);
        const rs = m.dims.ropeScaling;
        if (rs)
          for (const v of Object.values(rs))
            if (typeof v === "number") expect(v > 0 && Number.isFinite(v)).toBe(true);
        return true;
      }),
      { seed: 424242, numRuns: 600 },
    );
  });

  it("llama: dropped, extra or reshaped tensors — PareError, or shapes that match", () => {
    const names = llama.tensors.map((t) => t.name);
    const tensorEdit = fc.oneof(
      fc.record({ kind: fc.constant("drop" as const), name: fc.constantFrom(...names) }),
      fc.record({
        kind: fc.constant("shape" as const),
        name: fc.constantFrom(...names),
        shape: fc.array(fc.constantFrom(0, 1, 2, 4, 8, 16, 32, 48, 64, 300), { maxLength: 3 }),
      }),
      fc.record({
        kind: fc.constant("add" as const),
        name: fc.constantFrom(
          "model.layers.2.self_attn.q_proj.weight",
          "model.layers.7.mlp.up_proj.weight",
          "model.layers.1.self_attn.q_proj.bias",
          "model.layers.0.mlp.down_proj.bias",
          "lm_head.bias",
          "unrelated.weight",
        ),
        shape: fc.array(fc.constantFrom(1, 8, 32, 48), { minLength: 1, maxLength: 2 }),
      }),
    );
    fc.assert(
      fc.property(fc.array(tensorEdit, { minLength: 1, maxLength: 3 }), (edits) => {
        const shapes = shapesOf(llama);
        for (const e of edits) {
          if (e.kind === "drop") shapes.delete(e.name);
          else shapes.set(e.name, e.shape);
        }
        const m = tryBuild(llama.config, new ShapeWeights(shapes));
        if (!m) return true;
        // success: every tensor the model uses exists with the shape its dims imply
        const want = shapesOf(llama);
        for (const [name, shape] of want) {
          if (name === "lm_head.weight" && m.dims.tiedHead) continue;
          expect(shapes.get(name)).toEqual(shape);
        }
        for (const [name, shape] of shapes) {
          const layer = /^model\.layers\.(\d+)\./.exec(name);
          if (layer) expect(Number(layer[1])).toBeLessThan(2);
          // a layer's projection bias is used, so it must fit (lm_head.bias, unrelated.weight: ignored, as by HF)
          if (layer && name.endsWith(".bias") && want.has(name.replace(/\.bias$/, ".weight"))) {
            expect(shape).toEqual([want.get(name.replace(/\.bias$/, ".weight"))![0]]);
          }
        }
        return true;
      }),
      { seed: 777, numRuns: 400 },
    );
  });

  it("bert: PareError, or success only with the sizes the weights have", () => {
    const bert = makeTinyBert({ seed: 4 });
    const weights = new ShapeWeights(shapesOf(bert));
    const keys = [
      "hidden_size",
      "num_attention_heads",
      "num_hidden_layers",
      "intermediate_size",
      "vocab_size",
      "max_position_embeddings",
      "type_vocab_size",
      "layer_norm_eps",
      "pruned_heads",
      "architectures",
      "head_dim",
    ];
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom(...keys), junk), { minLength: 1, maxLength: 3 }),
        (edits) => {
          const c = mutated(bert.config, edits);
          const m = tryBuild(c, weights);
          if (!m) return true;
          expect(c.hidden_size).toBe(32);
          expect(c.num_hidden_layers).toBe(2);
          expect(c.intermediate_size).toBe(64);
          expect(c.vocab_size).toBe(300);
          expect(c.max_position_embeddings).toBe(64);
          expect(m.dims.layers.every((L) => L.nHeads * m.dims.headDim === 32 && L.ffn === 64)).toBe(true);
          return true;
        },
      ),
      { seed: 31337, numRuns: 400 },
    );
  });
});

describe("checkFinite", () => {
  it("names the tensor and layer of a NaN or Inf, passes finite weights", () => {
    const tiny = makeTinyLlama({ seed: 9 });
    const map = new Map(tiny.tensors.map((t) => [t.name, { shape: t.shape, data: t.data.slice() }]));
    const model = buildModel(tiny.config, new MapWeights(map));
    checkFinite(model);
    fc.assert(
      fc.property(
        fc.constantFrom(...tiny.tensors.map((t) => t.name)),
        fc.nat(),
        fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY),
        (name, at, bad) => {
          const t = map.get(name)!;
          const i = at % t.data.length;
          const old = t.data[i];
          t.data[i] = bad;
          try {
            checkFinite(model);
            return false;
          } catch (e) {
            expect(e).toBeInstanceOf(PareError);
            const err = e as PareError;
            expect(err.code).toBe("E_NUMERIC");
            expect(err.message).toContain(JSON.stringify(name));
            const layer = /layers\.(\d+)\./.exec(name)?.[1];
            if (layer) expect(err.message).toContain(`(layer ${layer})`);
            expect(err.context).toMatchObject({ tensor: name, first: i });
            return true;
          } finally {
            t.data[i] = old;
          }
        },
      ),
      { seed: 11, numRuns: 100 },
    );
  });
});
