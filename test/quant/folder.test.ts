/**
 * The GPTQ folder: packing as AutoGPTQ / transformers lay it out (nibbles low first along in for qweight
 * [in/8, out] and along out for qzeros [groups, out/8], zero points stored as z − 1), `quantize()` of a tiny
 * seeded LLaMA into a folder that pare reads back (dequantized on read) and evaluates.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { evaluate } from "../../src/api/evaluate.ts";
import { quantize } from "../../src/api/quantize.ts";
import { loadModel } from "../../src/arch/load.ts";
import {
  dequantizeGptq,
  gptqConfigOf,
  packQweight,
  packQzeros,
  unpackQweight,
  unpackQzeros,
} from "../../src/io/gptqFormat.ts";
import { TensorStore } from "../../src/io/safetensors.ts";
import { closeSharedOps } from "../../src/ops/index.ts";
import { f16ToF32 } from "../../src/tensor/dtype.ts";
import { Rng } from "../helpers/rng.ts";
import { makeByteBpeTokenizerJson, makeTinyLlama, writeTinyModel } from "../helpers/tinyModels.ts";

describe("packing", () => {
  it("qweight packs 8 consecutive input channels of one output, lowest nibble first", () => {
    // q [out = 1, in = 8] = 1..8 → one int32 0x87654321
    const q = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(Array.from(packQweight(q, 1, 8, 4))).toEqual([0x87654321 | 0]);
    // q [out = 2, in = 8]: qweight [1, 2], column j = output j
    const q2 = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 15, 0, 0, 0, 0, 0, 0, 15]);
    expect(Array.from(packQweight(q2, 2, 8, 4))).toEqual([0x87654321 | 0, 0xf000000f | 0]);
    // 8 bits: 4 per int32
    expect(Array.from(packQweight(Uint8Array.from([1, 2, 3, 255]), 1, 4, 8))).toEqual([0xff030201 | 0]);
  });

  it("symmetric 4-bit zero points (8) are stored as 7 in every nibble: 0x77777777", () => {
    const z = new Uint8Array(2 * 16).fill(8); // [groups 2, out 16]
    const packed = packQzeros(z, 2, 16, 4);
    expect(Array.from(packed)).toEqual(new Array(4).fill(0x77777777));
    expect(Array.from(unpackQzeros(packed, 2, 16, 4))).toEqual(Array.from(z));
    // v2 stores z itself
    expect(Array.from(packQzeros(z, 2, 16, 4, true))).toEqual(new Array(4).fill(0x88888888 | 0));
  });

  it("pack → unpack round trips, and dequantization follows scales · (q − z) by g_idx", () => {
    const rng = new Rng(3);
    const out = 16;
    const cols = 32;
    const g = 16;
    const q = Uint8Array.from({ length: out * cols }, () => rng.int(16));
    const z = Uint8Array.from({ length: (cols / g) * out }, () => 1 + rng.int(15));
    expect(Array.from(unpackQweight(packQweight(q, out, cols, 4), out, cols, 4))).toEqual(Array.from(q));
    const scales = Uint16Array.from({ length: (cols / g) * out }, () => 0x2000 + rng.int(0x1000)); // f16 bits
    const w = dequantizeGptq(
      { qweight: packQweight(q, out, cols, 4), qzeros: packQzeros(z, cols / g, out, 4), scales },
      out,
      cols,
      { bits: 4, groupSize: g, sym: false, descAct: false, v2: false },
    );
    const s = f16ToF32(scales);
    for (let j = 0; j < out; j++)
      for (let c = 0; c < cols; c++) {
        const t = Math.floor(c / g) * out + j;
        expect(w[j * cols + c]).toBe(Math.fround(s[t] * (q[j * cols + c] - z[t])));
      }
  });

  it("quantization_config is read and checked", () => {
    expect(gptqConfigOf({})).toBeUndefined();
    expect(gptqConfigOf({ quantization_config: { quant_method: "awq" } })).toBeUndefined();
    expect(
      gptqConfigOf({ quantization_config: { quant_method: "gptq", bits: 4, group_size: 32, sym: false } }),
    ).toEqual({ bits: 4, groupSize: 32, sym: false, descAct: false, v2: false });
    expect(() =>
      gptqConfigOf({ quantization_config: { quant_method: "gptq", bits: 3, group_size: 32 } }),
    ).toThrow(/bits 3/);
    expect(() =>
      gptqConfigOf({ quantization_config: { quant_method: "gptq", bits: 4, group_size: -1 } }),
    ).toThrow(/group_size/);
  });
});

const WORDS = "the cat sat on a mat while dogs ran past green hills and birds sang over quiet rivers".split(
  " ",
);

describe("quantize() into a GPTQ folder", () => {
  let root: string;
  let dense: string;
  let text: string;
  beforeAll(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-quant-"));
    dense = path.join(root, "dense");
    writeTinyModel(dense, makeTinyLlama({ seed: 11 }), makeByteBpeTokenizerJson(300));
    const rng = new Rng(5);
    text = path.join(root, "calib.txt");
    fs.writeFileSync(text, Array.from({ length: 3000 }, () => WORDS[rng.int(WORDS.length)]).join(" "));
  });
  afterAll(async () => {
    fs.rmSync(root, { recursive: true, force: true });
    await closeSharedOps();
  });

  for (const [method, asym] of [
    ["gptq", false],
    ["gptq", true],
    ["rtn", false],
  ] as const) {
    it(`${method}${asym ? " asym" : ""}: the folder holds the GPTQ tensors and reads back as its dequantized weights`, async () => {
      const out = path.join(root, `${method}-${asym}`);
      const r = await quantize({
        model: dense,
        out,
        groupSize: 16,
        method,
        asym,
        calib: [text],
        samples: 16,
        seqLen: 32,
      });
      expect(r.linears).toHaveLength(2 * 7);
      const cfg = JSON.parse(fs.readFileSync(path.join(out, "config.json"), "utf8"));
      expect(cfg.quantization_config).toMatchObject({
        quant_method: "gptq",
        bits: 4,
        group_size: 16,
        sym: !asym,
        desc_act: false,
      });
      const store = TensorStore.openFolder(out);
      const base = "model.layers.1.mlp.down_proj";
      expect(store.info(`${base}.qweight`)).toMatchObject({ dtype: "I32", shape: [48 / 8, 32] });
      expect(store.info(`${base}.qzeros`)).toMatchObject({ dtype: "I32", shape: [3, 32 / 8] });
      expect(store.info(`${base}.scales`)).toMatchObject({
        dtype: "F16",
        shape: [3, 32],
      });
      expect(store.info(`${base}.g_idx`)).toMatchObject({ dtype: "I32", shape: [48] });
      expect(store.has(`${base}.weight`)).toBe(false);
      expect(store.info("model.embed_tokens.weight").dtype).toBe("F32");
      store.close();

      const m = loadModel(out);
      const d = loadModel(dense);
      try {
        expect(m.weights.shape(`${base}.weight`)).toEqual([32, 48]);
        // every linear reads back within half a grid step of the dense weight it quantizes (RTN), and the
        // non-quantized tensors are the dense ones
        const w = m.weights.get(`${base}.weight`);
        const w0 = d.weights.get(`${base}.weight`);
        let maxDiff = 0;
        for (let k = 0; k < w.length; k++) maxDiff = Math.max(maxDiff, Math.abs(w[k] - w0[k]));
        expect(maxDiff).toBeGreaterThan(0);
        if (method === "rtn") expect(maxDiff).toBeLessThan(0.1);
        expect(Array.from(m.weights.get("model.norm.weight"))).toEqual(
          Array.from(d.weights.get("model.norm.weight")),
        );
      } finally {
        m.close();
        d.close();
      }
      const ppl = await evaluate(out, { task: "ppl", data: text, seqLen: 32 });
      expect(Number.isFinite((ppl as { ppl: number }).ppl)).toBe(true);
      if (method === "gptq") for (const l of r.linears) expect(l.relError).toBeLessThan(0.2);
    });
  }

  it("bad settings fail before any work, and nothing is written", async () => {
    const out = path.join(root, "bad");
    const codeOf = (p: Promise<unknown>) =>
      p.then(
        () => "ok",
        (e) => (e as { code: string }).code,
      );
    expect(await codeOf(quantize({ model: dense, out, bits: 3 as 4, calib: [text] }))).toBe("E_USAGE");
    expect(await codeOf(quantize({ model: dense, out, groupSize: 32, calib: [text] }))).toBe(
      "E_CONFIG_MISMATCH",
    );
    expect(await codeOf(quantize({ model: dense, out, groupSize: 16 }))).toBe("E_USAGE"); // GPTQ without text
    expect(fs.existsSync(out)).toBe(false);
  });
});
