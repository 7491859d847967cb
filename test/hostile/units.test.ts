/**
 * In-process checks of the defences the hostile corpus exercises through the CLI, and of what they must not
 * break: one-line messages, UTF-8 positions, the Hugging Face hub cache layout (symlinks into ../../blobs),
 * pickle detection that never fires on a valid file, pipes that would block, token ids beyond the model's
 * vocabulary, F64 weights beyond the float32 range.
 */

import { isUtf8 } from "node:buffer";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { oneLine, PareError } from "../../src/errors.ts";
import { firstInvalidUtf8, readTextFile } from "../../src/io/datasets.ts";
import { copyAuxFiles, openModelFolder, readJsonObject } from "../../src/io/modelFolder.ts";
import { SafetensorsFile, writeSafetensors } from "../../src/io/safetensors.ts";
import { loadTokenizer } from "../../src/io/tokenizer.ts";
import { makeByteBpeTokenizerJson, makeTinyLlama, writeTinyModel } from "../helpers/tinyModels.ts";
import { safetensorsBytes } from "./corpus.ts";

let root: string;
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-units-"));
});
afterAll(() => {
  if (root) fs.rmSync(root, { recursive: true, force: true });
});
const posix = process.platform !== "win32";

function err(f: () => unknown): PareError {
  try {
    f();
  } catch (e) {
    if (e instanceof PareError) return e;
    throw e;
  }
  throw new Error("expected a PareError");
}

function mkdir(name: string): string {
  const d = path.join(root, name);
  fs.mkdirSync(d, { recursive: true });
  return d;
}

describe("one-line messages", () => {
  it("control characters become escapes, long text is cut", () => {
    expect(oneLine("a\nb\r\tc\u0000\u2028")).toBe("a\\nb\\r\\tc\\u0000\\u2028");
    expect(oneLine("x".repeat(5000))).toHaveLength(2000);
    const e = new PareError("E_IO", "line one\n    at fake (x.js:1:1)", "hint\nsecond");
    expect(e.message).toBe("line one\\n    at fake (x.js:1:1)");
    expect(e.hint).toBe("hint\\nsecond");
  });
});

describe("text files", () => {
  it("firstInvalidUtf8 agrees with the platform's UTF-8 check", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 16 }), (b) => firstInvalidUtf8(b) < 0 === isUtf8(b)),
      { seed: 8, numRuns: 3000 },
    );
  });

  it("names line and column of the first bad byte; a UTF-8 BOM is fine", () => {
    const d = mkdir("text");
    const f = path.join(d, "a.txt");
    fs.writeFileSync(
      f,
      Buffer.concat([Buffer.from("ok line\nnaïve caf"), Buffer.from([0xe9]), Buffer.from("\n")]),
    );
    const e = err(() => readTextFile(f));
    expect(e.code).toBe("E_DATA_INVALID");
    expect(e.message).toContain("a.txt:2:10");
    expect(e.context).toMatchObject({ line: 2, column: 10 });
    fs.writeFileSync(f, `\uFEFFhello\n`);
    expect(readTextFile(f)).toBe("hello\n");
  });
});

describe("model folders", () => {
  it("the Hugging Face hub cache layout (every file a symlink into ../../blobs) opens", () => {
    if (!posix) return;
    const repo = mkdir("hub/models--x--tiny");
    const src = mkdir("hub-src");
    writeTinyModel(src, makeTinyLlama({ seed: 1 }), makeByteBpeTokenizerJson(300));
    const snap = path.join(repo, "snapshots", "0123abcd");
    fs.mkdirSync(snap, { recursive: true });
    fs.mkdirSync(path.join(repo, "blobs"));
    for (const name of fs.readdirSync(src)) {
      const blob = path.join(repo, "blobs", `sha-${name}`);
      fs.copyFileSync(path.join(src, name), blob);
      fs.symlinkSync(path.join("..", "..", "blobs", `sha-${name}`), path.join(snap, name));
    }
    const m = openModelFolder(snap);
    expect(m.hasTokenizer).toBe(true);
    expect(m.store.readF32("model.norm.weight")).toHaveLength(32);
    m.store.close();
    expect(loadTokenizer(snap).encode("the cat").length).toBeGreaterThan(0);
    const out = mkdir("hub-out");
    expect(copyAuxFiles(snap, out).sort()).toEqual(["tokenizer.json", "tokenizer_config.json"]);
    expect(fs.lstatSync(path.join(out, "tokenizer.json")).isFile()).toBe(true); // the content, not the link
  });

  it("copyAuxFiles refuses a tokenizer file that leads outside the folder", () => {
    if (!posix) return;
    const src = mkdir("aux-src");
    fs.writeFileSync(path.join(root, "secret.txt"), "do not copy me");
    fs.symlinkSync(path.join(root, "secret.txt"), path.join(src, "vocab.txt"));
    const out = path.join(root, "aux-out");
    expect(err(() => copyAuxFiles(src, out)).code).toBe("E_PATH_ESCAPE");
    expect(fs.existsSync(path.join(out, "vocab.txt"))).toBe(false);
  });

  it("a named pipe as a JSON file fails at once instead of blocking", () => {
    if (!posix) return;
    const d = mkdir("fifo");
    const p = path.join(d, "config.json");
    execFileSync("mkfifo", [p]);
    const e = err(() => readJsonObject(p, "E_CONFIG_INVALID"));
    expect(e.code).toBe("E_IO");
    expect(e.message).toContain("named pipe");
  });
});

