import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import WebSocket from "ws";
import type { HttpAnswer, Transport } from "./types.ts";

/** Bodies beyond this are cut: the doctor reads small documents (TwiML, account JSON). */
const MAX_BODY_BYTES = 256 * 1024;

export class TimeoutError extends Error {}

/**
 * One HTTP(S) request with the transport's trust and address overrides. Node's http rather than fetch: the doctor
 * must see exactly what came back (status, every header, Date included) and take the injected CA and lookup.
 */
export function send(
  transport: Pick<Transport, "ca" | "connectLookup">,
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string; timeoutMs: number },
): Promise<HttpAnswer> {
  const u = new URL(url);
  const request = u.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(
      u,
      {
        method: opts.method ?? "GET",
        headers: { ...(opts.body !== undefined ? { "content-length": String(Buffer.byteLength(opts.body)) } : {}), ...opts.headers },
        ...(transport.ca ? { ca: transport.ca } : {}),
        ...(transport.connectLookup ? { lookup: transport.connectLookup } : {}),
        timeout: opts.timeoutMs,
      },
      (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (c: Buffer) => {
          size += c.length;
          if (size <= MAX_BODY_BYTES) chunks.push(c);
        });
        res.on("end", () => {
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") });
        });
        res.on("error", reject);
      },
    );
    // `timeout` above is idle time on the socket; this bounds the whole exchange.
    const timer = setTimeout(() => req.destroy(new TimeoutError(`no complete answer within ${opts.timeoutMs} ms`)), opts.timeoutMs);
    req.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.on("timeout", () => req.destroy(new TimeoutError(`no answer within ${opts.timeoutMs} ms`)));
    req.end(opts.body);
  });
}

/**
 * Try a WebSocket upgrade and close at once: `status` is 101 when the server accepted it, else the HTTP status it
 * answered with. The socket is closed before anything is sent, so no call starts.
 */
export function tryUpgrade(
  transport: Pick<Transport, "ca" | "connectLookup">,
  url: string,
  headers: Record<string, string>,
  timeoutMs: number,
): Promise<{ status: number }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, {
      headers,
      handshakeTimeout: timeoutMs,
      ...(transport.ca ? { ca: transport.ca } : {}),
      ...(transport.connectLookup ? { lookup: transport.connectLookup } : {}),
    });
    let settled = false;
    const done = (fn: () => void) => {
      if (settled) return;
      settled = true;
      fn();
    };
    ws.once("open", () => {
      done(() => resolve({ status: 101 }));
      ws.terminate();
    });
    ws.once("unexpected-response", (_req, res) => {
      done(() => resolve({ status: res.statusCode ?? 0 }));
      res.resume();
      ws.terminate();
    });
    ws.once("error", (err) => done(() => reject(/timed? ?out/i.test(err.message) ? new TimeoutError(`no upgrade within ${timeoutMs} ms`) : err)));
  });
}

/** A network error in words a user can act on. */
export function describeNetworkError(err: unknown): string {
  const e = err as NodeJS.ErrnoException & { reason?: string };
  if (err instanceof TimeoutError) return err.message;
  switch (e.code) {
    case "ECONNREFUSED":
      return "connection refused (nothing listens there)";
    case "ENOTFOUND":
      return `${(e as { hostname?: string }).hostname ?? "the name"} does not resolve`;
    case "ECONNRESET":
      return "the connection was reset";
    case "DEPTH_ZERO_SELF_SIGNED_CERT":
    case "SELF_SIGNED_CERT_IN_CHAIN":
    case "UNABLE_TO_VERIFY_LEAF_SIGNATURE":
    case "CERT_HAS_EXPIRED":
    case "ERR_TLS_CERT_ALTNAME_INVALID":
      return `TLS certificate not accepted (${e.code}): carriers refuse it too`;
    default:
      return e.message || String(err);
  }
}
