/**
 * pare's ONNX export loaded by @huggingface/transformers (transformers.js, onnxruntime-node backend) from local
 * folders only: model forward logits against pare's own forward, `text-generation` greedy against pare's greedy
 * with the exported KV-cache graph, `text-classification` labels against pare's predictions. Tiny seeded models
 * always; the trained fixtures in ../shared/models (pruned here with runPrune) when ../shared exists.
 *
 * transformers.js is kept offline and inside the temp folder: allowRemoteModels false, cacheDir in the temp folder,
 * no browser / FS caches, and `fetch` is replaced by a stub that records and refuses every call.
 *
 * Set PARE_DIFF_REPORT=<file> to have the observed maximum differences written there as JSON (nothing is printed).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type LoadedModel, loadModel } from "../../src/arch/load.ts";
import type { Model } from "../../src/arch/model.ts";
import { Runner } from "../../src/eval/runner.ts";
import { exportOnnx } from "../../src/export/onnx.ts";
import { loadTokenizer, type PareTokenizer } from "../../src/io/tokenizer.ts";
import { emitModelGraph } from "../../src/onnx/emit.ts";
import { runPrune } from "../../src/pipeline/prune.ts";
import { resolveRecipe } from "../../src/pipeline/recipe.ts";
import { f32, type HostTensor, i64From, Session } from "../../src/runtime/ort.ts";
import { FAMILY_CASES } from "../families/cases.ts";
import { REPO_ROOT } from "../helpers/cli.ts";
import {
  makeByteBpeTokenizerJson,
  makeTinyBert,
  makeTinyLlama,
  makeWordPieceTokenizerJson,
  nonUniformLlama,
  writeTinyModel,
} from "../helpers/tinyModels.ts";

type TransformersModule = typeof import("@huggingface/transformers");

const observed: Record<string, number> = {};

/** max |a − b| (lengths must agree; NaN propagates); recorded under `label` (keeps the largest). */
function diff(label: string, a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length, `${label}: length`).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) {
    const x = Math.abs(a[i] - b[i]);
    if (!(x <= d)) d = x;
  }
  observed[label] = Math.max(observed[label] ?? 0, d);
  return d;
}

function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

// ---------------------------------------------------------------------------------------------------------
// transformers.js, offline and confined to the temp folder

let ROOT: string;
/** exported folders live here; transformers.js' localModelPath */
let MODELS: string;
let T: TransformersModule;
const fetchCalls: string[] = [];
/** where transformers.js would cache by default (inside its package): must not appear */
const DEFAULT_CACHE = path.join(REPO_ROOT, "node_modules/@huggingface/transformers/.cache");
const HAD_DEFAULT_CACHE = fs.existsSync(DEFAULT_CACHE);

beforeAll(async () => {
  ROOT = fs.mkdtempSync(path.join(os.tmpdir(), "pare-tjs-"));
  MODELS = path.join(ROOT, "models");
  fs.mkdirSync(MODELS);
  vi.stubGlobal("fetch", async (input: unknown) => {
    fetchCalls.push(String(input instanceof Request ? input.url : input));
    throw new Error("network access is not allowed in this test");
  });
  T = await import("@huggingface/transformers");
  T.env.allowRemoteModels = false;
  T.env.allowLocalModels = true;
  T.env.localModelPath = MODELS;
  T.env.cacheDir = path.join(ROOT, "cache");
  T.env.useBrowserCache = false;
  T.env.useFSCache = false;
  T.env.useWasmCache = false;
  T.env.logLevel = T.LogLevel.ERROR;
});

afterAll(() => {
  vi.unstubAllGlobals();
  const file = process.env.PARE_DIFF_REPORT;
  if (file && Object.keys(observed).length > 0)
    fs.writeFileSync(file, `${JSON.stringify(observed, null, 2)}\n`);
  if (ROOT) fs.rmSync(ROOT, { recursive: true, force: true });
});

/** Loads a pare model folder, exports it to MODELS/<name>; returns the loaded source model (caller closes it). */
function exportAs(srcDir: string, name: string): LoadedModel {
  const m = loadModel(srcDir);
  exportOnnx(m, path.join(MODELS, name));
  return m;
}

