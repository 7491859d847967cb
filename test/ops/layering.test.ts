/**
 * The layering of src/ (documented in src/ops/index.ts and docs/layout.md): a module imports only from its own
 * layer or lower ones — in particular nothing below onnx/ and runtime/ (tensor/, io/, arch/) imports ORT-backed
 * code, and ops/ imports nothing of calib/ or above.
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../src");

const RANK: Record<string, number> = {
  "errors.ts": 0,
  "version.ts": 0,
  tensor: 0,
  io: 1,
  arch: 2,
  onnx: 3,
  runtime: 3,
  ops: 4,
  calib: 5,
  criteria: 5,
  allocate: 5,
  reconstruct: 5,
  surgery: 5,
  depth: 5,
  export: 5,
  eval: 5,
  quant: 5,
  pipeline: 6,
  api: 7,
  cli: 8,
  "index.ts": 9,
};

function files(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .flatMap((e) =>
      e.isDirectory()
        ? files(path.join(dir, e.name))
        : e.name.endsWith(".ts")
          ? [path.join(dir, e.name)]
          : [],
    );
}

const layerOf = (file: string) => path.relative(SRC, file).split(path.sep)[0];

it("no module of src/ imports from a higher layer", () => {
  const upward: string[] = [];
  for (const file of files(SRC)) {
    const from = layerOf(file);
    for (const m of fs.readFileSync(file, "utf8").matchAll(/from "(\.{1,2}\/[^"]+)"/g)) {
      const to = layerOf(path.resolve(path.dirname(file), m[1]));
      if (RANK[from] === undefined || RANK[to] === undefined) continue;
      if (RANK[to] > RANK[from]) upward.push(`${path.relative(SRC, file)} → ${m[1]}`);
    }
  }
  expect(upward).toEqual([]);
  // every top-level folder has a layer
  for (const e of fs.readdirSync(SRC)) expect(RANK[e], e).toBeDefined();
});
