/**
 * SIGKILL at seeded random instants (docs/reliability.md, promise 1–3 and 5), on a tiny seeded model:
 *
 * - `pare prune` (calibration spilling to disk): killed at a file-writing call chosen per phase — lock, spill,
 *   checkpoint, output, final rename, other — before it, after it or half-way through a write; or after a
 *   random delay (compute phases). Some resumes are killed again ("resume itself"). After each kill: the output
 *   is absent or complete and equal to the uninterrupted run's, only pare's own leftovers are next to it, the
 *   input is untouched; then `--resume` completes to the same bytes and leaves the output alone in its folder.
 * - `pare export --format onnx`, `--format gguf` and `pare report`: killed at a file-writing call; then the same
 *   command again (replacing the output when the kill came after it was published) completes to the same bytes.
 *
 * The kills come from test/reliability/inject.mjs preloaded into the CLI process (a test-only hook).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeRng } from "../helpers/rng.ts";
import { snapshot } from "../hostile/snapshot.ts";
import { type Fixture, makeFixture } from "./fixture.ts";
import { checkAfterKill, checkCompleted, type LogEntry, phaseOf, readLog, runPare } from "./harness.ts";

let root: string;
let fx: Fixture;
let before: Record<string, string>;
const ref = (name: string) => path.join(root, "ref", name);

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-kill-"));
  fx = makeFixture(root);
  before = snapshot(fx.model);
  fs.mkdirSync(path.join(root, "ref"));
});
afterAll(() => {
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

type How = "before" | "after" | "torn";

/** A clean run of `args(out)` in its own folder with the file-writing calls logged: the reference and its calls. */
async function reference(name: string, args: (out: string) => string[]): Promise<LogEntry[]> {
  const dir = path.join(root, `log-${name}`);
  fs.mkdirSync(dir);
  const log = path.join(root, `${name}.log`);
  const r = await runPare(args(path.join(dir, name)), { inject: { root: dir, log } });
  expect(r.code, r.stderr).toBe(0);
  fs.renameSync(path.join(dir, name), ref(name));
  return readLog(log);
}

/** Instants spread over the phases: for each, a call of that phase and how to kill there. */
function instants(calls: LogEntry[], name: string, count: number, seed: number) {
  const rng = makeRng(seed);
  const byPhase = new Map<string, LogEntry[]>();
  for (const c of calls) {
    const p = phaseOf(c, name);
    byPhase.set(p, [...(byPhase.get(p) ?? []), c]);
  }
  const phases = [...byPhase.keys()].sort();
  return Array.from({ length: count }, (_, i) => {
    const phase = phases[i % phases.length];
    const list = byPhase.get(phase)!;
    const call = list[rng.int(list.length)];
    const hows: How[] =
      call.op === "writeSync" || call.op === "writeFileSync"
        ? ["before", "after", "torn"]
        : ["before", "after"];
    return { phase, n: call.n, how: hows[rng.int(hows.length)] };
  });
}