interface TjsTensor {
  dims: number[];
  data: ArrayLike<number> | BigInt64Array;
  tolist(): unknown[];
}

const int64 = (dims: number[], values: number[]) =>
  new T.Tensor(
    "int64",
    BigInt64Array.from(values, (x) => BigInt(x)),
    dims,
  );

const idsOf = (t: TjsTensor): number[][] => (t.tolist() as bigint[][]).map((row) => row.map(Number));

// ---------------------------------------------------------------------------------------------------------
// pare's side

/** pare's own full forward (emitModelGraph): logits [1, T, V] of one sequence. */
async function pareDecoderLogits(model: Model, ids: number[]): Promise<Float32Array> {
  const s = await Session.create(emitModelGraph(model), { threads: 1 });
  try {
    const r = await s.run({ input_ids: i64From([1, ids.length], ids) }, ["logits"]);
    return r.logits.data as Float32Array;
  } finally {
    await s.release();
  }
}

/**
 * pare's greedy decoding with the exported KV-cache graph (onnx/model.onnx run by onnxruntime-node through
 * pare's Session): the prompt as the prefill, then one token per step; stops after `eos` like generate() does.
 * Returns the new ids (an eos included).
 */
async function pareCachedGreedy(
  exported: string,
  model: Model,
  prompt: number[],
  steps: number,
  eos?: number,
): Promise<number[]> {
  const s = await Session.create(path.join(exported, "onnx", "model.onnx"), { threads: 1 });
  try {
    const V = model.dims.vocab;
    let past: Record<string, HostTensor> = {};
    model.dims.layers.forEach((L, i) => {
      for (const kv of ["key", "value"])
        past[`past_key_values.${i}.${kv}`] = f32([1, L.nKv, 0, model.dims.headDim], new Float32Array(0));
    });
    let block = prompt;
    let P = 0;
    const out: number[] = [];
    for (let step = 0; step < steps; step++) {
      const n = block.length;
      const r = await s.run({
        input_ids: i64From([1, n], block),
        attention_mask: i64From([1, P + n], new Array(P + n).fill(1)),
        position_ids: i64From(
          [1, n],
          block.map((_, t) => P + t),
        ),
        ...past,
      });
      const next = argmax((r.logits.data as Float32Array).subarray((n - 1) * V, n * V));
      out.push(next);
      if (next === eos) break;
      past = {};
      for (let i = 0; i < model.dims.nLayers; i++)
        for (const kv of ["key", "value"]) past[`past_key_values.${i}.${kv}`] = r[`present.${i}.${kv}`];
      P += n;
      block = [next];
    }
    return out;
  } finally {
    await s.release();
  }
}

/** pare's classification logits (Runner.classify, right-padded batch) and argmax labels. */
async function pareClassify(
  model: Model,
  tok: PareTokenizer,
  texts: string[],
  pairs?: string[],
): Promise<{ logits: Float32Array[]; labels: string[] }> {
  const runner = await Runner.create(model, { threads: 1 });
  try {
    const logits = await runner.classify(
      texts.map((t, i) => tok.encodeWithTypes(t, pairs?.[i])),
      tok.padId ?? 0,
    );
    const id2label = model.config.id2label as Record<string, string>;
    return { logits, labels: logits.map((l) => id2label[String(argmax(l))]) };
  } finally {
    await runner.close();
  }
}

// ---------------------------------------------------------------------------------------------------------
// the checks (shared by the tiny and the fixture models)

interface GenerationCheck {
  name: string;
  /** exported folder name under MODELS */
  folder: string;
  model: LoadedModel;
  tok: PareTokenizer;
  prompt: string;
  newTokens: number;
}

async function checkCausalLmLogits(c: GenerationCheck, texts: string[]): Promise<void> {
  const lm = await T.AutoModelForCausalLM.from_pretrained(c.folder, { dtype: "fp32" });
  try {
    for (const text of texts) {
      const ids = c.tok.encode(text);
      const n = ids.length;
      const out = (await lm({
        input_ids: int64([1, n], ids),
        attention_mask: int64(
          [1, n],
          ids.map(() => 1),
        ),
      })) as {
        logits: TjsTensor;
      };
      expect(out.logits.dims).toEqual([1, n, c.model.dims.vocab]);
      const want = await pareDecoderLogits(c.model, ids);
      expect(
        diff(`${c.name}: transformers.js logits vs pare`, out.logits.data as Float32Array, want),
      ).toBeLessThan(1e-3);
    }
  } finally {
    await lm.dispose();
  }
}

