/** The pruning recipe: defaults, validation (before any work), YAML/JSON recipe files. */
import fs from "node:fs";
import YAML from "yaml";
import { CRITERIA } from "../criteria/index.ts";
import { PareError } from "../errors.ts";
import { checkOutputPath } from "../export/paths.ts";
import { RECONSTRUCTORS } from "../reconstruct/index.ts";

export interface Recipe {
  model: string;
  out: string;
  ratio: number;
  criterion: string;
  allocation: "uniform" | "global";
  reconstruct: string;
  calibration: "dense" | "sequential";
  /** float64 Gram, or float32 chunk products summed in float64 ("auto": f64 up to 1024 channels) */
  gramPrecision: "auto" | "f64" | "mixed";
  calib: string[];
  samples: number;
  seqLen: number;
  seed: number;
  /** ridge α of liar / liar-seq: λ = α · mean(diag(X_uᵀX_u)) */
  ridge: number;
  roundTo: number;
  skipLayers: number[];
  minGroups: number;
  minChannels: number;
  batchSize: number;
  dtype: "auto" | "F32" | "F16" | "BF16";
  force: boolean;
  /** continue from the per-layer checkpoints of an interrupted run with the same settings */
  resume: boolean;
  threads?: number;
  /** refuse (before any work) a plan whose estimated peak memory exceeds this many GiB */
  maxMemory?: number;
}

export const DEFAULTS: Omit<Recipe, "model" | "out" | "calib"> = {
  ratio: 0.3,
  criterion: "flap-wifv",
  allocation: "global",
  reconstruct: "liar",
  calibration: "sequential",
  gramPrecision: "auto",
  samples: 128,
  seqLen: 256,
  seed: 0,
  ridge: 0.01,
  roundTo: 1,
  skipLayers: [],
  minGroups: 1,
  minChannels: 1,
  batchSize: 8,
  dtype: "auto",
  force: false,
  resume: false,
};

const KEYS = new Set<string>(["model", "out", "calib", ...Object.keys(DEFAULTS), "threads", "maxMemory"]);

function bad(
  msg: string,
  hint: string,
  code:
    | "E_RECIPE_INVALID"
    | "E_RATIO_INVALID"
    | "E_CRITERION_UNKNOWN"
    | "E_METHOD_UNKNOWN" = "E_RECIPE_INVALID",
): never {
  throw new PareError(code, msg, hint);
}

function int(v: unknown, name: string, min: number): number {
  const n = typeof v === "string" ? Number(v) : v;
  if (typeof v === "string" && v.trim() === "")
    bad(`${name} must be an integer ≥ ${min} (got an empty value)`, `set ${name} to a whole number`);
  if (typeof n !== "number" || !Number.isInteger(n) || n < min)
    bad(`${name} must be an integer ≥ ${min} (got ${JSON.stringify(v)})`, `set ${name} to a whole number`);
  return n;
}

/** Read a recipe file (YAML or JSON); unknown keys are refused. Keys may be camelCase or kebab-case. */
export function readRecipeFile(file: string): Partial<Recipe> {
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
    bad(`${file}: a recipe must be a mapping of settings`, "see README: Recipe files");
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj as Record<string, unknown>)) {
    const key = k.replace(/[-_]([a-z])/g, (_, c: string) => c.toUpperCase());
    if (!KEYS.has(key)) bad(`${file}: unknown recipe key "${k}"`, `known keys: ${[...KEYS].join(", ")}`);
    out[key] = v;
  }
  if (typeof out.calib === "string") out.calib = [out.calib];
  return out as Partial<Recipe>;
}

