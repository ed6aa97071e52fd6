import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { Worker, type WorkerOptions } from "node:worker_threads";

/**
 * Start a worker thread from a module next to the caller. Sources are TypeScript run through tsx; on Node 20,
 * `--import tsx` in a worker's execArgv does not reach the worker's entry module (ERR_UNKNOWN_FILE_EXTENSION), so a
 * `.ts` worker starts from a small bootstrap that registers tsx inside the thread and then imports the module.
 */
export function startWorker(url: URL, options: WorkerOptions = {}): Worker {
  if (!url.pathname.endsWith(".ts")) return new Worker(url, options);
  const boot = `import(${JSON.stringify(tsxApiUrl())}).then((tsx) => { tsx.register(); return import(${JSON.stringify(url.href)}); });`;
  return new Worker(boot, { ...options, eval: true });
}

let tsxApi: string | undefined;
function tsxApiUrl(): string {
  if (!tsxApi) {
    const dir = createRequire(import.meta.url).resolve("tsx/package.json").replace(/package\.json$/, "");
    tsxApi = pathToFileURL(`${dir}dist/esm/api/index.mjs`).href; // the "import" target of tsx/esm/api
  }
  return tsxApi;
}