async function checkTextGeneration(c: GenerationCheck): Promise<void> {
  const gen = await T.pipeline("text-generation", c.folder, { dtype: "fp32" });
  try {
    const promptIds = c.tok.encode(c.prompt);
    // the pipeline's tokenizer gives the same prompt ids as pare's
    const enc = gen.tokenizer(c.prompt) as unknown as { input_ids: TjsTensor; attention_mask: TjsTensor };
    expect(idsOf(enc.input_ids)[0]).toEqual(promptIds);
    const pare = await pareCachedGreedy(
      path.join(MODELS, c.folder),
      c.model,
      promptIds,
      c.newTokens,
      c.tok.eosId,
    );
    // the seeds are chosen so that no eos comes early: all new tokens are compared
    expect(pare).toHaveLength(c.newTokens);
    // generate(): the same ids
    const ids = (await gen.model.generate({
      ...enc,
      do_sample: false,
      max_new_tokens: c.newTokens,
    } as never)) as unknown as TjsTensor;
    expect(idsOf(ids)[0]).toEqual([...promptIds, ...pare]);
    // the pipeline: the same text (decoded with pare's tokenizer, special tokens skipped)
    const out = (await gen(c.prompt, { do_sample: false, max_new_tokens: c.newTokens })) as unknown as {
      generated_text: string;
    }[];
    expect(out).toHaveLength(1);
    expect(out[0].generated_text).toBe(c.tok.decode([...promptIds, ...pare], true));
  } finally {
    await gen.dispose();
  }
}

interface ClassificationCheck {
  name: string;
  folder: string;
  model: LoadedModel;
  tok: PareTokenizer;
}

async function checkSequenceClassification(
  c: ClassificationCheck,
  texts: string[],
  pairs?: string[],
): Promise<Float32Array[]> {
  const tokenizer = await T.AutoTokenizer.from_pretrained(c.folder);
  const clf = await T.AutoModelForSequenceClassification.from_pretrained(c.folder, { dtype: "fp32" });
  try {
    const inputs = tokenizer(texts, {
      padding: true,
      truncation: true,
      ...(pairs ? { text_pair: pairs } : {}),
    }) as {
      input_ids: TjsTensor;
      attention_mask: TjsTensor;
      token_type_ids: TjsTensor;
    };
    // transformers.js tokenizes like pare (ids and segment ids, right padding)
    const ids = idsOf(inputs.input_ids);
    const mask = idsOf(inputs.attention_mask);
    const types = idsOf(inputs.token_type_ids);
    texts.forEach((t, b) => {
      const e = c.tok.encodeWithTypes(t, pairs?.[b]);
      const n = mask[b].reduce((a, x) => a + x, 0);
      expect(ids[b].slice(0, n), `ids of text ${b}`).toEqual(e.ids);
      expect(types[b].slice(0, n), `token types of text ${b}`).toEqual(e.typeIds);
    });
    const out = (await clf(inputs)) as { logits: TjsTensor };
    const C = c.model.dims.numLabels;
    expect(out.logits.dims).toEqual([texts.length, C]);
    const pare = await pareClassify(c.model, c.tok, texts, pairs);
    const got = Array.from({ length: texts.length }, (_, b) =>
      (out.logits.data as Float32Array).slice(b * C, (b + 1) * C),
    );
    expect(
      diff(
        `${c.name}: transformers.js classification logits vs pare`,
        got.flatMap((x) => [...x]),
        pare.logits.flatMap((x) => [...x]),
      ),
    ).toBeLessThan(1e-3);
    return pare.logits;
  } finally {
    await clf.dispose();
  }
}

