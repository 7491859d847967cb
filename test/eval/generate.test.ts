/**
 * `generate` (src/eval/generate.ts) on tiny seeded models: greedy decoding through the KV-cache graph against the
 * float64 references (Llama / Qwen2 / a pruned-looking Llama, and every spec family case: Qwen3, Gemma 2,
 * Gemma 3, Phi-3, dense and with per-layer widths) up to the first near-tie, seeded sampling (reproducible, within
 * the top-k / top-p support), EOS, BOS for an empty prompt, streaming deltas, abort, the context-length guard and
 * coded errors; the ORT session is released every time.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { type LoadedModel, loadModel } from "../../src/arch/load.ts";
import { buildModel, MapWeights } from "../../src/arch/model.ts";
import { PareError } from "../../src/errors.ts";
import {
  argmaxOf,
  defaultEosIds,
  type GenerateOptions,
  generate,
  IncrementalText,
  sampleNext,
  samplingSupport,
  seededRng,
} from "../../src/eval/generate.ts";
import { loadTokenizer, type PareTokenizer } from "../../src/io/tokenizer.ts";
import { Session } from "../../src/runtime/ort.ts";
import { FAMILY_CASES } from "../families/cases.ts";
import {
  makeByteBpeTokenizerJson,
  makeTinyBert,
  makeTinyLlama,
  nonUniformLlama,
  type TinyModel,
  tensorMap,
  writeTinyModel,
} from "../helpers/tinyModels.ts";
import { referenceFamilyForward } from "../reference/families.ts";
import { referenceDecoderForward } from "../reference/forward.ts";

const PROMPT = "the cat sat on the mat";
const NEAR_TIE = 1e-4;

let root: string;
const opened: LoadedModel[] = [];

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-generate-"));
});
afterAll(() => {
  for (const m of opened) m.close();
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

/** The tiny model written as a folder (byte-level BPE tokenizer, vocab 300) and loaded back. */
function folder(name: string, tiny: TinyModel): { model: LoadedModel; tok: PareTokenizer; tiny: TinyModel } {
  const dir = path.join(root, name);
  writeTinyModel(dir, tiny, makeByteBpeTokenizerJson(300));
  const model = loadModel(dir);
  opened.push(model);
  return { model, tok: loadTokenizer(dir), tiny };
}

/** Last-position reference logits of `ids`. */
type RefLogits = (ids: number[]) => Float64Array;

function refOf(tiny: TinyModel, family: boolean): RefLogits {
  const w = tensorMap(tiny);
  return (ids) => {
    const { logits } = family
      ? referenceFamilyForward(tiny.config, w, ids)
      : referenceDecoderForward(tiny.config, w, ids);
    const V = logits.length / ids.length;
    return logits.slice((ids.length - 1) * V);
  };
}

/**
 * pare's sampled tokens equal a draw from the reference's probabilities with the same RNG stream, step by step,
 * until a draw falls within a near-tie of a cumulative-probability boundary; returns the number of steps compared.
 */
function expectSamplingMatches(
  ref: RefLogits,
  promptIds: number[],
  got: number[],
  s: { temperature: number; topK?: number; topP?: number },
  seed: number,
): number {
  const rand = seededRng(seed);
  const ids = [...promptIds];
  for (let step = 0; step < got.length; step++) {
    const support = samplingSupport(ref(ids), s);
    const u = rand();
    let cum = 0;
    let pick = -1;
    for (let i = 0; i < support.ids.length; i++) {
      if (Math.abs(u - cum) <= NEAR_TIE) return step;
      cum += support.probs[i];
      if (pick < 0 && u < cum) pick = support.ids[i];
    }
    expect(got[step], `sampled token ${step}`).toBe(pick);
    ids.push(got[step]);
  }
  return got.length;
}

/** max |a − b| / max(1, max |b|) */
function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  let scale = 1;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return d / scale;
}

/** Values of `row` sorted descending. */
const sortedDesc = (row: ArrayLike<number>) => Float64Array.from(row).sort().reverse();

/**
 * pare's greedy tokens equal the reference's argmax step by step until the reference's top-2 margin is a near-tie;
 * returns the number of steps compared.
 */
function expectGreedyMatches(ref: RefLogits, promptIds: number[], got: number[]): number {
  const ids = [...promptIds];
  for (let s = 0; s < got.length; s++) {
    const row = ref(ids);
    const top = sortedDesc(row);
    if (top[0] - top[1] <= NEAR_TIE) return s;
    expect(got[s], `greedy token ${s}`).toBe(argmaxOf(row));
    ids.push(got[s]);
  }
  return got.length;
}

