/**
 * The float64 family references (families.ts) and the tiny family models (helpers/tinyFamilies.ts):
 * - every semantic feature matters: switching it off in the reference moves the logits, so no fixture can pass
 *   while ignoring it;
 * - with their extra features off, Qwen3 and Phi-3 are exactly Llama (forward.ts) on converted weights;
 * - invariants: soft-capping bounds, the sliding window's exact reach, HF's config rules (use_sliding_window,
 *   layer_types defaults, Gemma 3's ignored attention soft-cap), the transformers 5 config layout, left padding,
 *   pruned (per-layer) widths.
 */
import { describe, expect, it } from "vitest";
import { Rng } from "../helpers/rng.ts";
import {
  makeTinyGemma2,
  makeTinyGemma3,
  makeTinyPhi3,
  makeTinyQwen3,
  type TinyFamilyOptions,
} from "../helpers/tinyFamilies.ts";
import { type TinyModel, type TinyTensor, tensorMap } from "../helpers/tinyModels.ts";
import {
  FAMILY_FEATURES,
  type Feature,
  familyOf,
  hfGeneratePositionIds,
  referenceFamilyForward,
  referenceFamilyGreedy,
} from "./families.ts";
import { argmax, referenceDecoderForward } from "./forward.ts";

const V = 300;
const T = 14; // longer than the tiny models' sliding window of 4, and than 2 layers' reach of 1 + 2·3 tokens

const randomIds = (n: number, seed: number): number[] => {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => rng.int(V));
};
const IDS = randomIds(T, 7);

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** max |a − b| (lengths must agree; NaN propagates). */
function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) {
    const x = Math.abs(a[i] - b[i]);
    if (!(x <= d)) d = x;
  }
  return d;
}

const forward = (m: TinyModel, ids = IDS, off: Feature[] = []) =>
  referenceFamilyForward(m.config, tensorMap(m), ids, { off: new Set(off) });

/** Logits row t of a [T, V] array. */
const rowOf = (logits: Float64Array, t: number) => logits.subarray(t * V, (t + 1) * V);

const withConfig = (m: TinyModel, patch: Record<string, unknown>): TinyModel => ({
  ...m,
  config: { ...m.config, ...patch },
});

// ---------------------------------------------------------------------------------------------------------
// tiny models

