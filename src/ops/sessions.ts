/**
 * The one ORT session cache of the ops layer: a graph is emitted and loaded once per key and reused;
 * `close()` releases every session (afterwards the cache can be used again — it starts empty).
 *
 * Sessions of a `group` beyond its `keep` most recently used are released: a prune builds layer graphs
 * for shapes it may never see again (each pruned layer has its own widths under global allocation), and
 * every ORT session keeps its own memory arena (hundreds of MB for a billion-parameter layer) until it
 * is released.
 */
import { Session, type SessionOptions } from "../runtime/ort.ts";

interface Entry {
  session: Promise<Session>;
  group?: string;
  used: number;
}

export interface CacheOptions {
  /** sessions of one group are evicted least recently used first beyond `keep` */
  group?: string;
  keep?: number;
}

export class SessionCache {
  private entries = new Map<string, Entry>();
  private clock = 0;

  /** The session for `key`, created from `build()` on first use (a failed creation is not cached). */
  async get(
    key: string,
    build: () => Uint8Array,
    opts: SessionOptions = {},
    cache: CacheOptions = {},
  ): Promise<Session> {
    let e = this.entries.get(key);
    if (!e) {
      const session = Session.create(build(), opts);
      e = { session, group: cache.group, used: 0 };
      this.entries.set(key, e);
      session.catch(() => {
        if (this.entries.get(key)?.session === session) this.entries.delete(key);
      });
      if (cache.group !== undefined && cache.keep !== undefined)
        await this.evict(cache.group, cache.keep, key);
    }
    e.used = ++this.clock;
    return e.session;
  }

  /** Release the least recently used sessions of `group` beyond `keep` (never `except`). */
  private async evict(group: string, keep: number, except: string): Promise<void> {
    const inGroup = [...this.entries].filter(([k, e]) => e.group === group && k !== except);
    inGroup.sort((a, b) => a[1].used - b[1].used);
    for (const [k, e] of inGroup.slice(0, Math.max(0, inGroup.length + 1 - keep))) {
      this.entries.delete(k);
      await release(e);
    }
  }

  /** A session used for `fn` only: created, used and released (also when `fn` fails). */
  async once<T>(build: () => Uint8Array, opts: SessionOptions, fn: (s: Session) => Promise<T>): Promise<T> {
    const key = `once:${++this.clock}`;
    const s = await this.get(key, build, opts);
    try {
      return await fn(s);
    } finally {
      this.entries.delete(key);
      await s.release();
    }
  }

  /** number of sessions held */
  get size(): number {
    return this.entries.size;
  }

  /** Release every session. */
  async close(): Promise<void> {
    const all = [...this.entries.values()];
    this.entries.clear();
    for (const e of all) await release(e);
  }
}

async function release(e: Entry): Promise<void> {
  let s: Session;
  try {
    s = await e.session;
  } catch {
    return; // never created
  }
  await s.release();
}
