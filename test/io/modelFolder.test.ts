import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { PareError } from "../../src/errors.ts";
import { copyAuxFiles, openModelFolder } from "../../src/io/modelFolder.ts";
import { writeSafetensors } from "../../src/io/safetensors.ts";

const dirs: string[] = [];
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "pare-mf-"));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function err(f: () => unknown): PareError {
  try {
    f();
  } catch (e) {
    if (e instanceof PareError) return e;
    throw e;
  }
  throw new Error("expected a PareError");
}

function modelDir(config: string | object = { model_type: "llama" }): string {
  const dir = tmpDir();
  fs.writeFileSync(
    path.join(dir, "config.json"),
    typeof config === "string" ? config : JSON.stringify(config),
  );
  writeSafetensors(path.join(dir, "model.safetensors"), [
    { name: "w", shape: [2], data: new Float32Array([1, 2]) },
  ]);
  return dir;
}

describe("openModelFolder", () => {
  it("opens config and weights (headers only)", () => {
    const dir = modelDir();
    const m = openModelFolder(dir);
    expect(m.dir).toBe(path.resolve(dir));
    expect(m.config).toEqual({ model_type: "llama" });
    expect(m.hasTokenizer).toBe(false);
    expect(m.store.readF32("w")).toEqual(new Float32Array([1, 2]));
    m.store.close();
    fs.writeFileSync(path.join(dir, "tokenizer.json"), "{}");
    const again = openModelFolder(dir);
    expect(again.hasTokenizer).toBe(true);
    again.store.close();
  });

  it("missing folder or a file → E_FOLDER_MISSING with a hint", () => {
    const e = err(() => openModelFolder(path.join(tmpDir(), "nope")));
    expect(e.code).toBe("E_FOLDER_MISSING");
    expect(e.hint).not.toBe("");
    const file = path.join(tmpDir(), "f");
    fs.writeFileSync(file, "x");
    expect(err(() => openModelFolder(file)).code).toBe("E_FOLDER_MISSING");
  });

  it("no config.json → E_FOLDER_INCOMPLETE", () => {
    const dir = modelDir();
    fs.rmSync(path.join(dir, "config.json"));
    expect(err(() => openModelFolder(dir)).code).toBe("E_FOLDER_INCOMPLETE");
  });

  it("config.json that is not a JSON object → E_CONFIG_INVALID with the position", () => {
    const e = err(() => openModelFolder(modelDir('{\n  "a": 1,\n  oops\n}')));
    expect(e.code).toBe("E_CONFIG_INVALID");
    expect(e.message).toMatch(/config\.json:3:3/);
    expect(e.context).toMatchObject({ line: 3, column: 3 });
    expect(err(() => openModelFolder(modelDir("[1]"))).code).toBe("E_CONFIG_INVALID");
    expect(err(() => openModelFolder(modelDir(""))).code).toBe("E_CONFIG_INVALID");
  });

  it("no weights → the TensorStore errors", () => {
    const dir = modelDir();
    fs.rmSync(path.join(dir, "model.safetensors"));
    expect(err(() => openModelFolder(dir)).code).toBe("E_FOLDER_INCOMPLETE");
    fs.writeFileSync(path.join(dir, "pytorch_model.bin"), "");
    expect(err(() => openModelFolder(dir)).code).toBe("E_PICKLE_UNSUPPORTED");
  });
});

describe("copyAuxFiles", () => {
  it("copies tokenizer and generation files, not config or weights", () => {
    const src = modelDir();
    for (const f of ["tokenizer.json", "tokenizer_config.json", "vocab.txt", "generation_config.json"]) {
      fs.writeFileSync(path.join(src, f), f);
    }
    const dst = path.join(tmpDir(), "out");
    expect(copyAuxFiles(src, dst).sort()).toEqual(
      ["generation_config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"].sort(),
    );
    expect(fs.readdirSync(dst).sort()).toEqual(
      ["generation_config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"].sort(),
    );
    expect(fs.readFileSync(path.join(dst, "vocab.txt"), "utf8")).toBe("vocab.txt");
  });
});
