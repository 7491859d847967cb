/**
 * Quantization settings (GPTQ / RTN; docs/cli.md "pare quantize") and their validation: everything a
 * user can get wrong is refused here, before any work, with a PareError.
 */
import { PareError } from "../errors.ts";

export type QuantMethod = "gptq" | "rtn";
export const QUANT_METHODS: readonly QuantMethod[] = ["gptq", "rtn"];
export const QUANT_BITS = [4, 8] as const;
export type QuantBits = (typeof QUANT_BITS)[number];

export interface QuantSettings {
  bits: QuantBits;
  /** input channels per scale/zero group (divides every quantized linear's input width) */
  groupSize: number;
  /** symmetric grid (zero point 2^(bits−1)); false: a rounded zero point per group (asymmetric) */
  sym: boolean;
  method: QuantMethod;
  /** GPTQ's damping λ as a fraction of mean(diag H) (Frantar et al. 2023: 0.01) */
  dampPercent: number;
  /** GPTQ's lazy-update block (columns); rounded up to a multiple of the group size */
  blockSize: number;
  /**
   * GPTQ act-order with static groups (gptq.ts): columns processed by decreasing diag(H), the natural-order
   * groups' grids fixed before the pass, so the written format stays desc_act false with the trivial g_idx
   */
  actOrder: boolean;
}

export const QUANT_DEFAULTS: QuantSettings = {
  bits: 4,
  groupSize: 128,
  sym: true,
  method: "gptq",
  dampPercent: 0.01,
  blockSize: 128,
  // measured on llama-gqa-6l (bench/results/quant.md): lower KL to the dense model than natural order
  actOrder: true,
};

const HINT = "use --bits 4 (or 8), --group-size 32, 64 or 128, --quant-method gptq or rtn";

/** Settings with defaults filled in, or E_USAGE naming the wrong value. */
export function checkQuantSettings(s: Partial<QuantSettings>): QuantSettings {
  const given = Object.fromEntries(Object.entries(s).filter(([, v]) => v !== undefined));
  const r = { ...QUANT_DEFAULTS, ...given } as QuantSettings;
  if (!(QUANT_BITS as readonly number[]).includes(r.bits))
    throw new PareError("E_USAGE", `quantization bits ${String(r.bits)} are not supported (4 or 8)`, HINT, {
      bits: r.bits,
    });
  if (!Number.isInteger(r.groupSize) || r.groupSize < 8 || (r.groupSize & (r.groupSize - 1)) !== 0)
    throw new PareError(
      "E_USAGE",
      `group size ${String(r.groupSize)} is not a power of two ≥ 8`,
      "group sizes are powers of two (32, 64, 128; ONNX MatMulNBits needs ≥ 16)",
      { groupSize: r.groupSize },
    );
  if (!QUANT_METHODS.includes(r.method))
    throw new PareError("E_USAGE", `quantization method ${String(r.method)} is unknown`, HINT, {
      method: r.method,
    });
  if (typeof r.sym !== "boolean")
    throw new PareError("E_USAGE", "quantization sym must be true or false", HINT, { sym: r.sym });
  if (typeof r.actOrder !== "boolean")
    throw new PareError("E_USAGE", "GPTQ act-order must be true or false", HINT, { actOrder: r.actOrder });
  if (!(r.dampPercent > 0 && r.dampPercent < 1))
    throw new PareError("E_USAGE", `GPTQ damping ${String(r.dampPercent)} is not in (0, 1)`, "use 0.01", {
      dampPercent: r.dampPercent,
    });
  if (!Number.isInteger(r.blockSize) || r.blockSize < 1)
    throw new PareError(
      "E_USAGE",
      `GPTQ block size ${String(r.blockSize)} is not a positive integer`,
      "use 128",
      {
        blockSize: r.blockSize,
      },
    );
  return r;
}

/** Values packed in one int32 of qweight / qzeros. */
export function perInt32(bits: QuantBits): number {
  return 32 / bits;
}

/**
 * E_CONFIG_MISMATCH unless a linear [rows = out, cols = in] can be quantized with `s` and packed the way the
 * GPTQ format packs it (in / (32/bits) int32 rows of qweight, out / (32/bits) int32 columns of qzeros).
 */
export function checkLinearShape(name: string, rows: number, cols: number, s: QuantSettings): void {
  const pack = perInt32(s.bits);
  const fail = (what: string) => {
    throw new PareError(
      "E_CONFIG_MISMATCH",
      `${name} [${rows}, ${cols}] cannot be quantized: ${what}`,
      "choose a group size that divides every linear's input width (or leave this linear unquantized)",
      { tensor: name, rows, cols, groupSize: s.groupSize, bits: s.bits },
    );
  };
  if (cols % s.groupSize !== 0) fail(`group size ${s.groupSize} does not divide its input width ${cols}`);
  if (cols % pack !== 0) fail(`its input width is not a multiple of ${pack}`);
  if (rows % pack !== 0) fail(`its output width is not a multiple of ${pack} (qzeros packing)`);
}
