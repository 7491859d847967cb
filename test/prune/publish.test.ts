/**
 * What a prune adds to its output after the weights — the GPTQ rewrite of `--quantize`, the ONNX export of
 * `--export onnx` (through `beforePublish`) — happens in the unpublished temporary folder: the output path does
 * not exist until all of it is there (docs/reliability.md, promise 1), and a failure there leaves no output.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeSharedOps } from "../../src/ops/index.ts";
import { runPrune } from "../../src/pipeline/prune.ts";
import { resolveRecipe } from "../../src/pipeline/recipe.ts";
import { runCli } from "../helpers/cli.ts";
import { Rng } from "../helpers/rng.ts";
import { makeByteBpeTokenizerJson, makeTinyLlama, writeTinyModel } from "../helpers/tinyModels.ts";

const WORDS = "the cat sat on a mat while dogs ran past green hills and birds sang over quiet rivers".split(
  " ",
);

describe("publishing a prune with what follows the weights", () => {
  let root: string;
  let dense: string;
  let text: string;
  beforeAll(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-publish-"));
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

  const recipe = (out: string, extra: Record<string, unknown> = {}) =>
    resolveRecipe({
      model: dense,
      out,
      calib: [text],
      samples: 8,
      seqLen: 32,
      ratio: 0.4,
      allocation: "uniform",
      ...extra,
    });

  it("--quantize: the folder is already a GPTQ folder before it is published; the output appears once", async () => {
    const out = path.join(root, "pq");
    const seen: { exists: boolean; quantized: boolean; files: string[] }[] = [];
    const r = await runPrune(recipe(out, { quantize: 4, groupSize: 16 }), {
      beforePublish: (dir) => {
        const cfg = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
        seen.push({
          exists: fs.existsSync(out),
          quantized: cfg.quantization_config?.quant_method === "gptq",
          files: fs.readdirSync(dir).sort(),
        });
      },
    });
    expect(seen).toHaveLength(1);
    expect(seen[0].exists).toBe(false); // not published yet
    expect(seen[0].quantized).toBe(true);
    expect(seen[0].files).not.toContain(".gptq"); // the staging folder is gone
    // what was published is exactly what the hook saw, and the report is the prune's
    expect(fs.readdirSync(out).sort()).toEqual(seen[0].files);
    expect(r.output).toBe(path.resolve(out));
    // nothing of the prune left next to the output
    expect(fs.readdirSync(root).filter((f) => f.startsWith(".pq"))).toEqual([]);
  });

  it("a failure before publishing leaves no output and no temporary folder", async () => {
    const out = path.join(root, "fails");
    await expect(
      runPrune(recipe(out), {
        beforePublish: () => {
          throw new Error("export failed");
        },
      }),
    ).rejects.toThrow("export failed");
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.readdirSync(root).filter((f) => f.startsWith(".fails") && !f.includes("partial"))).toEqual([]);
  });

  it("pare prune --export onnx publishes the model with onnx/ in one rename", async () => {
    const out = path.join(root, "withonnx");
    const r = await runCli([
      "prune",
      dense,
      "--out",
      out,
      "--calib",
      text,
      "--samples",
      "8",
      "--seq-len",
      "32",
      "--ratio",
      "0.3",
      "--export",
      "onnx",
      "--json",
    ]);
    expect(r.code).toBe(0);
    expect(fs.existsSync(path.join(out, "onnx", "model.onnx"))).toBe(true);
    expect(fs.existsSync(path.join(out, "model.safetensors"))).toBe(true);
    const j = JSON.parse(r.stdout);
    expect(j.export.out).toBe(path.resolve(out));
    expect(fs.readdirSync(root).filter((f) => f.startsWith(".withonnx"))).toEqual([]);
  });
});
