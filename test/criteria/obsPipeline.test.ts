/**
 * `--criterion obs` through the whole prune, for every family (LLaMA GQA, BERT, and the spec-only Qwen3, Gemma 2,
 * Gemma 3, Phi-3 tiny models): uniform allocation under sequential and dense calibration, global allocation
 * under dense calibration (its Grams serve both the OBS costs and, afterwards, liar's reconstruction) and under
 * sequential calibration with the other cost normalizations. Each output
 * loads with the widths the report states, keeps exactly the uniform counts, and reports the OBS cost of every unit.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel } from "../../src/arch/load.ts";
import { hasNormGain } from "../../src/ops/index.ts";
import { obsNormalizationOf } from "../../src/pipeline/allocation.ts";
import { runPrune } from "../../src/pipeline/prune.ts";
import { resolveRecipe } from "../../src/pipeline/recipe.ts";
import { FAMILY_CASES } from "../families/cases.ts";
import {
  makeByteBpeTokenizerJson,
  makeTinyBert,
  makeTinyLlama,
  makeWordPieceTokenizerJson,
  type TinyModel,
  writeTinyModel,
} from "../helpers/tinyModels.ts";

const TEXT = "the cat sat on the mat and it was the best of stories, the worst of stories.\n".repeat(40);
const WORDS = ["the", "cat", "sat", "on", "mat", "and", "it", "was", "best", "of", "stories", "worst"];

let root: string;
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-obs-"));
  fs.writeFileSync(path.join(root, "calib.txt"), TEXT);
});
afterAll(() => {
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

const FAMILIES: { name: string; tiny: () => TinyModel; bert?: boolean }[] = [
  {
    name: "llama (GQA 8q/4kv)",
    tiny: () =>
      makeTinyLlama({ seed: 31, hidden: 32, heads: 8, kvHeads: 4, headDim: 4, intermediate: 40, layers: 2 }),
  },
  {
    name: "bert",
    tiny: () => makeTinyBert({ seed: 32, hidden: 32, heads: 4, intermediate: 48, layers: 2 }),
    bert: true,
  },
  ...["qwen3", "gemma2", "gemma3_text", "phi3"].map((f) => {
    const c = FAMILY_CASES.find((x) => x.family === f)!;
    return { name: f, tiny: c.tiny };
  }),
];

const SETTINGS = [
  { allocation: "uniform", calibration: "sequential" },
  { allocation: "uniform", calibration: "dense" },
  { allocation: "global", calibration: "dense" },
  { allocation: "global", calibration: "sequential", obsNormalization: "auto" },
  { allocation: "global", calibration: "sequential", obsNormalization: "stream" },
  { allocation: "global", calibration: "sequential", obsNormalization: "none" },
  { allocation: "global", calibration: "sequential", obsNormalization: "output" },
  { allocation: "global", calibration: "sequential", obsNormalization: "standardized" },
] as const;

describe.each(FAMILIES)("obs · $name", (f) => {
  let input: string;
  let streamOut: { out: string; keep: unknown } | undefined;
  let noneOut: { out: string; keep: unknown } | undefined;
  beforeAll(() => {
    input = path.join(root, `${f.name.replace(/\W+/g, "-")}-in`);
    writeTinyModel(
      input,
      f.tiny(),
      f.bert ? makeWordPieceTokenizerJson(WORDS) : makeByteBpeTokenizerJson(300),
    );
  });

  it.each(SETTINGS)(
    "$allocation allocation · $calibration calibration · liar $obsNormalization",
    async (s) => {
      const out = path.join(
        root,
        `${path.basename(input)}-${s.allocation}-${s.calibration}-${"obsNormalization" in s ? s.obsNormalization : ""}`,
      );
      const recipe = resolveRecipe({
        model: input,
        out,
        calib: [path.join(root, "calib.txt")],
        ratio: 0.4,
        samples: 6,
        seqLen: 16,
        batchSize: 3,
        threads: 1,
        criterion: "obs",
        reconstruct: "liar",
        ...s,
      });
      const steps: string[] = [];
      const r = await runPrune(recipe, (e) => {
        if (e.type === "layer") steps.push(`${e.layer} ${e.step}`);
      });
      // global allocation reports each module's greedy path as progress (it can take minutes on wide layers)
      if (s.allocation === "global")
        for (const L of r.layers) expect(steps).toContain(`${L.layer} select FFN`);
      expect(r.achievedRatio).toBeGreaterThan(0.2);
      const m = loadModel(out);
      try {
        for (const L of r.layers) {
          const dims = m.dims.layers[L.layer];
          expect(dims.nKv).toBe(L.keptKvGroups.length);
          expect(dims.ffn).toBe(L.keptChannels.length);
          // every unit has a finite, non-negative OBS cost in the report
          const sc = L.scores!;
          expect(sc.attn.length).toBe(L.kvHeads[0]);
          expect(sc.mlp.length).toBe(L.ffn[0]);
          for (const v of [...sc.attn, ...sc.mlp]) {
            expect(Number.isFinite(v)).toBe(true);
            expect(v).toBeGreaterThanOrEqual(0);
          }
          expect(L.ridge?.retries).toBe(0);
        }
        if (s.allocation === "global" && "obsNormalization" in s && s.obsNormalization === "stream")
          streamOut = { out, keep: r.layers.map((L) => [L.keptKvGroups, L.keptChannels]) };
        if (s.allocation === "global" && "obsNormalization" in s && s.obsNormalization === "none")
          noneOut = { out, keep: r.layers.map((L) => [L.keptKvGroups, L.keptChannels]) };
        if (s.allocation === "uniform") {
          // uniform: every layer removes the same number of KV groups
          const kv = new Set(r.layers.map((L) => L.kvHeads[0] - L.kvHeads[1]));
          expect(kv.size).toBe(1);
        }
      } finally {
        m.close();
      }
    },
  );

  // auto: standardized for post-norm blocks (BERT), none otherwise — the same bytes as the resolved setting
  it("auto = standardized for post-norm blocks, none otherwise, byte for byte", () => {
    const m = loadModel(input);
    const resolved = obsNormalizationOf(m, "auto");
    m.close();
    expect(resolved).toBe(f.bert ? "standardized" : "none");
    const dirOf = (n: string) => path.join(root, `${path.basename(input)}-global-sequential-${n}`);
    const bytes = (o: string) => fs.readFileSync(path.join(o, "model.safetensors"));
    expect(bytes(dirOf("auto")).equals(bytes(dirOf(resolved)))).toBe(true);
  });

  // stream normalization: no norm between a pre-norm block's consumer and the residual stream → = none, byte
  // for byte; post-norm (BERT) and sandwich-norm (Gemma) blocks scale the costs by the norms' gains
  it("stream = none exactly where no norm follows the consumers, different selections where one does", () => {
    expect(streamOut && noneOut).toBeTruthy();
    const bytes = (o: string) => fs.readFileSync(path.join(o, "model.safetensors"));
    const m = loadModel(input);
    const gains = hasNormGain(m, "attn") || hasNormGain(m, "mlp");
    m.close();
    if (!gains) expect(bytes(streamOut!.out).equals(bytes(noneOut!.out))).toBe(true);
    else expect(JSON.stringify(streamOut!.keep)).not.toBe(JSON.stringify(noneOut!.keep));
  });
});
