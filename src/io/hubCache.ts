/**
 * Model ids from the local Hugging Face hub cache, resolved offline: `org/name` or `org/name@revision` (and a
 * bare `name`, such as `gpt2`, when the cache has it) → `<cache>/models--org--name/snapshots/<commit>`. The
 * commit comes from `refs/<revision>` (`refs/main` by default), or is the revision itself when that is a commit
 * hash (or an unambiguous prefix of one) present under snapshots/. Nothing is ever downloaded. An existing local
 * path always wins over an id.
 *
 * The cache is where huggingface_hub puts it: `$HF_HUB_CACHE`, else (legacy) `$HUGGINGFACE_HUB_CACHE`, else
 * `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub` (a leading `~` is
 * expanded; empty variables count as unset). Snapshot files are symlinks into `../../blobs/`, which the folder
 * reader accepts (see fileInsideFolder in safetensors.ts).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { type ErrorCode, PareError } from "../errors.ts";
import { q } from "./safetensors.ts";

/** The code of "this model is neither a local folder nor in the cache" (the same as a missing local folder). */
export const MODEL_NOT_FOUND: ErrorCode = "E_MODEL_NOT_FOUND";

/** A parsed hub model id. */
export interface HubId {
  /** `org/name` or `name` */
  repo: string;
  /** branch, tag or commit after `@`; undefined means `main` */
  revision?: string;
}

/** One part of a repo id, as huggingface_hub's validate_repo_id allows it (ASCII): starts and ends with [\w]. */
const PART = "[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?";
const REPO_ID = new RegExp(`^(?:${PART}/)?${PART}$`);
/** Branch / tag / commit names: no whitespace, control characters, backslashes or `..` segments. */
const REVISION = /^[A-Za-z0-9_.-]+(?:\/[A-Za-z0-9_.-]+)*$/;
const COMMIT = /^[0-9a-f]{40}$/;
const COMMIT_PREFIX = /^[0-9a-f]{7,39}$/;

/**
 * `org/name`, `org/name@revision`, `name` or `name@revision` as a hub id; undefined for anything else (a path
 * with `./`, `..`, several slashes, a leading `/`, characters a repo id cannot have).
 */
export function parseHubId(spec: string): HubId | undefined {
  const at = spec.indexOf("@");
  const repo = at < 0 ? spec : spec.slice(0, at);
  const revision = at < 0 ? undefined : spec.slice(at + 1);
  if (repo.length > 96 || !REPO_ID.test(repo) || repo.includes("--") || repo.includes("..")) return undefined;
  if (revision !== undefined) {
    if (!REVISION.test(revision) || revision.split("/").some((p) => p === "." || p === ".."))
      return undefined;
  }
  return { repo, revision };
}

/** The hub cache folder and where it came from (the variable, or "default"). */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): { dir: string; from: string } {
  const get = (k: string) => (env[k] ? env[k] : undefined);
  const home = get("HOME") ?? os.homedir();
  const expand = (p: string) => (p === "~" || p.startsWith("~/") ? path.join(home, p.slice(1)) : p);
  const hubCache = get("HF_HUB_CACHE");
  if (hubCache) return { dir: path.resolve(expand(hubCache)), from: "HF_HUB_CACHE" };
  const legacy = get("HUGGINGFACE_HUB_CACHE");
  if (legacy) return { dir: path.resolve(expand(legacy)), from: "HUGGINGFACE_HUB_CACHE" };
  const hfHome = get("HF_HOME");
  if (hfHome) return { dir: path.resolve(expand(hfHome), "hub"), from: "HF_HOME" };
  const xdg = get("XDG_CACHE_HOME");
  if (xdg) return { dir: path.resolve(expand(xdg), "huggingface", "hub"), from: "XDG_CACHE_HOME" };
  return { dir: path.join(home, ".cache", "huggingface", "hub"), from: "default" };
}

/** The cache folder of a repo: `models--org--name`. */
export function repoFolderName(repo: string): string {
  return `models--${repo.replaceAll("/", "--")}`;
}

const isDir = (p: string): boolean => {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
};

const isFile = (p: string): boolean => {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
};

/** Names in a folder (empty when it cannot be read). */
const list = (p: string): string[] => {
  try {
    return fs.readdirSync(p).sort();
  } catch {
    return [];
  }
};

/** refs/ as "name → commit" lines (nested refs such as refs/pr/1 included), for messages. */
function listRefs(refsDir: string, prefix = ""): string[] {
  const out: string[] = [];
  for (const name of list(refsDir)) {
    const p = path.join(refsDir, name);
    if (isDir(p)) out.push(...listRefs(p, `${prefix}${name}/`));
    else if (isFile(p)) out.push(`${prefix}${name} → ${readRef(p).slice(0, 12)}`);
  }
  return out;
}

function readRef(file: string): string {
  try {
    return fs.readFileSync(file, "utf8").trim();
  } catch {
    return "";
  }
}

/** What the cache holds for a repo, for messages: "refs: main → 0123abcd4567; snapshots: …". */
function describeRepo(repoDir: string): string {
  const refs = listRefs(path.join(repoDir, "refs"));
  const snaps = list(path.join(repoDir, "snapshots")).filter((s) =>
    isDir(path.join(repoDir, "snapshots", s)),
  );
  const show = (xs: string[]) =>
    xs.length === 0 ? "none" : xs.slice(0, 8).join(", ") + (xs.length > 8 ? ", …" : "");
  return `refs: ${show(refs)}; snapshots: ${show(snaps)}`;
}

