/**
 * A model = architecture spec + validated dimensions + a source of weights.
 * Dimensions come from config.json and are checked tensor by tensor against the
 * weights; per-layer widths (after pruning) come from the weight shapes.
 */
import { PareError } from "../errors.ts";
import { assertFinite } from "../io/safetensors.ts";
import { type ArchSpec, SPECS, supportedArchitectures } from "./spec.ts";

export interface WeightSource {
  names(): string[];
  has(name: string): boolean;
  shape(name: string): number[];
  get(name: string): Float32Array;
  /** E_NUMERIC unless every value is finite, without converting (sources that hold stored bytes) */
  checkFinite?(name: string): void;
}

export interface LayerDims {
  nHeads: number;
  nKv: number;
  ffn: number;
  bias: { q: boolean; k: boolean; v: boolean; o: boolean; gate: boolean; up: boolean; down: boolean };
}

export interface ModelDims {
  hidden: number;
  headDim: number;
  vocab: number;
  nLayers: number;
  maxPos: number;
  eps: number;
  ropeTheta: number;
  typeVocab: number;
  numLabels: number;
  head: "lm" | "classifier" | "none";
  tiedHead: boolean;
  layers: LayerDims[];
  /** attention window (Mistral `sliding_window`, Qwen2 with `use_sliding_window`): key j visible to query i iff i − j < window */
  slidingWindow?: number;
  ropeScaling?: RopeScaling;
}

export type RopeScaling =
  | { type: "linear"; factor: number }
  | { type: "llama3"; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMax: number };

const CONFIG_HINT = "fix config.json so that it matches the model's weights";

function ropeScaling(config: Record<string, unknown>): RopeScaling | undefined {
  const raw = config.rope_scaling;
  if (raw == null) return undefined;
  if (typeof raw !== "object" || Array.isArray(raw)) {
    throw new PareError(
      "E_CONFIG_INVALID",
      `config.json: "rope_scaling" must be null or an object (got ${JSON.stringify(raw)})`,
      CONFIG_HINT,
    );
  }
  const rs = raw as Record<string, unknown>;
  const type = String(rs.rope_type ?? rs.type ?? "default");
  if (type === "default") return undefined;
  /** a positive finite number (the key's default when absent) */
  const pos = (key: string, def: number, int = false): number => {
    const v = rs[key] ?? def;
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0 || v > 1e7 || (int && !Number.isInteger(v))) {
      throw new PareError(
        "E_CONFIG_INVALID",
        `config.json: rope_scaling.${key} must be a positive ${int ? "integer" : "number"} (got ${JSON.stringify(v)})`,
        CONFIG_HINT,
      );
    }
    return v;
  };
  if (type === "linear") return { type, factor: pos("factor", 1) };
  if (type === "llama3") {
    const r: RopeScaling = {
      type,
      factor: pos("factor", 1),
      lowFreqFactor: pos("low_freq_factor", 1),
      highFreqFactor: pos("high_freq_factor", 4),
      originalMax: pos("original_max_position_embeddings", 8192, true),
    };
    if (r.highFreqFactor <= r.lowFreqFactor) {
      throw new PareError(
        "E_CONFIG_INVALID",
        `config.json: rope_scaling.high_freq_factor (${r.highFreqFactor}) must exceed low_freq_factor (${r.lowFreqFactor})`,
        CONFIG_HINT,
      );
    }
    return r;
  }
  throw new PareError(
    "E_ARCH_UNSUPPORTED",
    `rope_scaling of type "${type}" is not supported`,
    "pare supports rope_scaling types default, linear and llama3; remove rope_scaling only if the model was trained without it",
  );
}

export interface Model {
  spec: ArchSpec;
  config: Record<string, unknown>;
  dims: ModelDims;
  weights: WeightSource;
  /** resolve a module path template of the spec (`{i}` = layer) to a tensor name prefix */
  path(template: string, layer?: number): string;
}

