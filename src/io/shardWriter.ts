/**
 * Streaming safetensors writer: tensors are encoded and written to disk as they are produced (layer by layer),
 * shard by shard, so the whole output model is never held in memory.
 *
 * Each shard file starts with a reserved header area (8-byte length + R bytes); tensor data follows it in
 * arrival order, contiguously (no holes, no trailing bytes). When a shard is full (or at close) its header
 * JSON is written into the reserved area, padded with spaces (0x20) to exactly R bytes, which the safetensors
 * format allows. If the header does not fit in R, the shard is rewritten once (real header + data copied in
 * 8 MiB chunks) and renamed over. Shards are written under temporary names (`.shard-0000i.partial`) and
 * renamed in close(), when their number is known, to the names writeShardedSafetensors uses.
 *
 * Shards are filled greedily in arrival order (writeShardedSafetensors fills them in name order): a new shard
 * starts when the next tensor would push the current one over maxShardBytes; a tensor larger than
 * maxShardBytes gets a shard of its own. Values are encoded exactly like writeShardedSafetensors (encodeTensor).
 *
 * Durability (docs/reliability.md): each shard is fsynced before it is closed and renamed, the folder after the
 * renames. A full disk gives E_NO_SPACE with the bytes written so far and the bytes the failed write needed.
 */
import fs from "node:fs";
import path from "node:path";
import { PareError } from "../errors.ts";
import { bytesPerElement } from "../tensor/dtype.ts";
import { diskFailure, errnoOf, fsyncDir } from "./durable.ts";
import { encodeTensor, invalid, ioError, q, writeAtomic } from "./safetensors.ts";

export interface ShardWriterOptions {
  /** every tensor is written in this dtype (converted from f32) */
  dtype: "F32" | "F16" | "BF16";
  /** default 4 GiB; a new shard starts when the next tensor would exceed it */
  maxShardBytes?: number;
  /** names expected to be written, used to size the header space reserved at the start of each shard */
  expectedNames?: string[];
  /** __metadata__ (default {format: "pt"}; `format` defaults to "pt" like writeSafetensors) */
  metadata?: Record<string, string>;
}

const DEFAULT_MAX_SHARD_BYTES = 4 * 1024 ** 3;
/** Header bytes reserved per expected tensor besides its JSON-quoted name (dtype, shape, data_offsets). */
const RESERVE_PER_TENSOR = 128;
const RESERVE_SLACK = 1024;
/** The reader refuses headers over 100 MiB: never reserve more (a larger header falls back to a rewrite). */
const MAX_RESERVE = 100 * 1024 * 1024;
const MAX_IO_CHUNK = 1 << 30;
const COPY_CHUNK = 8 * 1024 * 1024;
const INDEX_NAME = "model.safetensors.index.json";

interface Entry {
  name: string;
  shape: number[];
  begin: number; // relative to the data region
  end: number;
}

interface Shard {
  tmp: string; // path of the partial file
  fd: number; // -1 once finished
  reserved: number; // R: header bytes reserved after the 8-byte length
  size: number; // data bytes written
  entries: Entry[];
}

const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const roundUp8 = (n: number) => Math.ceil(n / 8) * 8;
const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** Writes all of `buf` to `fd` at `position`. */
function writeAt(fd: number, buf: Uint8Array, position: number): void {
  let done = 0;
  while (done < buf.length) {
    done += fs.writeSync(fd, buf, done, Math.min(buf.length - done, MAX_IO_CHUNK), position + done);
  }
}

function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // already closed or failing: nothing more to do while cleaning up
  }
}

export class ShardWriter {
  private readonly dir: string;
  private readonly dtype: "F32" | "F16" | "BF16";
  private readonly maxShardBytes: number;
  private readonly metadata: Record<string, string>;
  private readonly metaBytes: number;
  /** header bytes still to reserve for expected names not yet written (name → its share) */
  private readonly pending = new Map<string, number>();
  private pendingBytes = 0;
  private readonly names = new Set<string>();
  private readonly shards: Shard[] = [];
  /** every file this writer created and has not handed over yet (removed by abort) */
  private readonly created = new Set<string>();
  private written = 0;
  private state: "open" | "closed" | "aborted" = "open";

