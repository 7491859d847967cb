/**
 * GGUF export for llama.cpp (and what runs on it: Ollama, LM Studio, node-llama-cpp). One file, GGUF v3, written
 * by pare (ggufWriter.ts), tensor by tensor, atomically (a temporary sibling renamed at the end).
 *
 * Architectures, as the pinned llama.cpp builds them (src/models/*.cpp) and as its convert_hf_to_gguf.py names
 * them:
 * - Llama / Mistral → `llama` (Q and K rows permuted from Hugging Face's rotate-half layout to llama.cpp's
 *   interleaved RoPE pairs, as the converter's LlamaModel.permute does). llama.cpp's `llama` reads one width for all
 *   layers; a model whose heads / KV heads / FFN widths differ per layer (pare's global allocation) is written as
 *   `deci` (the same block, made for Nemotron-51B's variable layers: per-layer head counts and FFN lengths as
 *   arrays). Both take q/k/v, attn_output and ffn biases.
 * - Qwen2 → `qwen2` when its shape is the dense one (`qwen2` requires query width = hidden size); a pruned Qwen2
 *   goes to `llama` / `deci` with Q/K (and their biases) permuted, which computes the same function.
 * - Qwen3 → `qwen3` (uniform widths; q/k/v biases; no attn_output bias). With per-layer widths → `openelm` (the
 *   same block — fused qkv, RMS q/k norms, NeoX RoPE, SwiGLU — with per-layer head counts and FFN lengths; no
 *   biases, output tied to the embeddings); llama.cpp's qwen3 creates every layer with layer 0's widths.
 * - Gemma 2 / Gemma 3 → `gemma2` / `gemma3` (uniform widths; norm weights stored as 1 + w, as the converter does;
 *   llama.cpp scales queries by head_dim^-1/2, so query_pre_attn_scalar is folded into the query projection
 *   (Gemma 2) or the query norm (Gemma 3); soft-caps, sliding window and its layer period, local RoPE base).
 *   No llama.cpp architecture with per-layer widths computes Gemma's block.
 * - Phi-3 → `phi3` (fused attn_qkv and gate|up ffn_up, partial rotary as rope.dimension_count) when dense-shaped;
 *   pruned → `llama` / `deci`, whose graphs assert n_rot = head_dim: partial rotary is emulated exactly by
 *   rope_freqs.weight (see `partialRopeFactors`).
 * Other families, non-uniform widths a family's host cannot express, sliding windows llama.cpp does not apply and
 * biases its graph has no place for are refused before anything is written (E_ARCH_UNSUPPORTED with a hint).
 * A GPTQ folder (io/gptqWeights.ts) exported as q4_0 keeps its symmetric 4-bit integers and scales exactly.
 */
import fs from "node:fs";
import path from "node:path";
import { FusedView } from "../arch/fused.ts";
import type { LoadedModel } from "../arch/load.ts";
import type { Model } from "../arch/model.ts";
import { PareError } from "../errors.ts";
import { unpackQweight, unpackQzeros } from "../io/gptqFormat.ts";
import { GptqWeights } from "../io/gptqWeights.ts";
import { f16BitsToF32 } from "../tensor/dtype.ts";
import { AtomicFile } from "./atomic.ts";
import {
  encodeAs,
  encodeQ4_0FromInts,
  FILE_TYPE,
  GGUF_OUTTYPES,
  type GgufOuttype,
  type Q4_0Ints,
  tensorType,
} from "./ggufQuant.ts";
import { addVocab, ggufVocab } from "./ggufTokenizer.ts";
import {
  GGUF_ALIGNMENT,
  type GgmlTypeName,
  GgufMetadata,
  type GgufTensor,
  QK,
  writeGguf,
} from "./ggufWriter.ts";
import { checkOutputPath } from "./paths.ts";

export { GGUF_OUTTYPES, type GgufOuttype };

export interface GgufExportResult {
  out: string;
  /** general.architecture */
  arch: string;
  outtype: GgufOuttype;
  bytes: number;
  tensors: number;
  /** tensors per ggml type */
  types: Record<string, number>;
  tokenizer: { model: string; pre: string; tokens: number };
  perLayerWidths: boolean;
  notes: string[];
}

/** How a model maps onto a llama.cpp architecture. */
export interface GgufPlan {
  arch: "llama" | "deci" | "qwen2" | "qwen3" | "gemma2" | "gemma3" | "phi3" | "openelm";
  /** Q/K rows permuted to llama.cpp's interleaved RoPE ("normal" rope type) */
  permuteQK: boolean;
  /** head counts / FFN lengths written as per-layer arrays */
  perLayer: boolean;
  /** q | k | v rows written as one `attn_qkv.weight` (phi3, openelm) */
  fusedQkv?: boolean;
  /** gate | up rows written as one `ffn_up.weight` (phi3: llama.cpp's swiglu of its two halves) */
  fusedGateUp?: boolean;
  /**
   * Partial rotary on an architecture that rotates whole heads (llama / deci assert n_rot = head_dim): RoPE over
   * all head_dim dimensions with a `rope_freqs.weight` of per-pair frequency divisors that give the rotated pairs
   * Hugging Face's frequencies base^(−2i/rotary_dim) and the rest frequency 0 (cos 1, sin 0: not rotated).
   */
  emulatePartialRope?: boolean;
  notes: string[];
}

