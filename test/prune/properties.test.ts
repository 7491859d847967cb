/**
 * Properties of the real pipeline (runPrune on tiny models in temp folders):
 *  - removing units whose weights are all zero changes nothing: the pruned model's logits (reference forward on
 *    the written weights) equal the dense ones exactly, with and without reconstruction;
 *  - the output folder loads (loadModel, `pare inspect`) and can be pruned again: llama keeps head_dim, lists
 *    non-uniform widths in pare_layer_widths, and sets attention_bias / mlp_bias with zero q/k/v/gate/up biases
 *    when reconstruction created o_proj / down_proj biases; BERT accumulates pruned_heads in the original
 *    head numbering;
 *  - the input folder is byte-identical afterwards; the same recipe and seed give a byte-identical
 *    model.safetensors; ratio 0 keeps everything and (with reconstruct none or liar) reproduces the input tensors.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel } from "../../src/arch/load.ts";
import { TensorStore } from "../../src/io/safetensors.ts";
import { type PruneReport, runPrune } from "../../src/pipeline/prune.ts";
import { type Recipe, resolveRecipe } from "../../src/pipeline/recipe.ts";
import { parseSingleJson, runCli, snapshotDir } from "../helpers/cli.ts";
import {
  makeByteBpeTokenizerJson,
  makeTinyBert,
  makeTinyLlama,
  makeWordPieceTokenizerJson,
  type TinyModel,
  type TinyTensor,
  tensorMap,
  writeTinyModel,
} from "../helpers/tinyModels.ts";
import { referenceBertForward, referenceDecoderForward } from "../reference/forward.ts";

const STORY = `Once upon a time there was a cat that sat on the mat. The cat was the best of cats, and the mat
was the worst of mats. It was the age of wisdom, it was the age of foolishness; the cat did not care.
In the morning the cat went to the garden and looked at the birds in the trees, and the birds looked back
at the cat. Nobody in the house knew what the cat was thinking, but everybody agreed that it was thinking
of something important. At noon the rain started and the cat ran back to the mat, where it sat again.
`;
const LINES = [
  "the cat sat on the mat",
  "a dog ran",
  "the movie was good and the story was great",
  "it was the best of times, it was the worst of times",
  "the birds looked back at the cat in the garden",
  "nobody knew what the cat was thinking",
  "the mat was the worst of mats",
  "at noon the rain started",
].join("\n");
const WORDS = ["the", "cat", "sat", "mat", "was", "of", "and", "a", "it"];
const CAL = { samples: 6, seqLen: 16, batchSize: 4, seed: 1 };

let root: string;
let llamaDir: string;
let bertDir: string;
let zeroDir: string;
let story: string;
let lines: string;
let llama: TinyModel;
let zero: TinyModel;
let bert: TinyModel;
const inputSnapshots: Record<string, Record<string, string>> = {};

/** zero KV group `g` of layer `l` (q rows of its heads, k/v rows, o columns) */
function zeroGroup(
  m: TinyModel,
  l: number,
  g: number,
  heads: number,
  kv: number,
  hd: number,
  hidden: number,
): void {
  const t = tensorMap(m);
  const p = `model.layers.${l}.self_attn.`;
  const per = heads / kv;
  const rows = (name: string, from: number, to: number) =>
    t.get(name)!.data.fill(0, from * hidden, to * hidden);
  rows(`${p}q_proj.weight`, g * per * hd, (g + 1) * per * hd);
  rows(`${p}k_proj.weight`, g * hd, (g + 1) * hd);
  rows(`${p}v_proj.weight`, g * hd, (g + 1) * hd);
  const o = t.get(`${p}o_proj.weight`)!;
  const cols = heads * hd;
  for (let i = 0; i < hidden; i++) o.data.fill(0, i * cols + g * per * hd, i * cols + (g + 1) * per * hd);
}

