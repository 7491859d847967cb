/**
 * pare as a library. Every function validates its input (a PareError with a code, a message and a hint
 * otherwise), prints nothing, reports long work through `onProgress` and stops on an AbortSignal, and
 * releases what it opened (ONNX Runtime sessions, file handles, temporary files) before it returns —
 * except `loadModel`, whose result the caller closes.
 *
 *   import { prune, inspect } from "pare";
 *   const report = await prune({ model: "path/to/model", out: "path/to/pruned", ratio: 0.3, calib: ["calib.txt"] });
 */

export {
  type ClassifyTask,
  type EvalResult,
  type EvalTask,
  evaluate,
  type McFormat,
  type McTask,
  type PplTask,
} from "./api/evaluate.ts";
export { type ExportFormat, type ExportOptions, type ExportResult, exportModel } from "./api/export.ts";
export { type GenerateOptions, type GenerateResult, generate } from "./api/generate.ts";
export { type InspectLayer, type InspectResult, inspect } from "./api/inspect.ts";
export {
  type PruneEvent,
  type PruneOptions,
  type PrunePlan,
  type PruneReport,
  planPrune,
  prune,
} from "./api/prune.ts";
export { type QuantizeOptions, type QuantizeReport, quantize } from "./api/quantize.ts";
export { type ReportData, type ReportOptions, writeReport } from "./api/report.ts";
export { type LoadedModel, loadModel } from "./arch/load.ts";
export type { ArchSpec } from "./arch/spec.ts";
export { SPECS as FAMILIES, supportedArchitectures } from "./arch/spec.ts";
export { type ErrorCode, isPareError, PareError } from "./errors.ts";
export {
  CRITERION_NAMES,
  type CriterionName,
  DEFAULTS as RECIPE_DEFAULTS,
  RECONSTRUCTION_NAMES,
  type Recipe,
  type RecipeOptions,
  type ReconstructionName,
} from "./pipeline/recipe.ts";
export { PARE_VERSION as version } from "./version.ts";
