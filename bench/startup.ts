/**
 * Startup benchmark (`npm run bench:startup`): wall time of `pare --help`, `pare --version` and
 * `pare inspect <demo model>` run from the compiled build (dist/, built first), next to `node -e 0` measured in
 * the same run, and of the development entry (tsx on the sources) for comparison. Median of 7 runs after a
 * warm-up. Results: bench/results/startup.{json,md}.
 */
import { execFileSync, spawnSync } from "node:child_process";
import path from "node:path";
import { fmt, machineInfo, markdownTable, median, REPO_ROOT, writeResults } from "./lib.ts";

const RUNS = 7;
const demo = path.join(REPO_ROOT, "examples", "llama-gqa-6l-f16");
const bin = path.join(REPO_ROOT, "bin", "pare.js");

process.stderr.write("building dist/ …\n");
execFileSync("npm", ["run", "build"], { cwd: REPO_ROOT, stdio: ["ignore", "ignore", "inherit"] });

function timeCommand(args: string[], env: NodeJS.ProcessEnv): { median: number; runs: number[] } {
  const once = () => {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(process.execPath, args, { env, stdio: ["ignore", "ignore", "pipe"] });
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    if (r.status !== 0) throw new Error(`${args.join(" ")} failed: ${r.stderr}`);
    return s;
  };
  once(); // warm-up (file cache)
  const runs = Array.from({ length: RUNS }, once);
  return { median: median(runs), runs };
}

const dist = { ...process.env, PARE_DIST: "1" };
const dev = { ...process.env, PARE_DIST: "0" };
const cases: { name: string; args: string[]; env: NodeJS.ProcessEnv }[] = [
  { name: "node -e 0", args: ["-e", "0"], env: dist },
  { name: "pare --version", args: [bin, "--version"], env: dist },
  { name: "pare --help", args: [bin, "--help"], env: dist },
  { name: "pare inspect <demo>", args: [bin, "inspect", demo], env: dist },
  { name: "pare --help (sources through tsx)", args: [bin, "--help"], env: dev },
];
const results = cases.map((c) => {
  process.stderr.write(`${c.name} …\n`);
  return { name: c.name, ...timeCommand(c.args, c.env) };
});
const base = results[0].median;
const rows = results.map((r) => [r.name, fmt(r.median * 1000, 0), fmt(r.median / base, 2)]);
const table = markdownTable(["command", "median ms", "× node -e 0"], rows, [false, true, true]);
const info = machineInfo();
const md = [
  "# Startup (`npm run bench:startup`)",
  "",
  `${info.cpu}, ${info.cores} cores, Node ${info.node}; median of ${RUNS} runs after one warm-up; ${info.date}`,
  "",
  table,
  "",
].join("\n");
writeResults("startup", { machine: info, runs: RUNS, results }, md);
process.stdout.write(`${table}\n`);
