/**
 * `parley mcp`: an MCP server on stdin/stdout for assistants that launch their tools as processes (Claude Desktop,
 * editors). It drives a running Parley through its control API: PARLEY_URL (default http://127.0.0.1:3334) and
 * API_TOKEN. stdout carries the protocol, so everything else goes to stderr.
 *
 * Runnable directly: `node --import tsx src/mcp/stdio.ts`.
 */
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { DEFAULT_URL } from "../cli/usage.ts";
import { HttpParleyApi } from "./http-api.ts";
import { createMcpServer } from "./server.ts";

export interface StdioOptions {
  url: string;
  token?: string;
}

/** Serve MCP on this process's stdin/stdout until stdin closes. */
export async function runStdioServer(opts: StdioOptions): Promise<void> {
  const url = checkedUrl(opts.url);
  const server = createMcpServer(new HttpParleyApi({ url, ...(opts.token ? { token: opts.token } : {}) }));
  const transport = new StdioServerTransport();
  const closed = new Promise<void>((resolve) => (transport.onclose = resolve));
  await server.connect(transport);
  // The client ends the server by closing our stdin.
  process.stdin.once("end", () => void server.close());
  process.stderr.write(`parley mcp: serving on stdio, driving ${url}${opts.token ? " (with API_TOKEN)" : ""}\n`);
  await closed;
}

function checkedUrl(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new Error(`PARLEY_URL is not a URL: '${raw}'`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error(`PARLEY_URL must be http:// or https://, not '${raw}'`);
  return raw;
}

function isMain(): boolean {
  const arg = process.argv[1];
  if (!arg) return false;
  try {
    return realpathSync(arg) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) {
  runStdioServer({ url: process.env.PARLEY_URL || DEFAULT_URL, token: process.env.API_TOKEN || undefined }).then(
    () => process.exit(0),
    (err: Error) => {
      process.stderr.write(`parley mcp: ${err.message}\n`);
      process.exit(2);
    },
  );
}
