/**
 * A weight source that reads tensors on demand from another source and keeps the most
 * recently used ones within a byte budget (so pruning holds about one layer's weights,
 * not the whole model).
 */
import type { WeightSource } from "./model.ts";

export class CachedWeights implements WeightSource {
  private cache = new Map<string, Float32Array>(); // insertion order = recency
  private bytes = 0;
  reads = 0;

  constructor(
    readonly base: WeightSource,
    readonly budgetBytes: number,
  ) {}

  names(): string[] {
    return this.base.names();
  }
  has(n: string): boolean {
    return this.base.has(n);
  }
  shape(n: string): number[] {
    return this.base.shape(n);
  }
  get(n: string): Float32Array {
    const hit = this.cache.get(n);
    if (hit) {
      this.cache.delete(n);
      this.cache.set(n, hit);
      return hit;
    }
    const t = this.base.get(n);
    this.reads++;
    this.cache.set(n, t);
    this.bytes += t.byteLength;
    for (const [k, v] of this.cache) {
      if (this.bytes <= this.budgetBytes || k === n) break;
      this.cache.delete(k);
      this.bytes -= v.byteLength;
    }
    return t;
  }
}
