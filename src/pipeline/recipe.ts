/**
 * The pruning recipe as one schema. `RECIPE_SCHEMA` lists every setting once — its kind, default,
 * allowed values, CLI flag and help — and everything else derives from it: the `Recipe` type (and the
 * strict `RecipeOptions` a library user writes, where a misspelt criterion is a type error), the
 * defaults, the validation of CLI flags and of YAML/JSON recipe files (a coded error naming the setting),
 * and the `pare prune` options.
 */
import fs from "node:fs";
import YAML from "yaml";
import { CRITERIA } from "../criteria/index.ts";
import { PareError } from "../errors.ts";
import { checkOutputPath } from "../export/paths.ts";
import { checkQuantSettings, type QuantBits, type QuantSettings } from "../quant/settings.ts";
import { RECONSTRUCTORS, RIDGE_DEFAULT } from "../reconstruct/index.ts";

type ErrorCode = "E_RECIPE_INVALID" | "E_RATIO_INVALID" | "E_CRITERION_UNKNOWN" | "E_METHOD_UNKNOWN";

interface Common {
  /** commander flag, e.g. "--ratio <r>" (absent: not a flag of its own) */
  flag?: string;
  help: string;
  /** error code for a bad value (default E_RECIPE_INVALID) */
  code?: ErrorCode;
  hint?: string;
}
interface StrField extends Common {
  kind: "string";
}
interface PathsField extends Common {
  kind: "paths";
}
interface IntField extends Common {
  kind: "int";
  min: number;
}
interface NumField extends Common {
  kind: "number";
  min: number;
  /** exclusive upper bound */
  below?: number;
}
/** a number, or "auto" (the ridge: chosen per layer on held-out calibration windows) */
interface NumOrAutoField extends Common {
  kind: "numberOrAuto";
  min: number;
}
interface EnumField<V extends string> extends Common {
  kind: "enum";
  values: readonly V[];
}
interface BoolField extends Common {
  kind: "bool";
}
interface IntListField extends Common {
  kind: "intList";
  min: number;
}
type Field =
  | StrField
  | PathsField
  | IntField
  | NumField
  | NumOrAutoField
  | EnumField<string>
  | BoolField
  | IntListField;

/** The value type a field holds. */
type ValueOf<F> =
  F extends EnumField<infer V>
    ? V
    : F extends NumOrAutoField
      ? number | "auto"
      : F extends IntField | NumField
        ? number
        : F extends BoolField
          ? boolean
          : F extends PathsField
            ? string[]
            : F extends IntListField
              ? number[]
              : string;

export const CRITERION_NAMES = Object.keys(CRITERIA) as (keyof typeof CRITERIA)[];
export const RECONSTRUCTION_NAMES = Object.keys(RECONSTRUCTORS) as (keyof typeof RECONSTRUCTORS)[];
export type CriterionName = keyof typeof CRITERIA;
export type ReconstructionName = keyof typeof RECONSTRUCTORS;

const enumOf = <V extends string>(values: readonly V[], rest: Common): EnumField<V> => ({
  kind: "enum",
  values,
  ...rest,
});

