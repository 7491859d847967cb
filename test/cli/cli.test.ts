/**
 * The CLI end to end: `node bin/pare.js inspect|eval …` on tiny model folders in temp dirs. Output contracts
 * (--json prints exactly one JSON object; human output names the protocol), coded errors (error[E_…] on stderr
 * with a hint and no stack trace; {error:{code,message,hint}} on stdout with --json) and that the input folder
 * is never modified.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, type ExpectStatic, expect, expect as globalExpect, it } from "vitest";
import { loadModel } from "../../src/arch/load.ts";
import { classify } from "../../src/eval/classify.ts";
import { perplexity } from "../../src/eval/perplexity.ts";
import { Runner } from "../../src/eval/runner.ts";
import { readClassificationFile } from "../../src/io/datasets.ts";
import { loadTokenizer } from "../../src/io/tokenizer.ts";
import { type CliResult, parseSingleJson, runCli, snapshotDir } from "../helpers/cli.ts";
import {
  makeByteBpeTokenizerJson,
  makeTinyBert,
  makeTinyLlama,
  makeWordPieceTokenizerJson,
  type TinyModel,
  writeTinyModel,
} from "../helpers/tinyModels.ts";

const TEXT = `Once upon a time there was a cat that sat on the mat. The cat was the best of cats, and the mat
was the worst of mats. It was the age of wisdom, it was the age of foolishness; the cat did not care.
In the morning the cat went to the garden and looked at the birds in the trees, and the birds looked back
at the cat. Nobody in the house knew what the cat was thinking, but everybody agreed that it was thinking
of something important. At noon the rain started and the cat ran back to the mat, where it sat again.
`;

const SST = [
  "sentence\tlabel",
  "a charming and often affecting journey .\t1",
  "unflinchingly bleak and desperate\t0",
  "the movie was good\t1",
  "the plot is boring and the actors are awful\t0",
  "not very funny\t0",
  "a great story\t1",
  "it 's a film\t1",
].join("\n");

const WORDS = [
  "the",
  "a",
  "movie",
  "film",
  "was",
  "is",
  "good",
  "bad",
  "great",
  "boring",
  "charming",
  "story",
];

let root: string;
const dirs: Record<string, string> = {};
const tinies: Record<string, TinyModel> = {};

/** A fresh folder under the test root. */
function mk(name: string): string {
  const d = path.join(root, name);
  fs.mkdirSync(d, { recursive: true });
  return d;
}

/** A copy of a prepared model folder (to break it in one way). */
function copyOf(src: string, name: string): string {
  const d = mk(name);
  for (const f of fs.readdirSync(src)) fs.copyFileSync(path.join(src, f), path.join(d, f));
  return d;
}

function editConfig(dir: string, edit: (c: Record<string, unknown>) => void): void {
  const p = path.join(dir, "config.json");
  const c = JSON.parse(fs.readFileSync(p, "utf8"));
  edit(c);
  fs.writeFileSync(p, JSON.stringify(c, null, 2));
}

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-cli-"));
  dirs.llama = mk("llama");
  dirs.pruned = mk("pruned");
  dirs.bert = mk("bert");
  tinies.llama = makeTinyLlama({ seed: 71, vocab: 300 });
  writeTinyModel(dirs.llama, tinies.llama, makeByteBpeTokenizerJson(300));
  tinies.pruned = makeTinyLlama({
    seed: 72,
    vocab: 300,
    layers: 3,
    perLayer: { heads: [4, 2, 6], kvHeads: [2, 1, 3], intermediate: [48, 20, 33] },
    consumerBias: true,
  });
  tinies.pruned.config.pare_layer_widths = [
    { num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 48 },
    { num_attention_heads: 2, num_key_value_heads: 1, intermediate_size: 20 },
    { num_attention_heads: 6, num_key_value_heads: 3, intermediate_size: 33 },
  ];
  writeTinyModel(dirs.pruned, tinies.pruned, makeByteBpeTokenizerJson(300));
  tinies.bert = makeTinyBert({ seed: 73, numLabels: 2 });
  writeTinyModel(dirs.bert, tinies.bert, makeWordPieceTokenizerJson(WORDS));
  const data = mk("data");
  dirs.text = path.join(data, "text.txt");
  dirs.sst = path.join(data, "sst.tsv");
  dirs.empty = path.join(data, "empty.txt");
  dirs.blank = path.join(data, "blank.tsv");
  fs.writeFileSync(dirs.text, TEXT);
  fs.writeFileSync(dirs.sst, `${SST}\n`);
  fs.writeFileSync(dirs.empty, "");
  fs.writeFileSync(dirs.blank, "  \n\n \t \n");
});