/** "`hf download org/name [--revision r]` (or `huggingface-cli download …`)" */
const downloadCommand = (id: HubId): string => {
  const rev = id.revision ? ` --revision ${id.revision}` : "";
  return `\`hf download ${id.repo}${rev}\` (or \`huggingface-cli download ${id.repo}${rev}\`)`;
};

const downloadHint = (id: HubId): string =>
  `pare never downloads: fetch it with ${downloadCommand(id)}, set HF_HUB_CACHE or HF_HOME if your cache ` +
  "lives elsewhere, or pass a local model folder";

/**
 * The snapshot folder of a hub id in the cache. Throws MODEL_NOT_FOUND when the repo or the revision is not there
 * (the message names the folders searched, the hint how to get the model), E_FOLDER_INCOMPLETE when a ref points
 * to a snapshot that is missing or holds something that is not a commit.
 */
export function resolveHubId(spec: string, env: NodeJS.ProcessEnv = process.env): string {
  const id = parseHubId(spec);
  if (!id) {
    throw new PareError(
      "E_USAGE",
      `${q(spec)} is not a Hugging Face model id (org/name or org/name@revision)`,
      "give a model id or a local model folder",
      { model: spec },
    );
  }
  const cache = hubCacheDir(env);
  const repoDir = path.join(cache.dir, repoFolderName(id.repo));
  const context = {
    model: spec,
    repo: id.repo,
    revision: id.revision,
    cache: cache.dir,
    cacheFrom: cache.from,
  };
  if (!isDir(repoDir)) {
    const local = path.resolve(spec);
    throw new PareError(
      MODEL_NOT_FOUND,
      `${spec} is neither a local folder (${local}) nor in the Hugging Face cache (${repoDir} does not exist; ` +
        `cache ${cache.dir}${cache.from === "default" ? ", the default: HF_HUB_CACHE and HF_HOME are unset" : ` from $${cache.from}`})`,
      downloadHint(id),
      { ...context, searched: [local, repoDir] },
    );
  }
  const snapshots = path.join(repoDir, "snapshots");
  const revision = id.revision ?? "main";
  const refFile = path.join(repoDir, "refs", ...revision.split("/"));
  let commit: string | undefined;
  let via: string;
  if (isFile(refFile)) {
    commit = readRef(refFile);
    via = `refs/${revision}`;
    if (!/^[A-Za-z0-9_.-]+$/.test(commit) || commit === "." || commit === "..") {
      throw new PareError(
        "E_FOLDER_INCOMPLETE",
        `${refFile} does not hold a commit hash (${q(commit.slice(0, 80))})`,
        `the cache entry is damaged: download it again (\`hf download ${id.repo}\`)`,
        { ...context, ref: refFile },
      );
    }
  } else {
    via = "the revision itself";
    const snaps = list(snapshots).filter((s) => isDir(path.join(snapshots, s)));
    if (id.revision !== undefined && COMMIT.test(id.revision) && snaps.includes(id.revision)) {
      commit = id.revision;
    } else if (id.revision !== undefined && COMMIT_PREFIX.test(id.revision)) {
      const matches = snaps.filter((s) => COMMIT.test(s) && s.startsWith(id.revision as string));
      if (matches.length === 1) commit = matches[0];
      else if (matches.length > 1) {
        throw new PareError(
          MODEL_NOT_FOUND,
          `${spec}: the commit prefix ${id.revision} matches ${matches.length} snapshots in ${snapshots} ` +
            `(${matches.join(", ")})`,
          "give more digits of the commit hash",
          { ...context, searched: [refFile, snapshots], matches },
        );
      }
    }
    if (commit === undefined) {
      throw new PareError(
        MODEL_NOT_FOUND,
        `${spec}: the Hugging Face cache has ${id.repo} but not ${id.revision === undefined ? "its main branch" : `the revision ${q(revision)}`} ` +
          `(no ${refFile}, no snapshot ${path.join(snapshots, revision)}; ${describeRepo(repoDir)})`,
        id.revision === undefined
          ? `name a cached revision (${id.repo}@<branch, tag or commit>), or fetch the main branch with ` +
              `${downloadCommand(id)} (pare never downloads)`
          : downloadHint(id),
        { ...context, searched: [refFile, path.join(snapshots, revision)] },
      );
    }
  }
  const snap = path.join(snapshots, commit);
  if (!isDir(snap)) {
    throw new PareError(
      "E_FOLDER_INCOMPLETE",
      `${spec}: ${via} points to commit ${commit}, but ${snap} does not exist (an interrupted download?)`,
      `download it again: \`hf download ${id.repo}${id.revision ? ` --revision ${id.revision}` : ""}\``,
      { ...context, commit, searched: [snap] },
    );
  }
  return snap;
}

/**
 * Where to read the model `spec` from: `spec` itself when something exists at that path (a local path always
 * wins), else its snapshot in the hub cache when `spec` is a hub id. An `org/name` id that is not cached throws
 * (see resolveHubId); a bare `name` that is neither a local path nor cached is returned unchanged, so that the
 * caller reports the missing folder.
 */
export function resolveModelPath(spec: string, env: NodeJS.ProcessEnv = process.env): string {
  if (fs.existsSync(spec)) return spec;
  // a dangling symlink exists as a path too: let the folder reader report it
  try {
    fs.lstatSync(spec);
    return spec;
  } catch {}
  const id = parseHubId(spec);
  if (!id) return spec;
  if (!id.repo.includes("/")) {
    const repoDir = path.join(hubCacheDir(env).dir, repoFolderName(id.repo));
    if (!isDir(repoDir)) return spec;
  }
  return resolveHubId(spec, env);
}