export const RECIPE_SCHEMA = {
  model: { kind: "string", help: "input model folder (never modified)" } as StrField,
  out: { kind: "string", flag: "--out <dir>", help: "output model folder (written atomically)" } as StrField,
  ratio: {
    kind: "number",
    min: 0,
    below: 1,
    flag: "--ratio <r>",
    help: "fraction of attention+MLP parameters to remove, in [0, 1)",
    code: "E_RATIO_INVALID",
    hint: "--ratio is the fraction of attention+MLP parameters to remove, e.g. 0.3",
  } as NumField,
  depth: {
    kind: "int",
    min: 0,
    flag: "--depth <n>",
    help: "decoder blocks to remove (depth pruning, before any width pruning; with --depth, --ratio defaults to 0)",
    hint: "e.g. --depth 2 removes two decoder blocks",
  } as IntField,
  depthRatio: {
    kind: "number",
    min: 0,
    below: 1,
    flag: "--depth-ratio <f>",
    help: "fraction of decoder blocks to remove (instead of --depth: n = round(f · layers))",
    hint: "--depth-ratio is a fraction in [0, 1), e.g. 0.25",
  } as NumField,
  targetSpeedup: {
    kind: "number",
    min: 1,
    flag: "--target-speedup <x>",
    help: "choose depth and width to reach this measured speedup of --target-workload on this machine (ONNX Runtime), at the least calibration loss",
    hint: "e.g. --target-speedup 1.3 (a speedup > 1)",
  } as NumField,
  targetWorkload: enumOf(["generation", "prefill"] as const, {
    flag: "--target-workload <w>",
    help: "what --target-speedup measures (as pare bench): generation (batch 1, 64 tokens after a 32-token prompt, KV cache) | prefill (8 × 256 tokens)",
    code: "E_METHOD_UNKNOWN",
  }),
  depthCriterion: enumOf(["bi", "angular", "sleb"] as const, {
    flag: "--depth-criterion <name>",
    help: "bi: ShortGPT's block influence | angular: the contiguous span of least angular distance (Gromov et al.) | sleb: iterative, the block whose removal raises the calibration loss least (SLEB)",
    code: "E_METHOD_UNKNOWN",
  }),
  criterion: enumOf(CRITERION_NAMES, {
    flag: "--criterion <name>",
    help: "pruning criterion",
    code: "E_CRITERION_UNKNOWN",
  }),
  allocation: enumOf(["uniform", "global"] as const, {
    flag: "--allocation <name>",
    help: "uniform | global",
    code: "E_METHOD_UNKNOWN",
  }),
  reconstruct: enumOf(RECONSTRUCTION_NAMES, {
    flag: "--reconstruct <name>",
    help: "none | bias | liar | liar-seq",
    code: "E_METHOD_UNKNOWN",
  }),
  obsNormalization: enumOf(["auto", "none", "stream", "output", "standardized"] as const, {
    flag: "--obs-normalization <n>",
    help: "criterion obs under global allocation: how the modules' post-compensation costs are compared — auto (standardized for post-norm blocks, none otherwise: the measured best of each) | none (raw squared output error) | stream (the error as it reaches the residual stream: scaled by the gain of a norm it passes first; = none for pre-norm blocks) | output (relative to the consumer's output energy) | standardized (z-scored per module, as FLAP)",
    code: "E_METHOD_UNKNOWN",
  }),
  createBias: enumOf(["auto", "never"] as const, {
    flag: "--create-bias <mode>",
    help: "auto: reconstruction may give a consumer a bias where the family's config can declare it | never: no new biases (fits without an intercept), for runtimes without them such as llama.cpp's qwen3 / gemma",
    code: "E_METHOD_UNKNOWN",
  }),
  calibration: enumOf(["sequential", "dense"] as const, {
    flag: "--calibration <mode>",
    help: "sequential | dense",
    code: "E_METHOD_UNKNOWN",
  }),
  gramPrecision: enumOf(["auto", "f64", "mixed"] as const, {
    flag: "--gram-precision <p>",
    help: "auto | f64 | mixed: Gram in float64, or float32 products summed in float64 (auto: f64 up to 1024 channels)",
    code: "E_METHOD_UNKNOWN",
  }),
  calib: {
    kind: "paths",
    flag: "--calib <files...>",
    help: "calibration text (.txt, .jsonl with a text field)",
  } as PathsField,
  samples: { kind: "int", min: 1, flag: "--samples <n>", help: "calibration sequences" } as IntField,
  seqLen: { kind: "int", min: 2, flag: "--seq-len <n>", help: "tokens per calibration sequence" } as IntField,
  seed: { kind: "int", min: 0, flag: "--seed <n>", help: "seed of the calibration sampling" } as IntField,
  ridge: {
    kind: "numberOrAuto",
    min: 0,
    flag: "--ridge <alpha>",
    help: "ridge α of liar / liar-seq: λ = α · mean(diag(X_uᵀX_u)); auto: chosen per layer and module from a small grid by the error on held-out calibration windows",
    hint: "a number (0.01 is the fixed choice) or auto (the default: chosen per layer and module)",
  } as NumOrAutoField,
  roundTo: {
    kind: "int",
    min: 1,
    flag: "--round-to <n>",
    help: "keep FFN widths a multiple of n",
  } as IntField,
  skipLayers: {
    kind: "intList",
    min: 0,
    flag: "--skip-layers <list>",
    help: "comma-separated layer indices to leave unpruned",
    hint: "e.g. skip-layers: [0, 5] or --skip-layers 0,5",
  } as IntListField,
  minGroups: {
    kind: "int",
    min: 1,
    flag: "--min-groups <n>",
    help: "minimum KV groups kept per layer",
  } as IntField,
  minChannels: {
    kind: "int",
    min: 1,
    flag: "--min-channels <n>",
    help: "minimum FFN channels kept per layer",
  } as IntField,
  batchSize: {
    kind: "int",
    min: 1,
    flag: "--batch-size <n>",
    help: "calibration sequences per forward pass",
  } as IntField,
  dtype: enumOf(["auto", "F32", "F16", "BF16"] as const, {
    flag: "--dtype <t>",
    help: "output weights: auto (input's f16/bf16, else F32) | F32 | F16 | BF16",
  }),
  force: { kind: "bool", flag: "--force", help: "replace an existing output folder" } as BoolField,
  resume: {
    kind: "bool",
    flag: "--resume",
    help: "continue an interrupted prune from its per-layer checkpoints (same settings)",
  } as BoolField,
  threads: {
    kind: "int",
    min: 1,
    flag: "--threads <n>",
    help: "ONNX Runtime intra-op threads (default: all cores)",
  } as IntField,
  maxMemory: {
    kind: "number",
    min: Number.MIN_VALUE,
    flag: "--max-memory <GiB>",
    help: "memory budget: waiting calibration data beyond it is spilled to a temporary file; a prune whose layer does not fit is refused before any work",
    hint: "e.g. --max-memory 6",
  } as NumField,
  quantize: {
    kind: "int",
    min: 0,
    flag: "--quantize <bits>",
    help: "also quantize each pruned layer right after its reconstruction, to 4 (or 8) bits: a GPTQ folder (0 = off)",
    hint: "--quantize 4",
  } as IntField,
  groupSize: {
    kind: "int",
    min: 1,
    flag: "--group-size <n>",
    help: "with --quantize: input channels per scale and zero point (32, 64, 128)",
  } as IntField,
  quantMethod: enumOf(["gptq", "rtn"] as const, {
    flag: "--quant-method <m>",
    help: "with --quantize: gptq (calibrated on the pruned stream) | rtn (round to nearest)",
    code: "E_METHOD_UNKNOWN",
  }),
  gptqOrder: enumOf(["act", "natural"] as const, {
    flag: "--gptq-order <o>",
    help: "with --quantize gptq: act (columns by decreasing Hessian diagonal, groups fixed in natural order: the format stays desc_act false) | natural",
  }),
  asym: {
    kind: "bool",
    flag: "--asym",
    help: "with --quantize: asymmetric grid (default symmetric)",
  } as BoolField,
  quantizeHead: {
    kind: "bool",
    flag: "--quantize-head",
    help: "with --quantize: also quantize the LM head (untied heads; default: it stays in float)",
  } as BoolField,
} as const;