async function checkTextClassificationPipeline(c: ClassificationCheck, texts: string[]): Promise<string[]> {
  const pipe = await T.pipeline("text-classification", c.folder, { dtype: "fp32" });
  try {
    const out = (await pipe(texts)) as unknown as { label: string; score: number }[];
    expect(out).toHaveLength(texts.length);
    const pare = await pareClassify(c.model, c.tok, texts);
    expect(out.map((o) => o.label)).toEqual(pare.labels);
    // the score is the softmax of the winning class
    const scores = pare.logits.map((l) => {
      const m = Math.max(...l);
      const z = l.reduce((a, x) => a + Math.exp(x - m), 0);
      return 1 / z;
    });
    expect(
      diff(
        `${c.name}: text-classification scores vs pare`,
        out.map((o) => o.score),
        scores,
      ),
    ).toBeLessThan(1e-3);
    return pare.labels;
  } finally {
    await pipe.dispose();
  }
}

// ---------------------------------------------------------------------------------------------------------
// tiny seeded models

const TINY_TEXTS = ["the cat sat on the mat", "Once upon a time, in a land far away, there was a cat."];

describe.each([
  {
    name: "tiny llama GQA, non-uniform per-layer widths",
    folder: "tiny-llama-nonuniform",
    tiny: () => nonUniformLlama(71),
  },
  { name: "tiny uniform llama", folder: "tiny-llama-uniform", tiny: () => makeTinyLlama({ seed: 72 }) },
])("transformers.js on the exported $name", ({ name, folder, tiny }) => {
  let c: GenerationCheck;
  beforeAll(() => {
    const src = path.join(ROOT, `src-${folder}`);
    writeTinyModel(src, tiny(), makeByteBpeTokenizerJson(300));
    c = {
      name,
      folder,
      model: exportAs(src, folder),
      tok: loadTokenizer(src),
      prompt: TINY_TEXTS[0],
      newTokens: 10,
    };
  });
  afterAll(() => c?.model.close());

  it("AutoModelForCausalLM: logits equal pare's forward (≤ 1e-3)", async () => {
    await checkCausalLmLogits(c, TINY_TEXTS);
  });

  it("pipeline('text-generation') greedy, 10 new tokens: the same ids and text as pare's KV-cache greedy", async () => {
    await checkTextGeneration(c);
  });
});

// the families added as specs (Qwen3, Gemma 2, Gemma 3, Phi-3): the dense tiny model and a pare-pruned one
// (global allocation: per-layer widths, read by transformers.js from the graph's KV shapes)
const FAMILY_CALIB =
  `${TINY_TEXTS.join(" ")} The birds looked back at the cat in the garden, and nobody knew why.\n`.repeat(6);

describe.each(
  FAMILY_CASES.filter((c, i) => FAMILY_CASES.findIndex((d) => d.family === c.family) === i).flatMap((c) => [
    { ...c, pruned: false },
    { ...c, pruned: true },
  ]),
)("transformers.js on the exported tiny $family (pruned: $pruned)", (fc) => {
  let c: GenerationCheck;
  beforeAll(async () => {
    const folder = `tiny-${fc.family}${fc.pruned ? "-pruned" : ""}`;
    let src = path.join(ROOT, `src-${folder}`);
    writeTinyModel(src, fc.tiny(), makeByteBpeTokenizerJson(300));
    if (fc.pruned) {
      const calib = path.join(ROOT, `calib-${folder}.txt`);
      fs.writeFileSync(calib, FAMILY_CALIB);
      const out = path.join(ROOT, `pruned-${folder}`);
      await runPrune(
        resolveRecipe({ model: src, out, calib: [calib], ratio: 0.4, samples: 6, seqLen: 16, threads: 1 }),
      );
      src = out;
    }
    c = {
      name: folder,
      folder,
      model: exportAs(src, folder),
      tok: loadTokenizer(src),
      prompt: TINY_TEXTS[0],
      newTokens: 10,
    };
  });
  afterAll(() => c?.model.close());

  it("AutoModelForCausalLM: logits equal pare's forward (≤ 1e-3), inputs longer than the sliding window", async () => {
    await checkCausalLmLogits(c, TINY_TEXTS);
  });

  it("pipeline('text-generation') greedy, 10 new tokens: the same ids and text as pare's KV-cache greedy", async () => {
    await checkTextGeneration(c);
  });
});

