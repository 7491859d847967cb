/**
 * safetensors reading (lazy, per tensor, across shards) and writing.
 * Format: u64 little-endian header length N, N bytes of UTF-8 JSON header
 * ({name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {string: string}}),
 * then the data region; offsets are relative to the data region (byte 8 + N).
 * Files may exceed 2 GiB: we only ever read with positional fs.readSync.
 */
import fs from "node:fs";
import path from "node:path";
import { PareError } from "../errors.ts";
import {
  bf16ToF32,
  bytesPerElement,
  type Dtype,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  isDtype,
} from "../tensor/dtype.ts";

export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  file: string;
  begin: number; // absolute byte offset in `file`
  end: number; // absolute byte offset in `file` (exclusive)
}

const MAX_HEADER_BYTES = 100 * 1024 * 1024;
const MAX_IO_CHUNK = 1 << 30;
/** Elements one tensor may have (2^53: beyond it, byte offsets are no longer exact numbers). */
const MAX_NUMEL = 2n ** 53n;
/** A shard index lists one line per tensor: even huge models stay far below this. */
const MAX_INDEX_BYTES = 64 * 1024 * 1024;

/** A name from a file, quoted for a message: JSON string syntax (escapes included), cut at 200 characters. */
export function q(name: string): string {
  return JSON.stringify(name.length > 200 ? `${name.slice(0, 200)}…` : name);
}
const CONVERT_HINT =
  "re-export the model with Hugging Face tools (model.save_pretrained(..., safe_serialization=True)) or re-download it";

export function invalid(file: string, what: string, context: Record<string, unknown> = {}): PareError {
  return new PareError("E_SAFETENSORS_INVALID", `${file}: ${what}`, CONVERT_HINT, { file, ...context });
}

function truncated(file: string, what: string, context: Record<string, unknown> = {}): PareError {
  return new PareError(
    "E_SAFETENSORS_TRUNCATED",
    `${file}: ${what}`,
    "the file is incomplete (interrupted download or copy?): download or copy it again",
    { file, ...context },
  );
}

export function ioError(file: string, e: unknown): PareError {
  const err = e as NodeJS.ErrnoException;
  return new PareError(
    "E_IO",
    `${file}: ${err.code ?? ""} ${err.message}`.trim(),
    "check the path and permissions",
    {
      file,
      errno: err.code,
    },
  );
}

/**
 * Opens a file for reading without ever blocking (a FIFO named model.safetensors or config.json would block a
 * plain open until some writer appears) and checks that it is a regular file. Returns the fd and its size.
 */
export function openRegularFile(file: string, what = "file"): { fd: number; size: number } {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
  } catch (e) {
    throw ioError(file, e);
  }
  let st: fs.Stats;
  try {
    st = fs.fstatSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    throw ioError(file, e);
  }
  if (!st.isFile()) {
    fs.closeSync(fd);
    const kind = st.isDirectory()
      ? "a folder"
      : st.isFIFO()
        ? "a named pipe (FIFO)"
        : st.isSocket()
          ? "a socket"
          : st.isCharacterDevice() || st.isBlockDevice()
            ? "a device"
            : "not a regular file";
    throw new PareError(
      "E_IO",
      `${file}: the ${what} is ${kind}, not a regular file`,
      "model folders hold plain files; replace it with the real file (pare never reads from pipes or devices)",
      { file },
    );
  }
  return { fd, size: st.size };
}