export function resolveSpec(config: Record<string, unknown>): {
  spec: ArchSpec;
  head: "lm" | "classifier" | "none";
} {
  const archs = Array.isArray(config.architectures) ? (config.architectures as unknown[]) : [];
  for (const a of archs) {
    for (const s of SPECS) {
      const head = s.architectures[String(a)];
      if (head) return { spec: s, head };
    }
  }
  const mt = String(config.model_type ?? "");
  if (archs.length === 0) {
    const s = SPECS.find((x) => x.modelTypes.includes(mt));
    if (s) return { spec: s, head: s.kind === "decoder" ? "lm" : "none" };
  }
  const custom = config.auto_map != null;
  throw new PareError(
    "E_ARCH_UNSUPPORTED",
    `unsupported architecture ${archs.length ? archs.map((a) => JSON.stringify(String(a))).join(", ") : `(model_type ${JSON.stringify(mt)})`}${custom ? " with custom code (auto_map)" : ""}`,
    `${custom ? "pare never runs code from a model folder (auto_map / *.py files are ignored); " : ""}pare supports: ${supportedArchitectures().join(", ")}`,
    { architectures: archs, model_type: mt },
  );
}

function num(
  config: Record<string, unknown>,
  key: string,
  opts: { min?: number; max?: number; int?: boolean; def?: number } = {},
): number {
  const v = config[key] ?? opts.def;
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new PareError(
      "E_CONFIG_INVALID",
      `config.json: "${key}" is missing or not a number (got ${v === undefined ? "nothing" : JSON.stringify(v)})`,
      "fix config.json so that it matches the model's weights",
    );
  }
  const int = opts.int ?? true;
  if ((int && !Number.isInteger(v)) || v < (opts.min ?? 1) || v > (opts.max ?? 1e7)) {
    throw new PareError(
      "E_CONFIG_INVALID",
      `config.json: "${key}" = ${v} is out of range`,
      "fix config.json so that it matches the model's weights",
    );
  }
  return v;
}

