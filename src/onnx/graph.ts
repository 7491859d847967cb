/**
 * A small ONNX graph builder: named values, nodes, initializers, inputs and outputs,
 * serialized to a ModelProto (opset 17, IR 8 by default) with ProtoWriter.
 */
import { type ElemType, elemTypeCode, ProtoWriter } from "./proto.ts";

export type Dim = number | string; // number = fixed, string = symbolic
export type AttrValue =
  | number
  | string
  | number[]
  | { floats: number[] }
  | { int: number }
  | { float: number };

export type InitData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;

interface Init {
  name: string;
  type: ElemType;
  dims: number[];
  data: InitData;
}
interface ValueInfo {
  name: string;
  type: ElemType;
  shape?: Dim[];
}
interface Node {
  op: string;
  inputs: string[];
  outputs: string[];
  attrs: Record<string, AttrValue>;
  domain: string;
  name: string;
}

export const OPSET = 17;
export const IR_VERSION = 8;

export class GraphBuilder {
  private nodes: Node[] = [];
  private inits: Init[] = [];
  private inputs: ValueInfo[] = [];
  private outputs: ValueInfo[] = [];
  private counter = 0;
  private constCache = new Map<string, string>();
  readonly usesMsDomain = { value: false };

  constructor(readonly name = "pare") {}

  get inputNames(): string[] {
    return this.inputs.map((v) => v.name);
  }
  get outputNames(): string[] {
    return this.outputs.map((v) => v.name);
  }

  fresh(prefix: string): string {
    return `${prefix}__${this.counter++}`;
  }

  input(name: string, type: ElemType, shape: Dim[]): string {
    this.inputs.push({ name, type, shape });
    return name;
  }

  output(name: string, type: ElemType, shape?: Dim[]): string {
    this.outputs.push({ name, type, shape });
    return name;
  }

  /** Give an existing value a second name (an Identity node) — for graph outputs. */
  alias(value: string, name: string): string {
    this.nodes.push({
      op: "Identity",
      inputs: [value],
      outputs: [name],
      attrs: {},
      domain: "",
      name: `n_${name}`,
    });
    return name;
  }

  initializer(name: string, type: ElemType, dims: number[], data: InitData): string {
    this.inits.push({ name, type, dims, data });
    return name;
  }

  /** A cached small constant (int64 or float32). */
  constI64(values: number[]): string {
    const key = `i64:${values.join(",")}`;
    let n = this.constCache.get(key);
    if (!n) {
      n = this.fresh("c_i64");
      this.initializer(n, "int64", [values.length], BigInt64Array.from(values.map((v) => BigInt(v))));
      this.constCache.set(key, n);
    }
    return n;
  }

  scalarI64(v: number): string {
    const key = `si64:${v}`;
    let n = this.constCache.get(key);
    if (!n) {
      n = this.fresh("c_si64");
      this.initializer(n, "int64", [], BigInt64Array.from([BigInt(v)]));
      this.constCache.set(key, n);
    }
    return n;
  }

  scalar(v: number, type: "float32" | "float64" = "float32"): string {
    const key = `s${type}:${v}`;
    let n = this.constCache.get(key);
    if (!n) {
      n = this.fresh("c_f");
      this.initializer(n, type, [], type === "float32" ? Float32Array.from([v]) : Float64Array.from([v]));
      this.constCache.set(key, n);
    }
    return n;
  }

  /** Add a node with one output; returns the output name. */
  op(op: string, inputs: string[], attrs: Record<string, AttrValue> = {}, out?: string, domain = ""): string {
    const o = out ?? this.fresh(op);
    this.nodes.push({ op, inputs, outputs: [o], attrs, domain, name: `n_${o}` });
    if (domain === "com.microsoft") this.usesMsDomain.value = true;
    return o;
  }

  /** Add a node with several outputs. */
  opN(op: string, inputs: string[], n: number, attrs: Record<string, AttrValue> = {}): string[] {
    const outs = Array.from({ length: n }, () => this.fresh(op));
    this.nodes.push({ op, inputs, outputs: outs, attrs, domain: "", name: `n_${outs[0]}` });
    return outs;
  }

  toModel(opts: { producer?: string; opset?: number; irVersion?: number } = {}): Uint8Array {
    return this.serialize(opts).model;
  }

