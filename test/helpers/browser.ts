/**
 * Headless Chromium for browser tests: a static file server on 127.0.0.1 (random port) and a Chromium launched
 * through playwright-core with the system browser (/usr/bin/chromium; the CI installs it with apt-get).
 *
 * playwright-core is imported lazily, so that a machine without Chromium skips the browser tests without loading it.
 */
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";

/** The system Chromium the browser tests use. */
export const CHROMIUM_PATH = "/usr/bin/chromium";
export const HAVE_CHROMIUM = fs.existsSync(CHROMIUM_PATH);

/** Flags for a quiet, offline headless Chromium (no sandbox: CI runs as root in a container). */
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

/** onnxruntime-web's dist folder (the WASM build: ort.wasm.min.mjs + ort-wasm-simd-threaded.{mjs,wasm}). */
export const ORT_WEB_DIST = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "../../node_modules/onnxruntime-web/dist",
);

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".wasm": "application/wasm",
  ".onnx": "application/octet-stream",
  ".onnx_data": "application/octet-stream",
  ".map": "application/json; charset=utf-8",
};

export interface StaticServer {
  /** base URL without trailing slash, e.g. http://127.0.0.1:41234 */
  url: string;
  /** every path requested so far (for assertions on what the page fetched) */
  requests: string[];
  close(): Promise<void>;
}

/**
 * Serves folders under URL prefixes: `mounts` maps a prefix ("/", "/ort/", "/models/") to a folder. The longest
 * matching prefix wins; paths that would leave the mounted folder, and anything that is not a regular file, get
 * 404. Only GET/HEAD. Listens on 127.0.0.1 on a random free port.
 */
export async function startStaticServer(mounts: Record<string, string>): Promise<StaticServer> {
  const prefixes = Object.keys(mounts).sort((a, b) => b.length - a.length);
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    const urlPath = decodeURIComponent(new URL(req.url ?? "/", "http://127.0.0.1").pathname);
    requests.push(urlPath);
    const notFound = () => {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found");
    };
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405);
      res.end();
      return;
    }
    const prefix = prefixes.find((p) => urlPath.startsWith(p));
    if (prefix === undefined) return notFound();
    const root = path.resolve(mounts[prefix]);
    const rel = urlPath.slice(prefix.length) || "index.html";
    const file = path.resolve(root, rel);
    if (file !== root && !file.startsWith(root + path.sep)) return notFound();
    let st: fs.Stats;
    try {
      st = fs.statSync(file);
    } catch {
      return notFound();
    }
    if (!st.isFile()) return notFound();
    const ext = file.endsWith(".onnx_data") ? ".onnx_data" : path.extname(file);
    res.writeHead(200, {
      "content-type": CONTENT_TYPES[ext] ?? "application/octet-stream",
      "content-length": st.size,
      "cache-control": "no-store",
    });
    if (req.method === "HEAD") {
      res.end();
      return;
    }
    fs.createReadStream(file).pipe(res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Launches the system Chromium headless through playwright-core (imported here, lazily). */
export async function launchChromium(): Promise<Browser> {
  const { chromium } = await import("playwright-core");
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: CHROMIUM_ARGS,
    headless: true,
    timeout: 30_000,
  });
}

/**
 * Opens `url` in a fresh page and waits until `globalThis[readyFlag]` is true (set by the page's module script
 * once it has loaded). Page errors and failed requests are collected in `errors` rather than printed.
 */
export async function openPage(
  browser: Browser,
  url: string,
  readyFlag: string,
): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console.error: ${m.text()}`);
  });
  page.on("requestfailed", (r) => errors.push(`requestfailed: ${r.url()} ${r.failure()?.errorText ?? ""}`));
  await page.goto(url, { waitUntil: "load", timeout: 20_000 });
  try {
    await page.waitForFunction((flag) => (globalThis as Record<string, unknown>)[flag] === true, readyFlag, {
      timeout: 20_000,
    });
  } catch (e) {
    throw new Error(`page ${url} did not become ready: ${(e as Error).message}\n${errors.join("\n")}`);
  }
  return { page, errors };
}