export function buildModel(config: Record<string, unknown>, weights: WeightSource): Model {
  const { spec, head: declaredHead } = resolveSpec(config);
  const hidden = num(config, "hidden_size", { max: 1 << 17 });
  const heads = num(config, "num_attention_heads", { max: 4096 });
  const nLayers = num(config, "num_hidden_layers", { max: 4096 });
  const vocab = num(config, "vocab_size", { max: 1 << 24 });
  const headDim = config.head_dim == null ? hidden / heads : num(config, "head_dim", { max: 1 << 14 });
  if (!Number.isInteger(headDim)) {
    throw new PareError(
      "E_CONFIG_INVALID",
      `config.json: num_attention_heads (${heads}) does not divide hidden_size (${hidden})`,
      "set head_dim explicitly or fix num_attention_heads",
    );
  }
  const kvHeads =
    spec.kind === "decoder" ? num(config, "num_key_value_heads", { max: 4096, def: heads }) : heads;
  if (heads % kvHeads !== 0) {
    throw new PareError(
      "E_CONFIG_INVALID",
      `config.json: num_key_value_heads (${kvHeads}) does not divide num_attention_heads (${heads})`,
      "fix num_key_value_heads in config.json",
    );
  }
  const ffnDefault = num(config, "intermediate_size", { max: 1 << 20 });
  const eps = num(config, spec.epsKey, { int: false, min: 0, max: 1, def: 1e-12 });
  const maxPos = num(config, "max_position_embeddings", { max: 1 << 22, def: 2048 });
  const ropeTheta = num(config, "rope_theta", { int: false, min: 1, max: 1e12, def: 10000 });
  const typeVocab = spec.names.typeEmbed ? num(config, "type_vocab_size", { min: 1, max: 1024, def: 2 }) : 0;

  const prefix = spec.prefixes.find((p) => weights.has(`${spec.names.embed.replace("{p}", p)}.weight`));
  if (prefix === undefined) {
    throw new PareError(
      "E_CONFIG_MISMATCH",
      `weights do not contain the embedding tensor ${spec.names.embed.replace("{p}", spec.prefixes[0])}.weight expected for a ${spec.family} model`,
      "check that config.json's architectures matches the checkpoint",
    );
  }
  const path = (t: string, i?: number) => t.replace("{p}", prefix).replace("{i}", String(i ?? ""));

  const plw = config.pare_layer_widths;
  if (plw != null && !Array.isArray(plw)) {
    throw new PareError(
      "E_CONFIG_INVALID",
      `config.json: pare_layer_widths must be a list (got ${JSON.stringify(plw)})`,
      "fix or remove pare_layer_widths",
    );
  }
  const perLayer = Array.isArray(plw) ? (plw as Record<string, number>[]) : null;
  if (perLayer && perLayer.length !== nLayers) {
    throw new PareError(
      "E_CONFIG_INVALID",
      `config.json: pare_layer_widths has ${perLayer.length} entries for ${nLayers} layers`,
      "fix or remove pare_layer_widths",
    );
  }
  perLayer?.forEach((w, i) => {
    const keys = ["num_attention_heads", "num_key_value_heads", "intermediate_size"];
    const ok =
      typeof w === "object" &&
      w !== null &&
      !Array.isArray(w) &&
      keys.every((k) => w[k] === undefined || (Number.isInteger(w[k]) && w[k] >= 0 && w[k] <= 1 << 20));
    if (!ok) {
      throw new PareError(
        "E_CONFIG_INVALID",
        `config.json: pare_layer_widths[${i}] must be an object of non-negative integers ${keys.join(" / ")} (got ${JSON.stringify(w)})`,
        "fix or remove pare_layer_widths",
      );
    }
  });
  const ph = config.pruned_heads;
  if (
    ph != null &&
    (typeof ph !== "object" ||
      Array.isArray(ph) ||
      !Object.entries(ph).every(
        ([k, v]) =>
          /^\d+$/.test(k) && Array.isArray(v) && v.every((h) => Number.isInteger(h) && h >= 0 && h < heads),
      ))
  ) {
    throw new PareError(
      "E_CONFIG_INVALID",
      `config.json: pruned_heads must map layer indices to lists of head indices below ${heads} (got ${JSON.stringify(ph)})`,
      "fix or remove pruned_heads",
    );
  }
  const sw = config.sliding_window;
  if (sw != null && !(typeof sw === "number" && Number.isInteger(sw) && sw >= 0)) {
    throw new PareError(
      "E_CONFIG_INVALID",
      `config.json: "sliding_window" must be null or a non-negative integer (got ${JSON.stringify(sw)})`,
      CONFIG_HINT,
    );
  }

  const expect = (name: string, shape: number[]) => {
    if (!weights.has(name)) {
      throw new PareError(
        "E_TENSOR_MISSING",
        `tensor ${name} is missing from the weights`,
        "the checkpoint is incomplete or config.json describes a different model",
        { tensor: name },
      );
    }
    const got = weights.shape(name);
    if (got.length !== shape.length || got.some((d, j) => d !== shape[j])) {
      throw new PareError(
        "E_CONFIG_MISMATCH",
        `tensor ${name} has shape [${got}] but config.json implies [${shape}]`,
        "config.json contradicts the weights; fix config.json or use the matching checkpoint",
        { tensor: name, shape: got, expected: shape },
      );
    }
  };
  const optBias = (mod: string, n: number): boolean => {
    const b = `${mod}.bias`;
    if (!weights.has(b)) return false;
    expect(b, [n]);
    return true;
  };

  const N = spec.names;
  // tensors of layers beyond num_hidden_layers: config.json describes fewer layers than the checkpoint holds
  const qTemplate = N.q.replace("{p}", prefix);
  const layerStem = qTemplate.slice(0, qTemplate.indexOf("{i}")).replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const layerRe = new RegExp(`^${layerStem}(\\d+)\\.`);
  for (const name of weights.names()) {
    const m = layerRe.exec(name);
    if (m && Number(m[1]) >= nLayers) {
      throw new PareError(
        "E_CONFIG_MISMATCH",
        `the weights hold tensors of layer ${m[1]} (e.g. ${name}) but config.json says num_hidden_layers = ${nLayers}`,
        "config.json contradicts the weights; fix num_hidden_layers or use the matching checkpoint",
        { tensor: name, layer: Number(m[1]) },
      );
    }
  }

  const layers: LayerDims[] = [];
  for (let i = 0; i < nLayers; i++) {
    const qName = `${path(N.q, i)}.weight`;
    const kName = `${path(N.k, i)}.weight`;
    const dName = `${path(N.down, i)}.weight`;
    for (const n of [qName, kName, dName])
      expect(n, weights.has(n) ? [weights.shape(n)[0], weights.shape(n)[1]] : [0, 0]);
    const qRows = weights.shape(qName)[0];
    const kRows = weights.shape(kName)[0];
    const ffn = weights.shape(dName)[1];
    if (qRows % headDim !== 0 || kRows % headDim !== 0) {
      throw new PareError(
        "E_CONFIG_MISMATCH",
        `layer ${i}: q/k projections have ${qRows}/${kRows} rows, not a multiple of head_dim ${headDim}`,
        "config.json's head_dim or num_attention_heads contradicts the weights",
      );
    }
    const nHeads = qRows / headDim;
    const nKv = kRows / headDim;
    const want = perLayer?.[i];
    const prunedHeads = (config.pruned_heads as Record<string, unknown[]> | undefined)?.[String(i)];
    const wantHeads =
      want?.num_attention_heads ?? heads - (Array.isArray(prunedHeads) ? new Set(prunedHeads).size : 0);
    const wantKv = want?.num_key_value_heads ?? (spec.kind === "decoder" ? kvHeads : wantHeads);
    const wantFfn = want?.intermediate_size ?? ffnDefault;
    if (nHeads !== wantHeads || nKv !== wantKv || ffn !== wantFfn) {
      throw new PareError(
        "E_CONFIG_MISMATCH",
        `layer ${i}: weights have ${nHeads} heads / ${nKv} kv heads / ${ffn} FFN channels, config.json says ${wantHeads} / ${wantKv} / ${wantFfn}`,
        "config.json contradicts the weights; fix config.json or use the matching checkpoint",
        { layer: i },
      );
    }
    if (nKv === 0 || nHeads % nKv !== 0) {
      throw new PareError(
        "E_CONFIG_MISMATCH",
        `layer ${i}: ${nKv} kv heads do not divide ${nHeads} query heads`,
        "the checkpoint's attention projections are inconsistent",
      );
    }
    expect(qName, [nHeads * headDim, hidden]);
    expect(kName, [nKv * headDim, hidden]);
    expect(`${path(N.v, i)}.weight`, [nKv * headDim, hidden]);
    expect(`${path(N.o, i)}.weight`, [hidden, nHeads * headDim]);
    expect(`${path(N.up, i)}.weight`, [ffn, hidden]);
    if (N.gate) expect(`${path(N.gate, i)}.weight`, [ffn, hidden]);
    expect(dName, [hidden, ffn]);
    expect(`${path(N.norm1, i)}.weight`, [hidden]);
    expect(`${path(N.norm2, i)}.weight`, [hidden]);
    if (spec.block.norm === "layer") {
      expect(`${path(N.norm1, i)}.bias`, [hidden]);
      expect(`${path(N.norm2, i)}.bias`, [hidden]);
    }
    layers.push({
      nHeads,
      nKv,
      ffn,
      bias: {
        q: optBias(path(N.q, i), nHeads * headDim),
        k: optBias(path(N.k, i), nKv * headDim),
        v: optBias(path(N.v, i), nKv * headDim),
        o: optBias(path(N.o, i), hidden),
        gate: N.gate ? optBias(path(N.gate, i), ffn) : false,
        up: optBias(path(N.up, i), ffn),
        down: optBias(path(N.down, i), hidden),
      },
    });
  }

  expect(`${path(N.embed)}.weight`, [vocab, hidden]);
  if (N.posEmbed) expect(`${path(N.posEmbed)}.weight`, [maxPos, hidden]);
  if (N.typeEmbed) expect(`${path(N.typeEmbed)}.weight`, [typeVocab, hidden]);
  if (N.embedNorm) {
    expect(`${path(N.embedNorm)}.weight`, [hidden]);
    expect(`${path(N.embedNorm)}.bias`, [hidden]);
  }
  if (N.finalNorm) expect(`${path(N.finalNorm)}.weight`, [hidden]);

  let head = declaredHead;
  let tiedHead = false;
  let numLabels = 0;
  if (head === "lm" && N.lmHead) {
    const lm = `${path(N.lmHead)}.weight`;
    if (weights.has(lm)) expect(lm, [vocab, hidden]);
    else tiedHead = true;
    if (config.tie_word_embeddings === false && tiedHead) {
      throw new PareError(
        "E_TENSOR_MISSING",
        `tensor ${lm} is missing and tie_word_embeddings is false`,
        "the checkpoint is incomplete",
      );
    }
  }
  if (head === "classifier" && N.classifier && N.pooler) {
    const c = `${path(N.classifier)}.weight`;
    if (!weights.has(c))
      throw new PareError("E_TENSOR_MISSING", `tensor ${c} is missing`, "the checkpoint is incomplete");
    numLabels = weights.shape(c)[0];
    if (!(numLabels >= 1)) {
      throw new PareError(
        "E_CONFIG_MISMATCH",
        `tensor ${c} has shape [${weights.shape(c)}]: a classifier needs at least one label`,
        "the checkpoint's classification head is broken",
        { tensor: c },
      );
    }
    expect(c, [numLabels, hidden]);
    expect(`${path(N.classifier)}.bias`, [numLabels]);
    expect(`${path(N.pooler)}.weight`, [hidden, hidden]);
    expect(`${path(N.pooler)}.bias`, [hidden]);
  }
  if (head === "none") head = "none";

  const useSw = config.use_sliding_window ?? spec.family !== "qwen2";
  const slidingWindow = typeof sw === "number" && sw > 0 && useSw !== false ? sw : undefined;
  return {
    spec,
    config,
    dims: {
      hidden,
      headDim,
      vocab,
      nLayers,
      maxPos,
      eps,
      ropeTheta,
      typeVocab,
      numLabels,
      head,
      tiedHead,
      layers,
      slidingWindow,
      ropeScaling: spec.block.positional === "rope" ? ropeScaling(config) : undefined,
    },
    weights,
    path,
  };
}