/** Fills `buf` from `fd` at `position`; returns the bytes actually read (< buf.length at end of file). */
function readFully(fd: number, buf: Uint8Array, position: number): number {
  let done = 0;
  while (done < buf.length) {
    const n = fs.readSync(fd, buf, done, Math.min(buf.length - done, MAX_IO_CHUNK), position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

function writeFully(fd: number, buf: Uint8Array): void {
  let done = 0;
  while (done < buf.length) done += fs.writeSync(fd, buf, done, Math.min(buf.length - done, MAX_IO_CHUNK));
}

/** Top-level keys of a JSON object text that JSON.parse already accepted, in order (duplicates kept). */
export function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      if (depth === 1 && expectKey) keys.push(JSON.parse(text.slice(i, j + 1)) as string);
      expectKey = false;
      i = j;
    } else if (c === "{" || c === "[") {
      depth++;
      expectKey = depth === 1;
    } else if (c === "}" || c === "]") depth--;
    else if (c === "," && depth === 1) expectKey = true;
  }
  return keys;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

export class SafetensorsFile {
  readonly file: string;
  readonly tensors: Map<string, TensorInfo>;
  readonly metadata: Record<string, string>;
  private fd: number;

  private constructor(
    file: string,
    fd: number,
    tensors: Map<string, TensorInfo>,
    metadata: Record<string, string>,
  ) {
    this.file = file;
    this.fd = fd;
    this.tensors = tensors;
    this.metadata = metadata;
  }

  /** Reads and validates the header only; tensor data is read on demand. */
  static open(file: string): SafetensorsFile {
    file = path.resolve(file);
    const { fd, size } = openRegularFile(file, "safetensors file");
    try {
      const { tensors, metadata } = SafetensorsFile.readHeader(file, fd, size);
      return new SafetensorsFile(file, fd, tensors, metadata);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  private static readHeader(file: string, fd: number, size: number) {
    const lenBuf = Buffer.alloc(8);
    readFully(fd, lenBuf, 0);
    // a pickle or a PyTorch zip checkpoint renamed .safetensors: say so instead of "bad header"
    const pickled = () => {
      const kind = pickleKind(lenBuf, Math.min(size, 8));
      if (!kind) return undefined;
      return new PareError(
        "E_PICKLE_UNSUPPORTED",
        `${file}: this is a ${kind}, not a safetensors file (the name lies)`,
        PICKLE_HINT,
        { file },
      );
    };
    if (size < 8) {
      throw (
        pickled() ?? truncated(file, `file is ${size} bytes, shorter than the 8-byte header length`, { size })
      );
    }
    const n = lenBuf.readBigUInt64LE(0);
    if (n > BigInt(MAX_HEADER_BYTES)) {
      throw (
        pickled() ??
        invalid(
          file,
          `header length ${n} is absurd (over ${MAX_HEADER_BYTES} bytes): not a safetensors file?`,
        )
      );
    }
    const headerLen = Number(n);
    if (8 + headerLen > size) {
      throw (
        pickled() ??
        truncated(file, `header length ${headerLen} goes beyond the end of the ${size}-byte file`, { size })
      );
    }
    const headerBytes = new Uint8Array(headerLen);
    readFully(fd, headerBytes, 8);
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(headerBytes);
    } catch {
      throw pickled() ?? invalid(file, "header is not valid UTF-8");
    }
    let header: unknown;
    try {
      header = JSON.parse(text);
    } catch (e) {
      throw pickled() ?? invalid(file, `header is not valid JSON (${(e as Error).message})`);
    }
    if (!isPlainObject(header)) throw invalid(file, "header is not a JSON object");
    const seen = new Set<string>();
    for (const k of topLevelKeys(text)) {
      if (seen.has(k)) throw invalid(file, `header lists ${q(k)} twice`, { tensor: k });
      seen.add(k);
    }

    const dataStart = 8 + headerLen;
    const dataLen = size - dataStart;
    let metadata: Record<string, string> = {};
    const tensors = new Map<string, TensorInfo>();
    for (const [name, entry] of Object.entries(header)) {
      if (name === "__metadata__") {
        if (!isPlainObject(entry) || !Object.values(entry).every((v) => typeof v === "string")) {
          throw invalid(file, "__metadata__ is not an object of strings");
        }
        metadata = entry as Record<string, string>;
        continue;
      }
      const ctx = { tensor: name };
      if (!isPlainObject(entry)) throw invalid(file, `tensor ${q(name)}: entry is not an object`, ctx);
      const { dtype, shape, data_offsets: offs } = entry;
      if (typeof dtype !== "string") throw invalid(file, `tensor ${q(name)}: dtype is missing`, ctx);
      if (!isDtype(dtype)) {
        throw new PareError(
          "E_SAFETENSORS_DTYPE",
          `${file}: tensor ${q(name)} has unknown dtype ${q(dtype)}`,
          "safetensors dtypes pare knows: F64, F32, F16, BF16, F8_E4M3, F8_E5M2, I64, I32, I16, I8, U64, U32, U16, U8, BOOL",
          { file, tensor: name, dtype },
        );
      }
      if (!Array.isArray(shape) || shape.length > 64 || !shape.every(isCount)) {
        throw invalid(file, `tensor ${q(name)}: shape is not a list of non-negative integers`, ctx);
      }
      if (!Array.isArray(offs) || offs.length !== 2 || !offs.every(isCount) || offs[0] > offs[1]) {
        throw invalid(
          file,
          `tensor ${q(name)}: data_offsets must be [begin, end] with 0 <= begin <= end`,
          ctx,
        );
      }
      const [begin, end] = offs as [number, number];
      // exact (BigInt) element count: a float product of huge dims could round onto a plausible span
      const exact = (shape as number[]).reduce((a, b) => a * BigInt(b), 1n);
      if (exact > MAX_NUMEL) {
        throw invalid(
          file,
          `tensor ${q(name)}: shape [${shape.join(",")}] is absurd (${exact} elements, over 2^53)`,
          ctx,
        );
      }
      const numel = Number(exact);
      const expected = numel * bytesPerElement(dtype);
      if (end - begin !== expected) {
        throw invalid(
          file,
          `tensor ${q(name)}: data_offsets span ${end - begin} bytes but ${dtype}[${shape.join(",")}] needs ${expected}`,
          ctx,
        );
      }
      if (end > dataLen) {
        throw truncated(
          file,
          `tensor ${q(name)} ends at data byte ${end} beyond the ${dataLen}-byte data region`,
          ctx,
        );
      }
      tensors.set(name, {
        name,
        dtype,
        shape: shape as number[],
        file,
        begin: dataStart + begin,
        end: dataStart + end,
      });
    }
    const sorted = [...tensors.values()].filter((t) => t.end > t.begin).sort((a, b) => a.begin - b.begin);
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i].begin < sorted[i - 1].end) {
        throw invalid(file, `tensors ${q(sorted[i - 1].name)} and ${q(sorted[i].name)} overlap`, {
          tensor: sorted[i].name,
        });
      }
    }
    return { tensors, metadata };
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) {
      throw new PareError(
        "E_TENSOR_MISSING",
        `${this.file}: no tensor ${q(name)}`,
        "check the tensor name (and that the model matches its config.json)",
        { file: this.file, tensor: name },
      );
    }
    return t;
  }

  /** Raw little-endian bytes of one tensor (a fresh, 8-byte aligned buffer). */
  readRaw(name: string): Uint8Array {
    const t = this.info(name);
    const buf = new Uint8Array(t.end - t.begin);
    this.readInto(t, buf);
    return buf;
  }

  /**
   * Check that every value of a tensor is finite without converting it (exponent bits on the raw bytes of
   * F32/F16/BF16); a bad tensor (or another dtype) goes through readF32, whose E_NUMERIC names the problem.
   */
  checkFinite(name: string): void {
    const t = this.info(name);
    const raw = this.readRaw(name);
    let bad = false;
    if (t.dtype === "F32") {
      const u = new Uint32Array(raw.buffer, raw.byteOffset, raw.byteLength >> 2);
      for (let i = 0; i < u.length && !bad; i++) bad = (u[i] & 0x7f800000) === 0x7f800000;
    } else if (t.dtype === "F16" || t.dtype === "BF16") {
      const mask = t.dtype === "F16" ? 0x7c00 : 0x7f80;
      const u = new Uint16Array(raw.buffer, raw.byteOffset, raw.byteLength >> 1);
      for (let i = 0; i < u.length && !bad; i++) bad = (u[i] & mask) === mask;
    } else bad = true;
    if (bad) this.readF32(name);
  }

  /**
   * One tensor as float32 (F32, F16, BF16, F64). Every value must be finite: NaN or ±Inf (or an F64 value beyond
   * the float32 range) is E_NUMERIC naming the tensor and its layer.
   */
  readF32(name: string): Float32Array {
    const out = this.readF32Unchecked(name);
    assertFinite(out, name, this.file);
    return out;
  }

  private readF32Unchecked(name: string): Float32Array {
    const t = this.info(name);
    const n = (t.end - t.begin) / bytesPerElement(t.dtype);
    switch (t.dtype as Dtype) {
      case "F32": {
        const out = new Float32Array(n);
        this.readInto(t, new Uint8Array(out.buffer));
        return out;
      }
      case "F16":
      case "BF16": {
        const raw = new Uint16Array(n);
        this.readInto(t, new Uint8Array(raw.buffer));
        return t.dtype === "F16" ? f16ToF32(raw) : bf16ToF32(raw);
      }
      case "F64": {
        const raw = new Float64Array(n);
        this.readInto(t, new Uint8Array(raw.buffer));
        return Float32Array.from(raw);
      }
      default:
        throw new PareError(
          "E_SAFETENSORS_DTYPE",
          `${this.file}: tensor ${q(name)} is ${t.dtype}, not a float tensor`,
          "only F32, F16, BF16 and F64 tensors can be read as floats",
          { file: this.file, tensor: name, dtype: t.dtype },
        );
    }
  }

  private readInto(t: TensorInfo, buf: Uint8Array): void {
    if (this.fd < 0) throw new PareError("E_IO", `${this.file}: file already closed`, "open it again", {});
    let got: number;
    try {
      got = readFully(this.fd, buf, t.begin);
    } catch (e) {
      throw ioError(this.file, e);
    }
    if (got < buf.length) {
      throw truncated(
        this.file,
        `tensor ${q(t.name)} needs bytes ${t.begin}..${t.end} but the file ends earlier`,
        {
          tensor: t.name,
        },
      );
    }
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}