describe("safetensors", () => {
  it("pickle detection never fires on a valid file whose header length starts like a pickle", () => {
    // header length 0x280 = 640: bytes 80 02 00 … — the start of a protocol-2 pickle
    const d = mkdir("st");
    const header: Record<string, unknown> = { t: { dtype: "F32", shape: [2], data_offsets: [0, 8] } };
    let text = JSON.stringify(header);
    text += " ".repeat(640 - Buffer.byteLength(text));
    const f = path.join(d, "ok.safetensors");
    fs.writeFileSync(f, safetensorsBytes(text, new Uint8Array(8)));
    expect([...fs.readFileSync(f).subarray(0, 2)]).toEqual([0x80, 0x02]);
    const st = SafetensorsFile.open(f);
    expect([...st.readF32("t")]).toEqual([0, 0]);
    st.close();
    // the same length field in front of a cut file is "truncated", not "pickle"
    fs.writeFileSync(f, fs.readFileSync(f).subarray(0, 100));
    expect(err(() => SafetensorsFile.open(f)).code).toBe("E_SAFETENSORS_TRUNCATED");
    // a real protocol-2 pickle
    fs.writeFileSync(f, Buffer.from("\x80\x02}q\x00.", "latin1"));
    expect(err(() => SafetensorsFile.open(f)).code).toBe("E_PICKLE_UNSUPPORTED");
  });

  it("F64 weights beyond the float32 range are E_NUMERIC; finite ones read", () => {
    const d = mkdir("f64");
    const f = path.join(d, "w.safetensors");
    const data = new Float64Array([1, 1e300]);
    fs.writeFileSync(
      f,
      safetensorsBytes(
        { "model.layers.3.mlp.up_proj.weight": { dtype: "F64", shape: [2], data_offsets: [0, 16] } },
        new Uint8Array(data.buffer),
      ),
    );
    const st = SafetensorsFile.open(f);
    const e = err(() => st.readF32("model.layers.3.mlp.up_proj.weight"));
    st.close();
    expect(e.code).toBe("E_NUMERIC");
    expect(e.message).toContain("(layer 3)");
    expect(e.context).toMatchObject({ inf: 1, nan: 0, first: 1 });
    writeSafetensors(f, [{ name: "x", shape: [2], data: new Float32Array([1, -2]) }]);
    const ok = SafetensorsFile.open(f);
    expect([...ok.readF32("x")]).toEqual([1, -2]);
    ok.close();
  });
});

describe("tokenizer against the model", () => {
  it("ids beyond config.json's vocab_size are E_TOKENIZER_MISMATCH; within it they encode", () => {
    const d = mkdir("tok");
    writeTinyModel(d, makeTinyLlama({ seed: 2 }), makeByteBpeTokenizerJson(300));
    expect(
      loadTokenizer(d)
        .encode("the cat")
        .every((id) => id < 300),
    ).toBe(true);
    const cfg = JSON.parse(fs.readFileSync(path.join(d, "config.json"), "utf8"));
    fs.writeFileSync(path.join(d, "config.json"), JSON.stringify({ ...cfg, vocab_size: 200 }));
    const e = err(() => loadTokenizer(d));
    expect(e.code).toBe("E_TOKENIZER_MISMATCH");
    expect(e.message).toContain("vocab_size 200");
  });
});
