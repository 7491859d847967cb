import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { afterAll, describe, expect, it } from "vitest";
import { SafetensorsFile } from "../../src/io/safetensors.ts";
import { referenceBertForward, referenceDecoderForward } from "../reference/forward.ts";
import { Rng, randn } from "./rng.ts";
import {
  makeByteBpeTokenizerJson,
  makeTinyBert,
  makeTinyLlama,
  makeWordPieceTokenizerJson,
  type TinyModel,
  tensorMap,
  writeTinyModel,
} from "./tinyModels.ts";

const shapeOf = (m: TinyModel) => new Map(m.tensors.map((t) => [t.name, t.shape]));

describe("rng", () => {
  it("is deterministic per seed and roughly N(0,1)", () => {
    expect(randn(5, 1, 42)).toEqual(randn(5, 1, 42));
    expect(randn(5, 1, 42)).not.toEqual(randn(5, 1, 43));
    const x = new Rng(1).randn(20000, 2);
    const mean = x.reduce((s, v) => s + v, 0) / x.length;
    const std = Math.sqrt(x.reduce((s, v) => s + (v - mean) ** 2, 0) / x.length);
    expect(Math.abs(mean)).toBeLessThan(0.05);
    expect(Math.abs(std - 2)).toBeLessThan(0.05);
    const r = new Rng(3);
    for (let i = 0; i < 1000; i++) {
      const u = r.uniform();
      expect(u >= 0 && u < 1).toBe(true);
    }
  });
});

describe("makeTinyLlama", () => {
  it("has shapes consistent with its config (defaults)", () => {
    const m = makeTinyLlama();
    const c = m.config;
    expect(c.architectures).toEqual(["LlamaForCausalLM"]);
    expect(c).toMatchObject({
      model_type: "llama",
      vocab_size: 300,
      hidden_size: 32,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      head_dim: 8,
      intermediate_size: 48,
      tie_word_embeddings: false,
      bos_token_id: 1,
      eos_token_id: 2,
      torch_dtype: "float32",
    });
    const s = shapeOf(m);
    expect(s.get("model.embed_tokens.weight")).toEqual([300, 32]);
    expect(s.get("lm_head.weight")).toEqual([300, 32]);
    expect(s.get("model.norm.weight")).toEqual([32]);
    for (let l = 0; l < 2; l++) {
      const p = `model.layers.${l}.`;
      expect(s.get(`${p}self_attn.q_proj.weight`)).toEqual([32, 32]);
      expect(s.get(`${p}self_attn.k_proj.weight`)).toEqual([16, 32]);
      expect(s.get(`${p}self_attn.v_proj.weight`)).toEqual([16, 32]);
      expect(s.get(`${p}self_attn.o_proj.weight`)).toEqual([32, 32]);
      expect(s.get(`${p}mlp.gate_proj.weight`)).toEqual([48, 32]);
      expect(s.get(`${p}mlp.up_proj.weight`)).toEqual([48, 32]);
      expect(s.get(`${p}mlp.down_proj.weight`)).toEqual([32, 48]);
      expect(s.has(`${p}self_attn.q_proj.bias`)).toBe(false);
    }
    for (const t of m.tensors) expect(t.data.length).toBe(t.shape.reduce((a, b) => a * b, 1));
    expect(new Set(m.tensors.map((t) => t.name)).size).toBe(m.tensors.length);
    const norm = m.tensors.find((t) => t.name === "model.norm.weight")!.data;
    expect(Math.abs(norm.reduce((a, b) => a + b, 0) / norm.length - 1)).toBeLessThan(0.1);
  });

  it("is deterministic per seed", () => {
    const a = makeTinyLlama({ seed: 4 });
    const b = makeTinyLlama({ seed: 4 });
    const c = makeTinyLlama({ seed: 5 });
    expect(a.tensors.map((t) => Array.from(t.data))).toEqual(b.tensors.map((t) => Array.from(t.data)));
    expect(a.tensors[0].data).not.toEqual(c.tensors[0].data);
  });

  it("supports qwen2 / mistral, tying, biases and per-layer widths", () => {
    const q = makeTinyLlama({ modelType: "qwen2", tie: true });
    expect(q.config.architectures).toEqual(["Qwen2ForCausalLM"]);
    const qs = shapeOf(q);
    expect(qs.get("model.layers.0.self_attn.q_proj.bias")).toEqual([32]);
    expect(qs.get("model.layers.0.self_attn.k_proj.bias")).toEqual([16]);
    expect(qs.has("model.layers.0.self_attn.o_proj.bias")).toBe(false);
    expect(qs.has("lm_head.weight")).toBe(false);
    expect(q.config.tie_word_embeddings).toBe(true);

    const mi = makeTinyLlama({ modelType: "mistral" });
    expect(mi.config.architectures).toEqual(["MistralForCausalLM"]);

    const l = makeTinyLlama({ qkvBias: true });
    expect(l.config.attention_bias).toBe(true);
    expect(shapeOf(l).get("model.layers.1.self_attn.o_proj.bias")).toEqual([32]);

    const p = makeTinyLlama({
      layers: 3,
      perLayer: { heads: [4, 2, 0], kvHeads: [2, 1, 0], intermediate: [48, 7, 0] },
      consumerBias: true,
    });
    const ps = shapeOf(p);
    expect(ps.get("model.layers.1.self_attn.q_proj.weight")).toEqual([16, 32]);
    expect(ps.get("model.layers.1.self_attn.k_proj.weight")).toEqual([8, 32]);
    expect(ps.get("model.layers.1.self_attn.o_proj.weight")).toEqual([32, 16]);
    expect(ps.get("model.layers.1.mlp.down_proj.weight")).toEqual([32, 7]);
    expect(ps.get("model.layers.2.mlp.down_proj.weight")).toEqual([32, 0]);
    expect(ps.get("model.layers.2.self_attn.o_proj.bias")).toEqual([32]);
    expect(ps.get("model.layers.2.mlp.down_proj.bias")).toEqual([32]);
    expect(() => makeTinyLlama({ perLayer: { heads: [4] } })).toThrow(/2 entries/);
  });

  it("gives non-trivial reference logits", () => {
    const m = makeTinyLlama({ seed: 1 });
    const { logits } = referenceDecoderForward(m.config, tensorMap(m), [1, 50, 60, 70]);
    const std = Math.sqrt(logits.reduce((s, x) => s + x * x, 0) / logits.length);
    expect(std).toBeGreaterThan(0.1);
    expect(std).toBeLessThan(10);
  });
});

