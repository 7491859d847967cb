/**
 * BERT agreement benchmark (`npm run bench:bert-kl`): SST-2 accuracy barely moves when bert-sst2-4l is pruned,
 * so this measures how far each pruned classifier's class distribution moves from the dense one on the SST-2 dev
 * sentences: mean KL(dense‖pruned) of the class probabilities and prediction agreement, for every criterion ×
 * reconstruction at ratio 0.5 (--ratio to change). Reads ../shared; skips without it.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { loadModel } from "../src/arch/load.ts";
import { CRITERIA } from "../src/criteria/index.ts";
import { Runner } from "../src/eval/runner.ts";
import { readClassificationFile } from "../src/io/datasets.ts";
import { loadTokenizer } from "../src/io/tokenizer.ts";
import { runPrune } from "../src/pipeline/prune.ts";
import { resolveRecipe } from "../src/pipeline/recipe.ts";
import { RECONSTRUCTORS } from "../src/reconstruct/index.ts";
import { machineInfo, markdownTable, REPO_ROOT, sst2TrainSentences, writeResults } from "./lib.ts";

const SHARED = path.resolve(REPO_ROOT, "../shared");
if (!fs.existsSync(path.join(SHARED, "models/bert-sst2-4l"))) {
  process.stdout.write("bench:bert-kl skipped: ../shared/models not found\n");
  process.exit(0);
}
const ratio = Number(process.argv[process.argv.indexOf("--ratio") + 1] || 0.5) || 0.5;
const dir = path.join(SHARED, "models/bert-sst2-4l");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "pare-bench-bertkl-"));
const calib = path.join(work, "sst2-train.txt");
fs.writeFileSync(calib, sst2TrainSentences(SHARED));
const dev = readClassificationFile(path.join(SHARED, "data/sst2/stsa.binary.dev"));
const tok = loadTokenizer(dir);
const enc = dev.map((d) => ({ ids: tok.encode(d.text) }));

async function logits(modelDir: string): Promise<Float32Array[]> {
  const m = loadModel(modelDir);
  const r = await Runner.create(m);
  const out: Float32Array[] = [];
  for (let i = 0; i < enc.length; i += 32)
    out.push(...(await r.classify(enc.slice(i, i + 32), tok.padId ?? 0)));
  await r.close();
  m.close();
  return out;
}
const softmax = (z: Float32Array) => {
  const m = Math.max(...z);
  const e = Array.from(z, (v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
};
const argmax = (z: ArrayLike<number>) => Array.from(z).reduce((b, v, i, a) => (v > a[b] ? i : b), 0);

const dense = (await logits(dir)).map(softmax);
const rows: { criterion: string; reconstruct: string; kl: number; agree: number; accuracy: number }[] = [];
for (const criterion of Object.keys(CRITERIA)) {
  for (const reconstruct of Object.keys(RECONSTRUCTORS)) {
    const out = path.join(work, `${criterion}-${reconstruct}`);
    await runPrune(
      resolveRecipe({
        model: dir,
        out,
        ratio,
        criterion,
        reconstruct,
        calib: [calib],
        samples: 128,
        seqLen: 128,
      }),
    );
    const p = (await logits(out)).map(softmax);
    fs.rmSync(out, { recursive: true, force: true });
    let kl = 0;
    let agree = 0;
    let correct = 0;
    p.forEach((q, i) => {
      kl += dense[i].reduce((s, pd, c) => s + (pd > 0 ? pd * Math.log(pd / Math.max(q[c], 1e-30)) : 0), 0);
      if (argmax(q) === argmax(dense[i])) agree++;
      if (argmax(q) === dev[i].label) correct++;
    });
    rows.push({
      criterion,
      reconstruct,
      kl: kl / p.length,
      agree: agree / p.length,
      accuracy: correct / p.length,
    });
    process.stderr.write(
      `${criterion} ${reconstruct}: KL ${(kl / p.length).toFixed(4)}, agreement ${((100 * agree) / p.length).toFixed(1)}%\n`,
    );
  }
}
fs.rmSync(work, { recursive: true, force: true });
let md = `# bench:bert-kl\n\nCommand: \`npm run bench:bert-kl${ratio !== 0.5 ? ` -- --ratio ${ratio}` : ""}\`  \nMachine: ${machineInfo().cpu}; ${new Date().toISOString()}.  \n`;
md += `bert-sst2-4l pruned by ${ratio} (global allocation, sequential calibration on 128 SST-2 train sentences); ${dev.length} SST-2 dev sentences: mean KL(dense‖pruned) of the class probabilities, agreement of the predicted class with the dense model, accuracy.\n\n`;
md += markdownTable(
  ["criterion", "reconstruct", "KL", "agreement", "accuracy"],
  rows.map((r) => [
    r.criterion,
    r.reconstruct,
    r.kl.toFixed(4),
    `${(100 * r.agree).toFixed(1)}%`,
    `${(100 * r.accuracy).toFixed(2)}%`,
  ]),
  [false, false, true, true, true],
);
writeResults("bert-kl", { machine: machineInfo(), ratio, rows }, `${md}\n`);
process.stdout.write(`${md}\n`);
