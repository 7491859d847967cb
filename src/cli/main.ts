/** pare's command line: the only code that touches argv, the console and the exit code. */
import { Command, CommanderError } from "commander";
import { PareError } from "../errors.ts";
import { recipeFlags } from "../pipeline/recipe.ts";
import { PARE_VERSION } from "../version.ts";
import { type CliFlags, Console, reportError } from "./io.ts";
import { PRUNE_HELP } from "./pruneHelp.ts";
import { installSignalHandlers } from "./signals.ts";

const program = new Command();
let flags: CliFlags = {};

program
  .name("pare")
  .description("Retraining-free structured pruning for transformer models (LIAR, FLAP, Wanda-sp)")
  .version(PARE_VERSION)
  .option("--json", "print exactly one JSON object on stdout")
  .option("-q, --quiet", "no progress output")
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s), outputError: () => {} });

program
  .command("inspect")
  .description("show a model folder's family, layers, heads / KV groups, FFN width and parameters per module")
  .argument("<model>", "model folder or Hugging Face cache id org/name[@revision]")
  .action(async (model: string) => {
    flags = program.opts();
    const { inspectCommand } = await import("./inspect.ts");
    await inspectCommand(model, new Console(flags));
  });

program
  .command("eval")
  .description("measure a model: perplexity (decoders) or classification accuracy (encoders)")
  .argument("<model>", "model folder or Hugging Face cache id org/name[@revision]")
  .requiredOption("--task <task>", "ppl | classify | mc (zero-shot multiple choice)")
  .requiredOption(
    "--data <file>",
    "ppl: a text file or a .jsonl of documents (text field); classify: TSV (GLUE-style, header or not) or 'label sentence' lines",
  )
  .option("--seq-len <n>", "ppl: window length in tokens", "256")
  .option("--max-windows <n>", "ppl: evaluate only the first n windows")
  .option(
    "--protocol <name>",
    "ppl: windows (non-overlapping windows) | rolling (lm-evaluation-harness per-document rolling log-likelihood)",
  )
  .option(
    "--doc-separator <str>",
    "ppl: documents of a text file are separated by this (escapes \\n \\t \\r \\\\)",
  )
  .option("--max-docs <n>", "ppl over documents: evaluate only the first n documents")
  .option("--batch-size <n>", "sequences per forward pass (does not change results)")
  .option("--threads <n>", "ONNX Runtime intra-op threads (default: all cores)")
  .option("--text-column <col>", "classify: sentence column (name or 0-based index)")
  .option("--label-column <col>", "classify: label column (name or 0-based index)")
  .option(
    "--format <format>",
    "mc: generic | piqa | arc | openbookqa | winogrande | hellaswag | commonsense",
    "generic",
  )
  .option("--max-items <n>", "mc: evaluate only the first n items")
  .action(async (model: string, opts) => {
    flags = program.opts();
    const { evalCommand } = await import("./eval.ts");
    await evalCommand(model, opts, new Console(flags));
  });

const pruneCmd = program
  .command("prune")
  .description(
    "remove attention heads (KV groups) and FFN channels, reconstruct without retraining, write a smaller model",
  )
  .argument("<model>", "model folder or Hugging Face cache id org/name[@revision] (never modified)")
  .option("--recipe <file>", "YAML/JSON recipe with the same settings (flags override it)")
  .option("--dry-run", "print the plan (passes, FLOPs, memory, estimated time) and stop")
  .option("--export <format>", "also write onnx/model.onnx into the output folder (format: onnx)")
  .option("--report", "also write report.html into the output folder")
  .option("--report-data <file>", "with --report: measure dense vs pruned on this file")
  .addHelpText("after", PRUNE_HELP)
  .action(async (model: string, opts) => {
    flags = program.opts();
    const { pruneCommand } = await import("./prune.ts");
    await pruneCommand(model, opts, new Console(flags));
  });
// the recipe's settings as flags, from its schema (validated by resolveRecipe)
for (const [, flag, help] of recipeFlags()) pruneCmd.option(flag, help);