  constructor(dir: string, opts: ShardWriterOptions) {
    if (!["F32", "F16", "BF16"].includes(opts.dtype)) {
      throw new PareError(
        "E_USAGE",
        `ShardWriter: dtype ${q(String(opts.dtype))} is not F32, F16 or BF16`,
        "this is a bug in pare: please report it",
        { dtype: opts.dtype },
      );
    }
    this.dir = path.resolve(dir);
    this.dtype = opts.dtype;
    this.maxShardBytes = opts.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
    this.metadata = { format: "pt", ...opts.metadata };
    this.metaBytes = Buffer.byteLength(JSON.stringify({ __metadata__: this.metadata }));
    for (const name of opts.expectedNames ?? []) {
      if (this.pending.has(name)) continue;
      const share = Buffer.byteLength(JSON.stringify(name)) + RESERVE_PER_TENSOR;
      this.pending.set(name, share);
      this.pendingBytes += share;
    }
  }

  /** Tensor data bytes written so far (headers not counted; after close(), the index's total_size). */
  get bytesWritten(): number {
    return this.written;
  }

  /** Encodes one tensor in the writer's dtype and writes it now; keeps no reference to `data`. */
  add(name: string, shape: number[], data: Float32Array): void {
    this.assertOpen();
    const numel = shape.reduce((a, b) => a * b, 1);
    if (!shape.every(isCount) || numel !== data.length) {
      throw new PareError(
        "E_TENSOR_SHAPE",
        `${this.dir}: tensor ${q(name)} has ${data.length} values but shape [${shape.join(",")}]`,
        "this is a bug in pare: please report it",
        { file: this.dir, tensor: name },
      );
    }
    if (this.names.has(name) || name === "__metadata__") {
      throw invalid(this.dir, `tensor name ${q(name)} is used twice or reserved`, { tensor: name });
    }
    const bytes = data.length * bytesPerElement(this.dtype);
    let shard = this.shards[this.shards.length - 1];
    if (!shard || shard.fd < 0 || shard.size + bytes > this.maxShardBytes) {
      if (shard && shard.fd >= 0) this.finish(shard);
      shard = this.openShard();
    }
    const encoded = encodeTensor({ name, shape, data, dtype: this.dtype });
    try {
      writeAt(shard.fd, encoded, 8 + shard.reserved + shard.size);
    } catch (e) {
      throw this.failure(shard.tmp, e, bytes);
    }
    shard.entries.push({ name, shape: [...shape], begin: shard.size, end: shard.size + bytes });
    shard.size += bytes;
    this.written += bytes;
    this.names.add(name);
    const share = this.pending.get(name);
    if (share !== undefined) {
      this.pending.delete(name);
      this.pendingBytes -= share;
    }
  }

  /**
   * Finishes: writes the last shard's header and gives the files their final names: `model.safetensors` when
   * there is one shard, else `model-0000i-of-0000n.safetensors` + `model.safetensors.index.json` (the layout
   * writeShardedSafetensors writes). Returns the file names. On failure, removes every file it created.
   */
  close(): string[] {
    this.assertOpen();
    try {
      if (this.shards.length === 0) this.openShard(); // no tensors: one file with the metadata only
      const last = this.shards[this.shards.length - 1];
      if (last.fd >= 0) this.finish(last);
      const n = this.shards.length;
      const pad = (i: number) => String(i).padStart(5, "0");
      const finals = this.shards.map((_, i) =>
        n === 1 ? "model.safetensors" : `model-${pad(i + 1)}-of-${pad(n)}.safetensors`,
      );
      this.shards.forEach((s, i) => {
        const target = path.join(this.dir, finals[i]);
        this.created.add(target);
        try {
          fs.renameSync(s.tmp, target);
        } catch (e) {
          throw ioError(target, e);
        }
        this.created.delete(s.tmp);
      });
      fsyncDir(this.dir);
      if (n === 1) {
        this.state = "closed";
        this.created.clear();
        return finals;
      }
      // weight_map in shard order, then by name: the order writeShardedSafetensors gives when shards match
      const weightMap: Record<string, string> = Object.create(null);
      this.shards.forEach((s, i) => {
        for (const e of [...s.entries].sort(byName)) weightMap[e.name] = finals[i];
      });
      const index = JSON.stringify(
        { metadata: { total_size: this.written }, weight_map: weightMap },
        null,
        2,
      );
      const indexPath = path.join(this.dir, INDEX_NAME);
      this.created.add(indexPath);
      writeAtomic(indexPath, (fd) => {
        writeAt(fd, Buffer.from(`${index}\n`), 0);
        fs.fsyncSync(fd);
      });
      fsyncDir(this.dir);
      this.state = "closed";
      this.created.clear();
      return [...finals, INDEX_NAME];
    } catch (e) {
      this.abort();
      throw this.failure(this.dir, e);
    }
  }

