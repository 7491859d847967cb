#!/usr/bin/env node
// pare's command line. An installed package runs the compiled dist/. A development checkout (src/ next to
// bin/) runs the TypeScript sources through tsx, a devDependency, so that a stale build is never used;
// PARE_DIST=1 makes it run dist/ too (npm run build first).
import fs from "node:fs";

const source = new URL("../src/cli/main.ts", import.meta.url);
if (fs.existsSync(source) && process.env.PARE_DIST !== "1") {
  const { register } = await import("tsx/esm/api");
  register();
  await import(source.href);
} else {
  await import(new URL("../dist/cli/main.js", import.meta.url).href);
}
