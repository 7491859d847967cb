import { loadModel } from "../arch/load.ts";
import { PareError } from "../errors.ts";
import { benchSpeed } from "../eval/latency.ts";
import type { Console } from "./io.ts";

export async function benchCommand(
  dirs: string[],
  f: { runs?: string; threads?: string; seqLen?: string; batch?: string },
  con: Console,
): Promise<void> {
  if (dirs.length === 0) throw new PareError("E_USAGE", "no model given", "pare bench <dense> [<pruned> …]");
  const num = (v: string | undefined, name: string) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1)
      throw new PareError("E_USAGE", `${name} must be a positive integer (got "${v}")`, `e.g. ${name} 8`);
    return n;
  };
  const models = dirs.map((d) => loadModel(d));
  try {
    const kinds = new Set(models.map((m) => m.spec.kind));
    if (kinds.size > 1)
      throw new PareError(
        "E_USAGE",
        "pare bench compares models of one kind (all decoders or all encoders)",
        "pass a dense model and its pruned versions",
      );
    const r = await benchSpeed(models, {
      runs: num(f.runs, "--runs"),
      threads: num(f.threads, "--threads"),
      seqLen: num(f.seqLen, "--seq-len"),
      batch: num(f.batch, "--batch"),
      onProgress: (msg) => con.info(`» ${msg}`),
    });
    con.result(r as unknown as Record<string, unknown>, () => {
      const base = r.models[0];
      const lines = ["model                                      params     FLOPs/token  (vs first)"];
      for (const m of r.models) {
        lines.push(
          `${m.dir.slice(-40).padEnd(40)} ${m.params.toLocaleString("en-US").padStart(12)} ${m.flopsPerToken.toExponential(3).padStart(12)}  ${(m.flopsPerToken / base.flopsPerToken).toFixed(3)}×`,
        );
      }
      for (const c of r.cases) {
        lines.push("", `${c.name} — median of ${r.runs} runs, interleaved`);
        c.seconds.forEach((s, i) => {
          const speedup = c.seconds[0] / s;
          lines.push(
            `  ${r.models[i].dir.slice(-40).padEnd(40)} ${(1000 * s).toFixed(1).padStart(9)} ms  ${c.tokensPerSecond[i].toFixed(0).padStart(8)} tokens/s  speedup ${speedup.toFixed(2)}×  (FLOP reduction ${(base.flopsPerToken / r.models[i].flopsPerToken).toFixed(2)}×)`,
          );
        });
      }
      return lines.join("\n");
    });
  } finally {
    for (const m of models) m.close();
  }
}
