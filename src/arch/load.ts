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
}

export interface LoadedModel extends Model {
  dir: string;
  hasTokenizer: boolean;
  close(): void;
}

export function loadModel(dir: string): LoadedModel {
  const folder = openModelFolder(dir);
  try {
    const model = buildModel(folder.config, new StoreWeights(folder.store));
    return { ...model, dir: folder.dir, hasTokenizer: folder.hasTokenizer, close: () => folder.store.close() };
  } catch (e) {
    folder.store.close();
    throw e;
  }
}
