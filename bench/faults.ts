/**
 * `npm run bench:faults`: the crash-consistency promise of docs/reliability.md under SIGKILL at ≥ 200 seeded
 * instants on the shared llama-gqa-6l decoder (skipped, saying so, without ../shared).
 *
 * One clean `pare prune` (calibration spilling to disk within a small --max-memory) with every file-writing call
 * logged gives the reference output and the calls of each phase (lock, spill, checkpoint, output, final rename,
 * other). Each instant then kills a fresh prune — at one such call (before it, after it, or half-way through a
 * write; the phases taken in turn) or after a random delay (compute phases) — sometimes kills its `--resume`
 * again, and finally resumes it. A smaller share of instants kills `pare export --format onnx|gguf` and
 * `pare report` on the reference output and reruns them. After every kill the promise is checked (output absent
 * or equal to the clean run's; only pare's own leftovers next to it; input unchanged), and after the final run
 * the output must equal the clean run's, alone in its folder. The kills come from the test-only preload
 * test/reliability/inject.mjs.
 *
 * Usage: npm run bench:faults [-- --instants 200 --seed 15 --name faults]
 * Writes bench/results/<name>.json and .md (default faults) as it goes (every 10 instants) and prints the table.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spillingBudget } from "../test/reliability/fixture.ts";
import {
  checkAfterKill,
  checkCompleted,
  type LogEntry,
  phaseOf,
  readLog,
  runPare,
  snapshotDir,
} from "../test/reliability/harness.ts";
import { machineInfo, markdownTable, REPO_ROOT, writeResults } from "./lib.ts";

const SHARED = path.resolve(REPO_ROOT, "../shared");
const MODEL = path.join(SHARED, "models/llama-gqa-6l");
const CALIB = path.join(REPO_ROOT, "examples/data/calib-wikitext2-valid.txt");
const SETTINGS = { samples: 4, seqLen: 32, ratio: 0.3 };

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

/** mulberry32 */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type How = "before" | "after" | "torn";
interface Tally {
  command: string;
  phase: string;
  tried: number;
  killed: number;
  kept: number;
  broken: number;
}