const UNIFORM_HINT =
  "prune with --allocation uniform (every layer keeps the same widths), or use --format onnx";

function unsupported(what: string, hint: string, context: Record<string, unknown> = {}): PareError {
  return new PareError("E_ARCH_UNSUPPORTED", `GGUF export: ${what}; nothing was written`, hint, context);
}

const nonUniform = (m: Model) => {
  const L = m.dims.layers;
  return L.some((l) => l.nHeads !== L[0].nHeads || l.nKv !== L[0].nKv || l.ffn !== L[0].ffn);
};

/** The llama.cpp architecture for `model`, or a coded error saying why llama.cpp cannot run it. */
export function planGguf(model: Model): GgufPlan {
  const { spec, dims } = model;
  const family = spec.family;
  if (spec.kind !== "decoder" || dims.head !== "lm") {
    throw unsupported(
      `${family} ${dims.head === "lm" ? "" : "without a language-model head "}is not a causal LM`,
      "GGUF export writes decoders with their LM head (*ForCausalLM)",
    );
  }
  dims.layers.forEach((L, i) => {
    if (L.nHeads === 0 || L.nKv === 0 || L.ffn === 0)
      throw new PareError(
        "E_LAYER_EMPTIED",
        `layer ${i} has ${L.nHeads} heads / ${L.ffn} FFN channels: an emptied layer cannot be exported to GGUF`,
        "prune again with --min-groups 1 --min-channels 1 (the defaults)",
      );
  });
  const notes: string[] = [];
  const varying = nonUniform(model);
  const anyBias = (k: keyof (typeof dims.layers)[0]["bias"]) => dims.layers.some((l) => l.bias[k]);
  const sliding = dims.layerTypes.includes("sliding") && (dims.slidingWindow ?? 0) < dims.maxPos;
  if (dims.rotaryDim !== dims.headDim && family !== "phi3") {
    throw unsupported(
      `partial RoPE (${dims.rotaryDim} of ${dims.headDim} dimensions) is not supported for ${family}`,
      "use --format onnx",
    );
  }
  const gemma = family === "gemma2" || family === "gemma3_text";
  if (!gemma && (dims.attnSoftcap || dims.finalSoftcap || dims.embedScale || spec.block.normOffset !== 0)) {
    throw unsupported(`the ${family} family is not supported yet`, "use --format onnx");
  }
  if (!gemma && Math.abs(dims.attnScale * Math.sqrt(dims.headDim) - 1) > 1e-6) {
    throw unsupported(`an attention scale other than head_dim^-1/2 (${family})`, "use --format onnx");
  }
  const slidingNote = (arch: string) =>
    `llama.cpp's ${arch} architecture has no sliding window (its own converter drops it too): outputs equal the ` +
    `model's for sequences of at most ${dims.slidingWindow} tokens (sliding_window), full attention beyond`;

  if (family === "phi3") return planPhi3(model, varying, sliding ? slidingNote : undefined);
  if (family === "llama" || family === "qwen2") {
    if (spec.fused.length || spec.names.qNorm || spec.names.attnOutNorm) {
      throw unsupported(
        `the ${family} spec has tensors llama.cpp's llama does not know`,
        "use --format onnx",
      );
    }
    // Qwen2 in its dense shape: llama.cpp's own qwen2 (query width = hidden, no o / MLP biases)
    const qwenShape =
      family === "qwen2" &&
      !varying &&
      dims.layers[0].nHeads * dims.headDim === dims.hidden &&
      !anyBias("o") &&
      !anyBias("gate") &&
      !anyBias("up") &&
      !anyBias("down") &&
      dims.ropeScaling?.type !== "llama3";
    if (qwenShape) {
      if (sliding) notes.push(slidingNote("qwen2"));
      return { arch: "qwen2", permuteQK: false, perLayer: false, notes };
    }
    const arch = varying ? "deci" : "llama";
    if (sliding) notes.push(slidingNote(arch));
    if (family === "qwen2")
      notes.push(
        `pruned Qwen2 written as llama.cpp's ${arch} (its qwen2 needs query width = hidden size): Q/K rows and biases permuted to interleaved RoPE, the same function`,
      );
    if (varying)
      notes.push(
        "per-layer widths: written as llama.cpp's deci architecture (per-layer head counts and FFN lengths), which llama.cpp runs",
      );
    return { arch, permuteQK: true, perLayer: varying, notes };
  }
  if (family === "qwen3") {
    if (varying) {
      // llama.cpp's qwen3 creates every layer's tensors with layer 0's widths; its openelm (per-layer head counts
      // and FFN lengths, fused qkv, RMS q/k norms, NeoX RoPE, SwiGLU) is the same block, without biases and with
      // the output tied to the embeddings
      const biased = Object.keys(dims.layers[0].bias).some((k) =>
        anyBias(k as keyof (typeof dims.layers)[0]["bias"]),
      );
      if (!dims.tiedHead || biased) {
        throw unsupported(
          `a Qwen3 model with per-layer widths runs in llama.cpp only as its openelm architecture, which has ${
            biased
              ? "no biases (this model has some)"
              : "no separate output matrix (this model's lm_head is untied)"
          }; llama.cpp's qwen3 reads one width for all layers`,
          biased && dims.tiedHead
            ? "prune with --create-bias never (and a model without attention_bias), or with --allocation uniform"
            : UNIFORM_HINT,
        );
      }
      if (dims.ropeScaling?.type === "llama3")
        throw unsupported("llama3 rope scaling on openelm (per-layer Qwen3)", UNIFORM_HINT);
      if (sliding) notes.push(slidingNote("openelm"));
      notes.push(
        "per-layer widths: Qwen3 written as llama.cpp's openelm architecture (the same block with per-layer head counts and FFN lengths, fused qkv)",
      );
      return { arch: "openelm", permuteQK: false, perLayer: true, fusedQkv: true, notes };
    }
    if (anyBias("o") || anyBias("gate") || anyBias("up") || anyBias("down")) {
      throw unsupported(
        "llama.cpp's qwen3 has no attn_output / MLP biases, and this model has some (created by reconstruction)",
        "prune with --create-bias never (liar then fits without an intercept), or use --format onnx",
      );
    }
    if (dims.ropeScaling?.type === "llama3")
      throw unsupported("llama3 rope scaling on qwen3", "use --format onnx");
    if (sliding) notes.push(slidingNote("qwen3"));
    return { arch: "qwen3", permuteQK: false, perLayer: false, notes };
  }
  if (gemma) {
    const arch = family === "gemma2" ? "gemma2" : "gemma3";
    if (varying) {
      // checked in the pinned llama.cpp: gemma2 / gemma3 create every layer's tensors with layer 0's widths (a
      // file with per-layer arrays fails to load), and no architecture with per-layer widths has Gemma's block
      // (gemma4's RMS-normalizes V, deci / openelm lack the post-norms, soft-caps and embedding scale)
      throw unsupported(
        `llama.cpp's ${arch} reads one width for all layers, and no llama.cpp architecture with per-layer widths computes Gemma's block; this model's widths differ per layer`,
        UNIFORM_HINT,
      );
    }
    if (anyBias("o") || anyBias("gate") || anyBias("up") || anyBias("down")) {
      throw unsupported(
        `llama.cpp's ${arch} has no attn_output / MLP biases, and this model has some (created by reconstruction)`,
        "prune with --create-bias never (liar then fits without an intercept), or use --format onnx",
      );
    }
    if (arch === "gemma2" && !dims.tiedHead) {
      throw unsupported("llama.cpp's gemma2 always ties the output to the embeddings", "use --format onnx");
    }
    if (dims.ropeScaling?.type === "llama3")
      throw unsupported(`llama3 rope scaling on ${arch}`, "use --format onnx");
    if (dims.layerTypes.includes("sliding") && swaPeriod(dims.layerTypes) === undefined) {
      throw unsupported(
        `llama.cpp's ${arch} slides every layer but each n-th; this model's sliding layers (${dims.layerTypes.join(", ")}) follow no such period`,
        "use --format onnx",
      );
    }
    return { arch, permuteQK: false, perLayer: false, notes };
  }
  throw unsupported(
    `the ${family} family is not supported yet`,
    "GGUF export supports llama, mistral, qwen2, qwen3, gemma2 and gemma3 models; use --format onnx",
    { family },
  );
}