describe("SIGKILL during pare prune, then --resume", () => {
  it("at ten seeded instants across every phase (and during resumes): the promise holds, the resume is byte-identical", async () => {
    const calls = await reference("out", (out) => fx.pruneArgs(out));
    const cleanMs = (await runPare(["--version"])).ms; // startup alone: time kills land after it
    const phasesSeen = new Set(calls.map((c) => phaseOf(c, "out")));
    for (const p of ["lock", "spill", "checkpoint", "output", "publish"]) expect(phasesSeen, p).toContain(p);

    const rng = makeRng(15);
    const plan: { label: string; kill: { n: number; how: How } | { ms: number }; resumeKill?: number }[] = [
      ...instants(calls, "out", 7, 1515).map((x) => ({
        label: `${x.phase} #${x.n} ${x.how}`,
        kill: { n: x.n, how: x.how },
      })),
      { label: "time", kill: { ms: cleanMs + rng.uniform() * 2500 } },
      {
        label: "time, then the resume killed too",
        kill: { ms: cleanMs + rng.uniform() * 2500 },
        resumeKill: 1 + rng.int(calls.length),
      },
      {
        label: "checkpoint, then the resume killed too",
        kill: {
          n: calls.find(
            (c) =>
              phaseOf(c, "out") === "checkpoint" &&
              c.op === "renameSync" &&
              c.dest?.endsWith("progress.json"),
          )!.n,
          how: "after",
        },
        resumeKill: 1 + rng.int(calls.length),
      },
    ];
    const failures: string[] = [];
    for (const [i, p] of plan.entries()) {
      const work = path.join(root, `prune-${i}`);
      fs.mkdirSync(work);
      const out = path.join(work, "out");
      const killed = await runPare(
        fx.pruneArgs(out),
        "ms" in p.kill ? { killAfterMs: p.kill.ms } : { inject: { root: work, killAt: p.kill } },
      );
      const problems =
        killed.signal === "SIGKILL" || killed.code === 0
          ? checkAfterKill(work, "out", ref("out"))
          : [`exit ${killed.code}: ${killed.stderr}`];
      if (p.resumeKill !== undefined) {
        const again = await runPare(fx.pruneArgs(out, ["--resume"]), {
          inject: { root: work, killAt: { n: p.resumeKill, how: "before" } },
        });
        // over a complete output (killed after publishing) --resume refuses with a clear error: allowed (promise 2)
        const refused =
          again.code === 1 && /^error\[E_OUTPUT_EXISTS\]/m.test(again.stderr) && fs.existsSync(out);
        if (again.signal !== "SIGKILL" && again.code !== 0 && !refused)
          problems.push(`killed resume: exit ${again.code}: ${again.stderr}`);
        problems.push(...checkAfterKill(work, "out", ref("out")));
      }
      if (fs.existsSync(out)) {
        // killed after publishing: the output is complete; at most the stale lock remains, for the next run
        problems.push(...checkCompleted(work, "out", ref("out"), [".out.lock"]));
      } else {
        const leftBehind = fs.readdirSync(work);
        const resumed = await runPare(fx.pruneArgs(out, ["--resume"]));
        if (resumed.code !== 0) problems.push(`--resume: exit ${resumed.code}: ${resumed.stderr}`);
        problems.push(...checkCompleted(work, "out", ref("out")));
        // what the kill left (apart from the checkpoints, which the resume reads) is reported when removed
        if (
          leftBehind.some((e) => e !== ".out.partial") &&
          !/removed what an interrupted run had left/.test(resumed.stderr)
        )
          problems.push(`leftovers ${leftBehind.join(", ")} removed without a note`);
      }
      if (JSON.stringify(snapshot(fx.model)) !== JSON.stringify(before)) problems.push("the input changed");
      if (problems.length) failures.push(`${p.label}: ${problems.join("; ")}`);
    }
    expect(failures).toEqual([]);
  }, 900_000);
});

describe.each([
  [
    "onnx",
    "x.onnx",
    (src: string, out: string) => ["export", src, "--format", "onnx", "--out", out],
    ["--force"],
  ],
  [
    "gguf",
    "x.gguf",
    (src: string, out: string) => ["export", src, "--format", "gguf", "--out", out],
    ["--force"],
  ],
  ["report", "r.html", (src: string, out: string) => ["report", src, "--out", out], []],
] as const)("SIGKILL during %s", (kind, name, args, force) => {
  it("at seeded instants across its writes: the output is absent or complete; the next run completes it byte-identically", async () => {
    if (!fs.existsSync(ref("out"))) await reference("out", (out) => fx.pruneArgs(out));
    const src = ref("out");
    const srcBefore = snapshot(src);
    const calls = await reference(name, (out) => args(src, out));
    const failures: string[] = [];
    for (const [i, x] of instants(calls, name, kind === "report" ? 3 : 4, 77 + name.length).entries()) {
      const work = path.join(root, `${kind}-${i}`);
      fs.mkdirSync(work);
      const out = path.join(work, name);
      const killed = await runPare(args(src, out), {
        inject: { root: work, killAt: { n: x.n, how: x.how } },
      });
      const problems =
        killed.signal === "SIGKILL"
          ? checkAfterKill(work, name, ref(name))
          : [`not killed: exit ${killed.code}: ${killed.stderr}`];
      if (!fs.existsSync(out)) {
        const again = await runPare(args(src, out));
        if (again.code !== 0) problems.push(`rerun: exit ${again.code}: ${again.stderr}`);
      } else {
        // published before the kill: complete; a stale lock may remain until the next run writing that path
        const again = await runPare([...args(src, out), ...force]);
        if (again.code !== 0) problems.push(`rerun (replacing it): exit ${again.code}: ${again.stderr}`);
      }
      problems.push(...checkCompleted(work, name, ref(name)));
      if (JSON.stringify(snapshot(src)) !== JSON.stringify(srcBefore)) problems.push("the input changed");
      if (problems.length) failures.push(`${x.phase} #${x.n} ${x.how}: ${problems.join("; ")}`);
    }
    expect(failures).toEqual([]);
  }, 900_000);
});