type Schema = typeof RECIPE_SCHEMA;
export type RecipeKey = keyof Schema;
/** settings that have no default (absent = not set) */
type OptionalKey = "threads" | "maxMemory" | "targetSpeedup";

/** A validated recipe: every setting present (the optional ones may be undefined). */
export type Recipe = { [K in Exclude<RecipeKey, OptionalKey>]: ValueOf<Schema[K]> } & {
  [K in OptionalKey]?: ValueOf<Schema[K]>;
};

/** What a library user writes: model, out and any settings (typed: a misspelt name is a type error). */
export type RecipeOptions = Pick<Recipe, "model" | "out"> & Partial<Omit<Recipe, "model" | "out">>;

export const DEFAULTS: Omit<Recipe, "model" | "out" | "calib"> = {
  ratio: 0.3,
  depth: 0,
  depthRatio: 0,
  depthCriterion: "bi",
  targetWorkload: "generation",
  criterion: "obs",
  allocation: "global",
  obsNormalization: "auto",
  reconstruct: "liar",
  createBias: "auto",
  calibration: "sequential",
  gramPrecision: "auto",
  samples: 128,
  seqLen: 256,
  seed: 0,
  ridge: "auto",
  roundTo: 1,
  skipLayers: [],
  minGroups: 1,
  minChannels: 1,
  batchSize: 8,
  dtype: "auto",
  force: false,
  resume: false,
  quantize: 0,
  groupSize: 128,
  quantMethod: "gptq",
  gptqOrder: "act",
  asym: false,
  quantizeHead: false,
};

