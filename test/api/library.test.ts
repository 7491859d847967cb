/**
 * The public API (src/index.ts) as a library user calls it: settings checked before work with coded errors,
 * progress through callbacks, AbortSignal, results equal to the CLI's, and nothing left open or written on failure.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  evaluate,
  exportModel,
  generate,
  inspect,
  isPareError,
  planPrune,
  prune,
  RECIPE_DEFAULTS,
  type RecipeOptions,
} from "../../src/index.ts";
import { runCli } from "../helpers/cli.ts";
import { makeByteBpeTokenizerJson, makeTinyLlama, writeTinyModel } from "../helpers/tinyModels.ts";

const STORY = `Once upon a time there was a cat that sat on the mat. The cat was the best of cats, and the mat
was the worst of mats. It was the age of wisdom, it was the age of foolishness; the cat did not care.
`.repeat(8);

let root: string;
let model: string;
let calib: string;
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-api-"));
  model = path.join(root, "llama");
  writeTinyModel(model, makeTinyLlama({ seed: 5 }), makeByteBpeTokenizerJson(300));
  calib = path.join(root, "story.txt");
  fs.writeFileSync(calib, STORY);
});
afterAll(() => {
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

const settings = (out: string): RecipeOptions => ({
  model,
  out: path.join(root, out),
  calib: [calib],
  ratio: 0.4,
  samples: 6,
  seqLen: 16,
  batchSize: 3,
  threads: 1,
});

async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    return isPareError(e) ? e.code : `not a PareError: ${e}`;
  }
  return "no error";
}

describe("library API", () => {
  it("prune reports progress and returns the report written to pare-pruning.json", async () => {
    const kinds = new Set<string>();
    const r = await prune({ ...settings("pruned"), onProgress: (e) => kinds.add(e.type) });
    expect([...kinds]).toEqual(expect.arrayContaining(["phase", "layer", "plan"]));
    const written = JSON.parse(fs.readFileSync(path.join(r.output, "pare-pruning.json"), "utf8"));
    expect(written.achievedRatio).toBe(r.achievedRatio);
    expect(inspect(r.output).params.prunable).toBe(r.params.after.prunable);
    expect(RECIPE_DEFAULTS.criterion).toBe(r.recipe.criterion);
  });

  it("bad settings fail before any work with coded errors (nothing written)", async () => {
    expect(await codeOf(prune({ ...settings("bad1"), ratio: 1.5 }))).toBe("E_RATIO_INVALID");
    expect(await codeOf(prune({ ...settings("bad2"), criterion: "nope" as never }))).toBe(
      "E_CRITERION_UNKNOWN",
    );
    expect(await codeOf(prune({ ...settings("bad3"), ["colour" as never]: 1 }))).toBe("E_RECIPE_INVALID");
    for (const d of ["bad1", "bad2", "bad3"]) expect(fs.existsSync(path.join(root, d))).toBe(false);
  });

  it("an aborted prune throws E_ABORTED and leaves no output", async () => {
    const controller = new AbortController();
    const p = prune({
      ...settings("aborted"),
      signal: controller.signal,
      onProgress: (e) => {
        if (e.type === "layer") controller.abort();
      },
    });
    expect(await codeOf(p)).toBe("E_ABORTED");
    expect(fs.existsSync(path.join(root, "aborted"))).toBe(false);
    const already = new AbortController();
    already.abort();
    expect(await codeOf(prune({ ...settings("aborted2"), signal: already.signal }))).toBe("E_ABORTED");
  });

  it("planPrune is the dry-run plan", async () => {
    const plan = await planPrune(settings("planned"));
    expect(plan.layerPasses).toBeGreaterThan(0);
    expect(fs.existsSync(path.join(root, "planned"))).toBe(false);
  });

  it("evaluate gives the CLI's numbers; an aborted evaluation throws E_ABORTED", async () => {
    const r = await evaluate(model, { task: "ppl", data: calib, seqLen: 32 });
    if (r.task !== "ppl") throw new Error("wrong task");
    const cli = await runCli(["eval", model, "--task", "ppl", "--data", calib, "--seq-len", "32", "--json"]);
    expect(cli.code).toBe(0);
    expect(JSON.parse(cli.stdout).ppl).toBe(r.ppl);
    const c = new AbortController();
    c.abort();
    expect(await codeOf(evaluate(model, { task: "ppl", data: calib, signal: c.signal }))).toBe("E_ABORTED");
    expect(await codeOf(evaluate(model, { task: "classify", data: calib }))).toBe("E_USAGE");
  });

  it("generate streams and returns the continuation; exportModel writes the ONNX folder", async () => {
    let streamed = "";
    const g = await generate(model, { prompt: "the cat", maxNewTokens: 6, onToken: (d) => (streamed += d) });
    expect(g.ids.length).toBeGreaterThan(0);
    expect(streamed).toBe(g.text);
    const e = exportModel(model, { format: "onnx", out: path.join(root, "onnx") });
    expect(e.files).toContain("onnx/model.onnx");
    expect(
      await codeOf(() => exportModel(model, { format: "tflite" as never, out: path.join(root, "x") })),
    ).toBe("E_USAGE");
  });
});
