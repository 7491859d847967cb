/**
 * Perplexity (docs/methods.md §5): the whole text tokenized once (special tokens as the
 * tokenizer adds them, e.g. one leading <s>), cut into ⌊T/L⌋ non-overlapping windows of
 * L tokens (tail dropped); each window starts fresh and its first token is context only.
 * PPL = exp(mean token NLL over all predicted tokens).
 *
 * Over documents (below): the same windows over documents that each start with BOS (documentPerplexity), or
 * lm-evaluation-harness' per-document rolling log-likelihood (rollingPerplexity).
 */
import { PareError } from "../errors.ts";
import type { PareTokenizer } from "../io/tokenizer.ts";
import type { Runner } from "./runner.ts";

export interface PplResult {
  ppl: number;
  nll: number;
  /** predicted tokens (windows × (L − 1)) */
  tokens: number;
  windows: number;
  seqLen: number;
  totalTokens: number;
  droppedTailTokens: number;
  protocol: string;
}

export function cutWindows(ids: number[], seqLen: number, maxWindows?: number): number[][] {
  const n = Math.min(Math.floor(ids.length / seqLen), maxWindows ?? Number.POSITIVE_INFINITY);
  return Array.from({ length: n }, (_, w) => ids.slice(w * seqLen, (w + 1) * seqLen));
}

