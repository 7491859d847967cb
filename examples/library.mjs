// pare as a library, in plain Node ESM (no TypeScript, no tsx):
//   node examples/library.mjs [model] [out] [calibration text]
// Defaults: the bundled demo model, a temporary output folder, the bundled calibration excerpt.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { inspect, isPareError, planPrune, prune } from "pare";

const here = path.dirname(fileURLToPath(import.meta.url));
const model = process.argv[2] ?? path.join(here, "llama-gqa-6l-f16");
const out = process.argv[3] ?? path.join(fs.mkdtempSync(path.join(os.tmpdir(), "pare-example-")), "pruned");
const calib = process.argv[4] ?? path.join(here, "data", "calib-wikitext2-valid.txt");

try {
  const before = inspect(model);
  console.log(`${before.family}: ${before.layers} layers, ${before.params.prunable} attention+MLP parameters`);

  const settings = { model, out, ratio: 0.3, calib: [calib], samples: 16, seqLen: 128 };
  const plan = await planPrune(settings);
  console.log(`plan: ${plan.layerPasses} layer passes, ~${(plan.memoryBytes.peak / 2 ** 20).toFixed(0)} MiB peak`);

  const controller = new AbortController(); // controller.abort() would stop the prune with E_ABORTED
  const report = await prune({
    ...settings,
    signal: controller.signal,
    onProgress: (e) => {
      if (e.type === "phase") console.log(`  ${e.phase}`);
    },
  });
  console.log(`pruned ${(100 * report.achievedRatio).toFixed(2)}% of attention+MLP parameters → ${report.output}`);
  console.log(`after: ${inspect(out).params.prunable} attention+MLP parameters`);
} catch (e) {
  // every error a user can cause is a PareError with a code, a message and a hint
  if (isPareError(e)) console.error(`error[${e.code}]: ${e.message}\nhint: ${e.hint}`);
  else throw e;
  process.exitCode = 1;
}
