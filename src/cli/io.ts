/** The CLI's console: human or JSON output, progress on stderr, coded errors. */
import { isPareError } from "../errors.ts";

export interface CliFlags {
  json?: boolean;
  quiet?: boolean;
}

export class Console {
  private lastDraw = 0;
  private drawn = false;
  constructor(readonly flags: CliFlags) {}

  /** Progress line on stderr (throttled; silent with --quiet or --json). */
  progress(label: string, done: number, total: number): void {
    if (this.flags.quiet || this.flags.json) return;
    const now = Date.now();
    const every = process.stderr.isTTY ? 200 : 2000;
    if (done < total && now - this.lastDraw < every) return;
    this.lastDraw = now;
    const pct = total > 0 ? ((100 * done) / total).toFixed(0).padStart(3) : "  ?";
    const line = `${label} ${pct}% (${done}/${total})`;
    if (process.stderr.isTTY) {
      process.stderr.write(`\r${line}\x1b[K`);
      this.drawn = true;
      if (done >= total) {
        process.stderr.write("\n");
        this.drawn = false;
      }
    } else {
      process.stderr.write(`${line}\n`);
    }
  }

  /** A status message on stderr (not with --quiet / --json). */
  info(msg: string): void {
    if (this.flags.quiet || this.flags.json) return;
    if (this.drawn) process.stderr.write("\n");
    this.drawn = false;
    process.stderr.write(`${msg}\n`);
  }

  /** The command's result: a JSON object with --json, else the human text. */
  result(obj: Record<string, unknown>, human: () => string): void {
    if (this.flags.json) process.stdout.write(`${JSON.stringify(obj)}\n`);
    else process.stdout.write(`${human()}\n`);
  }
}

/** Print an error without a stack trace and return the exit code. */
export function reportError(e: unknown, flags: CliFlags): number {
  if (isPareError(e)) {
    if (flags.json) process.stdout.write(`${JSON.stringify({ error: e.toJSON() })}\n`);
    process.stderr.write(`error[${e.code}]: ${e.message}\n  hint: ${e.hint}\n`);
    return e.code === "E_USAGE" ? 2 : 1;
  }
  const err = e as Error;
  if (flags.json) {
    process.stdout.write(
      `${JSON.stringify({ error: { code: "E_INTERNAL", message: String(err?.message ?? e) } })}\n`,
    );
  }
  process.stderr.write(
    `error[E_INTERNAL]: ${err?.message ?? String(e)}\n  hint: this is a bug in pare; rerun with PARE_DEBUG=1 for details and report it\n`,
  );
  if (process.env.PARE_DEBUG) process.stderr.write(`${err?.stack ?? ""}\n`);
  return 70;
}
