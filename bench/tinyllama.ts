/**
 * The TinyLlama-1.1B-shaped benchmark model (hidden 2048, FFN 5632, 32 heads, 4 KV heads, vocab 32000) with seeded
 * random bf16 weights and any number of layers, generated once into a cache folder (bench:scale uses 22 layers,
 * bench:calibration-passes 4; the same seed gives the same first layers).
 */
import fs from "node:fs";
import path from "node:path";
import { type NamedTensor, writeShardedSafetensors } from "../src/io/safetensors.ts";
import { makeByteBpeTokenizerJson } from "../test/helpers/tinyModels.ts";

export function tinyLlamaShapedConfig(layers: number) {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_size: 2048,
    intermediate_size: 5632,
    num_attention_heads: 32,
    num_key_value_heads: 4,
    num_hidden_layers: layers,
    vocab_size: 32000,
    max_position_embeddings: 2048,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: "bfloat16",
  };
}

export function generateTinyLlamaShaped(dir: string, layers: number): void {
  const cfg = tinyLlamaShapedConfig(layers);
  const t0 = Date.now();
  let s = 12345 >>> 0;
  const rand = (n: number, scale: number) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      s = (s + 0x6d2b79f5) >>> 0;
      let t = s;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      a[i] = ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1) * scale; // uniform, std = scale/√3
    }
    return a;
  };
  const D = cfg.hidden_size;
  const F = cfg.intermediate_size;
  const kv = (D / cfg.num_attention_heads) * cfg.num_key_value_heads;
  const w = 0.035; // std ≈ 0.02
  const tensors: NamedTensor[] = [
    {
      name: "model.embed_tokens.weight",
      shape: [cfg.vocab_size, D],
      data: rand(cfg.vocab_size * D, w),
      dtype: "BF16",
    },
    { name: "lm_head.weight", shape: [cfg.vocab_size, D], data: rand(cfg.vocab_size * D, w), dtype: "BF16" },
    { name: "model.norm.weight", shape: [D], data: new Float32Array(D).fill(1), dtype: "BF16" },
  ];
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}`;
    const add = (n: string, shape: number[], data: Float32Array) =>
      tensors.push({ name: `${p}.${n}`, shape, data, dtype: "BF16" });
    add("input_layernorm.weight", [D], new Float32Array(D).fill(1));
    add("post_attention_layernorm.weight", [D], new Float32Array(D).fill(1));
    add("self_attn.q_proj.weight", [D, D], rand(D * D, w));
    add("self_attn.k_proj.weight", [kv, D], rand(kv * D, w));
    add("self_attn.v_proj.weight", [kv, D], rand(kv * D, w));
    add("self_attn.o_proj.weight", [D, D], rand(D * D, w));
    add("mlp.gate_proj.weight", [F, D], rand(F * D, w));
    add("mlp.up_proj.weight", [F, D], rand(F * D, w));
    add("mlp.down_proj.weight", [D, F], rand(D * F, w));
  }
  const tmp = `${dir}.tmp`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  writeShardedSafetensors(tmp, tensors, 1 << 30);
  fs.writeFileSync(path.join(tmp, "config.json"), JSON.stringify(cfg, null, 2));
  fs.writeFileSync(path.join(tmp, "tokenizer.json"), JSON.stringify(makeByteBpeTokenizerJson(300)));
  fs.renameSync(tmp, dir);
  process.stderr.write(`generated ${dir} in ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
}

/** Generate the model into `dir` unless it is there already. */
export function ensureTinyLlamaShaped(dir: string, layers: number): void {
  if (!fs.existsSync(path.join(dir, "config.json"))) generateTinyLlamaShaped(dir, layers);
}
