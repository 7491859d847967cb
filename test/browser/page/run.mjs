// Loaded by index.html. Exposes globalThis.pareRun(modelUrl, feeds, outputNames) → { name: { dims, data } },
// running the model with onnxruntime-web's WASM backend on one thread, and sets globalThis.pareReady.
// Feeds come as { name: { type: "int64" | "float32", dims, data: number[] } } (plain JSON from the test).
import * as ort from "/ort/ort.wasm.min.mjs";

ort.env.wasm.numThreads = 1;
ort.env.wasm.proxy = false;
ort.env.wasm.wasmPaths = "/ort/";
ort.env.logLevel = "error";

function toTensor(t) {
  if (t.type === "int64")
    return new ort.Tensor(
      "int64",
      BigInt64Array.from(t.data, (x) => BigInt(x)),
      t.dims,
    );
  if (t.type === "float32") return new ort.Tensor("float32", Float32Array.from(t.data), t.dims);
  throw new Error(`unsupported feed type ${t.type}`);
}

globalThis.pareRun = async (modelUrl, feeds, outputNames) => {
  const session = await ort.InferenceSession.create(modelUrl, {
    executionProviders: ["wasm"],
    graphOptimizationLevel: "all",
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
  });
  try {
    const f = {};
    for (const [name, t] of Object.entries(feeds)) f[name] = toTensor(t);
    const r = await session.run(f);
    const out = {};
    for (const n of outputNames)
      out[n] = { dims: [...r[n].dims], type: r[n].type, data: Array.from(r[n].data) };
    return {
      outputs: out,
      inputNames: [...session.inputNames],
      outputNames: [...session.outputNames],
      ortVersion: ort.env.versions?.web ?? "",
      crossOriginIsolated: globalThis.crossOriginIsolated === true,
    };
  } finally {
    await session.release();
  }
};

globalThis.pareReady = true;