/**
 * Phi-3: dense-shaped (query width = hidden, one width, no biases) as llama.cpp's phi3 (fused attn_qkv and
 * gate|up `ffn_up`, NeoX RoPE over rope.dimension_count = rotary_dim, as its converter writes it); otherwise as
 * llama (uniform) or deci (per-layer widths), whose graphs take any query width and biases but rotate whole
 * heads: partial rotary is then emulated exactly with frequency divisors (`emulatePartialRope`).
 */
function planPhi3(
  model: Model,
  varying: boolean,
  slidingNote: ((arch: string) => string) | undefined,
): GgufPlan {
  const { dims } = model;
  const notes: string[] = [];
  const partial = dims.rotaryDim !== dims.headDim;
  const biased = dims.layers.some((l) => Object.values(l.bias).some(Boolean));
  if (dims.ropeScaling?.type === "llama3")
    throw unsupported("llama3 rope scaling on phi3", "use --format onnx");
  if (!varying && !biased && dims.layers[0].nHeads * dims.headDim === dims.hidden) {
    if (slidingNote)
      notes.push(slidingNote("phi3").replace("(its own converter drops it too)", "(its phi3 disables it)"));
    return { arch: "phi3", permuteQK: false, perLayer: false, fusedQkv: true, fusedGateUp: true, notes };
  }
  const arch = varying ? "deci" : "llama";
  if (slidingNote) notes.push(slidingNote(arch));
  notes.push(
    `pruned Phi-3 written as llama.cpp's ${arch} (its phi3 needs query width = hidden size${biased ? " and has no o_proj / MLP biases" : ""}): q|k|v and gate|up split, Q/K rows permuted to interleaved RoPE` +
      (partial
        ? `, partial rotary (${dims.rotaryDim} of ${dims.headDim}) as frequency divisors in rope_freqs.weight`
        : ""),
  );
  return { arch, permuteQK: true, perLayer: varying, emulatePartialRope: partial, notes };
}