const KEYS = Object.keys(RECIPE_SCHEMA) as RecipeKey[];

function bad(msg: string, hint: string, code: ErrorCode = "E_RECIPE_INVALID"): never {
  throw new PareError(code, msg, hint);
}

/** The setting's name as a user wrote it (flag form). */
const display = (k: string) => k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** A number from a number or a numeric string (blank strings, null and booleans are not numbers). */
function toNumber(v: unknown): number {
  if (typeof v === "number") return v;
  if (typeof v === "string" && v.trim() !== "") return Number(v);
  return Number.NaN;
}

/** Validate one setting's value (from a flag, a recipe file or a library call) against its field. */
function parseField(key: RecipeKey, f: Field, v: unknown): unknown {
  const name = display(key);
  const code = f.code ?? "E_RECIPE_INVALID";
  switch (f.kind) {
    case "string":
      if (typeof v !== "string" || v === "")
        bad(`${name} must be a non-empty string (got ${JSON.stringify(v)})`, f.help);
      return v;
    case "paths": {
      const list = Array.isArray(v) ? v : [v];
      if (!list.every((x) => typeof x === "string"))
        bad(`${name} must be a file or a list of files (got ${JSON.stringify(v)})`, f.help);
      return (list as string[]).filter(Boolean);
    }
    case "bool":
      if (typeof v !== "boolean") bad(`${name} must be true or false (got ${JSON.stringify(v)})`, f.help);
      return v;
    case "enum":
      if (typeof v !== "string" || !f.values.includes(v)) {
        const what =
          key === "reconstruct" ? "reconstruction method" : key === "calibration" ? "calibration mode" : name;
        bad(`unknown ${what} ${JSON.stringify(v)}`, `use one of: ${f.values.join(", ")}`, code);
      }
      return v;
    case "int": {
      const n = toNumber(v);
      if (!Number.isInteger(n) || n < f.min)
        bad(
          `${name} must be an integer ≥ ${f.min} (got ${JSON.stringify(v)})`,
          f.hint ?? `set ${name} to a whole number`,
          code,
        );
      return n;
    }
    case "number": {
      const n = toNumber(v);
      const ok = Number.isFinite(n) && n >= f.min && (f.below === undefined || n < f.below);
      if (!ok) {
        const range = f.below !== undefined ? `[${f.min}, ${f.below})` : f.min > 0 ? "> 0" : `≥ ${f.min}`;
        bad(`${name} ${JSON.stringify(v)} is outside ${range}`, f.hint ?? f.help, code);
      }
      return n;
    }
    case "numberOrAuto": {
      if (v === "auto") return v;
      const n = toNumber(v);
      if (!(Number.isFinite(n) && n >= f.min))
        bad(
          `${name} must be a number ≥ ${f.min} or "auto" (got ${JSON.stringify(v)})`,
          f.hint ?? f.help,
          code,
        );
      return n;
    }
    case "intList": {
      const list = Array.isArray(v)
        ? v
        : typeof v === "number"
          ? [v]
          : typeof v === "string"
            ? v
                .split(",")
                .map((x) => x.trim())
                .filter(Boolean)
            : null;
      if (!list) bad(`${name} must be a list of integers (got ${JSON.stringify(v)})`, f.hint ?? f.help);
      return list.map((x) => {
        const n = toNumber(x);
        if (!Number.isInteger(n) || n < f.min)
          bad(`${name} must list integers ≥ ${f.min} (got ${JSON.stringify(x)})`, f.hint ?? f.help);
        return n;
      });
    }
  }
}