async function main(): Promise<void> {
  if (!fs.existsSync(path.join(MODEL, "config.json"))) {
    console.log(
      `bench:faults skipped: the shared model ${MODEL} is not here (../shared missing); nothing measured`,
    );
    return;
  }
  const instants = arg("instants", 200);
  const seed = arg("seed", 15);
  // results go to bench/results/<name>.{json,md}: a second run alongside the first writes its own files
  const nameAt = process.argv.indexOf("--name");
  const name = nameAt >= 0 ? process.argv[nameAt + 1] : "faults";
  const rand = rng(seed);
  const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)];
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-bench-faults-"));
  const inputBefore = JSON.stringify(snapshotDir(MODEL));
  const t0 = performance.now();
  const maxMemory = spillingBudget(MODEL, CALIB, SETTINGS);
  const pruneArgs = (out: string, extra: string[] = []) => [
    "prune",
    MODEL,
    "--out",
    out,
    "--calib",
    CALIB,
    "--samples",
    String(SETTINGS.samples),
    "--seq-len",
    String(SETTINGS.seqLen),
    "--ratio",
    String(SETTINGS.ratio),
    "--max-memory",
    maxMemory,
    ...extra,
  ];
  const commands: Record<string, { name: string; args: (out: string) => string[]; force: string[] }> = {
    prune: { name: "out", args: (out) => pruneArgs(out), force: [] },
    "export onnx": {
      name: "x.onnx",
      args: (out) => ["export", path.join(root, "ref", "out"), "--format", "onnx", "--out", out],
      force: ["--force"],
    },
    "export gguf": {
      name: "x.gguf",
      args: (out) => ["export", path.join(root, "ref", "out"), "--format", "gguf", "--out", out],
      force: ["--force"],
    },
    report: {
      name: "r.html",
      args: (out) => ["report", path.join(root, "ref", "out"), "--out", out],
      force: [],
    },
  };
  try {
    fs.mkdirSync(path.join(root, "ref"));
    // reference runs with their file-writing calls, per command
    const calls: Record<string, LogEntry[]> = {};
    let pruneMs = 0;
    for (const [cmd, c] of Object.entries(commands)) {
      const dir = path.join(root, `log-${c.name}`);
      fs.mkdirSync(dir);
      const log = path.join(root, `${c.name}.log`);
      const r = await runPare(c.args(path.join(dir, c.name)), {
        inject: { root: dir, log },
        timeoutMs: 600_000,
      });
      if (r.code !== 0) throw new Error(`clean ${cmd} failed: ${r.stderr}`);
      if (cmd === "prune") pruneMs = r.ms;
      fs.renameSync(path.join(dir, c.name), path.join(root, "ref", c.name));
      calls[cmd] = readLog(log);
      console.error(`» clean ${cmd}: ${calls[cmd].length} file-writing calls, ${(r.ms / 1000).toFixed(1)} s`);
    }
    const refOut = path.join(root, "ref", "out");
    const refBefore = JSON.stringify(snapshotDir(refOut));
    const tallies = new Map<string, Tally>();
    const tally = (command: string, phase: string) => {
      const k = `${command}|${phase}`;
      if (!tallies.has(k)) tallies.set(k, { command, phase, tried: 0, killed: 0, kept: 0, broken: 0 });
      return tallies.get(k)!;
    };
    const failures: string[] = [];
    const totals = () => {
      const rows = [...tallies.values()].sort((a, b) => (a.command + a.phase < b.command + b.phase ? -1 : 1));
      const total = rows.filter((r) => r.phase !== "resume (killed again)").reduce((n, r) => n + r.tried, 0);
      return { rows, total, broken: rows.reduce((n, r) => n + r.broken, 0) };
    };
    /** Writes the results so far (every 10 instants: a run cut short still leaves honest numbers). */
    const report = (done: number, planned: number) => {
      const { rows, total, broken } = totals();
      const result = {
        machine: machineInfo(),
        date: new Date().toISOString(),
        command: `npm run bench:faults -- --instants ${planned} --seed ${seed}${name === "faults" ? "" : ` --name ${name}`}`,
        complete: done === planned,
        model: "llama-gqa-6l",
        settings: { ...SETTINGS, maxMemoryGiB: Number(maxMemory) },
        cleanCalls: Object.fromEntries(Object.entries(calls).map(([k, v]) => [k, v.length])),
        instants: total,
        broken,
        seconds: Math.round((performance.now() - t0) / 1000),
        perPhase: rows,
        failures,
      };
      const table = markdownTable(
        ["command", "phase", "instants", "killed", "promise kept", "broken"],
        rows.map((r) => [r.command, r.phase, r.tried, r.killed, r.kept, r.broken]),
        [false, false, true, true, true, true],
      );
      const md = [
        `# bench:faults — SIGKILL at ${total} seeded instants (llama-gqa-6l)${done === planned ? "" : ` — partial: ${done} of ${planned} planned`}`,
        "",
        `${result.machine.cpu}, ${result.machine.cores} cores; ${result.date}; \`${result.command}\`; ${result.seconds} s`,
        "",
        `prune: --samples ${SETTINGS.samples} --seq-len ${SETTINGS.seqLen} --ratio ${SETTINGS.ratio} --max-memory ${Number(maxMemory).toFixed(4)} (calibration data spills); file-writing calls of the clean runs: ${Object.entries(
          result.cleanCalls,
        )
          .map(([k, v]) => `${k} ${v}`)
          .join(", ")}.`,
        "A kill at a call lands before it, after it or half-way through a write; 'time' kills after a random delay.",
        "'killed' < 'instants' where the run finished before the delay. 'resume (killed again)': resumes killed once more",
        "before the final --resume (not counted in the total). 'promise kept': after the kill the output was absent or",
        "equal to the clean run's with only pare's own leftovers next to it, the final run completed byte-identically",
        "(pare-pruning.json: run-dependent fields aside) leaving the output alone in its folder, and the inputs were unchanged.",
        "",
        table,
        "",
        `**${broken} broken outputs over ${total} instants.**`,
        ...(failures.length ? ["", "Failures:", "", ...failures.map((f) => `- ${f}`)] : []),
        "",
      ].join("\n");
      const files = writeResults(name, result, md);
      if (done === planned) console.log(table);
      return files;
    };
    const turn = new Map<string, number>();
    for (let i = 0; i < instants; i++) {
      // 70 % prune (of which 1 in 8 after a delay, 1 in 6 with the resume killed too), 10 % each other command
      const u = rand();
      const cmd = u < 0.7 ? "prune" : u < 0.8 ? "export onnx" : u < 0.9 ? "export gguf" : "report";
      const c = commands[cmd];
      const byPhase = new Map<string, LogEntry[]>();
      for (const e of calls[cmd])
        byPhase.set(phaseOf(e, c.name), [...(byPhase.get(phaseOf(e, c.name)) ?? []), e]);
      const phases = [...byPhase.keys()].sort();
      const timed = cmd === "prune" && rand() < 1 / 8;
      const t = turn.get(cmd) ?? 0;
      turn.set(cmd, t + 1);
      const phase = timed ? "time (compute)" : phases[t % phases.length];
      const call = timed ? undefined : pick(byPhase.get(phase)!);
      const how: How = call
        ? pick(
            call.op === "writeSync" || call.op === "writeFileSync"
              ? ["before", "after", "torn"]
              : ["before", "after"],
          )
        : "before";
      const resumeKill =
        cmd === "prune" && rand() < 1 / 6 ? 1 + Math.floor(rand() * calls.prune.length) : undefined;
      const T = tally(cmd, phase);
      T.tried++;
      const work = path.join(root, `i${i}`);
      fs.mkdirSync(work);
      const out = path.join(work, c.name);
      const killed = await runPare(
        c.args(out),
        call
          ? { inject: { root: work, killAt: { n: call.n, how } }, timeoutMs: 600_000 }
          : { killAfterMs: 1000 + rand() * Math.max(1000, 0.9 * pruneMs - 1000), timeoutMs: 600_000 },
      );
      if (killed.signal === "SIGKILL") T.killed++;
      const problems =
        killed.signal === "SIGKILL" || killed.code === 0
          ? checkAfterKill(work, c.name, path.join(root, "ref", c.name))
          : [`exit ${killed.code}: ${killed.stderr.slice(-500)}`];
      if (resumeKill !== undefined) {
        const again = await runPare(pruneArgs(out, ["--resume"]), {
          inject: { root: work, killAt: { n: resumeKill, how: "before" } },
          timeoutMs: 600_000,
        });
        // over a complete output (killed after publishing) --resume refuses with a clear error: allowed (promise 2)
        const refused =
          again.code === 1 && /^error\[E_OUTPUT_EXISTS\]/m.test(again.stderr) && fs.existsSync(out);
        if (again.signal !== "SIGKILL" && again.code !== 0 && !refused)
          problems.push(`killed resume: exit ${again.code}: ${again.stderr.slice(-300)}`);
        problems.push(...checkAfterKill(work, c.name, refOut));
        tally("prune", "resume (killed again)").tried++;
        if (again.signal === "SIGKILL") tally("prune", "resume (killed again)").killed++;
      }
      if (cmd === "prune" && fs.existsSync(out)) {
        // killed after publishing: complete; at most the stale lock remains, for the next run on that path
        problems.push(...checkCompleted(work, c.name, refOut, [".out.lock"]));
      } else {
        const final =
          cmd === "prune"
            ? await runPare(pruneArgs(out, ["--resume"]), { timeoutMs: 600_000 })
            : await runPare([...c.args(out), ...(fs.existsSync(out) ? c.force : [])], { timeoutMs: 600_000 });
        if (final.code !== 0) problems.push(`final run: exit ${final.code}: ${final.stderr.slice(-500)}`);
        problems.push(...checkCompleted(work, c.name, path.join(root, "ref", c.name)));
      }
      if (JSON.stringify(snapshotDir(MODEL)) !== inputBefore) problems.push("the input model changed");
      if (JSON.stringify(snapshotDir(refOut)) !== refBefore) problems.push("the export input changed");
      if (problems.length) {
        T.broken++;
        failures.push(
          `#${i} ${cmd} ${phase} ${call ? `call ${call.n} ${how}` : "timed"}: ${problems.join("; ")}`,
        );
      } else T.kept++;
      fs.rmSync(work, { recursive: true, force: true });
      if ((i + 1) % 10 === 0) report(i + 1, instants);
      if ((i + 1) % 10 === 0)
        console.error(
          `  ${i + 1}/${instants} instants, ${failures.length} broken, ${((performance.now() - t0) / 1000).toFixed(0)} s`,
        );
    }
    const files = report(instants, instants);
    const { total, broken } = totals();
    console.log(
      `\n${broken} broken over ${total} instants (${Math.round((performance.now() - t0) / 1000)} s) → ${files.md}`,
    );
    if (broken > 0) process.exitCode = 1;
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

await main();
