/**
 * The other faults of docs/reliability.md, each with its promise checked: a full disk (a real size-limited
 * tmpfs where this machine lets the test mount one, and an injected ENOSPC at the file-writing layer for the
 * output, spill and checkpoint writes of prune and for each export format and the report), a parent folder
 * that is not writable (EACCES) or read-only (EROFS), the temporary output on another filesystem (EXDEV),
 * corrupted and truncated checkpoints, the output folder replaced by a file during the run, two runs on one
 * output (the lock), a stale lock, and SIGINT/SIGTERM twice in a row.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isPareError } from "../../src/errors.ts";
import { lockFile, processStart } from "../../src/io/lock.ts";
import { checkpointDir } from "../../src/pipeline/checkpoint.ts";
import { type PruneEvent, runPrune } from "../../src/pipeline/prune.ts";
import { type Recipe, resolveRecipe } from "../../src/pipeline/recipe.ts";
import { REPO_ROOT } from "../helpers/cli.ts";
import { snapshot } from "../hostile/snapshot.ts";
import { type Fixture, makeFixture } from "./fixture.ts";
import { checkCompleted, compareOutputs, INJECT, readLog, runPare } from "./harness.ts";

let root: string;
let fx: Fixture;
let before: Record<string, string>;
let reference: string;
const mounts: string[] = [];

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-faults-"));
  fs.chmodSync(root, 0o755); // readable by the unprivileged user of the EACCES test
  fx = makeFixture(root);
  before = snapshot(fx.model);
  fs.mkdirSync(path.join(root, "ref"));
  reference = path.join(root, "ref", "out");
  const r = await runPare(fx.pruneArgs(reference));
  expect(r.code, r.stderr).toBe(0);
});
afterAll(() => {
  for (const m of mounts) spawnSync("umount", ["-l", m]);
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

/** Mounts a tmpfs with these options at `dir` (created); false when this machine does not allow it. */
function tryMount(dir: string, options: string): boolean {
  fs.mkdirSync(dir, { recursive: true });
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", options, "tmpfs", dir], { stdio: "ignore" });
    mounts.push(dir);
    return true;
  } catch {
    return false;
  }
}

const canMount = (() => {
  const probe = fs.mkdtempSync(path.join(os.tmpdir(), "pare-mount-probe-"));
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", probe], { stdio: "ignore" });
    execFileSync("umount", [probe], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  } finally {
    fs.rmSync(probe, { recursive: true, force: true });
  }
})();

const recipe = (out: string, extra: Partial<Recipe> = {}) =>
  resolveRecipe({
    model: fx.model,
    out,
    calib: [fx.calib],
    samples: 8,
    seqLen: 32,
    ratio: 0.4,
    maxMemory: Number(fx.maxMemory),
    ...extra,
  });

/** The error code of a rejected promise (or "resolved"). */
async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "resolved";
  } catch (e) {
    return isPareError(e) ? e.code : String(e);
  }
}

function work(name: string): string {
  const d = path.join(root, name);
  fs.mkdirSync(d, { recursive: true });
  return d;
}

/** The coded error line of a CLI run's stderr. */
const errorLine = (stderr: string) => stderr.split("\n").find((l) => l.startsWith("error[")) ?? stderr;