// depth-pruned models (--depth): fewer layers, renumbered tensors, compensated down projections (llama: with the
// created mlp_bias), explicit layer_types (gemma3: sliding layers)
describe.each([
  { family: "llama", tiny: () => makeTinyLlama({ seed: 73, layers: 4 }), reconstruct: "liar" as const },
  {
    family: "gemma3",
    tiny: () => FAMILY_CASES.find((c) => c.family === "gemma3_text")!.tiny(),
    reconstruct: "none" as const,
  },
])("transformers.js on a depth-pruned tiny $family (--depth 1, $reconstruct)", (dc) => {
  let c: GenerationCheck;
  beforeAll(async () => {
    const folder = `tiny-${dc.family}-depth`;
    const src = path.join(ROOT, `src-${folder}`);
    writeTinyModel(src, dc.tiny(), makeByteBpeTokenizerJson(300));
    const calib = path.join(ROOT, `calib-${folder}.txt`);
    fs.writeFileSync(calib, FAMILY_CALIB);
    const out = path.join(ROOT, `pruned-${folder}`);
    const r = await runPrune(
      resolveRecipe({
        model: src,
        out,
        calib: [calib],
        depth: 1,
        skipLayers: [0],
        reconstruct: dc.reconstruct,
        samples: 6,
        seqLen: 16,
        threads: 1,
      }),
    );
    expect(r.depth!.removed).toHaveLength(1);
    c = {
      name: folder,
      folder,
      model: exportAs(out, folder),
      tok: loadTokenizer(out),
      prompt: TINY_TEXTS[0],
      newTokens: 10,
    };
  });
  afterAll(() => c?.model.close());

  it("AutoModelForCausalLM: logits equal pare's forward (≤ 1e-3)", async () => {
    await checkCausalLmLogits(c, TINY_TEXTS);
  });

  it("pipeline('text-generation') greedy, 10 new tokens: the same ids and text as pare's KV-cache greedy", async () => {
    await checkTextGeneration(c);
  });
});

const BERT_WORDS = [
  "the",
  "movie",
  "was",
  "good",
  "bad",
  "great",
  "boring",
  "film",
  "a",
  "not",
  "very",
  "plot",
];
const BERT_TEXTS = [
  "the movie was good",
  "a very boring film, not great",
  "bad plot",
  "the film was not very bad and the plot was great!",
  "good good good",
  "boring",
];

