/** Open a model folder as a validated Model whose weights are read lazily from safetensors. */
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
    const model = buildModel(folder.config, new StoreWeights(folder.store));
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
