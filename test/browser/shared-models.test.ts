/**
 * The exported pruned shared models (llama-gqa-6l, bert-sst2-4l from ../shared/models) run in onnxruntime-web
 * (WASM) in headless Chromium with pare's logits. Skips without ../shared or without Chromium, saying which.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel } from "../../src/arch/load.ts";
import { exportOnnx } from "../../src/export/onnx.ts";
import { loadTokenizer } from "../../src/io/tokenizer.ts";
import { emitModelGraph } from "../../src/onnx/emit.ts";
import { runPrune } from "../../src/pipeline/prune.ts";
import { resolveRecipe } from "../../src/pipeline/recipe.ts";
import { i64From, Session } from "../../src/runtime/ort.ts";
import {
  HAVE_CHROMIUM,
  launchChromium,
  ORT_WEB_DIST,
  openPage,
  type StaticServer,
  startStaticServer,
} from "../helpers/browser.ts";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SHARED = path.resolve(HERE, "../../../shared");
const HAVE_SHARED =
  fs.existsSync(path.join(SHARED, "models/llama-gqa-6l")) &&
  fs.existsSync(path.join(SHARED, "models/bert-sst2-4l"));
const skip = !HAVE_SHARED || !HAVE_CHROMIUM;
const why = !HAVE_SHARED ? "../shared not found: skipped" : "chromium not installed: skipped";

type Feed =
  | { type: "int64"; dims: number[]; data: number[] }
  | { type: "float32"; dims: number[]; data: number[] };

function runInPage(page: Page, url: string, feeds: Record<string, Feed>, outputs: string[]) {
  return page.evaluate(
    ([u, f, o]) =>
      (
        globalThis as unknown as {
          pareRun(
            u: string,
            f: unknown,
            o: string[],
          ): Promise<{ outputs: Record<string, { dims: number[]; data: number[] }> }>;
        }
      ).pareRun(u, f, o),
    [url, feeds, outputs] as const,
  );
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

describe.skipIf(skip)(
  skip
    ? `pruned shared models in the browser (${why})`
    : "pruned shared models in onnxruntime-web (Chromium)",
  () => {
    let root: string;
    let server: StaticServer;
    let browser: Browser;
    let page: Page;

    beforeAll(async () => {
      root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-web-shared-"));
      const calib = path.join(root, "calib.txt");
      const wiki = fs
        .readFileSync(path.join(SHARED, "data/wikitext-2/tokens-v1/wiki.valid.tokens"), "utf8")
        .slice(0, 60_000);
      const sst = fs
        .readFileSync(path.join(SHARED, "data/sst2/stsa.binary.train"), "utf8")
        .split("\n")
        .slice(0, 300)
        .map((l) => l.replace(/^\d+\s+/, ""));
      fs.writeFileSync(calib, `${wiki}\n${sst.join("\n")}`);
      for (const name of ["llama-gqa-6l", "bert-sst2-4l"]) {
        const out = path.join(root, "pruned", name);
        await runPrune(
          resolveRecipe({
            model: path.join(SHARED, "models", name),
            out,
            ratio: 0.3,
            calib: [calib],
            samples: 8,
            seqLen: 64,
          }),
        );
        const m = loadModel(out);
        try {
          exportOnnx(m, path.join(root, "web", name));
        } finally {
          m.close();
        }
      }
      server = await startStaticServer({
        "/": path.join(HERE, "page"),
        "/ort/": ORT_WEB_DIST,
        "/models/": path.join(root, "web"),
      });
      browser = await launchChromium();
      ({ page } = await openPage(browser, `${server.url}/index.html`, "pareReady"));
    }, 120_000);

    afterAll(async () => {
      await page?.close();
      await browser?.close();
      await server?.close();
      if (root) fs.rmSync(root, { recursive: true, force: true });
    });

    it("pruned llama-gqa-6l: prefill logits of 'Once upon a time' equal pare's (≤ 1e-3)", async () => {
      const m = loadModel(path.join(root, "pruned", "llama-gqa-6l"));
      try {
        const ids = loadTokenizer(m.dir).encode("Once upon a time");
        const T = ids.length;
        const feeds: Record<string, Feed> = {
          input_ids: { type: "int64", dims: [1, T], data: ids },
          attention_mask: { type: "int64", dims: [1, T], data: ids.map(() => 1) },
          position_ids: { type: "int64", dims: [1, T], data: ids.map((_, t) => t) },
        };
        m.dims.layers.forEach((L, i) => {
          for (const kv of ["key", "value"])
            feeds[`past_key_values.${i}.${kv}`] = {
              type: "float32",
              dims: [1, L.nKv, 0, m.dims.headDim],
              data: [],
            };
        });
        const r = await runInPage(page, `${server.url}/models/llama-gqa-6l/onnx/model.onnx`, feeds, [
          "logits",
        ]);
        const s = await Session.create(emitModelGraph(m), { threads: 1 });
        const want = await s.run({ input_ids: i64From([1, T], ids) }, ["logits"]);
        await s.release();
        expect(maxDiff(r.outputs.logits.data, want.logits.data as Float32Array)).toBeLessThan(1e-3);
      } finally {
        m.close();
      }
    });

    it("pruned bert-sst2-4l: classifier logits of a padded batch equal pare's (≤ 1e-4)", async () => {
      const m = loadModel(path.join(root, "pruned", "bert-sst2-4l"));
      try {
        const tok = loadTokenizer(m.dir);
        const seqs = [
          "it 's a charming and often affecting journey .",
          "unflinchingly bleak and desperate",
        ].map((t) => tok.encode(t));
        const T = Math.max(...seqs.map((s) => s.length));
        const pad = (s: number[], v: number) => [...s, ...new Array(T - s.length).fill(v)];
        const ids = seqs.flatMap((s) => pad(s, 0));
        const mask = seqs.flatMap((s) =>
          pad(
            s.map(() => 1),
            0,
          ),
        );
        const types = new Array(ids.length).fill(0);
        const feeds: Record<string, Feed> = {
          input_ids: { type: "int64", dims: [2, T], data: ids },
          attention_mask: { type: "int64", dims: [2, T], data: mask },
          token_type_ids: { type: "int64", dims: [2, T], data: types },
        };
        const r = await runInPage(page, `${server.url}/models/bert-sst2-4l/onnx/model.onnx`, feeds, [
          "logits",
        ]);
        const s = await Session.create(emitModelGraph(m), { threads: 1 });
        const want = await s.run(
          {
            input_ids: i64From([2, T], ids),
            attention_mask: i64From([2, T], mask),
            token_type_ids: i64From([2, T], types),
          },
          ["logits"],
        );
        await s.release();
        expect(maxDiff(r.outputs.logits.data, want.logits.data as Float32Array)).toBeLessThan(1e-4);
      } finally {
        m.close();
      }
    });
  },
);
