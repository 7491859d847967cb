import { loadModel } from "../arch/load.ts";
import { countParams } from "../arch/params.ts";
import type { Console } from "./io.ts";

export async function inspectCommand(dir: string, con: Console): Promise<void> {
  const m = loadModel(dir);
  try {
    const d = m.dims;
    const p = countParams(m);
    const dtypes = m.dtypes;
    const layers = d.layers.map((l, i) => ({
      layer: i,
      heads: l.nHeads,
      kvHeads: l.nKv,
      kvGroups: l.nKv,
      ffn: l.ffn,
      attentionParams: p.perLayer[i].attention,
      mlpParams: p.perLayer[i].mlp,
    }));
    const uniform = layers.every(
      (l) => l.heads === layers[0].heads && l.kvHeads === layers[0].kvHeads && l.ffn === layers[0].ffn,
    );
    const sliding = d.layerTypes.flatMap((t, i) => (t === "sliding" ? [i] : []));
    // the family's semantics as this config sets them (what the forward applies)
    const semantics = {
      activation: d.act,
      slidingWindow: d.slidingWindow,
      slidingLayers: d.slidingWindow ? sliding : undefined,
      ropeTheta: m.spec.block.positional === "rope" ? d.ropeTheta : undefined,
      ropeLocalTheta: d.ropeLocalTheta,
      ropeScaling: d.ropeScaling,
      rotaryDim: m.spec.block.positional === "rope" && d.rotaryDim !== d.headDim ? d.rotaryDim : undefined,
      attentionScale: d.attnScale,
      attentionSoftcap: d.attnSoftcap,
      finalSoftcap: d.finalSoftcap,
      embeddingScale: d.embedScale,
      normWeightOffset: m.spec.block.normOffset || undefined,
      qkNorm: m.spec.names.qNorm ? true : undefined,
      fused: m.spec.fused.length ? m.spec.fused.map((f) => f.path.split(".").pop()) : undefined,
    };
    const summary = {
      dir: m.dir,
      family: m.spec.family,
      architecture: (m.config.architectures as string[] | undefined)?.[0] ?? m.config.model_type,
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
      dtypes,
      tokenizer: m.hasTokenizer,
      semantics,
      params: { ...p, perLayer: undefined },
      perLayer: layers,
    };
    con.result(summary, () => {
      const f = (n: number) => n.toLocaleString("en-US");
      const lines = [
        `${m.dir}`,
        `  family        ${m.spec.family} (${summary.architecture}, ${m.spec.kind}${d.head !== "none" ? `, ${d.head} head` : ""})`,
        `  layers        ${d.nLayers}   hidden ${d.hidden}   head_dim ${d.headDim}   vocab ${d.vocab}   max positions ${d.maxPos}`,
      ];
      if (uniform) {
        const l = layers[0];
        lines.push(
          `  attention     ${l.heads} heads, ${l.kvHeads} KV heads (${l.kvGroups} groups of ${l.heads / l.kvHeads})`,
        );
        lines.push(`  FFN width     ${l.ffn}`);
      } else {
        lines.push("  per layer     heads / kv heads / FFN width:");
        for (const l of layers)
          lines.push(`    layer ${String(l.layer).padStart(2)}  ${l.heads} / ${l.kvHeads} / ${l.ffn}`);
      }
      const sem: string[] = [`activation ${d.act}`];
      if (d.slidingWindow)
        sem.push(
          `sliding window ${d.slidingWindow} on ${sliding.length === d.nLayers ? "every layer" : `layers ${sliding.join(", ")}`}`,
        );
      if (semantics.rotaryDim) sem.push(`RoPE on ${d.rotaryDim} of ${d.headDim} dims`);
      if (d.ropeLocalTheta !== undefined)
        sem.push(`RoPE base ${d.ropeTheta} (global) / ${d.ropeLocalTheta} (sliding)`);
      if (d.ropeScaling) sem.push(`rope_scaling ${d.ropeScaling.type} ×${d.ropeScaling.factor}`);
      if (semantics.qkNorm) sem.push("q/k norms");
      if (m.spec.block.normOffset) sem.push("norms x̂·(1 + w)");
      if (d.embedScale) sem.push("embeddings × √hidden");
      if (Math.abs(d.attnScale * Math.sqrt(d.headDim) - 1) > 1e-12)
        sem.push(`attention scale ${d.attnScale.toPrecision(4)}`);
      if (d.attnSoftcap) sem.push(`attention soft-cap ${d.attnSoftcap}`);
      if (d.finalSoftcap) sem.push(`final soft-cap ${d.finalSoftcap}`);
      if (semantics.fused) sem.push(`fused ${semantics.fused.join(", ")}`);
      lines.push(`  semantics     ${sem.join("; ")}`);
      lines.push(
        `  weights       ${dtypes.join(", ")}${d.tiedHead ? "   (tied input/output embeddings)" : ""}`,
        `  tokenizer     ${m.hasTokenizer ? "tokenizer.json" : "missing (eval on text and prune need tokenizer.json)"}`,
        "  parameters",
        `    attention   ${f(p.attention).padStart(14)}`,
        `    MLP         ${f(p.mlp).padStart(14)}`,
        `    embeddings  ${f(p.embedding).padStart(14)}`,
        `    norms       ${f(p.norms).padStart(14)}`,
        `    head        ${f(p.head).padStart(14)}`,
        `    total       ${f(p.total).padStart(14)}   (attention+MLP, what pruning ratios count: ${f(p.prunable)})`,
      );
      return lines.join("\n");
    });
  } finally {
    m.close();
  }
}
