/**
 * Hugging Face model ids resolved offline in a fake hub cache built in a temp dir (models--org--name with refs/,
 * snapshots/<commit>/ whose files are symlinks into ../../blobs/): refs/main, @branch, @commit (and a unique
 * prefix), a missing id, a missing revision, a damaged ref, local paths winning over ids, the cache location from
 * the environment, the symlink rules (links into the repo's own blobs/ only), and `pare inspect org/name`.
 */
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { loadModel } from "../../src/arch/load.ts";
import { PareError } from "../../src/errors.ts";
import {
  hubCacheDir,
  MODEL_NOT_FOUND,
  parseHubId,
  repoFolderName,
  resolveHubId,
  resolveModelPath,
} from "../../src/io/hubCache.ts";
import { openModelFolder } from "../../src/io/modelFolder.ts";
import { parseSingleJson, runCli, snapshotDir } from "../helpers/cli.ts";
import { makeByteBpeTokenizerJson, makeTinyLlama, writeTinyModel } from "../helpers/tinyModels.ts";

const posix = process.platform !== "win32";
const MAIN = `${"a".repeat(8)}0123456789abcdef0123456789abcdef`;
const DEV = `${"b".repeat(8)}0123456789abcdef0123456789abcdef`;
const ONLY = `${"c".repeat(8)}fedcba9876543210fedcba9876543210`;

let root: string;
let hub: string;
let repoDir: string;
const env = () => ({ HF_HUB_CACHE: hub }) as NodeJS.ProcessEnv;

/** Adds a snapshot of a tiny llama with `layers` layers under repo/snapshots/<commit>, files linked to blobs/. */
function addSnapshot(repo: string, commit: string, layers: number): void {
  const src = fs.mkdtempSync(path.join(root, "src-"));
  writeTinyModel(src, makeTinyLlama({ seed: layers, layers }), makeByteBpeTokenizerJson(300));
  const snap = path.join(repo, "snapshots", commit);
  fs.mkdirSync(snap, { recursive: true });
  fs.mkdirSync(path.join(repo, "blobs"), { recursive: true });
  for (const name of fs.readdirSync(src)) {
    const bytes = fs.readFileSync(path.join(src, name));
    const sha = crypto.createHash("sha256").update(bytes).digest("hex");
    const blob = path.join(repo, "blobs", sha);
    if (!fs.existsSync(blob)) fs.writeFileSync(blob, bytes);
    fs.symlinkSync(path.join("..", "..", "blobs", sha), path.join(snap, name));
  }
  fs.rmSync(src, { recursive: true });
}

function writeRef(repo: string, name: string, commit: string): void {
  const f = path.join(repo, "refs", ...name.split("/"));
  fs.mkdirSync(path.dirname(f), { recursive: true });
  fs.writeFileSync(f, commit); // huggingface_hub writes the hash without a newline
}

function err(f: () => unknown): PareError {
  try {
    f();
  } catch (e) {
    if (e instanceof PareError) return e;
    throw e;
  }
  throw new Error("expected a PareError");
}

beforeAll(() => {
  if (!posix) return;
  root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "pare-hub-")));
  hub = path.join(root, "hub");
  repoDir = path.join(hub, "models--org--tiny");
  addSnapshot(repoDir, MAIN, 2);
  addSnapshot(repoDir, DEV, 3);
  writeRef(repoDir, "main", MAIN);
  writeRef(repoDir, "dev", DEV);
  writeRef(repoDir, "v1.0", MAIN);
  writeRef(repoDir, "refs/pr/1", DEV);
  // a repo downloaded at one commit only (no refs/main)
  addSnapshot(path.join(hub, "models--org--pinned"), ONLY, 1);
  // a canonical model without an org
  addSnapshot(path.join(hub, "models--tinyllama"), MAIN, 1);
  writeRef(path.join(hub, "models--tinyllama"), "main", MAIN);
});