/** Layer index of a tensor name (`model.layers.3.…`, `encoder.layer.3.…`, `h.3.…`, `blocks.3.…`), if any. */
export function layerOf(name: string): number | undefined {
  const m = /(?:^|\.)(?:layers|layer|h|blocks)\.(\d+)(?:\.|$)/.exec(name);
  return m ? Number(m[1]) : undefined;
}

/**
 * Throws E_NUMERIC when `data` holds NaN or ±Inf: names the tensor, its layer, how many values are bad and
 * where the first one is. `file` is named when known.
 */
export function assertFinite(data: ArrayLike<number>, name: string, file?: string): void {
  let first = -1;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v - v !== 0) {
      first = i;
      break;
    }
  }
  if (first < 0) return;
  let nan = 0;
  let inf = 0;
  for (let i = first; i < data.length; i++) {
    const v = data[i];
    if (Number.isNaN(v)) nan++;
    else if (v - v !== 0) inf++;
  }
  const layer = layerOf(name);
  const where = `${file ? `${file}: ` : ""}tensor ${q(name)}${layer === undefined ? "" : ` (layer ${layer})`}`;
  const what = [nan ? `${nan} NaN` : "", inf ? `${inf} infinite` : ""].filter(Boolean).join(" and ");
  throw new PareError(
    "E_NUMERIC",
    `${where} holds ${what} value${nan + inf === 1 ? "" : "s"} (first at element ${first} of ${data.length})`,
    "the weights are corrupt (a broken download or conversion, or a diverged training run): re-download or " +
      "re-export the checkpoint; pare does not prune or evaluate models with NaN/Inf weights",
    { file, tensor: name, layer, nan, inf, first },
  );
}

