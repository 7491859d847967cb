/**
 * `pare prune` extras end to end on a tiny llama: --export onnx (onnx/model.onnx inside the output folder, loadable
 * by ONNX Runtime, prefill logits equal to pare's own forward of the pruned folder), --report (report.html with
 * the per-layer charts), --export validation before any work, and --recipe files (same kept units as the
 * equivalent flags; flags override the file).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel } from "../../src/arch/load.ts";
import { emitModelGraph } from "../../src/onnx/emit.ts";
import type { LayerReport, PruneReport } from "../../src/pipeline/prune.ts";
import { f32, type HostTensor, i64From, Session } from "../../src/runtime/ort.ts";
import { type CliResult, parseSingleJson, runCli, snapshotDir } from "../helpers/cli.ts";
import { makeByteBpeTokenizerJson, makeTinyLlama, writeTinyModel } from "../helpers/tinyModels.ts";

type PruneJson = PruneReport & {
  export?: { files: string[]; inputs: string[]; outputs: string[]; opset: number };
  report?: string;
};

let root: string;
let tiny: string;
let calib: string;
let recipeFile: string;
let before: Record<string, string>;
const out: Record<string, string> = {};
const runs: Record<string, CliResult> = {};

const COMMON = ["--samples", "8", "--seq-len", "32"];

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-prune-extras-"));
  tiny = path.join(root, "tiny");
  writeTinyModel(
    tiny,
    makeTinyLlama({ seed: 3, layers: 3, intermediate: 40 }),
    makeByteBpeTokenizerJson(300),
  );
  calib = path.join(root, "calib.txt");
  fs.writeFileSync(
    calib,
    "The quick brown fox jumps over the lazy dog. A cat sat on the mat and looked at the birds. ".repeat(80),
  );
  recipeFile = path.join(root, "r.yaml");
  fs.writeFileSync(
    recipeFile,
    ["ratio: 0.45", "criterion: wanda-sp", "samples: 8", "seq-len: 32", "calib:", `  - ${calib}`, ""].join(
      "\n",
    ),
  );
  before = snapshotDir(tiny);
  for (const k of ["main", "recipe", "flags", "override", "badExport"]) out[k] = path.join(root, `out-${k}`);
  // independent runs, concurrently
  const args: Record<string, string[]> = {
    main: ["--out", out.main, "--ratio", "0.3", "--calib", calib, ...COMMON, "--export", "onnx", "--report"],
    recipe: ["--out", out.recipe, "--recipe", recipeFile],
    flags: ["--out", out.flags, "--ratio", "0.45", "--criterion", "wanda-sp", "--calib", calib, ...COMMON],
    // the flags restore the main run's settings over the file's ratio and criterion
    override: ["--out", out.override, "--recipe", recipeFile, "--ratio", "0.3", "--criterion", "obs"],
    badExport: ["--out", out.badExport, "--ratio", "0.3", "--calib", calib, ...COMMON, "--export", "foo"],
  };
  const entries = await Promise.all(
    Object.entries(args).map(async ([k, a]) => [k, await runCli(["prune", tiny, ...a, "--json"])] as const),
  );
  for (const [k, r] of entries) runs[k] = r;
});

afterAll(() => {
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

function ok(name: string): PruneJson {
  const r = runs[name];
  expect(r.code, `${name}: ${r.stderr}`).toBe(0);
  expect(r.stderr, name).toBe("");
  return parseSingleJson(r.stdout) as unknown as PruneJson;
}

const kept = (layers: LayerReport[]) =>
  layers.map((l) => ({ kv: l.keptKvGroups, heads: l.keptHeads, channels: l.keptChannels }));

describe("pare prune --export onnx --report --json", () => {
  it("prints one JSON object naming the export and the report; the input folder is untouched", () => {
    const j = ok("main");
    expect(j.output).toBe(out.main);
    expect(j.recipe.ratio).toBe(0.3);
    expect(j.export?.files).toContain("onnx/model.onnx");
    expect(j.export?.opset).toBe(17);
    expect(j.export?.inputs).toEqual(expect.arrayContaining(["input_ids", "attention_mask", "position_ids"]));
    expect(j.report).toBe(path.join(out.main, "report.html"));
    expect(snapshotDir(tiny)).toEqual(before);
    expect(fs.readdirSync(root).filter((n) => n.includes(".tmp-"))).toEqual([]);
  });

  it("onnx/model.onnx loads in ONNX Runtime; its prefill logits equal pare's own forward of the folder (≤ 1e-4)", async () => {
    ok("main");
    const file = path.join(out.main, "onnx", "model.onnx");
    expect(fs.existsSync(file)).toBe(true);
    const m = loadModel(out.main);
    const cached = await Session.create(file, { threads: 1 });
    const full = await Session.create(emitModelGraph(m), { threads: 1 });
    try {
      const B = 2;
      const T = 11;
      const ids = Array.from({ length: B * T }, (_, k) => 3 + ((k * 37 + 11) % 290));
      const past: Record<string, HostTensor> = {};
      m.dims.layers.forEach((L, i) => {
        for (const kv of ["key", "value"])
          past[`past_key_values.${i}.${kv}`] = f32([B, L.nKv, 0, m.dims.headDim], new Float32Array(0));
      });
      const a = await cached.run({
        input_ids: i64From([B, T], ids),
        attention_mask: i64From([B, T], new Array(B * T).fill(1)),
        position_ids: i64From(
          [B, T],
          Array.from({ length: B * T }, (_, k) => k % T),
        ),
        ...past,
      });
      const b = await full.run({ input_ids: i64From([B, T], ids) }, ["logits"]);
      expect(a.logits.dims).toEqual([B, T, m.dims.vocab]);
      expect(b.logits.dims).toEqual([B, T, m.dims.vocab]);
      const x = a.logits.data as Float32Array;
      const y = b.logits.data as Float32Array;
      let d = 0;
      for (let i = 0; i < x.length; i++) d = Math.max(d, Math.abs(x[i] - y[i]));
      expect(d).toBeLessThanOrEqual(1e-4);
      // the exported graph really is the pruned model: its present KV heads are the kept ones
      m.dims.layers.forEach((L, i) => {
        expect(a[`present.${i}.key`].dims).toEqual([B, L.nKv, T, m.dims.headDim]);
      });
    } finally {
      await cached.release();
      await full.release();
      m.close();
    }
  });

  it("report.html is written next to the model and carries the per-layer charts", () => {
    const j = ok("main");
    const html = fs.readFileSync(path.join(out.main, "report.html"), "utf8");
    expect(html).toMatch(/^<!doctype html>/);
    expect(html).toContain('id="chart-heads"');
    expect(html).toContain('id="chart-ffn"');
    expect(j.layers).toHaveLength(3);
    for (const l of j.layers) {
      expect(html).toContain(`class="bar before" data-layer="${l.layer}" data-value="${l.heads[0]}"`);
      expect(html).toContain(`class="bar after" data-layer="${l.layer}" data-value="${l.heads[1]}"`);
      expect(html).toContain(`class="bar after" data-layer="${l.layer}" data-value="${l.ffn[1]}"`);
      expect(html).toContain(`id="hist-attn-${l.layer}"`);
      expect(html).toContain(`id="hist-mlp-${l.layer}"`);
    }
    expect(html).not.toMatch(/(src|href)=["']?https?:/i);
  });

  it("--export foo → E_USAGE before any work: no output folder, no temporary leftovers", () => {
    const r = runs.badExport;
    expect(r.code).toBe(2);
    const j = parseSingleJson(r.stdout) as { error?: { code?: string; message?: string } };
    expect(j.error?.code).toBe("E_USAGE");
    expect(j.error?.message).toMatch(/foo/);
    expect(r.stderr).toMatch(/^error\[E_USAGE\]/);
    expect(fs.existsSync(out.badExport)).toBe(false);
    expect(fs.readdirSync(root).filter((n) => n.includes(path.basename(out.badExport)))).toEqual([]);
  });
});

describe("pare prune --recipe", () => {
  it("a YAML recipe (ratio, criterion, samples, seq-len, calib) keeps the same units as the equivalent flags", () => {
    const viaFile = ok("recipe");
    const viaFlags = ok("flags");
    expect(viaFile.recipe.ratio).toBe(0.45);
    expect(viaFile.recipe.criterion).toBe("wanda-sp");
    expect(viaFile.recipe.samples).toBe(8);
    expect(viaFile.recipe.seqLen).toBe(32);
    expect(viaFile.calibration?.sequences).toBe(8);
    expect(kept(viaFile.layers)).toEqual(kept(viaFlags.layers));
    expect(viaFile.params.after).toEqual(viaFlags.params.after);
    expect(viaFile.achievedRatio).toBe(viaFlags.achievedRatio);
  });

  it("flags override the file's values (and the file's other settings still apply)", () => {
    const overridden = ok("override");
    const main = ok("main");
    const viaFile = ok("recipe");
    expect(overridden.recipe.ratio).toBe(0.3);
    expect(overridden.requestedRatio).toBe(0.3);
    expect(overridden.recipe.criterion).toBe("obs"); // the default, as in the main run
    expect(overridden.recipe.samples).toBe(8); // from the file
    expect(overridden.recipe.seqLen).toBe(32); // from the file
    // = the flags-only run with the same settings, ≠ the file's own settings
    expect(kept(overridden.layers)).toEqual(kept(main.layers));
    expect(kept(overridden.layers)).not.toEqual(kept(viaFile.layers));
    expect(overridden.params.after.prunable).toBeGreaterThan(viaFile.params.after.prunable);
  });
});
