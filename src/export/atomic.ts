/**
 * Atomic output (docs/reliability.md): every output — a folder written over time (AtomicDir), a folder filled
 * at once (writeAtomically) or one file (AtomicFile, writeFileAtomically) — is written under a temporary
 * sibling name and published by one rename. Before writing, the output's lock is taken (src/io/lock.ts:
 * E_OUTPUT_LOCKED for a second writer) and the leftovers of killed runs next to it are removed (and reported
 * through `onLeftovers`). Before the rename every file and folder of the temporary output is fsynced, after it
 * the parent folder: what is published is on the disk. A replaced target (`force`) is moved aside first, then
 * removed. On any failure the temporary output is removed and the target is untouched; a disk that fills gives
 * E_NO_SPACE with what was needed. Temporary outputs in flight are tracked so that a signal handler can remove
 * them (see `cleanupTemporaries`).
 *
 * The temporary sibling lives in the output's own folder, so the publishing rename never crosses filesystems.
 */
import fs from "node:fs";
import path from "node:path";
import { PareError } from "../errors.ts";
import { diskFailure, fsyncDir, fsyncFile, fsyncTree, treeBytes } from "../io/durable.ts";
import { acquireLock, isAlive, type OutputLock } from "../io/lock.ts";

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

/** Track a temporary folder (removed by `cleanupTemporaries` on a signal) until `untrackTemporary`. */
export function trackTemporary(dir: string): void {
  inFlight.add(dir);
}
export function untrackTemporary(dir: string): void {
  inFlight.delete(dir);
}

const beforePublish = new Map<string, Set<() => void>>();

/**
 * Run `fn` when the output `target` is about to be published (its files fsynced, just before the rename): a
 * prune removes its checkpoints and spill folder there, so that a kill after the rename finds nothing of them.
 * Returns a function that unregisters it.
 */
export function onBeforePublish(target: string, fn: () => void): () => void {
  const t = path.resolve(target);
  const set = beforePublish.get(t) ?? new Set();
  set.add(fn);
  beforePublish.set(t, set);
  return () => {
    set.delete(fn);
    if (set.size === 0 && beforePublish.get(t) === set) beforePublish.delete(t);
  };
}

let leftoverListener: ((removed: string[]) => void) | undefined;

/** Be told (the CLI prints it) when a run removes what a killed run left next to its output. */
export function onLeftovers(fn: ((removed: string[]) => void) | undefined): void {
  leftoverListener = fn;
}

/** Tell the `onLeftovers` listener that these leftovers of a killed run were removed. */
export function reportLeftovers(removed: string[]): void {
  if (removed.length) leftoverListener?.(removed);
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/**
 * Removes what killed runs left next to output path `target`: temporary outputs `.<name>.tmp-<pid>-*` (and a
 * replaced output moved aside, `….old`), spill folders `.<name>.spill-<pid>`, lock candidates
 * `.<name>.lock.<pid>-*`, temporary files `<name>.tmp-<pid>` — those of processes that are no longer alive.
 * Returns the paths removed (also given to the `onLeftovers` listener).
 */
export function cleanLeftovers(target: string): string[] {
  const t = path.resolve(target);
  const dir = path.dirname(t);
  const b = esc(path.basename(t));
  const patterns = [
    new RegExp(`^\\.${b}\\.(?:tmp|spill)-(\\d+)(?:-[0-9a-z]+)?(?:\\.old)?$`),
    new RegExp(`^\\.${b}\\.lock\\.(?:stale-)?(\\d+)-[0-9a-f]+$`),
    new RegExp(`^${b}\\.tmp-(\\d+)$`),
  ];
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    for (const re of patterns) {
      const m = re.exec(name);
      if (!m) continue;
      const pid = Number(m[1]);
      if (pid === process.pid || isAlive(pid)) break;
      const p = path.join(dir, name);
      try {
        fs.rmSync(p, { recursive: true, force: true });
        removed.push(p);
      } catch {
        // cannot remove it (permissions): leave it, the run goes on
      }
      break;
    }
  }
  if (removed.length) {
    fsyncDir(dir);
    reportLeftovers(removed);
  }
  return removed;
}

const exists = (p: string) => {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
};

function outputExists(target: string, what: string): PareError {
  return new PareError(
    "E_OUTPUT_EXISTS",
    `output ${what} ${target} already exists`,
    "choose another output path, or add --force to replace it",
    { target },
  );
}

/** The lock file of a killed run, taken over by `lock` (reported with the leftovers). */
export function staleLock(lock: OutputLock): string[] {
  if (lock.tookOver.length === 0) return [];
  const found = [`${lock.file} (a stale lock of pid ${lock.tookOver.map((h) => h.pid).join(", ")})`];
  reportLeftovers(found);
  return found;
}

/** Lock, clean the leftovers, check the target: what every atomic output does before writing. */
function begin(target: string, force: boolean, what: string): { lock: OutputLock; leftovers: string[] } {
  if (exists(target) && !force) throw outputExists(target, what);
  const lock = acquireLock(target);
  try {
    const leftovers = [...staleLock(lock), ...cleanLeftovers(target)];
    if (exists(target) && !force) throw outputExists(target, what);
    return { lock, leftovers };
  } catch (e) {
    lock.release();
    throw diskFailure(e, target);
  }
}