describe("makeTinyBert", () => {
  it("has shapes consistent with its config", () => {
    const m = makeTinyBert({ numLabels: 3, perLayer: { heads: [4, 1], intermediate: [64, 5] } });
    expect(m.config).toMatchObject({
      architectures: ["BertForSequenceClassification"],
      model_type: "bert",
      hidden_size: 32,
      num_attention_heads: 4,
      num_hidden_layers: 2,
      intermediate_size: 64,
      pad_token_id: 0,
      type_vocab_size: 2,
      layer_norm_eps: 1e-12,
      hidden_act: "gelu",
      id2label: { "0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2" },
      label2id: { LABEL_0: 0, LABEL_1: 1, LABEL_2: 2 },
    });
    const s = shapeOf(m);
    expect(s.get("bert.embeddings.word_embeddings.weight")).toEqual([300, 32]);
    expect(s.get("bert.embeddings.position_embeddings.weight")).toEqual([64, 32]);
    expect(s.get("bert.embeddings.token_type_embeddings.weight")).toEqual([2, 32]);
    expect(s.get("bert.encoder.layer.1.attention.self.query.weight")).toEqual([8, 32]);
    expect(s.get("bert.encoder.layer.1.attention.output.dense.weight")).toEqual([32, 8]);
    expect(s.get("bert.encoder.layer.1.intermediate.dense.weight")).toEqual([5, 32]);
    expect(s.get("bert.encoder.layer.1.output.dense.weight")).toEqual([32, 5]);
    expect(s.get("bert.pooler.dense.weight")).toEqual([32, 32]);
    expect(s.get("classifier.weight")).toEqual([3, 32]);
    expect(s.get("classifier.bias")).toEqual([3]);
    for (const t of m.tensors) expect(t.data.length).toBe(t.shape.reduce((a, b) => a * b, 1));
    const out = referenceBertForward(m.config, tensorMap(m), [2, 10, 11, 12, 3]);
    expect(out.logits).toHaveLength(3);
  });

  it("is deterministic per seed", () => {
    expect(makeTinyBert({ seed: 2 }).tensors[5].data).toEqual(makeTinyBert({ seed: 2 }).tensors[5].data);
    expect(makeTinyBert({ seed: 2 }).tensors[5].data).not.toEqual(makeTinyBert({ seed: 3 }).tensors[5].data);
  });
});

