/** `inspect`: what a model folder holds — family, widths per layer, semantics, parameters per module. */
import { loadModel } from "../arch/load.ts";
import { countParams, type ParamCounts } from "../arch/params.ts";

export interface InspectLayer {
  layer: number;
  heads: number;
  kvHeads: number;
  kvGroups: number;
  ffn: number;
  attentionParams: number;
  mlpParams: number;
}

export interface InspectResult {
  dir: string;
  family: string;
  architecture: string;
  kind: "decoder" | "encoder";
  head: "lm" | "classifier" | "none";
  layers: number;
  hidden: number;
  headDim: number;
  vocab: number;
  maxPositions: number;
  numLabels?: number;
  tiedEmbeddings: boolean;
  uniformWidths: boolean;
  dtypes: string[];
  tokenizer: boolean;
  /** the family's semantics as this config sets them (what the forward applies) */
  semantics: {
    activation: string;
    slidingWindow?: number;
    slidingLayers?: number[];
    ropeTheta?: number;
    ropeLocalTheta?: number;
    ropeScaling?: unknown;
    rotaryDim?: number;
    attentionScale: number;
    attentionSoftcap?: number;
    finalSoftcap?: number;
    embeddingScale?: number;
    normWeightOffset?: number;
    qkNorm?: boolean;
    fused?: string[];
  };
  params: Omit<ParamCounts, "perLayer">;
  perLayer: InspectLayer[];
}

/** Read a model folder (or a Hugging Face cache id) and describe it; nothing is kept open. */
export function inspect(dir: string): InspectResult {
  const m = loadModel(dir);
  try {
    const d = m.dims;
    const { perLayer: per, ...params } = countParams(m);
    const layers = d.layers.map((l, i) => ({
      layer: i,
      heads: l.nHeads,
      kvHeads: l.nKv,
      kvGroups: l.nKv,
      ffn: l.ffn,
      attentionParams: per[i].attention,
      mlpParams: per[i].mlp,
    }));
    const uniform = layers.every(
      (l) => l.heads === layers[0].heads && l.kvHeads === layers[0].kvHeads && l.ffn === layers[0].ffn,
    );
    const sliding = d.layerTypes.flatMap((t, i) => (t === "sliding" ? [i] : []));
    const rope = m.spec.block.positional === "rope";
    return {
      dir: m.dir,
      family: m.spec.family,
      architecture: String((m.config.architectures as string[] | undefined)?.[0] ?? m.config.model_type),
      kind: m.spec.kind,
      head: d.head,
      layers: d.nLayers,
      hidden: d.hidden,
      headDim: d.headDim,
      vocab: d.vocab,
      maxPositions: d.maxPos,
      numLabels: d.numLabels || undefined,
      tiedEmbeddings: d.tiedHead,
      uniformWidths: uniform,
      dtypes: m.dtypes,
      tokenizer: m.hasTokenizer,
      semantics: {
        activation: d.act,
        slidingWindow: d.slidingWindow,
        slidingLayers: d.slidingWindow ? sliding : undefined,
        ropeTheta: rope ? d.ropeTheta : undefined,
        ropeLocalTheta: d.ropeLocalTheta,
        ropeScaling: d.ropeScaling,
        rotaryDim: rope && d.rotaryDim !== d.headDim ? d.rotaryDim : undefined,
        attentionScale: d.attnScale,
        attentionSoftcap: d.attnSoftcap,
        finalSoftcap: d.finalSoftcap,
        embeddingScale: d.embedScale,
        normWeightOffset: m.spec.block.normOffset || undefined,
        qkNorm: m.spec.names.qNorm ? true : undefined,
        fused: m.spec.fused.length ? m.spec.fused.map((f) => f.path.split(".").pop() as string) : undefined,
      },
      params,
      perLayer: layers,
    };
  } finally {
    m.close();
  }
}
