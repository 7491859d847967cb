/**
 * pare end to end on the trained fixture models in ../shared/models (when present): pare's tokenizer, model
 * loading and ORT forward against the float64 Hugging Face references shipped with them
 * (reference/reference.json, reference/layer0.json).
 *
 * Set PARE_DIFF_REPORT=<file> to have the observed maximum differences written there as JSON (nothing is printed).
 */
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LoadedModel, loadModel } from "../../src/arch/load.ts";
import { Runner } from "../../src/eval/runner.ts";
import { loadTokenizer, type PareTokenizer } from "../../src/io/tokenizer.ts";
import { emitModelGraph } from "../../src/onnx/emit.ts";
import { i64From, Session } from "../../src/runtime/ort.ts";
import { REPO_ROOT } from "../helpers/cli.ts";

const SHARED = path.resolve(REPO_ROOT, "../shared/models");
const HAVE_SHARED = fs.existsSync(SHARED);

const observed: Record<string, number> = {};
afterAll(() => {
  const file = process.env.PARE_DIFF_REPORT;
  if (file && Object.keys(observed).length > 0)
    fs.writeFileSync(file, `${JSON.stringify(observed, null, 2)}\n`);
});

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

function argmaxRow(v: Float32Array, offset: number, n: number): number {
  let best = 0;
  for (let i = 1; i < n; i++) if (v[offset + i] > v[offset + best]) best = i;
  return best;
}

