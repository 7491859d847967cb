/** Parameter counts per module, from weight shapes (docs/methods.md §0: ratios count attention+MLP). */
import { groupRoles } from "./groups.ts";
import type { Model } from "./model.ts";

export interface ParamCounts {
  attention: number;
  mlp: number;
  /** attention + mlp: what pruning ratios refer to */
  prunable: number;
  embedding: number;
  norms: number;
  head: number;
  total: number;
  perLayer: { attention: number; mlp: number }[];
}

function size(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function countParams(model: Model): ParamCounts {
  const ws = model.weights;
  const N = model.spec.names;
  const counted = new Set<string>();
  const mod = (path: string): number => {
    let n = 0;
    for (const suffix of [".weight", ".bias"]) {
      const name = path + suffix;
      if (ws.has(name) && !counted.has(name)) {
        counted.add(name);
        n += size(ws.shape(name));
      }
    }
    return n;
  };
  const perLayer: { attention: number; mlp: number }[] = [];
  let norms = 0;
  for (let i = 0; i < model.dims.nLayers; i++) {
    const p = (t: string) => model.path(t, i);
    const sum = (roles: string[]) => roles.reduce((s, r) => s + mod(p(r)), 0);
    const attention = sum(groupRoles(model.spec.groups.attn).map((r) => N[r]!));
    const mlp = sum(groupRoles(model.spec.groups.mlp).map((r) => N[r]!));
    norms += sum(
      [N.norm1, N.norm2, N.qNorm, N.kNorm, N.attnOutNorm, N.mlpOutNorm].filter((t) => t !== undefined),
    );
    perLayer.push({ attention, mlp });
  }
  if (N.finalNorm) norms += mod(model.path(N.finalNorm));
  if (N.embedNorm) norms += mod(model.path(N.embedNorm));
  let embedding = mod(model.path(N.embed));
  if (N.posEmbed) embedding += mod(model.path(N.posEmbed));
  if (N.typeEmbed) embedding += mod(model.path(N.typeEmbed));
  let total = 0;
  for (const n of ws.names()) total += size(ws.shape(n));
  const attention = perLayer.reduce((s, l) => s + l.attention, 0);
  const mlp = perLayer.reduce((s, l) => s + l.mlp, 0);
  const head = total - attention - mlp - embedding - norms;
  return { attention, mlp, prunable: attention + mlp, embedding, norms, head, total, perLayer };
}
