/**
 * Fault-injection harness shared by test/reliability/*.test.ts and bench/faults.ts: runs pare's CLI in a child
 * process with test/reliability/inject.mjs preloaded (SIGKILL at the n-th file-writing call, or after a delay),
 * and checks the promise of docs/reliability.md after each kill:
 *
 *   1. the output path is absent or equal to the uninterrupted run's output (bytes; pare-pruning.json without
 *      its run-dependent fields), never partial;
 *   2. a later run (--resume for prune) completes to that same output;
 *   3. what a kill leaves next to the output is only pare's own, recognizable temporaries (of a dead pid), the
 *      lock and the checkpoints, and the next run removes them: afterwards the parent holds the output alone;
 *   5. the stale lock of the killed run is taken over;
 * and that the input folder is byte-identical throughout.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { REPO_ROOT, snapshotDir } from "../helpers/cli.ts";

export const INJECT = path.join(path.dirname(fileURLToPath(import.meta.url)), "inject.mjs");

export interface Injection {
  /** only calls on paths under this folder are counted, logged or failed */
  root: string;
  log?: string;
  killAt?: { n: number; how: "before" | "after" | "torn" };
  enospcAfterBytes?: number;
  /** calls `op` ("*": any) whose "<path> -> <destination>" matches `match` (a regular expression) fail with `code` */
  errno?: { code: string; op: string; match: string };
  /** sleep this long at every file-writing call (a slow run, for the concurrency tests) */
  slowMs?: number;
}

export interface PareRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
  pid: number;
}

/** Runs `node --import inject.mjs bin/pare.js ...args`; `killAfterMs` sends SIGKILL after that delay. */
export function runPare(
  args: string[],
  opts: {
    inject?: Injection;
    killAfterMs?: number;
    signals?: { afterMs: number; sigs: NodeJS.Signals[] };
    timeoutMs?: number;
  } = {},
): Promise<PareRun> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.PARE_DEBUG;
  delete env.NODE_OPTIONS;
  for (const k of Object.keys(env)) if (k.startsWith("PARE_INJECT_")) delete env[k];
  const inj = opts.inject;
  if (inj) {
    env.PARE_INJECT_ROOT = inj.root;
    if (inj.log) env.PARE_INJECT_LOG = inj.log;
    if (inj.killAt) env.PARE_INJECT_KILL_AT = `${inj.killAt.n}:${inj.killAt.how}`;
    if (inj.enospcAfterBytes !== undefined) env.PARE_INJECT_ENOSPC = String(inj.enospcAfterBytes);
    if (inj.slowMs) env.PARE_INJECT_SLOW_MS = String(inj.slowMs);
    if (inj.errno) env.PARE_INJECT_ERRNO = `${inj.errno.code}:${inj.errno.op}:${inj.errno.match}`;
  }
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["--import", INJECT, path.join(REPO_ROOT, "bin/pare.js"), ...args],
      {
        cwd: REPO_ROOT,
        env,
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => {
      stdout += s;
    });
    child.stderr.setEncoding("utf8").on("data", (s: string) => {
      stderr += s;
    });
    const timers: NodeJS.Timeout[] = [setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 120_000)];
    if (opts.killAfterMs !== undefined)
      timers.push(setTimeout(() => child.kill("SIGKILL"), opts.killAfterMs));
    if (opts.signals) {
      const { afterMs, sigs } = opts.signals;
      timers.push(
        setTimeout(() => {
          for (const s of sigs) child.kill(s); // back to back, before the first is handled
        }, afterMs),
      );
    }
    child.on("error", reject);
    child.on("close", (code, signal) => {
      for (const t of timers) clearTimeout(t);
      resolve({ code, signal, stdout, stderr, ms: performance.now() - t0, pid: child.pid ?? -1 });
    });
  });
}

export interface LogEntry {
  n: number;
  op: string;
  path: string;
  dest?: string;
}

export function readLog(file: string): LogEntry[] {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => {
      const [n, op, p, dest] = l.split("\t");
      return { n: Number(n), op, path: p, dest };
    });
}

