/**
 * Text generation with the KV-cache graph (`emitCachedDecoderGraph`, the graph `pare export` writes): one prefill
 * pass over the prompt, then one token per pass with the keys/values of the earlier tokens fed back. Greedy
 * (temperature 0) or seeded sampling with temperature, top-k and top-p (applied in that order, as Hugging Face's
 * `generate` does); stops at the tokenizer's / config's end-of-sequence ids, after `maxNewTokens`, or at the
 * model's context length (max_position_embeddings). Works for every decoder family and per-layer widths (the graph
 * declares each layer's KV-head count). Prints nothing; the ORT session is released before it returns.
 */
import type { Model } from "../arch/model.ts";
import { mulberry32 } from "../calib/sampling.ts";
import { PareError } from "../errors.ts";
import type { PareTokenizer } from "../io/tokenizer.ts";
import { emitCachedDecoderGraph } from "../onnx/emit.ts";
import { f32, type HostTensor, i64From, Session } from "../runtime/ort.ts";

export interface SamplingSettings {
  /** 0 = greedy (argmax; default); > 0 divides the logits before the softmax */
  temperature?: number;
  /** keep only the k most likely tokens (0 or undefined: off) */
  topK?: number;
  /** keep the smallest set of most likely tokens whose probability reaches p, in (0, 1] (1 or undefined: off) */
  topP?: number;
}

export interface GenerateOptions extends SamplingSettings {
  /** the prompt text, tokenized with the tokenizer's special tokens (e.g. a leading BOS); "" starts from BOS */
  prompt?: string;
  /** the prompt as token ids (instead of `prompt`; used as given) */
  promptIds?: number[];
  /** at most this many new tokens (default 64) */
  maxNewTokens?: number;
  /** seed of the sampling RNG (default 0); the same seed and settings give the same tokens */
  seed?: number;
  /** stop at these ids (default: the tokenizer's EOS and config.json's eos_token_id, which may be a list); [] = never */
  eosIds?: number[];
  /** ONNX Runtime intra-op threads (default: ORT's choice) */
  threads?: number;
  /**
   * Streaming: called after each new token (not the EOS that ends generation) with the text it completes — the
   * decoded continuation's new suffix, held back (empty) while it ends in an incomplete character (a UTF-8 byte
   * sequence still being spelled by byte tokens). The deltas concatenate to the result's `text`.
   */
  onToken?: (delta: string, id: number) => void;
  /**
   * the raw next-token logits of each step [vocab] (before temperature, top-k, top-p), e.g. for scores; a view
   * that is valid during the call
   */
  onLogits?: (logits: Float32Array, step: number) => void;
  /** prompt tokens per prefill pass (default: as many as keep that pass's logits within 16M values, ≤ 512) */
  prefillChunk?: number;
  /** aborting stops generation between tokens with E_INTERRUPTED (the session is released) */
  signal?: AbortSignal;
}

export type StopReason = "eos" | "length" | "context";

export interface GenerateResult {
  /** the continuation (special tokens skipped; the prompt not included) */
  text: string;
  /** the new token ids, including the EOS id that stopped generation */
  ids: number[];
  /** the ids the prompt was fed as */
  promptIds: number[];
  /** new tokens per second over prefill + decode */
  tokensPerSecond: number;
  /** the prompt's forward pass (which yields the first new token) */
  prefillSeconds: number;
  /** the cached passes that yield the other new tokens */
  decodeSeconds: number;
  /** graph emission and ORT session creation */
  loadSeconds: number;
  stopReason: StopReason;
  /** e.g. that the context length capped maxNewTokens */
  notes: string[];
}

const usage = (message: string, hint: string) => new PareError("E_USAGE", message, hint);

/** The options checked (E_USAGE), with defaults. */
export function checkSettings(
  opts: GenerateOptions,
): Required<Pick<GenerateOptions, "maxNewTokens" | "temperature" | "topK" | "topP" | "seed">> {
  const maxNewTokens = opts.maxNewTokens ?? 64;
  const temperature = opts.temperature ?? 0;
  const topK = opts.topK ?? 0;
  const topP = opts.topP ?? 1;
  const seed = opts.seed ?? 0;
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1)
    throw usage(`maxNewTokens must be an integer ≥ 1 (got ${maxNewTokens})`, "e.g. 64");
  if (!Number.isFinite(temperature) || temperature < 0)
    throw usage(
      `temperature must be a finite number ≥ 0 (got ${temperature})`,
      "0 is greedy decoding; 0.7–1.0 is usual for sampling",
    );
  if (!Number.isInteger(topK) || topK < 0)
    throw usage(`topK must be an integer ≥ 0 (got ${topK})`, "0 turns top-k off; e.g. 50");
  if (!(topP > 0 && topP <= 1))
    throw usage(`topP must be in (0, 1] (got ${topP})`, "1 turns top-p off; e.g. 0.9");
  if (!Number.isSafeInteger(seed) || seed < 0)
    throw usage(`seed must be an integer ≥ 0 (got ${seed})`, "e.g. 0");
  if (opts.prefillChunk !== undefined && !(Number.isInteger(opts.prefillChunk) && opts.prefillChunk >= 1))
    throw usage(`prefillChunk must be an integer ≥ 1 (got ${opts.prefillChunk})`, "e.g. 256");
  return { maxNewTokens, temperature, topK, topP, seed };
}