// ---------------------------------------------------------------------------------------------------------
// session bookkeeping: every created session is released

let created = 0;
let released = 0;
beforeAll(() => {
  const create = Session.create.bind(Session);
  vi.spyOn(Session, "create").mockImplementation(async (...a) => {
    created++;
    return create(...a);
  });
  const release = Session.prototype.release;
  vi.spyOn(Session.prototype, "release").mockImplementation(async function (this: Session) {
    released++;
    return release.call(this);
  });
});
afterEach(() => {
  expect(released, "ORT sessions released").toBe(created);
});
afterAll(() => {
  vi.restoreAllMocks();
});

// ---------------------------------------------------------------------------------------------------------
// greedy vs the float64 references

describe("greedy generation equals the float64 reference greedy (up to the first near-tie)", () => {
  const cases: { name: string; tiny: () => TinyModel; family: boolean }[] = [
    { name: "llama (GQA)", tiny: () => makeTinyLlama({ seed: 91 }), family: false },
    {
      name: "llama, pruned-looking (per-layer heads / KV heads / FFN)",
      tiny: () => nonUniformLlama(92),
      family: false,
    },
    {
      name: "qwen2 (q/k/v biases)",
      tiny: () => makeTinyLlama({ seed: 93, modelType: "qwen2" }),
      family: false,
    },
    {
      name: "mistral (sliding window 4)",
      tiny: () => {
        const t = makeTinyLlama({ seed: 94, modelType: "mistral" });
        t.config.sliding_window = 4;
        return t;
      },
      family: false,
    },
    ...FAMILY_CASES.map((c) => ({ name: c.name, tiny: c.tiny, family: true })),
  ];
  it.each(cases)("$name", async (c) => {
    const { model, tok, tiny } = folder(`greedy-${c.name.replace(/\W+/g, "_")}`, c.tiny());
    const rows: Float32Array[] = [];
    const r = await generate(model, tok, {
      prompt: PROMPT,
      maxNewTokens: 16,
      eosIds: [],
      onLogits: (row, step) => {
        expect(step).toBe(rows.length);
        rows.push(Float32Array.from(row));
      },
    });
    expect(r.promptIds).toEqual(tok.encode(PROMPT));
    // every step's logits (prefill, then each cached step) equal the reference's on the same prefix
    const ref = refOf(tiny, c.family);
    expect(rows).toHaveLength(16);
    rows.forEach((row, s) => {
      expect(relDiff(row, ref([...r.promptIds, ...r.ids.slice(0, s)])), `logits of step ${s}`).toBeLessThan(
        1e-4,
      );
    });
    expect(r.ids).toHaveLength(16);
    expect(r.stopReason).toBe("length");
    const compared = expectGreedyMatches(ref, r.promptIds, r.ids);
    expect(compared, "steps compared before a near-tie").toBeGreaterThanOrEqual(6);
    expect(r.text).toBe(tok.decode(r.ids, true));
    expect(r.tokensPerSecond).toBeGreaterThan(0);
    expect(r.prefillSeconds).toBeGreaterThan(0);
    expect(r.decodeSeconds).toBeGreaterThan(0);
    // sampling, which depends on every probability and not only on the argmax, with the same RNG stream
    const s = { temperature: 0.8, topK: 40, topP: 0.95 };
    const sampled = await generate(model, tok, {
      prompt: PROMPT,
      maxNewTokens: 16,
      eosIds: [],
      seed: 17,
      ...s,
    });
    const n = expectSamplingMatches(ref, sampled.promptIds, sampled.ids, s, 17);
    expect(n, "sampled steps compared before a near-boundary draw").toBeGreaterThanOrEqual(6);
  });
});

// ---------------------------------------------------------------------------------------------------------
// one llama for the rest

