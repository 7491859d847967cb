/**
 * pare's ONNX export run by onnxruntime-web (WASM backend, one thread) in headless Chromium: the page
 * (test/browser/page) loads ort.wasm.min.mjs from node_modules/onnxruntime-web/dist, creates a session from the
 * exported onnx/model.onnx served over HTTP on 127.0.0.1, and runs fixed inputs; the logits read back with
 * page.evaluate must equal pare's onnxruntime-node forward within 1e-4.
 *
 * Needs /usr/bin/chromium (CI: apt-get install -y chromium) and playwright-core; without Chromium the tests skip.
 *
 * Set PARE_DIFF_REPORT=<file> to have the observed maximum differences written there as JSON (nothing is printed).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { quantize } from "../../src/api/quantize.ts";
import { type LoadedModel, loadModel } from "../../src/arch/load.ts";
import { exportOnnx } from "../../src/export/onnx.ts";
import { emitModelGraph } from "../../src/onnx/emit.ts";
import { type HostTensor, i64From, Session } from "../../src/runtime/ort.ts";
import {
  HAVE_CHROMIUM,
  launchChromium,
  ORT_WEB_DIST,
  openPage,
  type StaticServer,
  startStaticServer,
} from "../helpers/browser.ts";
import {
  makeByteBpeTokenizerJson,
  makeTinyBert,
  makeTinyLlama,
  makeWordPieceTokenizerJson,
  nonUniformLlama,
  type TinyModel,
  writeTinyModel,
} from "../helpers/tinyModels.ts";

const PAGE_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), "page");

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

/** A feed as the page takes it (plain JSON). */
interface PageFeed {
  type: "int64" | "float32";
  dims: number[];
  data: number[];
}

interface PageResult {
  outputs: Record<string, { dims: number[]; type: string; data: number[] }>;
  inputNames: string[];
  outputNames: string[];
  ortVersion: string;
}

const feed = (type: PageFeed["type"], dims: number[], data: number[]): PageFeed => ({ type, dims, data });

/** The page's ORT-web feed → the same tensor for pare's Session (onnxruntime-node). */
function hostTensor(f: PageFeed): HostTensor {
  return f.type === "int64"
    ? i64From(f.dims, f.data)
    : { type: "float32", dims: f.dims, data: Float32Array.from(f.data) };
}

function runInPage(page: Page, modelUrl: string, feeds: Record<string, PageFeed>, outputs: string[]) {
  return page.evaluate(
    ([u, f, o]) =>
      (
        globalThis as unknown as {
          pareRun(u: string, f: unknown, o: string[]): Promise<PageResult>;
        }
      ).pareRun(u, f, o),
    [modelUrl, feeds, outputs] as const,
  );
}

const tinyLlama = (): TinyModel => nonUniformLlama(81);