afterAll(() => {
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

afterEach(() => {
  vi.unstubAllEnvs();
});

describe("parseHubId", () => {
  it("org/name, org/name@revision and bare names are ids", () => {
    expect(parseHubId("org/name")).toEqual({ repo: "org/name", revision: undefined });
    expect(parseHubId("TinyLlama/TinyLlama-1.1B-Chat-v1.0@main")).toEqual({
      repo: "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
      revision: "main",
    });
    expect(parseHubId("org/name@refs/pr/1")).toEqual({ repo: "org/name", revision: "refs/pr/1" });
    expect(parseHubId("gpt2")).toEqual({ repo: "gpt2", revision: undefined });
    expect(parseHubId(`org/x@${MAIN}`)?.revision).toBe(MAIN);
  });

  it("paths and malformed ids are not ids", () => {
    for (const s of [
      "./org/name",
      "../name",
      "/abs/path",
      "a/b/c",
      "org/",
      "/name",
      "org/na me",
      "org/-name",
      "org/name.",
      "org/na--me",
      "org/na..me",
      "org/name@",
      "org/name@../x",
      "org/name@a/../b",
      "org/name@/x",
      "org\\name",
      "",
      `org/${"x".repeat(100)}`,
    ]) {
      expect(parseHubId(s), s).toBeUndefined();
    }
  });

  it("the cache folder name replaces / by --", () => {
    expect(repoFolderName("org/name")).toBe("models--org--name");
    expect(repoFolderName("gpt2")).toBe("models--gpt2");
  });
});

describe("hubCacheDir", () => {
  it("HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE, else HF_HOME/hub, else XDG_CACHE_HOME, else ~/.cache", () => {
    const base = { HOME: "/home/u" };
    expect(hubCacheDir({ ...base, HF_HUB_CACHE: "/c", HF_HOME: "/h" })).toEqual({
      dir: "/c",
      from: "HF_HUB_CACHE",
    });
    expect(hubCacheDir({ ...base, HUGGINGFACE_HUB_CACHE: "/l", HF_HOME: "/h" }).dir).toBe("/l");
    expect(hubCacheDir({ ...base, HF_HOME: "/h", XDG_CACHE_HOME: "/x" })).toEqual({
      dir: "/h/hub",
      from: "HF_HOME",
    });
    expect(hubCacheDir({ ...base, XDG_CACHE_HOME: "/x" }).dir).toBe("/x/huggingface/hub");
    expect(hubCacheDir(base)).toEqual({ dir: "/home/u/.cache/huggingface/hub", from: "default" });
    // empty variables count as unset; ~ is expanded
    expect(hubCacheDir({ ...base, HF_HUB_CACHE: "", HF_HOME: "~/hf" }).dir).toBe("/home/u/hf/hub");
  });
});

describe.runIf(posix)("resolveHubId in a fake cache", () => {
  it("org/name → snapshots/<refs/main>", () => {
    expect(resolveHubId("org/tiny", env())).toBe(path.join(repoDir, "snapshots", MAIN));
  });

  it("@branch and @tag → snapshots/<refs/branch>; a nested ref (refs/pr/1) too", () => {
    expect(resolveHubId("org/tiny@dev", env())).toBe(path.join(repoDir, "snapshots", DEV));
    expect(resolveHubId("org/tiny@v1.0", env())).toBe(path.join(repoDir, "snapshots", MAIN));
    expect(resolveHubId("org/tiny@main", env())).toBe(path.join(repoDir, "snapshots", MAIN));
    expect(resolveHubId("org/tiny@refs/pr/1", env())).toBe(path.join(repoDir, "snapshots", DEV));
  });

  it("@commit → that snapshot; a unique prefix of 7+ hex digits too", () => {
    expect(resolveHubId(`org/tiny@${DEV}`, env())).toBe(path.join(repoDir, "snapshots", DEV));
    expect(resolveHubId(`org/tiny@${DEV.slice(0, 7)}`, env())).toBe(path.join(repoDir, "snapshots", DEV));
    expect(resolveHubId(`org/pinned@${ONLY}`, env())).toBe(
      path.join(hub, "models--org--pinned", "snapshots", ONLY),
    );
  });

  it("a bare name (models--name) resolves like org/name", () => {
    expect(resolveHubId("tinyllama", env())).toBe(path.join(hub, "models--tinyllama", "snapshots", MAIN));
  });

  it("an id not in the cache: says where it looked and how to get it there", () => {
    const e = err(() => resolveHubId("org/missing", env()));
    expect(e.code).toBe(MODEL_NOT_FOUND);
    expect(e.code).toBe("E_MODEL_NOT_FOUND");
    expect(e.message).toContain(path.join(hub, "models--org--missing"));
    expect(e.message).toContain(path.resolve("org/missing")); // the local path it tried first
    expect(e.message).toContain("HF_HUB_CACHE");
    expect(e.hint).toContain("hf download org/missing");
    expect(e.hint).toContain("huggingface-cli download org/missing");
    expect(e.hint).toMatch(/never downloads/);
    expect(e.context.searched).toEqual([path.resolve("org/missing"), path.join(hub, "models--org--missing")]);
    // with a revision, the hint downloads that revision
    expect(err(() => resolveHubId("org/missing@v2", env())).hint).toContain(
      "hf download org/missing --revision v2",
    );
  });

  it("a revision not in the cache: names the ref and snapshot it looked for and what the cache has", () => {
    const e = err(() => resolveHubId("org/tiny@nope", env()));
    expect(e.code).toBe(MODEL_NOT_FOUND);
    expect(e.message).toContain(path.join(repoDir, "refs", "nope"));
    expect(e.message).toContain(path.join(repoDir, "snapshots", "nope"));
    expect(e.message).toMatch(/refs: .*dev → bbbbbbbb0123/);
    expect(e.message).toContain(`snapshots: ${MAIN}, ${DEV}`);
    expect(e.hint).toContain("hf download org/tiny --revision nope");
    // a full commit hash that is not cached, and an ambiguous / absent prefix
    expect(err(() => resolveHubId(`org/tiny@${"d".repeat(40)}`, env())).code).toBe(MODEL_NOT_FOUND);
    expect(err(() => resolveHubId("org/tiny@1234567", env())).code).toBe(MODEL_NOT_FOUND);
  });

  it("no refs/main (downloaded at one commit): asks for a revision", () => {
    const e = err(() => resolveHubId("org/pinned", env()));
    expect(e.code).toBe(MODEL_NOT_FOUND);
    expect(e.message).toContain("main branch");
    expect(e.message).toContain(ONLY);
    expect(e.hint).toContain("org/pinned@");
  });

  it("a ref to a missing snapshot or holding a path → E_FOLDER_INCOMPLETE, never a path outside the repo", () => {
    const repo = path.join(hub, "models--org--broken");
    addSnapshot(repo, MAIN, 1);
    writeRef(repo, "main", DEV);
    writeRef(repo, "evil", "../../../etc");
    const a = err(() => resolveHubId("org/broken", env()));
    expect(a.code).toBe("E_FOLDER_INCOMPLETE");
    expect(a.message).toContain(path.join(repo, "snapshots", DEV));
    expect(a.hint).toContain("hf download org/broken");
    expect(err(() => resolveHubId("org/broken@evil", env())).code).toBe("E_FOLDER_INCOMPLETE");
  });

  it("the cache location comes from HF_HOME when HF_HUB_CACHE is unset", () => {
    const home = path.join(root, "hfhome");
    fs.mkdirSync(home, { recursive: true });
    if (!fs.existsSync(path.join(home, "hub"))) fs.symlinkSync(hub, path.join(home, "hub"));
    expect(resolveHubId("org/tiny@dev", { HF_HOME: home })).toBe(
      path.join(home, "hub", "models--org--tiny", "snapshots", DEV),
    );
  });
});

describe.runIf(posix)("openModelFolder / loadModel with ids", () => {
  it("org/name, @branch and @commit open the right snapshot (files are symlinks into blobs/)", () => {
    vi.stubEnv("HF_HUB_CACHE", hub);
    const m = loadModel("org/tiny");
    expect(m.dir).toBe(path.join(repoDir, "snapshots", MAIN));
    expect(m.dims.nLayers).toBe(2);
    expect(m.hasTokenizer).toBe(true);
    m.close();
    const d = loadModel("org/tiny@dev");
    expect(d.dims.nLayers).toBe(3);
    d.close();
    const c = loadModel(`org/tiny@${MAIN}`);
    expect(c.dims.nLayers).toBe(2);
    c.close();
    expect(fs.lstatSync(path.join(m.dir, "config.json")).isSymbolicLink()).toBe(true);
  });

  it("missing id / missing revision through openModelFolder", () => {
    vi.stubEnv("HF_HUB_CACHE", hub);
    expect(err(() => openModelFolder("org/missing")).code).toBe("E_MODEL_NOT_FOUND");
    expect(err(() => openModelFolder("org/tiny@nope")).code).toBe("E_MODEL_NOT_FOUND");
    // a bare name that is neither a folder nor cached keeps the plain "no such folder" error
    const e = err(() => openModelFolder("no-such-model-anywhere"));
    expect(e.code).toBe("E_FOLDER_MISSING");
    expect(e.message).toContain("no such folder");
    expect(e.hint).toContain("org/name");
  });

  it("a local path always wins over an id (a folder literally named org/name)", () => {
    vi.stubEnv("HF_HUB_CACHE", hub);
    const cwd = process.cwd();
    const work = fs.mkdtempSync(path.join(root, "cwd-"));
    writeTinyModel(
      path.join(work, "org", "tiny"),
      makeTinyLlama({ seed: 4, layers: 4 }),
      makeByteBpeTokenizerJson(300),
    );
    try {
      process.chdir(work);
      expect(resolveModelPath("org/tiny")).toBe("org/tiny");
      const m = loadModel("org/tiny");
      expect(m.dir).toBe(path.join(work, "org", "tiny"));
      expect(m.dims.nLayers).toBe(4);
      m.close();
      // a file of that name wins too (and is reported as not a folder)
      fs.mkdirSync(path.join(work, "org2"));
      fs.writeFileSync(path.join(work, "org2", "tiny"), "x");
      vi.stubEnv("HF_HUB_CACHE", path.join(root, "empty-hub"));
      expect(err(() => openModelFolder("org2/tiny")).message).toContain("is a file");
    } finally {
      process.chdir(cwd);
    }
  });

  it("a snapshot link leading outside the repo's blobs/ is refused (E_PATH_ESCAPE)", () => {
    const repo = path.join(hub, "models--org--escape");
    addSnapshot(repo, MAIN, 1);
    writeRef(repo, "main", MAIN);
    const snap = path.join(repo, "snapshots", MAIN);
    // into another repo's blobs: refused, as is any other escape
    const other = fs.readdirSync(path.join(repoDir, "blobs"))[0];
    fs.rmSync(path.join(snap, "tokenizer_config.json"));
    fs.symlinkSync(
      path.join("..", "..", "..", "models--org--tiny", "blobs", other),
      path.join(snap, "tokenizer_config.json"),
    );
    const e = err(() => openModelFolder(snap));
    expect(e.code).toBe("E_PATH_ESCAPE");
    fs.rmSync(path.join(snap, "tokenizer_config.json"));
    fs.writeFileSync(path.join(root, "secret.json"), "{}");
    fs.symlinkSync(path.join(root, "secret.json"), path.join(snap, "tokenizer_config.json"));
    vi.stubEnv("HF_HUB_CACHE", hub);
    expect(err(() => openModelFolder("org/escape")).code).toBe("E_PATH_ESCAPE");
  });
});

describe.runIf(posix)("the CLI with ids", () => {
  it("pare inspect org/name --json reads the cached snapshot, and leaves the cache untouched", async () => {
    const before = snapshotDir(hub);
    const r = await runCli(["inspect", "org/tiny@dev", "--json"], { env: { HF_HUB_CACHE: hub } });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const j = parseSingleJson(r.stdout);
    expect(j.dir).toBe(path.join(repoDir, "snapshots", DEV));
    expect(j.layers).toBe(3);
    expect(j.tokenizer).toBe(true);
    const plain = await runCli(["inspect", "org/tiny"], { env: { HF_HUB_CACHE: hub } });
    expect(plain.code).toBe(0);
    expect(plain.stdout).toContain(path.join(repoDir, "snapshots", MAIN));
    expect(snapshotDir(hub)).toEqual(before);
  });

  it("pare inspect of an id not in the cache: coded error naming the folders searched, hint to download", async () => {
    const r = await runCli(["inspect", "org/missing"], { env: { HF_HUB_CACHE: hub }, cwd: root });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("error[E_MODEL_NOT_FOUND]");
    expect(r.stderr).toContain(path.join(hub, "models--org--missing"));
    expect(r.stderr).toContain(path.join(root, "org", "missing"));
    expect(r.stderr).toMatch(/hint: .*hf download org\/missing/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