describe("generate on a tiny llama", () => {
  let model: LoadedModel;
  let tok: PareTokenizer;
  let tiny: TinyModel;
  let greedy: number[];
  const base: GenerateOptions = { prompt: PROMPT, maxNewTokens: 24, eosIds: [] };
  beforeAll(async () => {
    ({ model, tok, tiny } = folder("llama", makeTinyLlama({ seed: 95 })));
    greedy = (await generate(model, tok, base)).ids;
  });

  it("sampling: the same seed gives the same tokens, different seeds differ", async () => {
    const s = { ...base, temperature: 1.0 };
    const a = await generate(model, tok, { ...s, seed: 1 });
    const b = await generate(model, tok, { ...s, seed: 1 });
    const c = await generate(model, tok, { ...s, seed: 2 });
    expect(b.ids).toEqual(a.ids);
    expect(b.text).toBe(a.text);
    expect(c.ids).not.toEqual(a.ids);
    expect(a.ids).not.toEqual(greedy);
  });

  it("a prompt prefilled in chunks gives the same tokens and logits", async () => {
    const a: Float32Array[] = [];
    const b: Float32Array[] = [];
    const keep = (to: Float32Array[]) => (row: Float32Array) => void to.push(Float32Array.from(row));
    const whole = await generate(model, tok, { ...base, maxNewTokens: 6, onLogits: keep(a) });
    const chunked = await generate(model, tok, {
      ...base,
      maxNewTokens: 6,
      prefillChunk: 2,
      onLogits: keep(b),
    });
    expect(whole.promptIds.length).toBeGreaterThan(4);
    expect(chunked.ids).toEqual(whole.ids);
    for (const [s, row] of a.entries()) expect(relDiff(b[s], row), `step ${s}`).toBeLessThan(1e-5);
  });

  it("topK = 1 at any temperature equals greedy", async () => {
    const r = await generate(model, tok, { ...base, temperature: 1.7, topK: 1, seed: 3 });
    expect(r.ids).toEqual(greedy);
  });

  it("sampling stays within the top-k support (reference top-k, boundary not a near-tie)", async () => {
    const K = 3;
    const ref = refOf(tiny, false);
    for (const seed of [4, 5]) {
      const r = await generate(model, tok, { ...base, maxNewTokens: 16, temperature: 2, topK: K, seed });
      const ids = [...r.promptIds];
      let checked = 0;
      for (const next of r.ids) {
        const row = ref(ids);
        const top = sortedDesc(row);
        if (top[K - 1] - top[K] > NEAR_TIE) {
          expect(row[next], `token ${next} outside the top ${K}`).toBeGreaterThanOrEqual(top[K - 1]);
          checked++;
        }
        ids.push(next);
      }
      expect(checked).toBeGreaterThan(10);
    }
  });

  it("sampling stays within the top-p support (reference nucleus, boundary not a near-tie)", async () => {
    const T = 0.7;
    const p = 0.6;
    const ref = refOf(tiny, false);
    const r = await generate(model, tok, { ...base, maxNewTokens: 16, temperature: T, topP: p, seed: 6 });
    const ids = [...r.promptIds];
    let checked = 0;
    for (const next of r.ids) {
      const row = ref(ids);
      const max = Math.max(...row);
      const e = Array.from(row, (x) => Math.exp((x - max) / T));
      const z = e.reduce((a, b) => a + b, 0);
      const order = e.map((v, j) => [v / z, j]).sort((a, b) => b[0] - a[0]);
      const allowed = new Set<number>();
      let cum = 0;
      let ambiguous = false;
      for (const [q, j] of order) {
        if (allowed.size > 0 && cum >= p) break;
        allowed.add(j);
        cum += q;
        if (Math.abs(cum - p) < NEAR_TIE) ambiguous = true;
      }
      if (!ambiguous) {
        expect(allowed.has(next), `token ${next} outside the top-p set ${[...allowed]}`).toBe(true);
        checked++;
      }
      ids.push(next);
    }
    expect(checked).toBeGreaterThan(10);
  });

  it("stops at an EOS id (given, or config.json's eos_token_id list) and leaves it out of the text", async () => {
    const stop = greedy[3];
    const at = greedy.indexOf(stop);
    const r = await generate(model, tok, { ...base, eosIds: [stop] });
    expect(r.stopReason).toBe("eos");
    expect(r.ids).toEqual(greedy.slice(0, at + 1));
    expect(r.text).toBe(tok.decode(greedy.slice(0, at), true));
    // default stop ids: the tokenizer's </s> and every id of a config list
    const listed = { ...model, config: { ...model.config, eos_token_id: [299, stop] } };
    expect(defaultEosIds(listed, tok).sort((a, b) => a - b)).toEqual([2, 299, stop].sort((a, b) => a - b));
    const d = await generate(listed, tok, { prompt: PROMPT, maxNewTokens: 24 });
    expect(d.ids).toEqual(r.ids);
    expect(d.stopReason).toBe("eos");
  });

  it("an empty prompt starts from BOS; without a BOS it is a coded error", async () => {
    const r = await generate(model, tok, { prompt: "", maxNewTokens: 5, eosIds: [] });
    expect(r.promptIds).toEqual([tok.bosId]);
    expect(r.ids).toHaveLength(5);
    const ref = referenceDecoderForward(tiny.config, tensorMap(tiny), [1]).logits;
    expect(r.ids[0]).toBe(argmaxOf(ref));
    const noBos: PareTokenizer = { ...tok, bosId: undefined };
    const e = await generate(model, noBos, { prompt: "" }).catch((x) => x);
    expect(e).toBeInstanceOf(PareError);
    expect(e.code).toBe("E_USAGE");
    expect(e.message).toMatch(/BOS/);
  });

  it("streaming: one callback per new token, deltas concatenate to the text", async () => {
    for (const o of [{}, { temperature: 1.2, seed: 8 }]) {
      const deltas: string[] = [];
      const seen: number[] = [];
      const r = await generate(model, tok, {
        ...base,
        ...o,
        onToken: (d, id) => {
          deltas.push(d);
          seen.push(id);
        },
      });
      expect(deltas.join("")).toBe(r.text);
      expect(seen.slice(0, r.ids.length)).toEqual(r.ids);
    }
  });

  it("abort: stops between tokens with E_INTERRUPTED, and an already aborted signal starts nothing", async () => {
    const ac = new AbortController();
    let n = 0;
    const e = await generate(model, tok, {
      ...base,
      signal: ac.signal,
      onToken: () => {
        if (++n === 3) ac.abort();
      },
    }).catch((x) => x);
    expect(e).toBeInstanceOf(PareError);
    expect(e.code).toBe("E_INTERRUPTED");
    expect(n).toBe(3);
    const before = created;
    const e2 = await generate(model, tok, { ...base, signal: AbortSignal.abort() }).catch((x) => x);
    expect(e2.code).toBe("E_INTERRUPTED");
    expect(created).toBe(before);
  });

  it("a throwing callback still releases the session", async () => {
    const e = await generate(model, tok, {
      ...base,
      onToken: () => {
        throw new Error("consumer failed");
      },
    }).catch((x) => x);
    expect(e.message).toBe("consumer failed");
  });

  it("context length: the continuation stops at max_position_embeddings; a prompt filling it is an error", async () => {
    const maxPos = model.dims.maxPos; // 128
    const promptIds = [1, ...Array.from({ length: maxPos - 9 }, (_, i) => 3 + (i % 200))];
    const r = await generate(model, tok, { promptIds, maxNewTokens: 64, eosIds: [] });
    expect(r.ids).toHaveLength(maxPos - promptIds.length);
    expect(r.stopReason).toBe("context");
    expect(r.notes.join(" ")).toMatch(/max_position_embeddings 128/);
    const full = Array.from({ length: maxPos }, () => 5);
    const e = await generate(model, tok, { promptIds: full }).catch((x) => x);
    expect(e.code).toBe("E_USAGE");
    expect(e.message).toMatch(/max_position_embeddings/);
  });

  it("bad options are E_USAGE with a hint; an encoder is refused", async () => {
    const bad: GenerateOptions[] = [
      { topP: 0 },
      { topP: 1.5 },
      { temperature: -1 },
      { temperature: Number.NaN },
      { maxNewTokens: 0 },
      { maxNewTokens: 2.5 },
      { topK: -1 },
      { topK: 1.5 },
      { seed: -1 },
      { prefillChunk: 0 },
      { promptIds: [] },
      { promptIds: [1, 300] },
    ];
    for (const o of bad) {
      const e = await generate(model, tok, { prompt: PROMPT, ...o }).catch((x) => x);
      expect(e, JSON.stringify(o)).toBeInstanceOf(PareError);
      expect(e.code, JSON.stringify(o)).toBe("E_USAGE");
      expect(e.hint.length).toBeGreaterThan(0);
    }
    const bertTiny = makeTinyBert({ seed: 96 });
    const bert = buildModel(bertTiny.config, new MapWeights(tensorMap(bertTiny)));
    const e = await generate(bert, tok, { prompt: PROMPT }).catch((x) => x);
    expect(e.code).toBe("E_USAGE");
    expect(e.message).toMatch(/decoder/);
  });
});

