/** pare's version, from package.json (one place; the same relative path from src/ and dist/). */
import { createRequire } from "node:module";

export const PARE_VERSION: string = (createRequire(import.meta.url)("../package.json") as { version: string })
  .version;
