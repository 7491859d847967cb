/**
 * A model = architecture spec + validated dimensions + a source of weights.
 * Dimensions come from config.json and are checked tensor by tensor against the
 * weights; per-layer widths (after pruning) come from the weight shapes.
 */
import { PareError } from "../errors.ts";
import { assertFinite } from "../io/safetensors.ts";
import { FusedView, viewPath } from "./fused.ts";
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
  /** attention window of the sliding layers: key j visible to query i iff i − j < window */
  slidingWindow?: number;
  /** per layer: full (causal) attention or the sliding window (set only where slidingWindow is) */
  layerTypes: ("full" | "sliding")[];
  ropeScaling?: RopeScaling;
  /** RoPE base of sliding layers when it differs from ropeTheta (no rope scaling there) */
  ropeLocalTheta?: number;
  /** dimensions of each head that RoPE rotates (head_dim unless partial) */
  rotaryDim: number;
  act: "silu" | "gelu" | "gelu_tanh";
  /** scale of q·kᵀ (head_dim^−½ unless the family sets it) */
  attnScale: number;
  attnSoftcap?: number;
  finalSoftcap?: number;
  /** embeddings are multiplied by this (√hidden for Gemma) */
  embedScale?: number;
}

export type RopeScaling =
  | { type: "linear"; factor: number }
  | { type: "llama3"; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMax: number };

const CONFIG_HINT = "fix config.json so that it matches the model's weights";

/**
 * RoPE settings: the classic keys (rope_theta, rope_scaling) or transformers 5's `rope_parameters`
 * (one object, or one per layer type: full_attention / sliding_attention).
 */
function ropeParameters(
  config: Record<string, unknown>,
  thetaKey: string,
): { theta: number; scaling: unknown; localTheta?: number; partial?: number } {
  const rp = config.rope_parameters;
  if (rp != null && typeof rp === "object" && !Array.isArray(rp)) {
    const r = rp as Record<string, unknown>;
    const byType = r.full_attention != null || r.sliding_attention != null;
    const global = (byType ? r.full_attention : r) as Record<string, unknown> | undefined;
    const local = (byType ? r.sliding_attention : undefined) as Record<string, unknown> | undefined;
    const theta = num(global ?? {}, "rope_theta", { int: false, min: 1, max: 1e12, def: 10000 });
    const localTheta = local
      ? num(local, "rope_theta", { int: false, min: 1, max: 1e12, def: 10000 })
      : undefined;
    const partial = global?.partial_rotary_factor;
    return { theta, scaling: global, localTheta, partial: typeof partial === "number" ? partial : undefined };
  }
  return {
    theta: num(config, thetaKey, { int: false, min: 1, max: 1e12, def: 10000 }),
    scaling: config.rope_scaling,
  };
}