describe.skipIf(!HAVE_CHROMIUM)(
  HAVE_CHROMIUM
    ? "onnxruntime-web (WASM, 1 thread) in headless Chromium runs pare's export with pare's logits"
    : "chromium not installed: skipped",
  () => {
    let root: string;
    let server: StaticServer;
    let browser: Browser;
    let page: Page;
    let pageErrors: string[];
    const models: LoadedModel[] = [];

    beforeAll(async () => {
      root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-ortweb-"));
      const exported = path.join(root, "models");
      writeTinyModel(path.join(root, "src-llama"), tinyLlama(), makeByteBpeTokenizerJson(300));
      const bert = makeTinyBert({ seed: 82, vocab: 100, numLabels: 2 });
      writeTinyModel(
        path.join(root, "src-bert"),
        bert,
        makeWordPieceTokenizerJson(["the", "film", "good", "bad"]),
      );
      for (const name of ["llama", "bert"]) {
        const m = loadModel(path.join(root, `src-${name}`));
        models.push(m);
        exportOnnx(m, path.join(exported, name));
      }
      // a 4-bit GPTQ folder (pare quantize) → onnx/model_q4.onnx with MatMulNBits
      writeTinyModel(path.join(root, "src-q"), makeTinyLlama({ seed: 83 }), makeByteBpeTokenizerJson(300));
      const calib = path.join(root, "calib.txt");
      fs.writeFileSync(calib, "the cat sat on the mat while the dog slept by the door. ".repeat(60));
      await quantize({
        model: path.join(root, "src-q"),
        out: path.join(root, "q4"),
        bits: 4,
        groupSize: 16,
        calib: [calib],
        samples: 4,
        seqLen: 16,
      });
      const q = loadModel(path.join(root, "q4"));
      models.push(q);
      exportOnnx(q, path.join(exported, "q4"));
      server = await startStaticServer({ "/": PAGE_DIR, "/ort/": ORT_WEB_DIST, "/models/": exported });
      browser = await launchChromium();
      ({ page, errors: pageErrors } = await openPage(browser, `${server.url}/index.html`, "pareReady"));
    }, 180_000);

    afterAll(async () => {
      await page?.close();
      await browser?.close();
      await server?.close();
      for (const m of models) m.close();
      if (root) fs.rmSync(root, { recursive: true, force: true });
      const file = process.env.PARE_DIFF_REPORT;
      if (file && Object.keys(observed).length > 0)
        fs.writeFileSync(file, `${JSON.stringify(observed, null, 2)}\n`);
    });

    it("tiny llama (non-uniform GQA widths), prefill with an empty past, then one cached step: logits equal pare's (≤ 1e-4)", async () => {
      const model = models[0];
      const ids = [1, 72, 101, 108, 108, 111, 44, 263];
      const T = ids.length;
      const feeds: Record<string, PageFeed> = {
        input_ids: feed("int64", [1, T], ids),
        attention_mask: feed(
          "int64",
          [1, T],
          ids.map(() => 1),
        ),
        position_ids: feed(
          "int64",
          [1, T],
          ids.map((_, t) => t),
        ),
      };
      model.dims.layers.forEach((L, i) => {
        for (const kv of ["key", "value"])
          feeds[`past_key_values.${i}.${kv}`] = feed("float32", [1, L.nKv, 0, model.dims.headDim], []);
      });
      const r = await runInPage(page, `${server.url}/models/llama/onnx/model.onnx`, feeds, [
        "logits",
        "present.1.key",
        "present.2.value",
      ]);
      expect(r.ortVersion).toMatch(/^1\.\d+/);
      expect(r.outputs.logits.dims).toEqual([1, T, model.dims.vocab]);
      expect(r.outputs["present.1.key"].dims).toEqual([1, 1, T, 8]);
      expect(r.outputs["present.2.value"].dims).toEqual([1, 3, T, 8]);

      // pare's own forward (onnxruntime-node)
      const own = await Session.create(emitModelGraph(model), { threads: 1 });
      const exported = await Session.create(path.join(root, "models", "llama", "onnx", "model.onnx"), {
        threads: 1,
      });
      try {
        const want = await own.run({ input_ids: i64From([1, T], ids) }, ["logits"]);
        expect(
          diff(
            "llama: ort-web logits vs pare forward",
            r.outputs.logits.data,
            want.logits.data as Float32Array,
          ),
        ).toBeLessThan(1e-4);
        const node = await exported.run(
          Object.fromEntries(Object.entries(feeds).map(([k, f]) => [k, hostTensor(f)])),
          ["present.1.key", "present.2.value"],
        );
        for (const n of ["present.1.key", "present.2.value"])
          expect(
            diff("llama: ort-web present vs ort-node", r.outputs[n].data, node[n].data as Float32Array),
          ).toBeLessThan(1e-4);

        // one decoding step in the page with a non-empty past (ORT-node's present of the same prefill)
        const all = await exported.run(
          Object.fromEntries(Object.entries(feeds).map(([k, f]) => [k, hostTensor(f)])),
        );
        const next = 200;
        const step: Record<string, PageFeed> = {
          input_ids: feed("int64", [1, 1], [next]),
          attention_mask: feed("int64", [1, T + 1], new Array(T + 1).fill(1)),
          position_ids: feed("int64", [1, 1], [T]),
        };
        model.dims.layers.forEach((_, i) => {
          for (const kv of ["key", "value"]) {
            const p = all[`present.${i}.${kv}`];
            step[`past_key_values.${i}.${kv}`] = feed("float32", p.dims, Array.from(p.data as Float32Array));
          }
        });
        const s = await runInPage(page, `${server.url}/models/llama/onnx/model.onnx`, step, [
          "logits",
          "present.0.key",
        ]);
        expect(s.outputs["present.0.key"].dims).toEqual([1, 2, T + 1, 8]);
        const V = model.dims.vocab;
        const full = await own.run({ input_ids: i64From([1, T + 1], [...ids, next]) }, ["logits"]);
        const lastRow = (full.logits.data as Float32Array).subarray(T * V, (T + 1) * V);
        expect(
          diff("llama: ort-web cached step vs pare full forward", s.outputs.logits.data, lastRow),
        ).toBeLessThan(1e-4);
      } finally {
        await own.release();
        await exported.release();
      }
    });

    it("a GPTQ 4-bit export (onnx/model_q4.onnx, com.microsoft MatMulNBits): prefill logits equal ORT-node's and pare's dequantized forward (≤ 1e-4)", async () => {
      const model = models[2];
      const ids = [1, 40, 41, 42, 43, 44, 45, 46];
      const T = ids.length;
      const feeds: Record<string, PageFeed> = {
        input_ids: feed("int64", [1, T], ids),
        attention_mask: feed("int64", [1, T], new Array(T).fill(1)),
        position_ids: feed(
          "int64",
          [1, T],
          ids.map((_, t) => t),
        ),
      };
      model.dims.layers.forEach((L, i) => {
        for (const kv of ["key", "value"])
          feeds[`past_key_values.${i}.${kv}`] = feed("float32", [1, L.nKv, 0, model.dims.headDim], []);
      });
      const file = path.join(root, "models", "q4", "onnx", "model_q4.onnx");
      expect(fs.readFileSync(file).includes(Buffer.from("MatMulNBits"))).toBe(true);
      const r = await runInPage(page, `${server.url}/models/q4/onnx/model_q4.onnx`, feeds, ["logits"]);
      const node = await Session.create(file, { threads: 1 });
      const own = await Session.create(emitModelGraph(model), { threads: 1 });
      try {
        const n = await node.run(
          Object.fromEntries(Object.entries(feeds).map(([k, f]) => [k, hostTensor(f)])),
          ["logits"],
        );
        expect(
          diff("q4: ort-web vs ort-node", r.outputs.logits.data, n.logits.data as Float32Array),
        ).toBeLessThan(1e-4);
        const want = await own.run({ input_ids: i64From([1, T], ids) }, ["logits"]);
        expect(
          diff(
            "q4: ort-web vs pare dequantized forward",
            r.outputs.logits.data,
            want.logits.data as Float32Array,
          ),
        ).toBeLessThan(1e-4);
      } finally {
        await node.release();
        await own.release();
      }
    });

    it("tiny BERT classifier, right-padded batch of 3: logits equal pare's (≤ 1e-4)", async () => {
      const model = models[1];
      const seqs = [
        { ids: [2, 5, 6, 3], types: [0, 0, 0, 0] },
        { ids: [2, 7, 8, 9, 10, 11, 3], types: [0, 0, 0, 0, 0, 0, 0] },
        { ids: [2, 12, 3, 40, 41, 3], types: [0, 0, 0, 1, 1, 1] },
      ];
      const B = seqs.length;
      const T = Math.max(...seqs.map((s) => s.ids.length));
      const pad = (xs: number[]) => [...xs, ...new Array(T - xs.length).fill(0)];
      const feeds: Record<string, PageFeed> = {
        input_ids: feed(
          "int64",
          [B, T],
          seqs.flatMap((s) => pad(s.ids)),
        ),
        attention_mask: feed(
          "int64",
          [B, T],
          seqs.flatMap((s) => pad(s.ids.map(() => 1))),
        ),
        token_type_ids: feed(
          "int64",
          [B, T],
          seqs.flatMap((s) => pad(s.types)),
        ),
      };
      const r = await runInPage(page, `${server.url}/models/bert/onnx/model.onnx`, feeds, [
        "logits",
        "pooled",
      ]);
      expect(r.inputNames).toEqual(["input_ids", "attention_mask", "token_type_ids"]);
      expect(r.outputs.logits.dims).toEqual([B, 2]);
      const own = await Session.create(emitModelGraph(model), { threads: 1 });
      try {
        const want = await own.run(
          Object.fromEntries(Object.entries(feeds).map(([k, f]) => [k, hostTensor(f)])),
          ["logits", "pooled"],
        );
        expect(
          diff(
            "bert: ort-web logits vs pare forward",
            r.outputs.logits.data,
            want.logits.data as Float32Array,
          ),
        ).toBeLessThan(1e-4);
        expect(
          diff(
            "bert: ort-web pooled vs pare forward",
            r.outputs.pooled.data,
            want.pooled.data as Float32Array,
          ),
        ).toBeLessThan(1e-4);
      } finally {
        await own.release();
      }
    });

    it("the page fetched only local files (page, ort-web WASM build, the two models) and logged no errors", () => {
      for (const p of server.requests)
        expect(p).toMatch(
          /^\/(index\.html|run\.mjs|ort\/ort(\.wasm\.min\.mjs|-wasm-simd-threaded\.(mjs|wasm))|models\/((llama|bert)\/onnx\/model|q4\/onnx\/model_q4)\.onnx)$/,
        );
      expect(server.requests).toContain("/ort/ort-wasm-simd-threaded.wasm");
      expect(pageErrors).toEqual([]);
    });
  },
);
