/**
 * The tiny seeded models of the families added as specs (Qwen3, Gemma 2, Gemma 3, Phi-3), in the variants the
 * family tests run: each family's defaults (sliding windows shorter than the inputs, soft-capping active,
 * partial rotary, local RoPE base), tied / untied, attention biases, per-layer widths (as a pruned model) and
 * transformers 5's config layout.
 */
import { makeTinyGemma2, makeTinyGemma3, makeTinyPhi3, makeTinyQwen3 } from "../helpers/tinyFamilies.ts";
import type { TinyModel } from "../helpers/tinyModels.ts";

export interface FamilyCase {
  name: string;
  family: "qwen3" | "gemma2" | "gemma3_text" | "phi3";
  tiny: () => TinyModel;
}

export const FAMILY_CASES: FamilyCase[] = [
  { name: "qwen3 (untied, window off)", family: "qwen3", tiny: () => makeTinyQwen3({ seed: 101 }) },
  {
    name: "qwen3 (tied, attention bias, sliding from layer 1 of 3)",
    family: "qwen3",
    tiny: () =>
      makeTinyQwen3({
        seed: 102,
        layers: 3,
        tie: true,
        attentionBias: true,
        useSlidingWindow: true,
        maxWindowLayers: 1,
      }),
  },
  {
    name: "qwen3 (per-layer widths, transformers 5 config)",
    family: "qwen3",
    tiny: () =>
      makeTinyQwen3({
        seed: 103,
        perLayer: { heads: [4, 2], kvHeads: [2, 1], intermediate: [48, 21] },
        configStyle: "v5",
      }),
  },
  { name: "gemma2 (3 layers, soft-capping)", family: "gemma2", tiny: () => makeTinyGemma2({ seed: 201 }) },
  {
    name: "gemma2 (untied, attention bias, transformers 5 config)",
    family: "gemma2",
    tiny: () => makeTinyGemma2({ seed: 202, tie: false, attentionBias: true, configStyle: "v5" }),
  },
  {
    name: "gemma3_text (4 layers, local RoPE base, linear scaling)",
    family: "gemma3_text",
    tiny: () => makeTinyGemma3({ seed: 301 }),
  },
  {
    name: "gemma3_text (per-layer widths, transformers 5 config)",
    family: "gemma3_text",
    tiny: () =>
      makeTinyGemma3({
        seed: 302,
        perLayer: { heads: [4, 2, 4, 2], kvHeads: [2, 1, 2, 2], intermediate: [48, 30, 17, 48] },
        configStyle: "v5",
      }),
  },
  { name: "phi3 (fused, partial rotary 0.5)", family: "phi3", tiny: () => makeTinyPhi3({ seed: 401 }) },
  {
    name: "phi3 (per-layer widths, tied, transformers 5 config)",
    family: "phi3",
    tiny: () =>
      makeTinyPhi3({
        seed: 402,
        tie: true,
        perLayer: { heads: [4, 2], kvHeads: [2, 2], intermediate: [48, 13] },
        configStyle: "v5",
      }),
  },
];