function ropeScaling(raw: unknown): RopeScaling | undefined {
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

const ACTS: Record<string, ModelDims["act"]> = {
  silu: "silu",
  swish: "silu",
  gelu: "gelu",
  gelu_pytorch_tanh: "gelu_tanh",
  gelu_new: "gelu_tanh",
  gelu_fast: "gelu_tanh",
};

function activation(spec: ArchSpec, config: Record<string, unknown>): ModelDims["act"] {
  const key = spec.keys.act.find((k) => config[k] != null);
  if (!key) return spec.semantics.defaultAct;
  const a = ACTS[String(config[key])];
  if (!a) {
    throw new PareError(
      "E_ARCH_UNSUPPORTED",
      `config.json: ${key} ${JSON.stringify(config[key])} is not supported`,
      `pare supports the activations ${Object.keys(ACTS).join(", ")}`,
    );
  }
  return a;
}

/** Which layers slide (config.json's layer_types, else the family's rule); the window when any does. */
function windows(
  spec: ArchSpec,
  config: Record<string, unknown>,
  nLayers: number,
  window: number | undefined,
): ("full" | "sliding")[] {
  const rule = spec.semantics.window;
  const full = (): ("full" | "sliding")[] => new Array(nLayers).fill("full");
  if (rule.kind === "none" || !window) return full();
  const lt = config.layer_types;
  if (lt != null) {
    if (
      !Array.isArray(lt) ||
      lt.length !== nLayers ||
      !lt.every((t) => t === "sliding_attention" || t === "full_attention")
    ) {
      throw new PareError(
        "E_CONFIG_INVALID",
        `config.json: layer_types must list "sliding_attention" or "full_attention" for each of the ${nLayers} layers (got ${JSON.stringify(lt)})`,
        CONFIG_HINT,
      );
    }
    if (rule.kind === "from" && config[rule.enableKey] !== true) return full();
    return lt.map((t) => (t === "sliding_attention" ? "sliding" : "full"));
  }
  if (rule.kind === "all") {
    return config[rule.enableKey ?? "use_sliding_window"] === false
      ? full()
      : new Array(nLayers).fill("sliding");
  }
  if (rule.kind === "from") {
    if (config[rule.enableKey] !== true) return full();
    const from = num(config, rule.fromKey, { min: 0, max: 1 << 20, def: nLayers });
    return Array.from({ length: nLayers }, (_, i) => (i >= from ? "sliding" : "full"));
  }
  const period = rule.periodKey
    ? num(config, rule.periodKey, { min: 1, max: 1 << 20, def: rule.period })
    : rule.period;
  return Array.from({ length: nLayers }, (_, i) => ((i + 1) % period !== 0 ? "sliding" : "full"));
}

/** An optional positive number (absent or null: undefined). */
function optPositive(config: Record<string, unknown>, key: string | undefined): number | undefined {
  if (!key || config[key] == null) return undefined;
  return num(config, key, { int: false, min: Number.MIN_VALUE, max: 1e12 });
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

export function buildModel(stored: Record<string, unknown>, source: WeightSource): Model {
  const { spec, head: declaredHead } = resolveSpec(stored);
  // read with the family's defaults for omitted keys; `stored` is what the model carries (and writes)
  const config: Record<string, unknown> = { ...spec.configDefaults, ...stored };
  const K = spec.keys;
  const hidden = num(config, K.hidden, { max: 1 << 17 });
  const heads = num(config, K.heads, { max: 4096 });
  const nLayers = num(config, K.layers, { max: 4096 });
  const vocab = num(config, K.vocab, { max: 1 << 24 });
  const headDim = config[K.headDim] == null ? hidden / heads : num(config, K.headDim, { max: 1 << 14 });
  if (!Number.isInteger(headDim)) {
    throw new PareError(
      "E_CONFIG_INVALID",
      `config.json: ${K.heads} (${heads}) does not divide ${K.hidden} (${hidden})`,
      `set ${K.headDim} explicitly or fix ${K.heads}`,
    );
  }
  const kvHeads = spec.kind === "decoder" ? num(config, K.kvHeads, { max: 4096, def: heads }) : heads;
  if (heads % kvHeads !== 0) {
    throw new PareError(
      "E_CONFIG_INVALID",
      `config.json: ${K.kvHeads} (${kvHeads}) does not divide ${K.heads} (${heads})`,
      `fix ${K.kvHeads} in config.json`,
    );
  }
  const ffnDefault = num(config, K.ffn, { max: 1 << 20 });
  const eps = num(config, K.eps, { int: false, min: 0, max: 1, def: spec.epsDefault });
  const maxPos = num(config, K.maxPos, { max: 1 << 22, def: 2048 });
  const rope = ropeParameters(config, K.ropeTheta);
  const typeVocab = spec.names.typeEmbed ? num(config, "type_vocab_size", { min: 1, max: 1024, def: 2 }) : 0;

  const prefix = spec.prefixes.find((p) => source.has(`${spec.names.embed.replace("{p}", p)}.weight`));
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

  const widthsOf = (i: number) => {
    const w = perLayer?.[i];
    const prunedHeads = (config.pruned_heads as Record<string, unknown[]> | undefined)?.[String(i)];
    const h = w?.num_attention_heads ?? heads - (Array.isArray(prunedHeads) ? new Set(prunedHeads).size : 0);
    return {
      heads: h,
      kv: w?.num_key_value_heads ?? (spec.kind === "decoder" ? kvHeads : h),
      ffn: w?.intermediate_size ?? ffnDefault,
    };
  };
  // fused tensors (stored as such, not already viewed) are read through views of their parts
  const fusedStored =
    spec.fused.length > 0 &&
    !source.has(`${path(viewPath(spec.fused[0], spec.fused[0].parts[0].role), 0)}.weight`);
  const weights: WeightSource = fusedStored
    ? new FusedView(source, spec, nLayers, path, widthsOf, headDim)
    : source;

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
    const { heads: wantHeads, kv: wantKv, ffn: wantFfn } = widthsOf(i);
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
    for (const t of [N.attnOutNorm, N.mlpOutNorm]) if (t) expect(`${path(t, i)}.weight`, [hidden]);
    for (const t of [N.qNorm, N.kNorm]) if (t) expect(`${path(t, i)}.weight`, [headDim]);
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

  const layerTypes = windows(spec, config, nLayers, typeof sw === "number" && sw > 0 ? sw : undefined);
  const slidingWindow = layerTypes.includes("sliding") ? (sw as number) : undefined;
  const sem = spec.semantics;
  const partial = sem.partialRotaryKey ? (optPositive(config, sem.partialRotaryKey) ?? rope.partial ?? 1) : 1;
  // HF: rotary_ndims = int(head_dim · partial_rotary_factor)
  const rotaryDim = Math.floor(headDim * Math.min(1, partial));
  if (spec.block.positional === "rope" && (rotaryDim < 2 || rotaryDim % 2 !== 0)) {
    throw new PareError(
      "E_CONFIG_INVALID",
      `config.json: RoPE would rotate ${rotaryDim} of ${headDim} head dimensions; it needs an even number ≥ 2`,
      `fix ${sem.partialRotaryKey ?? K.headDim}`,
    );
  }
  const attnScalar = optPositive(config, sem.attnScaleKey);
  const localTheta = optPositive(config, sem.localRopeThetaKey) ?? rope.localTheta;
  return {
    spec,
    config: stored,
    dims: {
      hidden,
      headDim,
      vocab,
      nLayers,
      maxPos,
      eps,
      ropeTheta: rope.theta,
      typeVocab,
      numLabels,
      head,
      tiedHead,
      layers,
      slidingWindow,
      layerTypes,
      ropeScaling: spec.block.positional === "rope" ? ropeScaling(rope.scaling) : undefined,
      ropeLocalTheta: sem.localRopeThetaKey ? (localTheta ?? 10000) : undefined,
      rotaryDim,
      act: activation(spec, config),
      attnScale: 1 / Math.sqrt(attnScalar ?? headDim),
      attnSoftcap: optPositive(config, sem.attnSoftcapKey),
      finalSoftcap: optPositive(config, sem.finalSoftcapKey),
      embedScale: sem.embedScale ? Math.sqrt(hidden) : undefined,
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
