/**
 * pare as an installed package: `npm pack` (which builds dist/), the tarball installed into an empty project
 * (scripts off, packages from the npm cache the project's own install filled), then used the way a user would:
 * the API imported from "pare" in plain Node ESM and in a type-checked TypeScript file, the bundled demo model
 * pruned through it, examples/library.mjs run, and `pare --help` / `--version` run from the install without
 * loading ONNX Runtime.
 */
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../helpers/cli.ts";

const DEMO = path.join(REPO_ROOT, "examples", "llama-gqa-6l-f16");
const CALIB = path.join(REPO_ROOT, "examples", "data", "calib-wikitext2-valid.txt");
const env = {
  ...process.env,
  ONNXRUNTIME_NODE_INSTALL: "skip",
  npm_config_fund: "false",
  npm_config_audit: "false",
};

let root: string;
let proj: string;
let tarball: string;
let files: string[] = [];

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-pack-"));
  const out = execFileSync("npm", ["pack", "--json", "--pack-destination", root], {
    cwd: REPO_ROOT,
    env,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
  // npm pack --json prints one array (prepack's build output goes to stderr)
  const info = JSON.parse(out.slice(out.indexOf("["))) as { filename: string; files: { path: string }[] }[];
  tarball = path.join(root, info[0].filename);
  files = info[0].files.map((f) => f.path);
  proj = path.join(root, "consumer");
  fs.mkdirSync(proj);
  fs.writeFileSync(
    path.join(proj, "package.json"),
    JSON.stringify({ name: "consumer", private: true, type: "module" }, null, 2),
  );
  execFileSync(
    "npm",
    [
      "install",
      tarball,
      "--ignore-scripts",
      "--prefer-offline",
      "--no-audit",
      "--no-fund",
      "--loglevel",
      "error",
    ],
    { cwd: proj, env, stdio: ["ignore", "pipe", "pipe"] },
  );
}, 600_000);