/** A seeded uniform RNG in [0, 1) (mulberry32 on a splitmix-style mix of the seed's high and low 32 bits). */
export function seededRng(seed: number): () => number {
  const lo = seed >>> 0;
  const hi = Math.floor(seed / 4294967296) >>> 0;
  let z = (lo ^ Math.imul(hi, 0x27d4eb2d) ^ 0x9e3779b9) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return mulberry32((z ^ (z >>> 16)) >>> 0);
}

/** Index of the largest value (the first of equal ones). */
export function argmaxOf(row: ArrayLike<number>): number {
  let best = 0;
  for (let j = 1; j < row.length; j++) if (row[j] > row[best]) best = j;
  return best;
}

/**
 * The tokens sampling may pick from and their probabilities (renormalized), most likely first (ties: lower id
 * first): softmax(logits / temperature), then top-k, then top-p (the shortest prefix whose probability reaches p;
 * at least one token). Needs temperature > 0.
 */
export function samplingSupport(
  row: ArrayLike<number>,
  s: SamplingSettings,
): { ids: number[]; probs: Float64Array } {
  const V = row.length;
  const temperature = s.temperature ?? 1;
  const topK = s.topK ?? 0;
  const topP = s.topP ?? 1;
  let ids: number[];
  const before = (a: number, b: number) => row[b] - row[a] || a - b;
  if (topK > 0 && topK <= 64 && topK < V) {
    // insertion into a short sorted list: O(V·k) without sorting the vocabulary
    ids = [];
    for (let j = 0; j < V; j++) {
      if (ids.length === topK && !(row[j] > row[ids[topK - 1]])) continue;
      let at = ids.length === topK ? topK - 1 : ids.length;
      while (at > 0 && row[j] > row[ids[at - 1]]) {
        if (at < ids.length) ids[at] = ids[at - 1];
        else ids.push(ids[at - 1]);
        at--;
      }
      if (at < ids.length) ids[at] = j;
      else ids.push(j);
    }
  } else if (topK > 0 || topP < 1) {
    ids = Array.from({ length: V }, (_, j) => j).sort(before);
    if (topK > 0) ids.length = Math.min(topK, V);
  } else {
    ids = Array.from({ length: V }, (_, j) => j);
  }
  let max = Number.NEGATIVE_INFINITY;
  for (const j of ids) if (row[j] > max) max = row[j];
  if (!Number.isFinite(max)) {
    throw new PareError(
      "E_NUMERIC",
      "the model produced no finite logits",
      "the weights may hold NaN/Inf values; check the model with `pare eval`",
    );
  }
  let probs = new Float64Array(ids.length);
  let sum = 0;
  for (let i = 0; i < ids.length; i++) {
    const p = Math.exp((row[ids[i]] - max) / temperature);
    probs[i] = Number.isFinite(p) ? p : 0;
    sum += probs[i];
  }
  for (let i = 0; i < probs.length; i++) probs[i] /= sum;
  if (topP < 1) {
    // ids are sorted here (top-p without top-k sorted the whole vocabulary)
    let cum = 0;
    let n = 0;
    while (n < ids.length && (n === 0 || cum < topP)) cum += probs[n++];
    ids = ids.slice(0, n);
    probs = probs.slice(0, n);
    for (let i = 0; i < n; i++) probs[i] /= cum;
  }
  return { ids, probs };
}

/** The next token: argmax at temperature 0, else a draw from `samplingSupport` with `rand`. */
export function sampleNext(row: ArrayLike<number>, s: SamplingSettings, rand: () => number): number {
  if (!s.temperature) return argmaxOf(row);
  if (s.topK === 1) return argmaxOf(row);
  const { ids, probs } = samplingSupport(row, s);
  const u = rand();
  let cum = 0;
  for (let i = 0; i < ids.length; i++) {
    cum += probs[i];
    if (u < cum) return ids[i];
  }
  // rounding left u above the last cumulative value: the last token with a non-zero probability
  for (let i = ids.length - 1; i > 0; i--) if (probs[i] > 0) return ids[i];
  return ids[0];
}

