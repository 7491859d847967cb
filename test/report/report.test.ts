/**
 * pare report: the HTML is self-contained (no network references), its charts carry the pruning's data,
 * and it renders in headless Chromium to a non-blank page whose charts have painted pixels.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PruneReport, runPrune } from "../../src/pipeline/prune.ts";
import { resolveRecipe } from "../../src/pipeline/recipe.ts";
import { renderReport } from "../../src/pipeline/report.ts";
import { HAVE_CHROMIUM, launchChromium } from "../helpers/browser.ts";
import { runCli } from "../helpers/cli.ts";
import { makeByteBpeTokenizerJson, makeTinyLlama, writeTinyModel } from "../helpers/tinyModels.ts";

let root: string;
let pruned: string;
let report: PruneReport;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-report-"));
  const model = path.join(root, "tiny");
  writeTinyModel(
    model,
    makeTinyLlama({ seed: 3, layers: 3, intermediate: 40 }),
    makeByteBpeTokenizerJson(300),
  );
  const calib = path.join(root, "calib.txt");
  fs.writeFileSync(calib, "the quick brown fox jumps over the lazy dog. ".repeat(200));
  pruned = path.join(root, "pruned");
  report = await runPrune(
    resolveRecipe({ model, out: pruned, ratio: 0.4, calib: [calib], samples: 8, seqLen: 32 }),
  );
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe("renderReport", () => {
  it("is self-contained and its charts carry the kept units of every layer", () => {
    const html = renderReport({
      pruning: report,
      metrics: [{ name: "perplexity", dense: 10, pruned: 11, protocol: "p" }],
    });
    expect(html).not.toMatch(/(src|href)=["']?https?:/i);
    expect(html).not.toMatch(/<script/i);
    for (const l of report.layers) {
      expect(html).toContain(`class="bar after" data-layer="${l.layer}" data-value="${l.heads[1]}"`);
      expect(html).toContain(`class="bar after" data-layer="${l.layer}" data-value="${l.ffn[1]}"`);
      expect(html).toContain(`id="hist-mlp-${l.layer}"`);
    }
    // histogram counts add up to the units of each layer
    const counts = [...html.matchAll(/id="hist-mlp-0"[\s\S]*?<\/svg>/g)][0][0];
    const total = [...counts.matchAll(/data-count="(\d+)"/g)].reduce((s, m) => s + Number(m[1]), 0);
    expect(total).toBe(report.layers[0].ffn[0]);
    expect(html).toContain("<td>perplexity</td>");
  });

  it("escapes text from the recipe and paths", () => {
    const evil = { ...report, notes: ["<img src=x onerror=alert(1)>"] };
    const html = renderReport({ pruning: evil });
    expect(html).not.toContain("<img src=x");
    expect(html).toContain("&lt;img src=x");
  });
});

describe("pare report (CLI)", () => {
  it("writes report.html next to the model and prints its path with --json", async () => {
    const r = await runCli(["report", pruned, "--json"]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout.trim());
    expect(out.report).toBe(path.join(pruned, "report.html"));
    expect(fs.readFileSync(out.report, "utf8")).toContain("pare pruning report");
  });

  it("a folder without pare-pruning.json is a coded error", async () => {
    const r = await runCli(["report", root]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^error\[E_FOLDER_INCOMPLETE\]/);
  });
});

describe.skipIf(!HAVE_CHROMIUM)(
  HAVE_CHROMIUM
    ? "report in headless Chromium"
    : "report in headless Chromium (chromium not installed: skipped)",
  () => {
    it("renders a non-blank page whose charts have painted pixels", async () => {
      const file = path.join(root, "r.html");
      fs.writeFileSync(file, renderReport({ pruning: report }));
      const browser = await launchChromium();
      try {
        const page = await browser.newPage({ viewport: { width: 1200, height: 1400 } });
        await page.goto(`file://${file}`);
        const png = await page.screenshot({ fullPage: true });
        expect(png.length).toBeGreaterThan(10_000);
        // rasterize each chart's SVG into a canvas and count non-white pixels
        const painted = await page.evaluate(async () => {
          const out: Record<string, number> = {};
          for (const svg of Array.from(document.querySelectorAll("svg.chart"))) {
            const img = new Image();
            const src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(new XMLSerializer().serializeToString(svg))}`;
            await new Promise((res, rej) => {
              img.onload = res;
              img.onerror = rej;
              img.src = src;
            });
            const c = document.createElement("canvas");
            c.width = img.width;
            c.height = img.height;
            const ctx = c.getContext("2d")!;
            ctx.fillStyle = "#fff";
            ctx.fillRect(0, 0, c.width, c.height);
            ctx.drawImage(img, 0, 0);
            const d = ctx.getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i] < 200 || d[i + 1] < 200 || d[i + 2] < 200) n++;
            out[svg.id] = n;
          }
          return out;
        });
        expect(Object.keys(painted)).toContain("chart-heads");
        expect(Object.keys(painted)).toContain("chart-ffn");
        for (const [id, n] of Object.entries(painted)) expect(n, id).toBeGreaterThan(100);
      } finally {
        await browser.close();
      }
    });
  },
);