  /** A failed write: E_NO_SPACE when the disk is full (what was written, what the write needed), else E_IO. */
  private failure(file: string, e: unknown, pending?: number): unknown {
    if (errnoOf(e) === "ENOSPC" || errnoOf(e) === "EDQUOT")
      return diskFailure(e, this.dir, { written: this.written, pending });
    return e instanceof PareError ? e : ioError(file, e);
  }

  /** Closes the open file and removes every file this writer created. Never throws; a no-op after close(). */
  abort(): void {
    if (this.state !== "open") return;
    this.state = "aborted";
    for (const s of this.shards) {
      if (s.fd >= 0) closeQuietly(s.fd);
      s.fd = -1;
    }
    for (const f of this.created) fs.rmSync(f, { force: true });
    this.created.clear();
  }

  private assertOpen(): void {
    if (this.state !== "open") {
      throw new PareError(
        "E_IO",
        `${this.dir}: the shard writer is already ${this.state}`,
        "this is a bug in pare: please report it",
        { dir: this.dir },
      );
    }
  }

  private openShard(): Shard {
    const tmp = path.join(this.dir, `.shard-${String(this.shards.length + 1).padStart(5, "0")}.partial`);
    // room for the header of every expected tensor not written yet (this shard can hold only those)
    const reserved = Math.min(MAX_RESERVE, roundUp8(this.pendingBytes + this.metaBytes + RESERVE_SLACK));
    let fd: number;
    try {
      fd = fs.openSync(tmp, "w+");
    } catch (e) {
      throw this.failure(tmp, e);
    }
    this.created.add(tmp);
    const shard: Shard = { tmp, fd, reserved, size: 0, entries: [] };
    this.shards.push(shard);
    return shard;
  }

  /** Writes the shard's header (into the reserved area, or by rewriting the file) and closes it. */
  private finish(s: Shard): void {
    const header: Record<string, unknown> = Object.create(null);
    header.__metadata__ = this.metadata;
    for (const e of [...s.entries].sort(byName)) {
      header[e.name] = { dtype: this.dtype, shape: e.shape, data_offsets: [e.begin, e.end] };
    }
    const json = Buffer.from(JSON.stringify(header), "utf8");
    try {
      if (json.length <= s.reserved) {
        const buf = Buffer.alloc(8 + s.reserved, 0x20);
        buf.writeBigUInt64LE(BigInt(s.reserved), 0);
        json.copy(buf, 8);
        writeAt(s.fd, buf, 0);
        fs.ftruncateSync(s.fd, 8 + s.reserved + s.size); // exactly the data written, nothing after it
        fs.fsyncSync(s.fd);
      } else {
        this.rewrite(s, json);
      }
      fs.closeSync(s.fd);
    } catch (e) {
      throw this.failure(s.tmp, e);
    }
    s.fd = -1;
  }

  /** The header outgrew its reserved area: a new file with the real header, then the data copied over. */
  private rewrite(s: Shard, json: Buffer): void {
    const out = `${s.tmp}.rewrite`;
    const n = roundUp8(json.length);
    const head = Buffer.alloc(8 + n, 0x20);
    head.writeBigUInt64LE(BigInt(n), 0);
    json.copy(head, 8);
    const fd = fs.openSync(out, "w");
    this.created.add(out);
    try {
      writeAt(fd, head, 0);
      const chunk = Buffer.alloc(Math.min(COPY_CHUNK, Math.max(s.size, 1)));
      for (let at = 0; at < s.size; ) {
        const want = Math.min(chunk.length, s.size - at);
        const got = fs.readSync(s.fd, chunk, 0, want, 8 + s.reserved + at);
        if (got === 0) throw new Error(`${s.tmp} ended early while copying its data`);
        writeAt(fd, chunk.subarray(0, got), 8 + n + at);
        at += got;
      }
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(out, s.tmp);
    this.created.delete(out);
  }
}