  /**
   * Serialize; with `external`, initializers of at least `minBytes` go to one external data file
   * (ONNX external data: location/offset/length, 64-byte aligned) whose chunks are returned in order.
   */
  serialize(
    opts: {
      producer?: string;
      opset?: number;
      irVersion?: number;
      external?: { location: string; minBytes?: number };
    } = {},
  ): { model: Uint8Array; external: Uint8Array[] } {
    const g = new ProtoWriter();
    for (const n of this.nodes) g.message(1, encodeNode(n));
    g.string(2, this.name);
    const external: Uint8Array[] = [];
    let offset = 0;
    for (const t of this.inits) {
      const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      if (opts.external && bytes.length >= (opts.external.minBytes ?? 1024)) {
        const pad = (64 - (offset % 64)) % 64;
        if (pad) external.push(new Uint8Array(pad));
        offset += pad;
        g.message(5, encodeExternalTensor(t, opts.external.location, offset, bytes.length));
        external.push(bytes);
        offset += bytes.length;
      } else {
        g.message(5, encodeTensor(t));
      }
    }
    for (const v of this.inputs) g.message(11, encodeValueInfo(v));
    for (const v of this.outputs) g.message(12, encodeValueInfo(v));

    const m = new ProtoWriter();
    m.int(1, opts.irVersion ?? IR_VERSION);
    m.string(2, opts.producer ?? "pare");
    m.message(7, g);
    m.message(8, new ProtoWriter().string(1, "").int(2, opts.opset ?? OPSET));
    if (this.usesMsDomain.value) m.message(8, new ProtoWriter().string(1, "com.microsoft").int(2, 1));
    return { model: m.finish(), external };
  }
}

function encodeNode(n: Node): ProtoWriter {
  const w = new ProtoWriter();
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  w.string(3, n.name);
  w.string(4, n.op);
  for (const [k, v] of Object.entries(n.attrs)) w.message(5, encodeAttr(k, v));
  if (n.domain) w.string(7, n.domain);
  return w;
}

// AttributeProto: name=1 f=2 i=3 s=4 t=5 floats=7 ints=8 type=20
function encodeAttr(name: string, v: AttrValue): ProtoWriter {
  const w = new ProtoWriter().string(1, name);
  if (typeof v === "number") {
    if (!Number.isInteger(v)) throw new Error(`attribute ${name}: use {float: v} for non-integers`);
    w.int(3, v).int(20, 2);
  } else if (typeof v === "string") w.string(4, v).int(20, 3);
  else if (Array.isArray(v)) w.packedInts(8, v).int(20, 7);
  else if ("floats" in v) w.packedFloats(7, v.floats).int(20, 6);
  else if ("float" in v) w.float(2, v.float).int(20, 1);
  else w.int(3, v.int).int(20, 2);
  return w;
}

// TensorProto: dims=1 data_type=2 name=8 raw_data=9
function encodeTensor(t: Init): ProtoWriter {
  const w = new ProtoWriter();
  if (t.dims.length) w.packedInts(1, t.dims);
  w.int(2, elemTypeCode(t.type));
  w.string(8, t.name);
  w.bytes(9, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  return w;
}

// TensorProto with external data: external_data=13 (StringStringEntryProto key=1 value=2), data_location=14 (EXTERNAL=1)
function encodeExternalTensor(t: Init, location: string, offset: number, length: number): ProtoWriter {
  const w = new ProtoWriter();
  if (t.dims.length) w.packedInts(1, t.dims);
  w.int(2, elemTypeCode(t.type));
  w.string(8, t.name);
  for (const [k, v] of [
    ["location", location],
    ["offset", String(offset)],
    ["length", String(length)],
  ]) {
    w.message(13, new ProtoWriter().string(1, k).string(2, v));
  }
  w.int(14, 1);
  return w;
}

// ValueInfoProto: name=1 type=2; TypeProto.tensor_type=1; Tensor: elem_type=1 shape=2; Dimension: dim_value=1 dim_param=2
function encodeValueInfo(v: ValueInfo): ProtoWriter {
  const tensor = new ProtoWriter().int(1, elemTypeCode(v.type));
  if (v.shape) {
    const shape = new ProtoWriter();
    for (const d of v.shape) {
      const dim = new ProtoWriter();
      if (typeof d === "number") dim.int(1, d);
      else dim.string(2, d);
      shape.message(1, dim);
    }
    tensor.message(2, shape);
  }
  return new ProtoWriter().string(1, v.name).message(2, new ProtoWriter().message(1, tensor));
}
