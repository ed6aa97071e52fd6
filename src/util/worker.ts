import { Worker, type WorkerOptions } from "node:worker_threads";

/**
 * Start a worker from a module next to the caller. Sources are TypeScript run through tsx, so a `.ts` worker needs the
 * tsx loader in its own execArgv: under `node --import tsx` it inherits it, under vitest it does not.
 */
export function startWorker(url: URL, options: WorkerOptions = {}): Worker {
  const execArgv = [...(options.execArgv ?? process.execArgv)];
  if (url.pathname.endsWith(".ts") && !hasTsxLoader(execArgv)) execArgv.push("--import", "tsx");
  return new Worker(url, { ...options, execArgv });
}

function hasTsxLoader(execArgv: string[]): boolean {
  return execArgv.some((arg, i) => arg.includes("tsx") && (i === 0 || execArgv[i - 1] === "--import" || arg.startsWith("--import")));
}
