/**
 * Ctrl-C and SIGTERM.
 *
 * 1. src/cli/signals.ts on its own (a fixture process): exit 130 / 143, `error[E_INTERRUPTED]: interrupted by
 *    SIG…` and a hint on stderr, registered cleanups run (a failing one does not stop the others), onSignal runs.
 * 2. A real `pare prune` (needs `installSignalHandlers()` in src/cli/main.ts): interrupted once its temporary
 *    output `.<out>.tmp-*` or its first per-layer checkpoint appears, it exits 130 with the coded message and
 *    leaves no temporary output, no output folder, and the input byte-identical; `--resume` then finishes it
 *    with exactly the files of an uninterrupted run. SIGTERM: exit 143, same guarantees.
 */
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT, runCli } from "../helpers/cli.ts";
import { makeByteBpeTokenizerJson, makeTinyLlama, writeTinyModel } from "../helpers/tinyModels.ts";
import { snapshot } from "./snapshot.ts";

let root: string;
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-signals-"));
});
afterAll(() => {
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Spawns node with `args`; `exited` resolves on exit (the child is killed after timeoutMs). */
function start(
  args: string[],
  timeoutMs: number,
): { child: ChildProcess; exited: Promise<Exit>; out: () => string } {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.PARE_DEBUG;
  delete env.NODE_OPTIONS;
  const child = spawn(process.execPath, args, { cwd: REPO_ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout?.setEncoding("utf8").on("data", (s: string) => {
    stdout += s;
  });
  child.stderr?.setEncoding("utf8").on("data", (s: string) => {
    stderr += s;
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const exited = new Promise<Exit>((resolve) =>
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    }),
  );
  return { child, exited, out: () => stdout };
}

/** Resolves when `cond()` holds (checked every `everyMs`), or with false when `stop` settles first. */
function when(cond: () => boolean, stop: Promise<unknown>, everyMs = 5): Promise<boolean> {
  return new Promise((resolve) => {
    let done = false;
    const timer = setInterval(() => {
      if (done) return;
      if (cond()) {
        done = true;
        clearInterval(timer);
        resolve(true);
      }
    }, everyMs);
    stop.then(() => {
      if (done) return;
      done = true;
      clearInterval(timer);
      resolve(cond());
    });
  });
}

function expectInterrupted(e: Exit, sig: "SIGINT" | "SIGTERM"): void {
  const context = `stderr:\n${e.stderr}\nstdout:\n${e.stdout}`;
  expect(e.signal, context).toBeNull(); // handled, not killed by the signal
  expect(e.code, context).toBe(sig === "SIGINT" ? 130 : 143);
  const lines = e.stderr.split("\n");
  const at = lines.indexOf(`error[E_INTERRUPTED]: interrupted by ${sig}`);
  expect(at, context).toBeGreaterThanOrEqual(0);
  expect(lines[at + 1], context).toMatch(/^ {2}hint: \S/);
  expect(e.stderr, context).not.toMatch(/^\s+at\s/m);
}

describe("installSignalHandlers (fixture process)", () => {
  const fixture = path.join(REPO_ROOT, "test/hostile/fixtures/interruptible.ts");

  it.each([
    ["SIGINT", 130],
    ["SIGTERM", 143],
  ] as const)("%s: cleanups run, coded message, exit %i", async (sig, code) => {
    const dir = fs.mkdtempSync(path.join(root, "fixture-"));
    const p = start(["--import", "tsx", fixture, dir], 30_000);
    const ready = await when(() => p.out().includes("ready"), p.exited);
    expect(ready).toBe(true);
    expect(fs.existsSync(path.join(dir, ".out.tmp-fixture"))).toBe(true);
    p.child.kill(sig);
    const e = await p.exited;
    expectInterrupted(e, sig);
    expect(e.code).toBe(code);
    expect(fs.readdirSync(dir)).toEqual(["on-signal"]); // temporary folder removed, onSignal ran
  });
});

describe("interrupting a real prune", () => {
  let model: string;
  let calib: string;
  let before: Record<string, string>;
  const args = (out: string, extra: string[] = []) => [
    path.join(REPO_ROOT, "bin/pare.js"),
    "prune",
    model,
    "--out",
    out,
    "--calib",
    calib,
    "--samples",
    "48",
    "--seq-len",
    "48",
    "--ratio",
    "0.4",
    ...extra,
  ];

  beforeAll(() => {
    model = path.join(root, "model");
    // big enough for a few seconds of pruning: 6 layers, 48 calibration sequences
    writeTinyModel(
      model,
      makeTinyLlama({ seed: 21, layers: 6, hidden: 64, heads: 8, kvHeads: 4, headDim: 8, intermediate: 128 }),
      makeByteBpeTokenizerJson(300),
    );
    calib = path.join(root, "calib.txt");
    fs.writeFileSync(calib, "the early bird catches the worm, and a stitch in time saves nine. ".repeat(400));
    before = snapshot(model);
  });

  /** Starts a prune into `<work>/out`; sends `sig` once `.out.tmp-*` or the first checkpoint appears. */
  async function interrupt(sig: "SIGINT" | "SIGTERM") {
    const work = fs.mkdtempSync(path.join(root, `${sig}-`));
    const out = path.join(work, "out");
    const p = start(args(out), 120_000);
    const started = (name: string) => /^\.out\.tmp-/.test(name) || name === ".out.partial";
    const checkpointed = () =>
      fs.readdirSync(work).some((n) => /^\.out\.tmp-/.test(n)) ||
      fs.existsSync(path.join(work, ".out.partial", "progress.json"));
    const seen = await when(checkpointed, p.exited, 2);
    const leftovers = () => fs.readdirSync(work).filter((n) => started(n) || n === "out");
    if (!seen) {
      const e = await p.exited;
      throw new Error(
        `the prune ended before its temporary output or first checkpoint appeared (exit ${e.code}); ` +
          `left: ${leftovers().join(", ")}\n${e.stderr}`,
      );
    }
    p.child.kill(sig);
    const e = await p.exited;
    return { work, out, e, leftovers };
  }

  it("SIGINT: exit 130, nothing half-written, input untouched; --resume equals an uninterrupted run", async () => {
    const full = path.join(root, "full");
    const reference = runCli(args(full).slice(1), { timeoutMs: 120_000 });
    const { out, e, leftovers, work } = await interrupt("SIGINT");
    expectInterrupted(e, "SIGINT");
    expect(fs.existsSync(out)).toBe(false);
    // no temporary output; the per-layer checkpoints (.out.partial) may stay, they are what --resume reads
    expect(leftovers().filter((n) => n !== ".out.partial")).toEqual([]);
    expect(snapshot(model)).toEqual(before);

    const resumed = await runCli([...args(out, ["--resume"]).slice(1)], { timeoutMs: 120_000 });
    expect(resumed.code, resumed.stderr).toBe(0);
    const ref = await reference;
    expect(ref.code, ref.stderr).toBe(0);
    for (const f of ["model.safetensors", "config.json"]) {
      expect(fs.readFileSync(path.join(out, f)).equals(fs.readFileSync(path.join(full, f))), f).toBe(true);
    }
    const layers = (d: string) =>
      JSON.parse(fs.readFileSync(path.join(d, "pare-pruning.json"), "utf8")).layers;
    expect(layers(out)).toEqual(layers(full));
    expect(fs.readdirSync(work).sort()).toEqual(["out"]); // checkpoints removed after the resumed run
    expect(snapshot(model)).toEqual(before);
  });

  it("SIGTERM: exit 143, nothing half-written, input untouched", async () => {
    const { out, e, leftovers } = await interrupt("SIGTERM");
    expectInterrupted(e, "SIGTERM");
    expect(fs.existsSync(out)).toBe(false);
    expect(leftovers().filter((n) => n !== ".out.partial")).toEqual([]);
    expect(snapshot(model)).toEqual(before);
  });
});
