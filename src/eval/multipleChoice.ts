/**
 * Zero-shot multiple choice, lm-evaluation-harness semantics: each choice is scored by the summed
 * log-likelihood of its continuation tokens given the context; `acc` = argmax of the sum,
 * `acc_norm` = argmax of the sum divided by the continuation's length in UTF-8 bytes.
 * Tokenization as the harness: whole = enc(context + continuation), continuation tokens =
 * whole[len(enc(context)):] (trailing spaces of the context move to the continuation).
 */
import { PareError } from "../errors.ts";
import type { McItem } from "../io/mcData.ts";
import type { PareTokenizer } from "../io/tokenizer.ts";
import type { Runner } from "./runner.ts";

export interface McResult {
  acc: number;
  accNorm: number;
  n: number;
  choices: number;
  truncated: number;
  protocol: string;
}

export async function multipleChoice(
  runner: Runner,
  tok: PareTokenizer,
  items: McItem[],
  opts: { batchSize?: number; maxItems?: number; onProgress?: (done: number, total: number) => void } = {},
): Promise<McResult> {
  if (runner.model.spec.kind !== "decoder")
    throw new PareError("E_USAGE", "--task mc needs a decoder (causal LM)", "use a *ForCausalLM model");
  const use = items.slice(0, opts.maxItems ?? items.length);
  const maxLen = runner.model.dims.maxPos;
  let truncated = 0;
  const reqs: { item: number; choice: number; ids: number[]; contStart: number; bytes: number }[] = [];
  use.forEach((it, item) => {
    it.continuations.forEach((cont0, choice) => {
      let ctx = it.contexts[choice];
      let cont = cont0;
      const trail = ctx.length - ctx.trimEnd().length;
      if (trail > 0) {
        cont = ctx.slice(ctx.length - trail) + cont;
        ctx = ctx.slice(0, ctx.length - trail);
      }
      const whole = tok.encode(ctx + cont);
      let contStart = tok.encode(ctx).length;
      let ids = whole;
      if (contStart >= whole.length) contStart = whole.length - 1; // continuation merged into the context: score the last token
      if (ids.length > maxLen) {
        const cut = ids.length - maxLen;
        truncated++;
        ids = ids.slice(cut);
        contStart = Math.max(1, contStart - cut);
      }
      // acc_norm divides by the choice's length in bytes (without the leading delimiter space)
      reqs.push({ item, choice, ids, contStart, bytes: Buffer.byteLength(cont0.replace(/^ /, ""), "utf8") });
    });
  });
  const ll = reqs.map(() => 0);
  const order = reqs.map((_, i) => i).sort((a, b) => reqs[a].ids.length - reqs[b].ids.length);
  const bs = opts.batchSize ?? 16;
  for (let i = 0; i < order.length; i += bs) {
    const idx = order.slice(i, i + bs);
    const nll = await runner.sequenceNll(idx.map((j) => reqs[j].ids));
    idx.forEach((j, b) => {
      let s = 0;
      for (let t = reqs[j].contStart - 1; t < nll[b].length; t++) s -= nll[b][t];
      ll[j] = s;
    });
    opts.onProgress?.(Math.min(i + bs, order.length), order.length);
  }
  let acc = 0;
  let accNorm = 0;
  let choices = 0;
  use.forEach((it, item) => {
    const mine = reqs.map((r, j) => ({ r, j })).filter((x) => x.r.item === item);
    choices += mine.length;
    const best = (score: (x: { r: (typeof reqs)[number]; j: number }) => number) =>
      mine.reduce((a, b) => (score(b) > score(a) ? b : a)).r.choice;
    if (best((x) => ll[x.j]) === it.label) acc++;
    if (best((x) => ll[x.j] / Math.max(1, x.r.bytes)) === it.label) accNorm++;
  });
  return {
    acc: acc / use.length,
    accNorm: accNorm / use.length,
    n: use.length,
    choices,
    truncated,
    protocol: `${use.length} items, ${choices} choices; summed continuation log-likelihood (acc) and per-byte (acc_norm), lm-evaluation-harness tokenization; ${truncated} truncated from the left to ${maxLen} tokens`,
  };
}
