/** Output-path rules shared by every writer: never inside (or containing) the input, never an existing folder without force. */
import fs from "node:fs";
import path from "node:path";
import { PareError } from "../errors.ts";
import { resolveModelPath } from "../io/hubCache.ts";

function real(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}

export function inside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel));
}

/** The input's real location: a Hugging Face cache id resolves to its snapshot (an unresolvable one stays as given). */
function inputPath(input: string): string {
  try {
    return real(resolveModelPath(input));
  } catch {
    return real(input);
  }
}

export function checkOutputPath(input: string, out: string, force: boolean, flag = "--out"): void {
  const inp = inputPath(input);
  const outParent = real(path.dirname(path.resolve(out)));
  const o = path.join(outParent, path.basename(path.resolve(out)));
  if (inside(o, inp)) {
    throw new PareError(
      "E_OUTPUT_INSIDE_INPUT",
      `${flag} ${out} is the input folder or inside it`,
      "write to a folder outside the input; pare never modifies its input",
    );
  }
  if (inside(inp, o)) {
    throw new PareError(
      "E_OUTPUT_INSIDE_INPUT",
      `the input folder lies inside ${flag} ${out}`,
      "choose an output folder that does not contain the input",
    );
  }
  if (fs.existsSync(o) && !force) {
    throw new PareError(
      "E_OUTPUT_EXISTS",
      `output folder ${out} already exists`,
      `choose another ${flag}, or add --force to replace it`,
    );
  }
}
