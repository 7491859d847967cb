/**
 * Atomic folder output: `fill` writes into a temporary sibling folder, which is renamed onto
 * the target at the end (a replaced target is moved aside first, then removed). On any
 * failure the temporary folder is removed and the target is untouched. Temporary folders
 * in flight are tracked so that a signal handler can remove them (see `cleanupTemporaries`).
 */
import fs from "node:fs";
import path from "node:path";
import { PareError } from "../errors.ts";

const inFlight = new Set<string>();

export function tempSibling(target: string): string {
  return path.join(
    path.dirname(target),
    `.${path.basename(target)}.tmp-${process.pid}-${Date.now().toString(36)}`,
  );
}

/** Remove every temporary output folder still being written (for SIGINT/SIGTERM handlers). */
export function cleanupTemporaries(): void {
  for (const t of inFlight) fs.rmSync(t, { recursive: true, force: true });
  inFlight.clear();
}

/**
 * The same protocol for output written over a long time (pare prune streams layers into it):
 * `open` checks the target and creates the temporary folder, `commit` renames it onto the target,
 * `abort` removes it. The folder is tracked for the signal handlers meanwhile.
 */
export class AtomicDir {
  private done = false;
  private constructor(
    readonly target: string,
    readonly dir: string,
  ) {}

  static open(target: string, force: boolean): AtomicDir {
    target = path.resolve(target);
    if (fs.existsSync(target) && !force) {
      throw new PareError(
        "E_OUTPUT_EXISTS",
        `output folder ${target} already exists`,
        "choose another output path, or add --force to replace it",
      );
    }
    const tmp = tempSibling(target);
    inFlight.add(tmp);
    try {
      fs.mkdirSync(tmp, { recursive: true });
    } catch (e) {
      inFlight.delete(tmp);
      throw wrapIo(e, target);
    }
    return new AtomicDir(target, tmp);
  }

  commit(): void {
    if (this.done) return;
    try {
      if (fs.existsSync(this.target)) {
        const old = `${this.dir}.old`;
        fs.renameSync(this.target, old);
        fs.renameSync(this.dir, this.target);
        fs.rmSync(old, { recursive: true, force: true });
      } else {
        fs.renameSync(this.dir, this.target);
      }
    } catch (e) {
      this.abort();
      throw wrapIo(e, this.target);
    }
    this.done = true;
    inFlight.delete(this.dir);
  }

  abort(): void {
    if (this.done) return;
    this.done = true;
    fs.rmSync(this.dir, { recursive: true, force: true });
    inFlight.delete(this.dir);
  }
}

/** Track a temporary folder (removed by `cleanupTemporaries` on a signal) until `untrackTemporary`. */
export function trackTemporary(dir: string): void {
  inFlight.add(dir);
}
export function untrackTemporary(dir: string): void {
  inFlight.delete(dir);
}

function wrapIo(e: unknown, target: string): unknown {
  const err = e as NodeJS.ErrnoException;
  if (err.code === "ENOSPC")
    return new PareError(
      "E_IO",
      `out of disk space while writing ${target}`,
      "free some disk space or write elsewhere; nothing was left behind",
    );
  if (err.code && !(e instanceof PareError))
    return new PareError(
      "E_IO",
      `cannot write ${target}: ${err.code}`,
      "check permissions and free space; nothing was left behind",
    );
  return e;
}

export function writeAtomically(target: string, force: boolean, fill: (tmp: string) => void): void {
  const out = AtomicDir.open(target, force);
  try {
    fill(out.dir);
  } catch (e) {
    out.abort();
    throw wrapIo(e, out.target);
  }
  out.commit();
}
