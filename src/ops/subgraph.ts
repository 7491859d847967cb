/**
 * Parts of an emitted graph. A `TracingBuilder` is a GraphBuilder that also records what is added to it
 * (nodes, inputs, initializers), so that a graph emitted once — e.g. a whole layer by `emitLayer` — can be
 * cut into smaller graphs: `extract` keeps only the nodes the wanted outputs depend on, and may start from
 * an inner value (fed as an input) instead of the original inputs. The kept nodes are the same nodes with
 * the same attributes, in the same order, so ONNX Runtime computes the same numbers as in the whole graph.
 */

import { type AttrValue, type Dim, GraphBuilder, type InitData } from "../onnx/graph.ts";
import type { ElemType } from "../onnx/proto.ts";

interface TracedNode {
  op: string;
  inputs: string[];
  outputs: string[];
  attrs: Record<string, AttrValue>;
  domain: string;
}

export class TracingBuilder extends GraphBuilder {
  readonly traced: TracedNode[] = [];
  readonly tracedInputs = new Map<string, { type: ElemType; shape: Dim[] }>();
  readonly tracedInits = new Map<string, { type: ElemType; dims: number[]; data: InitData }>();
  /** value → index of the node that produces it */
  private producer = new Map<string, number>();

  override input(name: string, type: ElemType, shape: Dim[]): string {
    this.tracedInputs.set(name, { type, shape });
    return super.input(name, type, shape);
  }

  override initializer(name: string, type: ElemType, dims: number[], data: InitData): string {
    this.tracedInits.set(name, { type, dims, data });
    return super.initializer(name, type, dims, data);
  }

  override op(
    op: string,
    inputs: string[],
    attrs: Record<string, AttrValue> = {},
    out?: string,
    domain = "",
  ): string {
    const o = super.op(op, inputs, attrs, out, domain);
    this.record({ op, inputs, outputs: [o], attrs, domain });
    return o;
  }

  override opN(op: string, inputs: string[], n: number, attrs: Record<string, AttrValue> = {}): string[] {
    const outs = super.opN(op, inputs, n, attrs);
    this.record({ op, inputs, outputs: outs, attrs, domain: "" });
    return outs;
  }

  override alias(value: string, name: string): string {
    const o = super.alias(value, name);
    this.record({ op: "Identity", inputs: [value], outputs: [o], attrs: {}, domain: "" });
    return o;
  }

  private record(n: TracedNode): void {
    for (const o of n.outputs) this.producer.set(o, this.traced.length);
    this.traced.push(n);
  }

  /** Indices of the nodes `values` depend on, stopping at `stops` (values given from outside). */
  ancestors(values: Iterable<string>, stops: ReadonlySet<string> = new Set()): Set<number> {
    const seen = new Set<number>();
    const todo = [...values];
    while (todo.length) {
      const v = todo.pop()!;
      if (stops.has(v)) continue;
      const p = this.producer.get(v);
      if (p === undefined || seen.has(p)) continue;
      seen.add(p);
      todo.push(...this.traced[p].inputs.filter((x) => x !== ""));
    }
    return seen;
  }

  /** Is `to` computed from `from` along a path that avoids `blocked`? */
  reaches(from: string, to: string, blocked: string): boolean {
    if (to === blocked) return false;
    const frontier = new Set([from]);
    for (const n of this.traced) {
      if (n.inputs.some((x) => frontier.has(x)))
        for (const o of n.outputs) if (o !== blocked) frontier.add(o);
    }
    return frontier.has(to);
  }

  /** Values computed from `from` (its descendants, `from` excluded). */
  descendants(from: string): Set<string> {
    const out = new Set<string>();
    const frontier = new Set([from]);
    for (const n of this.traced) {
      if (n.inputs.some((x) => frontier.has(x)))
        for (const o of n.outputs) {
          frontier.add(o);
          out.add(o);
        }
    }
    return out;
  }

  /** Every value that some node outputs, in node order. */
  values(): string[] {
    return this.traced.flatMap((n) => n.outputs);
  }
}

export interface Port {
  /** the value in the traced graph */
  value: string;
  /** its name in the extracted graph */
  name: string;
  type: ElemType;
  shape: Dim[];
}

/**
 * A new graph computing `outputs` from `inputs` (inner values of the traced graph fed from outside) and
 * whatever original inputs and initializers the kept nodes read. `substitute` replaces an original value
 * by another (e.g. a shape source by an input of the same shape). Returns the graph and the original input
 * names it reads.
 */
export function extract(
  t: TracingBuilder,
  name: string,
  inputs: Port[],
  outputs: Port[],
  substitute: ReadonlyMap<string, string> = new Map(),
): { graph: GraphBuilder; originalInputs: string[] } {
  const g = new GraphBuilder(name);
  const rename = new Map<string, string>();
  for (const p of inputs) rename.set(p.value, g.input(p.name, p.type, p.shape));
  const sub = (v: string) => substitute.get(v) ?? v;
  const stops = new Set(inputs.map((p) => p.value));
  // the kept nodes: what the outputs depend on, with substituted values followed instead
  const keep = new Set<number>();
  const todo = outputs.map((p) => p.value);
  const visited = new Set<string>();
  while (todo.length) {
    const v = sub(todo.pop()!);
    if (visited.has(v) || stops.has(v)) continue;
    visited.add(v);
    for (const n of t.ancestors([v], stops)) {
      if (keep.has(n)) continue;
      keep.add(n);
      for (const x of t.traced[n].inputs) if (substitute.has(x)) todo.push(x);
    }
  }
  const originalInputs: string[] = [];
  const resolve = (v: string): string => {
    if (v === "") return v;
    const s = sub(v);
    const r = rename.get(s);
    if (r !== undefined) return r;
    const input = t.tracedInputs.get(s);
    if (input) {
      rename.set(s, g.input(s, input.type, input.shape));
      originalInputs.push(s);
      return s;
    }
    const init = t.tracedInits.get(s);
    if (init) {
      rename.set(s, g.initializer(s, init.type, init.dims, init.data));
      return s;
    }
    throw new Error(`extract: ${s} is neither computed nor given`);
  };
  [...keep]
    .sort((a, b) => a - b)
    .forEach((idx) => {
      const n = t.traced[idx];
      const ins = n.inputs.map(resolve);
      // fresh names in the new graph (an original name could collide with one the builder generates)
      const outs =
        n.outputs.length === 1
          ? [g.op(n.op, ins, n.attrs, undefined, n.domain)]
          : g.opN(n.op, ins, n.outputs.length, n.attrs);
      n.outputs.forEach((o, k) => {
        rename.set(o, outs[k]);
      });
    });
  for (const p of outputs) g.output(g.alias(resolve(p.value), p.name), p.type, p.shape);
  return { graph: g, originalInputs };
}
