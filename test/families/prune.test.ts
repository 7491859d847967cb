/**
 * Pruning the families added as specs (Qwen3, Gemma 2, Gemma 3, Phi-3) end to end with no family code in the
 * pipeline: every criterion (global · liar), every reconstruction (uniform · flap-wifv), sequential and dense
 * calibration, and a second prune of a pruned model. Each output must keep the family's own layout and config
 * keys (fused tensors stay fused, layer_types stays) and be read identically by pare and by the float64
 * reference twin, which reads the stored Hugging Face tensors on its own.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel } from "../../src/arch/load.ts";
import { CRITERIA } from "../../src/criteria/index.ts";
import { PareError } from "../../src/errors.ts";
import { TensorStore } from "../../src/io/safetensors.ts";
import { emitModelGraph } from "../../src/onnx/emit.ts";
import { type PruneReport, runPrune } from "../../src/pipeline/prune.ts";
import { resolveRecipe } from "../../src/pipeline/recipe.ts";
import { RECONSTRUCTORS } from "../../src/reconstruct/index.ts";
import { i64From, Session } from "../../src/runtime/ort.ts";
import { makeByteBpeTokenizerJson, writeTinyModel } from "../helpers/tinyModels.ts";
import { referenceFamilyForward } from "../reference/families.ts";
import { FAMILY_CASES, type FamilyCase } from "./cases.ts";

const STORY = `Once upon a time there was a cat that sat on the mat. The cat was the best of cats, and the mat
was the worst of mats. It was the age of wisdom, it was the age of foolishness; the cat did not care.
In the morning the cat went to the garden and looked at the birds in the trees, and the birds looked back
at the cat. Nobody in the house knew what the cat was thinking, but everybody agreed that it was thinking
of something important. At noon the rain started and the cat ran back to the mat, where it sat again.
`;

let root: string;
let calib: string;
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-families-"));
  calib = path.join(root, "story.txt");
  fs.writeFileSync(calib, STORY.repeat(4));
});
afterAll(() => {
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

/** one case per family: its default tiny model (the first case of each family) */
const PER_FAMILY = ["qwen3", "gemma2", "gemma3_text", "phi3"].map(
  (f) => FAMILY_CASES.find((c) => c.family === f) as FamilyCase,
);

function writeCase(c: FamilyCase, tag: string): string {
  const dir = path.join(root, `${tag}-in`);
  writeTinyModel(dir, c.tiny(), makeByteBpeTokenizerJson(300));
  return dir;
}

async function prune(model: string, out: string, over: Record<string, unknown> = {}): Promise<PruneReport> {
  const recipe = resolveRecipe({
    model,
    out: path.join(root, out),
    calib: [calib],
    ratio: 0.4,
    samples: 6,
    seqLen: 16,
    batchSize: 3,
    threads: 1,
    ...over,
  });
  return runPrune(recipe);
}

/** pare's ONNX forward of a folder and the reference twin on the stored tensors agree (≤ 1e-4 relative). */
async function checkReadsLikeReference(dir: string): Promise<void> {
  const config = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
  const store = TensorStore.openFolder(dir);
  const ids = [1, 45, 120, 7, 260, 99, 3, 18, 77, 150, 42];
  try {
    const ref = referenceFamilyForward(
      config,
      (n) => (store.has(n) ? { shape: store.info(n).shape, data: store.readF32(n) } : undefined),
      ids,
    ).logits;
    const m = loadModel(dir);
    try {
      const s = await Session.create(emitModelGraph(m));
      const got = (await s.run({ input_ids: i64From([1, ids.length], ids) })).logits.data as Float32Array;
      await s.release();
      let d = 0;
      let scale = 1;
      for (let i = 0; i < got.length; i++) {
        d = Math.max(d, Math.abs(got[i] - ref[i]));
        scale = Math.max(scale, Math.abs(ref[i]));
      }
      expect(d / scale).toBeLessThan(1e-4);
    } finally {
      m.close();
    }
  } finally {
    store.close();
  }
}

