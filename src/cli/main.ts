/** pare's command line: the only code that touches argv, the console and the exit code. */
import { Command, CommanderError } from "commander";
import { PareError } from "../errors.ts";
import { evalCommand } from "./eval.ts";
import { inspectCommand } from "./inspect.ts";
import { type CliFlags, Console, reportError } from "./io.ts";

const program = new Command();
let flags: CliFlags = {};

program
  .name("pare")
  .description("Retraining-free structured pruning for transformer models (LIAR, FLAP, Wanda-sp)")
  .version("0.1.0")
  .option("--json", "print exactly one JSON object on stdout")
  .option("-q, --quiet", "no progress output")
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) });

program
  .command("inspect")
  .description("show a model folder's family, layers, heads / KV groups, FFN width and parameters per module")
  .argument("<model>", "Hugging Face model folder")
  .action(async (model: string) => {
    flags = program.opts();
    await inspectCommand(model, new Console(flags));
  });

program
  .command("eval")
  .description("measure a model: perplexity (decoders) or classification accuracy (encoders)")
  .argument("<model>", "Hugging Face model folder")
  .requiredOption("--task <task>", "ppl | classify")
  .requiredOption("--data <file>", "ppl: a text file; classify: TSV (GLUE-style, header or not) or 'label sentence' lines")
  .option("--seq-len <n>", "ppl: window length in tokens", "256")
  .option("--max-windows <n>", "ppl: evaluate only the first n windows")
  .option("--batch-size <n>", "sequences per forward pass (does not change results)")
  .option("--threads <n>", "ONNX Runtime intra-op threads (default: all cores)")
  .option("--text-column <col>", "classify: sentence column (name or 0-based index)")
  .option("--label-column <col>", "classify: label column (name or 0-based index)")
  .action(async (model: string, opts) => {
    flags = program.opts();
    await evalCommand(model, opts, new Console(flags));
  });

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    if (e.exitCode === 0) process.exit(0);
    const err = new PareError("E_USAGE", e.message.replace(/^error: /, ""), "run `pare --help` or `pare <command> --help`");
    process.exit(reportError(err, { json: process.argv.includes("--json") }));
  }
  process.exit(reportError(e, { json: flags.json ?? process.argv.includes("--json") }));
}
