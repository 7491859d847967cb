/**
 * `prune --quantize`: a tiny seeded LLaMA pruned and quantized in one pass into a GPTQ folder that pare reads
 * back; settings that cannot work are refused before any output exists.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { evaluate } from "../../src/api/evaluate.ts";
import { prune } from "../../src/api/prune.ts";
import { loadModel } from "../../src/arch/load.ts";
import { TensorStore } from "../../src/io/safetensors.ts";
import { closeSharedOps } from "../../src/ops/index.ts";
import { Rng } from "../helpers/rng.ts";
import { makeByteBpeTokenizerJson, makeTinyLlama, writeTinyModel } from "../helpers/tinyModels.ts";

const WORDS = "the cat sat on a mat while dogs ran past green hills and birds sang over quiet rivers".split(
  " ",
);

describe("prune --quantize", () => {
  let root: string;
  let dense: string;
  let text: string;
  beforeAll(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-pq-"));
    dense = path.join(root, "dense");
    writeTinyModel(dense, makeTinyLlama({ seed: 12, intermediate: 64 }), makeByteBpeTokenizerJson(300));
    const rng = new Rng(6);
    text = path.join(root, "calib.txt");
    fs.writeFileSync(text, Array.from({ length: 3000 }, () => WORDS[rng.int(WORDS.length)]).join(" "));
  });
  afterAll(async () => {
    fs.rmSync(root, { recursive: true, force: true });
    await closeSharedOps();
  });

  const base = () => ({
    model: dense,
    calib: [text],
    samples: 16,
    seqLen: 32,
    ratio: 0.4,
    allocation: "uniform" as const,
  });

  it("one pass writes a GPTQ folder of the pruned widths, read back by pare", async () => {
    const out = path.join(root, "pq");
    const r = await prune({ ...base(), out, quantize: 4, groupSize: 16 });
    const cfg = JSON.parse(fs.readFileSync(path.join(out, "config.json"), "utf8"));
    expect(cfg.quantization_config).toMatchObject({
      quant_method: "gptq",
      bits: 4,
      group_size: 16,
      sym: true,
    });
    expect(fs.existsSync(path.join(out, "pare-pruning.json"))).toBe(true);
    const q = JSON.parse(fs.readFileSync(path.join(out, "pare-quantization.json"), "utf8"));
    expect(q.linears).toHaveLength(2 * 7);
    expect(q).toMatchObject({ method: "gptq", act_order: true, static_groups: true }); // how it was made
    const store = TensorStore.openFolder(out);
    const ffn = r.layers[0].ffn[1];
    expect(ffn).toBeLessThan(64);
    expect(ffn % 16).toBe(0); // round-to follows the group size
    expect(store.info("model.layers.0.mlp.down_proj.qweight").shape).toEqual([ffn / 8, 32]);
    expect(store.info("model.layers.0.mlp.up_proj.qzeros").shape).toEqual([32 / 16, ffn / 8]);
    expect(store.has("model.layers.0.mlp.down_proj.weight")).toBe(false);
    store.close();
    const m = loadModel(out);
    try {
      expect(m.dims.layers[0].ffn).toBe(ffn);
      expect(m.weights.shape("model.layers.0.mlp.down_proj.weight")).toEqual([32, ffn]);
    } finally {
      m.close();
    }
    const ppl = (await evaluate(out, { task: "ppl", data: text, seqLen: 32 })) as { ppl: number };
    const pplDense = (await evaluate(dense, { task: "ppl", data: text, seqLen: 32 })) as { ppl: number };
    expect(Number.isFinite(ppl.ppl)).toBe(true);
    expect(ppl.ppl).toBeLessThan(pplDense.ppl * 3); // a sanity bound: the tiny random model stays a model
  });

  it("--gptq-order natural: recorded as act_order false, other integers than act-order; a bad order is refused", async () => {
    const act = path.join(root, "pq-act");
    const nat = path.join(root, "pq-natural");
    await prune({ ...base(), out: act, quantize: 4, groupSize: 16 });
    await prune({ ...base(), out: nat, quantize: 4, groupSize: 16, gptqOrder: "natural" });
    const rec = (dir: string) =>
      JSON.parse(fs.readFileSync(path.join(dir, "pare-quantization.json"), "utf8"));
    expect(rec(act)).toMatchObject({ act_order: true, static_groups: true });
    expect(rec(nat)).toMatchObject({ act_order: false, static_groups: false });
    // the written format is the same (desc_act false, trivial g_idx); the chosen integers differ
    const cfg = (dir: string) =>
      JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8")).quantization_config;
    expect(cfg(nat).desc_act).toBe(false);
    expect(cfg(act).desc_act).toBe(false);
    const q = (dir: string) => {
      const st = TensorStore.openFolder(dir);
      try {
        return Buffer.from(st.readRaw("model.layers.0.mlp.down_proj.qweight"));
      } finally {
        st.close();
      }
    };
    expect(q(act).equals(q(nat))).toBe(false);
    await expect(
      prune({
        ...base(),
        out: path.join(root, "pq-bad"),
        quantize: 4,
        groupSize: 16,
        gptqOrder: "sorted" as never,
      }),
    ).rejects.toMatchObject({ code: "E_RECIPE_INVALID" });
  });

  it("refuses what cannot work before any output exists", async () => {
    const out = path.join(root, "bad");
    const codeOf = (p: Promise<unknown>) =>
      p.then(
        () => "ok",
        (e) => (e as { code: string }).code,
      );
    expect(await codeOf(prune({ ...base(), out, quantize: 3 }))).toBe("E_USAGE");
    expect(await codeOf(prune({ ...base(), out, quantize: 4, groupSize: 48 }))).toBe("E_USAGE");
    // a KV group holds 2 heads × 8 = 16 query channels: group 32 cannot divide a pruned o_proj input
    expect(await codeOf(prune({ ...base(), out, quantize: 4, groupSize: 32 }))).toBe("E_CONFIG_MISMATCH");
    expect(await codeOf(prune({ ...base(), out, quantize: 4, groupSize: 16, roundTo: 24 }))).toBe(
      "E_RECIPE_INVALID",
    );
    expect(
      await codeOf(
        prune({ ...base(), out, quantize: 4, groupSize: 16, criterion: "magnitude-l2", reconstruct: "none" }),
      ),
    ).toBe("E_RECIPE_INVALID");
    expect(fs.existsSync(out)).toBe(false);
  });
});
