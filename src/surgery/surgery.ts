/**
 * Surgery: physically slice producers (rows) and replace consumers (reconstructed
 * columns + bias) of one layer, and write the config that describes the new widths.
 * Every produced shape is checked.
 */
import type { LayerDims, Model, WeightSource } from "../arch/model.ts";
import type { ModuleRole } from "../arch/spec.ts";
import { PareError } from "../errors.ts";
import type { ReconResult } from "../reconstruct/index.ts";

export interface Tensor {
  shape: number[];
  data: Float32Array;
}

/** Weights = an in-memory overlay over a base source (the overlay wins). */
export class OverlayWeights implements WeightSource {
  readonly overlay = new Map<string, Tensor>();
  constructor(readonly base: WeightSource) {}
  names(): string[] {
    return [...new Set([...this.base.names(), ...this.overlay.keys()])];
  }
  has(n: string): boolean {
    return this.overlay.has(n) || this.base.has(n);
  }
  shape(n: string): number[] {
    return this.overlay.get(n)?.shape ?? this.base.shape(n);
  }
  get(n: string): Float32Array {
    if (this.released.has(n)) {
      throw new PareError(
        "E_INTERNAL",
        `internal: ${n} was already written out and released`,
        "this is a bug in pare; please report it",
      );
    }
    return this.overlay.get(n)?.data ?? this.base.get(n);
  }
  /** names whose data was written out and dropped (their shapes stay known) */
  readonly released = new Set<string>();
  /** Drop the data of an overlay tensor (written to the output already); its shape stays. */
  release(n: string): void {
    const t = this.overlay.get(n);
    if (!t) return;
    this.overlay.set(n, { shape: t.shape, data: new Float32Array(0) });
    this.released.add(n);
  }
  set(n: string, t: Tensor): void {
    this.released.delete(n);
    const size = t.shape.reduce((a, b) => a * b, 1);
    if (size !== t.data.length) {
      throw new PareError(
        "E_TENSOR_SHAPE",
        `internal shape check failed for ${n}: [${t.shape}] vs ${t.data.length} values`,
        "this is a bug in pare; please report it",
      );
    }
    this.overlay.set(n, t);
  }
}

/** Query heads served by the kept KV groups (head h belongs to group ⌊h / (nHeads/nKv)⌋). */
export function keptHeads(keepGroups: Int32Array, nHeads: number, nKv: number): Int32Array {
  const g = nHeads / nKv;
  const out: number[] = [];
  for (const k of keepGroups) for (let j = 0; j < g; j++) out.push(k * g + j);
  return Int32Array.from(out);
}

/** Channel indices of whole blocks: block b covers [b·size, (b+1)·size). */
export function blockChannels(blocks: Int32Array, size: number): Int32Array {
  const out = new Int32Array(blocks.length * size);
  blocks.forEach((b, i) => {
    for (let j = 0; j < size; j++) out[i * size + j] = b * size + j;
  });
  return out;
}

function sliceRows(w: Float32Array, cols: number, rows: Int32Array): Float32Array {
  const out = new Float32Array(rows.length * cols);
  rows.forEach((r, i) => {
    out.set(w.subarray(r * cols, (r + 1) * cols), i * cols);
  });
  return out;
}

function sliceVec(b: Float32Array, idx: Int32Array): Float32Array {
  return Float32Array.from(idx, (i) => b[i]);
}

export interface LayerCut {
  /** kept KV groups (attention units); undefined = attention untouched */
  keepGroups?: Int32Array;
  attn?: ReconResult;
  /** kept FFN channels; undefined = MLP untouched */
  keepChannels?: Int32Array;
  mlp?: ReconResult;
}