/** Read a recipe file (YAML or JSON); unknown keys are refused. Keys may be camelCase, kebab-case or snake_case. */
export function readRecipeFile(file: string): Partial<Record<RecipeKey, unknown>> {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    throw new PareError("E_IO", `cannot read recipe ${file}`, "check the --recipe path");
  }
  let obj: unknown;
  try {
    obj = YAML.parse(text);
  } catch (e) {
    throw new PareError(
      "E_RECIPE_INVALID",
      `${file}: not valid YAML (${(e as Error).message.split("\n")[0]})`,
      "fix the recipe file syntax",
    );
  }
  if (typeof obj !== "object" || obj === null || Array.isArray(obj))
    bad(`${file}: a recipe must be a mapping of settings`, "see docs/cli.md: recipe files");
  const out: Partial<Record<RecipeKey, unknown>> = {};
  for (const [k, v] of Object.entries(obj as Record<string, unknown>)) {
    const key = k.replace(/[-_]([a-z])/g, (_, c: string) => c.toUpperCase()) as RecipeKey;
    if (!KEYS.includes(key)) bad(`${file}: unknown recipe key "${k}"`, `known keys: ${KEYS.join(", ")}`);
    out[key] = v;
  }
  if (typeof out.calib === "string") out.calib = [out.calib];
  return out;
}

/**
 * Merge defaults < given settings and validate everything that can be checked without loading the model.
 * Accepts untyped values (CLI strings, recipe files): each is checked against its schema field.
 */
export function resolveRecipe(given: Partial<Record<RecipeKey, unknown>> | RecipeOptions): Recipe {
  const input = given as Partial<Record<RecipeKey, unknown>>;
  for (const k of Object.keys(input))
    if (!KEYS.includes(k as RecipeKey)) bad(`unknown setting "${k}"`, `known settings: ${KEYS.join(", ")}`);
  if (!input.model) bad("no input model given", "pare prune <model> --out <dir>");
  if (!input.out) bad("no output folder given", "add --out <dir>");
  const r: Record<string, unknown> = { calib: [] };
  for (const k of KEYS) {
    const v = k in input && input[k] !== undefined ? input[k] : (DEFAULTS as Record<string, unknown>)[k];
    if (v === undefined && (k === "threads" || k === "maxMemory" || k === "targetSpeedup")) continue;
    if (v === undefined && k === "calib") continue;
    r[k] = parseField(k, RECIPE_SCHEMA[k] as Field, v);
  }
  const recipe = r as Recipe;
  checkDepth(recipe, input.ratio !== undefined);
  if (recipe.reconstruct === "liar-seq" && recipe.calibration !== "sequential")
    bad("liar-seq needs --calibration sequential", "drop --calibration dense, or use --reconstruct liar");
  const needsCalib =
    CRITERIA[recipe.criterion].needs.length > 0 || RECONSTRUCTORS[recipe.reconstruct].needs.length > 0;
  if (needsCalib && recipe.calib.length === 0)
    bad(
      `${recipe.criterion} / ${recipe.reconstruct} need calibration text`,
      "add --calib <file.txt|file.jsonl>, or use --criterion magnitude-l2 --reconstruct none",
    );
  checkQuantize(recipe, needsCalib);
  checkPaths(recipe);
  return recipe;
}