describe("disk full (ENOSPC)", () => {
  it.skipIf(!canMount)(
    "prune onto a real 96 KiB tmpfs: E_NO_SPACE with what was needed, nothing partial, input untouched; --resume after making room completes byte-identically (skipped where the test cannot mount a tmpfs)",
    async () => {
      const small = path.join(root, "small");
      expect(tryMount(small, "size=96k")).toBe(true);
      const out = path.join(small, "out");
      const r = await runPare(fx.pruneArgs(out));
      expect(r.code, r.stderr).toBe(1);
      expect(errorLine(r.stderr)).toMatch(
        /^error\[E_NO_SPACE\]: out of disk space while writing .*needed .*free/,
      );
      expect(r.stderr).not.toMatch(/^\s+at\s/m);
      expect(fs.readdirSync(small).filter((e) => e !== ".out.partial")).toEqual([]); // checkpoints kept for --resume
      expect(snapshot(fx.model)).toEqual(before);
      execFileSync("mount", ["-o", "remount,size=16m", small]);
      const resumed = await runPare(fx.pruneArgs(out, ["--resume"]));
      expect(resumed.code, resumed.stderr).toBe(0);
      expect(checkCompleted(small, "out", reference)).toEqual([]);
    },
  );

  it.each([
    ["output shard", "/\\.out\\.tmp-"],
    ["spill file", "/\\.out\\.spill-"],
    ["checkpoint", "/\\.out\\.partial/"],
  ])(
    "prune, injected at the first %s write: E_NO_SPACE, no output or temporary, input untouched",
    async (what, where) => {
      const dir = work(`enospc-${what.replace(" ", "-")}`);
      const out = path.join(dir, "out");
      const r = await runPare(fx.pruneArgs(out), {
        inject: { root: dir, errno: { code: "ENOSPC", op: "writeSync", match: where } },
      });
      expect(r.code, r.stderr).toBe(1);
      expect(errorLine(r.stderr)).toMatch(/^error\[E_NO_SPACE\]: out of disk space .*needed more than \d/);
      expect(fs.readdirSync(dir).filter((e) => e !== ".out.partial")).toEqual([]);
      expect(snapshot(fx.model)).toEqual(before);
    },
  );

  it.each([
    ["export onnx", "x.onnx", ["export", "--format", "onnx"], "writeFileSync"],
    ["export gguf", "x.gguf", ["export", "--format", "gguf"], "writeSync"],
    ["report", "r.html", ["report"], "writeFileSync"],
  ])("%s, injected: E_NO_SPACE, nothing left, input untouched", async (_what, name, cmd, op) => {
    const dir = work(`enospc-${name}`);
    const srcBefore = snapshot(reference);
    const args = [cmd[0], reference, ...cmd.slice(1), "--out", path.join(dir, name)];
    const r = await runPare(args, {
      inject: { root: dir, errno: { code: "ENOSPC", op, match: `/\\.${name.replace(".", "\\.")}\\.tmp-` } },
    });
    expect(r.code, r.stderr).toBe(1);
    expect(errorLine(r.stderr)).toMatch(/^error\[E_NO_SPACE\]: out of disk space while writing /);
    expect(fs.readdirSync(dir)).toEqual([]);
    expect(snapshot(reference)).toEqual(srcBefore);
  });
});

describe("the output's parent is not writable", () => {
  it("EACCES (a real one: an unprivileged user, or a 0555 folder when not root): E_IO, nothing created, input untouched", async () => {
    const dir = work("eacces");
    const asRoot = process.getuid?.() === 0;
    if (!asRoot) fs.chmodSync(dir, 0o555);
    try {
      for (const [cmd, name] of [
        [fx.pruneArgs(path.join(dir, "out")), "out"],
        [["export", reference, "--format", "gguf", "--out", path.join(dir, "x.gguf")], "x.gguf"],
      ] as const) {
        const r = spawnSync(process.execPath, [path.join(REPO_ROOT, "bin/pare.js"), ...cmd], {
          cwd: REPO_ROOT,
          encoding: "utf8",
          env: { ...process.env, NODE_OPTIONS: "", HOME: os.tmpdir() },
          ...(asRoot ? { uid: 65534, gid: 65534 } : {}),
        });
        expect(r.status, `${name}: ${r.stderr}`).toBe(1);
        expect(errorLine(r.stderr)).toMatch(/^error\[E_IO\]: cannot write .*permission denied.*\(EACCES\)/);
      }
      expect(fs.readdirSync(dir)).toEqual([]);
      expect(snapshot(fx.model)).toEqual(before);
    } finally {
      fs.chmodSync(dir, 0o755);
    }
  });

  it("EROFS (a read-only tmpfs where the test can mount one, else injected on every write there): E_IO, input untouched", async () => {
    const dir = path.join(root, "erofs");
    const real = canMount && tryMount(dir, "ro,size=64k");
    if (!real) fs.mkdirSync(dir, { recursive: true });
    const r = await runPare(
      fx.pruneArgs(path.join(dir, "out")),
      real ? {} : { inject: { root: dir, errno: { code: "EROFS", op: "*", match: "." } } },
    );
    expect(r.code, r.stderr).toBe(1);
    expect(errorLine(r.stderr)).toMatch(/^error\[E_IO\]: cannot write .*read-only.*\(EROFS\)/);
    expect(fs.readdirSync(dir)).toEqual([]);
    expect(snapshot(fx.model)).toEqual(before);
  });
});

