/**
 * What quantizing each layer adds to a prune (--dry-run with --quantize): the estimate for the widths after
 * the cut, (1 − ratio) of the unpruned ones, per layer (quant/sequential.ts):
 *
 *   forward     GPTQ's layer parts on every calibration token: the attention taps (q/k/v and the attention
 *               core), the MLP taps (attention again, o_proj), down_proj's input (gate/up), and the layer's output
 *               from its input instead of from mid (attention, o_proj once more)
 *   statistics  the Gram of each linear group's input (q/k/v, o_proj, gate/up, down_proj), float64: 2·N·d²
 *   solve       per linear [out, in]: the upper Cholesky factor of H⁻¹ (≈ 4/3·in³), the error feedback
 *               (≈ out·in²) and the relative output error it reports (2 · 2·out·in²)
 *
 * RTN adds only the rounding (no passes, no statistics, no solves).
 */
import type { Model } from "../arch/model.ts";

export interface QuantizationCost {
  /** extra layer forwards over all calibration tokens, in whole unpruned layer equivalents summed over layers */
  layerPasses: number;
  flops: { forward: number; statistics: number; solve: number };
  /** with measured MatMul rates (FLOP/s) */
  seconds?: number;
}

export function quantizationCost(
  model: Model,
  method: "gptq" | "rtn",
  tokens: number,
  seqLen: number,
  ratio: number,
  rates?: { matmulF32: number; matmulF64: number },
): QuantizationCost {
  if (method === "rtn") return { layerPasses: 0, flops: { forward: 0, statistics: 0, solve: 0 }, seconds: 0 };
  const { hidden: D, headDim: hd } = model.dims;
  const gated = model.spec.block.mlp === "gated" ? 2 : 1;
  const k = 1 - ratio;
  let forward = 0;
  let passes = 0;
  let statistics = 0;
  let solve = 0;
  const lin = (rows: number, cols: number) => (4 / 3) * cols ** 3 + 5 * rows * cols ** 2;
  for (const L of model.dims.layers) {
    const q = L.nHeads * hd * k;
    const kv = L.nKv * hd * k;
    const F = L.ffn * k;
    const attention = 2 * D * (q + 2 * kv) + 4 * seqLen * q;
    const o = 2 * q * D;
    const up = 2 * D * F * gated;
    const whole =
      2 * D * hd * (L.nHeads + 2 * L.nKv) +
      4 * seqLen * L.nHeads * hd +
      2 * L.nHeads * hd * D +
      2 * D * L.ffn * gated +
      2 * L.ffn * D;
    forward += tokens * (3 * attention + 2 * o + up);
    passes += (3 * attention + 2 * o + up) / whole;
    statistics += 2 * tokens * (D * D + q * q + D * D + F * F);
    solve += lin(q, D) + 2 * lin(kv, D) + lin(D, q) + gated * lin(F, D) + lin(D, F);
  }
  const layerPasses = Math.round(100 * passes) / 100;
  const seconds = rates && forward / rates.matmulF32 + (statistics + solve) / rates.matmulF64;
  return { layerPasses, flops: { forward, statistics, solve }, seconds };
}
