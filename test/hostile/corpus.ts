/**
 * A corpus of broken and hostile inputs, generated (not committed) into a temporary folder at test time. Each
 * case builds its inputs in a fresh folder of its own and returns the `pare` command line to run on them, with
 * the specific error code that command must end with.
 *
 * Groups: safetensors headers that lie, shard indexes and symlinks that lead outside the model folder,
 * config.json values that contradict each other or the weights, pickle-only folders, broken tokenizer.json,
 * empty / binary / non-UTF-8 data files, NaN/Inf weights, and outputs that would overwrite or nest in the input.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import type { ErrorCode } from "../../src/errors.ts";
import {
  makeByteBpeTokenizerJson,
  makeTinyBert,
  makeTinyLlama,
  makeWordPieceTokenizerJson,
  type TinyModel,
  writeTinyModel,
} from "../helpers/tinyModels.ts";

export type Group =
  | "safetensors"
  | "paths"
  | "config"
  | "pickle"
  | "tokenizer"
  | "data"
  | "numeric"
  | "output";

export interface HostileCase {
  id: string;
  group: Group;
  /** what is broken, in words */
  what: string;
  /** the error code pare must end with */
  code: ErrorCode;
  /** builds the inputs inside `dir` (fresh and empty) and returns the arguments of `pare` (absolute paths) */
  build(dir: string): string[];
  /** the message must match each of these */
  mentions?: (string | RegExp)[];
  /** the hint must match this */
  hint?: RegExp;
  /** needs symlinks or FIFOs */
  posixOnly?: boolean;
}

// ---------------------------------------------------------------------------------------------------------
// building blocks