export async function perplexity(
  runner: Pick<Runner, "windowNll">,
  ids: number[],
  opts: {
    seqLen: number;
    batchSize?: number;
    maxWindows?: number;
    onProgress?: (done: number, total: number) => void;
  },
): Promise<PplResult> {
  const L = opts.seqLen;
  if (!Number.isInteger(L) || L < 2)
    throw new PareError("E_USAGE", `--seq-len must be an integer ≥ 2 (got ${L})`, "e.g. --seq-len 256");
  const windows = cutWindows(ids, L, opts.maxWindows);
  if (windows.length === 0) {
    throw new PareError(
      "E_DATA_TOO_SHORT",
      `the text has ${ids.length} tokens, fewer than one window of ${L}`,
      "use a longer text or a smaller --seq-len",
    );
  }
  const bs = opts.batchSize ?? 8;
  let sum = 0;
  let count = 0;
  for (let i = 0; i < windows.length; i += bs) {
    const nll = await runner.windowNll(windows.slice(i, i + bs));
    for (const w of nll) {
      for (const v of w) sum += v;
      count += w.length;
    }
    opts.onProgress?.(Math.min(i + bs, windows.length), windows.length);
  }
  const nll = sum / count;
  if (!Number.isFinite(nll))
    throw new PareError(
      "E_NUMERIC",
      "the model produced non-finite log-likelihoods",
      "check the weights for NaN/Inf",
    );
  return {
    ppl: Math.exp(nll),
    nll,
    tokens: count,
    windows: windows.length,
    seqLen: L,
    totalTokens: ids.length,
    droppedTailTokens: ids.length - windows.length * L,
    protocol: `${windows.length} non-overlapping windows of ${L} tokens (first token of each window is context only; ${ids.length - windows.length * L} tokens unused), ${count} predicted tokens`,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Evaluation over documents

/** What scores windows: Runner, or anything that gives the same per-token NLL. */
export interface NllScorer {
  readonly model: { dims: { maxPos: number } };
  /** result[b][t] = −log p(windows[b][t+1] | windows[b][0..t]), t = 0..len−2; equal-length windows */
  windowNll(windows: number[][]): Promise<Float64Array[]>;
  /**
   * Optional: result[b][t] = −log p(labels[b][t] | inputs[b][0..t]) (0 where labels[b][t] < 0); equal-length
   * inputs. With it, rolling windows feed at most L tokens, exactly as lm-evaluation-harness does; without it the
   * predicted last token is fed too (L + 1 tokens; causal attention makes that extra input invisible to the
   * scored positions), which needs L < max_position_embeddings.
   */
  labeledNll?(inputs: number[][], labels: number[][]): Promise<Float64Array[]>;
}

/** A document's first token: the tokenizer's BOS, else its EOS (as lm-evaluation-harness' prefix_token_id). */
export interface DocumentPrefix {
  id: number;
  /** the token as text, e.g. "<s>" */
  token: string;
  kind: "bos" | "eos";
}

/** The token that starts every document; E_USAGE when the tokenizer has neither BOS nor EOS. */
export function documentPrefix(tok: PareTokenizer): DocumentPrefix {
  const kind = tok.bosId !== undefined ? "bos" : tok.eosId !== undefined ? "eos" : undefined;
  if (kind === undefined) {
    throw new PareError(
      "E_USAGE",
      "evaluation over documents starts every document with the tokenizer's BOS (or EOS) token, and this " +
        "tokenizer names neither",
      "set bos_token in tokenizer_config.json, or evaluate the file as one text (no .jsonl, no --doc-separator)",
    );
  }
  const id = (kind === "bos" ? tok.bosId : tok.eosId) as number;
  return { id, token: tok.decode([id], false), kind };
}

/** Each document's tokens without special tokens; documents with no token are dropped and counted. */
export function tokenizeDocuments(
  tok: PareTokenizer,
  docs: string[],
): { docs: { text: string; ids: number[] }[]; noTokens: number } {
  const out: { text: string; ids: number[] }[] = [];
  let noTokens = 0;
  for (const text of docs) {
    const ids = tok.encode(text, { addSpecialTokens: false });
    if (ids.length === 0) noTokens++;
    else out.push({ text, ids });
  }
  return { docs: out, noTokens };
}

/** The llama2.c / nanoGPT layout: each document as prefix + its own tokens, the documents concatenated. */
export function concatDocuments(docs: number[][], prefix: number): number[] {
  const ids: number[] = [];
  for (const d of docs) {
    ids.push(prefix);
    for (const t of d) ids.push(t);
  }
  return ids;
}

export interface DocumentsInfo {
  /** documents evaluated */
  documents: number;
  /** empty documents skipped (whitespace only, or no token) */
  emptyDocuments: number;
}

const plural = (n: number, one: string, many = `${one}s`) =>
  `${n.toLocaleString("en-US")} ${n === 1 ? one : many}`;
const skippedNote = (n: number) => (n > 0 ? ` (${plural(n, "empty document")} skipped)` : "");

export interface DocPplResult extends PplResult, DocumentsInfo {
  protocolName: "documents";
  /** the token that starts each document */
  prefixToken: string;
  prefixId: number;
}

/**
 * Windows over documents: every document is tokenized on its own and starts with the tokenizer's BOS (llama2.c /
 * nanoGPT: BOS + the document's tokens), the documents are concatenated and cut into the usual ⌊T/L⌋
 * non-overlapping windows (see perplexity()).
 */
export async function documentPerplexity(
  runner: NllScorer,
  tok: PareTokenizer,
  texts: string[],
  opts: {
    seqLen: number;
    batchSize?: number;
    maxWindows?: number;
    maxDocs?: number;
    /** empty documents the reader already dropped */
    emptySkipped?: number;
    onProgress?: (done: number, total: number) => void;
  },
): Promise<DocPplResult> {
  const prefix = documentPrefix(tok);
  const { docs, noTokens } = tokenizeDocuments(tok, texts);
  const used = docs.slice(0, opts.maxDocs ?? docs.length);
  if (used.length === 0) throw noDocuments(texts.length);
  const ids = concatDocuments(
    used.map((d) => d.ids),
    prefix.id,
  );
  const r = await perplexity(runner, ids, opts);
  const emptyDocuments = (opts.emptySkipped ?? 0) + noTokens;
  const docsPart = `${plural(used.length, "document")}${skippedNote(emptyDocuments)}, each ${prefix.token} + its own tokens, concatenated into ${ids.length} tokens`;
  return {
    ...r,
    protocolName: "documents",
    documents: used.length,
    emptyDocuments,
    prefixToken: prefix.token,
    prefixId: prefix.id,
    protocol: `windows over documents: ${docsPart}; ${r.protocol}`,
  };
}

function noDocuments(n: number): PareError {
  return new PareError(
    "E_DATA_EMPTY",
    n === 0 ? "no documents to evaluate" : `all ${plural(n, "document")} are empty (no tokens)`,
    "give documents with text in them",
  );
}

/**
 * lm-evaluation-harness' get_rolling_token_windows: (input, predicted) pairs that predict every token of
 * `tokens` exactly once. The first window predicts the first min(L, n) tokens after `prefix`; each later window
 * predicts up to L − contextLen + 1 further tokens and takes as input the maxLen tokens before its last prediction.
 */
export function rollingTokenWindows(
  tokens: number[],
  prefix: number,
  maxLen: number,
  contextLen = 1,
): [number[], number[]][] {
  if (
    !(Number.isInteger(contextLen) && Number.isInteger(maxLen) && contextLen >= 1 && contextLen <= maxLen)
  ) {
    throw new Error("rollingTokenWindows: need 1 ≤ contextLen ≤ maxLen");
  }
  const out: [number[], number[]][] = [];
  if (tokens.length === 0) return out;
  const predLen = maxLen - contextLen + 1;
  const first = Math.min(maxLen, tokens.length);
  out.push([[prefix, ...tokens.slice(0, first - 1)], tokens.slice(0, first)]);
  let predicted = first;
  while (predicted < tokens.length) {
    const n = Math.min(tokens.length - predicted, predLen);
    const end = predicted + n;
    // end − maxLen − 1 ≥ 0 here: a later window exists only when the first one was full (first = maxLen)
    out.push([tokens.slice(end - maxLen - 1, end - 1), tokens.slice(end - n, end)]);
    predicted += n;
  }
  return out;
}

/** lm-evaluation-harness' make_disjoint_window: the context without the part the continuation overlaps. */
export function makeDisjointWindow([a, b]: [number[], number[]]): [number[], number[]] {
  return [a.slice(0, a.length - (b.length - 1)), b];
}

/**
 * What the model sees for a (context, continuation) request, as lm-evaluation-harness' HF model builds it:
 * input = (context + continuation)[−(L+1):][:−1], and the last |continuation| positions are scored, position t
 * predicting the token after it. `full` is (context + continuation)[−(L+1):] (the input plus the last target).
 */
export function rollingRequest(
  context: number[],
  continuation: number[],
  maxLen: number,
): { input: number[]; full: number[]; scored: number } {
  const all = [...context, ...continuation];
  const full = all.slice(Math.max(0, all.length - (maxLen + 1)));
  return { input: full.slice(0, -1), full, scored: continuation.length };
}

/** Python's `len(re.split(r"\s+", text))` (str pattern: Unicode whitespace as Python's \s has it). */
export function pythonWordCount(text: string): number {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: \x1c-\x1f and \x85 are whitespace to Python's \s
  return text.split(/[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/u)
    .length;
}

export interface RollingPplResult extends DocumentsInfo {
  protocolName: "rolling";
  /** token perplexity: exp(−Σ loglikelihood / Σ tokens) */
  ppl: number;
  /** mean NLL per token */
  nll: number;
  /** predicted tokens: every token of every document */
  tokens: number;
  windows: number;
  seqLen: number;
  /** Σ over documents of the rolling log-likelihood */
  loglikelihood: number;
  /** words as lm-evaluation-harness' wikitext task counts them (len(re.split(r"\s+", doc))) */
  words: number;
  /** UTF-8 bytes of the documents */
  bytes: number;
  wordPerplexity: number;
  bytePerplexity: number;
  bitsPerByte: number;
  prefixToken: string;
  prefixId: number;
  protocol: string;
}

/**
 * lm-evaluation-harness' loglikelihood_rolling (its wikitext task): each document is scored on its own — tokens
 * without special tokens, the tokenizer's BOS (else EOS) as the prefix the first token is predicted from — in
 * rolling windows of at most L tokens (get_rolling_token_windows with context_len 1, then make_disjoint_window),
 * every token predicted exactly once. Word and byte perplexity as the wikitext task reports them:
 * exp(−Σ loglikelihood / Σ words), exp(−Σ loglikelihood / Σ UTF-8 bytes), bits per byte = −Σ ll / Σ bytes / ln 2;
 * words and bytes are counted on the documents as given (lm-eval's wikitext task also detokenizes the raw
 * wikitext page before scoring it; pare scores what the file holds).
 */
export async function rollingPerplexity(
  runner: NllScorer,
  tok: PareTokenizer,
  texts: string[],
  opts: {
    seqLen: number;
    batchSize?: number;
    maxDocs?: number;
    emptySkipped?: number;
    onProgress?: (done: number, total: number) => void;
  },
): Promise<RollingPplResult> {
  const L = opts.seqLen;
  if (!Number.isInteger(L) || L < 1)
    throw new PareError("E_USAGE", `--seq-len must be an integer ≥ 1 (got ${L})`, "e.g. --seq-len 256");
  const prefix = documentPrefix(tok);
  const { docs: all, noTokens } = tokenizeDocuments(tok, texts);
  const docs = all.slice(0, opts.maxDocs ?? all.length);
  if (docs.length === 0) throw noDocuments(texts.length);
  const maxPos = runner.model.dims.maxPos;
  const labeled = runner.labeledNll?.bind(runner);

  // every request of every document, in order; the feed is what one forward pass takes
  interface Req {
    doc: number;
    feed: number[];
    labels?: number[];
    scored: number;
  }
  const reqs: Req[] = [];
  docs.forEach((d, doc) => {
    for (const w of rollingTokenWindows(d.ids, prefix.id, L, 1)) {
      const [context, continuation] = makeDisjointWindow(w);
      const { input, full, scored } = rollingRequest(context, continuation, L);
      if (labeled) {
        const labels = input.map((_, t) => (t >= input.length - scored ? full[t + 1] : -1));
        reqs.push({ doc, feed: input, labels, scored });
      } else reqs.push({ doc, feed: full, scored });
    }
  });
  let longest = 0;
  for (const r of reqs) longest = Math.max(longest, r.feed.length);
  if (longest > maxPos) {
    throw new PareError(
      "E_USAGE",
      labeled
        ? `rolling windows of ${L} tokens exceed max_position_embeddings ${maxPos}`
        : `rolling windows of --seq-len ${L} feed ${longest} tokens (the window and the token its last position predicts), more than max_position_embeddings ${maxPos}`,
      `use --seq-len ${labeled ? maxPos : maxPos - 1} or less`,
      { seqLen: L, maxPos },
    );
  }
  // batches of equal-length feeds (results do not depend on the batching); sums per request, then in order
  const bs = opts.batchSize ?? 8;
  const byLen = new Map<number, number[]>();
  reqs.forEach((r, i) => {
    const list = byLen.get(r.feed.length) ?? [];
    list.push(i);
    byLen.set(r.feed.length, list);
  });
  const reqNll = new Float64Array(reqs.length);
  let done = 0;
  for (const idx of byLen.values()) {
    for (let s = 0; s < idx.length; s += bs) {
      const batch = idx.slice(s, s + bs);
      const nll = labeled
        ? await labeled(
            batch.map((i) => reqs[i].feed),
            batch.map((i) => reqs[i].labels as number[]),
          )
        : await runner.windowNll(batch.map((i) => reqs[i].feed));
      batch.forEach((i, b) => {
        const r = reqs[i];
        const v = nll[b];
        // labeled: positions input.length − scored … input.length − 1; fed whole: the last `scored` of L' − 1
        const end = labeled ? r.feed.length : r.feed.length - 1;
        let sum = 0;
        for (let t = end - r.scored; t < end; t++) sum += v[t];
        reqNll[i] = sum;
      });
      done += batch.length;
      opts.onProgress?.(done, reqs.length);
    }
  }
  let nllSum = 0;
  for (const v of reqNll) nllSum += v;
  const tokens = docs.reduce((s, d) => s + d.ids.length, 0);
  const words = docs.reduce((s, d) => s + pythonWordCount(d.text), 0);
  const bytes = docs.reduce((s, d) => s + Buffer.byteLength(d.text, "utf8"), 0);
  if (!Number.isFinite(nllSum))
    throw new PareError(
      "E_NUMERIC",
      "the model produced non-finite log-likelihoods",
      "check the weights for NaN/Inf",
    );
  const ll = -nllSum;
  const emptyDocuments = (opts.emptySkipped ?? 0) + noTokens;
  return {
    protocolName: "rolling",
    ppl: Math.exp(nllSum / tokens),
    nll: nllSum / tokens,
    tokens,
    windows: reqs.length,
    seqLen: L,
    documents: docs.length,
    emptyDocuments,
    loglikelihood: ll,
    words,
    bytes,
    wordPerplexity: Math.exp(-ll / words),
    bytePerplexity: Math.exp(-ll / bytes),
    bitsPerByte: -ll / bytes / Math.LN2,
    prefixToken: prefix.token,
    prefixId: prefix.id,
    protocol:
      `rolling (lm-evaluation-harness loglikelihood_rolling): ${plural(docs.length, "document")}${skippedNote(emptyDocuments)}, ` +
      `each scored on its own after ${prefix.token} in rolling windows of at most ${L} tokens (context_len 1: a ` +
      "window predicts the tokens after the previous window's last one; the last window is filled up with earlier " +
      `tokens as context), every token predicted exactly once (${plural(reqs.length, "window")}, ${tokens} ` +
      `predicted tokens); word / byte perplexity over ${plural(words, "word")} / ${plural(bytes, "UTF-8 byte")}`,
  };
}