/** Largest logits tensor [chunk, vocab] of one prefill pass (values). */
const PREFILL_LOGITS = 1 << 24;

/** Prompt tokens decoded before the continuation, so that it decodes as it reads after the prompt. */
const CONTEXT_TOKENS = 8;

/**
 * Incremental decoding of a continuation: the text of the new ids is the decode of (the prompt's last tokens +
 * the new ids) minus the decode of those prompt tokens (so a SentencePiece-style leading space survives), and a
 * delta is emitted only when the text no longer ends in an incomplete character (U+FFFD from a partial UTF-8
 * sequence of byte tokens).
 */
export class IncrementalText {
  private readonly context: number[];
  private readonly base: string;
  private emitted = "";

  constructor(
    private readonly tokenizer: PareTokenizer,
    promptIds: number[],
  ) {
    this.context = promptIds.slice(-CONTEXT_TOKENS);
    this.base = tokenizer.decode(this.context, true);
  }

  /** The continuation's text for these new ids (special tokens skipped). */
  text(ids: number[]): string {
    const full = this.tokenizer.decode([...this.context, ...ids], true);
    return full.startsWith(this.base) ? full.slice(this.base.length) : this.tokenizer.decode(ids, true);
  }

  /** The new text since the last call; "" while the text ends in an incomplete character unless `final`. */
  push(ids: number[], final = false): string {
    const t = this.text(ids);
    if (!final && t.endsWith("\uFFFD")) return "";
    // (a decoder whose earlier output changed with later tokens — not the case for the usual decoders — goes
    // on after the length already emitted, as transformers' TextStreamer does)
    if (t.length <= this.emitted.length) return "";
    const delta = t.slice(this.emitted.length);
    this.emitted = t;
    return delta;
  }
}

/** The ids generation stops at: the tokenizer's EOS and config.json's eos_token_id (an id or a list). */
export function defaultEosIds(model: Model, tokenizer: PareTokenizer): number[] {
  const out = new Set<number>();
  if (tokenizer.eosId !== undefined) out.add(tokenizer.eosId);
  const c = model.config.eos_token_id;
  for (const v of Array.isArray(c) ? c : [c])
    if (Number.isInteger(v) && (v as number) >= 0) out.add(v as number);
  return [...out];
}

/** The prompt's ids: the tokenized text, or BOS alone for an empty prompt. */
export function promptIdsOf(
  tokenizer: PareTokenizer,
  opts: Pick<GenerateOptions, "prompt" | "promptIds">,
): number[] {
  if (opts.promptIds !== undefined) {
    if (opts.promptIds.length === 0)
      throw usage("promptIds is empty", "give at least one token id (e.g. the BOS id), or a prompt text");
    return [...opts.promptIds];
  }
  const prompt = opts.prompt ?? "";
  if (prompt === "") {
    if (tokenizer.bosId === undefined) {
      throw usage(
        "the prompt is empty and the tokenizer has no BOS (beginning-of-sequence) token to start from",
        "give a prompt text, or set bos_token in tokenizer_config.json",
      );
    }
    return [tokenizer.bosId];
  }
  const ids = tokenizer.encode(prompt);
  if (ids.length === 0)
    throw usage("the prompt encodes to no tokens", "give a prompt text the tokenizer can encode");
  return ids;
}

/** E_USAGE unless `model` is a decoder with a language-model head. */
export function assertGenerative(model: Model): void {
  if (model.spec.kind !== "decoder") {
    throw usage(
      `text generation needs a decoder (causal LM); ${model.spec.family} is an encoder`,
      "use a *ForCausalLM checkpoint (e.g. Llama, Mistral, Qwen2/3, Gemma 2/3, Phi-3)",
    );
  }
  if (model.dims.head !== "lm") {
    throw usage(
      "this decoder checkpoint has no language-model head",
      "use a *ForCausalLM checkpoint (config.json architectures ending in ForCausalLM)",
    );
  }
}

function interrupted(generated: number): PareError {
  return new PareError(
    "E_INTERRUPTED",
    `generation aborted after ${generated} new token${generated === 1 ? "" : "s"}`,
    "the abort signal was raised; the streamed text so far is complete up to that token",
    { generated },
  );
}

/**
 * Generates a continuation of the prompt with `model`'s KV-cache graph. Throws PareError: E_USAGE for bad
 * options, an encoder, an empty prompt without BOS or a prompt as long as the context; E_INTERRUPTED when
 * `signal` aborts.
 */