const PICKLE_HINT =
  "pare never reads pickle checkpoints (.bin/.pt/.pth/.ckpt/.pkl) because loading them can execute code; convert " +
  "to safetensors with the Hugging Face `safetensors` tooling (e.g. model.save_pretrained(dir, safe_serialization=True))";

/** The first bytes of a pickle stream (protocol 2..5) or of a PyTorch zip checkpoint; undefined otherwise. */
function pickleKind(head: Uint8Array, n: number): string | undefined {
  if (n >= 4 && head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04) {
    return "zip archive (a PyTorch torch.save checkpoint, which holds pickles)";
  }
  // PROTO 2..5, then an opcode a torch/pickle stream starts with (FRAME, GLOBAL, EMPTY_DICT, EMPTY_LIST, MARK, …)
  const opcodes = [0x95, 0x63, 0x7d, 0x5d, 0x28, 0x8c, 0x58, 0x71, 0x4b, 0x4a];
  if (n >= 3 && head[0] === 0x80 && head[1] >= 2 && head[1] <= 5 && opcodes.includes(head[2])) {
    return "Python pickle";
  }
  return undefined;
}

/** File names that are pickle checkpoints (PyTorch .bin/.pt/.pth, Lightning .ckpt, plain .pkl/.pickle). */
const PICKLE_FILE = /\.(bin|pt|pth|ckpt|pkl|pickle)$/i;