/** The period p with layer i sliding iff i mod p < p − 1 (llama.cpp's set_swa_pattern), if the layers have one. */
export function swaPeriod(types: ("full" | "sliding")[]): number | undefined {
  if (!types.includes("full")) return 0; // 0: every layer slides
  for (let p = 1; p <= types.length + 1; p++) {
    if (types.every((t, i) => (t === "sliding") === i % p < p - 1)) return p;
  }
  return undefined;
}

/**
 * Rows of each head reordered from rotate-half to interleaved pairs (llama.cpp's LlamaModel.permute): the first
 * `rotaryDim` rows of a head ([x1 | x2] halves) become pairs (x1_j, x2_j); rows past `rotaryDim` (partial rotary)
 * stay where they are.
 */
export function permuteRope<T extends Float32Array | Int8Array>(
  data: T,
  rows: number,
  headDim: number,
  rotaryDim = headDim,
): T {
  const cols = data.length / rows;
  const half = rotaryDim / 2;
  const out = data.slice() as T;
  for (let h0 = 0; h0 < rows; h0 += headDim) {
    for (let s = 0; s < 2; s++) {
      for (let j = 0; j < half; j++) {
        const src = h0 + s * half + j;
        const dst = h0 + 2 * j + s;
        out.set(data.subarray(src * cols, (src + 1) * cols) as ArrayLike<number>, dst * cols);
      }
    }
  }
  return out;
}

/** Frequency divisors that never rotate: cos(θ/1e30) = 1 and sin(θ/1e30)·x vanish in float32. */
const NO_ROTATION = 1e30;

/**
 * Partial rotary as ggml's rope over all head_dim dimensions with freq_factors (rope_freqs.weight, one per pair;
 * ggml divides pair i's angle pos·base^(−2i/head_dim) by factor i): base^(2i/rotary_dim − 2i/head_dim) for the
 * rotary_dim / 2 rotated pairs (Hugging Face's pos·base^(−2i/rotary_dim)), NO_ROTATION for the rest.
 */
export function partialRopeFactors(headDim: number, rotaryDim: number, base: number): Float32Array {
  const out = new Float32Array(headDim / 2);
  for (let i = 0; i < headDim / 2; i++) {
    out[i] = i < rotaryDim / 2 ? base ** ((2 * i) / rotaryDim - (2 * i) / headDim) : NO_ROTATION;
  }
  return out;
}

/** llama3 rope scaling as the factors tensor llama.cpp reads (rope_freqs.weight, one per frequency). */
function llama3RopeFactors(model: Model): Float32Array {
  const rs = model.dims.ropeScaling;
  if (rs?.type !== "llama3") throw new Error("not llama3");
  const dim = model.dims.headDim;
  const base = model.dims.ropeTheta;
  const lowWavelen = rs.originalMax / rs.lowFreqFactor;
  const highWavelen = rs.originalMax / rs.highFreqFactor;
  const out = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) {
    const freq = 1 / base ** ((2 * i) / dim);
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) out[i] = 1;
    else if (wavelen > lowWavelen) out[i] = rs.factor;
    else {
      const smooth = (rs.originalMax / wavelen - rs.lowFreqFactor) / (rs.highFreqFactor - rs.lowFreqFactor);
      out[i] = 1 / ((1 - smooth) / rs.factor + smooth);
    }
  }
  return out;
}

interface Source {
  name: string;
  shape: number[];
  read(): Float32Array;
  /**
   * The tensor's Q4_0 integers and scales taken from a GPTQ checkpoint as they are (symmetric 4-bit, groups a
   * multiple of 32, no act-order), with the same row permutations / concatenations as `read`; undefined when the
   * tensor is not such a GPTQ linear or its transform is not a pure row operation.
   */
  q4?: () => Q4_0Ints;
  /** read from a GPTQ checkpoint's quantized linears (all of its parts) */
  fromGptq?: boolean;
}

/** Why a GPTQ checkpoint's 4-bit integers cannot be written as Q4_0 as they are (undefined: they can). */
function gptqQ4Obstacle(w: GptqWeights): string | undefined {
  const c = w.cfg;
  if (c.bits !== 4) return `${c.bits}-bit GPTQ`;
  if (!c.sym) return "asymmetric GPTQ (zero points other than 8)";
  if (c.groupSize % QK !== 0) return `GPTQ group size ${c.groupSize} (not a multiple of 32)`;
  if (c.descAct) return "GPTQ with act-order (desc_act)";
  return undefined;
}

