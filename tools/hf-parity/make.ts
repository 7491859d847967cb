/**
 * Builds the inputs of the Hugging Face parity check (run on a machine with Python `transformers`,
 * see README.md here): tiny seeded models of every supported variant, pare-pruned versions that
 * stock loaders should accept, and pare's own logits for fixed token ids.
 * Usage: npx tsx tools/hf-parity/make.ts <outdir>
 */
import fs from "node:fs";
import path from "node:path";
import { loadModel } from "../../src/arch/load.ts";
import { emitModelGraph } from "../../src/onnx/emit.ts";
import { runPrune } from "../../src/pipeline/prune.ts";
import { resolveRecipe } from "../../src/pipeline/recipe.ts";
import { i64From, Session } from "../../src/runtime/ort.ts";
import { makeTinyGemma2, makeTinyGemma3, makeTinyPhi3, makeTinyQwen3 } from "../../test/helpers/tinyFamilies.ts";
import {
  makeByteBpeTokenizerJson,
  makeTinyBert,
  makeTinyLlama,
  makeWordPieceTokenizerJson,
  writeTinyModel,
} from "../../test/helpers/tinyModels.ts";

const out = path.resolve(process.argv[2] ?? "devcheck");
fs.rmSync(out, { recursive: true, force: true });
fs.mkdirSync(path.join(out, "models"), { recursive: true });
const bpe = makeByteBpeTokenizerJson(300);
const words = "the a movie film good bad great terrible plot actor story was is not very".split(" ");
const wp = makeWordPieceTokenizerJson(words);

const variants: Record<string, () => { model: ReturnType<typeof makeTinyLlama>; tok: object }> = {
  "llama-gqa": () => ({ model: makeTinyLlama({ seed: 1 }), tok: bpe }),
  "llama-mha-tied": () => ({ model: makeTinyLlama({ seed: 2, kvHeads: 4, tie: true }), tok: bpe }),
  "llama-attn-bias": () => ({ model: makeTinyLlama({ seed: 3, qkvBias: true }), tok: bpe }),
  qwen2: () => ({ model: makeTinyLlama({ seed: 4, modelType: "qwen2" }), tok: bpe }),
  "mistral-window": () => {
    const m = makeTinyLlama({ seed: 5, modelType: "mistral" });
    m.config.sliding_window = 5;
    return { model: m, tok: bpe };
  },
  "llama-rope-llama3": () => {
    const m = makeTinyLlama({ seed: 6 });
    m.config.rope_scaling = { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8 };
    return { model: m, tok: bpe };
  },
  "llama-rope-linear": () => {
    const m = makeTinyLlama({ seed: 7 });
    m.config.rope_scaling = { rope_type: "linear", type: "linear", factor: 2 };
    return { model: m, tok: bpe };
  },
  bert: () => ({ model: makeTinyBert({ seed: 8, numLabels: 3 }), tok: wp }),
  qwen3: () => ({ model: makeTinyQwen3({ seed: 9, tie: true }), tok: bpe }),
  "qwen3-window": () => ({
    model: makeTinyQwen3({ seed: 10, layers: 3, useSlidingWindow: true, maxWindowLayers: 1, attentionBias: true }),
    tok: bpe,
  }),
  gemma2: () => ({ model: makeTinyGemma2({ seed: 11 }), tok: bpe }),
  gemma3: () => ({ model: makeTinyGemma3({ seed: 12 }), tok: bpe }),
  phi3: () => ({ model: makeTinyPhi3({ seed: 13 }), tok: bpe }),
};
/** variants also pruned (uniform allocation keeps config.json standard) */
const PRUNED = ["llama-gqa", "qwen2", "bert", "qwen3", "qwen3-window", "gemma2", "gemma3", "phi3"];
/** variants also depth-pruned (--depth 1) */
const DEPTH = ["llama-gqa", "qwen2", "qwen3-window", "gemma2", "gemma3", "phi3"];

// 12 tokens: longer than the tiny models' sliding windows (4 and 5)
const ids = Array.from({ length: 12 }, (_, i) => 3 + ((i * 37 + 11) % 250));
const manifest: { name: string; kind: string; ids: number[]; attentionMask?: number[]; logits: number[]; shape: number[] }[] = [];

async function pareLogits(dir: string, name: string): Promise<void> {
  const m = loadModel(dir);
  const s = await Session.create(emitModelGraph(m));
  const T = ids.length;
  const enc = m.spec.kind === "encoder";
  const mask = enc ? ids.map((_, t) => (t < T - 3 ? 1 : 0)) : undefined; // a padded tail for BERT
  const feeds: Record<string, ReturnType<typeof i64From>> = { input_ids: i64From([1, T], ids) };
  if (enc) {
    feeds.attention_mask = i64From([1, T], mask!);
    feeds.token_type_ids = i64From([1, T], new Array(T).fill(0));
  }
  const r = await s.run(feeds, ["logits"]);
  manifest.push({ name, kind: m.spec.kind, ids, attentionMask: mask, logits: Array.from(r.logits.data as Float32Array), shape: r.logits.dims });
  await s.release();
  m.close();
}

const calib = path.join(out, "calib.txt");
fs.writeFileSync(calib, Array.from({ length: 400 }, (_, i) => `the ${words[i % words.length]} movie was ${words[(i * 7) % words.length]} and the plot is ${words[(i * 3) % words.length]} .`).join("\n"));

for (const [name, make] of Object.entries(variants)) {
  const { model, tok } = make();
  const dir = path.join(out, "models", name);
  writeTinyModel(dir, model, tok);
  await pareLogits(dir, name);
  if (PRUNED.includes(name)) {
    // uniform allocation keeps config.json standard; liar creates o/down biases (llama: attention_bias / mlp_bias)
    const pdir = path.join(out, "models", `${name}-pruned`);
    await runPrune(resolveRecipe({ model: dir, out: pdir, ratio: 0.4, allocation: "uniform", reconstruct: "liar", calib: [calib], samples: 16, seqLen: 32 }));
    await pareLogits(pdir, `${name}-pruned`);
  }
  if (DEPTH.includes(name)) {
    // depth pruning: fewer layers, renumbered tensors, explicit layer_types where layers slide; compensated (Gemma:
    // in its post-FFN norm's scale)
    const ddir = path.join(out, "models", `${name}-depth`);
    const reconstruct = "liar";
    await runPrune(resolveRecipe({ model: dir, out: ddir, depth: 1, skipLayers: [0], reconstruct, calib: [calib], samples: 16, seqLen: 32 }));
    await pareLogits(ddir, `${name}-depth`);
  }
}
const shared = path.resolve("../shared/models/llama-gqa-6l");
if (fs.existsSync(shared)) {
  const wiki = path.resolve("examples/data/calib-wikitext2-valid.txt");
  const pdir = path.join(out, "models", "llama-gqa-6l-pruned-uniform");
  await runPrune(resolveRecipe({ model: shared, out: pdir, ratio: 0.3, allocation: "uniform", reconstruct: "liar", calib: [wiki], samples: 32, seqLen: 128, dtype: "F16" }));
  await pareLogits(pdir, "llama-gqa-6l-pruned-uniform");
}
fs.writeFileSync(path.join(out, "pare-logits.json"), JSON.stringify(manifest));
process.stdout.write(`wrote ${manifest.length} cases to ${out}\n`);