/** Apply a cut to layer `i` of `model` (whose weights are an OverlayWeights); returns the new layer dims. */
export function cutLayer(model: Model, w: OverlayWeights, i: number, cut: LayerCut): LayerDims {
  const N = model.spec.names;
  const L = model.dims.layers[i];
  const D = model.dims.hidden;
  const hd = model.dims.headDim;
  const p = (t: string) => model.path(t, i);
  const rows = (mod: string, idx: Int32Array, hasBias: boolean) => {
    const name = `${p(mod)}.weight`;
    const [r, c] = w.shape(name);
    for (const k of idx)
      if (k < 0 || k >= r)
        throw new PareError(
          "E_TENSOR_SHAPE",
          `internal: row ${k} outside ${name} [${r}, ${c}]`,
          "this is a bug in pare; please report it",
        );
    w.set(name, { shape: [idx.length, c], data: sliceRows(w.get(name), c, idx) });
    if (hasBias)
      w.set(`${p(mod)}.bias`, { shape: [idx.length], data: sliceVec(w.get(`${p(mod)}.bias`), idx) });
  };
  const consumer = (mod: string, r: ReconResult, cols: number) => {
    if (r.W.length !== D * cols)
      throw new PareError(
        "E_TENSOR_SHAPE",
        `internal: reconstructed ${mod} has ${r.W.length} values, expected ${D}×${cols}`,
        "this is a bug in pare; please report it",
      );
    w.set(`${p(mod)}.weight`, { shape: [D, cols], data: r.W });
    if (r.b) w.set(`${p(mod)}.bias`, { shape: [D], data: r.b });
  };
  const next: LayerDims = { ...L, bias: { ...L.bias } };
  const { attn: ga, mlp: gm } = model.spec.groups;
  if (cut.keepGroups && cut.attn) {
    const heads = keptHeads(cut.keepGroups, L.nHeads, L.nKv);
    // producers lose the rows of removed units: per query head or per KV head
    for (const pr of ga.producers) {
      const units = pr.rows === "head" ? heads : cut.keepGroups;
      rows(N[pr.role]!, pr.rows === "channel" ? units : blockChannels(units, hd), L.bias[pr.role]);
    }
    consumer(N[ga.consumer]!, cut.attn, heads.length * hd);
    next.nHeads = heads.length;
    next.nKv = cut.keepGroups.length;
    next.bias[ga.consumer] = L.bias[ga.consumer] || cut.attn.b !== undefined;
  }
  if (cut.keepChannels && cut.mlp) {
    for (const pr of gm.producers) rows(N[pr.role]!, cut.keepChannels, L.bias[pr.role]);
    consumer(N[gm.consumer]!, cut.mlp, cut.keepChannels.length);
    next.ffn = cut.keepChannels.length;
    next.bias[gm.consumer] = L.bias[gm.consumer] || cut.mlp.b !== undefined;
  }
  return next;
}

/** A model view with new per-layer dims over the given weights. */
export function withLayers(model: Model, weights: WeightSource, layers: LayerDims[]): Model {
  return { ...model, weights, dims: { ...model.dims, layers } };
}

/**
 * The config.json of the pruned model. Uniform widths use the standard keys; otherwise
 * `pare_layer_widths` lists them per layer (read back by pare). Families whose stock
 * loaders state heads through `pruned_heads` (BERT) get that, in original head numbering.
 */