/**
 * Q4_0 integers and scales of the GPTQ linear `name` ([out, cols]): W = s·(u − 8) with u the stored 4-bit code, so
 * q = u − 8 and each 32-block of a row takes its group's f16 scale (a group of 32·k columns covers k blocks).
 */
function gptqQ4Ints(w: GptqWeights, name: string): Q4_0Ints {
  const base = name.slice(0, -".weight".length);
  const [out, cols] = w.shape(name);
  const { groupSize, bits, v2 } = w.cfg;
  const groups = cols / groupSize;
  const raw = (part: string) => {
    const b = w.store.readRaw(`${base}.${part}`);
    return b;
  };
  const i32 = (b: Uint8Array) => new Int32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  const u = unpackQweight(i32(raw("qweight")), out, cols, bits);
  const z = unpackQzeros(i32(raw("qzeros")), groups, out, bits, v2);
  const sRaw = raw("scales");
  const sBits = new Uint16Array(sRaw.buffer.slice(sRaw.byteOffset, sRaw.byteOffset + sRaw.byteLength));
  if (w.store.has(`${base}.g_idx`)) {
    const g = i32(raw("g_idx"));
    for (let c = 0; c < cols; c++)
      if (g[c] !== Math.floor(c / groupSize))
        throw unsupported(
          `GPTQ linear ${base} has its columns out of group order (g_idx)`,
          "use --outtype q8_0 or f16",
        );
  }
  const q = new Int8Array(out * cols);
  const scales = new Float32Array((out * cols) / QK);
  for (let j = 0; j < out; j++) {
    for (let c = 0; c < cols; c++) {
      const t = Math.floor(c / groupSize);
      if (z[t * out + j] !== 8)
        throw unsupported(
          `GPTQ linear ${base} has zero point ${z[t * out + j]} (symmetric 4-bit has 8)`,
          "use --outtype q8_0 or f16",
        );
      q[j * cols + c] = u[j * cols + c] - 8;
      if (c % QK === 0) scales[(j * cols + c) / QK] = f16BitsToF32(sBits[t * out + j]);
    }
  }
  return { q, scales };
}

