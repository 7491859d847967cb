/**
 * A self-contained HTML report of a prune (inline SVG, no network): kept heads and channels per
 * layer, unit-score distributions per layer (kept vs removed), dense vs pruned metrics, latency
 * and the recipe. Pure: data in, HTML string out.
 */
import type { SpeedReport } from "../eval/latency.ts";
import type { PruneReport } from "./prune.ts";

export interface ReportData {
  pruning: PruneReport;
  /** e.g. { "WikiText-2 PPL (L=256)": [dense, pruned] } */
  metrics?: { name: string; dense: number; pruned: number; protocol?: string; lowerIsBetter?: boolean }[];
  speed?: SpeedReport;
}

const esc = (s: unknown) =>
  String(s).replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!,
  );
const fmtN = (n: number) => n.toLocaleString("en-US");
const C = { dense: "#b8c4d6", kept: "#2f6fdf", removed: "#d9d9d9", axis: "#555", grid: "#eee" };

/** Grouped bars per layer: before (light) and after (strong). */
function barsChart(id: string, title: string, before: number[], after: number[], unit: string): string {
  const W = 560;
  const H = 220;
  const pad = { l: 48, r: 12, t: 28, b: 34 };
  const n = before.length;
  const max = Math.max(1, ...before);
  const bw = (W - pad.l - pad.r) / n;
  const y = (v: number) => H - pad.b - ((H - pad.t - pad.b) * v) / max;
  let g = "";
  for (let k = 0; k <= 4; k++) {
    const v = (max * k) / 4;
    g += `<line x1="${pad.l}" x2="${W - pad.r}" y1="${y(v)}" y2="${y(v)}" stroke="${C.grid}"/><text x="${pad.l - 6}" y="${y(v) + 4}" text-anchor="end" font-size="10" fill="${C.axis}">${Math.round(v)}</text>`;
  }
  before.forEach((b, i) => {
    const x = pad.l + i * bw;
    const a = after[i];
    g += `<rect class="bar before" data-layer="${i}" data-value="${b}" x="${x + bw * 0.12}" y="${y(b)}" width="${bw * 0.36}" height="${y(0) - y(b)}" fill="${C.dense}"><title>layer ${i}: ${b} ${unit} before</title></rect>`;
    g += `<rect class="bar after" data-layer="${i}" data-value="${a}" x="${x + bw * 0.52}" y="${y(a)}" width="${bw * 0.36}" height="${y(0) - y(a)}" fill="${C.kept}"><title>layer ${i}: ${a} ${unit} kept</title></rect>`;
    if (n <= 40 || i % Math.ceil(n / 40) === 0)
      g += `<text x="${x + bw / 2}" y="${H - pad.b + 14}" text-anchor="middle" font-size="10" fill="${C.axis}">${i}</text>`;
  });
  g += `<text x="${W / 2}" y="${H - 4}" text-anchor="middle" font-size="11" fill="${C.axis}">layer</text>`;
  g += `<rect x="${W - 170}" y="6" width="10" height="10" fill="${C.dense}"/><text x="${W - 156}" y="15" font-size="11">before</text><rect x="${W - 100}" y="6" width="10" height="10" fill="${C.kept}"/><text x="${W - 86}" y="15" font-size="11">kept</text>`;
  return `<figure><figcaption>${esc(title)}</figcaption><svg id="${id}" class="chart" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)}">${g}</svg></figure>`;
}

/** Histogram of one layer-module's unit scores, stacked kept / removed. */
function histogram(id: string, title: string, scores: number[], kept: Set<number>): string {
  const W = 260;
  const H = 120;
  const pad = { l: 6, r: 6, t: 18, b: 16 };
  if (scores.length === 0) return "";
  // range: min … 99th percentile (heavy tails go into the last bin, whose label says so)
  const sorted = [...scores].sort((a, b) => a - b);
  const lo = sorted[0];
  const top = sorted[sorted.length - 1];
  const hi = sorted.length > 50 ? sorted[Math.floor(0.99 * (sorted.length - 1))] : top;
  const bins = Math.min(24, Math.max(4, Math.ceil(Math.sqrt(scores.length))));
  const k = new Array<number>(bins).fill(0);
  const r = new Array<number>(bins).fill(0);
  scores.forEach((s, i) => {
    const b = hi > lo ? Math.min(bins - 1, Math.floor(((Math.min(s, hi) - lo) / (hi - lo)) * bins)) : 0;
    if (kept.has(i)) k[b]++;
    else r[b]++;
  });
  const max = Math.max(1, ...k.map((v, i) => v + r[i]));
  const bw = (W - pad.l - pad.r) / bins;
  const h = (v: number) => ((H - pad.t - pad.b) * v) / max;
  let g = "";
  for (let b = 0; b < bins; b++) {
    const x = pad.l + b * bw;
    const yk = H - pad.b - h(k[b]);
    g += `<rect class="hist kept" data-count="${k[b]}" x="${x}" y="${yk}" width="${bw - 1}" height="${h(k[b])}" fill="${C.kept}"/>`;
    g += `<rect class="hist removed" data-count="${r[b]}" x="${x}" y="${yk - h(r[b])}" width="${bw - 1}" height="${h(r[b])}" fill="${C.removed}"/>`;
  }
  g += `<text x="${pad.l}" y="${H - 3}" font-size="9" fill="${C.axis}">${lo.toPrecision(3)}</text><text x="${W - pad.r}" y="${H - 3}" font-size="9" text-anchor="end" fill="${C.axis}">${hi.toPrecision(3)}${top > hi ? ` (max ${top.toPrecision(3)})` : ""}</text>`;
  return `<figure class="small"><figcaption>${esc(title)}</figcaption><svg id="${id}" class="chart" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}">${g}</svg></figure>`;
}