export function prunedConfig(
  model: Model,
  layers: LayerDims[],
  removedHeads: number[][],
  w: OverlayWeights,
  /** the layers before pruning (to tell which biases reconstruction created) */
  original: LayerDims[],
): { config: Record<string, unknown>; notes: string[] } {
  const c: Record<string, unknown> = structuredClone(model.config);
  const notes: string[] = [];
  const spec = model.spec;
  const same = <K extends keyof LayerDims>(k: K) => layers.every((l) => l[k] === layers[0][k]);
  const uniform = same("nHeads") && same("nKv") && same("ffn");
  if (spec.headsInConfig === "pruned_heads") {
    const prev = (model.config.pruned_heads as Record<string, number[]> | undefined) ?? {};
    const ph: Record<string, number[]> = {};
    const heads0 = model.config.num_attention_heads as number;
    layers.forEach((_, i) => {
      const before = new Set((prev[String(i)] ?? []).map(Number));
      // current head index → original index (original heads minus those pruned before, in order)
      const orig = Array.from({ length: heads0 }, (_, h) => h).filter((h) => !before.has(h));
      const all = [...before, ...removedHeads[i].map((h) => orig[h])].sort((a, b) => a - b);
      if (all.length) ph[String(i)] = all;
    });
    c.pruned_heads = ph;
    if (same("ffn")) c[spec.keys.ffn] = layers[0].ffn;
  } else {
    const K = spec.keys;
    c[K.headDim] = model.dims.headDim;
    c[K.heads] = Math.max(...layers.map((l) => l.nHeads));
    c[K.kvHeads] = Math.max(...layers.map((l) => l.nKv));
    c[K.ffn] = Math.max(...layers.map((l) => l.ffn));
  }
  if (spec.headsInConfig === "counts" && layers.some((l) => model.dims.hidden % l.nHeads !== 0)) {
    notes.push(
      `hidden_size ${model.dims.hidden} is not a multiple of the kept head count (${[...new Set(layers.map((l) => l.nHeads))].join(", ")}): pare, transformers.js and transformers 4.x read head_dim from config.json, but transformers 5.x refuses such a config; a ratio that keeps a divisor of hidden_size heads avoids this`,
    );
  }
  if (spec.headsInConfig === "pruned_heads" && removedHeads.some((r) => r.length > 0)) {
    notes.push(
      "removed heads are recorded in config.json's pruned_heads: transformers 4.x applies them when loading; transformers 5.x (checked: 5.17) no longer does and refuses the smaller attention tensors",
    );
  }
  if (uniform) {
    delete c.pare_layer_widths;
  } else {
    c.pare_layer_widths = layers.map((l) => ({
      num_attention_heads: l.nHeads,
      num_key_value_heads: l.nKv,
      intermediate_size: l.ffn,
    }));
    notes.push(
      "layer widths differ between layers: config.json lists them in pare_layer_widths (read by pare; stock Hugging Face loaders expect uniform widths — use --allocation uniform for a stock-loadable model)",
    );
  }
  notes.push(...declareCreatedBiases(c, model, layers, w, original));
  return { config: c, notes };
}

/**
 * Biases created by reconstruction: set the family's config flag and add zero biases where the flag implies
 * them (in `w`, and in `layers`' bias flags). `original`: the layers before (to tell which biases are new).
 * Returns notes for biases no config key can declare.
 */
export function declareCreatedBiases(
  c: Record<string, unknown>,
  model: Model,
  layers: LayerDims[],
  w: OverlayWeights,
  original: LayerDims[],
): string[] {
  const notes: string[] = [];
  const spec = model.spec;
  const flags = spec.biasFlags;
  for (const [which, consumerKey] of [
    ["attention", spec.groups.attn.consumer],
    ["mlp", spec.groups.mlp.consumer],
  ] as const) {
    const created = layers.some((l) => l.bias[consumerKey]) && !original.some((l) => l.bias[consumerKey]);
    if (!created) continue;
    const flag = flags?.[which];
    if (!flag) {
      notes.push(
        `reconstruction created ${consumerKey === "o" ? "attention output" : "FFN down"} projection biases, which ${spec.family}'s config cannot declare: pare reads them, stock loaders ignore them`,
      );
      continue;
    }
    c[flag.key] = true;
    layers.forEach((l, i) => {
      for (const m of flag.modules) {
        const t = model.spec.names[m as ModuleRole];
        if (!t) continue;
        const name = `${model.path(t, i)}.bias`;
        if (!w.has(name)) {
          const rows = w.shape(`${model.path(t, i)}.weight`)[0];
          w.set(name, { shape: [rows], data: new Float32Array(rows) });
          l.bias[m] = true;
        }
      }
    });
  }
  return notes;
}
