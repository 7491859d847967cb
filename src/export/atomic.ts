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

export function writeAtomically(target: string, force: boolean, fill: (tmp: string) => void): void {
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
    fill(tmp);
    if (fs.existsSync(target)) {
      const old = `${tmp}.old`;
      fs.renameSync(target, old);
      fs.renameSync(tmp, target);
      fs.rmSync(old, { recursive: true, force: true });
    } else {
      fs.renameSync(tmp, target);
    }
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    const err = e as NodeJS.ErrnoException;
    if (err.code === "ENOSPC")
      throw new PareError(
        "E_IO",
        `out of disk space while writing ${target}`,
        "free some disk space or write elsewhere; nothing was left behind",
      );
    if (err.code && !(e instanceof PareError))
      throw new PareError(
        "E_IO",
        `cannot write ${target}: ${err.code}`,
        "check permissions and free space; nothing was left behind",
      );
    throw e;
  } finally {
    inFlight.delete(tmp);
  }
}
