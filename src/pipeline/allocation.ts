/**
 * The allocate stage: which units each module keeps. `global` (FLAP's AL-AM) ranks every layer's units
 * together, so it needs all scores before the first layer is cut (from the unpruned model's statistics);
 * `uniform` keeps the same fraction in each module and decides per module when its statistics are ready
 * (under sequential calibration: on the partly pruned model).
 */
import { type Allocation, allocate, type ModuleUnits, topK, uniformCounts } from "../allocate/allocate.ts";
import type { Model } from "../arch/model.ts";
import type { TapStats } from "../calib/moments.ts";
import type { Criterion } from "../criteria/index.ts";
import { globalUnitScores, unitScores } from "./score.ts";
import type { Module } from "./types.ts";

/** Statistics of both consumer inputs of every layer (a dense pass). */
export type LayerStats = { attn?: TapStats; mlp?: TapStats }[];

const index = (i: number, m: Module) => 2 * i + (m === "attn" ? 0 : 1);

export class Selection {
  /** the unit scores each decision used, per (layer, module) */
  private readonly used = new Map<number, Float64Array>();
  private readonly counts: number[];

  private constructor(
    units: ModuleUnits[],
    private readonly criterion: Criterion,
    ratio: number,
    private readonly global?: Allocation,
  ) {
    this.counts = uniformCounts(units, ratio);
  }

  /** Global allocation: every module's standardized unit scores, ranked together now. */
  static global(model: Model, units: ModuleUnits[], criterion: Criterion, ratio: number, stats?: LayerStats) {
    const scores = units.map((u) =>
      globalUnitScores(model, u.layer, u.module, criterion, stats?.[u.layer][u.module]),
    );
    const sel = new Selection(
      units,
      criterion,
      ratio,
      allocate(units, scores, ratio, "global", { standardized: true }),
    );
    units.forEach((u, k) => {
      sel.used.set(index(u.layer, u.module), scores[k]);
    });
    return sel;
  }

  /** Uniform allocation: each module decides when `keep` is asked. */
  static uniform(units: ModuleUnits[], criterion: Criterion, ratio: number) {
    return new Selection(units, criterion, ratio);
  }

  /** The kept units (sorted) of module m of layer i; `stats` of its consumer input (uniform only). */
  keep(model: Model, i: number, m: Module, stats?: TapStats): Int32Array {
    const k = index(i, m);
    if (this.global) return this.global.keep[k];
    const sc = unitScores(model, i, m, this.criterion, stats);
    this.used.set(k, sc);
    return topK(sc, this.counts[k]);
  }

  /** The scores layer i's decisions used, 4 significant digits (for the report). */
  scores(i: number): { attn: number[]; mlp: number[] } {
    const round4 = (a?: Float64Array) => (a ? Array.from(a, (v) => Number(v.toPrecision(4))) : []);
    return { attn: round4(this.used.get(index(i, "attn"))), mlp: round4(this.used.get(index(i, "mlp"))) };
  }

  /** global allocation: the keep decisions are made; statistics are needed only for reconstruction */
  get isGlobal(): boolean {
    return this.global !== undefined;
  }
}
