/**
 * One writer per output path. A run that writes `out` first takes `.<name>.lock` next to it (created with
 * O_EXCL through a hard link, so it is never seen half written); a second run, in another process, gets
 * E_OUTPUT_LOCKED with the holder's pid. The lock is released when the output is published or abandoned,
 * and in any case when the process exits; a lock whose holder is dead (killed with SIGKILL, machine reboot:
 * the pid no longer runs, or runs a process that started later) is stale and taken over.
 *
 * Within one process the lock is re-entrant (a prune holds it for its checkpoints and for its output folder):
 * each `acquireLock` adds a reference and `release` removes one; the file goes with the last.
 */
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { PareError } from "../errors.ts";
import { diskFailure, fsyncDir } from "./durable.ts";

export interface LockHolder {
  pid: number;
  host: string;
  /** the process's start time in clock ticks since boot (/proc/<pid>/stat field 22), when known */
  start?: number;
  /** when the lock was taken (ISO) */
  since: string;
  nonce: string;
}

export interface OutputLock {
  /** the output path the lock is for */
  readonly target: string;
  /** the lock file */
  readonly file: string;
  /** stale locks of dead processes taken over while acquiring (their holders) */
  readonly tookOver: LockHolder[];
  release(): void;
}

interface Held {
  file: string;
  refs: number;
  nonce: string;
}

const held = new Map<string, Held>();
let exitHook = false;

/** The lock file of an output path: a hidden sibling `.<name>.lock`. */
export function lockFile(target: string): string {
  const t = path.resolve(target);
  return path.join(path.dirname(t), `.${path.basename(t)}.lock`);
}

/** Start time of process `pid` in clock ticks since boot (Linux /proc), undefined elsewhere. */
export function processStart(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    // the command name (field 2) is in parentheses and may hold spaces: count fields after the last ')'
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const v = Number(rest[19]); // field 22 overall = index 19 after field 3
    return Number.isFinite(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** Is `pid` alive (and, when its start time is known, the same process that took the lock)? */
export function isAlive(pid: number, start?: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  if (start === undefined) return true;
  const now = processStart(pid);
  return now === undefined || now === start;
}

function readHolder(file: string): LockHolder | undefined {
  try {
    const v = JSON.parse(fs.readFileSync(file, "utf8")) as LockHolder;
    return Number.isSafeInteger(v?.pid) ? v : undefined;
  } catch {
    return undefined;
  }
}

function releaseAllOnExit(): void {
  if (exitHook) return;
  exitHook = true;
  process.on("exit", () => {
    for (const h of held.values()) removeIfOurs(h);
    held.clear();
  });
}

function removeIfOurs(h: Held): void {
  try {
    if (readHolder(h.file)?.nonce === h.nonce) fs.rmSync(h.file, { force: true });
  } catch {
    // best effort: a lock left behind is stale once this process is gone
  }
}

/**
 * Takes the lock of output path `target` (creating its parent folder if needed). Throws E_OUTPUT_LOCKED when
 * another live process holds it; a stale lock is taken over (reported in `tookOver`).
 */
export function acquireLock(target: string): OutputLock {
  const t = path.resolve(target);
  const file = lockFile(t);
  const tookOver: LockHolder[] = [];
  const mine = held.get(file);
  if (mine) {
    mine.refs++;
    return handle(t, file, mine, tookOver);
  }
  const dir = path.dirname(file);
  const nonce = crypto.randomBytes(8).toString("hex");
  const me: LockHolder = {
    pid: process.pid,
    host: os.hostname(),
    start: processStart(process.pid),
    since: new Date().toISOString(),
    nonce,
  };
  const candidate = `${file}.${process.pid}-${nonce}`;
  try {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(candidate, JSON.stringify(me), { flag: "wx" });
  } catch (e) {
    fs.rmSync(candidate, { force: true });
    throw diskFailure(e, t);
  }
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        fs.linkSync(candidate, file); // atomic: fails with EEXIST when a lock is there
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw diskFailure(e, t);
      }
      const holder = readHolder(file);
      if (holder && holder.host !== me.host) throw locked(t, file, holder, true);
      // our own pid on a lock this process does not hold: a previous process with the same pid (reused)
      if (holder && holder.pid !== process.pid && isAlive(holder.pid, holder.start))
        throw locked(t, file, holder, false);
      if (!holder) {
        // unreadable: being replaced right now, or damaged; a damaged one older than a few seconds is stale
        let age = 0;
        try {
          age = Date.now() - fs.statSync(file).mtimeMs;
        } catch {
          continue; // gone meanwhile: try again
        }
        if (age < 2000 && attempt < 50) {
          sleep(20);
          continue;
        }
      }
      if (attempt >= 50) throw locked(t, file, holder, false);
      // stale: move it away under a name of our own, check that it is the one judged stale, then drop it
      const aside = `${file}.stale-${process.pid}-${nonce}`;
      try {
        fs.renameSync(file, aside);
      } catch {
        continue; // someone else took it over first
      }
      const moved = readHolder(aside);
      if (moved && moved.nonce !== holder?.nonce && isAlive(moved.pid, moved.start)) {
        // a live process took it over between our look and our rename: give it back
        try {
          fs.linkSync(aside, file);
        } catch {
          // it has already been replaced again; the live holder will see its lock is gone only if it checks
        }
        fs.rmSync(aside, { force: true });
        throw locked(t, file, moved, false);
      }
      fs.rmSync(aside, { force: true });
      if (holder) tookOver.push(holder);
    }
    fsyncDir(dir);
  } finally {
    fs.rmSync(candidate, { force: true });
  }
  const h: Held = { file, refs: 1, nonce };
  held.set(file, h);
  releaseAllOnExit();
  return handle(t, file, h, tookOver);
}

function handle(target: string, file: string, h: Held, tookOver: LockHolder[]): OutputLock {
  let released = false;
  return {
    target,
    file,
    tookOver,
    release() {
      if (released) return;
      released = true;
      if (--h.refs > 0) return;
      if (held.get(file) === h) held.delete(file);
      removeIfOurs(h);
    },
  };
}

/** Release every lock this process holds (a signal handler abandoning the run; the process then exits). */
export function releaseAllLocks(): void {
  for (const h of held.values()) removeIfOurs(h);
  held.clear();
}

/** Does this process hold the lock of `target`? */
export function holdsLock(target: string): boolean {
  return held.has(lockFile(target));
}

function locked(target: string, file: string, holder: LockHolder | undefined, remote: boolean): PareError {
  const who = holder ? `pid ${holder.pid}${remote ? ` on ${holder.host}` : ""}, since ${holder.since}` : "";
  return new PareError(
    "E_OUTPUT_LOCKED",
    `${target} is being written by another pare process${who ? ` (${who})` : ""}`,
    `wait for it to finish or write elsewhere; if that process is gone${remote ? " (another machine: pare cannot check)" : ""}, remove ${file}`,
    { target, lock: file, pid: holder?.pid, host: holder?.host },
  );
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
