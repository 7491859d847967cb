/** `pare quantize`: a printer over the library's quantize() (src/api/quantize.ts). */
import { quantize } from "../api/quantize.ts";
import { PareError } from "../errors.ts";
import type { QuantBits, QuantMethod } from "../quant/settings.ts";
import type { Console } from "./io.ts";

export interface QuantizeFlags {
  out?: string;
  bits?: string;
  groupSize?: string;
  quantMethod?: string;
  gptqOrder?: string;
  asym?: boolean;
  quantizeHead?: boolean;
  calib?: string[];
  samples?: string;
  seqLen?: string;
  seed?: string;
  batchSize?: string;
  force?: boolean;
}

function int(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n))
    throw new PareError(
      "E_USAGE",
      `${flag} ${JSON.stringify(v)} is not an integer`,
      `give ${flag} a whole number`,
    );
  return n;
}

export async function quantizeCommand(model: string, f: QuantizeFlags, con: Console): Promise<void> {
  if (!f.out) throw new PareError("E_USAGE", "no output folder given", "add --out <dir>");
  const r = await quantize({
    model,
    out: f.out,
    bits: int("--bits", f.bits) as QuantBits | undefined,
    groupSize: int("--group-size", f.groupSize),
    method: f.quantMethod as QuantMethod | undefined,
    gptqOrder: f.gptqOrder as "act" | "natural" | undefined,
    asym: f.asym,
    quantizeHead: f.quantizeHead,
    calib: f.calib,
    samples: int("--samples", f.samples),
    seqLen: int("--seq-len", f.seqLen),
    seed: int("--seed", f.seed),
    batchSize: int("--batch-size", f.batchSize),
    force: f.force,
    onProgress: (e) => {
      if (e.type === "phase") con.info(`» ${e.phase}${e.detail ? `: ${e.detail}` : ""}`);
      else if (e.type === "layer") con.progress("  layers", e.layer + 1, e.layers);
      else if (e.type === "note") con.info(`  note: ${e.message}`);
    },
  });
  for (const n of r.notes) con.info(`  note: ${n}`);
  const errs = r.linears.map((l) => l.relError).filter((e): e is number => e !== undefined);
  con.result({ ...r, model }, () =>
    [
      `quantized ${model} → ${r.out}`,
      `  method      ${r.method}, ${r.bits}-bit, group ${r.groupSize}, ${r.sym ? "symmetric" : "asymmetric"}`,
      `  linears     ${r.linears.length}${errs.length ? `, relative output error on the calibration text: median ${median(errs).toExponential(2)}, max ${Math.max(...errs).toExponential(2)}` : ""}`,
      `  size        ${(r.bytes / 1024 ** 2).toFixed(2)} MiB (model.safetensors)`,
      `  time        ${r.seconds.toFixed(1)} s`,
      "  loads with  pare (eval, generate, export, bench), transformers with a GPTQ backend, vLLM",
    ].join("\n"),
  );
}

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}
