/**
 * The one error type of pare. Every failure a user can cause carries a stable `code`,
 * a one-line message saying what was wrong, and a hint saying what to do.
 */
export type ErrorCode =
  | "E_USAGE"
  | "E_IO"
  | "E_FOLDER_MISSING"
  | "E_FOLDER_INCOMPLETE"
  | "E_CONFIG_INVALID"
  | "E_CONFIG_MISMATCH"
  | "E_ARCH_UNSUPPORTED"
  | "E_SAFETENSORS_INVALID"
  | "E_SAFETENSORS_TRUNCATED"
  | "E_SAFETENSORS_DTYPE"
  | "E_SHARD_INDEX_INVALID"
  | "E_PATH_ESCAPE"
  | "E_PICKLE_UNSUPPORTED"
  | "E_TENSOR_MISSING"
  | "E_TENSOR_SHAPE"
  | "E_TOKENIZER_INVALID"
  | "E_TOKENIZER_MISMATCH"
  | "E_DATA_EMPTY"
  | "E_DATA_INVALID"
  | "E_DATA_TOO_SHORT"
  | "E_RUNTIME"
  | "E_NUMERIC"
  | "E_RECIPE_INVALID"
  | "E_RATIO_INVALID"
  | "E_CRITERION_UNKNOWN"
  | "E_METHOD_UNKNOWN"
  | "E_OUTPUT_EXISTS"
  | "E_OUTPUT_INSIDE_INPUT"
  | "E_LAYER_EMPTIED"
  | "E_INTERRUPTED"
  | "E_ABORTED"
  | "E_MODEL_NOT_FOUND"
  | "E_MEMORY_BUDGET"
  | "E_NO_SPACE"
  | "E_OUTPUT_LOCKED"
  | "E_CHECKPOINT_INVALID"
  | "E_INTERNAL";

/** Longest message kept (a hostile file name or tensor name could otherwise flood the terminal). */
const MAX_MESSAGE_CHARS = 2000;

/**
 * One line, whatever went into it: control characters (newlines, carriage returns, escapes, the Unicode line
 * separators) are shown as escapes, so that text from a hostile file (a tensor or architecture name with a
 * newline and "    at …") can never fake a second line or a stack trace; overlong text is cut.
 */
export function oneLine(text: string, max = MAX_MESSAGE_CHARS): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what is replaced
  let s = text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => {
    const named: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };
    return named[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
  });
  if (s.length > max) s = `${s.slice(0, max - 1)}…`;
  return s;
}

export class PareError extends Error {
  readonly code: ErrorCode;
  readonly hint: string;
  readonly context: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, hint: string, context: Record<string, unknown> = {}) {
    super(oneLine(message));
    this.name = "PareError";
    this.code = code;
    this.hint = oneLine(hint);
    this.context = context;
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, hint: this.hint, ...this.context };
  }
}

export function isPareError(e: unknown): e is PareError {
  return e instanceof PareError;
}