/** zero FFN channels `ch` of layer `l` (gate/up rows, down columns) */
function zeroChannels(m: TinyModel, l: number, ch: number[], hidden: number, ffn: number): void {
  const t = tensorMap(m);
  const p = `model.layers.${l}.mlp.`;
  for (const c of ch) {
    t.get(`${p}gate_proj.weight`)!.data.fill(0, c * hidden, (c + 1) * hidden);
    t.get(`${p}up_proj.weight`)!.data.fill(0, c * hidden, (c + 1) * hidden);
    const d = t.get(`${p}down_proj.weight`)!;
    for (let i = 0; i < hidden; i++) d.data[i * ffn + c] = 0;
  }
}

const ZERO_CH = [
  [3, 7, 11, 20, 30, 47],
  [0, 5, 6, 19, 33, 40],
];
const ZERO_GROUP = [1, 0];

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-props-"));
  llamaDir = path.join(root, "llama");
  zeroDir = path.join(root, "llama-zero");
  bertDir = path.join(root, "bert");
  llama = makeTinyLlama({ seed: 21 });
  bert = makeTinyBert({ seed: 22, hidden: 32, heads: 4, intermediate: 40, layers: 2 });
  // a llama (4 heads, 2 KV groups of 8, FFN 48) with one all-zero KV group and six all-zero channels per layer
  zero = makeTinyLlama({ seed: 23 });
  for (let l = 0; l < 2; l++) {
    zeroGroup(zero, l, ZERO_GROUP[l], 4, 2, 8, 32);
    zeroChannels(zero, l, ZERO_CH[l], 32, 48);
  }
  writeTinyModel(llamaDir, llama, makeByteBpeTokenizerJson(300));
  writeTinyModel(zeroDir, zero, makeByteBpeTokenizerJson(300));
  writeTinyModel(bertDir, bert, makeWordPieceTokenizerJson(WORDS));
  story = path.join(root, "story.txt");
  lines = path.join(root, "lines.txt");
  fs.writeFileSync(story, STORY);
  fs.writeFileSync(lines, `${LINES}\n`);
  for (const d of [llamaDir, zeroDir, bertDir]) inputSnapshots[d] = snapshotDir(d);
});