export function renderReport(d: ReportData): string {
  const p = d.pruning;
  const r = p.recipe;
  const L = p.layers;
  const card = (k: string, v: string) =>
    `<div class="card"><div class="k">${esc(k)}</div><div class="v">${v}</div></div>`;
  const cards = [
    card("attention+MLP parameters", `${fmtN(p.params.before.prunable)} → ${fmtN(p.params.after.prunable)}`),
    card("total parameters", `${fmtN(p.params.before.total)} → ${fmtN(p.params.after.total)}`),
    card("ratio", `requested ${r.ratio}, achieved ${p.achievedRatio.toFixed(4)}`),
    card("method", esc(`${r.criterion} · ${r.allocation} · ${r.reconstruct} · ${r.calibration}`)),
    card(
      "prune time",
      `${(p.timings.total ?? Object.values(p.timings).reduce((a, b) => a + b, 0)).toFixed(1)} s`,
    ),
  ].join("");
  let metrics = "";
  if (d.metrics?.length) {
    metrics = `<h2>Dense vs pruned</h2><table id="metrics"><tr><th>metric</th><th>dense</th><th>pruned</th><th>change</th><th>protocol</th></tr>${d.metrics
      .map(
        (m) =>
          `<tr><td>${esc(m.name)}</td><td>${m.dense.toPrecision(5)}</td><td>${m.pruned.toPrecision(5)}</td><td>${(((m.pruned - m.dense) / m.dense) * 100).toFixed(2)}%</td><td>${esc(m.protocol ?? "")}</td></tr>`,
      )
      .join("")}</table>`;
  }
  let speed = "";
  if (d.speed) {
    const s = d.speed;
    speed = `<h2>Speed (ONNX Runtime, median of ${s.runs} interleaved runs)</h2><table id="speed"><tr><th>case</th>${s.models.map((_, i) => `<th>${i === 0 ? "dense" : "pruned"} ms</th>`).join("")}<th>speedup</th><th>FLOP reduction</th></tr>${s.cases
      .map(
        (c) =>
          `<tr><td>${esc(c.name)}</td>${c.seconds.map((x) => `<td>${(1000 * x).toFixed(1)}</td>`).join("")}<td>${(c.seconds[0] / c.seconds[c.seconds.length - 1]).toFixed(2)}×</td><td>${(s.models[0].flopsPerToken / s.models[s.models.length - 1].flopsPerToken).toFixed(2)}×</td></tr>`,
      )
      .join("")}</table>`;
  }
  const charts =
    barsChart(
      "chart-heads",
      "Attention heads per layer",
      L.map((l) => l.heads[0]),
      L.map((l) => l.heads[1]),
      "heads",
    ) +
    barsChart(
      "chart-ffn",
      "FFN channels per layer",
      L.map((l) => l.ffn[0]),
      L.map((l) => l.ffn[1]),
      "channels",
    );
  const hists = L.filter((l) => l.scores)
    .map(
      (l) =>
        histogram(
          `hist-attn-${l.layer}`,
          `layer ${l.layer} · KV-group scores`,
          l.scores!.attn,
          new Set(l.keptKvGroups),
        ) +
        histogram(
          `hist-mlp-${l.layer}`,
          `layer ${l.layer} · FFN channel scores`,
          l.scores!.mlp,
          new Set(l.keptChannels),
        ),
    )
    .join("");
  const recipeRows = Object.entries(r)
    .map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(Array.isArray(v) ? v.join(", ") : v)}</td></tr>`)
    .join("");
  const notes = p.notes.length
    ? `<h2>Notes</h2><ul>${p.notes.map((n) => `<li>${esc(n)}</li>`).join("")}</ul>`
    : "";
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pare report — ${esc(p.input.dir)}</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:24px auto;max-width:1180px;color:#222;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666}.cards{display:flex;flex-wrap:wrap;gap:10px;margin:16px 0}.card{border:1px solid #ddd;border-radius:8px;padding:8px 12px;min-width:190px}
.k{color:#666;font-size:12px}.v{font-size:15px;font-weight:600}figure{display:inline-block;margin:6px 12px 6px 0}figcaption{font-size:12px;color:#444}
.small figcaption{font-size:11px}table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;font-size:13px}
</style></head><body>
<h1>pare pruning report</h1>
<div class="sub">${esc(p.input.dir)} → ${esc(p.output)} · ${esc(p.input.family)} · pare ${esc(p.pare)} · ${esc(p.created)}</div>
<div class="cards">${cards}</div>
${metrics}${speed}
<h2>Kept units per layer</h2>${charts}
<h2>Score distributions per layer (blue: kept, grey: removed)</h2><div>${hists || "<p>(no scores recorded)</p>"}</div>
<h2>Recipe</h2><table id="recipe">${recipeRows}</table>
${p.calibration ? `<p>Calibration: ${esc(p.calibration.protocol)}</p>` : ""}
${notes}
</body></html>
`;
}
