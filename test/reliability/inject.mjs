/**
 * Test-only fault injection at the file-writing layer, preloaded into a pare process with
 * `node --import <this file> bin/pare.js …` (never part of pare itself). It wraps node:fs's synchronous
 * mutating calls (everything pare writes goes through them) for paths under PARE_INJECT_ROOT:
 *
 *   PARE_INJECT_LOG=<file>        append "<n>\t<op>\t<path>[\t<dest>]" for every mutating call, numbered from 1
 *   PARE_INJECT_KILL_AT=<n>:<how> SIGKILL this process at call n: before it, after it, or (writes) "torn":
 *                                 half of the bytes written, then killed
 *   PARE_INJECT_ENOSPC=<bytes>    writes fail with ENOSPC once more than <bytes> were written in all
 *   PARE_INJECT_SLOW_MS=<ms>      sleep this long at every such call (a slow run)
 *   PARE_INJECT_ERRNO=<code>:<op>:<regex>  calls <op> (e.g. mkdirSync, renameSync, openSync; * for any)
 *                                 whose "<path> -> <destination>" matches <regex> fail with errno <code>
 */
import fs from "node:fs";
import { syncBuiltinESMExports } from "node:module";
import path from "node:path";

const root = process.env.PARE_INJECT_ROOT ? path.resolve(process.env.PARE_INJECT_ROOT) : undefined;
const logFile = process.env.PARE_INJECT_LOG;
const [killAtS, killHow = "before"] = (process.env.PARE_INJECT_KILL_AT ?? "").split(":");
const killAt = killAtS ? Number(killAtS) : 0;
const enospc = process.env.PARE_INJECT_ENOSPC ? Number(process.env.PARE_INJECT_ENOSPC) : undefined;
const slowMs = Number(process.env.PARE_INJECT_SLOW_MS ?? 0);
const [errCode, errOp, ...errRest] = (process.env.PARE_INJECT_ERRNO ?? "").split(":");
const errRe = new RegExp(errRest.join(":") || "$^");

const real = {};
for (const k of [
  "openSync",
  "writeSync",
  "writeFileSync",
  "appendFileSync",
  "renameSync",
  "fsyncSync",
  "mkdirSync",
  "rmSync",
  "unlinkSync",
  "rmdirSync",
  "ftruncateSync",
  "linkSync",
  "copyFileSync",
  "closeSync",
])
  real[k] = fs[k];

const fdPath = new Map();
let n = 0;
let written = 0;

const under = (p) => {
  if (root === undefined || typeof p !== "string") return false;
  const r = path.resolve(p);
  return r === root || r.startsWith(`${root}${path.sep}`);
};

function fail(code, op, p) {
  const e = new Error(`${code}: injected failure, ${op} '${p}'`);
  e.code = code;
  e.syscall = op;
  e.path = p;
  return e;
}

/** One mutating call on `p`: logged, maybe failed, maybe killed before/after. */
function around(op, p, dest, perform, bytes) {
  if (!under(p) && !under(dest)) return perform();
  if (errCode && (errOp === "*" || op === errOp) && errRe.test(`${p} -> ${dest ?? ""}`))
    throw fail(errCode, op, p);
  if (enospc !== undefined && bytes !== undefined && written + bytes > enospc) throw fail("ENOSPC", op, p);
  const me = ++n; // calls made inside this one (rmSync → unlinkSync, writeFileSync → openSync…) count after it
  if (slowMs > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, slowMs);
  if (logFile) real.appendFileSync(logFile, `${me}\t${op}\t${p}${dest ? `\t${dest}` : ""}\n`);
  if (me === killAt && killHow === "before") process.kill(process.pid, "SIGKILL");
  const r = perform(me === killAt && killHow === "torn");
  if (bytes !== undefined) written += bytes;
  if (me === killAt) process.kill(process.pid, "SIGKILL");
  return r;
}

const len = (d) => (typeof d === "string" ? Buffer.byteLength(d) : (d?.byteLength ?? 0));

fs.openSync = (p, flags, mode) => {
  const writing = typeof flags === "string" ? /[wa+x]/.test(flags) : (flags ?? 0) & 3;
  const fd = writing
    ? around("openSync", p, undefined, () => real.openSync(p, flags, mode))
    : real.openSync(p, flags, mode);
  fdPath.set(fd, String(p));
  return fd;
};
fs.closeSync = (fd) => {
  fdPath.delete(fd);
  return real.closeSync(fd);
};
fs.writeSync = (fd, buf, ...rest) => {
  const p = fdPath.get(fd);
  const size =
    typeof buf === "string" ? Buffer.byteLength(buf) : typeof rest[1] === "number" ? rest[1] : buf.byteLength;
  return around(
    "writeSync",
    p,
    undefined,
    (torn) => {
      if (torn && typeof buf !== "string") {
        const off = typeof rest[0] === "number" ? rest[0] : 0;
        real.writeSync(fd, buf, off, Math.floor(size / 2), rest[2]);
        process.kill(process.pid, "SIGKILL");
      }
      return real.writeSync(fd, buf, ...rest);
    },
    size,
  );
};
fs.writeFileSync = (p, data, opts) =>
  around(
    "writeFileSync",
    typeof p === "number" ? fdPath.get(p) : p,
    undefined,
    (torn) => {
      if (torn) {
        real.writeFileSync(
          p,
          typeof data === "string" ? data.slice(0, data.length >> 1) : data.subarray(0, data.byteLength >> 1),
          opts,
        );
        process.kill(process.pid, "SIGKILL");
      }
      return real.writeFileSync(p, data, opts);
    },
    len(data),
  );
fs.appendFileSync = (p, data, opts) =>
  around("appendFileSync", p, undefined, () => real.appendFileSync(p, data, opts), len(data));
fs.renameSync = (a, b) => around("renameSync", a, b, () => real.renameSync(a, b));
fs.linkSync = (a, b) => around("linkSync", a, b, () => real.linkSync(a, b));
fs.copyFileSync = (a, b, m) => around("copyFileSync", a, b, () => real.copyFileSync(a, b, m));
fs.fsyncSync = (fd) => around("fsyncSync", fdPath.get(fd), undefined, () => real.fsyncSync(fd));
fs.ftruncateSync = (fd, l) =>
  around("ftruncateSync", fdPath.get(fd), undefined, () => real.ftruncateSync(fd, l));
fs.mkdirSync = (p, o) => around("mkdirSync", p, undefined, () => real.mkdirSync(p, o));
fs.rmSync = (p, o) => around("rmSync", p, undefined, () => real.rmSync(p, o));
fs.unlinkSync = (p) => around("unlinkSync", p, undefined, () => real.unlinkSync(p));
fs.rmdirSync = (p, o) => around("rmdirSync", p, undefined, () => real.rmdirSync(p, o));
syncBuiltinESMExports();