afterAll(() => {
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

let outCount = 0;
function prune(model: string, settings: Partial<Recipe>): Promise<PruneReport> & { out: string } {
  const out = path.join(root, `out-${outCount++}`);
  const p = runPrune(resolveRecipe({ model, out, ...CAL, ...settings })) as Promise<PruneReport> & {
    out: string;
  };
  p.out = out;
  return p;
}

/** all tensors of a folder as a Map for the reference forward */
function readFolder(dir: string): { config: Record<string, unknown>; tensors: Map<string, TinyTensor> } {
  const st = TensorStore.openFolder(dir);
  const tensors = new Map<string, TinyTensor>();
  for (const name of st.names())
    tensors.set(name, { name, shape: st.info(name).shape, data: st.readF32(name) });
  st.close();
  return { config: JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8")), tensors };
}

const IDS = [1, 84, 72, 69, 35, 67, 65, 84, 35, 83, 65, 84, 12, 300 - 1, 5, 260];

describe("removing all-zero units changes nothing", () => {
  // uniform: round(0.275·2) = 1 KV group per layer; the MLP then removes (0.275·7680 − 1536) / 96 = 6 channels
  const ratio = 2112 / 7680;
  for (const reconstruct of ["none", "liar"] as const) {
    it(`magnitude-l2 · uniform · ${reconstruct}: the zero units go, the logits are bit-identical`, async () => {
      const settings: Partial<Recipe> = {
        ratio,
        criterion: "magnitude-l2",
        allocation: "uniform",
        reconstruct,
      };
      if (reconstruct !== "none") Object.assign(settings, { calib: [story], calibration: "dense" });
      const pr = prune(zeroDir, settings);
      const report = await pr;
      report.layers.forEach((l, i) => {
        expect(l.keptKvGroups).toEqual([1 - ZERO_GROUP[i]]);
        expect(l.keptChannels).toEqual(
          Array.from({ length: 48 }, (_, c) => c).filter((c) => !ZERO_CH[i].includes(c)),
        );
      });
      const { config, tensors } = readFolder(pr.out);
      expect(tensors.has("model.layers.0.self_attn.o_proj.bias")).toBe(reconstruct !== "none");
      const dense = referenceDecoderForward(zero.config, tensorMap(zero), IDS);
      const pruned = referenceDecoderForward(config, tensors, IDS);
      expect(Array.from(pruned.logits)).toEqual(Array.from(dense.logits));
    });
  }
});

describe("the output folder", () => {
  it("llama · global · liar: loads, states head_dim, pare_layer_widths and the created biases; inspect agrees", async () => {
    const pr = prune(llamaDir, {
      ratio: 0.4,
      calib: [story],
      allocation: "global",
      reconstruct: "liar",
      calibration: "sequential",
    });
    const report = await pr;
    const cfg = JSON.parse(fs.readFileSync(path.join(pr.out, "config.json"), "utf8"));
    const widths = report.layers.map((l) => ({
      num_attention_heads: l.heads[1],
      num_key_value_heads: l.kvHeads[1],
      intermediate_size: l.ffn[1],
    }));
    const uniform = widths.every((w) => JSON.stringify(w) === JSON.stringify(widths[0]));
    expect(uniform).toBe(false); // this seed gives different widths per layer
    expect(cfg.pare_layer_widths).toEqual(widths);
    expect(cfg.head_dim).toBe(8);
    expect(cfg.num_attention_heads).toBe(Math.max(...widths.map((w) => w.num_attention_heads)));
    expect(cfg.intermediate_size).toBe(Math.max(...widths.map((w) => w.intermediate_size)));
    expect(cfg.attention_bias).toBe(true);
    expect(cfg.mlp_bias).toBe(true);
    const { tensors } = readFolder(pr.out);
    for (let l = 0; l < 2; l++) {
      const p = `model.layers.${l}.`;
      for (const z of [
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "mlp.gate_proj",
        "mlp.up_proj",
      ]) {
        const b = tensors.get(`${p}${z}.bias`);
        expect(b, `${p}${z}.bias`).toBeDefined();
        expect(b!.shape).toEqual([tensors.get(`${p}${z}.weight`)!.shape[0]]);
        expect(b!.data.every((v) => v === 0)).toBe(true);
      }
      // reconstruction biases where units went; zero biases (implied by the flags) where the module was kept whole
      const L = report.layers[l];
      expect(tensors.get(`${p}self_attn.o_proj.bias`)!.data.some((v) => v !== 0)).toBe(
        L.kvHeads[1] < L.kvHeads[0],
      );
      expect(tensors.get(`${p}mlp.down_proj.bias`)!.data.some((v) => v !== 0)).toBe(L.ffn[1] < L.ffn[0]);
    }
    expect(report.layers.some((L) => L.kvHeads[1] < L.kvHeads[0])).toBe(true);
    const m = loadModel(pr.out);
    expect(m.dims.layers.map((l) => [l.nHeads, l.nKv, l.ffn])).toEqual(
      report.layers.map((l) => [l.heads[1], l.kvHeads[1], l.ffn[1]]),
    );
    expect(m.dims.layers.every((l) => l.bias.q && l.bias.o && l.bias.gate && l.bias.down)).toBe(true);
    m.close();
    // the reference forward runs on it (finite logits)
    expect(referenceDecoderForward(cfg, tensors, IDS.slice(0, 6)).logits.every(Number.isFinite)).toBe(true);
    const r = await runCli(["inspect", pr.out, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const j = parseSingleJson(r.stdout);
    expect(j.uniformWidths).toBe(false);
    expect(
      (j.perLayer as { heads: number; kvHeads: number; ffn: number }[]).map((l) => [
        l.heads,
        l.kvHeads,
        l.ffn,
      ]),
    ).toEqual(report.layers.map((l) => [l.heads[1], l.kvHeads[1], l.ffn[1]]));
    expect((j.params as { total: number }).total).toBe(report.params.after.total);

    // prune the pruned model again (which leaves the first output untouched)
    const first = snapshotDir(pr.out);
    const pr2 = prune(pr.out, {
      ratio: 0.2,
      calib: [story],
      allocation: "uniform",
      reconstruct: "bias",
      calibration: "dense",
    });
    const r2 = await pr2;
    expect(r2.layers.map((l) => l.heads[0])).toEqual(report.layers.map((l) => l.heads[1]));
    expect(r2.layers.map((l) => l.ffn[0])).toEqual(report.layers.map((l) => l.ffn[1]));
    expect(r2.params.after.prunable).toBeLessThan(report.params.after.prunable);
    const m2 = loadModel(pr2.out);
    expect(m2.dims.layers.map((l) => l.ffn)).toEqual(r2.layers.map((l) => l.ffn[1]));
    m2.close();
    expect(snapshotDir(pr.out)).toEqual(first);
  });

  it("llama · uniform: standard config keys (no pare_layer_widths), a stock-shaped model", async () => {
    const pr = prune(llamaDir, {
      ratio: 0.3,
      calib: [story],
      allocation: "uniform",
      reconstruct: "none",
      calibration: "dense",
    });
    await pr;
    const cfg = JSON.parse(fs.readFileSync(path.join(pr.out, "config.json"), "utf8"));
    expect(cfg.pare_layer_widths).toBeUndefined();
    expect(cfg.num_attention_heads).toBe(2);
    expect(cfg.num_key_value_heads).toBe(1);
    expect(cfg.head_dim).toBe(8);
    expect(cfg.attention_bias).toBe(false);
    expect(cfg.mlp_bias).toBe(false);
    const m = loadModel(pr.out);
    expect(m.dims.layers.every((l) => l.ffn === cfg.intermediate_size)).toBe(true);
    m.close();
  });

  it("BERT: pruned_heads accumulates in the original head numbering over two prunes", async () => {
    const pr1 = prune(bertDir, {
      ratio: 0.3,
      calib: [lines],
      allocation: "uniform",
      reconstruct: "liar",
      calibration: "dense",
    });
    const r1 = await pr1;
    const c1 = JSON.parse(fs.readFileSync(path.join(pr1.out, "config.json"), "utf8"));
    const removed1 = r1.layers.map((l) => [0, 1, 2, 3].filter((h) => !l.keptHeads.includes(h)));
    for (const rm of removed1) expect(rm.length).toBe(1); // round(0.3·4) = 1 head per layer
    expect(c1.pruned_heads).toEqual(Object.fromEntries(removed1.map((rm, i) => [String(i), rm])));
    const pr2 = prune(pr1.out, {
      ratio: 0.4,
      calib: [lines],
      allocation: "uniform",
      reconstruct: "none",
      calibration: "dense",
    });
    const r2 = await pr2;
    const c2 = JSON.parse(fs.readFileSync(path.join(pr2.out, "config.json"), "utf8"));
    const original: number[][] = [];
    r2.layers.forEach((l, i) => {
      const remaining = [0, 1, 2, 3].filter((h) => !removed1[i].includes(h)); // current index → original head
      const gone = remaining.filter((_, cur) => !l.keptHeads.includes(cur));
      expect(gone.length).toBe(1); // round(0.4·3) = 1
      expect(c2.pruned_heads[String(i)]).toEqual([...removed1[i], ...gone].sort((a, b) => a - b));
      original.push(remaining.filter((_, cur) => l.keptHeads.includes(cur)));
    });
    // the query rows left are those of the original heads the config says remain
    const { tensors } = readFolder(pr2.out);
    const orig = tensorMap(bert);
    const hd = 8;
    original.forEach((heads, i) => {
      const q = tensors.get(`bert.encoder.layer.${i}.attention.self.query.weight`)!;
      const q0 = orig.get(`bert.encoder.layer.${i}.attention.self.query.weight`)!;
      expect(q.shape).toEqual([heads.length * hd, 32]);
      heads.forEach((h, k) => {
        expect(Array.from(q.data.subarray(k * hd * 32, (k + 1) * hd * 32))).toEqual(
          Array.from(q0.data.subarray(h * hd * 32, (h + 1) * hd * 32)),
        );
      });
    });
    const m = loadModel(pr2.out);
    expect(m.dims.layers.map((l) => l.nHeads)).toEqual([2, 2]);
    m.close();
    const out = referenceBertForward(c2, tensors, [2, 5, 6, 7, 3]);
    expect(out.logits!.every(Number.isFinite)).toBe(true);
    const r = await runCli(["inspect", pr2.out, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect((parseSingleJson(r.stdout).perLayer as { heads: number }[]).map((l) => l.heads)).toEqual([2, 2]);
  });
});

describe("reproducibility and identity", () => {
  it("the same recipe and seed twice give a byte-identical model.safetensors (and the same report layers)", async () => {
    const s: Partial<Recipe> = {
      ratio: 0.35,
      calib: [story],
      allocation: "global",
      reconstruct: "liar",
      calibration: "sequential",
    };
    const a = prune(llamaDir, s);
    const ra = await a;
    const b = prune(llamaDir, s);
    const rb = await b;
    expect(
      fs
        .readFileSync(path.join(b.out, "model.safetensors"))
        .equals(fs.readFileSync(path.join(a.out, "model.safetensors"))),
    ).toBe(true);
    expect(fs.readFileSync(path.join(b.out, "config.json"), "utf8")).toBe(
      fs.readFileSync(path.join(a.out, "config.json"), "utf8"),
    );
    expect(rb.layers).toEqual(ra.layers);
    // another calibration seed samples other windows
    const c = prune(llamaDir, { ...s, seed: 2 });
    await c;
    expect(
      fs
        .readFileSync(path.join(c.out, "model.safetensors"))
        .equals(fs.readFileSync(path.join(a.out, "model.safetensors"))),
    ).toBe(false);
  });

  const ratio0: [string, () => { dir: string; settings: Partial<Recipe> }][] = [
    [
      "llama · magnitude-l2 · global · none",
      () => ({
        dir: llamaDir,
        settings: { criterion: "magnitude-l2", reconstruct: "none", allocation: "global" },
      }),
    ],
    [
      "llama · flap-wifv · uniform · liar",
      () => ({ dir: llamaDir, settings: { calib: [story], reconstruct: "liar", allocation: "uniform" } }),
    ],
    [
      "bert · wanda-sp · global · none",
      () => ({
        dir: bertDir,
        settings: { calib: [lines], criterion: "wanda-sp", reconstruct: "none", allocation: "global" },
      }),
    ],
  ];
  for (const [name, setup] of ratio0) {
    it(`ratio 0 keeps everything and reproduces the input tensors exactly (${name})`, async () => {
      const { dir: d, settings } = setup();
      const pr = prune(d, { ratio: 0, calibration: "dense", ...settings });
      const r = await pr;
      expect(r.achievedRatio).toBe(0);
      r.layers.forEach((l) => {
        expect(l.heads[1]).toBe(l.heads[0]);
        expect(l.kvHeads[1]).toBe(l.kvHeads[0]);
        expect(l.ffn[1]).toBe(l.ffn[0]);
      });
      const a = readFolder(d);
      const b = readFolder(pr.out);
      expect([...b.tensors.keys()].sort()).toEqual([...a.tensors.keys()].sort());
      for (const [k, t] of a.tensors) {
        expect(b.tensors.get(k)!.shape).toEqual(t.shape);
        expect(Buffer.from(b.tensors.get(k)!.data.buffer).equals(Buffer.from(t.data.buffer)), k).toBe(true);
      }
      expect(b.config.pare_layer_widths).toBeUndefined();
      for (const key of ["num_attention_heads", "intermediate_size", "num_hidden_layers", "hidden_size"]) {
        expect(b.config[key]).toEqual(a.config[key]);
      }
      expect(b.config.pruned_heads ?? {}).toEqual({});
    });
  }

  it("the input folders are byte-identical after every prune in this file", () => {
    for (const [d, snap] of Object.entries(inputSnapshots)) expect(snapshotDir(d)).toEqual(snap);
  });
});
