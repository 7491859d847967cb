import { writeReport } from "../api/report.ts";
import { PareError } from "../errors.ts";
import type { Console } from "./io.ts";

export interface ReportFlags {
  data?: string;
  dense?: string;
  seqLen?: string;
  maxWindows?: string;
  bench?: boolean;
  out?: string;
}

function int(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1)
    throw new PareError("E_USAGE", `${name} must be a positive integer (got "${v}")`, `e.g. ${name} 256`);
  return n;
}

/** The CLI's report: flags → writeReport, notes to stderr. */
export async function buildReport(prunedDir: string, f: ReportFlags, con: Console) {
  return writeReport(prunedDir, {
    data: f.data,
    dense: f.dense,
    seqLen: int(f.seqLen, "--seq-len"),
    maxWindows: int(f.maxWindows, "--max-windows"),
    bench: f.bench,
    out: f.out,
    onNote: (m) => con.info(`» ${m}`),
  });
}

export async function reportCommand(prunedDir: string, f: ReportFlags, con: Console): Promise<void> {
  const { file, data } = await buildReport(prunedDir, f, con);
  con.result({ report: file, metrics: data.metrics, speed: data.speed }, () => `wrote ${file}`);
}
