/**
 * Durability: data reaches the disk before it is published. `fsyncTree` flushes every file and folder of a
 * temporary output (whoever wrote them, however), `fsyncDir` flushes a folder's entries (after a rename into
 * it, so that the rename itself survives a power loss). `diskFailure` turns an errno from a write into the
 * coded error a user sees: ENOSPC → E_NO_SPACE with the bytes that were needed and the bytes free.
 */
import fs from "node:fs";
import path from "node:path";
import { PareError } from "../errors.ts";

/** fsync an open file descriptor; filesystems that cannot (EINVAL: e.g. some special files) are skipped. */
function fsyncFd(fd: number): void {
  try {
    fs.fsyncSync(fd);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== "EINVAL" && code !== "ENOTSUP" && code !== "EROFS") throw e;
  }
}

/** Flush one file's data and metadata to the disk. */
export function fsyncFile(file: string): void {
  const fd = fs.openSync(file, "r");
  try {
    fsyncFd(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Flush a folder's entries (names created, renamed or removed in it) to the disk. */
export function fsyncDir(dir: string): void {
  let fd: number;
  try {
    fd = fs.openSync(dir, "r");
  } catch (e) {
    // a folder that cannot be opened for reading cannot be synced either; its files were
    if ((e as NodeJS.ErrnoException).code === "EACCES") return;
    throw e;
  }
  try {
    fsyncFd(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Every regular file under `root` (recursively) fsynced, then every folder, deepest first, `root` last. */
export function fsyncTree(root: string): void {
  const st = fs.lstatSync(root);
  if (st.isFile()) {
    fsyncFile(root);
    return;
  }
  if (!st.isDirectory()) return;
  for (const name of fs.readdirSync(root)) {
    const p = path.join(root, name);
    const s = fs.lstatSync(p);
    if (s.isDirectory()) fsyncTree(p);
    else if (s.isFile()) fsyncFile(p);
  }
  fsyncDir(root);
}

/** Bytes of the regular files under `p` (0 when it does not exist). */
export function treeBytes(p: string): number {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(p);
  } catch {
    return 0;
  }
  if (st.isFile()) return st.size;
  if (!st.isDirectory()) return 0;
  let n = 0;
  for (const name of fs.readdirSync(p)) n += treeBytes(path.join(p, name));
  return n;
}

/** Bytes free to this user on the filesystem holding `p` (or its nearest existing ancestor); undefined if unknown. */
export function freeBytes(p: string): number | undefined {
  let at = path.resolve(p);
  for (;;) {
    try {
      const s = fs.statfsSync(at);
      return Number(s.bavail) * Number(s.bsize);
    } catch {
      const up = path.dirname(at);
      if (up === at) return undefined;
      at = up;
    }
  }
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

/** The errno of an error (also of a PareError made from one, which keeps it in its context). */
export function errnoOf(e: unknown): string | undefined {
  if (e instanceof PareError) return typeof e.context.errno === "string" ? e.context.errno : undefined;
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === "string" ? code : undefined;
}

export interface DiskNeed {
  /** bytes of this output already written when the write failed */
  written?: number;
  /** bytes the failed write needed on top of them */
  pending?: number;
  /** the whole output's expected size, when known */
  expected?: number;
}

/**
 * The coded error for a failed write to `target` (a file or folder being produced). ENOSPC / EDQUOT →
 * E_NO_SPACE saying what was needed and what is free; EACCES / EPERM / EROFS → E_IO saying the output's folder
 * is not writable; anything else → E_IO with its errno. A PareError that is not a disk error passes through.
 */
export function diskFailure(e: unknown, target: string, need: DiskNeed = {}): unknown {
  const code = errnoOf(e);
  if (e instanceof PareError && e.code === "E_NO_SPACE") return e;
  if (code === "ENOSPC" || code === "EDQUOT") {
    const free = freeBytes(path.dirname(target));
    const needed =
      need.expected ??
      (need.written !== undefined || need.pending !== undefined
        ? (need.written ?? 0) + (need.pending ?? 0)
        : undefined);
    const parts = [
      needed !== undefined
        ? `needed ${need.expected !== undefined ? "about" : "more than"} ${formatBytes(needed)}`
        : undefined,
      need.written !== undefined ? `${formatBytes(need.written)} were written` : undefined,
      free !== undefined ? `${formatBytes(free)} free` : undefined,
    ].filter(Boolean);
    return new PareError(
      "E_NO_SPACE",
      `out of disk space while writing ${target}${parts.length ? ` (${parts.join(", ")})` : ""}`,
      "free disk space on that filesystem or write elsewhere; nothing partial was left behind and the input is untouched",
      { errno: code, target, needed, written: need.written, free },
    );
  }
  if (e instanceof PareError) return e;
  const at = (e as NodeJS.ErrnoException).path;
  const on = at && path.resolve(at) !== path.resolve(target) ? ` (${at})` : "";
  if (code === "EACCES" || code === "EPERM" || code === "EROFS") {
    return new PareError(
      "E_IO",
      `cannot write ${target}: ${code === "EROFS" ? "the filesystem is read-only" : "permission denied"}${on} (${code})`,
      "choose an output in a writable folder; nothing was left behind and the input is untouched",
      { errno: code, target },
    );
  }
  if (code) {
    return new PareError(
      "E_IO",
      `cannot write ${target}: ${(e as Error).message ?? code}`,
      "check the output path, permissions and free space; nothing partial was left behind",
      { errno: code, target },
    );
  }
  return e;
}