describe("tokenizer.json builders", () => {
  it("byte-level BPE loads in @huggingface/tokenizers and round-trips", () => {
    const json = makeByteBpeTokenizerJson(300);
    const tok = new Tokenizer(json, {});
    const text = "the cat sat on the mat, and it was fine!";
    const { ids } = tok.encode(text);
    expect(ids[0]).toBe(1);
    expect(ids.every((i: number) => i >= 0 && i < 300)).toBe(true);
    expect(ids.length).toBeLessThan(text.length); // merges apply
    expect(tok.token_to_id("Ġthe")).toBeGreaterThan(258);
    expect(tok.decode(ids, { skip_special_tokens: true })).toBe(text);
    const u = "héllo ✓";
    expect(tok.decode(tok.encode(u).ids, { skip_special_tokens: true })).toBe(u);
    expect(tok.token_to_id("<s>")).toBe(1);
    expect(tok.token_to_id("</s>")).toBe(2);
    expect(tok.token_to_id("<unk>")).toBe(0);
    // smaller vocab: fewer merges, still valid
    const small = new Tokenizer(makeByteBpeTokenizerJson(259), {});
    expect(small.encode("ab").ids).toEqual([1, 3 + 97, 3 + 98]);
    expect(() => makeByteBpeTokenizerJson(100)).toThrow();
  });

  it("WordPiece loads in @huggingface/tokenizers with [CLS] … [SEP]", () => {
    const json = makeWordPieceTokenizerJson(["hello", "world", "Movie", "great"]);
    const tok = new Tokenizer(json, {});
    const vocab = tok.get_vocab();
    expect(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].map((t) => vocab.get(t))).toEqual([0, 1, 2, 3, 4]);
    const enc = tok.encode("Hello, great MOVIE!");
    expect(enc.ids).toEqual([2, 5, vocab.get(","), 8, 7, vocab.get("!"), 3]);
    const spelled = tok.encode("xyz");
    expect(spelled.ids).toEqual([2, vocab.get("x"), vocab.get("##y"), vocab.get("##z"), 3]);
    expect(tok.encode("hello", { text_pair: "world", return_token_type_ids: true }).token_type_ids).toEqual([
      0, 0, 0, 1, 1,
    ]);
    expect(tok.decode(enc.ids, { skip_special_tokens: true })).toBe("hello, great movie!");
  });
});

describe("writeTinyModel", () => {
  const dirs: string[] = [];
  const tmp = () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), "pare-tiny-"));
    dirs.push(d);
    return d;
  };
  afterAll(() => {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  it("writes an HF folder that reads back exactly (F32)", () => {
    const dir = path.join(tmp(), "llama");
    const m = makeTinyLlama({ seed: 8 });
    writeTinyModel(dir, m, makeByteBpeTokenizerJson(300));
    expect(fs.readdirSync(dir).sort()).toEqual([
      "config.json",
      "model.safetensors",
      "tokenizer.json",
      "tokenizer_config.json",
    ]);
    expect(JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"))).toEqual(m.config);
    const tc = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8"));
    expect(tc.bos_token).toBe("<s>");
    const tok = new Tokenizer(JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8")), tc);
    expect(tok.encode("hi").ids[0]).toBe(1);
    const f = SafetensorsFile.open(path.join(dir, "model.safetensors"));
    try {
      for (const t of m.tensors) {
        expect(f.tensors.get(t.name)?.shape).toEqual(t.shape);
        expect(f.readF32(t.name)).toEqual(t.data);
      }
      expect(f.tensors.size).toBe(m.tensors.length);
    } finally {
      f.close();
    }
  });

  it("writes F16 / BF16 with matching torch_dtype and WordPiece tokenizer_config", () => {
    for (const [dtype, torch, tol] of [
      ["F16", "float16", 2e-3],
      ["BF16", "bfloat16", 1.6e-2],
    ] as const) {
      const dir = path.join(tmp(), dtype);
      const m = makeTinyBert({ seed: 9 });
      writeTinyModel(dir, m, makeWordPieceTokenizerJson(["good", "bad"]), dtype);
      expect(JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8")).torch_dtype).toBe(torch);
      const tc = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8"));
      expect(tc.cls_token).toBe("[CLS]");
      const f = SafetensorsFile.open(path.join(dir, "model.safetensors"));
      try {
        for (const t of m.tensors) {
          expect(f.tensors.get(t.name)?.dtype).toBe(dtype);
          const back = f.readF32(t.name);
          for (let i = 0; i < back.length; i++) {
            expect(Math.abs(back[i] - t.data[i])).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(t.data[i])));
          }
        }
      } finally {
        f.close();
      }
    }
  });

  it("omits tokenizer files when no tokenizer is given", () => {
    const dir = tmp();
    writeTinyModel(dir, makeTinyLlama({ layers: 1 }));
    expect(fs.readdirSync(dir).sort()).toEqual(["config.json", "model.safetensors"]);
  });
});