afterAll(() => {
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

const node = (args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) =>
  spawnSync(process.execPath, args, { cwd: opts.cwd ?? proj, env: opts.env ?? env, encoding: "utf8" });

describe("the npm package", () => {
  it("ships dist/ (ESM + .d.ts), bin, README, LICENSE and docs — no sources, tests, benchmarks or models", () => {
    for (const f of [
      "dist/index.js",
      "dist/index.d.ts",
      "dist/cli/main.js",
      "bin/pare.js",
      "README.md",
      "LICENSE",
    ])
      expect(files, f).toContain(f);
    for (const f of files) expect(f).not.toMatch(/^(src|test|bench|examples|tools)\/|\.safetensors$/);
    // tsx only runs the sources in a development checkout: the install has no tsx
    expect(fs.existsSync(path.join(proj, "node_modules", "tsx"))).toBe(false);
  });

  it("plain Node ESM: import from 'pare', prune the bundled demo model; the library prints nothing", () => {
    const out = path.join(root, "pruned-esm");
    const script = path.join(proj, "use.mjs");
    fs.writeFileSync(
      script,
      `import { prune, inspect, version, RECIPE_DEFAULTS, PareError } from "pare";
const before = inspect(${JSON.stringify(DEMO)});
const events = [];
const r = await prune({ model: ${JSON.stringify(DEMO)}, out: ${JSON.stringify(out)}, ratio: 0.3,
  calib: [${JSON.stringify(CALIB)}], samples: 8, seqLen: 64, onProgress: (e) => events.push(e.type) });
let code;
try { inspect(${JSON.stringify(path.join(root, "missing"))}); } catch (e) { code = e instanceof PareError ? e.code : String(e); }
process.stdout.write(JSON.stringify({ version, ratio: RECIPE_DEFAULTS.ratio, family: before.family,
  achieved: r.achievedRatio, after: inspect(${JSON.stringify(out)}).params.prunable,
  phases: events.filter((t) => t === "phase").length, code }));
`,
    );
    const r = node([script]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toBe(""); // nothing printed by the library
    const j = JSON.parse(r.stdout); // and nothing but the script's one line on stdout
    expect(j.version).toBe(JSON.parse(fs.readFileSync(path.join(REPO_ROOT, "package.json"), "utf8")).version);
    expect(j.ratio).toBe(0.3);
    expect(j.family).toBe("llama");
    expect(j.achieved).toBeGreaterThan(0.25);
    expect(j.after).toBeLessThan(4_423_680);
    expect(j.phases).toBeGreaterThan(2);
    expect(j.code).toBe("E_FOLDER_MISSING");
  });

  it("TypeScript: the API type-checks from 'pare' with tsc --noEmit, and a misspelt criterion is a type error", () => {
    fs.writeFileSync(
      path.join(proj, "use.ts"),
      `import { type InspectResult, type PruneReport, type RecipeOptions, inspect, planPrune, prune } from "pare";
const settings: RecipeOptions = { model: "m", out: "o", ratio: 0.3, criterion: "wanda-sp", reconstruct: "liar-seq" };
// @ts-expect-error a criterion that does not exist
const typo: RecipeOptions = { model: "m", out: "o", criterion: "flap-wif" };
export async function run(): Promise<[InspectResult, PruneReport, number]> {
  const plan = await planPrune(settings);
  const r = await prune({ ...settings, onProgress: (e) => (e.type === "layer" ? e.layer : 0) });
  return [inspect("m"), r, plan.layerPasses + typo.ratio!];
}
`,
    );
    fs.writeFileSync(
      path.join(proj, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          strict: true,
          noEmit: true,
          skipLibCheck: false,
          types: ["node"],
          typeRoots: [path.join(REPO_ROOT, "node_modules", "@types")],
        },
        files: ["use.ts"],
      }),
    );
    const tsc = path.join(REPO_ROOT, "node_modules", "typescript", "bin", "tsc");
    const r = node([tsc, "-p", "tsconfig.json"]);
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });

  it("examples/library.mjs runs against the install", () => {
    const ex = path.join(proj, "library.mjs");
    fs.copyFileSync(path.join(REPO_ROOT, "examples", "library.mjs"), ex);
    const r = node([ex, DEMO, path.join(root, "pruned-example"), CALIB]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/pruned 2\d\.\d\d% of attention\+MLP parameters/);
  });

  it("`pare --help` and `pare --version` from the install, without loading ONNX Runtime", () => {
    // a preload that reports any load of onnxruntime-node
    const hook = path.join(root, "ort-hook.cjs");
    fs.writeFileSync(
      hook,
      `const M = require("node:module"); const load = M._load;
M._load = function (req, ...rest) { if (String(req).includes("onnxruntime")) process.stderr.write("ORT-LOADED\\n"); return load.call(this, req, ...rest); };`,
    );
    const bin = path.join(proj, "node_modules", ".bin", "pare");
    const hooked = { ...env, NODE_OPTIONS: `--require ${hook}` };
    const help = spawnSync(bin, ["--help"], { cwd: proj, env: hooked, encoding: "utf8" });
    expect(help.status, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/prune/);
    expect(help.stderr).not.toMatch(/ORT-LOADED/);
    const version = spawnSync(bin, ["--version"], { cwd: proj, env: hooked, encoding: "utf8" });
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    expect(version.stderr).not.toMatch(/ORT-LOADED/);
    const pruneHelp = spawnSync(bin, ["prune", "--help"], { cwd: proj, env: hooked, encoding: "utf8" });
    expect(pruneHelp.stdout).toMatch(/--criterion <name>/);
    expect(pruneHelp.stderr).not.toMatch(/ORT-LOADED/);
    // the hook does see ONNX Runtime when a command needs it (so the checks above can fail)
    const inspect = spawnSync(bin, ["inspect", DEMO], { cwd: proj, env: hooked, encoding: "utf8" });
    expect(inspect.status, inspect.stderr).toBe(0);
    const run = spawnSync(bin, ["eval", DEMO, "--task", "ppl", "--data", CALIB, "--max-windows", "1", "-q"], {
      cwd: proj,
      env: hooked,
      encoding: "utf8",
    });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/ORT-LOADED/);
  });
});