/** Merge defaults < recipe file < flags and validate everything that can be checked without loading the model. */
export function resolveRecipe(partial: Partial<Recipe>): Recipe {
  const r = { ...DEFAULTS, calib: [], ...partial } as Recipe;
  if (!r.model) bad("no input model given", "pare prune <model> --out <dir>");
  if (!r.out) bad("no output folder given", "add --out <dir>");
  const ratioIn = r.ratio as unknown;
  r.ratio =
    typeof ratioIn === "number" || (typeof ratioIn === "string" && ratioIn.trim() !== "")
      ? Number(ratioIn)
      : Number.NaN;
  if (!(r.ratio >= 0 && r.ratio < 1))
    bad(
      `ratio ${partial.ratio} is outside [0, 1)`,
      "--ratio is the fraction of attention+MLP parameters to remove, e.g. 0.3",
      "E_RATIO_INVALID",
    );
  if (!CRITERIA[r.criterion])
    bad(
      `unknown criterion "${r.criterion}"`,
      `use one of: ${Object.keys(CRITERIA).join(", ")}`,
      "E_CRITERION_UNKNOWN",
    );
  if (!RECONSTRUCTORS[r.reconstruct])
    bad(
      `unknown reconstruction method "${r.reconstruct}"`,
      `use one of: ${Object.keys(RECONSTRUCTORS).join(", ")}`,
      "E_METHOD_UNKNOWN",
    );
  if (r.allocation !== "uniform" && r.allocation !== "global")
    bad(`unknown allocation "${r.allocation}"`, "use uniform or global", "E_METHOD_UNKNOWN");
  if (r.calibration !== "dense" && r.calibration !== "sequential")
    bad(`unknown calibration mode "${r.calibration}"`, "use dense or sequential", "E_METHOD_UNKNOWN");
  if (!["auto", "f64", "mixed"].includes(r.gramPrecision))
    bad(`unknown Gram precision "${r.gramPrecision}"`, "use auto, f64 or mixed", "E_METHOD_UNKNOWN");
  if (r.reconstruct === "liar-seq" && r.calibration !== "sequential")
    bad("liar-seq needs --calibration sequential", "drop --calibration dense, or use --reconstruct liar");
  if (!["auto", "F32", "F16", "BF16"].includes(r.dtype))
    bad(`unknown dtype "${r.dtype}"`, "use auto, F32, F16 or BF16");
  r.samples = int(r.samples, "samples", 1);
  r.seqLen = int(r.seqLen, "seq-len", 2);
  r.seed = int(r.seed, "seed", 0);
  r.roundTo = int(r.roundTo, "round-to", 1);
  r.minGroups = int(r.minGroups, "min-groups", 1);
  r.minChannels = int(r.minChannels, "min-channels", 1);
  r.batchSize = int(r.batchSize, "batch-size", 1);
  if (r.threads !== undefined) r.threads = int(r.threads, "threads", 1);
  if (r.maxMemory !== undefined) {
    r.maxMemory = Number(r.maxMemory);
    if (!(r.maxMemory > 0))
      bad(
        `max-memory must be a positive number of GiB (got ${JSON.stringify(partial.maxMemory)})`,
        "e.g. --max-memory 6",
      );
  }
  const ridgeIn = r.ridge as unknown;
  r.ridge =
    typeof ridgeIn === "number" || (typeof ridgeIn === "string" && ridgeIn.trim() !== "")
      ? Number(ridgeIn)
      : Number.NaN;
  if (!(r.ridge >= 0 && Number.isFinite(r.ridge)))
    bad(`ridge must be ≥ 0 (got ${partial.ridge})`, "the default is 0.01");
  const skip = r.skipLayers as unknown;
  const skipList = Array.isArray(skip)
    ? skip
    : typeof skip === "number"
      ? [skip]
      : typeof skip === "string"
        ? skip
            .split(",")
            .map((x) => x.trim())
            .filter(Boolean)
        : skip == null
          ? []
          : null;
  if (!skipList)
    bad(
      `skip-layers must be a list of layer indices (got ${JSON.stringify(skip)})`,
      "e.g. skip-layers: [0, 5] or --skip-layers 0,5",
    );
  r.skipLayers = skipList.map((x) => int(x, "skip-layers", 0));
  r.calib = (Array.isArray(r.calib) ? r.calib : [r.calib]).filter(Boolean);
  const needsCalib = CRITERIA[r.criterion].needs.length > 0 || RECONSTRUCTORS[r.reconstruct].needs.length > 0;
  if (needsCalib && r.calib.length === 0)
    bad(
      `${r.criterion} / ${r.reconstruct} need calibration text`,
      "add --calib <file.txt|file.jsonl>, or use --criterion magnitude-l2 --reconstruct none",
    );
  checkPaths(r);
  return r;
}

function checkPaths(r: Recipe): void {
  checkOutputPath(r.model, r.out, r.force);
  for (const c of r.calib) {
    if (!fs.existsSync(c))
      throw new PareError("E_IO", `calibration file ${c} not found`, "check the --calib path");
  }
}
