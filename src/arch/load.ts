/** Open a model folder as a validated Model whose weights are read lazily from safetensors. */
import { gptqConfigOf } from "../io/gptqFormat.ts";
import { GptqWeights } from "../io/gptqWeights.ts";
import { openModelFolder } from "../io/modelFolder.ts";
import type { TensorStore } from "../io/safetensors.ts";
import { buildModel, type Model, type WeightSource } from "./model.ts";

export class StoreWeights implements WeightSource {
  constructor(readonly store: TensorStore) {}
  names(): string[] {
    return this.store.names();
  }
  has(n: string): boolean {
    return this.store.has(n);
  }
  shape(n: string): number[] {
    return this.store.info(n).shape;
  }
  get(n: string): Float32Array {
    return this.store.readF32(n);
  }
  checkFinite(n: string): void {
    this.store.checkFinite(n);
  }
}

export interface LoadedModel extends Model {
  dir: string;
  hasTokenizer: boolean;
  /** storage dtypes of the weight files */
  dtypes: string[];
  close(): void;
}

export function loadModel(dir: string): LoadedModel {
  const folder = openModelFolder(dir);
  try {
    // a GPTQ folder's linears are dequantized when read (io/gptqWeights.ts)
    const gptq = gptqConfigOf(folder.config);
    const source = gptq ? new GptqWeights(folder.store, gptq) : new StoreWeights(folder.store);
    const model = buildModel(folder.config, source);
    const dtypes = [...new Set(folder.store.names().map((n) => folder.store.info(n).dtype))];
    return {
      ...model,
      dir: folder.dir,
      hasTokenizer: folder.hasTokenizer,
      dtypes,
      close: () => folder.store.close(),
    };
  } catch (e) {
    folder.store.close();
    throw e;
  }
}