/** the output keeps the input's layout: same tensor names (fused stay fused), same family config keys */
function checkLayout(input: string, output: string): void {
  const a = TensorStore.openFolder(input);
  const b = TensorStore.openFolder(output);
  try {
    const strip = (names: string[]) => names.filter((n) => !n.endsWith(".bias")).sort();
    expect(strip(b.names())).toEqual(strip(a.names()));
  } finally {
    a.close();
    b.close();
  }
  const ci = JSON.parse(fs.readFileSync(path.join(input, "config.json"), "utf8"));
  const co = JSON.parse(fs.readFileSync(path.join(output, "config.json"), "utf8"));
  for (const k of Object.keys(ci)) expect(Object.keys(co), `config key ${k}`).toContain(k);
  for (const k of ["model_type", "architectures", "layer_types", "sliding_window", "rope_parameters"])
    expect(co[k], k).toEqual(ci[k]);
}

describe.each(PER_FAMILY)("prune $family", (c) => {
  let input: string;
  beforeAll(() => {
    input = writeCase(c, c.family);
  });

  it.each(Object.keys(CRITERIA))("criterion %s · global · liar · sequential", async (crit) => {
    const out = `${c.family}-crit-${crit}`;
    const r = await prune(input, out, { criterion: crit });
    expect(r.achievedRatio).toBeGreaterThan(0.2);
    expect(r.input.family).toBe(c.family);
    checkLayout(input, path.join(root, out));
    await checkReadsLikeReference(path.join(root, out));
  });

  it.each(Object.keys(RECONSTRUCTORS).filter((r) => r !== "bias"))(
    "reconstruction %s · uniform · flap-wifv",
    async (rec) => {
      const out = `${c.family}-rec-${rec}`;
      // liar-seq fits against the dense stream, which needs sequential calibration
      const calibration = rec === "liar-seq" ? "sequential" : "dense";
      const r = await prune(input, out, { reconstruct: rec, allocation: "uniform", calibration });
      expect(r.achievedRatio).toBeGreaterThan(0.2);
      checkLayout(input, path.join(root, out));
      await checkReadsLikeReference(path.join(root, out));
    },
  );

  it("reconstruction bias: refused before any work (the config cannot declare down_proj / o_proj biases), as for Qwen2", async () => {
    const out = `${c.family}-rec-bias`;
    const err = await prune(input, out, { reconstruct: "bias", allocation: "uniform" }).catch((e) => e);
    expect(err).toBeInstanceOf(PareError);
    expect(err.code).toBe("E_RECIPE_INVALID");
    expect(err.hint).toMatch(/--reconstruct liar/);
    expect(fs.existsSync(path.join(root, out))).toBe(false);
  });

  it("liar: notes that reconstruction fits without an intercept (no created biases)", async () => {
    const r = await prune(input, `${c.family}-notes`, { allocation: "uniform", calibration: "dense" });
    expect(r.notes.join("\n")).toMatch(/without an intercept/);
  });

  it("--create-bias never: no new biases (config flags unchanged), read like the reference; auto may create them", async () => {
    const never = path.join(root, `${c.family}-nobias`);
    const r = await prune(input, `${c.family}-nobias`, { createBias: "never", calibration: "dense" });
    expect(r.notes.join("\n")).toMatch(/--create-bias never/);
    const store = TensorStore.openFolder(never);
    try {
      expect(store.names().filter((n) => n.endsWith(".bias"))).toEqual([]);
    } finally {
      store.close();
    }
    const cfg = JSON.parse(fs.readFileSync(path.join(never, "config.json"), "utf8"));
    expect(cfg.attention_bias ?? false).toBe(false);
    await checkReadsLikeReference(never);
    // the default lets reconstruction give o_proj a bias where the family's config can declare it (uniform:
    // every layer loses KV groups, so every o_proj is refitted — global allocation may leave attention whole)
    const auto = await prune(input, `${c.family}-autobias`, { calibration: "dense", allocation: "uniform" });
    const created = JSON.parse(fs.readFileSync(path.join(auto.output, "config.json"), "utf8")).attention_bias;
    expect(created === true).toBe(c.family !== "phi3");
  });

  it("a second prune of the pruned model", async () => {
    const first = `${c.family}-first`;
    await prune(input, first, { ratio: 0.3 });
    const second = `${c.family}-second`;
    const r = await prune(path.join(root, first), second, { ratio: 0.3, reconstruct: "liar-seq" });
    expect(r.params.after.prunable).toBeLessThan(r.params.before.prunable);
    checkLayout(input, path.join(root, second));
    await checkReadsLikeReference(path.join(root, second));
  });
});