/** The tensors under llama.cpp's names (blk.N.attn_q.weight …), read lazily, Q/K permuted when the plan says. */
function sources(model: Model, plan: GgufPlan): Source[] {
  const { dims, spec, weights } = model;
  const N = spec.names;
  const out: Source[] = [];
  type Transform = (d: Float32Array) => Float32Array;
  /** a row permutation of Q / K, applied to weights and to Q4_0 integers / scales alike */
  type RowPerm = { rows: number } | undefined;
  // one function per row count, so that `add` can tell a pure row permutation from a value transform
  const perms = new Map<number, Transform>();
  const permOf = (rows: number): Transform => {
    let f = perms.get(rows);
    if (!f) {
      f = (d: Float32Array) => (plan.permuteQK ? permuteRope(d, rows, dims.headDim, dims.rotaryDim) : d);
      perms.set(rows, f);
    }
    return f;
  };
  const perm = permOf;
  // a GPTQ checkpoint's 4-bit integers, usable as Q4_0 as they are
  const gptq = weights instanceof GptqWeights && !gptqQ4Obstacle(weights) ? weights : undefined;
  const gptqLinears = new Set(gptq ? gptq.quantizedNames() : []);
  const gptqAll = new Set(weights instanceof GptqWeights ? weights.quantizedNames() : []);
  const intsOf = (hf: string, perm: RowPerm): (() => Q4_0Ints) | undefined => {
    if (!gptq || !gptqLinears.has(hf)) return undefined;
    return () => {
      const r = gptqQ4Ints(gptq, hf);
      if (!perm || !plan.permuteQK) return r;
      return {
        q: permuteRope(r.q, perm.rows, dims.headDim, dims.rotaryDim),
        scales: permuteRope(r.scales, perm.rows, dims.headDim, dims.rotaryDim),
      };
    };
  };
  const add = (name: string, hf: string, transform?: Transform, perm?: RowPerm) => {
    if (!weights.has(hf)) return;
    const shape = weights.shape(hf);
    // the Q4_0 integers pass only through row permutations (a value transform would change them)
    const rowOnly = !transform || (perm !== undefined && transform === permOf(perm.rows));
    out.push({
      name,
      shape,
      read: () => (transform ? transform(weights.get(hf)) : weights.get(hf)),
      q4: rowOnly ? intsOf(hf, perm) : undefined,
      fromGptq: gptqAll.has(hf),
    });
  };
  /** rows of several tensors stacked into one (q | k | v, gate | up) */
  const addConcat = (name: string, parts: [string, Transform | undefined, RowPerm][]) => {
    const shapes = parts.map(([hf]) => weights.shape(hf));
    const rows = shapes.reduce((a, sh) => a + sh[0], 0);
    const width = shapes[0].slice(1).reduce((a, b) => a * b, 1);
    const ints = parts.map(([hf, f, perm]) =>
      !f || (perm !== undefined && f === permOf(perm.rows)) ? intsOf(hf, perm) : undefined,
    );
    out.push({
      name,
      shape: [rows, ...shapes[0].slice(1)],
      read: () => {
        const all = new Float32Array(rows * width);
        let at = 0;
        for (const [hf, f] of parts) {
          const d = f ? f(weights.get(hf)) : weights.get(hf);
          all.set(d, at);
          at += d.length;
        }
        return all;
      },
      q4: ints.every((f) => f)
        ? () => {
            const q = new Int8Array(rows * width);
            const scales = new Float32Array((rows * width) / QK);
            let at = 0;
            for (const f of ints as (() => Q4_0Ints)[]) {
              const r = f();
              q.set(r.q, at);
              scales.set(r.scales, at / QK);
              at += r.q.length;
            }
            return { q, scales };
          }
        : undefined,
      fromGptq: parts.every(([hf]) => gptqAll.has(hf)),
    });
  };
  add("token_embd.weight", `${model.path(N.embed)}.weight`);
  if (dims.ropeScaling?.type === "llama3") {
    const f = llama3RopeFactors(model);
    out.push({ name: "rope_freqs.weight", shape: [f.length], read: () => f });
  }
  if (plan.emulatePartialRope) {
    const f = partialRopeFactors(dims.headDim, dims.rotaryDim, dims.ropeTheta);
    out.push({ name: "rope_freqs.weight", shape: [f.length], read: () => f });
  }
  // Gemma's x̂·(1 + w) norms are stored as 1 + w (llama.cpp multiplies by the weight)
  const offset = spec.block.normOffset;
  const plusOne = offset ? (d: Float32Array) => d.map((x) => x + offset) : undefined;
  // llama.cpp scales queries by head_dim^-1/2: another attention scale is folded into the queries
  const qScale = dims.attnScale * Math.sqrt(dims.headDim);
  const scaled = (f: Transform | undefined) =>
    Math.abs(qScale - 1) < 1e-12 ? f : (d: Float32Array) => (f ? f(d) : d).map((x) => x * qScale);
  dims.layers.forEach((L, i) => {
    const b = `blk.${i}.`;
    const p = (t: string | undefined) => (t ? model.path(t, i) : "");
    add(`${b}attn_norm.weight`, `${p(N.norm1)}.weight`, plusOne);
    for (const sfx of ["weight", "bias"]) {
      const qRows = { rows: L.nHeads * dims.headDim };
      const kRows = { rows: L.nKv * dims.headDim };
      const q = perm(qRows.rows);
      const qT = N.qNorm ? q : scaled(q);
      const kT = perm(kRows.rows);
      if (plan.fusedQkv) {
        if (weights.has(`${p(N.q)}.${sfx}`))
          addConcat(`${b}attn_qkv.${sfx}`, [
            [`${p(N.q)}.${sfx}`, qT, qRows],
            [`${p(N.k)}.${sfx}`, kT, kRows],
            [`${p(N.v)}.${sfx}`, undefined, undefined],
          ]);
      } else {
        add(`${b}attn_q.${sfx}`, `${p(N.q)}.${sfx}`, qT, qRows);
        add(`${b}attn_k.${sfx}`, `${p(N.k)}.${sfx}`, kT, kRows);
        add(`${b}attn_v.${sfx}`, `${p(N.v)}.${sfx}`);
      }
      add(`${b}attn_output.${sfx}`, `${p(N.o)}.${sfx}`);
    }
    if (N.qNorm) add(`${b}attn_q_norm.weight`, `${p(N.qNorm)}.weight`, scaled(plusOne));
    if (N.kNorm) add(`${b}attn_k_norm.weight`, `${p(N.kNorm)}.weight`, plusOne);
    if (N.attnOutNorm) add(`${b}post_attention_norm.weight`, `${p(N.attnOutNorm)}.weight`, plusOne);
    add(`${b}ffn_norm.weight`, `${p(N.norm2)}.weight`, plusOne);
    if (N.mlpOutNorm) add(`${b}post_ffw_norm.weight`, `${p(N.mlpOutNorm)}.weight`, plusOne);
    for (const sfx of ["weight", "bias"]) {
      if (plan.fusedGateUp && N.gate) {
        if (weights.has(`${p(N.up)}.${sfx}`))
          addConcat(`${b}ffn_up.${sfx}`, [
            [`${p(N.gate)}.${sfx}`, undefined, undefined],
            [`${p(N.up)}.${sfx}`, undefined, undefined],
          ]);
      } else {
        if (N.gate) add(`${b}ffn_gate.${sfx}`, `${p(N.gate)}.${sfx}`);
        add(`${b}ffn_up.${sfx}`, `${p(N.up)}.${sfx}`);
      }
      add(`${b}ffn_down.${sfx}`, `${p(N.down)}.${sfx}`);
    }
  });
  if (N.finalNorm) add("output_norm.weight", `${model.path(N.finalNorm)}.weight`, plusOne);
  if (!dims.tiedHead && N.lmHead) add("output.weight", `${model.path(N.lmHead)}.weight`);
  return out;
}

