/**
 * The building blocks of docs/reliability.md on their own (no prune): the output lock (src/io/lock.ts), atomic
 * output with leftovers cleaned and reported (src/export/atomic.ts), and the coded disk errors
 * (src/io/durable.ts).
 */
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PareError } from "../../src/errors.ts";
import {
  AtomicDir,
  AtomicFile,
  onBeforePublish,
  onLeftovers,
  writeAtomically,
  writeFileAtomically,
} from "../../src/export/atomic.ts";
import { diskFailure, fsyncTree, treeBytes } from "../../src/io/durable.ts";
import { acquireLock, holdsLock, isAlive, lockFile, processStart } from "../../src/io/lock.ts";

let root: string;
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-units-"));
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const dir = (name: string) => {
  const d = path.join(root, name);
  fs.mkdirSync(d, { recursive: true });
  return d;
};
const deadPid = () => spawnSync(process.execPath, ["-e", "0"]).pid!;
const codeOf = (f: () => unknown) => {
  try {
    f();
    return "returned";
  } catch (e) {
    return e instanceof PareError ? e.code : String(e);
  }
};

describe("output lock", () => {
  it("re-entrant within a process; the file goes with the last release", () => {
    const out = path.join(dir("reentrant"), "out");
    const a = acquireLock(out);
    const b = acquireLock(out);
    expect(JSON.parse(fs.readFileSync(lockFile(out), "utf8")).pid).toBe(process.pid);
    a.release();
    a.release(); // twice is once
    expect(fs.existsSync(lockFile(out))).toBe(true);
    expect(holdsLock(out)).toBe(true);
    b.release();
    expect(fs.existsSync(lockFile(out))).toBe(false);
    expect(fs.readdirSync(path.dirname(out))).toEqual([]);
  });

  it("another live process's lock: E_OUTPUT_LOCKED naming its pid and the lock file; a dead one's is taken over", () => {
    const d = dir("holders");
    const live = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"]);
    try {
      const out = path.join(d, "a");
      const start = processStart(live.pid!);
      fs.writeFileSync(
        lockFile(out),
        JSON.stringify({ pid: live.pid, host: os.hostname(), start, since: "x", nonce: "1" }),
      );
      let err: PareError | undefined;
      try {
        acquireLock(out);
      } catch (e) {
        err = e as PareError;
      }
      expect(err?.code).toBe("E_OUTPUT_LOCKED");
      expect(err?.message).toContain(`pid ${live.pid}`);
      expect(err?.hint).toContain(lockFile(out));
      expect(isAlive(live.pid!, start)).toBe(true);
      expect(isAlive(live.pid!, (start ?? 0) + 1)).toBe(start === undefined); // another start time: pid reused
    } finally {
      live.kill("SIGKILL");
      fs.rmSync(lockFile(path.join(d, "a")));
    }
    const out = path.join(d, "b");
    const dead = deadPid();
    expect(isAlive(dead)).toBe(false);
    fs.writeFileSync(
      lockFile(out),
      JSON.stringify({ pid: dead, host: os.hostname(), since: "x", nonce: "2" }),
    );
    const lock = acquireLock(out);
    expect(lock.tookOver.map((h) => h.pid)).toEqual([dead]);
    lock.release();
    expect(fs.readdirSync(d)).toEqual([]);
  });

  it("a lock from another host is never judged stale", () => {
    const out = path.join(dir("remote"), "out");
    fs.writeFileSync(
      lockFile(out),
      JSON.stringify({ pid: deadPid(), host: "elsewhere", since: "x", nonce: "3" }),
    );
    expect(codeOf(() => acquireLock(out))).toBe("E_OUTPUT_LOCKED");
  });
});

