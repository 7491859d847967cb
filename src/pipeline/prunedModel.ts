/**
 * The model being pruned: the input's weights (read on demand through a bounded cache) under an overlay that
 * holds the cut tensors, with the dims of the layers cut so far. Cut layers are written to the output and their
 * tensors dropped from memory (`release`); their shapes stay known.
 */
import { CachedWeights } from "../arch/cache.ts";
import { layerLinearElems } from "../arch/groups.ts";
import type { LayerDims, Model } from "../arch/model.ts";
import type { NamedTensor } from "../io/safetensors.ts";
import { cutLayer, type LayerCut, OverlayWeights, withLayers } from "../surgery/surgery.ts";

/** Cache budget: three times the largest layer's weights (f32), at least 64 MiB. */
function layerCacheBytes(m: Model): number {
  const largest = Math.max(
    ...m.dims.layers.map((L) => layerLinearElems(m.spec, L, m.dims.hidden, m.dims.headDim)),
  );
  return Math.max(64 << 20, 3 * 4 * largest);
}

export class PrunedModel {
  /** the unpruned input, its weights read through the bounded cache */
  readonly dense: Model;
  readonly weights: OverlayWeights;
  /** the model with the cuts so far */
  model: Model;

  constructor(input: Model) {
    this.dense = { ...input, weights: new CachedWeights(input.weights, layerCacheBytes(input)) };
    this.weights = new OverlayWeights(this.dense.weights);
    this.model = {
      ...this.dense,
      weights: this.weights,
      dims: {
        ...this.dense.dims,
        layers: this.dense.dims.layers.map((l) => ({ ...l, bias: { ...l.bias } })),
      },
    };
  }

  /** Apply a cut to layer i (attention, MLP or both). */
  cut(i: number, cut: LayerCut): void {
    const dims = this.model.dims.layers.slice();
    dims[i] = cutLayer(this.model, this.weights, i, cut);
    this.model = withLayers(this.model, this.weights, dims);
  }

  /** Resume: the layer dims after the layers done before … */
  restoreDims(dims: LayerDims[]): void {
    this.model = withLayers(this.model, this.weights, dims);
  }

  /** … and their cut tensors (a layer at a time: each is written out, then dropped). */
  restoreTensors(tensors: NamedTensor[]): void {
    for (const t of tensors) this.weights.set(t.name, { shape: t.shape, data: t.data });
  }

  /** Every tensor name of layer i the family's spec knows (weights and biases; some may not exist). */
  layerNames(i: number): string[] {
    const m = this.model;
    return Object.values(m.spec.names)
      .filter((t): t is string => typeof t === "string" && t.includes("{i}"))
      .flatMap((t) => [`${m.path(t, i)}.weight`, `${m.path(t, i)}.bias`]);
  }

  /** The cut tensors of layer i (what a checkpoint saves). */
  cutTensors(i: number): NamedTensor[] {
    const out: NamedTensor[] = [];
    for (const name of this.layerNames(i)) {
      const o = this.weights.overlay.get(name);
      if (o) out.push({ name, shape: o.shape, data: o.data });
    }
    return out;
  }
}
