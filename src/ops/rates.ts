/** This machine's ORT MatMul rates (the cost model's time estimates and the benchmarks' references). */
import { GraphBuilder } from "../onnx/graph.ts";
import { f32, f64, Session } from "../runtime/ort.ts";

/** ORT MatMul [m, k]·[k, n] rate in FLOP/s: the best of `reps` runs after a warm-up. */
export async function matmulRate(
  type: "float32" | "float64",
  m: number,
  k: number,
  n: number,
  opts: { threads?: number; reps?: number } = {},
): Promise<number> {
  const g = new GraphBuilder("rate");
  const a = g.input("a", type, [m, k]);
  const b = g.input("b", type, [k, n]);
  g.output(g.op("MatMul", [a, b], {}, "y"), type, [m, n]);
  const s = await Session.create(g.toModel(), { threads: opts.threads, optLevel: "basic" });
  try {
    const fill = (len: number) => Array.from({ length: len }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
    const t = (dims: number[]) =>
      type === "float32"
        ? f32(dims, Float32Array.from(fill(dims[0] * dims[1])))
        : f64(dims, Float64Array.from(fill(dims[0] * dims[1])));
    const feeds = { a: t([m, k]), b: t([k, n]) };
    await s.run(feeds);
    let best = Infinity;
    for (let i = 0; i < (opts.reps ?? 4); i++) {
      const t0 = performance.now();
      await s.run(feeds);
      best = Math.min(best, (performance.now() - t0) / 1000);
    }
    return (2 * m * k * n) / best;
  } finally {
    await s.release();
  }
}