/** A weight source over an in-memory map (tests, pruned models). */
export class MapWeights implements WeightSource {
  constructor(readonly map: Map<string, { shape: number[]; data: Float32Array }>) {}
  names(): string[] {
    return [...this.map.keys()];
  }
  has(n: string): boolean {
    return this.map.has(n);
  }
  shape(n: string): number[] {
    const t = this.map.get(n);
    if (!t) throw new PareError("E_TENSOR_MISSING", `tensor ${n} is missing`, "the checkpoint is incomplete");
    return t.shape;
  }
  get(n: string): Float32Array {
    const t = this.map.get(n);
    if (!t) throw new PareError("E_TENSOR_MISSING", `tensor ${n} is missing`, "the checkpoint is incomplete");
    return t.data;
  }
}

/**
 * Throws E_NUMERIC (naming the tensor and its layer) when any weight of `model` is NaN or ±Inf. Weights read
 * from safetensors are already checked as they are read; this is for weights computed in memory (after
 * reconstruction, before writing) or when `names` (default: all) must be checked up front.
 */
export function checkFinite(model: Pick<Model, "weights">, names: string[] = model.weights.names()): void {
  const w = model.weights;
  for (const n of names) {
    if (w.checkFinite)
      w.checkFinite(n); // on the stored bytes, without converting (safetensors sources)
    else assertFinite(w.get(n), n);
  }
}
