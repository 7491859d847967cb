/**
 * Fused tensors as views. A family whose checkpoint stores several roles in one tensor (Phi-3's
 * qkv_proj = q | k | v rows, gate_up_proj = gate | up rows) declares it in its spec; FusedView
 * presents each part under its view name `<path>[<role>].weight` (a copy of its rows), so
 * everything downstream handles one tensor per role. `storedTensors` goes the other way when
 * writing: it concatenates the parts back into the family's own layout.
 */
import { PareError } from "../errors.ts";
import type { WeightSource } from "./model.ts";
import type { ArchSpec, FusedTensor, RowUnit } from "./spec.ts";

/** Unit counts of one layer: query heads, KV heads, FFN channels; and head_dim. */
export interface LayerWidths {
  heads: number;
  kv: number;
  ffn: number;
}

/** Rows a part of `unit` holds in a layer of these widths. */
export function unitRows(unit: RowUnit, w: LayerWidths, headDim: number): number {
  return unit === "head" ? w.heads * headDim : unit === "kv" ? w.kv * headDim : w.ffn;
}

interface Part {
  /** the stored tensor (`.weight` / `.bias`) */
  stored: string;
  /** first row and row count within it */
  start: number;
  rows: number;
}

const SUFFIXES = [".weight", ".bias"] as const;

/** `model.layers.{i}.self_attn.qkv_proj[q]` for role q of a fused tensor at `path`. */
export function viewPath(f: FusedTensor, role: string): string {
  return `${f.path}[${role}]`;
}

export class FusedView implements WeightSource {
  /** view name → its rows in a stored tensor */
  private readonly parts = new Map<string, Part>();
  /** stored fused tensor names (hidden behind their views) */
  private readonly hidden = new Set<string>();
  private readonly checked = new Set<string>();

  constructor(
    readonly base: WeightSource,
    spec: ArchSpec,
    nLayers: number,
    resolve: (template: string, layer: number) => string,
    widths: (layer: number) => LayerWidths,
    headDim: number,
  ) {
    for (let i = 0; i < nLayers; i++) {
      for (const f of spec.fused) {
        const stem = resolve(f.path, i);
        for (const suffix of SUFFIXES) {
          const stored = stem + suffix;
          if (!base.has(stored)) continue;
          const shape = base.shape(stored);
          const sizes = f.parts.map((p) => unitRows(p.rows, widths(i), headDim));
          const total = sizes.reduce((a, b) => a + b, 0);
          if (shape[0] !== total || (suffix === ".bias") !== (shape.length === 1)) {
            throw new PareError(
              "E_CONFIG_MISMATCH",
              `tensor ${stored} has shape [${shape}] but config.json implies ${total} rows (${f.parts
                .map((p, j) => `${p.role} ${sizes[j]}`)
                .join(" | ")})`,
              "config.json contradicts the weights; fix config.json or use the matching checkpoint",
              { tensor: stored, shape, expected: total },
            );
          }
          this.hidden.add(stored);
          let start = 0;
          f.parts.forEach((p, j) => {
            this.parts.set(resolve(viewPath(f, p.role), i) + suffix, { stored, start, rows: sizes[j] });
            start += sizes[j];
          });
        }
      }
    }
  }

  names(): string[] {
    return [...this.base.names().filter((n) => !this.hidden.has(n)), ...this.parts.keys()];
  }
  has(n: string): boolean {
    return this.parts.has(n) || (this.base.has(n) && !this.hidden.has(n));
  }
  shape(n: string): number[] {
    const p = this.parts.get(n);
    if (!p) return this.base.shape(n);
    const s = this.base.shape(p.stored);
    return s.length === 1 ? [p.rows] : [p.rows, s[1]];
  }
  get(n: string): Float32Array {
    const p = this.parts.get(n);
    if (!p) return this.base.get(n);
    const s = this.base.shape(p.stored);
    const cols = s.length === 1 ? 1 : s[1];
    // [rows, cols] block of the stored [Σ rows, cols] tensor (a copy: callers may keep or change it)
    return this.base.get(p.stored).slice(p.start * cols, (p.start + p.rows) * cols);
  }
  checkFinite(n: string): void {
    const name = this.parts.get(n)?.stored ?? n;
    if (this.checked.has(name)) return;
    this.base.checkFinite?.(name);
    this.checked.add(name);
  }
}

/** A tensor as it is stored: its name, shape, the view names it is made of, and its data. */
export interface StoredTensor {
  name: string;
  shape: number[];
  from: string[];
  read(): Float32Array;
}

/**
 * The stored tensors made of `names` (view names or plain names): plain names map to themselves,
 * the parts of a fused tensor are concatenated in the spec's order (all its parts must be among `names`).
 */
export function storedTensors(
  spec: ArchSpec,
  names: string[],
  w: Pick<WeightSource, "shape" | "get">,
): StoredTensor[] {
  const out: StoredTensor[] = [];
  const taken = new Set<string>();
  const present = new Set(names);
  for (const name of names) {
    if (taken.has(name)) continue;
    const m = /^(.*)\[([a-z]+)\](\.weight|\.bias)$/.exec(name);
    const f = m && spec.fused.find((x) => x.parts.some((p) => p.role === m[2]) && matches(x.path, m[1]));
    if (!m || !f) {
      out.push({ name, shape: w.shape(name), from: [name], read: () => w.get(name) });
      taken.add(name);
      continue;
    }
    const [, stem, , suffix] = m;
    const from = f.parts.map((p) => `${stem}[${p.role}]${suffix}`);
    const missing = from.filter((n) => !present.has(n));
    if (missing.length) {
      throw new PareError(
        "E_INTERNAL",
        `internal: ${stem}${suffix} cannot be written without ${missing.join(", ")}`,
        "this is a bug in pare; please report it",
      );
    }
    const shapes = from.map((n) => w.shape(n));
    const rows = shapes.reduce((s, sh) => s + sh[0], 0);
    const shape = shapes[0].length === 1 ? [rows] : [rows, shapes[0][1]];
    out.push({
      name: stem + suffix,
      shape,
      from,
      read: () => {
        const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
        let at = 0;
        for (const n of from) {
          const part = w.get(n);
          data.set(part, at);
          at += part.length;
        }
        return data;
      },
    });
    for (const n of from) taken.add(n);
  }
  return out;
}

/** Does a resolved stem (`model.layers.3.mlp.gate_up_proj`) come from the template (`…{i}…`)? */
function matches(template: string, stem: string): boolean {
  const re = new RegExp(
    `^${template
      .replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
      .replace("\\{i\\}", "\\d+")
      .replace("\\{p\\}", ".*")}$`,
  );
  return re.test(stem);
}