describe("cross-device (EXDEV)", () => {
  const shm = "/dev/shm";
  const otherFs = fs.existsSync(shm) && fs.statSync(shm).dev !== fs.statSync(os.tmpdir()).dev;

  it.skipIf(!otherFs)(
    "output on another filesystem than the input and TMPDIR: every temporary is the output's sibling, every rename stays in one folder, the result is the same (skipped without /dev/shm on another filesystem)",
    async () => {
      const dir = fs.mkdtempSync(path.join(shm, "pare-exdev-"));
      try {
        const log = path.join(root, "exdev.log");
        const r = await runPare(fx.pruneArgs(path.join(dir, "out")), { inject: { root: dir, log } });
        expect(r.code, r.stderr).toBe(0);
        const renames = readLog(log).filter((c) => c.op === "renameSync" || c.op === "linkSync");
        expect(renames.length).toBeGreaterThan(0);
        // every rename and link stays within one folder under the output's parent: never across filesystems
        for (const c of renames) {
          expect(path.dirname(c.path), `${c.path} → ${c.dest}`).toBe(path.dirname(c.dest!));
          expect(c.dest!.startsWith(`${dir}/`), c.dest).toBe(true);
        }
        expect(checkCompleted(dir, "out", reference)).toEqual([]);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  );

  it("a publishing rename failing with EXDEV (injected): a clear E_IO, no output, no temporary, lock released", async () => {
    const dir = work("exdev-injected");
    const r = await runPare(fx.pruneArgs(path.join(dir, "out")), {
      inject: {
        root: dir,
        errno: { code: "EXDEV", op: "renameSync", match: "/\\.out\\.tmp-\\d+-[0-9a-z]+ -> .*/out$" },
      }, // the publishing rename
    });
    expect(r.code, r.stderr).toBe(1);
    expect(errorLine(r.stderr)).toMatch(/^error\[E_IO\]: cannot write .*EXDEV/);
    expect(fs.readdirSync(dir).filter((e) => e !== ".out.partial")).toEqual([]);
  });
});

/** Throws from the progress callback when layer `at` starts: an interruption after layers 0..at−1. */
const interruptAt = (at: number) => (e: PruneEvent) => {
  if (e.type === "layer" && e.layer === at && e.step !== "statistics" && !e.step.startsWith("select"))
    throw new Error("interrupted");
};

describe("damaged checkpoints", () => {
  const damage: [string, (dir: string) => void][] = [
    ["a truncated layer file", (d) => fs.truncateSync(path.join(d, "layer-0.safetensors"), 100)],
    [
      "a flipped byte in the streams",
      (d) => {
        const f = fs.readdirSync(d).find((n) => n.startsWith("streams-"))!;
        const b = fs.readFileSync(path.join(d, f));
        b[b.length - 3] ^= 0x40;
        fs.writeFileSync(path.join(d, f), b);
      },
    ],
    ["a missing layer file", (d) => fs.rmSync(path.join(d, "layer-1.safetensors"))],
    ["a garbled progress.json", (d) => fs.writeFileSync(path.join(d, "progress.json"), '{"format":2,"key":')],
    [
      "a progress.json of an older format",
      (d) => {
        const p = JSON.parse(fs.readFileSync(path.join(d, "progress.json"), "utf8"));
        delete p.format;
        fs.writeFileSync(path.join(d, "progress.json"), JSON.stringify(p));
      },
    ],
  ];
  it("each damage: --resume refuses (E_CHECKPOINT_INVALID) and writes nothing; a run without --resume starts over", async () => {
    const out = path.join(work("damaged"), "out");
    await expect(runPrune(recipe(out), interruptAt(2))).rejects.toThrow("interrupted");
    const ck = checkpointDir(out);
    const pristine = path.join(root, "damaged-pristine");
    fs.cpSync(ck, pristine, { recursive: true });
    const refused: Record<string, string> = {};
    for (const [name, hurt] of damage) {
      fs.rmSync(ck, { recursive: true, force: true });
      fs.cpSync(pristine, ck, { recursive: true });
      hurt(ck);
      refused[name] = await codeOf(runPrune(recipe(out, { resume: true })));
      expect(fs.existsSync(out), name).toBe(false);
      expect(fs.existsSync(lockFile(out)), name).toBe(false);
    }
    expect(refused).toEqual(Object.fromEntries(damage.map(([n]) => [n, "E_CHECKPOINT_INVALID"])));
    // the undamaged checkpoints resume
    fs.rmSync(ck, { recursive: true, force: true });
    fs.cpSync(pristine, ck, { recursive: true });
    await runPrune(recipe(out, { resume: true }));
    expect(checkCompleted(path.dirname(out), "out", reference)).toEqual([]);
    // damaged ones are removed by a run without --resume, which starts over
    fs.rmSync(out, { recursive: true });
    fs.cpSync(pristine, ck, { recursive: true });
    damage[0][1](ck);
    await runPrune(recipe(out));
    expect(checkCompleted(path.dirname(out), "out", reference)).toEqual([]);
  });
});

describe("the output replaced during the run", () => {
  it("a file appears at the output path: E_OUTPUT_EXISTS at the publishing step, the file is left as it was, nothing else remains", async () => {
    const dir = work("replaced");
    const out = path.join(dir, "out");
    const code = await codeOf(
      runPrune(recipe(out), (e) => {
        if (e.type === "layer" && e.layer === 2 && !fs.existsSync(out))
          fs.writeFileSync(out, "someone else's file");
      }),
    );
    expect(code).toBe("E_OUTPUT_EXISTS");
    expect(fs.readFileSync(out, "utf8")).toBe("someone else's file");
    expect(fs.readdirSync(dir).filter((e) => e !== ".out.partial")).toEqual(["out"]);
    // with --force, a file there is replaced by the complete output
    await runPrune(recipe(out, { force: true }));
    expect(compareOutputs(out, reference)).toEqual([]);
  });

  it("the temporary folder replaced by a file: a coded error, nothing of this run remains, input untouched", async () => {
    const dir = work("tmp-replaced");
    const out = path.join(dir, "out");
    const code = await codeOf(
      runPrune(recipe(out), (e) => {
        if (e.type !== "layer" || e.layer !== 2) return;
        const tmp = fs.readdirSync(dir).find((n) => n.startsWith(".out.tmp-"));
        if (tmp && fs.statSync(path.join(dir, tmp)).isDirectory()) {
          fs.rmSync(path.join(dir, tmp), { recursive: true });
          fs.writeFileSync(path.join(dir, tmp), "not a folder");
        }
      }),
    );
    expect(code).toMatch(/^E_(IO|OUTPUT_EXISTS)$/);
    expect(fs.readdirSync(dir).filter((e) => e !== ".out.partial")).toEqual([]);
    expect(snapshot(fx.model)).toEqual(before);
  });
});

describe("one writer per output", () => {
  it("a second pare prune on the same output while the first runs: E_OUTPUT_LOCKED with the holder's pid; the first completes", async () => {
    const dir = work("two-runs");
    const out = path.join(dir, "out");
    const first = runPare(fx.pruneArgs(out), { inject: { root: dir, slowMs: 15 } }); // slowed: still running
    const lock = lockFile(out);
    for (let i = 0; i < 600 && !fs.existsSync(lock); i++) await new Promise((r) => setTimeout(r, 20));
    const holder = JSON.parse(fs.readFileSync(lock, "utf8")).pid as number;
    const second = await runPare(fx.pruneArgs(out, ["--force"]));
    expect(second.code, second.stderr).toBe(1);
    expect(errorLine(second.stderr)).toMatch(
      new RegExp(
        `^error\\[E_OUTPUT_LOCKED\\]: .*out is being written by another pare process \\(pid ${holder}, since `,
      ),
    );
    const r = await first;
    expect(r.code, r.stderr).toBe(0);
    expect(r.pid).toBe(holder);
    expect(checkCompleted(dir, "out", reference)).toEqual([]);
  });

  it("a stale lock (its process is dead) is taken over and reported; a live one refuses", async () => {
    const dir = work("stale");
    const out = path.join(dir, "out");
    const dead = spawnSync(process.execPath, ["-e", "0"]).pid!;
    fs.writeFileSync(
      lockFile(out),
      JSON.stringify({ pid: dead, host: os.hostname(), since: "then", nonce: "00" }),
    );
    await runPrune(recipe(out));
    expect(checkCompleted(dir, "out", reference)).toEqual([]);

    const live = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"]);
    try {
      const out2 = path.join(dir, "out2");
      const start = processStart(live.pid!);
      fs.writeFileSync(
        lockFile(out2),
        JSON.stringify({ pid: live.pid, host: os.hostname(), start, since: "now", nonce: "01" }),
      );
      let err: unknown;
      await runPrune(recipe(out2)).catch((e) => {
        err = e;
      });
      expect(isPareError(err) && err.code).toBe("E_OUTPUT_LOCKED");
      expect((err as Error).message).toContain(`pid ${live.pid}`);
      expect(fs.existsSync(out2)).toBe(false);
    } finally {
      live.kill("SIGKILL");
    }
  });
});

describe("SIGINT / SIGTERM twice in a row", () => {
  it.each([
    [["SIGINT", "SIGTERM"], 130],
    [["SIGTERM", "SIGTERM"], 143],
  ] as [NodeJS.Signals[], number][])(
    "%j back to back: exit %i (mixed: the handled one's), no temporary output, no lock, input untouched; --resume completes byte-identically",
    async (sigs, exit) => {
      const dir = work(`signals-${sigs.join("-")}`);
      const out = path.join(dir, "out");
      const env: NodeJS.ProcessEnv = { ...process.env, NODE_OPTIONS: "" };
      const child: ChildProcess = spawn(
        process.execPath,
        ["--import", INJECT, path.join(REPO_ROOT, "bin/pare.js"), ...fx.pruneArgs(out)],
        {
          cwd: REPO_ROOT,
          env,
          stdio: "ignore",
        },
      );
      const exited = new Promise<number | null>((resolve) => child.on("close", (c) => resolve(c)));
      const progress = path.join(checkpointDir(out), "progress.json");
      for (let i = 0; i < 3000 && !fs.existsSync(progress); i++) await new Promise((r) => setTimeout(r, 5));
      for (const s of sigs) child.kill(s);
      // two different signals sent back to back may be handled in either order (a process-directed signal can
      // land on any of the process's threads, ORT's included): the exit code is the one that was handled
      if (sigs[0] === sigs[1]) expect(await exited).toBe(exit);
      else expect([130, 143]).toContain(await exited);
      expect(fs.readdirSync(dir).filter((e) => e !== ".out.partial")).toEqual([]);
      expect(snapshot(fx.model)).toEqual(before);
      const resumed = await runPare(fx.pruneArgs(out, ["--resume"]));
      expect(resumed.code, resumed.stderr).toBe(0);
      expect(checkCompleted(dir, "out", reference)).toEqual([]);
    },
  );
});