describe("tiny family models", () => {
  const shapes = (m: TinyModel) => new Map(m.tensors.map((t) => [t.name, t.shape]));

  it("qwen3: HF names and shapes, q/k norms over head_dim, untied, window set but not used", () => {
    const m = makeTinyQwen3({ attentionBias: true });
    expect(m.config).toMatchObject({
      architectures: ["Qwen3ForCausalLM"],
      model_type: "qwen3",
      hidden_size: 32,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      head_dim: 8,
      intermediate_size: 48,
      attention_bias: true,
      use_sliding_window: false,
      sliding_window: 4,
      max_window_layers: 2,
      rope_theta: 1_000_000,
      tie_word_embeddings: false,
      max_position_embeddings: 128,
    });
    const s = shapes(m);
    expect(s.get("model.layers.0.self_attn.q_norm.weight")).toEqual([8]);
    expect(s.get("model.layers.1.self_attn.k_norm.weight")).toEqual([8]);
    expect(s.get("model.layers.0.self_attn.q_proj.weight")).toEqual([32, 32]);
    expect(s.get("model.layers.0.self_attn.k_proj.weight")).toEqual([16, 32]);
    expect(s.get("model.layers.0.self_attn.o_proj.bias")).toEqual([32]);
    expect(s.get("lm_head.weight")).toEqual([V, 32]);
    // x̂·w norms: around 1
    const qn = m.tensors.find((t) => t.name === "model.layers.0.self_attn.q_norm.weight")!;
    expect(Math.abs(qn.data.reduce((a, b) => a + b, 0) / qn.data.length - 1)).toBeLessThan(0.2);
  });

  it("gemma2: four norms per layer around 0, tied, head_dim 16 ≠ hidden / heads, softcaps", () => {
    const m = makeTinyGemma2();
    expect(m.config).toMatchObject({
      architectures: ["Gemma2ForCausalLM"],
      model_type: "gemma2",
      num_hidden_layers: 3,
      head_dim: 16,
      hidden_activation: "gelu_pytorch_tanh",
      query_pre_attn_scalar: 24,
      attn_logit_softcapping: 5,
      final_logit_softcapping: 8,
      sliding_window: 4,
      tie_word_embeddings: true,
    });
    expect(m.config.layer_types).toBeUndefined();
    const s = shapes(m);
    for (const n of ["input", "post_attention", "pre_feedforward", "post_feedforward"]) {
      expect(s.get(`model.layers.2.${n}_layernorm.weight`)).toEqual([32]);
    }
    expect(s.get("model.layers.0.self_attn.q_proj.weight")).toEqual([64, 32]);
    expect(s.has("lm_head.weight")).toBe(false);
    const n = m.tensors.find((t) => t.name === "model.layers.0.input_layernorm.weight")!;
    expect(Math.abs(n.data.reduce((a, b) => a + b, 0) / n.data.length)).toBeLessThan(0.1);
  });

  it("gemma3_text: q/k norms, pattern 3 over 4 layers, local and global RoPE bases", () => {
    const m = makeTinyGemma3();
    expect(m.config).toMatchObject({
      architectures: ["Gemma3ForCausalLM"],
      model_type: "gemma3_text",
      num_hidden_layers: 4,
      sliding_window_pattern: 3,
      rope_theta: 1_000_000,
      rope_local_base_freq: 10_000,
      rope_scaling: { rope_type: "linear", factor: 8 },
      attn_logit_softcapping: null,
      final_logit_softcapping: null,
    });
    const s = shapes(m);
    expect(s.get("model.layers.3.self_attn.q_norm.weight")).toEqual([16]);
    expect(s.get("model.layers.3.post_feedforward_layernorm.weight")).toEqual([32]);
  });

  it("phi3: fused qkv_proj and gate_up_proj, partial rotary, no head_dim key when it is hidden / heads", () => {
    const m = makeTinyPhi3();
    expect(m.config).toMatchObject({
      architectures: ["Phi3ForCausalLM"],
      model_type: "phi3",
      partial_rotary_factor: 0.5,
      sliding_window: 4,
      rms_norm_eps: 1e-5,
      tie_word_embeddings: false,
    });
    expect(m.config.head_dim).toBeUndefined();
    const s = shapes(m);
    expect(s.get("model.layers.0.self_attn.qkv_proj.weight")).toEqual([(4 + 2 * 2) * 8, 32]);
    expect(s.get("model.layers.0.mlp.gate_up_proj.weight")).toEqual([96, 32]);
    expect(s.get("model.layers.0.mlp.down_proj.weight")).toEqual([32, 48]);
    expect([...s.keys()].some((k) => k.endsWith(".bias"))).toBe(false);
  });

  it("seeded: same seed same tensors, different seed different tensors", () => {
    for (const make of [makeTinyQwen3, makeTinyGemma2, makeTinyGemma3, makeTinyPhi3]) {
      const a = make({ seed: 5 } as TinyFamilyOptions).tensors;
      expect(make({ seed: 5 } as TinyFamilyOptions).tensors).toEqual(a);
      expect(make({ seed: 6 } as TinyFamilyOptions).tensors[0].data).not.toEqual(a[0].data);
    }
  });

  it("per-layer widths: shapes per layer and pare_layer_widths", () => {
    const perLayer = { heads: [4, 2], kvHeads: [2, 1], intermediate: [48, 20] };
    const p = makeTinyPhi3({ perLayer });
    expect(shapes(p).get("model.layers.1.self_attn.qkv_proj.weight")).toEqual([(2 + 2) * 8, 32]);
    expect(shapes(p).get("model.layers.1.mlp.gate_up_proj.weight")).toEqual([40, 32]);
    expect(p.config.pare_layer_widths).toEqual([
      { num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 48 },
      { num_attention_heads: 2, num_key_value_heads: 1, intermediate_size: 20 },
    ]);
    const q = makeTinyQwen3({ perLayer });
    expect(shapes(q).get("model.layers.1.self_attn.o_proj.weight")).toEqual([32, 16]);
    expect(makeTinyQwen3().config.pare_layer_widths).toBeUndefined();
    expect(() => makeTinyGemma2({ perLayer: { heads: [4, 3, 4] } })).toThrow(/multiple/);
  });

  it('configStyle "v5": rope_parameters (Gemma 3 keyed by layer type) and explicit layer_types', () => {
    const q = makeTinyQwen3({ configStyle: "v5" }).config;
    expect(q.rope_parameters).toEqual({ rope_type: "default", rope_theta: 1_000_000 });
    expect(q.rope_theta).toBeUndefined();
    expect(q.sliding_window).toBeNull(); // v5 saves what Qwen3Config resolved: no window without use_sliding_window
    expect(q.layer_types).toEqual(["full_attention", "full_attention"]);
    const g = makeTinyGemma3({ configStyle: "v5" }).config;
    expect(g.rope_parameters).toEqual({
      full_attention: { rope_type: "linear", factor: 8, rope_theta: 1_000_000 },
      sliding_attention: { rope_type: "default", rope_theta: 10_000 },
    });
    expect(g.layer_types).toEqual([
      "sliding_attention",
      "sliding_attention",
      "full_attention",
      "sliding_attention",
    ]);
    expect(g.rope_local_base_freq).toBeUndefined();
    const p = makeTinyPhi3({ configStyle: "v5" }).config;
    expect(p.rope_parameters).toEqual({
      rope_type: "default",
      rope_theta: 10_000,
      partial_rotary_factor: 0.5,
    });
    expect(p.partial_rotary_factor).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------------------
// every feature matters

/** One tiny model per family in which every feature of the family is in play. */
const FEATURE_MODELS: { name: string; tiny: () => TinyModel }[] = [
  // sliding on layer 1 only (max_window_layers 1), q/k/v/o biases
  {
    name: "qwen3",
    tiny: () => makeTinyQwen3({ seed: 31, useSlidingWindow: true, maxWindowLayers: 1, attentionBias: true }),
  },
  { name: "gemma2", tiny: () => makeTinyGemma2({ seed: 32 }) },
  { name: "gemma3_text", tiny: () => makeTinyGemma3({ seed: 33, finalSoftcap: 8 }) },
  { name: "phi3", tiny: () => makeTinyPhi3({ seed: 34 }) },
];

/**
 * Least relative move (max |Δlogit| / max |logit|) that switching a feature off must cause. The tanh GELU
 * differs from the exact one by at most 4.7e-4 (at |x| ≈ 2.7), so its effect on the logits is ~2e-4.
 */
const MIN_EFFECT: Partial<Record<Feature, number>> = { geluTanh: 5e-5 };

describe("reference: switching a family feature off moves the logits", () => {
  const cases = FEATURE_MODELS.flatMap((c) =>
    FAMILY_FEATURES[familyOf(c.tiny().config)].map((feature) => ({ ...c, feature })),
  );
  it.each(cases)("$name without $feature", ({ tiny, feature }) => {
    const m = tiny();
    const full = forward(m).logits;
    const without = forward(m, IDS, [feature]).logits;
    const rel = maxDiff(full, without) / maxAbs(full);
    expect(rel).toBeGreaterThan(MIN_EFFECT[feature] ?? 1e-3);
  });

  it("every family lists its features; naming another family's feature throws", () => {
    expect(FAMILY_FEATURES.qwen3).toEqual(expect.arrayContaining(["qkNorm", "slidingWindow"]));
    expect(FAMILY_FEATURES.phi3).toEqual(expect.arrayContaining(["partialRotary"]));
    expect(FAMILY_FEATURES.gemma2).toEqual(
      expect.arrayContaining(["normOffset", "embedScale", "attnSoftcap", "finalSoftcap", "sandwichNorms"]),
    );
    expect(FAMILY_FEATURES.gemma3_text).toEqual(expect.arrayContaining(["qkNorm", "localRopeBase"]));
    expect(() => forward(makeTinyQwen3(), IDS, ["partialRotary"])).toThrow(/does not apply/);
    expect(() => forward(makeTinyPhi3(), IDS, ["attnSoftcap"])).toThrow(/does not apply/);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Qwen3 / Phi-3 without their extras are Llama

/** A LLaMA config for forward.ts with the same dims, RoPE base and norm eps. */
function llamaConfig(m: TinyModel, hd: number, bias: boolean): Record<string, unknown> {
  const c = m.config;
  return {
    model_type: "llama",
    hidden_size: c.hidden_size,
    num_hidden_layers: c.num_hidden_layers,
    num_attention_heads: c.num_attention_heads,
    num_key_value_heads: c.num_key_value_heads,
    head_dim: hd,
    rms_norm_eps: c.rms_norm_eps,
    rope_theta: c.rope_theta,
    rope_scaling: null,
    attention_bias: bias,
    tie_word_embeddings: c.tie_word_embeddings,
  };
}

/** Phi-3's fused tensors split as HF's Phi3Attention / Phi3MLP split them: rows q | k | v and gate | up. */
function unfusePhi3(m: TinyModel, hd: number): TinyTensor[] {
  const out: TinyTensor[] = [];
  const rowsOf = (t: TinyTensor, from: number, n: number, name: string): TinyTensor => {
    const cols = t.shape[1];
    return { name, shape: [n, cols], data: t.data.slice(from * cols, (from + n) * cols) };
  };
  const byName = new Map(m.tensors.map((t) => [t.name, t]));
  for (const t of m.tensors) {
    const qkv = /^(model\.layers\.\d+\.)self_attn\.qkv_proj\.weight$/.exec(t.name);
    const gu = /^(model\.layers\.\d+\.)mlp\.gate_up_proj\.weight$/.exec(t.name);
    if (qkv) {
      const p = qkv[1];
      const q = byName.get(`${p}self_attn.o_proj.weight`)!.shape[1];
      const kv = (t.shape[0] - q) / 2;
      out.push(rowsOf(t, 0, q, `${p}self_attn.q_proj.weight`));
      out.push(rowsOf(t, q, kv, `${p}self_attn.k_proj.weight`));
      out.push(rowsOf(t, q + kv, kv, `${p}self_attn.v_proj.weight`));
      expect(q % hd).toBe(0);
    } else if (gu) {
      const F = t.shape[0] / 2;
      out.push(rowsOf(t, 0, F, `${gu[1]}mlp.gate_proj.weight`));
      out.push(rowsOf(t, F, F, `${gu[1]}mlp.up_proj.weight`));
    } else {
      out.push(t);
    }
  }
  return out;
}

describe("reference: Qwen3 and Phi-3 with their extra features off equal the Llama reference", () => {
  it.each([
    { name: "untied, no bias", opts: { seed: 41 } },
    { name: "tied, q/k/v/o biases", opts: { seed: 42, tie: true, attentionBias: true } },
    {
      name: "per-layer widths",
      opts: { seed: 43, perLayer: { heads: [4, 2], kvHeads: [2, 1], intermediate: [48, 20] } },
    },
  ])("qwen3 ($name) without q/k norms and windows", ({ opts }) => {
    const m = makeTinyQwen3({ ...opts, useSlidingWindow: true, maxWindowLayers: 0 });
    const got = forward(m, IDS, ["qkNorm", "slidingWindow"]);
    const llama = {
      config: llamaConfig(m, 8, opts.attentionBias ?? false),
      tensors: m.tensors.filter((t) => !/q_norm|k_norm/.test(t.name)),
    };
    const want = referenceDecoderForward(llama.config, tensorMap(llama), IDS);
    expect(maxDiff(got.logits, want.logits)).toBeLessThan(1e-12);
    for (let l = 0; l < 2; l++) {
      expect(maxDiff(got.attnTaps[l], want.attnTaps[l])).toBeLessThan(1e-12);
      expect(maxDiff(got.mlpTaps[l], want.mlpTaps[l])).toBeLessThan(1e-12);
    }
  });

  it.each([
    { name: "untied", opts: { seed: 44 } },
    { name: "tied, MHA", opts: { seed: 45, tie: true, kvHeads: 4 } },
    {
      name: "per-layer widths",
      opts: { seed: 46, perLayer: { heads: [4, 2], kvHeads: [2, 1], intermediate: [48, 20] } },
    },
  ])("phi3 ($name) unfused, with full rotary and no window", ({ opts }) => {
    const m = makeTinyPhi3(opts);
    const got = forward(m, IDS, ["partialRotary", "slidingWindow"]);
    const llama = { config: llamaConfig(m, 8, false), tensors: unfusePhi3(m, 8) };
    const want = referenceDecoderForward(llama.config, tensorMap(llama), IDS);
    expect(maxDiff(got.logits, want.logits)).toBeLessThan(1e-12);
    for (let l = 0; l < 2; l++) {
      expect(maxDiff(got.attnTaps[l], want.attnTaps[l])).toBeLessThan(1e-12);
      expect(maxDiff(got.mlpTaps[l], want.mlpTaps[l])).toBeLessThan(1e-12);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------
// invariants

describe("reference: soft-capping", () => {
  it("gemma2: |logits| < final_logit_softcapping, and the raw logits exceed it", () => {
    const m = makeTinyGemma2({ seed: 51 });
    expect(maxAbs(forward(m).logits)).toBeLessThan(8);
    expect(maxAbs(forward(m, IDS, ["finalSoftcap"]).logits)).toBeGreaterThan(8);
    const small = makeTinyGemma2({ seed: 51, finalSoftcap: 0.5 });
    expect(maxAbs(forward(small).logits)).toBeLessThanOrEqual(0.5); // tanh rounds to 1 for |l| ≳ 19·cap
  });

  it("gemma3_text: final_logit_softcapping applies when set", () => {
    const m = makeTinyGemma3({ seed: 52, finalSoftcap: 1.5 });
    expect(maxAbs(forward(m).logits)).toBeLessThan(1.5);
  });

  it("gemma3_text: attn_logit_softcapping is ignored, as in HF (Gemma3Attention never passes softcap)", () => {
    const plain = makeTinyGemma3({ seed: 53 });
    const capped = makeTinyGemma3({ seed: 53, attnSoftcap: 0.5 });
    expect(maxDiff(forward(plain).logits, forward(capped).logits)).toBe(0);
  });

  it("gemma2: attn_logit_softcapping null and final_logit_softcapping null switch capping off", () => {
    const m = makeTinyGemma2({ seed: 54 });
    const none = makeTinyGemma2({ seed: 54, attnSoftcap: null, finalSoftcap: null });
    expect(maxDiff(forward(none).logits, forward(m, IDS, ["attnSoftcap", "finalSoftcap"]).logits)).toBe(0);
    // absent keys take HF's defaults (50 / 30), which differ from none
    const absent = { ...m, config: { ...m.config } };
    delete absent.config.attn_logit_softcapping;
    delete absent.config.final_logit_softcapping;
    expect(maxDiff(forward(absent).logits, forward(none).logits)).toBeGreaterThan(1e-6);
  });
});

describe("reference: sliding windows", () => {
  /** Logits of the last position after replacing token j. */
  const lastAfterPerturb = (m: TinyModel, j: number) => {
    const ids = [...IDS];
    ids[j] = (ids[j] + 1) % V;
    return rowOf(forward(m, ids).logits, T - 1);
  };
  const last = (m: TinyModel) => rowOf(forward(m).logits, T - 1);

  // two sliding layers of window 4: the last query reaches tokens ≥ T − 1 − 2·(4 − 1) = 7, exactly
  it.each([
    {
      name: "qwen3 (use_sliding_window, max_window_layers 0)",
      tiny: () => makeTinyQwen3({ seed: 61, useSlidingWindow: true, maxWindowLayers: 0 }),
    },
    { name: "phi3 (every layer slides)", tiny: () => makeTinyPhi3({ seed: 62 }) },
    {
      name: "gemma3_text (layer_types all sliding)",
      tiny: () =>
        makeTinyGemma3({ seed: 63, layers: 2, layerTypes: ["sliding_attention", "sliding_attention"] }),
    },
  ])("$name: the last position sees tokens T−7.. and nothing before (i − j < window)", ({ tiny }) => {
    const m = tiny();
    const base = last(m);
    const reach = T - 1 - 2 * 3;
    expect(maxDiff(lastAfterPerturb(m, reach - 1), base)).toBe(0);
    expect(maxDiff(lastAfterPerturb(m, 0), base)).toBe(0);
    expect(maxDiff(lastAfterPerturb(m, reach), base)).toBeGreaterThan(1e-6);
  });

  it.each([
    {
      name: "qwen3 with a full layer (max_window_layers 1)",
      tiny: () => makeTinyQwen3({ seed: 64, useSlidingWindow: true, maxWindowLayers: 1 }),
    },
    { name: "gemma2 (default: sliding, full, sliding)", tiny: () => makeTinyGemma2({ seed: 65 }) },
    { name: "gemma3_text (default pattern 3)", tiny: () => makeTinyGemma3({ seed: 66 }) },
    { name: "phi3 without sliding_window", tiny: () => makeTinyPhi3({ seed: 67, slidingWindow: null }) },
  ])("$name: the first token reaches the last position", ({ tiny }) => {
    const m = tiny();
    expect(maxDiff(lastAfterPerturb(m, 0), last(m))).toBeGreaterThan(1e-6);
  });

  it("qwen3: sliding_window with use_sliding_window false does not window", () => {
    const m = makeTinyQwen3({ seed: 68, maxWindowLayers: 0 }); // sliding_window 4, use_sliding_window false
    expect(m.config.sliding_window).toBe(4);
    const noWindow = withConfig(m, { sliding_window: null });
    expect(maxDiff(forward(m).logits, forward(noWindow).logits)).toBe(0);
    expect(maxDiff(lastAfterPerturb(m, 0), last(m))).toBeGreaterThan(1e-6);
  });

  it("qwen3: explicit layer_types win over max_window_layers; a sliding layer without a window throws", () => {
    const m = makeTinyQwen3({ seed: 69, useSlidingWindow: true, maxWindowLayers: 1 }); // → full, sliding
    const explicit = withConfig(m, {
      max_window_layers: 99,
      layer_types: ["full_attention", "sliding_attention"],
    });
    expect(maxDiff(forward(m).logits, forward(explicit).logits)).toBe(0);
    const other = withConfig(m, { layer_types: ["sliding_attention", "full_attention"] });
    expect(maxDiff(forward(m).logits, forward(other).logits)).toBeGreaterThan(1e-6);
    // HF: Qwen3Config drops sliding_window without use_sliding_window; the sliding mask then raises
    const broken = withConfig(other, { use_sliding_window: false });
    expect(() => forward(broken)).toThrow(/no sliding_window/);
  });

  it("gemma2: HF's default layer_types slide on even layers", () => {
    const m = makeTinyGemma2({ seed: 70 });
    const even = withConfig(m, { layer_types: ["sliding_attention", "full_attention", "sliding_attention"] });
    const odd = withConfig(m, { layer_types: ["full_attention", "sliding_attention", "full_attention"] });
    expect(maxDiff(forward(m).logits, forward(even).logits)).toBe(0);
    expect(maxDiff(forward(m).logits, forward(odd).logits)).toBeGreaterThan(1e-6);
  });

  it("gemma3_text: sliding_window_pattern p slides every layer but each p-th; layer_types win", () => {
    const m = makeTinyGemma3({ seed: 71 }); // pattern 3 over 4 layers
    const explicit = withConfig(m, {
      sliding_window_pattern: 6,
      layer_types: ["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
    });
    expect(maxDiff(forward(m).logits, forward(explicit).logits)).toBe(0);
    const hfDefault = { ...m, config: { ...m.config } };
    delete hfDefault.config.sliding_window_pattern; // HF default 6: all 4 layers slide
    const allSliding = withConfig(m, { layer_types: new Array(4).fill("sliding_attention") });
    expect(maxDiff(forward(hfDefault).logits, forward(allSliding).logits)).toBe(0);
  });
});

describe("reference: RoPE details", () => {
  it("gemma3_text: sliding layers use rope_local_base_freq without rope_scaling", () => {
    const m = makeTinyGemma3({ seed: 81 });
    // local base = global base and no scaling: the local RoPE is the global one
    const same = withConfig(m, { rope_local_base_freq: 1_000_000, rope_scaling: null });
    expect(maxDiff(forward(same).logits, forward(same, IDS, ["localRopeBase"]).logits)).toBe(0);
    // rope_scaling touches the global layers only: with every layer sliding it changes nothing
    const sliding = withConfig(m, { layer_types: new Array(4).fill("sliding_attention") });
    expect(maxDiff(forward(sliding).logits, forward(sliding, IDS, ["ropeScaling"]).logits)).toBe(0);
  });

  it("phi3: partial_rotary_factor 1 equals partialRotary off", () => {
    const m = makeTinyPhi3({ seed: 82 });
    const full = withConfig(m, { partial_rotary_factor: 1.0 });
    expect(maxDiff(forward(full).logits, forward(m, IDS, ["partialRotary"]).logits)).toBe(0);
  });

  it("gemma: hidden_activation gelu (exact) equals geluTanh off; hidden_act is not read", () => {
    const m = makeTinyGemma2({ seed: 83 });
    const exact = withConfig(m, { hidden_activation: "gelu" });
    expect(maxDiff(forward(exact).logits, forward(m, IDS, ["geluTanh"]).logits)).toBe(0);
    const otherAct = withConfig(m, { hidden_act: "silu" });
    expect(maxDiff(forward(otherAct).logits, forward(m).logits)).toBe(0);
  });

  it.each([
    {
      name: "qwen3",
      tiny: (style: "v4" | "v5") =>
        makeTinyQwen3({ seed: 84, configStyle: style, useSlidingWindow: true, maxWindowLayers: 1 }),
    },
    { name: "gemma2", tiny: (style: "v4" | "v5") => makeTinyGemma2({ seed: 85, configStyle: style }) },
    { name: "gemma3_text", tiny: (style: "v4" | "v5") => makeTinyGemma3({ seed: 86, configStyle: style }) },
    { name: "phi3", tiny: (style: "v4" | "v5") => makeTinyPhi3({ seed: 87, configStyle: style }) },
  ])("$name: the transformers 5 config layout gives the same logits as the 4.x one", ({ tiny }) => {
    expect(maxDiff(forward(tiny("v5")).logits, forward(tiny("v4")).logits)).toBe(0);
  });
});

describe("reference: padding, pruned widths, biases, greedy", () => {
  it.each([
    { name: "qwen3", tiny: () => makeTinyQwen3({ seed: 91, useSlidingWindow: true, maxWindowLayers: 1 }) },
    { name: "gemma2", tiny: () => makeTinyGemma2({ seed: 92 }) },
    { name: "gemma3_text", tiny: () => makeTinyGemma3({ seed: 93 }) },
    { name: "phi3", tiny: () => makeTinyPhi3({ seed: 94 }) },
  ])("$name: a left-padded row (HF generate's position ids) equals the prompt alone", ({ tiny }) => {
    const m = tiny();
    const P = 3;
    const prompt = IDS.slice(0, 11);
    const mask = [...new Array(P).fill(0), ...new Array(prompt.length).fill(1)];
    const padded = referenceFamilyForward(m.config, tensorMap(m), [...new Array(P).fill(0), ...prompt], {
      attentionMask: mask,
      positionIds: hfGeneratePositionIds(mask),
    });
    const alone = forward(m, prompt);
    expect(padded.logits.every(Number.isFinite)).toBe(true); // fully hidden pad rows: uniform, not NaN
    expect(maxDiff(padded.logits.subarray(P * V), alone.logits)).toBeLessThan(1e-12);
    // the pads are really hidden: other pad tokens change nothing at the real positions
    const otherPads = referenceFamilyForward(m.config, tensorMap(m), [5, 6, 7, ...prompt], {
      attentionMask: mask,
      positionIds: hfGeneratePositionIds(mask),
    });
    expect(maxDiff(otherPads.logits.subarray(P * V), alone.logits)).toBeLessThan(1e-12);
  });

  it("hfGeneratePositionIds: cumsum − 1, 1 at pads", () => {
    expect(hfGeneratePositionIds([0, 0, 1, 1, 1])).toEqual([1, 1, 0, 1, 2]);
    expect(hfGeneratePositionIds([1, 1])).toEqual([0, 1]);
  });

  /**
   * Drops KV group 1 (query heads 2, 3 and KV head 1) and FFN channels ≥ 20 of layer 0 by slicing tensors
   * (fused ones included); the result must equal the full model with the dropped heads' o_proj columns and the
   * dropped channels' down_proj columns zeroed.
   */
  function pruneLayer0(m: TinyModel, hd: number): { pruned: TinyModel; zeroed: TinyModel } {
    const keepRows = (t: TinyTensor, ranges: [number, number][]): TinyTensor => {
      const cols = t.shape.length === 2 ? t.shape[1] : 1;
      const parts = ranges.map(([a, b]) => t.data.slice(a * cols, b * cols));
      const data = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
      let o = 0;
      for (const p of parts) {
        data.set(p, o);
        o += p.length;
      }
      const rows = ranges.reduce((n, [a, b]) => n + b - a, 0);
      return { ...t, shape: t.shape.length === 2 ? [rows, cols] : [rows], data };
    };
    const keepCols = (t: TinyTensor, n: number): TinyTensor => {
      const [rows, cols] = t.shape;
      const data = new Float32Array(rows * n);
      for (let r = 0; r < rows; r++) data.set(t.data.subarray(r * cols, r * cols + n), r * n);
      return { ...t, shape: [rows, n], data };
    };
    const zeroCols = (t: TinyTensor, from: number): TinyTensor => {
      const [rows, cols] = t.shape;
      const data = Float32Array.from(t.data);
      for (let r = 0; r < rows; r++) data.fill(0, r * cols + from, (r + 1) * cols);
      return { ...t, data };
    };
    const q = 2 * hd; // heads 0, 1 kept
    const kv = hd; // KV head 0 kept
    const p = "model.layers.0.";
    const pruned = m.tensors.map((t) => {
      if (!t.name.startsWith(p)) return t;
      const n = t.name.slice(p.length);
      if (n === "self_attn.qkv_proj.weight")
        return keepRows(t, [
          [0, q],
          [4 * hd, 4 * hd + kv],
          [6 * hd, 6 * hd + kv],
        ]);
      if (n.startsWith("self_attn.q_proj.")) return keepRows(t, [[0, q]]);
      if (n.startsWith("self_attn.k_proj.") || n.startsWith("self_attn.v_proj."))
        return keepRows(t, [[0, kv]]);
      if (n === "self_attn.o_proj.weight") return keepCols(t, q);
      if (n === "mlp.gate_up_proj.weight")
        return keepRows(t, [
          [0, 20],
          [48, 68],
        ]);
      if (n === "mlp.gate_proj.weight" || n === "mlp.up_proj.weight") return keepRows(t, [[0, 20]]);
      if (n === "mlp.down_proj.weight") return keepCols(t, 20);
      return t;
    });
    const zeroed = m.tensors.map((t) => {
      if (t.name === `${p}self_attn.o_proj.weight`) return zeroCols(t, q);
      if (t.name === `${p}mlp.down_proj.weight`) return zeroCols(t, 20);
      return t;
    });
    return { pruned: { ...m, tensors: pruned }, zeroed: { ...m, tensors: zeroed } };
  }

  it.each([
    { name: "qwen3 (biases)", hd: 8, tiny: () => makeTinyQwen3({ seed: 95, attentionBias: true }) },
    { name: "gemma2", hd: 16, tiny: () => makeTinyGemma2({ seed: 96 }) },
    { name: "gemma3_text", hd: 16, tiny: () => makeTinyGemma3({ seed: 97 }) },
    { name: "phi3 (fused)", hd: 8, tiny: () => makeTinyPhi3({ seed: 98 }) },
  ])("$name: widths come from the weight shapes (pruned = zeroed consumers)", ({ tiny, hd }) => {
    const { pruned, zeroed } = pruneLayer0(tiny(), hd);
    const a = forward(pruned);
    const b = forward(zeroed);
    expect(a.attnTaps[0].length).toBe(T * 2 * hd);
    expect(a.mlpTaps[0].length).toBe(T * 20);
    expect(a.attnTaps[1].length).toBe(T * 4 * hd);
    expect(maxDiff(a.logits, b.logits)).toBeLessThan(1e-12);
  });

  it("biases HF has no parameter for are refused, and attention_bias needs all four", () => {
    const q = makeTinyQwen3({ seed: 99 });
    const extra = {
      ...q,
      tensors: [
        ...q.tensors,
        { name: "model.layers.0.self_attn.o_proj.bias", shape: [32], data: new Float32Array(32) },
      ],
    };
    expect(() => forward(extra)).toThrow(/no such parameter/);
    const down = {
      ...q,
      tensors: [
        ...q.tensors,
        { name: "model.layers.1.mlp.down_proj.bias", shape: [32], data: new Float32Array(32) },
      ],
    };
    expect(() => forward(down)).toThrow(/no such parameter/);
    const flagged = withConfig(q, { attention_bias: true });
    expect(() => forward(flagged)).toThrow(/attention_bias is true/);
    const p = makeTinyPhi3({ seed: 99 });
    const pb = {
      ...p,
      tensors: [
        ...p.tensors,
        { name: "model.layers.0.self_attn.o_proj.bias", shape: [32], data: new Float32Array(32) },
      ],
    };
    expect(() => forward(pb)).toThrow(/no such parameter/);
  });

  it("greedy: each new token is the argmax of the last position of the growing sequence", () => {
    const m = makeTinyGemma3({ seed: 100, finalSoftcap: 8 });
    const prompt = IDS.slice(0, 6);
    const out = referenceFamilyGreedy(m.config, tensorMap(m), prompt, 4);
    expect(out).toHaveLength(4);
    const ids = [...prompt];
    for (const next of out) {
      const { logits } = forward(m, ids);
      expect(next).toBe(argmax(logits, (ids.length - 1) * V, V));
      ids.push(next);
    }
  });

  it("refuses other model types, empty input, bad ids and mask lengths", () => {
    const m = makeTinyQwen3();
    expect(() => referenceFamilyForward({ ...m.config, model_type: "llama" }, tensorMap(m), IDS)).toThrow(
      /model_type/,
    );
    expect(() => forward(m, [])).toThrow(/empty/);
    expect(() => forward(m, [V])).toThrow(/out of range/);
    expect(() => referenceFamilyForward(m.config, tensorMap(m), IDS, { attentionMask: [1] })).toThrow(
      /length/,
    );
  });
});