/**
 * The rename that publishes `tmp` as `target` (everything under `tmp` already fsynced). A target that exists
 * now is replaced only with `force` (it may have appeared during the run: E_OUTPUT_EXISTS, the target is left
 * as it is). The `onBeforePublish` functions of the target run just before the rename; the parent folder is
 * fsynced after it.
 */
function publish(tmp: string, target: string, force: boolean, what: string): void {
  const parent = path.dirname(target);
  const appeared = exists(target);
  if (!appeared || force) for (const fn of beforePublish.get(target) ?? []) fn();
  if (appeared) {
    if (!force)
      throw new PareError(
        "E_OUTPUT_EXISTS",
        `output ${what} ${target} appeared while this run was writing it; it was left as it is`,
        "remove it or choose another output path, or add --force to replace it, and run again",
        { target },
      );
    const old = `${tmp}.old`;
    fs.renameSync(target, old);
    fs.renameSync(tmp, target);
    fsyncDir(parent);
    fs.rmSync(old, { recursive: true, force: true });
  } else {
    fs.renameSync(tmp, target);
  }
  fsyncDir(parent);
}

/**
 * The same protocol for output written over a long time (pare prune streams layers into it):
 * `open` takes the lock, checks the target and creates the temporary folder, `commit` fsyncs it and renames it
 * onto the target, `abort` removes it; both release the lock. The folder is tracked for the signal handlers
 * meanwhile.
 */
export class AtomicDir {
  private done = false;
  private constructor(
    readonly target: string,
    readonly dir: string,
    private readonly force: boolean,
    private readonly lock: OutputLock,
    /** what killed runs had left next to the target, removed by `open` */
    readonly leftovers: string[],
    private readonly expectedBytes?: number,
  ) {}

  /** `expectedBytes`: the output's expected size, quoted by E_NO_SPACE. */
  static open(target: string, force: boolean, opts: { expectedBytes?: number } = {}): AtomicDir {
    target = path.resolve(target);
    const { lock, leftovers } = begin(target, force, "folder");
    const tmp = tempSibling(target);
    inFlight.add(tmp);
    try {
      fs.mkdirSync(tmp, { recursive: true });
    } catch (e) {
      inFlight.delete(tmp);
      fs.rmSync(tmp, { recursive: true, force: true });
      lock.release();
      throw diskFailure(e, target, { expected: opts.expectedBytes });
    }
    return new AtomicDir(target, tmp, force, lock, leftovers, opts.expectedBytes);
  }

  /** The coded error for a failure while filling this folder (measures what was written; call before abort). */
  failure(e: unknown): unknown {
    return diskFailure(e, this.target, { written: treeBytes(this.dir), expected: this.expectedBytes });
  }

  commit(): void {
    if (this.done) return;
    try {
      fsyncTree(this.dir);
      publish(this.dir, this.target, this.force, "folder");
    } catch (e) {
      const err = this.failure(e);
      this.abort();
      throw err;
    }
    this.done = true;
    inFlight.delete(this.dir);
    this.lock.release();
  }

  abort(): void {
    if (this.done) return;
    this.done = true;
    try {
      fs.rmSync(this.dir, { recursive: true, force: true });
    } finally {
      inFlight.delete(this.dir);
      this.lock.release();
    }
  }
}

export function writeAtomically(target: string, force: boolean, fill: (tmp: string) => void): void {
  const out = AtomicDir.open(target, force);
  try {
    fill(out.dir);
  } catch (e) {
    const err = out.failure(e);
    out.abort();
    throw err;
  }
  out.commit();
}

/**
 * One file, atomically: `open` takes the lock and names the temporary sibling (`tmp`, not created: the caller
 * writes it), `commit` fsyncs it and renames it onto the target, `abort` removes it.
 */
export class AtomicFile {
  private done = false;
  private constructor(
    readonly target: string,
    readonly tmp: string,
    private readonly force: boolean,
    private readonly lock: OutputLock,
    readonly leftovers: string[],
  ) {}

  static open(target: string, force: boolean): AtomicFile {
    target = path.resolve(target);
    const { lock, leftovers } = begin(target, force, "file");
    const tmp = tempSibling(target);
    inFlight.add(tmp);
    return new AtomicFile(target, tmp, force, lock, leftovers);
  }

  failure(e: unknown, pending?: number): unknown {
    return diskFailure(e, this.target, { written: treeBytes(this.tmp), pending });
  }

  commit(): void {
    if (this.done) return;
    try {
      fsyncFile(this.tmp);
      publish(this.tmp, this.target, this.force, "file");
    } catch (e) {
      const err = this.failure(e);
      this.abort();
      throw err;
    }
    this.done = true;
    inFlight.delete(this.tmp);
    this.lock.release();
  }

  abort(): void {
    if (this.done) return;
    this.done = true;
    try {
      fs.rmSync(this.tmp, { recursive: true, force: true });
    } finally {
      inFlight.delete(this.tmp);
      this.lock.release();
    }
  }
}

/** Write `data` to the file `target` atomically (an existing file is replaced only with `force`). */
export function writeFileAtomically(target: string, data: string | Uint8Array, force = true): void {
  const out = AtomicFile.open(target, force);
  try {
    fs.writeFileSync(out.tmp, data, { flag: "wx" });
  } catch (e) {
    const err = out.failure(e, typeof data === "string" ? Buffer.byteLength(data) : data.byteLength);
    out.abort();
    throw err;
  }
  out.commit();
}
