/**
 * The Hugging Face GPTQ checkpoint layout (AutoGPTQ / optimum / transformers, `quant_method: "gptq"`,
 * `checkpoint_format: "gptq"`), for one linear `X` of weight W [out, in] quantized to b bits in groups of g
 * input channels (p = 32 / b values per int32, low bits first):
 *
 *   X.qweight  I32 [in / p, out]      qweight[r, j] = Σ_k q[j, r·p + k] << (b·k)       (the integers of Wᵀ)
 *   X.qzeros   I32 [in / g, out / p]  qzeros[t, c] = Σ_k ((z[t, c·p + k] − 1) & (2^b − 1)) << (b·k)
 *   X.scales   F16 [in / g, out]
 *   X.g_idx    I32 [in]              g_idx[c] = ⌊c / g⌋ (desc_act false: groups in column order)
 *   X.bias     unchanged
 *
 *   W[j, c] = scales[t, j] · (q[j, c] − z[t, j]),  t = g_idx[c]
 *
 * The stored zero point is z − 1 (the "gptq" v1 convention; `checkpoint_format: "gptq_v2"` stores z itself):
 * a v1 file cannot hold z = 0, which is why pare's asymmetric grid keeps z ≥ 1 (quant/grid.ts).
 */
import { PareError } from "../errors.ts";
import { f16BitsToF32 } from "../tensor/dtype.ts";

export interface GptqConfig {
  bits: 4 | 8;
  groupSize: number;
  sym: boolean;
  descAct: boolean;
  /** zero points stored as z − 1 ("gptq") or z ("gptq_v2") */
  v2: boolean;
}

export const GPTQ_SUFFIXES = ["qweight", "qzeros", "scales", "g_idx"] as const;

/** The `quantization_config` of a folder pare writes. */
export function gptqQuantizationConfig(
  bits: number,
  groupSize: number,
  sym: boolean,
  lmHead = false,
): Record<string, unknown> {
  return {
    // the LM head quantized too (GPTQModel's `lm_head` flag); absent: it stays in float
    ...(lmHead ? { lm_head: true } : {}),
    quant_method: "gptq",
    bits,
    group_size: groupSize,
    sym,
    desc_act: false,
    damp_percent: 0.01,
    true_sequential: true,
    static_groups: false,
    checkpoint_format: "gptq",
  };
}

/** The GPTQ settings of a config.json, undefined when it is not a GPTQ checkpoint; E_CONFIG_INVALID when unusable. */
export function gptqConfigOf(config: Record<string, unknown>): GptqConfig | undefined {
  const qc = config.quantization_config as Record<string, unknown> | undefined;
  if (!qc || typeof qc !== "object" || qc.quant_method !== "gptq") return undefined;
  const bad = (what: string) =>
    new PareError(
      "E_CONFIG_INVALID",
      `config.json: quantization_config ${what}`,
      "pare reads GPTQ folders with bits 4 or 8, a positive group_size and checkpoint_format gptq or gptq_v2",
      { quantization_config: qc },
    );
  if (qc.bits !== 4 && qc.bits !== 8) throw bad(`bits ${JSON.stringify(qc.bits)} is not 4 or 8`);
  const g = qc.group_size;
  if (!Number.isInteger(g) || (g as number) <= 0)
    throw bad(`group_size ${JSON.stringify(g)} is not a positive integer (per-channel -1 is not supported)`);
  const fmt = qc.checkpoint_format ?? "gptq";
  if (fmt !== "gptq" && fmt !== "gptq_v2") throw bad(`checkpoint_format ${JSON.stringify(fmt)} is unknown`);
  return {
    bits: qc.bits,
    groupSize: g as number,
    sym: qc.sym !== false,
    descAct: qc.desc_act === true,
    v2: fmt === "gptq_v2",
  };
}

/** qweight [rows / p … ] of integers q [out, in] (see the file comment). */
export function packQweight(q: Uint8Array, out: number, cols: number, bits: number): Int32Array {
  const p = 32 / bits;
  const packed = new Int32Array((cols / p) * out);
  for (let j = 0; j < out; j++) {
    const row = j * cols;
    for (let r = 0; r < cols / p; r++) {
      let v = 0;
      for (let k = 0; k < p; k++) v |= q[row + r * p + k] << (bits * k);
      packed[r * out + j] = v;
    }
  }
  return packed;
}

/** qzeros [groups, out / p] of zero points z [groups, out], stored as z − 1 (v1) or z (v2). */
export function packQzeros(z: Uint8Array, groups: number, out: number, bits: number, v2 = false): Int32Array {
  const p = 32 / bits;
  const mask = 2 ** bits - 1;
  const packed = new Int32Array(groups * (out / p));
  for (let t = 0; t < groups; t++)
    for (let c = 0; c < out / p; c++) {
      let v = 0;
      for (let k = 0; k < p; k++) v |= ((z[t * out + c * p + k] - (v2 ? 0 : 1)) & mask) << (bits * k);
      packed[t * (out / p) + c] = v;
    }
  return packed;
}

/** The integers q [out, in] of qweight [in / p, out]. */
export function unpackQweight(packed: Int32Array, out: number, cols: number, bits: number): Uint8Array {
  const p = 32 / bits;
  const mask = 2 ** bits - 1;
  const q = new Uint8Array(out * cols);
  for (let r = 0; r < cols / p; r++)
    for (let j = 0; j < out; j++) {
      const v = packed[r * out + j];
      for (let k = 0; k < p; k++) q[j * cols + r * p + k] = (v >>> (bits * k)) & mask;
    }
  return q;
}

/** The zero points z [groups, out] of qzeros (v1: stored + 1). */
export function unpackQzeros(
  packed: Int32Array,
  groups: number,
  out: number,
  bits: number,
  v2 = false,
): Int16Array {
  const p = 32 / bits;
  const mask = 2 ** bits - 1;
  const z = new Int16Array(groups * out);
  for (let t = 0; t < groups; t++)
    for (let c = 0; c < out / p; c++) {
      const v = packed[t * (out / p) + c];
      for (let k = 0; k < p; k++) z[t * out + c * p + k] = ((v >>> (bits * k)) & mask) + (v2 ? 0 : 1);
    }
  return z;
}

export function groupIndex(cols: number, groupSize: number): Int32Array {
  return Int32Array.from({ length: cols }, (_, c) => Math.floor(c / groupSize));
}

export interface GptqTensors {
  qweight: Int32Array; // [in / p, out]
  qzeros: Int32Array; // [groups, out / p]
  scales: Uint16Array; // [groups, out] f16 bits
  gIdx?: Int32Array; // [in]
}

/** W [out, in] in float32 from the stored tensors (see the file comment). */
export function dequantizeGptq(t: GptqTensors, out: number, cols: number, cfg: GptqConfig): Float32Array {
  const groups = t.scales.length / out;
  const q = unpackQweight(t.qweight, out, cols, cfg.bits);
  const z = unpackQzeros(t.qzeros, groups, out, cfg.bits, cfg.v2);
  const g = t.gIdx ?? groupIndex(cols, cfg.groupSize);
  const w = new Float32Array(out * cols);
  for (let j = 0; j < out; j++)
    for (let c = 0; c < cols; c++) {
      const i = g[c] * out + j;
      w[j * cols + c] = f16BitsToF32(t.scales[i]) * (q[j * cols + c] - z[i]);
    }
  return w;
}
