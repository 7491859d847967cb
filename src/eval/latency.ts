/**
 * Latency and throughput through ONNX Runtime, dense vs pruned, interleaved in one run:
 * encoders at batch 1 and 8 × seqLen tokens; decoders prefill (batch × seqLen, KV-cache graph
 * as exported, empty past) and greedy generation tokens/s with the KV cache. Medians of repeated
 * runs, next to parameter and FLOP counts.
 */
import type { Model } from "../arch/model.ts";
import { countParams } from "../arch/params.ts";
import { buildCachedDecoderGraph, emitModelGraph } from "../onnx/emit.ts";
import { f32, type HostTensor, i64From, Session } from "../runtime/ort.ts";

export interface SpeedCase {
  name: string;
  /** per model: median seconds per run */
  seconds: number[];
  /** per model: tokens per second */
  tokensPerSecond: number[];
}

export interface SpeedReport {
  models: { dir: string; params: number; prunable: number; flopsPerToken: number }[];
  cases: SpeedCase[];
  runs: number;
  threads?: number;
}

/** Forward FLOPs per token at context length T: 2·(linear weights) + attention scores and mixing (4·T·heads·hd per layer). */
export function flopsPerToken(model: Model, T: number): number {
  const p = countParams(model);
  const d = model.dims;
  const head = d.head === "lm" ? d.vocab * d.hidden : d.head === "classifier" ? d.hidden * d.hidden : 0;
  const attn = d.layers.reduce((s, L) => s + 4 * T * L.nHeads * d.headDim, 0);
  return 2 * (p.prunable + head) + attn;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function ids(n: number, vocab: number, seed: number): number[] {
  let a = seed >>> 0;
  return Array.from({ length: n }, () => {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    return 3 + (a % Math.max(1, vocab - 3));
  });
}

export async function timeInterleaved(fns: (() => Promise<void>)[], runs: number): Promise<number[]> {
  for (const f of fns) await f(); // warm-up
  const t: number[][] = fns.map(() => []);
  for (let r = 0; r < runs; r++) {
    for (let i = 0; i < fns.length; i++) {
      const t0 = performance.now();
      await fns[i]();
      t[i].push((performance.now() - t0) / 1000);
    }
  }
  return t.map(median);
}

function emptyPast(model: Model, batch: number): Record<string, HostTensor> {
  const past: Record<string, HostTensor> = {};
  model.dims.layers.forEach((L, i) => {
    for (const kv of ["key", "value"])
      past[`past_key_values.${i}.${kv}`] = f32([batch, L.nKv, 0, model.dims.headDim], new Float32Array(0));
  });
  return past;
}

export async function benchSpeed(
  models: (Model & { dir: string })[],
  opts: {
    runs?: number;
    threads?: number;
    seqLen?: number;
    batch?: number;
    genTokens?: number;
    promptLen?: number;
    onProgress?: (msg: string) => void;
  } = {},
): Promise<SpeedReport> {
  const runs = opts.runs ?? 7;
  const kind = models[0].spec.kind;
  const cases: SpeedCase[] = [];
  const T = opts.seqLen ?? (kind === "decoder" ? 256 : 128);
  const B = opts.batch ?? 8;
  if (kind === "encoder") {
    const sessions = await Promise.all(
      models.map((m) => Session.create(emitModelGraph(m), { threads: opts.threads })),
    );
    for (const b of [1, B]) {
      opts.onProgress?.(`encoder batch ${b} × ${T}`);
      const feeds = models.map((m) => ({
        input_ids: i64From([b, T], ids(b * T, m.dims.vocab, 7)),
        attention_mask: i64From([b, T], new Array(b * T).fill(1)),
        token_type_ids: i64From([b, T], new Array(b * T).fill(0)),
      }));
      const sec = await timeInterleaved(
        sessions.map((s, i) => async () => void (await s.run(feeds[i], ["logits"]))),
        runs,
      );
      cases.push({
        name: `encoder batch ${b} × ${T} tokens`,
        seconds: sec,
        tokensPerSecond: sec.map((x) => (b * T) / x),
      });
    }
    for (const s of sessions) await s.release();
  } else {
    const sessions = await Promise.all(
      models.map((m) => Session.create(buildCachedDecoderGraph(m).toModel(), { threads: opts.threads })),
    );
    opts.onProgress?.(`decoder prefill ${B} × ${T}`);
    const sec = await timeInterleaved(prefillRuns(sessions, models, B, T), runs);
    cases.push({
      name: `decoder prefill ${B} × ${T} tokens`,
      seconds: sec,
      tokensPerSecond: sec.map((x) => (B * T) / x),
    });
    const P = opts.promptLen ?? 32;
    const G = opts.genTokens ?? 64;
    opts.onProgress?.(`decoder generation ${G} tokens after a ${P}-token prompt (batch 1, KV cache)`);
    const gsec = await timeInterleaved(
      generationRuns(sessions, models, P, G),
      Math.max(3, Math.ceil(runs / 2)),
    );
    cases.push({
      name: `decoder generation, ${G} new tokens (batch 1, KV cache)`,
      seconds: gsec,
      tokensPerSecond: gsec.map((x) => G / x),
    });
    for (const s of sessions) await s.release();
  }
  return {
    models: models.map((m) => {
      const p = countParams(m);
      return { dir: m.dir, params: p.total, prunable: p.prunable, flopsPerToken: flopsPerToken(m, T) };
    }),
    cases,
    runs,
    threads: opts.threads,
  };
}

/** One prefill of B × T tokens per model (the KV-cache graph, empty past). */
export function prefillRuns(
  sessions: Session[],
  models: Model[],
  B: number,
  T: number,
): (() => Promise<void>)[] {
  const feeds = models.map((m) => ({
    input_ids: i64From([B, T], ids(B * T, m.dims.vocab, 11)),
    attention_mask: i64From([B, T], new Array(B * T).fill(1)),
    position_ids: i64From(
      [B, T],
      Array.from({ length: B * T }, (_, k) => k % T),
    ),
    ...emptyPast(m, B),
  }));
  return sessions.map((s, i) => async () => void (await s.run(feeds[i])));
}

/** Greedy generation of G tokens after a P-token prompt (batch 1, KV cache), per model. */
export function generationRuns(
  sessions: Session[],
  models: Model[],
  P: number,
  G: number,
): (() => Promise<void>)[] {
  return sessions.map((s, i) => async () => {
    const m = models[i];
    let past = emptyPast(m, 1);
    let feed = ids(P, m.dims.vocab, 13);
    let total = 0;
    for (let step = 0; step < G; step++) {
      total += feed.length;
      const r = await s.run({
        input_ids: i64From([1, feed.length], feed),
        attention_mask: i64From([1, total], new Array(total).fill(1)),
        position_ids: i64From(
          [1, feed.length],
          feed.map((_, t) => total - feed.length + t),
        ),
        ...past,
      });
      const V = m.dims.vocab;
      const lg = r.logits.data as Float32Array;
      const last = lg.subarray(lg.length - V);
      let best = 0;
      for (let j = 1; j < V; j++) if (last[j] > last[best]) best = j;
      past = {};
      m.dims.layers.forEach((_, l) => {
        past[`past_key_values.${l}.key`] = r[`present.${l}.key`];
        past[`past_key_values.${l}.value`] = r[`present.${l}.value`];
      });
      feed = [best];
    }
  });
}

/** A decoder workload of `pare bench`: prefill B × T tokens, or generation of G tokens after a P-token prompt. */
export interface DecoderWorkload {
  kind: "prefill" | "generation";
  batch: number;
  seqLen: number;
  promptLen: number;
  genTokens: number;
}

export const DEFAULT_WORKLOAD: Omit<DecoderWorkload, "kind"> = {
  batch: 8,
  seqLen: 256,
  promptLen: 32,
  genTokens: 64,
};

/** Median seconds of one workload run per decoder, the models interleaved (as `pare bench` measures them). */
export async function decoderWorkloadSeconds(
  models: Model[],
  w: DecoderWorkload,
  opts: { runs?: number; threads?: number } = {},
): Promise<number[]> {
  const sessions = await Promise.all(
    models.map((m) => Session.create(buildCachedDecoderGraph(m).toModel(), { threads: opts.threads })),
  );
  try {
    const fns =
      w.kind === "prefill"
        ? prefillRuns(sessions, models, w.batch, w.seqLen)
        : generationRuns(sessions, models, w.promptLen, w.genTokens);
    return await timeInterleaved(fns, opts.runs ?? 5);
  } finally {
    for (const s of sessions) await s.release();
  }
}