afterAll(() => {
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

/** Runs the CLI and checks that the folders in `untouched` are byte-identical afterwards. */
async function cli(
  args: string[],
  untouched: string[],
  expect: ExpectStatic = globalExpect,
): Promise<CliResult> {
  const before = untouched.map(snapshotDir);
  const r = await runCli(args);
  untouched.forEach((d, i) => {
    expect(snapshotDir(d), `${d} changed by pare ${args.join(" ")}`).toEqual(before[i]);
  });
  return r;
}

const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
const sumSizes = (m: TinyModel, re: RegExp = /./) =>
  m.tensors.filter((t) => re.test(t.name)).reduce((s, t) => s + size(t.shape), 0);

const NO_STACK = /^ {4}at /m;

// ---------------------------------------------------------------------------------------------------------
// inspect

describe("pare inspect", () => {
  it("--json: one JSON object with family, layers, heads and parameter counts (tiny llama)", async () => {
    const r = await cli(["inspect", dirs.llama, "--json"], [dirs.llama]);
    expect(r.code).toBe(0);
    const j = parseSingleJson(r.stdout);
    expect(j.family).toBe("llama");
    expect(j.architecture).toBe("LlamaForCausalLM");
    expect(j.kind).toBe("decoder");
    expect(j.layers).toBe(2);
    expect(j.hidden).toBe(32);
    expect(j.headDim).toBe(8);
    expect(j.vocab).toBe(300);
    expect(j.uniformWidths).toBe(true);
    expect(j.tiedEmbeddings).toBe(false);
    expect(j.tokenizer).toBe(true);
    expect(j.dtypes).toEqual(["F32"]);
    const per = j.perLayer as { heads: number; kvHeads: number; ffn: number }[];
    expect(per.map((l) => [l.heads, l.kvHeads, l.ffn])).toEqual([
      [4, 2, 48],
      [4, 2, 48],
    ]);
    const p = j.params as Record<string, number>;
    const m = tinies.llama;
    expect(p.total).toBe(sumSizes(m));
    expect(p.attention).toBe(sumSizes(m, /self_attn/));
    expect(p.mlp).toBe(sumSizes(m, /\.mlp\./));
    expect(p.prunable).toBe(p.attention + p.mlp);
    expect(p.embedding).toBe(sumSizes(m, /embed_tokens/));
    expect(p.norms).toBe(sumSizes(m, /norm/));
    expect(p.head).toBe(sumSizes(m, /^lm_head/));
    expect(p.attention + p.mlp + p.embedding + p.norms + p.head).toBe(p.total);
  });

  it("--json: per-layer widths of a pruned llama (pare_layer_widths) and its consumer biases counted", async () => {
    const r = await cli(["inspect", "--json", dirs.pruned], [dirs.pruned]);
    expect(r.code).toBe(0);
    const j = parseSingleJson(r.stdout);
    expect(j.layers).toBe(3);
    expect(j.uniformWidths).toBe(false);
    const per = j.perLayer as {
      heads: number;
      kvHeads: number;
      ffn: number;
      attentionParams: number;
      mlpParams: number;
    }[];
    expect(per.map((l) => [l.heads, l.kvHeads, l.ffn])).toEqual([
      [4, 2, 48],
      [2, 1, 20],
      [6, 3, 33],
    ]);
    const m = tinies.pruned;
    per.forEach((l, i) => {
      expect(l.attentionParams).toBe(sumSizes(m, new RegExp(`^model\\.layers\\.${i}\\.self_attn`)));
      expect(l.mlpParams).toBe(sumSizes(m, new RegExp(`^model\\.layers\\.${i}\\.mlp`)));
    });
    expect((j.params as Record<string, number>).total).toBe(sumSizes(m));
  });

  it("--json: BERT classifier (family, labels, params incl. pooler + classifier as head)", async () => {
    const r = await cli(["inspect", dirs.bert, "--json"], [dirs.bert]);
    expect(r.code).toBe(0);
    const j = parseSingleJson(r.stdout);
    expect(j.family).toBe("bert");
    expect(j.kind).toBe("encoder");
    expect(j.head).toBe("classifier");
    expect(j.numLabels).toBe(2);
    expect(j.layers).toBe(2);
    const per = j.perLayer as { heads: number; ffn: number }[];
    expect(per.map((l) => [l.heads, l.ffn])).toEqual([
      [4, 64],
      [4, 64],
    ]);
    const p = j.params as Record<string, number>;
    const m = tinies.bert;
    expect(p.total).toBe(sumSizes(m));
    expect(p.attention).toBe(sumSizes(m, /attention\.(self|output\.dense)/));
    expect(p.mlp).toBe(sumSizes(m, /(intermediate|output)\.dense/) - sumSizes(m, /attention\.output\.dense/));
    expect(p.head).toBe(sumSizes(m, /pooler|classifier/));
  });

  it("human output: family, layers, heads, FFN width and the total", async () => {
    const r = await cli(["inspect", dirs.llama], [dirs.llama]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/family\s+llama/);
    expect(r.stdout).toMatch(/layers\s+2/);
    expect(r.stdout).toMatch(/4 heads, 2 KV heads/);
    expect(r.stdout).toMatch(/FFN width\s+48/);
    expect(r.stdout).toContain(sumSizes(tinies.llama).toLocaleString("en-US"));
    expect(() => JSON.parse(r.stdout)).toThrow();
  });
});

// ---------------------------------------------------------------------------------------------------------
// eval

describe("pare eval", () => {
  it("--task ppl --json: one JSON object with ppl, nll, tokens, windows, seqLen equal to the in-process value", async () => {
    const r = await cli(
      ["eval", dirs.llama, "--task", "ppl", "--data", dirs.text, "--seq-len", "32", "--json"],
      [dirs.llama, path.dirname(dirs.text)],
    );
    expect(r.code).toBe(0);
    const j = parseSingleJson(r.stdout);
    for (const k of ["ppl", "nll", "tokens", "windows", "seqLen"]) expect(typeof j[k], k).toBe("number");
    expect(j.task).toBe("ppl");
    expect(j.seqLen).toBe(32);
    expect(j.tokens).toBe((j.windows as number) * 31);
    expect(j.ppl as number).toBeCloseTo(Math.exp(j.nll as number), 8);
    expect(typeof j.protocol).toBe("string");
    // the same number as the library computes in this process
    const m = loadModel(dirs.llama);
    try {
      const ids = loadTokenizer(dirs.llama).encode(TEXT);
      const runner = await Runner.create(m);
      const want = await perplexity(runner, ids, { seqLen: 32 });
      await runner.close();
      expect(j.windows).toBe(want.windows);
      expect(Math.abs((j.ppl as number) - want.ppl) / want.ppl).toBeLessThan(1e-6);
    } finally {
      m.close();
    }
  });

  it("--task ppl, human output: the perplexity and the protocol", async () => {
    const r = await cli(
      [
        "eval",
        dirs.pruned,
        "--task",
        "ppl",
        "--data",
        dirs.text,
        "--seq-len",
        "40",
        "--max-windows",
        "2",
        "--batch-size",
        "1",
      ],
      [dirs.pruned],
    );
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^perplexity \d+\.\d{3}/);
    expect(r.stdout).toMatch(/protocol: 2 non-overlapping windows of 40 tokens/);
    expect(r.stdout).toContain("first token of each window is context only");
    expect(r.stderr).not.toMatch(NO_STACK);
  });

  it("--task classify --json: one JSON object with accuracy, mcc, n", async () => {
    const r = await cli(["eval", dirs.bert, "--task", "classify", "--data", dirs.sst, "--json"], [dirs.bert]);
    expect(r.code).toBe(0);
    const j = parseSingleJson(r.stdout);
    expect(j.task).toBe("classify");
    expect(j.n).toBe(7);
    for (const k of ["accuracy", "mcc", "n"]) expect(typeof j[k], k).toBe("number");
    expect(j.correct).toBe(Math.round((j.accuracy as number) * 7));
    expect(typeof j.protocol).toBe("string");
    expect(j).not.toHaveProperty("predictions");
    // the same numbers as the library computes in this process
    const m = loadModel(dirs.bert);
    try {
      const data = readClassificationFile(dirs.sst, {
        labelMap: m.config.label2id as Record<string, number>,
      });
      const runner = await Runner.create(m);
      const want = await classify(runner, loadTokenizer(dirs.bert), data);
      await runner.close();
      expect(j.accuracy).toBe(want.accuracy);
      expect(j.mcc).toBe(want.mcc);
      expect(j.n).toBe(want.n);
    } finally {
      m.close();
    }
  });

  it("--task classify, human output: accuracy, Matthews and the protocol; batch size does not change it", async () => {
    const a = await cli(
      ["eval", dirs.bert, "--task", "classify", "--data", dirs.sst, "--batch-size", "1"],
      [dirs.bert],
    );
    const b = await cli(
      ["eval", dirs.bert, "--task", "classify", "--data", dirs.sst, "--batch-size", "32", "-q"],
      [dirs.bert],
    );
    expect(a.code).toBe(0);
    expect(a.stdout).toMatch(/^accuracy \d+\.\d{2}% +\(\d\/7\) +Matthews corr\. -?\d\.\d{4}/);
    expect(a.stdout).toMatch(/protocol: 7 examples, argmax of the classifier logits/);
    expect(b.stdout).toBe(a.stdout);
  });
});

// ---------------------------------------------------------------------------------------------------------
// coded errors

interface ErrorCase {
  name: string;
  code: string;
  /** the CLI arguments (without --json) and the folders that must stay untouched */
  setup: () => { args: string[]; untouched: string[] };
  /** extra checks on stderr */
  stderr?: RegExp[];
}

const ERROR_CASES: ErrorCase[] = [
  {
    name: "missing folder",
    code: "E_FOLDER_MISSING",
    setup: () => ({ args: ["inspect", path.join(root, "does-not-exist")], untouched: [] }),
  },
  {
    name: "a file instead of a folder",
    code: "E_FOLDER_MISSING",
    setup: () => ({ args: ["inspect", dirs.text], untouched: [path.dirname(dirs.text)] }),
  },
  {
    name: "folder without config.json",
    code: "E_FOLDER_INCOMPLETE",
    setup: () => {
      const d = copyOf(dirs.llama, "no-config");
      fs.rmSync(path.join(d, "config.json"));
      return { args: ["inspect", d], untouched: [d] };
    },
    stderr: [/config\.json/],
  },
  {
    name: "folder without weights",
    code: "E_FOLDER_INCOMPLETE",
    setup: () => {
      const d = copyOf(dirs.llama, "no-weights");
      fs.rmSync(path.join(d, "model.safetensors"));
      return { args: ["inspect", d], untouched: [d] };
    },
  },
  {
    name: "pickle-only folder",
    code: "E_PICKLE_UNSUPPORTED",
    setup: () => {
      const d = copyOf(dirs.llama, "pickle");
      fs.rmSync(path.join(d, "model.safetensors"));
      fs.writeFileSync(path.join(d, "pytorch_model.bin"), Buffer.from([0x80, 0x02, 0x7d, 0x71, 0x00, 0x2e]));
      return { args: ["inspect", d], untouched: [d] };
    },
    stderr: [/pytorch_model\.bin/, /safetensors/],
  },
  {
    name: "truncated safetensors (data cut off)",
    code: "E_SAFETENSORS_TRUNCATED",
    setup: () => {
      const d = copyOf(dirs.llama, "truncated-data");
      const f = path.join(d, "model.safetensors");
      fs.truncateSync(f, Math.floor(fs.statSync(f).size / 2));
      return { args: ["inspect", d], untouched: [d] };
    },
  },
  {
    name: "truncated safetensors (header cut off)",
    code: "E_SAFETENSORS_TRUNCATED",
    setup: () => {
      const d = copyOf(dirs.llama, "truncated-header");
      fs.truncateSync(path.join(d, "model.safetensors"), 100);
      return { args: ["eval", d, "--task", "ppl", "--data", dirs.text, "--seq-len", "32"], untouched: [d] };
    },
  },
  {
    name: "safetensors shorter than its 8-byte length prefix",
    code: "E_SAFETENSORS_TRUNCATED",
    setup: () => {
      const d = copyOf(dirs.llama, "truncated-prefix");
      fs.truncateSync(path.join(d, "model.safetensors"), 5);
      return { args: ["inspect", d], untouched: [d] };
    },
  },
  {
    name: "config contradicting the weights (intermediate_size changed)",
    code: "E_CONFIG_MISMATCH",
    setup: () => {
      const d = copyOf(dirs.llama, "mismatch");
      editConfig(d, (c) => {
        c.intermediate_size = 64;
      });
      return { args: ["inspect", d], untouched: [d] };
    },
    stderr: [/48/, /64/],
  },
  {
    name: "heads not dividing hidden (BERT: 5 heads, hidden 32)",
    code: "E_CONFIG_INVALID",
    setup: () => {
      const d = copyOf(dirs.bert, "bad-heads-bert");
      editConfig(d, (c) => {
        c.num_attention_heads = 5;
      });
      return { args: ["inspect", d], untouched: [d] };
    },
    stderr: [/num_attention_heads/],
  },
  {
    name: "heads not dividing hidden (llama without head_dim: 5 heads, hidden 32)",
    code: "E_CONFIG_INVALID",
    setup: () => {
      const d = copyOf(dirs.llama, "bad-heads-llama");
      editConfig(d, (c) => {
        c.num_attention_heads = 5;
        delete c.head_dim;
      });
      return { args: ["eval", d, "--task", "ppl", "--data", dirs.text, "--seq-len", "32"], untouched: [d] };
    },
  },
  {
    name: "unknown architecture",
    code: "E_ARCH_UNSUPPORTED",
    setup: () => {
      const d = copyOf(dirs.llama, "gpt2");
      editConfig(d, (c) => {
        c.architectures = ["GPT2LMHeadModel"];
        c.model_type = "gpt2";
      });
      return { args: ["inspect", d], untouched: [d] };
    },
    // the supported architectures are listed (in the hint)
    stderr: [
      /GPT2LMHeadModel/,
      /LlamaForCausalLM/,
      /Qwen2ForCausalLM/,
      /MistralForCausalLM/,
      /BertForSequenceClassification/,
    ],
  },
  {
    name: "unreadable tokenizer.json",
    code: "E_TOKENIZER_INVALID",
    setup: () => {
      const d = copyOf(dirs.llama, "bad-tokenizer");
      fs.writeFileSync(path.join(d, "tokenizer.json"), '{"version": "1.0", "model": {');
      return { args: ["eval", d, "--task", "ppl", "--data", dirs.text, "--seq-len", "32"], untouched: [d] };
    },
    stderr: [/tokenizer\.json/],
  },
  {
    name: "empty data file (ppl)",
    code: "E_DATA_EMPTY",
    setup: () => ({
      args: ["eval", dirs.llama, "--task", "ppl", "--data", dirs.empty, "--seq-len", "32"],
      untouched: [dirs.llama, path.dirname(dirs.empty)],
    }),
  },
  {
    name: "blank data file (classify)",
    code: "E_DATA_EMPTY",
    setup: () => ({
      args: ["eval", dirs.bert, "--task", "classify", "--data", dirs.blank],
      untouched: [dirs.bert, path.dirname(dirs.blank)],
    }),
  },
  {
    name: "text too short for one window",
    code: "E_DATA_TOO_SHORT",
    setup: () => {
      const f = path.join(mk("short"), "short.txt");
      fs.writeFileSync(f, "the cat sat");
      // -q: without it, the "tokenizing …" status line comes first on stderr
      return {
        args: ["eval", dirs.llama, "-q", "--task", "ppl", "--data", f, "--seq-len", "32"],
        untouched: [dirs.llama],
      };
    },
  },
  {
    name: "unknown task",
    code: "E_USAGE",
    setup: () => ({
      args: ["eval", dirs.llama, "--task", "bleu", "--data", dirs.text],
      untouched: [dirs.llama],
    }),
    stderr: [/ppl/, /classify/],
  },
  {
    name: "ppl on an encoder",
    code: "E_USAGE",
    setup: () => ({
      args: ["eval", dirs.bert, "--task", "ppl", "--data", dirs.text, "--seq-len", "16"],
      untouched: [dirs.bert],
    }),
  },
  {
    name: "bad --seq-len",
    code: "E_USAGE",
    setup: () => ({
      args: ["eval", dirs.llama, "--task", "ppl", "--data", dirs.text, "--seq-len", "1"],
      untouched: [dirs.llama],
    }),
  },
];

/** Commander's own errors are reported twice: its raw "error: …" line first, then pare's coded one. */
const COMMANDER_CASES: ErrorCase[] = [
  {
    name: "missing required option (--task)",
    code: "E_USAGE",
    setup: () => ({ args: ["eval", dirs.llama, "--data", dirs.text], untouched: [dirs.llama] }),
    stderr: [/--task/],
  },
  {
    name: "missing required option (--data)",
    code: "E_USAGE",
    setup: () => ({ args: ["eval", dirs.llama, "--task", "ppl"], untouched: [dirs.llama] }),
  },
  {
    name: "unknown command",
    code: "E_USAGE",
    setup: () => ({ args: ["prune-everything", dirs.llama], untouched: [dirs.llama] }),
  },
];

/** `expect` is the test's own (concurrent tests must use the one from their context). */
async function checkError(c: ErrorCase, expect: ExpectStatic): Promise<void> {
  const { args, untouched } = c.setup();
  const human = await cli(args, untouched, expect);
  expect(human.code, human.stderr).toBeGreaterThan(0);
  expect(human.code).not.toBe(70); // not an internal error
  expect(human.stderr).toMatch(/^error\[E_[A-Z_]+\]/);
  expect(human.stderr.startsWith(`error[${c.code}]: `), human.stderr).toBe(true);
  expect(human.stderr).toContain("hint:");
  expect(human.stderr).not.toMatch(NO_STACK);
  expect(human.stdout).toBe("");
  for (const re of c.stderr ?? []) expect(human.stderr).toMatch(re);
  if (c.code === "E_USAGE") expect(human.code).toBe(2);

  const json = await cli([...args, "--json"], untouched, expect);
  expect(json.code).toBe(human.code);
  const j = parseSingleJson(json.stdout);
  const e = j.error as Record<string, unknown>;
  expect(Object.keys(j)).toEqual(["error"]);
  expect(e.code).toBe(c.code);
  expect(typeof e.message).toBe("string");
  expect((e.message as string).length).toBeGreaterThan(0);
  expect(typeof e.hint).toBe("string");
  expect((e.hint as string).length).toBeGreaterThan(0);
  expect(json.stderr).not.toMatch(NO_STACK);
}

describe("coded errors: non-zero exit, error[E_…] + hint on stderr, no stack trace, JSON with --json", () => {
  it.concurrent.for(ERROR_CASES)("$name → $code", (c, { expect }) => checkError(c, expect));

  it.each(COMMANDER_CASES)("$name → $code", (c) => checkError(c, expect));

  it("commander errors still carry the coded line and the JSON error (apart from the extra first line)", async () => {
    for (const c of COMMANDER_CASES) {
      const { args, untouched } = c.setup();
      const human = await cli(args, untouched);
      expect(human.code).toBe(2);
      expect(human.stderr).toMatch(/^error\[E_USAGE\]: /m);
      expect(human.stderr).toContain("hint:");
      expect(human.stderr).not.toMatch(NO_STACK);
      const json = await cli([...args, "--json"], untouched);
      expect((parseSingleJson(json.stdout).error as Record<string, unknown>).code).toBe("E_USAGE");
    }
  });
});
