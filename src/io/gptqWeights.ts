/**
 * A GPTQ folder's tensors as plain float weights: every linear `X` stored as X.qweight / X.qzeros / X.scales /
 * X.g_idx (io/gptqFormat.ts) is seen as `X.weight` [out, in], dequantized when read; every other tensor passes
 * through. This is how pare's inspect, eval, generate, export and bench read GPTQ folders (arch/load.ts).
 */
import { PareError } from "../errors.ts";
import { dequantizeGptq, type GptqConfig, type GptqTensors } from "./gptqFormat.ts";
import { q, type TensorInfo } from "./safetensors.ts";

/** What this reads of a tensor store (io/safetensors.ts TensorStore). */
export interface RawTensorStore {
  names(): string[];
  has(name: string): boolean;
  info(name: string): TensorInfo;
  readRaw(name: string): Uint8Array;
  readF32(name: string): Float32Array;
  checkFinite(name: string): void;
}

export class GptqWeights {
  /** X.weight → X */
  private readonly quantized = new Map<string, string>();
  private readonly hidden = new Set<string>();

  constructor(
    readonly store: RawTensorStore,
    readonly cfg: GptqConfig,
  ) {
    for (const n of store.names()) {
      if (!n.endsWith(".qweight")) continue;
      const base = n.slice(0, -".qweight".length);
      for (const part of ["qzeros", "scales"])
        if (!store.has(`${base}.${part}`)) this.fail(base, `has no ${part}`);
      this.quantized.set(`${base}.weight`, base);
      for (const part of ["qweight", "qzeros", "scales", "g_idx"]) this.hidden.add(`${base}.${part}`);
    }
  }

  private fail(base: string, what: string): never {
    throw new PareError(
      "E_SAFETENSORS_INVALID",
      `GPTQ linear ${q(base)} ${what}`,
      "the folder is not a complete GPTQ checkpoint: re-export it",
      { tensor: base },
    );
  }

  /** names of the linears stored quantized (their `.weight` names) */
  quantizedNames(): string[] {
    return [...this.quantized.keys()];
  }

  names(): string[] {
    return [...this.store.names().filter((n) => !this.hidden.has(n)), ...this.quantized.keys()];
  }
  has(n: string): boolean {
    return this.quantized.has(n) || (!this.hidden.has(n) && this.store.has(n));
  }
  shape(n: string): number[] {
    const base = this.quantized.get(n);
    if (base === undefined) return this.store.info(n).shape;
    const [packedRows, out] = this.store.info(`${base}.qweight`).shape;
    return [out, (packedRows * 32) / this.cfg.bits];
  }
  get(n: string): Float32Array {
    const base = this.quantized.get(n);
    if (base === undefined) return this.store.readF32(n);
    return dequantizeGptq(this.stored(n), ...this.outIn(n), this.cfg);
  }

  private outIn(n: string): [number, number] {
    const [out, cols] = this.shape(n);
    return [out, cols];
  }

  /** The stored integers and grid of quantized linear `n` (a `.weight` name), checked; undefined if not quantized. */
  quantizedLinear(n: string): (GptqTensors & { out: number; cols: number }) | undefined {
    if (!this.quantized.has(n)) return undefined;
    return { ...this.stored(n), out: this.shape(n)[0], cols: this.shape(n)[1] };
  }

  private stored(n: string): GptqTensors {
    const base = this.quantized.get(n)!;
    const [out, cols] = this.shape(n);
    const groups = Math.ceil(cols / this.cfg.groupSize);
    const p = 32 / this.cfg.bits;
    const want = (part: string, dtype: string, shape: number[]) => {
      const info = this.store.info(`${base}.${part}`);
      if (info.dtype !== dtype || info.shape.join() !== shape.join())
        this.fail(
          base,
          `${part} is ${info.dtype} [${info.shape}], expected ${dtype} [${shape}] for bits ${this.cfg.bits}, group_size ${this.cfg.groupSize}`,
        );
      const raw = this.store.readRaw(`${base}.${part}`);
      return raw;
    };
    if (cols % this.cfg.groupSize !== 0 || out % p !== 0)
      this.fail(
        base,
        `[${out}, ${cols}] does not fit group_size ${this.cfg.groupSize} and ${this.cfg.bits} bits`,
      );
    const i32 = (b: Uint8Array) => new Int32Array(b.buffer, b.byteOffset, b.byteLength / 4);
    const qweight = i32(want("qweight", "I32", [cols / p, out]));
    const qzeros = i32(want("qzeros", "I32", [groups, out / p]));
    const sRaw = want("scales", "F16", [groups, out]);
    const scales = new Uint16Array(sRaw.buffer, sRaw.byteOffset, sRaw.byteLength / 2);
    let gIdx: Int32Array | undefined;
    if (this.store.has(`${base}.g_idx`)) {
      gIdx = i32(want("g_idx", "I32", [cols]));
      for (const g of gIdx) if (g < 0 || g >= groups) this.fail(base, `g_idx holds group ${g} of ${groups}`);
    }
    for (const h of scales) if ((h & 0x7c00) === 0x7c00) this.fail(base, "has a non-finite scale");
    return { qweight, qzeros, scales, gIdx };
  }
  checkFinite(n: string): void {
    if (this.quantized.has(n)) this.get(n);
    else this.store.checkFinite(n);
  }
}