program
  .command("quantize")
  .description(
    "quantize a model folder to 4 (or 8) bits with GPTQ or round-to-nearest: a Hugging Face GPTQ folder",
  )
  .argument("<model>", "model folder or Hugging Face cache id org/name[@revision] (never modified)")
  .requiredOption("--out <dir>", "output folder (written atomically)")
  .option("--bits <n>", "4 or 8", "4")
  .option("--group-size <n>", "input channels per scale and zero point: 32, 64 or 128", "128")
  .option("--quant-method <m>", "gptq (calibrated, Frantar et al. 2023) | rtn (round to nearest)", "gptq")
  .option(
    "--gptq-order <o>",
    "act (columns by decreasing Hessian diagonal, static groups; desc_act stays false) | natural",
    "act",
  )
  .option("--asym", "asymmetric grid (a zero point per group); default symmetric")
  .option("--quantize-head", "also quantize the LM head (untied heads); default: it stays in float")
  .option("--calib <files...>", "calibration text (.txt or .jsonl), as pare prune takes it (GPTQ needs it)")
  .option("--samples <n>", "calibration windows (default as pare prune)")
  .option("--seq-len <n>", "tokens per calibration window (default as pare prune)")
  .option("--seed <n>", "seed of the calibration windows")
  .option("--batch-size <n>", "calibration windows per forward pass")
  .option("--force", "replace an existing output folder")
  .action(async (model: string, opts) => {
    flags = program.opts();
    const { quantizeCommand } = await import("./quantize.ts");
    await quantizeCommand(model, opts, new Console(flags));
  });

program
  .command("export")
  .description(
    "export a model folder: ONNX laid out for transformers.js (onnx/model.onnx + config + tokenizer), or one GGUF file for llama.cpp",
  )
  .argument("<model>", "model folder or Hugging Face cache id (e.g. the output of pare prune)")
  .option("--format <format>", "onnx (transformers.js folder) | gguf (one llama.cpp file)", "onnx")
  .option("--outtype <type>", "gguf: f32 | f16 | bf16 | q8_0 | q4_0 (default f16; norms and biases stay f32)")
  .option("--out <path>", "output folder (onnx) or file (gguf), written atomically")
  .option("--force", "replace an existing output folder")
  .action(async (model: string, opts) => {
    flags = program.opts();
    const { exportCommand } = await import("./export.ts");
    await exportCommand(model, opts, new Console(flags));
  });

program
  .command("bench")
  .description(
    "latency and throughput through ONNX Runtime: a dense model and its pruned versions, interleaved",
  )
  .argument("<models...>", "model folders (the first is the baseline)")
  .option("--runs <n>", "timed runs per case (median reported)", "7")
  .option("--threads <n>", "ONNX Runtime intra-op threads (default: all cores)")
  .option("--seq-len <n>", "tokens per sequence (default: 128 encoders, 256 decoders)")
  .option("--batch <n>", "batch size of the batched case (default 8)")
  .action(async (models: string[], opts) => {
    flags = program.opts();
    const { benchCommand } = await import("./bench.ts");
    await benchCommand(models, opts, new Console(flags));
  });

program
  .command("report")
  .description("write report.html (self-contained, inline SVG) for a pruned model folder")
  .argument("<pruned>", "a folder written by pare prune (reads its pare-pruning.json)")
  .option(
    "--data <file>",
    "also measure dense vs pruned on this file (perplexity for decoders, accuracy for classifiers)",
  )
  .option("--dense <dir>", "the dense model (default: the input recorded in pare-pruning.json)")
  .option("--seq-len <n>", "perplexity window length", "256")
  .option("--max-windows <n>", "perplexity: only the first n windows")
  .option("--bench", "also measure latency, dense vs pruned")
  .option("--out <file>", "where to write the HTML (default: <pruned>/report.html)")
  .action(async (pruned: string, opts) => {
    flags = program.opts();
    const { reportCommand } = await import("./report.ts");
    await reportCommand(pruned, opts, new Console(flags));
  });

program
  .command("generate")
  .description("generate text with a decoder (KV cache), streamed; --compare runs a second model alongside")
  .argument("<model>", "model folder or Hugging Face cache id (a causal LM)")
  .option("--prompt <text>", 'the prompt ("" or absent: start from the BOS token)')
  .option("--max-new-tokens <n>", "at most this many new tokens (default 64)")
  .option("--temperature <t>", "0 = greedy (default); > 0 samples")
  .option("--top-k <k>", "sample among the k most likely tokens (0 = off, default)")
  .option("--top-p <p>", "sample from the likeliest tokens covering probability p, in (0, 1] (1 = off)")
  .option("--seed <n>", "seed of the sampling (default 0)")
  .option("--threads <n>", "ONNX Runtime intra-op threads (default: all cores)")
  .option("--compare <model>", "also run this model (e.g. the pruned one) with the same prompt and settings")
  .action(async (model: string, opts) => {
    flags = program.opts();
    const { generateCommand } = await import("./generate.ts");
    await generateCommand(model, opts, new Console(flags));
  });

installSignalHandlers();
try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    if (e.exitCode === 0) process.exit(0);
    const err = new PareError(
      "E_USAGE",
      e.message.replace(/^error: /, ""),
      "run `pare --help` or `pare <command> --help`",
    );
    process.exit(reportError(err, { json: process.argv.includes("--json") }));
  }
  process.exit(reportError(e, { json: flags.json ?? process.argv.includes("--json") }));
}
