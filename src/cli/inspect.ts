import { type InspectResult, inspect } from "../api/inspect.ts";
import type { Console } from "./io.ts";

export async function inspectCommand(dir: string, con: Console): Promise<void> {
  const r = inspect(dir);
  con.result(r as unknown as Record<string, unknown>, () => describe(r));
}

function describe(r: InspectResult): string {
  const f = (n: number) => n.toLocaleString("en-US");
  const p = r.params;
  const s = r.semantics;
  const lines = [
    `${r.dir}`,
    `  family        ${r.family} (${r.architecture}, ${r.kind}${r.head !== "none" ? `, ${r.head} head` : ""})`,
    `  layers        ${r.layers}   hidden ${r.hidden}   head_dim ${r.headDim}   vocab ${r.vocab}   max positions ${r.maxPositions}`,
  ];
  if (r.uniformWidths) {
    const l = r.perLayer[0];
    lines.push(
      `  attention     ${l.heads} heads, ${l.kvHeads} KV heads (${l.kvGroups} groups of ${l.heads / l.kvHeads})`,
    );
    lines.push(`  FFN width     ${l.ffn}`);
  } else {
    lines.push("  per layer     heads / kv heads / FFN width:");
    for (const l of r.perLayer)
      lines.push(`    layer ${String(l.layer).padStart(2)}  ${l.heads} / ${l.kvHeads} / ${l.ffn}`);
  }
  const sem: string[] = [`activation ${s.activation}`];
  if (s.slidingWindow && s.slidingLayers)
    sem.push(
      `sliding window ${s.slidingWindow} on ${s.slidingLayers.length === r.layers ? "every layer" : `layers ${s.slidingLayers.join(", ")}`}`,
    );
  if (s.rotaryDim) sem.push(`RoPE on ${s.rotaryDim} of ${r.headDim} dims`);
  if (s.ropeLocalTheta !== undefined)
    sem.push(`RoPE base ${s.ropeTheta} (global) / ${s.ropeLocalTheta} (sliding)`);
  const rs = s.ropeScaling as { type: string; factor: number } | undefined;
  if (rs) sem.push(`rope_scaling ${rs.type} ×${rs.factor}`);
  if (s.qkNorm) sem.push("q/k norms");
  if (s.normWeightOffset) sem.push("norms x̂·(1 + w)");
  if (s.embeddingScale) sem.push("embeddings × √hidden");
  if (Math.abs(s.attentionScale * Math.sqrt(r.headDim) - 1) > 1e-12)
    sem.push(`attention scale ${s.attentionScale.toPrecision(4)}`);
  if (s.attentionSoftcap) sem.push(`attention soft-cap ${s.attentionSoftcap}`);
  if (s.finalSoftcap) sem.push(`final soft-cap ${s.finalSoftcap}`);
  if (s.fused) sem.push(`fused ${s.fused.join(", ")}`);
  lines.push(`  semantics     ${sem.join("; ")}`);
  lines.push(
    `  weights       ${r.dtypes.join(", ")}${r.tiedEmbeddings ? "   (tied input/output embeddings)" : ""}`,
    `  tokenizer     ${r.tokenizer ? "tokenizer.json" : "missing (eval on text and prune need tokenizer.json)"}`,
    "  parameters",
    `    attention   ${f(p.attention).padStart(14)}`,
    `    MLP         ${f(p.mlp).padStart(14)}`,
    `    embeddings  ${f(p.embedding).padStart(14)}`,
    `    norms       ${f(p.norms).padStart(14)}`,
    `    head        ${f(p.head).padStart(14)}`,
    `    total       ${f(p.total).padStart(14)}   (attention+MLP, what pruning ratios count: ${f(p.prunable)})`,
  );
  return lines.join("\n");
}
