/**
 * Depth surgery: a model with whole decoder blocks removed, as a view of the input — the kept layers
 * renumbered 0..n−1 (tensor names and every per-layer config entry), compensated tensors laid over them —
 * that the width pipeline and the writer read like any input model. Nothing is copied until it is written.
 */
import type { LayerDims, Model, WeightSource } from "../arch/model.ts";
import { buildModel } from "../arch/model.ts";
import { PareError } from "../errors.ts";
import { OverlayWeights } from "./surgery.ts";

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** The tensor-name prefix every layer template shares ("model.layers.") and a matcher for layer names. */
function layerPattern(model: Model): RegExp {
  const prefixes = new Set(
    Object.values(model.spec.names)
      .filter((t): t is string => typeof t === "string" && t.includes("{i}"))
      .map((t) => model.path(t.slice(0, t.indexOf("{i}")))),
  );
  if (prefixes.size !== 1)
    throw new PareError(
      "E_INTERNAL",
      `internal: ${model.spec.family}'s layer tensors do not share one prefix (${[...prefixes].join(", ")})`,
      "this is a bug in pare; please report it",
    );
  return new RegExp(`^${escapeRe([...prefixes][0])}(\\d+)\\.`);
}

/** The input's weights with layer `kept[j]` renamed to layer j and the removed layers hidden. */
export class RenumberedWeights implements WeightSource {
  private readonly toOld = new Map<string, string>();

  constructor(
    readonly base: WeightSource,
    pattern: RegExp,
    kept: number[],
  ) {
    const newIndex = new Map(kept.map((old, j) => [old, j]));
    for (const n of base.names()) {
      const m = pattern.exec(n);
      if (!m) {
        this.toOld.set(n, n);
        continue;
      }
      const j = newIndex.get(Number(m[1]));
      if (j === undefined) continue; // a removed layer
      const prefix = m[0].slice(0, m[0].length - m[1].length - 1);
      this.toOld.set(`${prefix}${j}.${n.slice(m[0].length)}`, n);
    }
  }
  private old(n: string): string {
    const o = this.toOld.get(n);
    if (o === undefined)
      throw new PareError(
        "E_INTERNAL",
        `internal: no tensor ${n} in the depth view`,
        "this is a bug in pare",
      );
    return o;
  }
  names(): string[] {
    return [...this.toOld.keys()];
  }
  has(n: string): boolean {
    return this.toOld.has(n);
  }
  shape(n: string): number[] {
    return this.base.shape(this.old(n));
  }
  get(n: string): Float32Array {
    return this.base.get(this.old(n));
  }
  checkFinite(n: string): void {
    this.base.checkFinite?.(this.old(n));
  }
}

/** config.json of the kept layers: the layer count, per-layer lists and the sliding-window pattern. */
export function depthConfig(model: Model, kept: number[]): Record<string, unknown> {
  const c: Record<string, unknown> = structuredClone(model.config);
  const nL = model.dims.nLayers;
  c[model.spec.keys.layers] = kept.length;
  // per-layer lists (layer_types, pare_layer_widths, …): the kept entries
  for (const [k, v] of Object.entries(c)) {
    if (Array.isArray(v) && v.length === nL && k !== "architectures") c[k] = kept.map((i) => v[i]);
  }
  const ph = c.pruned_heads as Record<string, number[]> | undefined;
  if (ph && typeof ph === "object") {
    const out: Record<string, number[]> = {};
    kept.forEach((old, j) => {
      if (ph[String(old)]) out[String(j)] = ph[String(old)];
    });
    c.pruned_heads = out;
  }
  // the window pattern of the kept layers: a family rule (every layer from max_window_layers on, every
  // k-th layer full) need not describe it any more, so sliding models list layer_types explicitly
  const types = model.dims.layerTypes;
  if (types.includes("sliding") && model.spec.semantics.window.kind !== "all") {
    c.layer_types = kept.map((i) => (types[i] === "sliding" ? "sliding_attention" : "full_attention"));
    const rule = model.spec.semantics.window;
    if (rule.kind === "from" && typeof c[rule.fromKey] === "number") {
      const from = c[rule.fromKey] as number;
      c[rule.fromKey] = kept.filter((i) => i < from).length;
    }
  }
  return c;
}

/** A model with the layers `kept` (original indices, ascending) and `overlay` tensors (new names) over them. */
export function depthView(
  input: Model,
  kept: number[],
  overlay: OverlayWeights,
  config = depthConfig(input, kept),
): Model {
  return buildModel(config, overlay);
}

/** The overlay over the renumbered weights into which compensation writes. */
export function depthOverlay(input: Model, kept: number[]): OverlayWeights {
  return new OverlayWeights(new RenumberedWeights(input.weights, layerPattern(input), kept));
}

/** The original layer dims of the kept layers (to tell which biases compensation created). */
export function keptDims(input: Model, kept: number[]): LayerDims[] {
  return kept.map((i) => ({ ...input.dims.layers[i], bias: { ...input.dims.layers[i].bias } }));
}
