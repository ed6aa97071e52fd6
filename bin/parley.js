#!/usr/bin/env node
// The `parley` command. Sources are TypeScript run through tsx, registered in-process so `npx parley` works without
// `--import tsx`. tsx is resolved from this package, not the cwd, so the command works from any directory.
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const tsxDir = createRequire(import.meta.url).resolve("tsx/package.json").replace(/package\.json$/, "");
const { register } = await import(pathToFileURL(`${tsxDir}dist/esm/api/index.mjs`).href); // tsx/esm/api's "import" target
register();
await import(new URL("../src/cli/main.ts", import.meta.url).href);