/** The quantization settings of a --quantize recipe (validated: E_USAGE). */
export function quantSettingsOf(r: Recipe): QuantSettings {
  return checkQuantSettings({
    bits: r.quantize as QuantBits,
    groupSize: r.groupSize,
    method: r.quantMethod,
    sym: !r.asym,
    actOrder: r.gptqOrder === "act",
  });
}

/** --quantize: 4 or 8 bits, a valid group size; GPTQ needs the sequential calibration stream. */
function checkQuantize(r: Recipe, calibrated: boolean): void {
  if (r.quantize === 0) {
    if (r.quantizeHead) bad("--quantize-head needs --quantize", "add --quantize 4");
    return;
  }
  quantSettingsOf(r);
  if (r.quantMethod === "gptq" && (!calibrated || r.calibration !== "sequential"))
    bad(
      "--quantize with GPTQ needs the sequential calibration stream",
      "keep --calibration sequential with a calibrated criterion / reconstruction and --calib, or use --quant-method rtn",
    );
  if (r.resume)
    bad("--resume of a quantizing prune is not supported", "run the prune again without --resume");
  // pruned FFN widths must stay divisible by the group size
  if (r.roundTo === 1) r.roundTo = r.groupSize;
  else if (r.roundTo % r.groupSize !== 0)
    bad(
      `--round-to ${r.roundTo} is not a multiple of --group-size ${r.groupSize}`,
      `drop --round-to (with --quantize it defaults to the group size) or use a multiple of ${r.groupSize}`,
    );
}

/** Depth settings that need no model: one of --depth / --depth-ratio; with depth, --ratio defaults to 0. */
function checkDepth(r: Recipe, ratioGiven: boolean): void {
  if (r.targetSpeedup !== undefined) {
    if (r.depth > 0 || r.depthRatio > 0 || ratioGiven)
      bad(
        "--target-speedup chooses the depth and the width ratio itself",
        "drop --depth / --depth-ratio / --ratio, or drop --target-speedup",
      );
    if (!(r.targetSpeedup > 1)) bad("--target-speedup must be above 1", "e.g. --target-speedup 1.3");
    if (r.reconstruct === "bias")
      bad(
        "--target-speedup may remove blocks, which --reconstruct bias cannot compensate",
        "use --reconstruct liar or none",
      );
    return;
  }
  if (r.depth > 0 && r.depthRatio > 0)
    bad(
      "--depth and --depth-ratio are alternatives",
      "give the number of blocks (--depth n) or a fraction (--depth-ratio f)",
    );
  const depth = r.depth > 0 || r.depthRatio > 0;
  if (!depth) return;
  if (!ratioGiven) r.ratio = 0;
  if (r.reconstruct === "bias")
    bad(
      "--depth with --reconstruct bias: a removed block has no bias to compensate with",
      "use --reconstruct liar (compensates the removed blocks by least squares) or --reconstruct none (drops them)",
    );
}

function checkPaths(r: Recipe): void {
  checkOutputPath(r.model, r.out, r.force);
  for (const c of r.calib) {
    if (!fs.existsSync(c))
      throw new PareError("E_IO", `calibration file ${c} not found`, "check the --calib path");
  }
}

/** the ridge α where one number is needed (--ridge auto: the default α; liar / liar-seq choose on held-out batches) */
export function ridgeAlpha(r: Pick<Recipe, "ridge">): number {
  return r.ridge === "auto" ? RIDGE_DEFAULT : r.ridge;
}

/** The `pare prune` flags of the schema: [commander flag, help with its default]. */
export function recipeFlags(): [RecipeKey, string, string][] {
  return KEYS.flatMap((k) => {
    const f = RECIPE_SCHEMA[k] as Field;
    if (!f.flag) return [];
    const def = (DEFAULTS as Record<string, unknown>)[k];
    const shown =
      def === undefined || typeof def === "boolean" || (Array.isArray(def) && def.length === 0)
        ? ""
        : ` (default ${def})`;
    const values = f.kind === "enum" && !f.help.includes("|") ? `: ${f.values.join(" | ")}` : "";
    return [[k, f.flag, `${f.help}${values}${shown}`]];
  });
}