// ---------------------------------------------------------------------------------------------------------
// the pieces

describe("sampling support", () => {
  const row = [2, 1, 0.5, 0.4, -1, 3, 0.5];
  it("top-k keeps the k largest (ties: lower id first), renormalized", () => {
    const s = samplingSupport(row, { temperature: 1, topK: 3 });
    expect(s.ids).toEqual([5, 0, 1]);
    const e = [3, 2, 1].map(Math.exp);
    const z = e.reduce((a, b) => a + b, 0);
    expect(Array.from(s.probs)).toEqual(e.map((x) => expect.closeTo(x / z, 12)));
    expect(samplingSupport(row, { temperature: 1, topK: 4 }).ids).toEqual([5, 0, 1, 2]);
    // the large-k path (full sort) agrees with the insertion path
    const big = Array.from({ length: 500 }, (_, i) => Math.sin(i * 12.9898) * 4);
    const a = samplingSupport(big, { temperature: 0.9, topK: 64 }).ids;
    const b = samplingSupport(big, { temperature: 0.9, topK: 65 }).ids;
    expect(b.slice(0, 64)).toEqual(a);
  });

  it("top-p keeps the shortest prefix whose probability reaches p", () => {
    const T = 0.5;
    const e = row.map((x) => Math.exp(x / T));
    const z = e.reduce((a, b) => a + b, 0);
    const p5 = e[5] / z;
    const p0 = e[0] / z;
    expect(samplingSupport(row, { temperature: T, topP: p5 - 1e-9 }).ids).toEqual([5]);
    expect(samplingSupport(row, { temperature: T, topP: p5 + 1e-9 }).ids).toEqual([5, 0]);
    expect(samplingSupport(row, { temperature: T, topP: p5 + p0 + 1e-9 }).ids).toEqual([5, 0, 1]);
    expect(samplingSupport(row, { temperature: T, topP: 1 }).ids).toHaveLength(row.length);
    // top-k first, then top-p within it
    expect(samplingSupport(row, { temperature: T, topK: 2, topP: 0.999999 }).ids).toEqual([5, 0]);
  });

  it("draws only from the support, with its probabilities; temperature 0 is argmax", () => {
    const rand = seededRng(11);
    const s = { temperature: 1, topK: 3, topP: 0.9 };
    const support = samplingSupport(row, s);
    const counts = new Map<number, number>();
    const N = 20000;
    for (let i = 0; i < N; i++) {
      const id = sampleNext(row, s, rand);
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    expect([...counts.keys()].sort()).toEqual([...support.ids].sort());
    for (const [i, id] of support.ids.entries())
      expect((counts.get(id) ?? 0) / N).toBeCloseTo(support.probs[i], 1);
    expect(sampleNext(row, { temperature: 0, topK: 3 }, rand)).toBe(5);
  });

  it("the seeded RNG is reproducible and seed-dependent (also above 2^32)", () => {
    const take = (seed: number) => {
      const r = seededRng(seed);
      return Array.from({ length: 5 }, () => r());
    };
    expect(take(7)).toEqual(take(7));
    expect(take(7)).not.toEqual(take(8));
    expect(take(2 ** 32 + 7)).not.toEqual(take(7));
    for (const u of take(123)) expect(u >= 0 && u < 1).toBe(true);
  });
});

describe("incremental text", () => {
  it("multi-byte characters spelled by byte tokens are emitted only when complete", () => {
    const { tok } = folder("bytes", makeTinyLlama({ seed: 97 }));
    const text = "hé€ the cat 🐈!";
    const ids = tok.encode(text, { addSpecialTokens: false });
    const stream = new IncrementalText(tok, [1]);
    const deltas: string[] = [];
    for (let k = 1; k <= ids.length; k++) deltas.push(stream.push(ids.slice(0, k)));
    expect(deltas.join("")).toBe(text);
    for (const d of deltas) expect(d).not.toMatch(/\uFFFD/);
    expect(deltas.filter((d) => d === "").length).toBeGreaterThanOrEqual(5); // é: 1, €: 2, 🐈: 3 held back
    // an incomplete character at the very end comes out on the final push
    const cut = tok.encode("a€", { addSpecialTokens: false }).slice(0, -1);
    const s2 = new IncrementalText(tok, [1]);
    expect(s2.push(cut.slice(0, 1))).toBe("a");
    expect(s2.push(cut)).toBe("");
    expect(s2.push(cut, true)).toBe("\uFFFD");
  });

  it("the continuation reads after the prompt's last tokens", () => {
    const { tok } = folder("context", makeTinyLlama({ seed: 98 }));
    const all = tok.encode("the cat sat on the mat");
    const stream = new IncrementalText(tok, all.slice(0, 4));
    expect(stream.text(all.slice(4))).toBe(
      tok.decode(all, true).slice(tok.decode(all.slice(0, 4), true).length),
    );
  });
});