describe("transformers.js on the exported tiny BERT classifier (per-layer heads 4/2, 3 labels)", () => {
  let c: ClassificationCheck;
  beforeAll(() => {
    const src = path.join(ROOT, "src-tiny-bert");
    const tiny = makeTinyBert({
      seed: 73,
      vocab: 120,
      numLabels: 3,
      perLayer: { heads: [4, 2], intermediate: [64, 40] },
    });
    tiny.config.pare_layer_widths = [
      { num_attention_heads: 4, num_key_value_heads: 4, intermediate_size: 64 },
      { num_attention_heads: 2, num_key_value_heads: 2, intermediate_size: 40 },
    ];
    writeTinyModel(src, tiny, makeWordPieceTokenizerJson(BERT_WORDS));
    c = {
      name: "tiny bert",
      folder: "tiny-bert",
      model: exportAs(src, "tiny-bert"),
      tok: loadTokenizer(src),
    };
  });
  afterAll(() => c?.model.close());

  it("AutoModelForSequenceClassification: logits equal pare's (≤ 1e-3), single texts and text pairs", async () => {
    await checkSequenceClassification(c, BERT_TEXTS);
    await checkSequenceClassification(c, BERT_TEXTS.slice(0, 3), BERT_TEXTS.slice(3));
  });

  it("pipeline('text-classification'): labels equal pare's argmax labels (id2label)", async () => {
    const labels = await checkTextClassificationPipeline(c, BERT_TEXTS);
    expect(labels.every((l) => /^LABEL_[0-2]$/.test(l))).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------------------
// the trained fixtures, pruned (when ../shared exists)

const SHARED = path.resolve(REPO_ROOT, "../shared");
/** what the fixture part reads; all of it must be there (else the part skips) */
const SHARED_FILES = [
  "models/llama-gqa-6l/config.json",
  "models/bert-sst2-4l/config.json",
  "data/wikitext-2/tokens-v1/wiki.valid.tokens",
  "data/sst2/stsa.binary.train",
  "data/sst2/stsa.binary.dev",
];
const HAVE_SHARED = SHARED_FILES.every((f) => fs.existsSync(path.join(SHARED, f)));

/** SST-2 lines "<label> <sentence>" → sentences. */
const sst2Sentences = (file: string): string[] =>
  fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => l.replace(/^\s*\d+\s+/, ""));

describe.skipIf(!HAVE_SHARED)(
  HAVE_SHARED
    ? "transformers.js on ../shared fixtures pruned by pare (ratio 0.3, flap-wifv, global, liar)"
    : "../shared not found: skipped",
  () => {
    let llama: GenerationCheck;
    let bert: ClassificationCheck;

    beforeAll(async () => {
      const wiki = fs
        .readFileSync(path.join(SHARED, "data/wikitext-2/tokens-v1/wiki.valid.tokens"), "utf8")
        .split("\n")
        .filter((l) => l.trim() !== "" && !l.trim().startsWith("="))
        .slice(0, 300);
      const wikiFile = path.join(ROOT, "calib-wiki.txt");
      fs.writeFileSync(wikiFile, `${wiki.join("\n")}\n`);
      const sst = sst2Sentences(path.join(SHARED, "data/sst2/stsa.binary.train")).slice(0, 300);
      const sstFile = path.join(ROOT, "calib-sst2.txt");
      fs.writeFileSync(sstFile, `${sst.join("\n")}\n`);
      const prune = async (name: string, calib: string) => {
        const out = path.join(ROOT, `pruned-${name}`);
        await runPrune(
          resolveRecipe({
            model: path.join(SHARED, "models", name),
            out,
            ratio: 0.3,
            criterion: "flap-wifv",
            allocation: "global",
            reconstruct: "liar",
            samples: 16,
            seqLen: 128,
            calib: [calib],
          }),
        );
        return out;
      };
      const llamaDir = await prune("llama-gqa-6l", wikiFile);
      const bertDir = await prune("bert-sst2-4l", sstFile);
      llama = {
        name: "pruned llama-gqa-6l",
        folder: "pruned-llama",
        model: exportAs(llamaDir, "pruned-llama"),
        tok: loadTokenizer(llamaDir),
        prompt: "Once upon a time",
        newTokens: 20,
      };
      bert = {
        name: "pruned bert-sst2-4l",
        folder: "pruned-bert",
        model: exportAs(bertDir, "pruned-bert"),
        tok: loadTokenizer(bertDir),
      };
    }, 120_000);
    afterAll(() => {
      llama?.model.close();
      bert?.model.close();
    });

    it("the pruned llama has non-uniform widths (what the export must carry)", () => {
      const widths = new Set(llama.model.dims.layers.map((l) => `${l.nHeads}/${l.nKv}/${l.ffn}`));
      expect(widths.size).toBeGreaterThan(1);
    });

    it("llama: AutoModelForCausalLM logits equal pare's forward (≤ 1e-3)", async () => {
      const valid = fs
        .readFileSync(path.join(SHARED, "data/wikitext-2/tokens-v1/wiki.valid.tokens"), "utf8")
        .split("\n")
        .filter((l) => l.trim().length > 200)
        .slice(-1)
        .map((l) => l.trim().slice(0, 400));
      await checkCausalLmLogits(llama, ["Once upon a time", ...valid]);
    });

    it("llama: text-generation greedy, 20 new tokens from 'Once upon a time': identical to pare's", async () => {
      await checkTextGeneration(llama);
    });

    it("bert: logits (≤ 1e-3) and text-classification labels on the first 50 SST-2 dev sentences equal pare's", async () => {
      const dev = sst2Sentences(path.join(SHARED, "data/sst2/stsa.binary.dev")).slice(0, 50);
      expect(dev).toHaveLength(50);
      await checkSequenceClassification(bert, dev);
      const labels = await checkTextClassificationPipeline(bert, dev);
      expect(new Set(labels)).toEqual(new Set(["negative", "positive"]));
    });
  },
);

describe("transformers.js stayed offline", () => {
  it("no fetch() call was made, nothing was cached outside the temp folder", () => {
    expect(fetchCalls).toEqual([]);
    expect(fs.existsSync(path.join(ROOT, "cache"))).toBe(false);
    expect(fs.existsSync(DEFAULT_CACHE)).toBe(HAD_DEFAULT_CACHE);
  });
});