/** Is `target` (a real path) allowed for a file of `realDir`? Inside it, or in the HF hub cache blob store. */
function insideFolder(realDir: string, target: string): boolean {
  const within = (dir: string) => target.startsWith(dir.endsWith(path.sep) ? dir : dir + path.sep);
  if (within(realDir)) return true;
  // HF hub cache: <repo>/snapshots/<rev>/<file> are symlinks into <repo>/blobs/
  const rev = path.dirname(realDir);
  return path.basename(rev) === "snapshots" && within(path.join(path.dirname(rev), "blobs"));
}

/**
 * The real path of the file `name` of model folder `dir`, refusing names and symlinks that lead outside the
 * folder (E_PATH_ESCAPE; the Hugging Face hub cache layout, snapshots/<rev>/x → ../../blobs/…, is allowed).
 * Returns undefined when the file does not exist (a dangling symlink counts as missing).
 */
export function fileInsideFolder(
  dir: string,
  name: string,
  context: Record<string, unknown> = {},
): string | undefined {
  const escapes = (why: string) =>
    new PareError(
      "E_PATH_ESCAPE",
      `${dir}: ${q(name)} ${why}`,
      "files of a model folder must stay inside it; a model folder whose files point elsewhere may be malicious",
      { dir, name, ...context },
    );
  if (path.isAbsolute(name) || path.win32.isAbsolute(name)) throw escapes("is an absolute path");
  if (name.split(/[\\/]/).includes("..")) throw escapes('contains ".."');
  const p = path.join(dir, name);
  let real: string;
  try {
    real = fs.realpathSync(p);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    if (code === "ELOOP") throw escapes("is a symlink loop");
    throw ioError(p, e);
  }
  let realDir: string;
  try {
    realDir = fs.realpathSync(dir);
  } catch (e) {
    throw ioError(dir, e);
  }
  if (!insideFolder(realDir, real)) throw escapes(`resolves outside the model folder (to ${real})`);
  return real;
}

/** A model's tensors across one or more safetensors files; opening reads headers only. */
export class TensorStore {
  readonly dir: string;
  readonly files: SafetensorsFile[];
  private readonly byName: Map<string, SafetensorsFile>;

  private constructor(dir: string, files: SafetensorsFile[], byName: Map<string, SafetensorsFile>) {
    this.dir = dir;
    this.files = files;
    this.byName = byName;
  }

  static openFolder(dir: string): TensorStore {
    dir = path.resolve(dir);
    let entries: string[];
    try {
      entries = fs.readdirSync(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT" || (e as NodeJS.ErrnoException).code === "ENOTDIR") {
        throw new PareError("E_FOLDER_MISSING", `${dir}: no such folder`, "give the path of a model folder", {
          dir,
        });
      }
      throw ioError(dir, e);
    }
    if (entries.includes("model.safetensors.index.json")) return TensorStore.openIndex(dir);
    const st = entries.filter((f) => f.endsWith(".safetensors")).sort();
    const single = entries.includes("model.safetensors")
      ? "model.safetensors"
      : st.length === 1
        ? st[0]
        : undefined;
    if (single) {
      const real = fileInsideFolder(dir, single);
      if (!real) {
        throw new PareError(
          "E_FOLDER_INCOMPLETE",
          `${dir}: ${single} is a dangling symlink`,
          "download the model's .safetensors file(s) into this folder",
          { dir },
        );
      }
      const f = SafetensorsFile.open(path.join(dir, single));
      return new TensorStore(dir, [f], new Map([...f.tensors.keys()].map((k) => [k, f])));
    }
    if (st.length > 1) {
      throw new PareError(
        "E_FOLDER_INCOMPLETE",
        `${dir}: ${st.length} .safetensors files but no model.safetensors.index.json`,
        "a sharded model needs its model.safetensors.index.json: copy or download it too",
        { dir, files: st },
      );
    }
    const pickles = entries.filter((f) => PICKLE_FILE.test(f));
    if (pickles.length > 0) {
      throw new PareError(
        "E_PICKLE_UNSUPPORTED",
        `${dir}: only pickle checkpoints (${pickles.slice(0, 5).join(", ")}${pickles.length > 5 ? ", …" : ""}), no .safetensors`,
        PICKLE_HINT,
        { dir, files: pickles },
      );
    }
    throw new PareError(
      "E_FOLDER_INCOMPLETE",
      `${dir}: no model weights (model.safetensors or model.safetensors.index.json)`,
      "download the model's .safetensors file(s) into this folder",
      { dir },
    );
  }