/** The phase of a file-writing call, from the paths it touches (`name`: the output's base name). */
export function phaseOf(e: LogEntry, name: string): string {
  const p = `${e.path} ${e.dest ?? ""}`;
  if (p.includes(`.${name}.lock`)) return "lock";
  if (p.includes(`.${name}.partial`)) return "checkpoint";
  if (p.includes(`.${name}.spill-`)) return "spill";
  if (e.op === "renameSync" && e.dest !== undefined && path.basename(e.dest) === name) return "publish";
  if (e.op === "renameSync" && e.dest?.endsWith(".old")) return "publish";
  if (p.includes(`.${name}.tmp-`)) return "output";
  return "other";
}

/** pare-pruning.json without what depends on the run rather than the result (time, machine rates, paths). */
function stableReport(text: string): unknown {
  const r = JSON.parse(text);
  for (const k of ["created", "timings", "busySeconds", "output", "plan", "notes"]) delete r[k];
  if (r.recipe) for (const k of ["out", "resume", "force", "threads", "maxMemory"]) delete r.recipe[k];
  return r;
}

/** Differences between two outputs (a folder or a file): every file's bytes, pare-pruning.json made stable. */
export function compareOutputs(got: string, want: string): string[] {
  const diffs: string[] = [];
  const a = fs.statSync(got);
  const b = fs.statSync(want);
  if (a.isDirectory() !== b.isDirectory()) return [`${got}: folder vs file`];
  if (!a.isDirectory()) {
    return fs.readFileSync(got).equals(fs.readFileSync(want)) ? [] : [`${got}: bytes differ`];
  }
  const sa = snapshotDir(got);
  const sb = snapshotDir(want);
  const names = new Set([...Object.keys(sa), ...Object.keys(sb)]);
  for (const n of names) {
    if (!(n in sa) || !(n in sb)) diffs.push(`${n}: ${n in sa ? "extra" : "missing"}`);
    else if (path.basename(n) === "pare-pruning.json") {
      const x = stableReport(fs.readFileSync(path.join(got, n), "utf8")) as Record<string, unknown>;
      const y = stableReport(fs.readFileSync(path.join(want, n), "utf8")) as Record<string, unknown>;
      const keys = [...new Set([...Object.keys(x), ...Object.keys(y)])].filter(
        (k) => JSON.stringify(x[k]) !== JSON.stringify(y[k]),
      );
      if (keys.length)
        diffs.push(
          `${n}: ${keys.map((k) => `${k} ${JSON.stringify(x[k])?.slice(0, 300)} vs ${JSON.stringify(y[k])?.slice(0, 300)}`).join("; ")}`,
        );
    } else if (sa[n] !== sb[n]) diffs.push(`${n}: differs`);
  }
  return diffs;
}

/** What pare may leave next to output `name` when killed: its own temporaries, the lock, the checkpoints. */
export function isOwnLeftover(entry: string, name: string): boolean {
  const b = name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return [
    new RegExp(`^\\.${b}\\.(?:tmp|spill)-\\d+(?:-[0-9a-z]+)?(?:\\.old)?$`),
    new RegExp(`^\\.${b}\\.lock(?:\\.(?:stale-)?\\d+-[0-9a-f]+)?$`),
    new RegExp(`^\\.${b}\\.partial$`),
  ].some((re) => re.test(entry));
}

/**
 * The promise right after a kill: the output is absent or complete and equal to `reference`; everything else
 * in `parent` is pare's own recognizable leftover (or in `others`, files the test put there). Returns problems.
 */
export function checkAfterKill(
  parent: string,
  name: string,
  reference: string,
  others: string[] = [],
): string[] {
  const problems: string[] = [];
  const out = path.join(parent, name);
  if (fs.existsSync(out))
    problems.push(...compareOutputs(out, reference).map((d) => `partial or wrong output: ${d}`));
  for (const e of fs.readdirSync(parent))
    if (e !== name && !others.includes(e) && !isOwnLeftover(e, name)) problems.push(`unexpected entry ${e}`);
  return problems;
}

/** After a successful run: the output equals `reference` and the parent holds nothing of pare's besides it. */
export function checkCompleted(
  parent: string,
  name: string,
  reference: string,
  others: string[] = [],
): string[] {
  const out = path.join(parent, name);
  if (!fs.existsSync(out)) return ["no output after a successful run"];
  const problems = compareOutputs(out, reference).map((d) => `output differs from the clean run: ${d}`);
  const rest = fs.readdirSync(parent).filter((e) => e !== name && !others.includes(e));
  if (rest.length) problems.push(`left next to the output: ${rest.join(", ")}`);
  return problems;
}

export { snapshotDir };
