/**
 * Ctrl-C / SIGTERM: remove the temporary output folders being written (so that an interrupted run leaves
 * neither a partial output nor a stray `.<name>.tmp-*` folder; the input is never written), print the coded
 * error and exit 130 (SIGINT) or 143 (SIGTERM), the shell's 128 + signal number.
 *
 * Signal handlers run on the event loop: a long synchronous stretch of work delays them until it yields. A
 * second signal while the first is handled is ignored: the handler is synchronous and ends with exit, so the
 * cleanup is never left half done. The output locks this process holds are released (docs/reliability.md).
 *
 * `installSignalHandlers` also makes the CLI say when a run removed what an earlier, killed run had left next
 * to its output (temporary folders, spill folders, old checkpoints: export/atomic.ts onLeftovers).
 */
import { cleanupTemporaries, onLeftovers } from "../export/atomic.ts";
import { releaseAllLocks } from "../io/lock.ts";

const EXIT_CODES = { SIGINT: 130, SIGTERM: 143 } as const;
type HandledSignal = keyof typeof EXIT_CODES;

/** Extra cleanups (e.g. a checkpoint folder, open files), run before the temporary outputs are removed. */
const cleanups = new Set<() => void>();

/** Registers `fn` to run if the process is interrupted; returns a function that unregisters it. */
export function onInterrupt(fn: () => void): () => void {
  cleanups.add(fn);
  return () => {
    cleanups.delete(fn);
  };
}

let installed: Partial<Record<HandledSignal, (sig: NodeJS.Signals) => void>> = {};
let handling = false;

/** What the handler does, without exiting (exported for tests): cleanups, then the message. Returns the exit code. */
export function interrupt(sig: HandledSignal, onSignal?: () => void): number {
  const run = (fn: () => void) => {
    try {
      fn();
    } catch {
      // cleanup is best effort: one failing must not keep the others from running or the process alive
    }
  };
  if (onSignal) run(onSignal);
  for (const fn of cleanups) run(fn);
  cleanups.clear();
  run(cleanupTemporaries);
  run(releaseAllLocks);
  const message = `interrupted by ${sig}`;
  const hint =
    "the temporary output was removed and the input is untouched; run the command again " +
    "(pare prune: add --resume to continue from the last finished layer)";
  if (process.argv.includes("--json")) {
    run(() =>
      process.stdout.write(
        `${JSON.stringify({ error: { code: "E_INTERRUPTED", message, hint, signal: sig } })}\n`,
      ),
    );
  }
  // on a terminal a progress line may be half drawn (\r…): start a fresh line
  const lead = process.stderr.isTTY ? "\n" : "";
  run(() => process.stderr.write(`${lead}error[E_INTERRUPTED]: ${message}\n  hint: ${hint}\n`));
  return EXIT_CODES[sig];
}

/**
 * Installs the SIGINT / SIGTERM handlers (once; a second call replaces `onSignal`). `onSignal` runs first,
 * e.g. to stop progress output. A second signal while the first is handled is ignored (the handler is quick
 * and synchronous).
 */
export function installSignalHandlers(onSignal?: () => void): void {
  removeSignalHandlers();
  onLeftovers((removed) => {
    const lead = process.stderr.isTTY ? "\n" : "";
    process.stderr.write(
      `${lead}note: removed what an interrupted run had left: ${removed.map((p) => JSON.stringify(p)).join(", ")}\n`,
    );
  });
  for (const sig of Object.keys(EXIT_CODES) as HandledSignal[]) {
    const handler = () => {
      if (handling) return;
      handling = true;
      process.exit(interrupt(sig, onSignal));
    };
    installed[sig] = handler;
    process.on(sig, handler);
  }
}

/** Removes the handlers installed by installSignalHandlers (tests). */
export function removeSignalHandlers(): void {
  for (const [sig, handler] of Object.entries(installed)) process.off(sig, handler);
  installed = {};
  handling = false;
}
