import { fork } from "node:child_process";
import type { GeneratorMessage, ProgressMessage, ResultMessage } from "../../bench/load/protocol.ts";

/** Run the capacity benchmark's load generator (its own process, IPC), as bench/run.ts does; no wall-clock limits. */
export async function runGenerator(args: string[]): Promise<{ result: ResultMessage; progress: ProgressMessage[]; code: number | null; stderr: string }> {
  const child = fork("bench/load/generator.ts", args, { execArgv: ["--import", "tsx"], stdio: ["ignore", "pipe", "pipe", "ipc"] });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  child.stdout!.resume();
  const progress: ProgressMessage[] = [];
  let result: ResultMessage | undefined;
  let error: string | undefined;
  child.on("message", (m: GeneratorMessage) => {
    if (m.type === "progress") progress.push(m);
    else if (m.type === "result") result = m;
    else error = m.message;
  });
  const code = await new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
  if (!result) throw new Error(`no result from the generator (exit ${code}): ${error ?? ""}\n${stderr}`);
  return { result, progress, code, stderr };
}

/** Run the generator expecting it to refuse its arguments: its exit code and the error it reported. */
export async function generatorRefuses(args: string[]): Promise<{ code: number | null; message: string }> {
  const child = fork("bench/load/generator.ts", args, { execArgv: ["--import", "tsx"], stdio: ["ignore", "pipe", "pipe", "ipc"] });
  child.stdout!.resume();
  child.stderr!.resume();
  let message = "";
  child.on("message", (m: GeneratorMessage) => {
    if (m.type === "error") message = m.message;
  });
  const code = await new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
  return { code, message };
}