export async function generate(
  model: Model,
  tokenizer: PareTokenizer,
  opts: GenerateOptions = {},
): Promise<GenerateResult> {
  assertGenerative(model);
  const settings = checkSettings(opts);
  const promptIds = promptIdsOf(tokenizer, opts);
  const d = model.dims;
  const bad = promptIds.find((id) => !Number.isInteger(id) || id < 0 || id >= d.vocab);
  if (bad !== undefined)
    throw usage(
      `prompt token id ${bad} is outside the model's vocabulary [0, ${d.vocab})`,
      "the tokenizer does not belong to this model",
    );
  const notes: string[] = [];
  const P = promptIds.length;
  if (P >= d.maxPos) {
    throw usage(
      `the prompt is ${P} tokens; the model's context (max_position_embeddings) is ${d.maxPos}, which leaves no room for a new token`,
      `shorten the prompt to fewer than ${d.maxPos} tokens`,
    );
  }
  // the prompt and the continuation together fit max_position_embeddings
  const contextCapped = settings.maxNewTokens > d.maxPos - P;
  const maxNew = Math.min(settings.maxNewTokens, d.maxPos - P);
  const eos = new Set(opts.eosIds ?? defaultEosIds(model, tokenizer));
  const sampling: SamplingSettings = {
    temperature: settings.temperature,
    topK: settings.topK,
    topP: settings.topP,
  };
  const rand = seededRng(settings.seed);
  const signal = opts.signal;
  if (signal?.aborted) throw interrupted(0);

  const t0 = performance.now();
  const session = await Session.create(emitCachedDecoderGraph(model), { threads: opts.threads });
  const loadSeconds = (performance.now() - t0) / 1000;
  const ids: number[] = [];
  const stream = new IncrementalText(tokenizer, promptIds);
  let stopReason: StopReason = contextCapped ? "context" : "length";
  let prefillSeconds = 0;
  let decodeSeconds = 0;
  try {
    let past: Record<string, HostTensor> = {};
    d.layers.forEach((L, i) => {
      for (const kv of ["key", "value"])
        past[`past_key_values.${i}.${kv}`] = f32([1, L.nKv, 0, d.headDim], new Float32Array(0));
    });
    let total = 0;
    /** one pass over `feed` after the cached tokens: the last position's logits; the cache grows by `feed` */
    const forward = async (feed: number[]): Promise<Float32Array> => {
      const start = total;
      total += feed.length;
      const r = await session.run({
        input_ids: i64From([1, feed.length], feed),
        attention_mask: i64From([1, total], new Array<number>(total).fill(1)),
        position_ids: i64From(
          [1, feed.length],
          feed.map((_, t) => start + t),
        ),
        ...past,
      });
      past = {};
      d.layers.forEach((_, i) => {
        past[`past_key_values.${i}.key`] = r[`present.${i}.key`];
        past[`past_key_values.${i}.value`] = r[`present.${i}.value`];
      });
      const logits = r.logits.data as Float32Array;
      return logits.subarray(logits.length - d.vocab);
    };
    // prefill in chunks, so that a long prompt's logits [chunk, vocab] stay bounded
    const chunk =
      opts.prefillChunk ?? Math.max(1, Math.min(512, Math.floor(PREFILL_LOGITS / Math.max(1, d.vocab))));
    let ts = performance.now();
    let row: Float32Array = new Float32Array(0);
    for (let i = 0; i < P; i += chunk) {
      if (signal?.aborted) throw interrupted(0);
      row = await forward(promptIds.slice(i, i + chunk));
    }
    prefillSeconds = (performance.now() - ts) / 1000;
    for (;;) {
      opts.onLogits?.(row, ids.length);
      const next = sampleNext(row, sampling, rand);
      ids.push(next);
      if (eos.has(next)) {
        stopReason = "eos";
        break;
      }
      opts.onToken?.(stream.push(ids), next);
      if (ids.length >= maxNew) break;
      if (signal?.aborted) throw interrupted(ids.length);
      ts = performance.now();
      row = await forward([next]);
      decodeSeconds += (performance.now() - ts) / 1000;
    }
  } finally {
    await session.release();
  }
  const textIds = stopReason === "eos" ? ids.slice(0, -1) : ids;
  // what is still held back (an incomplete character at the very end) goes out with the last token
  const rest = stream.push(textIds, true);
  if (rest !== "" && textIds.length > 0) opts.onToken?.(rest, textIds[textIds.length - 1]);
  if (stopReason === "context") {
    notes.push(
      `stopped after ${ids.length} new tokens at the model's context length: the prompt (${P} tokens) and the continuation fill max_position_embeddings ${d.maxPos}`,
    );
  }
  const seconds = prefillSeconds + decodeSeconds;
  return {
    text: stream.text(textIds),
    ids,
    promptIds,
    tokensPerSecond: seconds > 0 ? ids.length / seconds : 0,
    prefillSeconds,
    decodeSeconds,
    loadSeconds,
    stopReason,
    notes,
  };
}