/** The architecture key/values (as llama.cpp's converter writes them, per-layer arrays where the plan says). */
function archMetadata(meta: GgufMetadata, model: Model, plan: GgufPlan): void {
  const { dims } = model;
  const a = plan.arch;
  const L = dims.layers;
  meta.u32(`${a}.vocab_size`, dims.vocab);
  meta.u32(`${a}.context_length`, dims.maxPos);
  meta.u32(`${a}.embedding_length`, dims.hidden);
  meta.u32(`${a}.block_count`, dims.nLayers);
  if (plan.perLayer) {
    meta.arrU32(
      `${a}.feed_forward_length`,
      L.map((l) => l.ffn),
    );
    meta.arrU32(
      `${a}.attention.head_count`,
      L.map((l) => l.nHeads),
    );
    meta.arrU32(
      `${a}.attention.head_count_kv`,
      L.map((l) => l.nKv),
    );
  } else {
    meta.u32(`${a}.feed_forward_length`, L[0].ffn);
    meta.u32(`${a}.attention.head_count`, L[0].nHeads);
    meta.u32(`${a}.attention.head_count_kv`, L[0].nKv);
  }
  meta.u32(`${a}.attention.key_length`, dims.headDim);
  meta.u32(`${a}.attention.value_length`, dims.headDim);
  meta.u32(`${a}.rope.dimension_count`, plan.emulatePartialRope ? dims.headDim : dims.rotaryDim);
  meta.f32(`${a}.rope.freq_base`, dims.ropeTheta);
  if (dims.ropeScaling?.type === "linear") {
    meta.str(`${a}.rope.scaling.type`, "linear");
    meta.f32(`${a}.rope.scaling.factor`, dims.ropeScaling.factor);
  }
  meta.f32(`${a}.attention.layer_norm_rms_epsilon`, dims.eps);
  // phi3: the window as llama.cpp's converter writes it (0 = none); its phi3 reads it and disables SWA
  if (a === "phi3") meta.u32(`${a}.attention.sliding_window`, dims.slidingWindow ?? 0);
  if (a === "gemma2" || a === "gemma3") {
    // no cap: one so large that cap·tanh(x / cap) = x in float32 (llama.cpp's gemma2 always caps)
    const NO_CAP = 1e6;
    if (a === "gemma2") meta.f32(`${a}.attn_logit_softcapping`, dims.attnSoftcap ?? NO_CAP);
    if (dims.finalSoftcap || a === "gemma2")
      meta.f32(`${a}.final_logit_softcapping`, dims.finalSoftcap ?? NO_CAP);
    const period = swaPeriod(dims.layerTypes);
    if (dims.slidingWindow && period !== undefined && dims.layerTypes.includes("sliding")) {
      meta.u32(`${a}.attention.sliding_window`, dims.slidingWindow);
      meta.u32(`${a}.attention.sliding_window_pattern`, period);
      if (dims.ropeLocalTheta !== undefined) meta.f32(`${a}.rope.freq_base_swa`, dims.ropeLocalTheta);
    } else if (a === "gemma2") {
      // llama.cpp's gemma2 always slides (default 4096): a window as long as the context never masks
      meta.u32(`${a}.attention.sliding_window`, Math.max(dims.maxPos, 1));
    }
  }
}

/**
 * general.name: the folder name, except that llama.cpp's vocabulary loader looks up "</s>", "<unk>", "<s>" and
 * "<|endoftext|>" by name (and aborts when one is missing) in any model whose name contains "phi3" / "phi-3";
 * with a vocabulary that lacks one of them, the name is changed so that llama.cpp can load the file.
 */
export function ggufModelName(name: string, tokens: readonly string[]): string {
  if (!/phi-?3/i.test(name)) return name;
  const have = new Set(tokens);
  if (["</s>", "<unk>", "<s>", "<|endoftext|>"].every((t) => have.has(t))) return name;
  return name.replace(/(phi)(-?)3/gi, "$1$2_3");
}

/** What happens to a GPTQ checkpoint's quantized linears in this export. */
function gptqNotes(w: GptqWeights, srcs: Source[], types: GgmlTypeName[], outtype: GgufOuttype): string[] {
  const c = w.cfg;
  const what = `GPTQ ${c.bits}-bit, group ${c.groupSize}, ${c.sym ? "symmetric" : "asymmetric"}`;
  if (outtype !== "q4_0") return [`${what}: its linears are written dequantized, as ${outtype}`];
  const obstacle = gptqQ4Obstacle(w);
  if (obstacle)
    return [
      `${what}: ${obstacle} is not Q4_0's grid; its linears are dequantized and re-quantized by Q4_0 round-to-nearest`,
    ];
  const exact = srcs.filter((s, i) => types[i] === "Q4_0" && s.q4).length;
  const requant = srcs.filter((s, i) => types[i] === "Q4_0" && !s.q4).map((s) => s.name);
  const kept = srcs.filter((_, i) => types[i] === "Q8_0").map((s) => s.name);
  const notes = [`${what}: ${exact} Q4_0 matrices carry the checkpoint's own integers and scales (exact)`];
  if (requant.length)
    notes.push(`re-quantized by Q4_0 round-to-nearest (transformed on export): ${requant.join(", ")}`);
  if (kept.length) notes.push(`not 4-bit in the checkpoint, written as Q8_0: ${kept.join(", ")}`);
  return notes;
}