  private static openIndex(dir: string): TensorStore {
    const indexPath = path.join(dir, "model.safetensors.index.json");
    const bad = (what: string, context: Record<string, unknown> = {}) =>
      new PareError(
        "E_SHARD_INDEX_INVALID",
        `${indexPath}: ${what}`,
        "the shard index does not match the shard files: download the model again",
        { file: indexPath, ...context },
      );
    let index: unknown;
    const realIndex = fileInsideFolder(dir, "model.safetensors.index.json");
    if (!realIndex) throw bad("is a dangling symlink");
    const { fd, size } = openRegularFile(realIndex, "shard index");
    try {
      if (size > MAX_INDEX_BYTES) throw bad(`is ${size} bytes, absurd for a shard index`);
      const bytes = Buffer.alloc(size);
      readFully(fd, bytes, 0);
      index = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
    } catch (e) {
      if (e instanceof PareError) throw e;
      if ((e as NodeJS.ErrnoException).code) throw ioError(indexPath, e);
      throw bad(`not valid JSON (${(e as Error).message})`);
    } finally {
      fs.closeSync(fd);
    }
    const weightMap = isPlainObject(index) ? index.weight_map : undefined;
    if (!isPlainObject(weightMap) || !Object.values(weightMap).every((v) => typeof v === "string")) {
      throw bad('no "weight_map" object of tensor name → shard file');
    }
    const shards = new Map<string, SafetensorsFile>();
    const byName = new Map<string, SafetensorsFile>();
    try {
      for (const [name, rel] of Object.entries(weightMap as Record<string, string>)) {
        let shard = shards.get(rel);
        if (!shard) {
          if (rel === "" || rel.endsWith("/") || rel.endsWith("\\")) {
            throw bad(`shard name ${q(rel)} (for ${q(name)}) is not a file name`, { tensor: name });
          }
          const real = fileInsideFolder(dir, rel, { file: indexPath, shard: rel, tensor: name });
          if (!real) {
            throw new PareError(
              "E_FOLDER_INCOMPLETE",
              `${dir}: shard file ${q(rel)} listed in model.safetensors.index.json is missing`,
              "download all shard files of the model",
              { dir, shard: rel },
            );
          }
          shard = SafetensorsFile.open(path.join(dir, rel));
          shards.set(rel, shard);
        }
        if (!shard.tensors.has(name)) {
          throw bad(`${q(name)} is listed in shard ${q(rel)} but is not in it`, { tensor: name });
        }
        byName.set(name, shard);
      }
    } catch (e) {
      for (const s of shards.values()) s.close();
      throw e;
    }
    return new TensorStore(dir, [...shards.values()], byName);
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  private file(name: string): SafetensorsFile {
    const f = this.byName.get(name);
    if (!f) {
      throw new PareError(
        "E_TENSOR_MISSING",
        `${this.dir}: the model has no tensor ${q(name)}`,
        "check that the weights match config.json (architecture, number of layers)",
        { dir: this.dir, tensor: name },
      );
    }
    return f;
  }

  info(name: string): TensorInfo {
    return this.file(name).info(name);
  }

  readF32(name: string): Float32Array {
    return this.file(name).readF32(name);
  }

  readRaw(name: string): Uint8Array {
    return this.file(name).readRaw(name);
  }

  /** See SafetensorsFile.checkFinite. */
  checkFinite(name: string): void {
    this.file(name).checkFinite(name);
  }

  close(): void {
    for (const f of this.files) f.close();
  }
}

export interface NamedTensor {
  name: string;
  shape: number[];
  data: Float32Array;
  dtype?: "F32" | "F16" | "BF16";
}

function tensorBytes(t: NamedTensor): number {
  return t.data.length * bytesPerElement(t.dtype ?? "F32");
}

export function encodeTensor(t: NamedTensor): Uint8Array {
  const dtype = t.dtype ?? "F32";
  const arr = dtype === "F32" ? t.data : dtype === "F16" ? f32ToF16(t.data) : f32ToBf16(t.data);
  return new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
}

/** Writes path atomically (tmp file + rename) through `write(fd)`. */
export function writeAtomic(file: string, write: (fd: number) => void): void {
  const tmp = `${file}.tmp-${process.pid}`;
  let fd = -1;
  try {
    fd = fs.openSync(tmp, "w");
    write(fd);
    fs.closeSync(fd);
    fd = -1;
    fs.renameSync(tmp, file);
  } catch (e) {
    if (fd >= 0) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e instanceof PareError ? e : ioError(file, e);
  }
}

/**
 * Writes one safetensors file: header sorted like the reference implementation (larger dtypes first, then
 * by name, so every tensor stays aligned), padded with spaces to a multiple of 8, then the data, tensor by tensor.
 * `__metadata__` defaults to {format: "pt"}, which transformers requires whenever metadata is present.
 */
export function writeSafetensors(
  file: string,
  tensors: NamedTensor[],
  metadata?: Record<string, string>,
): void {
  const names = new Set<string>();
  for (const t of tensors) {
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (!t.shape.every(isCount) || numel !== t.data.length) {
      throw new PareError(
        "E_TENSOR_SHAPE",
        `${file}: tensor ${q(t.name)} has ${t.data.length} values but shape [${t.shape.join(",")}]`,
        "this is a bug in pare: please report it",
        { file, tensor: t.name },
      );
    }
    if (names.has(t.name) || t.name === "__metadata__") {
      throw invalid(file, `tensor name ${q(t.name)} is used twice or reserved`, { tensor: t.name });
    }
    names.add(t.name);
  }
  const order = [...tensors].sort(
    (a, b) =>
      bytesPerElement(b.dtype ?? "F32") - bytesPerElement(a.dtype ?? "F32") ||
      (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );
  const header: Record<string, unknown> = { __metadata__: { format: "pt", ...metadata } };
  let offset = 0;
  for (const t of order) {
    const size = tensorBytes(t);
    header[t.name] = { dtype: t.dtype ?? "F32", shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  let json = Buffer.from(JSON.stringify(header), "utf8");
  const padded = Math.ceil(json.length / 8) * 8;
  json = Buffer.concat([json, Buffer.alloc(padded - json.length, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeAtomic(file, (fd) => {
    writeFully(fd, len);
    writeFully(fd, json);
    for (const t of order) writeFully(fd, encodeTensor(t));
  });
}

/**
 * Writes `model.safetensors`, or, when the total exceeds maxShardBytes, `model-0000i-of-0000n.safetensors`
 * shards (filled greedily in name order; a tensor larger than maxShardBytes gets a shard of its own) plus
 * `model.safetensors.index.json`. Returns the file names written.
 */
export function writeShardedSafetensors(
  dir: string,
  tensors: NamedTensor[],
  maxShardBytes: number,
  metadata?: Record<string, string>,
): string[] {
  fs.mkdirSync(dir, { recursive: true });
  const total = tensors.reduce((s, t) => s + tensorBytes(t), 0);
  if (total <= maxShardBytes) {
    writeSafetensors(path.join(dir, "model.safetensors"), tensors, metadata);
    return ["model.safetensors"];
  }
  const sorted = [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const groups: NamedTensor[][] = [];
  let size = Infinity;
  for (const t of sorted) {
    const b = tensorBytes(t);
    if (size + b > maxShardBytes) {
      groups.push([]);
      size = 0;
    }
    groups[groups.length - 1].push(t);
    size += b;
  }
  const pad = (i: number) => String(i).padStart(5, "0");
  const weightMap: Record<string, string> = {};
  const files = groups.map((g, i) => {
    const name = `model-${pad(i + 1)}-of-${pad(groups.length)}.safetensors`;
    writeSafetensors(path.join(dir, name), g, metadata);
    for (const t of g) weightMap[t.name] = name;
    return name;
  });
  const index = JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2);
  writeAtomic(path.join(dir, "model.safetensors.index.json"), (fd) =>
    writeFully(fd, Buffer.from(`${index}\n`)),
  );
  return [...files, "model.safetensors.index.json"];
}