describe("atomic output", () => {
  it("leftovers of dead processes next to the target are removed and reported; a live process's are kept", () => {
    const d = dir("leftovers");
    const dead = deadPid();
    const names = [
      `.out.tmp-${dead}-abc`,
      `.out.tmp-${dead}-abc.old`,
      `.out.spill-${dead}`,
      `.out.lock.${dead}-0a1b`,
    ];
    for (const n of names) fs.mkdirSync(path.join(d, n));
    const live = `.out.tmp-${process.ppid}-zz`; // the test runner's parent: alive
    fs.mkdirSync(path.join(d, live));
    fs.writeFileSync(path.join(d, "unrelated.txt"), "kept");
    const reported: string[] = [];
    onLeftovers((r) => reported.push(...r));
    try {
      writeAtomically(path.join(d, "out"), false, (tmp) => fs.writeFileSync(path.join(tmp, "f"), "x"));
    } finally {
      onLeftovers(undefined);
    }
    expect(reported.map((p) => path.basename(p)).sort()).toEqual([...names].sort());
    expect(fs.readdirSync(d).sort()).toEqual([live, "out", "unrelated.txt"].sort());
    expect(fs.readFileSync(path.join(d, "out", "f"), "utf8")).toBe("x");
  });

  it("a target that appears while writing is left alone (E_OUTPUT_EXISTS) unless force; before-publish hooks run just before the rename", () => {
    const d = dir("appear");
    const target = path.join(d, "out");
    const a = AtomicDir.open(target, false);
    fs.writeFileSync(path.join(a.dir, "f"), "new");
    fs.writeFileSync(target, "someone else's");
    expect(codeOf(() => a.commit())).toBe("E_OUTPUT_EXISTS");
    expect(fs.readFileSync(target, "utf8")).toBe("someone else's");
    expect(fs.readdirSync(d)).toEqual(["out"]);

    const calls: string[] = [];
    const unhook = onBeforePublish(target, () =>
      calls.push(fs.existsSync(path.join(target, "f")) ? "after" : "before"),
    );
    const b = AtomicDir.open(target, true);
    fs.writeFileSync(path.join(b.dir, "f"), "new");
    b.commit();
    unhook();
    expect(calls).toEqual(["before"]);
    expect(fs.readFileSync(path.join(target, "f"), "utf8")).toBe("new");
    expect(fs.readdirSync(d)).toEqual(["out"]);
  });

  it("one file: written whole or not at all; a failed write leaves nothing and gives a coded error", () => {
    const d = dir("file");
    const target = path.join(d, "r.html");
    writeFileAtomically(target, "v1");
    writeFileAtomically(target, "v2");
    expect(fs.readFileSync(target, "utf8")).toBe("v2");
    const f = AtomicFile.open(path.join(d, "x.bin"), false);
    fs.writeFileSync(f.tmp, "partial");
    const err = f.failure(Object.assign(new Error("no space"), { code: "ENOSPC" }), 1000) as PareError;
    f.abort();
    expect(err.code).toBe("E_NO_SPACE");
    expect(err.message).toMatch(/needed more than 1007 B, 7 B were written, .* free/);
    expect(fs.readdirSync(d)).toEqual(["r.html"]);
  });
});

describe("disk errors and fsync", () => {
  it("ENOSPC → E_NO_SPACE (needed, written, free); EROFS / EACCES → E_IO saying why; others keep their errno", () => {
    const e = (code: string) => Object.assign(new Error(code), { code });
    const full = diskFailure(e("ENOSPC"), path.join(root, "t"), {
      written: 2048,
      pending: 1024,
    }) as PareError;
    expect(full.code).toBe("E_NO_SPACE");
    expect(full.message).toMatch(
      /^out of disk space while writing .*t \(needed more than 3\.0 KiB, 2\.0 KiB were written, .* free\)$/,
    );
    expect(full.context.needed).toBe(3072);
    const expected = diskFailure(e("EDQUOT"), path.join(root, "t"), { expected: 5 * 1024 ** 3 }) as PareError;
    expect(expected.message).toContain("needed about 5.00 GiB");
    expect((diskFailure(e("EROFS"), "/x/out") as PareError).message).toMatch(/read-only.*\(EROFS\)/);
    expect((diskFailure(e("EACCES"), "/x/out") as PareError).message).toMatch(
      /permission denied.*\(EACCES\)/,
    );
    expect((diskFailure(e("EIO"), "/x/out") as PareError).context.errno).toBe("EIO");
    const other = new PareError("E_USAGE", "m", "h");
    expect(diskFailure(other, "/x")).toBe(other);
  });

  it("fsyncTree flushes every file and folder of a tree; treeBytes counts its files", () => {
    const d = dir("tree");
    fs.mkdirSync(path.join(d, "a", "b"), { recursive: true });
    fs.writeFileSync(path.join(d, "a", "b", "f"), "12345");
    fs.writeFileSync(path.join(d, "g"), "123");
    expect(() => fsyncTree(d)).not.toThrow();
    expect(treeBytes(d)).toBe(8);
    expect(treeBytes(path.join(d, "missing"))).toBe(0);
  });
});
