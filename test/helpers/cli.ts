/**
 * Spawning pare's CLI (`node bin/pare.js …`) from tests, and checking that folders are left untouched.
 */
import { spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (two levels above this file). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

export interface CliResult {
  /** exit code (−1 if killed by a signal) */
  code: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `node bin/pare.js ...args` with the repository root as working directory. PARE_DEBUG is removed from the
 * environment (it would add stack traces); `env` adds or overrides variables.
 */
export function runCli(
  args: string[],
  opts: { env?: Record<string, string>; timeoutMs?: number; cwd?: string } = {},
): Promise<CliResult> {
  const env: NodeJS.ProcessEnv = { ...process.env, ...opts.env };
  delete env.PARE_DEBUG;
  delete env.NODE_OPTIONS; // vitest's loaders must not leak into the child
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(REPO_ROOT, "bin/pare.js"), ...args], {
      cwd: opts.cwd ?? REPO_ROOT,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => {
      stdout += s;
    });
    child.stderr.setEncoding("utf8").on("data", (s: string) => {
      stderr += s;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 60_000);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, signal, stdout, stderr });
    });
  });
}

/**
 * stdout holding exactly one JSON object (one line, nothing else but the final newline); throws otherwise.
 */
export function parseSingleJson(stdout: string): Record<string, unknown> {
  const lines = stdout.split("\n").filter((l) => l.trim() !== "");
  if (lines.length !== 1)
    throw new Error(`expected one line of JSON on stdout, got ${lines.length}:\n${stdout}`);
  const v: unknown = JSON.parse(lines[0]);
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw new Error(`not a JSON object: ${lines[0]}`);
  return v as Record<string, unknown>;
}

/**
 * A snapshot of a folder tree: relative path → "dir", "link:<target>" or "<mode>:<size>:<sha256>" of the
 * content. Equal snapshots mean the folder is byte-identical (and no file was added or removed).
 */
export function snapshotDir(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    const abs = path.join(dir, rel);
    const st = fs.lstatSync(abs);
    if (st.isSymbolicLink()) out[rel || "."] = `link:${fs.readlinkSync(abs)}`;
    else if (st.isDirectory()) {
      out[rel || "."] = "dir";
      for (const name of fs.readdirSync(abs).sort()) walk(path.join(rel, name));
    } else {
      const hash = crypto.createHash("sha256").update(fs.readFileSync(abs)).digest("hex");
      out[rel] = `${(st.mode & 0o777).toString(8)}:${st.size}:${hash}`;
    }
  };
  if (fs.existsSync(dir)) walk("");
  return out;
}