/** Everything checked and planned, nothing written: the plan, the vocabulary and the tensors to write. */
export function prepareGguf(model: LoadedModel, outtype: GgufOuttype) {
  if (!GGUF_OUTTYPES.includes(outtype)) {
    throw new PareError(
      "E_USAGE",
      `unknown --outtype ${JSON.stringify(outtype)}`,
      `use one of: ${GGUF_OUTTYPES.join(", ")}`,
    );
  }
  const plan = planGguf(model);
  const vocab = ggufVocab(model.dir, model.dims.vocab);
  const meta = new GgufMetadata();
  meta.str("general.architecture", plan.arch);
  meta.str("general.type", "model");
  meta.str("general.name", ggufModelName(path.basename(model.dir), vocab.tokens));
  archMetadata(meta, model, plan);
  meta.u32("general.file_type", FILE_TYPE[outtype]);
  meta.u32("general.quantization_version", 2);
  meta.u32("general.alignment", GGUF_ALIGNMENT);
  addVocab(meta, vocab);
  const srcs = sources(model, plan);
  const tiedOutput = !srcs.some((s) => s.name === "output.weight");
  // a GPTQ checkpoint's float matrices (embeddings, lm_head) were kept at higher precision: not 4-bit here either
  const gptqFolder = model.weights instanceof GptqWeights;
  const types = srcs.map((s) => {
    const t = tensorType(s.name, s.shape, outtype, tiedOutput);
    return gptqFolder && t === "Q4_0" && !s.fromGptq ? "Q8_0" : t;
  });
  if (model.weights instanceof GptqWeights)
    plan.notes.push(...gptqNotes(model.weights, srcs, types, outtype));
  else if (model.weights instanceof FusedView && model.weights.base instanceof GptqWeights)
    plan.notes.push(
      `GPTQ checkpoint with fused tensors: its linears are written dequantized, as ${outtype}${
        outtype === "q4_0" ? " (re-quantized by Q4_0 round-to-nearest)" : ""
      }`,
    );
  const tensors: GgufTensor[] = srcs.map((s, i) => {
    const type = types[i];
    const q4 = type === "Q4_0" ? s.q4 : undefined;
    const cols = s.shape[s.shape.length - 1];
    return {
      name: s.name,
      shape: s.shape,
      type,
      encode: q4
        ? () => {
            const r = q4();
            return encodeQ4_0FromInts(r.q, r.scales, r.q.length / cols, cols);
          }
        : () => encodeAs(s.read(), type, s.shape),
    };
  });
  return { plan, vocab, meta, tensors };
}

/** Write `model` as one GGUF file at `out` (atomically; an existing file needs `force`). */
export function exportGguf(
  model: LoadedModel,
  out: string,
  opts: {
    outtype?: GgufOuttype;
    force?: boolean;
    onTensor?: (i: number, n: number, name: string) => void;
  } = {},
): GgufExportResult {
  const outtype = opts.outtype ?? "f16";
  const target = path.resolve(out);
  if (fs.existsSync(target) && !opts.force && !fs.statSync(target).isDirectory()) {
    throw new PareError(
      "E_OUTPUT_EXISTS",
      `output file ${out} already exists`,
      "choose another --out, or add --force to replace it",
    );
  }
  checkOutputPath(model.dir, out, opts.force ?? false);
  if (fs.existsSync(target) && fs.statSync(target).isDirectory()) {
    throw new PareError(
      "E_OUTPUT_EXISTS",
      `--out ${out} is a folder; a GGUF export is one file`,
      "give a file name, e.g. --out model.gguf",
    );
  }
  const { plan, vocab, meta, tensors } = prepareGguf(model, outtype);
  // temporary sibling, output lock, fsync before the publishing rename, E_NO_SPACE (export/atomic.ts)
  const file = AtomicFile.open(target, opts.force ?? false);
  let bytes = 0;
  let fd = -1;
  try {
    fd = fs.openSync(file.tmp, "wx");
    bytes = writeGguf(fd, meta, tensors, (i, t) => opts.onTensor?.(i, tensors.length, t.name));
    fs.closeSync(fd);
    fd = -1;
    file.commit();
  } catch (e) {
    if (fd >= 0) fs.closeSync(fd);
    const err = file.failure(e);
    file.abort();
    throw err;
  }
  const types: Record<string, number> = {};
  for (const t of tensors) types[t.type] = (types[t.type] ?? 0) + 1;
  return {
    out: target,
    arch: plan.arch,
    outtype,
    bytes,
    tensors: tensors.length,
    types,
    tokenizer: { model: vocab.model, pre: vocab.pre, tokens: vocab.tokens.length },
    perLayerWidths: plan.perLayer,
    notes: [...plan.notes, ...vocab.notes],
  };
}
