/**
 * Shapes of a layer's pruning groups, from the spec's data: how many rows a unit owns in each
 * producer and consumer, what a unit costs in parameters, and how large the layer's linear maps are.
 */
import type { LayerDims } from "./model.ts";
import type { ArchSpec, ModuleRole, PruneGroup, RowUnit } from "./spec.ts";

export type GroupName = "attn" | "mlp";

/** Rows (producer) or columns (consumer) that one unit of the group owns: a KV group's or a channel's. */
export function rowsPerUnit(r: RowUnit, L: LayerDims, headDim: number): number {
  return r === "head" ? (L.nHeads / L.nKv) * headDim : r === "kv" ? headDim : 1;
}

/** Rows of a whole producer (or columns of a consumer) in a layer of dims L. */
export function rowsOf(r: RowUnit, L: LayerDims, headDim: number): number {
  return r === "head" ? L.nHeads * headDim : r === "kv" ? L.nKv * headDim : L.ffn;
}

/** Every role of a group: its producers, then its consumer. */
export function groupRoles(g: PruneGroup): ModuleRole[] {
  return [...g.producers.map((p) => p.role), g.consumer];
}

/** Parameters one unit of the group carries (its producer rows with their biases, its consumer columns). */
export function unitCost(
  spec: ArchSpec,
  m: GroupName,
  L: LayerDims,
  hidden: number,
  headDim: number,
): number {
  const g = spec.groups[m];
  let cost = rowsPerUnit(g.consumerCols, L, headDim) * hidden;
  for (const p of g.producers) cost += rowsPerUnit(p.rows, L, headDim) * (hidden + (L.bias[p.role] ? 1 : 0));
  return cost;
}

/** Weight elements of the layer's prunable linear maps (producers and consumers of both groups). */
export function layerLinearElems(spec: ArchSpec, L: LayerDims, hidden: number, headDim: number): number {
  let n = 0;
  for (const g of [spec.groups.attn, spec.groups.mlp]) {
    for (const p of g.producers) n += rowsOf(p.rows, L, headDim) * hidden;
    n += rowsOf(g.consumerCols, L, headDim) * hidden;
  }
  return n;
}

/** Width of the consumer's input (the tap the group's statistics are taken on). */
export function consumerWidth(spec: ArchSpec, m: GroupName, L: LayerDims, headDim: number): number {
  return rowsOf(spec.groups[m].consumerCols, L, headDim);
}
