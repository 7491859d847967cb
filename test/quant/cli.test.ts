/**
 * `pare quantize` on the command line: one JSON object with --json, the GPTQ folder written, a coded error with a
 * hint (and no output folder) for bad bits and group sizes.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { parseSingleJson, runCli } from "../helpers/cli.ts";
import { makeByteBpeTokenizerJson, makeTinyLlama, writeTinyModel } from "../helpers/tinyModels.ts";

let root: string;
let dense: string;
let text: string;
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-qcli-"));
  dense = path.join(root, "dense");
  writeTinyModel(dense, makeTinyLlama({ seed: 31 }), makeByteBpeTokenizerJson(300));
  text = path.join(root, "calib.txt");
  fs.writeFileSync(
    text,
    "the cat sat on the mat and the dog ran to the hills while birds sang. ".repeat(200),
  );
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** pare quantize of the tiny model into `out`: group 16, 8 × 32 calibration tokens */
const quantizeArgs = (out: string) => [
  "quantize",
  dense,
  "--out",
  out,
  "--group-size",
  "16",
  "--calib",
  text,
  "--samples",
  "8",
  "--seq-len",
  "32",
];

it("pare quantize --json writes a GPTQ folder and prints one JSON report", async () => {
  const out = path.join(root, "q");
  const r = await runCli([...quantizeArgs(out), "--json"]);
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  const j = parseSingleJson(r.stdout);
  expect(j).toMatchObject({ bits: 4, groupSize: 16, sym: true, method: "gptq" });
  expect((j.linears as unknown[]).length).toBe(14);
  const cfg = JSON.parse(fs.readFileSync(path.join(out, "config.json"), "utf8"));
  expect(cfg.quantization_config.quant_method).toBe("gptq");
  const ins = await runCli(["inspect", out, "--json"]);
  expect(ins.code).toBe(0);
  const rec = JSON.parse(fs.readFileSync(path.join(out, "pare-quantization.json"), "utf8"));
  expect(rec.act_order).toBe(true); // the default order
});

it("pare quantize --gptq-order natural is recorded; an unknown order is a coded error, nothing written", async () => {
  const args = (out: string, order: string) => [...quantizeArgs(out), "--gptq-order", order];
  const out = path.join(root, "q-natural");
  const r = await runCli(args(out, "natural"));
  expect(r.code).toBe(0);
  const rec = JSON.parse(fs.readFileSync(path.join(out, "pare-quantization.json"), "utf8"));
  expect(rec).toMatchObject({ act_order: false, static_groups: false });
  const badOut = path.join(root, "q-bad-order");
  const bad = await runCli(args(badOut, "sorted"));
  expect(bad.code).not.toBe(0);
  expect(bad.stderr).toMatch(/error\[E_USAGE\].*GPTQ order "sorted"/);
  expect(fs.existsSync(badOut)).toBe(false);
});

it("bad bits and group sizes: a coded error with a hint, nothing written", async () => {
  const out = path.join(root, "bad");
  const bits = await runCli(["quantize", dense, "--out", out, "--bits", "3", "--calib", text]);
  expect(bits.code).not.toBe(0);
  expect(bits.stderr).toMatch(/error\[E_USAGE\].*bits 3/);
  expect(bits.stderr).toMatch(/hint:/);
  expect(bits.stderr).not.toMatch(/\n\s+at /);
  const group = await runCli([
    "quantize",
    dense,
    "--out",
    out,
    "--group-size",
    "32",
    "--calib",
    text,
    "--json",
  ]);
  expect(group.code).not.toBe(0);
  expect(parseSingleJson(group.stdout)).toMatchObject({ error: { code: "E_CONFIG_MISMATCH" } });
  expect(fs.existsSync(out)).toBe(false);
});