export const TEXT = `Once upon a time there was a cat that sat on the mat. The cat was the best of cats, and the mat
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
  "not very funny\t0",
].join("\n");

const WORDS = ["the", "a", "movie", "film", "was", "is", "good", "bad", "great", "boring", "charming"];

/** A tiny LLaMA folder `dir/model` (vocab 300, hidden 32, 2 layers, byte-level BPE tokenizer); `edit` may change it first. */
export function llama(
  dir: string,
  opts: { edit?: (m: TinyModel) => void; tokenizer?: boolean; dtype?: "F32" | "F16" } = {},
): string {
  const m = makeTinyLlama({ seed: 5 });
  opts.edit?.(m);
  const d = path.join(dir, "model");
  writeTinyModel(d, m, opts.tokenizer === false ? undefined : makeByteBpeTokenizerJson(300), opts.dtype);
  return d;
}

/** A tiny BertForSequenceClassification folder `dir/model` with a WordPiece tokenizer. */
export function bert(dir: string, edit?: (m: TinyModel) => void): string {
  const m = makeTinyBert({ seed: 6 });
  edit?.(m);
  const d = path.join(dir, "model");
  writeTinyModel(d, m, makeWordPieceTokenizerJson(WORDS));
  return d;
}

/** Writes `content` to `dir/name`; returns the path. */
export function file(dir: string, name: string, content: string | Uint8Array): string {
  const p = path.join(dir, name);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, content);
  return p;
}

/** A safetensors file: u64 LE header length (default: the true one), the header (object → JSON, string / bytes as is), data. */
export function safetensorsBytes(
  header: unknown,
  data: Uint8Array = new Uint8Array(0),
  len?: bigint,
): Buffer {
  const h =
    header instanceof Uint8Array
      ? Buffer.from(header)
      : Buffer.from(typeof header === "string" ? header : JSON.stringify(header));
  const lenBuf = Buffer.alloc(8);
  lenBuf.writeBigUInt64LE(len ?? BigInt(h.length));
  return Buffer.concat([lenBuf, h, data]);
}

/** A llama folder whose model.safetensors is replaced by `bytes`. */
function weightsFile(dir: string, bytes: Uint8Array): string {
  const m = llama(dir);
  fs.writeFileSync(path.join(m, "model.safetensors"), bytes);
  return m;
}

/** One F32 tensor `t` of 2 values, 8 data bytes: a header the cases below bend. */
const ONE = { t: { dtype: "F32", shape: [2], data_offsets: [0, 8] } };
const DATA8 = new Uint8Array(8);

function editJson(file: string, edit: (o: Record<string, unknown>) => void): void {
  const o = JSON.parse(fs.readFileSync(file, "utf8"));
  edit(o);
  fs.writeFileSync(file, JSON.stringify(o, null, 2));
}

const editConfig = (model: string, edit: (c: Record<string, unknown>) => void) =>
  editJson(path.join(model, "config.json"), edit);
const editTokenizer = (model: string, edit: (t: Record<string, unknown>) => void) =>
  editJson(path.join(model, "tokenizer.json"), edit);

/** The tensors of a sharded llama: model.safetensors renamed to `shard`, with an index mapping every tensor to `rel`. */
function sharded(dir: string, rel: (name: string) => string): string {
  const m = llama(dir);
  const shard = "model-00001-of-00001.safetensors";
  fs.renameSync(path.join(m, "model.safetensors"), path.join(m, shard));
  const names = makeTinyLlama({ seed: 5 }).tensors.map((t) => t.name);
  const weightMap = Object.fromEntries(names.map((n) => [n, rel(n) === "" ? shard : rel(n)]));
  file(m, "model.safetensors.index.json", JSON.stringify({ metadata: {}, weight_map: weightMap }));
  return m;
}

function mkfifo(p: string): void {
  execFileSync("mkfifo", [p]);
}

const setTensor = (m: TinyModel, name: string, i: number, v: number) => {
  const t = m.tensors.find((x) => x.name === name);
  if (!t) throw new Error(`corpus: no tensor ${name}`);
  t.data[i] = v;
};

// commands
const inspect = (model: string) => ["inspect", model];
const ppl = (model: string, data: string) => [
  "eval",
  model,
  "--task",
  "ppl",
  "--data",
  data,
  "--seq-len",
  "16",
];
const classify = (model: string, data: string) => ["eval", model, "--task", "classify", "--data", data];
/** a weights-only prune (no calibration): fails on the model itself */
const prune = (dir: string, model: string, extra: string[] = []) => [
  "prune",
  model,
  "--out",
  path.join(dir, "out"),
  "--ratio",
  "0.25",
  "--criterion",
  "magnitude-l2",
  "--reconstruct",
  "none",
  ...extra,
];
const pruneCalib = (dir: string, model: string, calib: string) => [
  "prune",
  model,
  "--out",
  path.join(dir, "out"),
  "--calib",
  calib,
  "--samples",
  "2",
  "--seq-len",
  "16",
];

// ---------------------------------------------------------------------------------------------------------
// the cases

const st = (
  id: string,
  what: string,
  code: ErrorCode,
  bytes: () => Uint8Array,
  mentions: (string | RegExp)[] = ["model.safetensors"],
): HostileCase => ({
  id,
  group: "safetensors",
  what,
  code,
  build: (dir) => inspect(weightsFile(dir, bytes())),
  mentions,
});

const cfg = (
  id: string,
  what: string,
  code: ErrorCode,
  edit: (c: Record<string, unknown>) => void,
  mentions: (string | RegExp)[] = [],
): HostileCase => ({
  id,
  group: "config",
  what,
  code,
  build: (dir) => {
    const m = llama(dir);
    editConfig(m, edit);
    return inspect(m);
  },
  mentions,
});

const tok = (
  id: string,
  what: string,
  code: ErrorCode,
  breakIt: (model: string) => void,
  mentions: (string | RegExp)[] = ["tokenizer.json"],
): HostileCase => ({
  id,
  group: "tokenizer",
  what,
  code,
  build: (dir) => {
    const m = llama(dir);
    breakIt(m);
    return ppl(m, file(dir, "text.txt", TEXT));
  },
  mentions,
});

export const CORPUS: HostileCase[] = [
  // --- safetensors headers that lie --------------------------------------------------------------------
  st("st-empty", "model.safetensors is empty", "E_SAFETENSORS_TRUNCATED", () => new Uint8Array(0)),
  st("st-len-beyond-file", "header length beyond the end of the file", "E_SAFETENSORS_TRUNCATED", () =>
    safetensorsBytes(ONE, DATA8, 5000n),
  ),
  st("st-len-absurd", "header length 2^40", "E_SAFETENSORS_INVALID", () =>
    safetensorsBytes(ONE, DATA8, 1n << 40n),
  ),
  st("st-header-not-utf8", "header bytes are not UTF-8", "E_SAFETENSORS_INVALID", () =>
    safetensorsBytes(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), DATA8),
  ),
  st("st-header-not-json", "header is not JSON", "E_SAFETENSORS_INVALID", () =>
    safetensorsBytes("{not json", DATA8),
  ),
  st("st-header-array", "header is a JSON array", "E_SAFETENSORS_INVALID", () =>
    safetensorsBytes([1, 2], DATA8),
  ),
  st("st-header-deep", "a shape nested 100 000 lists deep", "E_SAFETENSORS_INVALID", () =>
    safetensorsBytes(
      `{"t": {"dtype": "F32", "shape": ${"[".repeat(100_000)}${"]".repeat(100_000)}, "data_offsets": [0, 8]}}`,
      DATA8,
    ),
  ),
  st(
    "st-dtype-unknown",
    "dtype Q4 that no one defined",
    "E_SAFETENSORS_DTYPE",
    () => safetensorsBytes({ t: { dtype: "Q4", shape: [2], data_offsets: [0, 8] } }, DATA8),
    ['"t"', '"Q4"'],
  ),
  st(
    "st-duplicate-names",
    'tensor "t" twice (once spelled \\u0074)',
    "E_SAFETENSORS_INVALID",
    () =>
      safetensorsBytes(
        '{"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "\\u0074": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}',
        DATA8,
      ),
    ['"t"', "twice"],
  ),
  st(
    "st-overlap",
    "two tensors sharing bytes",
    "E_SAFETENSORS_INVALID",
    () =>
      safetensorsBytes(
        {
          a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
          b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
        },
        new Uint8Array(12),
      ),
    ["overlap"],
  ),
  st("st-offsets-beyond-data", "offsets past the end of the data", "E_SAFETENSORS_TRUNCATED", () =>
    safetensorsBytes({ t: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, DATA8),
  ),
  st("st-offsets-reversed", "data_offsets [8, 0]", "E_SAFETENSORS_INVALID", () =>
    safetensorsBytes({ t: { dtype: "F32", shape: [2], data_offsets: [8, 0] } }, DATA8),
  ),
  st("st-offsets-fractional", "data_offsets [0.5, 8.5]", "E_SAFETENSORS_INVALID", () =>
    safetensorsBytes({ t: { dtype: "F32", shape: [2], data_offsets: [0.5, 8.5] } }, new Uint8Array(9)),
  ),
  st(
    "st-span-mismatch",
    "F32[3] in an 8-byte span",
    "E_SAFETENSORS_INVALID",
    () => safetensorsBytes({ t: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, DATA8),
    ["span 8 bytes", "needs 12"],
  ),
  st("st-dim-negative", "shape [-2]", "E_SAFETENSORS_INVALID", () =>
    safetensorsBytes({ t: { dtype: "F32", shape: [-2], data_offsets: [0, 8] } }, DATA8),
  ),
  st(
    "st-dims-overflow",
    "shape [2^32, 2^32, 2^32] whose product overflows",
    "E_SAFETENSORS_INVALID",
    () =>
      safetensorsBytes(
        { t: { dtype: "U8", shape: [2 ** 32, 2 ** 32, 2 ** 32], data_offsets: [0, 8] } },
        DATA8,
      ),
    ["absurd"],
  ),
  st("st-entry-not-object", "a tensor entry that is a number", "E_SAFETENSORS_INVALID", () =>
    safetensorsBytes({ t: 3 }, DATA8),
  ),
  st(
    "st-metadata-not-strings",
    "__metadata__ with a number value",
    "E_SAFETENSORS_INVALID",
    () => safetensorsBytes({ __metadata__: { format: 1 }, ...ONE }, DATA8),
    ["__metadata__"],
  ),
  st(
    "st-name-newline",
    "a tensor name with a newline and a fake stack frame",
    "E_SAFETENSORS_DTYPE",
    () =>
      safetensorsBytes(
        { "x\n    at evil (/tmp/evil.js:1:1)\n": { dtype: "Q4", shape: [2], data_offsets: [0, 8] } },
        DATA8,
      ),
    ["\\n    at evil"],
  ),
  st(
    "st-zip-renamed",
    "a PyTorch zip checkpoint renamed model.safetensors",
    "E_PICKLE_UNSUPPORTED",
    () =>
      Buffer.concat([Buffer.from([0x50, 0x4b, 0x03, 0x04, 0x14, 0, 0, 0]), Buffer.from("archive/data.pkl")]),
    ["zip"],
  ),
  {
    id: "st-fifo",
    group: "safetensors",
    what: "model.safetensors is a named pipe (reading would block forever)",
    code: "E_IO",
    posixOnly: true,
    build: (dir) => {
      const m = llama(dir);
      fs.rmSync(path.join(m, "model.safetensors"));
      mkfifo(path.join(m, "model.safetensors"));
      return inspect(m);
    },
    mentions: ["named pipe"],
  },

  // --- paths that lead outside the model folder ----------------------------------------------------------
  {
    id: "shard-dotdot",
    group: "paths",
    what: "weight_map points to ../stolen.safetensors",
    code: "E_PATH_ESCAPE",
    build: (dir) => inspect(sharded(dir, (n) => (n.includes("layers.1") ? "../stolen.safetensors" : ""))),
    mentions: ["../stolen.safetensors"],
  },
  {
    id: "shard-absolute",
    group: "paths",
    what: "weight_map points to an absolute path",
    code: "E_PATH_ESCAPE",
    build: (dir) => inspect(sharded(dir, (n) => (n.includes("layers.0") ? "/etc/passwd" : ""))),
    mentions: ["absolute"],
  },
  {
    id: "shard-symlink-escape",
    group: "paths",
    what: "a shard that is a symlink to a file outside the folder",
    code: "E_PATH_ESCAPE",
    posixOnly: true,
    build: (dir) => {
      const m = sharded(dir, () => "");
      const outside = path.join(dir, "outside");
      fs.mkdirSync(outside);
      const shard = path.join(m, "model-00001-of-00001.safetensors");
      fs.renameSync(shard, path.join(outside, "w.safetensors"));
      fs.symlinkSync(path.join(outside, "w.safetensors"), shard);
      return inspect(m);
    },
    mentions: ["outside the model folder"],
  },
  {
    id: "shard-missing",
    group: "paths",
    what: "the index names a shard that is not there",
    code: "E_FOLDER_INCOMPLETE",
    build: (dir) =>
      inspect(sharded(dir, (n) => (n.includes("layers.1") ? "model-00002-of-00002.safetensors" : ""))),
    mentions: ["model-00002-of-00002.safetensors"],
  },
  {
    id: "shard-index-not-json",
    group: "paths",
    what: "model.safetensors.index.json is not JSON",
    code: "E_SHARD_INDEX_INVALID",
    build: (dir) => {
      const m = sharded(dir, () => "");
      file(m, "model.safetensors.index.json", '{"weight_map": {');
      return inspect(m);
    },
  },
  {
    id: "shard-index-lies",
    group: "paths",
    what: "the index lists a tensor its shard does not hold",
    code: "E_SHARD_INDEX_INVALID",
    build: (dir) => {
      const m = sharded(dir, () => "");
      editJson(path.join(m, "model.safetensors.index.json"), (o) => {
        (o.weight_map as Record<string, string>)["model.layers.9.ghost.weight"] =
          "model-00001-of-00001.safetensors";
      });
      return inspect(m);
    },
    mentions: ["model.layers.9.ghost.weight"],
  },
  {
    id: "config-symlink-escape",
    group: "paths",
    what: "config.json is a symlink to a file outside the folder",
    code: "E_PATH_ESCAPE",
    posixOnly: true,
    build: (dir) => {
      const m = llama(dir);
      const outside = file(dir, "outside/config.json", fs.readFileSync(path.join(m, "config.json")));
      fs.rmSync(path.join(m, "config.json"));
      fs.symlinkSync(outside, path.join(m, "config.json"));
      return inspect(m);
    },
    mentions: ["config.json", "outside the model folder"],
  },
  {
    id: "tokenizer-symlink-escape",
    group: "paths",
    what: "tokenizer.json is a symlink to a file outside the folder (it would be read and copied)",
    code: "E_PATH_ESCAPE",
    posixOnly: true,
    build: (dir) => {
      const m = llama(dir);
      const outside = file(dir, "outside/secret.json", fs.readFileSync(path.join(m, "tokenizer.json")));
      fs.rmSync(path.join(m, "tokenizer.json"));
      fs.symlinkSync(path.relative(m, outside), path.join(m, "tokenizer.json"));
      return ppl(m, file(dir, "text.txt", TEXT));
    },
    mentions: ["tokenizer.json"],
  },
  {
    id: "weights-symlink-escape",
    group: "paths",
    what: "model.safetensors is a symlink to another model outside the folder",
    code: "E_PATH_ESCAPE",
    posixOnly: true,
    build: (dir) => {
      const m = llama(dir);
      const other = llama(path.join(dir, "other"));
      fs.rmSync(path.join(m, "model.safetensors"));
      fs.symlinkSync(path.join(other, "model.safetensors"), path.join(m, "model.safetensors"));
      return inspect(m);
    },
    mentions: ["model.safetensors"],
  },
  {
    id: "symlink-loop",
    group: "paths",
    what: "config.json is a symlink loop",
    code: "E_PATH_ESCAPE",
    posixOnly: true,
    build: (dir) => {
      const m = llama(dir);
      fs.rmSync(path.join(m, "config.json"));
      fs.symlinkSync("loop.json", path.join(m, "config.json"));
      fs.symlinkSync("config.json", path.join(m, "loop.json"));
      return inspect(m);
    },
    mentions: ["loop"],
  },

  // --- config.json that contradicts itself or the weights ------------------------------------------------
  cfg(
    "cfg-heads-not-dividing-hidden",
    "5 heads for hidden 32 (no head_dim)",
    "E_CONFIG_INVALID",
    (c) => {
      delete c.head_dim;
      c.num_attention_heads = 5;
      c.num_key_value_heads = 5;
    },
    ["num_attention_heads", "hidden_size"],
  ),
  cfg(
    "cfg-kv-not-dividing-heads",
    "3 KV heads for 4 heads",
    "E_CONFIG_INVALID",
    (c) => {
      c.num_key_value_heads = 3;
    },
    ["num_key_value_heads"],
  ),
  cfg("cfg-negative-hidden", "hidden_size -32", "E_CONFIG_INVALID", (c) => {
    c.hidden_size = -32;
  }),
  cfg("cfg-zero-layers", "num_hidden_layers 0", "E_CONFIG_INVALID", (c) => {
    c.num_hidden_layers = 0;
  }),
  cfg(
    "cfg-absurd-vocab",
    "vocab_size 10^12",
    "E_CONFIG_INVALID",
    (c) => {
      c.vocab_size = 1e12;
    },
    ["vocab_size"],
  ),
  cfg("cfg-fractional-heads", "num_attention_heads 4.5", "E_CONFIG_INVALID", (c) => {
    c.num_attention_heads = 4.5;
  }),
  cfg(
    "cfg-string-hidden",
    'hidden_size "32" (a string)',
    "E_CONFIG_INVALID",
    (c) => {
      c.hidden_size = "32";
    },
    ["hidden_size"],
  ),
  cfg(
    "cfg-vocab-mismatch",
    "vocab_size 301, embeddings have 300 rows",
    "E_CONFIG_MISMATCH",
    (c) => {
      c.vocab_size = 301;
    },
    ["model.embed_tokens.weight"],
  ),
  cfg("cfg-more-layers", "num_hidden_layers 3, weights have 2", "E_TENSOR_MISSING", (c) => {
    c.num_hidden_layers = 3;
  }),
  cfg(
    "cfg-fewer-layers",
    "num_hidden_layers 1, weights have 2 (extra layer tensors)",
    "E_CONFIG_MISMATCH",
    (c) => {
      c.num_hidden_layers = 1;
    },
    ["layer 1", "num_hidden_layers"],
  ),
  {
    id: "cfg-missing-tensor",
    group: "config",
    what: "layer 1 has no v_proj",
    code: "E_TENSOR_MISSING",
    build: (dir) =>
      inspect(
        llama(dir, {
          edit: (m) => {
            m.tensors = m.tensors.filter((t) => t.name !== "model.layers.1.self_attn.v_proj.weight");
          },
        }),
      ),
    mentions: ["model.layers.1.self_attn.v_proj.weight"],
  },
  cfg(
    "cfg-unknown-arch",
    "architectures [GPT2LMHeadModel]",
    "E_ARCH_UNSUPPORTED",
    (c) => {
      c.architectures = ["GPT2LMHeadModel"];
      c.model_type = "gpt2";
    },
    ["GPT2LMHeadModel"],
  ),
  {
    id: "cfg-custom-code",
    group: "config",
    what: "a custom architecture with auto_map and a modeling .py file",
    code: "E_ARCH_UNSUPPORTED",
    build: (dir) => {
      const m = llama(dir);
      editConfig(m, (c) => {
        c.architectures = ["EvilForCausalLM"];
        c.model_type = "evil";
        c.auto_map = { AutoModelForCausalLM: "modeling_evil.EvilForCausalLM" };
      });
      file(m, "modeling_evil.py", 'open("PWNED", "w").write("code from a model folder ran")\n');
      return inspect(m);
    },
    mentions: ["EvilForCausalLM", "auto_map"],
    hint: /never runs code/,
  },
  cfg(
    "cfg-arch-newline",
    "an architecture name with newlines and a fake stack frame",
    "E_ARCH_UNSUPPORTED",
    (c) => {
      c.architectures = ["Evil\n    at Object.<anonymous> (/x.js:1:1)\nerror[E_NONE]: fine"];
    },
    ["\\n    at Object"],
  ),
  {
    id: "cfg-not-json",
    group: "config",
    what: "config.json is not JSON",
    code: "E_CONFIG_INVALID",
    build: (dir) => {
      const m = llama(dir);
      file(m, "config.json", '{\n  "hidden_size": 32,\n  oops\n}');
      return inspect(m);
    },
    mentions: ["config.json:3:3"],
  },
  {
    id: "cfg-duplicate-key",
    group: "config",
    what: "hidden_size given twice (32, then 64)",
    code: "E_CONFIG_INVALID",
    build: (dir) => {
      const m = llama(dir);
      const text = fs.readFileSync(path.join(m, "config.json"), "utf8");
      file(m, "config.json", text.replace('"hidden_size": 32,', '"hidden_size": 32,\n  "hidden_size": 64,'));
      return inspect(m);
    },
    mentions: ['"hidden_size"', "twice"],
  },
  {
    id: "cfg-huge",
    group: "config",
    what: "config.json of 80 MB (sparse)",
    code: "E_CONFIG_INVALID",
    build: (dir) => {
      const m = llama(dir);
      fs.truncateSync(path.join(m, "config.json"), 80 * 1024 * 1024);
      return inspect(m);
    },
    mentions: ["absurd"],
  },
  cfg(
    "cfg-rope-scaling",
    'rope_scaling llama3 with factor "eight"',
    "E_CONFIG_INVALID",
    (c) => {
      c.rope_scaling = { rope_type: "llama3", factor: "eight" };
    },
    ["rope_scaling.factor"],
  ),

  // --- pickle checkpoints ------------------------------------------------------------------------------
  ...(
    [
      ["pickle-bin", ["pytorch_model.bin"]],
      ["pickle-pt", ["model.pt"]],
      ["pickle-sharded", ["pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"]],
    ] as const
  ).map(
    ([id, names]): HostileCase => ({
      id,
      group: "pickle",
      what: `only pickle weights (${names.join(", ")})`,
      code: "E_PICKLE_UNSUPPORTED",
      build: (dir) => {
        const m = llama(dir);
        fs.rmSync(path.join(m, "model.safetensors"));
        // protocol-2 pickle that would run os.system if unpickled
        for (const n of names)
          file(
            m,
            n,
            Buffer.from("\x80\x02cos\nsystem\nq\x00X\x05\x00\x00\x00touchq\x01\x85q\x02Rq\x03.", "latin1"),
          );
        return inspect(m);
      },
      mentions: [names[0]],
      hint: /never reads pickle/,
    }),
  ),

  // --- tokenizer.json broken in different ways ------------------------------------------------------------
  tok(
    "tok-missing",
    "no tokenizer.json",
    "E_FOLDER_INCOMPLETE",
    (m) => {
      fs.rmSync(path.join(m, "tokenizer.json"));
    },
    [],
  ),
  tok("tok-not-json", "tokenizer.json cut in the middle", "E_TOKENIZER_INVALID", (m) => {
    const t = fs.readFileSync(path.join(m, "tokenizer.json"));
    fs.writeFileSync(path.join(m, "tokenizer.json"), t.subarray(0, t.length >> 1));
  }),
  tok("tok-binary", "tokenizer.json holds binary bytes", "E_TOKENIZER_INVALID", (m) => {
    file(m, "tokenizer.json", Buffer.from([0xff, 0xfe, 0x00, 0x7b, 0x00, 0x80, 0x81]));
  }),
  tok("tok-model-type", "model type WordLevel (unsupported)", "E_TOKENIZER_INVALID", (m) =>
    editTokenizer(m, (t) => {
      (t.model as Record<string, unknown>).type = "WordLevel";
    }),
  ),
  tok("tok-string-ids", "vocab ids that are strings", "E_TOKENIZER_INVALID", (m) =>
    editTokenizer(m, (t) => {
      const v = (t.model as { vocab: Record<string, unknown> }).vocab;
      for (const k of Object.keys(v)) v[k] = String(v[k]);
    }),
  ),
  tok("tok-regex", "a Split pre-tokenizer with an invalid regex", "E_TOKENIZER_INVALID", (m) =>
    editTokenizer(m, (t) => {
      t.pre_tokenizer = { type: "Split", pattern: { Regex: "(?<" }, behavior: "Isolated", invert: false };
    }),
  ),
  {
    id: "tok-beyond-vocab",
    group: "tokenizer",
    what: "tokenizer ids beyond the model's vocab_size (another model's tokenizer)",
    code: "E_TOKENIZER_MISMATCH",
    build: (dir) => {
      const m = llama(dir, { edit: (x) => shrinkVocab(x, 260) });
      return ppl(m, file(dir, "text.txt", TEXT));
    },
    mentions: ["vocab_size 260"],
  },

  // --- data files ----------------------------------------------------------------------------------------
  {
    id: "data-empty",
    group: "data",
    what: "empty text file",
    code: "E_DATA_EMPTY",
    build: (dir) => ppl(llama(dir), file(dir, "empty.txt", "")),
    mentions: ["empty.txt"],
  },
  {
    id: "data-binary",
    group: "data",
    what: "a binary file as text",
    code: "E_DATA_INVALID",
    build: (dir) =>
      ppl(llama(dir), file(dir, "data.bin", Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0, 0, 0]))),
    mentions: ["data.bin:1:", "binary"],
  },
  {
    id: "data-latin1",
    group: "data",
    what: "Latin-1 text (not UTF-8)",
    code: "E_DATA_INVALID",
    build: (dir) =>
      ppl(llama(dir), file(dir, "latin1.txt", Buffer.from(`${TEXT}caf\xe9 cr\xe8me\n`, "latin1"))),
    mentions: ["latin1.txt:6:4", "UTF-8"],
  },
  {
    id: "data-utf16",
    group: "data",
    what: "UTF-16 text with a byte order mark",
    code: "E_DATA_INVALID",
    build: (dir) =>
      ppl(
        llama(dir),
        file(dir, "utf16.txt", Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(TEXT, "utf16le")])),
      ),
    mentions: ["UTF-16"],
  },
  {
    id: "classify-binary",
    group: "data",
    what: "classification data with NUL bytes",
    code: "E_DATA_INVALID",
    build: (dir) => classify(bert(dir), file(dir, "sst.tsv", `${SST}\n\0\0\0\n`)),
    mentions: ["sst.tsv:6:1"],
  },
  {
    id: "calib-binary",
    group: "data",
    what: "binary calibration file",
    code: "E_DATA_INVALID",
    build: (dir) =>
      pruneCalib(dir, llama(dir), file(dir, "calib.txt", Buffer.from([0x50, 0x4b, 3, 4, 0, 0]))),
    mentions: ["calib.txt"],
  },

  // --- NaN / Inf in weights ------------------------------------------------------------------------------
  {
    id: "nan-eval",
    group: "numeric",
    what: "a NaN in layer 1's up_proj (eval)",
    code: "E_NUMERIC",
    build: (dir) =>
      ppl(
        llama(dir, { edit: (m) => setTensor(m, "model.layers.1.mlp.up_proj.weight", 17, Number.NaN) }),
        file(dir, "text.txt", TEXT),
      ),
    mentions: ["model.layers.1.mlp.up_proj.weight", "layer 1", "NaN"],
  },
  {
    id: "inf-prune",
    group: "numeric",
    what: "+Inf in layer 0's o_proj (prune)",
    code: "E_NUMERIC",
    build: (dir) =>
      prune(
        dir,
        llama(dir, {
          edit: (m) => setTensor(m, "model.layers.0.self_attn.o_proj.weight", 3, Number.POSITIVE_INFINITY),
        }),
      ),
    mentions: ["model.layers.0.self_attn.o_proj.weight", "layer 0", "infinite"],
  },
  {
    id: "nan-f16-prune",
    group: "numeric",
    what: "a NaN in an F16 embedding (prune)",
    code: "E_NUMERIC",
    build: (dir) =>
      prune(
        dir,
        llama(dir, { dtype: "F16", edit: (m) => setTensor(m, "model.embed_tokens.weight", 0, Number.NaN) }),
      ),
    mentions: ["model.embed_tokens.weight"],
  },

  // --- outputs -------------------------------------------------------------------------------------------
  {
    id: "out-inside-input",
    group: "output",
    what: "--out inside the input folder",
    code: "E_OUTPUT_INSIDE_INPUT",
    build: (dir) => {
      const m = llama(dir);
      return [
        "prune",
        m,
        "--out",
        path.join(m, "pruned"),
        "--criterion",
        "magnitude-l2",
        "--reconstruct",
        "none",
      ];
    },
  },
  {
    id: "out-exists",
    group: "output",
    what: "--out names an existing folder (no --force)",
    code: "E_OUTPUT_EXISTS",
    build: (dir) => {
      const m = llama(dir);
      file(dir, "out/keep.txt", "precious");
      return prune(dir, m);
    },
  },
];

/** Shrinks a tiny model's vocabulary to `v` rows (embeddings and head), keeping its tokenizer as is. */
function shrinkVocab(m: TinyModel, v: number): void {
  const H = Number(m.config.hidden_size);
  for (const t of m.tensors) {
    if (t.name === "model.embed_tokens.weight" || t.name === "lm_head.weight") {
      t.shape = [v, H];
      t.data = t.data.slice(0, v * H);
    }
  }
  m.config.vocab_size = v;
}
