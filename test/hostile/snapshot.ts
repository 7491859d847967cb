/** Folder snapshots that are safe on hostile trees (symlinks are not followed, pipes are not opened). */
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";

/**
 * relative path → "dir" | "link:<target>" | "fifo" | "<mode>:<size>:<sha256>", never following links or opening
 * pipes (which would block).
 */
export function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    const abs = path.join(dir, rel);
    const st = fs.lstatSync(abs);
    if (st.isSymbolicLink()) out[rel || "."] = `link:${fs.readlinkSync(abs)}`;
    else if (st.isDirectory()) {
      out[rel || "."] = "dir";
      for (const name of fs.readdirSync(abs).sort()) walk(path.join(rel, name));
    } else if (st.isFIFO()) out[rel] = "fifo";
    else if (!st.isFile()) out[rel] = "special";
    else {
      const hash = crypto.createHash("sha256").update(fs.readFileSync(abs)).digest("hex");
      out[rel] = `${(st.mode & 0o777).toString(8)}:${st.size}:${hash}`;
    }
  };
  if (fs.existsSync(dir)) walk("");
  return out;
}