function softmax(v: ArrayLike<number>): number[] {
  let m = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < v.length; i++) m = Math.max(m, v[i]);
  const e = Array.from(v, (x) => Math.exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

const sum = (a: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return s;
};

const readJson = (name: string, file: string) =>
  JSON.parse(fs.readFileSync(path.join(SHARED, name, "reference", file), "utf8")) as Record<string, unknown>;

interface DecoderInput {
  text: string;
  input_ids: number[];
  last_logits: number[];
  logits_sum: number;
  argmax: number[];
}

interface BertInput {
  text: string;
  input_ids: number[];
  token_type_ids: number[];
  attention_mask: number[];
  logits: number[];
  probs: Record<string, number>;
  predicted: string;
  last_hidden_state_cls: number[];
}

describe.skipIf(!HAVE_SHARED)(
  `pare vs the fixture models' references${HAVE_SHARED ? "" : " (../shared not found: skipped)"}`,
  () => {
    describe("llama-gqa-6l", () => {
      let model: LoadedModel;
      let tok: PareTokenizer;
      let session: Session;
      let ref: Record<string, unknown>;
      let layer0: Record<string, unknown>;

      beforeAll(async () => {
        model = loadModel(path.join(SHARED, "llama-gqa-6l"));
        tok = loadTokenizer(model.dir);
        session = await Session.create(emitModelGraph(model, { taps: true }));
        ref = readJson("llama-gqa-6l", "reference.json");
        layer0 = readJson("llama-gqa-6l", "layer0.json");
      });
      afterAll(async () => {
        await session?.release();
        model?.close();
      });

      const forward = async (ids: number[]) => session.run({ input_ids: i64From([1, ids.length], ids) });

      it("token ids, last-position logits (≤ 1e-3), logits sum and per-position argmax", async () => {
        const V = model.dims.vocab;
        for (const inp of ref.inputs as DecoderInput[]) {
          expect(tok.encode(inp.text), inp.text).toEqual(inp.input_ids);
          const T = inp.input_ids.length;
          const out = await forward(inp.input_ids);
          const logits = out.logits.data as Float32Array;
          expect(out.logits.dims).toEqual([1, T, V]);
          expect(
            diff("llama-gqa-6l: last logits", logits.subarray((T - 1) * V), inp.last_logits),
          ).toBeLessThan(1e-3);
          const ds = Math.abs(sum(logits) - inp.logits_sum);
          observed["llama-gqa-6l: |logits sum diff| / (T·V)"] = Math.max(
            observed["llama-gqa-6l: |logits sum diff| / (T·V)"] ?? 0,
            ds / (T * V),
          );
          expect(ds).toBeLessThan(1e-4 * T * V);
          expect(Array.from({ length: T }, (_, t) => argmaxRow(logits, t * V, V))).toEqual(inp.argmax);
        }
      });

      it("greedy 20-token continuation (full recompute each step) is identical", async () => {
        const g = ref.greedy as { prompt: string; prompt_ids: number[]; new_ids: number[] };
        expect(tok.encode(g.prompt)).toEqual(g.prompt_ids);
        const logitsOnly = await Session.create(emitModelGraph(model));
        try {
          const ids = [...g.prompt_ids];
          const V = model.dims.vocab;
          for (let s = 0; s < g.new_ids.length; s++) {
            const out = await logitsOnly.run({ input_ids: i64From([1, ids.length], ids) });
            ids.push(argmaxRow(out.logits.data as Float32Array, (ids.length - 1) * V, V));
          }
          expect(ids.slice(g.prompt_ids.length)).toEqual(g.new_ids);
        } finally {
          await logitsOnly.release();
        }
      });

      it("taps: layer-0 o_proj / down_proj inputs ≤ 1e-3, every layer's tap sums close", async () => {
        const ids = layer0.input_ids as number[];
        expect(tok.encode(layer0.text as string)).toEqual(ids);
        const out = await forward(ids);
        const o = layer0.o_proj_input as { shape: number[]; data: number[] };
        const d = layer0.down_proj_input as { shape: number[]; data: number[] };
        expect(out["attn_in.0"].dims).toEqual([1, ...o.shape]);
        expect(out["mlp_in.0"].dims).toEqual([1, ...d.shape]);
        expect(
          diff("llama-gqa-6l: layer-0 taps", out["attn_in.0"].data as Float32Array, o.data),
        ).toBeLessThan(1e-3);
        expect(diff("llama-gqa-6l: layer-0 taps", out["mlp_in.0"].data as Float32Array, d.data)).toBeLessThan(
          1e-3,
        );
        const sums = layer0.all_layers_sums as Record<string, number>;
        for (let l = 0; l < model.dims.nLayers; l++) {
          const a = out[`attn_in.${l}`].data as Float32Array;
          const m = out[`mlp_in.${l}`].data as Float32Array;
          expect(
            diff(
              "llama-gqa-6l: tap sums / count",
              [sum(a) / a.length],
              [sums[`layers.${l}.o_proj_in`] / a.length],
            ),
          ).toBeLessThan(1e-4);
          expect(
            diff(
              "llama-gqa-6l: tap sums / count",
              [sum(m) / m.length],
              [sums[`layers.${l}.down_proj_in`] / m.length],
            ),
          ).toBeLessThan(1e-4);
        }
      });
    });

    describe("bert-sst2-4l", () => {
      let model: LoadedModel;
      let tok: PareTokenizer;
      let session: Session;
      let ref: Record<string, unknown>;
      let layer0: Record<string, unknown>;

      beforeAll(async () => {
        model = loadModel(path.join(SHARED, "bert-sst2-4l"));
        tok = loadTokenizer(model.dir);
        session = await Session.create(emitModelGraph(model, { taps: true }));
        ref = readJson("bert-sst2-4l", "reference.json");
        layer0 = readJson("bert-sst2-4l", "layer0.json");
      });
      afterAll(async () => {
        await session?.release();
        model?.close();
      });

      const forward = (ids: number[][], types: number[][], mask: number[][]) => {
        const dims = [ids.length, ids[0].length];
        return session.run({
          input_ids: i64From(dims, ids.flat()),
          token_type_ids: i64From(dims, types.flat()),
          attention_mask: i64From(dims, mask.flat()),
        });
      };

      it("token ids, logits (≤ 1e-3), probabilities (≤ 1e-4), [CLS] hidden state (≤ 1e-3), predicted label", async () => {
        const labels = ref.labels as Record<string, string>;
        const H = model.dims.hidden;
        for (const inp of ref.inputs as BertInput[]) {
          expect(tok.encode(inp.text), inp.text).toEqual(inp.input_ids);
          const out = await forward([inp.input_ids], [inp.token_type_ids], [inp.attention_mask]);
          const logits = out.logits.data as Float32Array;
          expect(diff("bert-sst2-4l: logits", logits, inp.logits)).toBeLessThan(1e-3);
          const probs = softmax(logits);
          const want = Object.keys(labels).map((k) => inp.probs[labels[k]]);
          expect(diff("bert-sst2-4l: probs", probs, want)).toBeLessThan(1e-4);
          const cls = (out.last_hidden_state.data as Float32Array).subarray(0, H);
          expect(diff("bert-sst2-4l: [CLS] last hidden", cls, inp.last_hidden_state_cls)).toBeLessThan(1e-3);
          expect(labels[String(argmaxRow(logits, 0, logits.length))]).toBe(inp.predicted);
        }
      });

      it("padded batch: probabilities ≤ 1e-4 per row (raw graph and the Runner used by eval)", async () => {
        const pb = ref.padded_batch as {
          texts: string[];
          input_ids: number[][];
          attention_mask: number[][];
          probs: number[][];
        };
        const types = pb.input_ids.map((r) => r.map(() => 0));
        const out = await forward(pb.input_ids, types, pb.attention_mask);
        const C = model.dims.numLabels;
        const logits = out.logits.data as Float32Array;
        pb.probs.forEach((want, b) => {
          expect(
            diff("bert-sst2-4l: padded batch probs", softmax(logits.subarray(b * C, (b + 1) * C)), want),
          ).toBeLessThan(1e-4);
        });
        // eval's path: tokenizer → Runner.classify (pads and masks itself)
        const runner = await Runner.create(model);
        try {
          const enc = pb.texts.map((t) => ({ ids: tok.encode(t) }));
          enc.forEach((e, b) => {
            const n = pb.attention_mask[b].reduce((s, x) => s + x, 0);
            expect(e.ids).toEqual(pb.input_ids[b].slice(0, n));
          });
          const got = await runner.classify(enc, tok.padId ?? 0);
          got.forEach((lg, b) => {
            expect(diff("bert-sst2-4l: padded batch probs (Runner)", softmax(lg), pb.probs[b])).toBeLessThan(
              1e-4,
            );
          });
        } finally {
          await runner.close();
        }
      });

      it("taps: layer-0 attention.output.dense / output.dense inputs ≤ 1e-3, every layer's tap sums close", async () => {
        const ids = layer0.input_ids as number[];
        expect(tok.encode(layer0.text as string)).toEqual(ids);
        const zeros = ids.map(() => 0);
        const out = await forward([ids], [zeros], [ids.map(() => 1)]);
        const a = layer0.attention_output_dense_input as { data: number[] };
        const o = layer0.output_dense_input as { data: number[] };
        expect(
          diff("bert-sst2-4l: layer-0 taps", out["attn_in.0"].data as Float32Array, a.data),
        ).toBeLessThan(1e-3);
        expect(diff("bert-sst2-4l: layer-0 taps", out["mlp_in.0"].data as Float32Array, o.data)).toBeLessThan(
          1e-3,
        );
        const sums = layer0.all_layers_sums as Record<string, number>;
        for (let l = 0; l < model.dims.nLayers; l++) {
          const at = out[`attn_in.${l}`].data as Float32Array;
          const mt = out[`mlp_in.${l}`].data as Float32Array;
          expect(
            diff(
              "bert-sst2-4l: tap sums / count",
              [sum(at) / at.length],
              [sums[`layers.${l}.attn_out_in`] / at.length],
            ),
          ).toBeLessThan(1e-4);
          expect(
            diff(
              "bert-sst2-4l: tap sums / count",
              [sum(mt) / mt.length],
              [sums[`layers.${l}.out_in`] / mt.length],
            ),
          ).toBeLessThan(1e-4);
        }
      });
    });
  },
);
