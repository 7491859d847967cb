/**
 * `pare generate <model> --prompt TEXT`: text generation with the KV cache, streamed to stdout (the prompt, then
 * the continuation as it is produced); `--compare <other>` runs a second model (e.g. the pruned one) with the same
 * prompt and settings and prints both continuations as labelled blocks. `--json` prints one object at the end.
 */
import { type Generator, openGenerator } from "../api/generate.ts";
import type { LoadedModel } from "../arch/load.ts";
import { PareError } from "../errors.ts";
import { checkSettings, type GenerateResult, generate } from "../eval/generate.ts";
import type { Console } from "./io.ts";

export interface GenerateFlags {
  prompt?: string;
  maxNewTokens?: string;
  temperature?: string;
  topK?: string;
  topP?: string;
  seed?: string;
  threads?: string;
  compare?: string;
}

/** A number from a flag's text (no empty strings, hex or trailing garbage: what Number() reads, finite). */
function parseNumber(v: string, flag: string, want: string, example: string): number {
  const n = v.trim() === "" ? Number.NaN : Number(v);
  if (!Number.isFinite(n)) throw new PareError("E_USAGE", `${flag} must be ${want} (got "${v}")`, example);
  return n;
}

function intFlag(v: string | undefined, flag: string, min: number, example: number): number | undefined {
  if (v === undefined) return undefined;
  const n = parseNumber(v, flag, `an integer ≥ ${min}`, `e.g. ${flag} ${example}`);
  if (!Number.isSafeInteger(n) || n < min)
    throw new PareError(
      "E_USAGE",
      `${flag} must be an integer ≥ ${min} (got "${v}")`,
      `e.g. ${flag} ${example}`,
    );
  return n;
}

export interface ParsedGenerateFlags {
  prompt: string;
  maxNewTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
  threads?: number;
}

/** The flags checked (E_USAGE with the flag's name), before any model is read. */
export function parseGenerateFlags(f: GenerateFlags): ParsedGenerateFlags {
  const maxNewTokens = intFlag(f.maxNewTokens, "--max-new-tokens", 1, 64) ?? 64;
  let temperature = 0;
  if (f.temperature !== undefined) {
    temperature = parseNumber(
      f.temperature,
      "--temperature",
      "a number ≥ 0",
      "0 is greedy; e.g. --temperature 0.8",
    );
    if (temperature < 0)
      throw new PareError(
        "E_USAGE",
        `--temperature must be a number ≥ 0 (got "${f.temperature}")`,
        "0 is greedy; e.g. --temperature 0.8",
      );
  }
  const topK = intFlag(f.topK, "--top-k", 0, 50) ?? 0;
  let topP = 1;
  if (f.topP !== undefined) {
    topP = parseNumber(f.topP, "--top-p", "a number in (0, 1]", "e.g. --top-p 0.9 (1 turns it off)");
    if (!(topP > 0 && topP <= 1))
      throw new PareError(
        "E_USAGE",
        `--top-p must be in (0, 1] (got "${f.topP}")`,
        "e.g. --top-p 0.9 (1 turns it off)",
      );
  }
  const seed = intFlag(f.seed, "--seed", 0, 0) ?? 0;
  const threads = intFlag(f.threads, "--threads", 1, 2);
  const parsed = { prompt: f.prompt ?? "", maxNewTokens, temperature, topK, topP, seed, threads };
  checkSettings(parsed); // the library's own checks (unreachable after the above)
  return parsed;
}

/** Model, tokenizer and stop ids of one model folder. */

function open(dir: string, opened: LoadedModel[]): Generator {
  const g = openGenerator(dir);
  opened.push(g.model);
  return g;
}

/** On a terminal, control characters (other than newline and tab) are shown as escapes, never interpreted. */
function forTerminal(text: string): string {
  if (!process.stdout.isTTY) return text;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what is replaced
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, (c) => {
    return `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
  });
}

function describeSettings(s: ParsedGenerateFlags): string {
  if (s.temperature === 0) return "greedy";
  const parts = [`temperature ${s.temperature}`];
  if (s.topK > 0) parts.push(`top-k ${s.topK}`);
  if (s.topP < 1) parts.push(`top-p ${s.topP}`);
  parts.push(`seed ${s.seed}`);
  return parts.join(", ");
}

function summary(r: GenerateResult): string {
  const stop = {
    eos: "end-of-sequence token",
    length: "--max-new-tokens reached",
    context: "context length",
  }[r.stopReason];
  return (
    `${r.ids.length} new tokens, ${r.tokensPerSecond.toFixed(1)} tokens/s ` +
    `(prefill ${(r.prefillSeconds * 1000).toFixed(1)} ms for ${r.promptIds.length} prompt tokens, ` +
    `decode ${(r.decodeSeconds * 1000).toFixed(1)} ms); stopped: ${stop}`
  );
}

function resultJson(dir: string, r: GenerateResult): Record<string, unknown> {
  return {
    model: dir,
    text: r.text,
    ids: r.ids,
    promptIds: r.promptIds,
    tokensPerSecond: r.tokensPerSecond,
    prefillSeconds: r.prefillSeconds,
    decodeSeconds: r.decodeSeconds,
    loadSeconds: r.loadSeconds,
    stopReason: r.stopReason,
    notes: r.notes,
  };
}

export async function generateCommand(dir: string, f: GenerateFlags, con: Console): Promise<void> {
  const s = parseGenerateFlags(f);
  const json = con.flags.json === true;
  if (s.temperature === 0 && (s.topK > 0 || s.topP < 1))
    con.info("note: --top-k / --top-p apply to sampling only; with --temperature 0 decoding is greedy");
  const opened: LoadedModel[] = [];
  try {
    // both models are opened and checked before anything is generated
    const runs = [open(dir, opened)];
    if (f.compare !== undefined) runs.push(open(f.compare, opened));
    const results: GenerateResult[] = [];
    for (const [i, g] of runs.entries()) {
      const label = runs.length > 1 ? `${i === 0 ? "A" : "B"}: ${g.model.dir}` : g.model.dir;
      con.info(`generating with ${label} (${describeSettings(s)}, at most ${s.maxNewTokens} new tokens)`);
      // the block's label and prompt go out with the first new token (nothing, if generation fails first)
      let begun = json;
      const begin = () => {
        if (begun) return;
        begun = true;
        if (runs.length > 1) process.stdout.write(`${i > 0 ? "\n" : ""}=== ${label} ===\n`);
        process.stdout.write(forTerminal(s.prompt));
      };
      const r = await generate(g.model, g.tokenizer, {
        prompt: s.prompt,
        maxNewTokens: s.maxNewTokens,
        temperature: s.temperature,
        topK: s.topK,
        topP: s.topP,
        seed: s.seed,
        threads: s.threads,
        eosIds: g.eosIds,
        onToken: json
          ? undefined
          : (delta) => {
              begin();
              process.stdout.write(forTerminal(delta));
            },
      });
      if (!json) {
        begin();
        process.stdout.write("\n");
      }
      for (const n of r.notes) con.info(`note: ${n}`);
      con.info(summary(r));
      results.push(r);
    }
    if (json) {
      const settings = {
        maxNewTokens: s.maxNewTokens,
        temperature: s.temperature,
        topK: s.topK,
        topP: s.topP,
        seed: s.seed,
      };
      const obj: Record<string, unknown> = {
        prompt: s.prompt,
        settings,
        ...resultJson(runs[0].model.dir, results[0]),
      };
      if (results.length > 1) obj.compare = resultJson(runs[1].model.dir, results[1]);
      con.result(obj, () => "");
    }
  } finally {
    for (const m of opened) m.close();
  }
}
