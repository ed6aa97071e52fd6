import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import { WebSocketServer, type RawData, type WebSocket } from "ws";
import type { CallManager } from "../call/call-manager.ts";
import type { CallRuntime } from "../call/call-runtime.ts";
import { isValidStreamUpgrade } from "../telephony/signature.ts";
import { redactUrl } from "./security.ts";
import { MAX_MESSAGE_BYTES, parseInbound } from "../telephony/media-stream-codec.ts";

export const STREAM_PATH = "/voice/stream";
/** The softphone's stream: the same protocol, admitted by the single-use token in its query instead of a signature. */
export const PHONE_STREAM_PATH = "/phone/stream";

export interface MediaStreamOptions {
  manager: CallManager;
  log: Logger;
  authToken?: string;
  publicOrigin: () => URL;
  /** Counters for messages that could not be attributed to a call. */
  counters: Record<string, number>;
  /** The client's address (through trusted proxies only: TRUST_PROXY). */
  clientOf: (req: IncomingMessage) => string;
  /** Rate limit on upgrades, per client address. */
  allowUpgrade?: (client: string) => boolean;
  /** Whether the browser softphone's stream path is served. */
  softphone: boolean;
}

/**
 * The Twilio Media Streams endpoint. The upgrade is refused (403) without a valid signature when an auth token is
 * configured. Each socket binds to its call on `start` through the single-use token; every later message goes to that
 * call's runtime. A malformed message is counted and logged, and never closes the socket or touches other calls.
 */
export function attachMediaStreams(server: import("node:http").Server, opts: MediaStreamOptions): WebSocketServer {
  // maxPayload above our own limit, so an oversized frame is counted and dropped rather than killing the socket.
  // Twilio sends ASCII JSON, and every message is parsed and checked anyway: skip ws's UTF-8 pass over each frame.
  const wss = new WebSocketServer({ noServer: true, maxPayload: 4 * MAX_MESSAGE_BYTES, perMessageDeflate: false, skipUTF8Validation: true });

  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = req.url ?? "/";
    const [pathname, query] = url.split("?", 2) as [string, string | undefined];
    const phone = opts.softphone && pathname === PHONE_STREAM_PATH;
    if (pathname !== STREAM_PATH && !phone) {
      reject(socket, 404, "Not Found");
      return;
    }
    const client = opts.clientOf(req);
    if (opts.allowUpgrade && !opts.allowUpgrade(client)) {
      reject(socket, 429, "Too Many Requests");
      return;
    }
    if (phone) {
      if (!opts.manager.isBrowserToken(new URLSearchParams(query).get("token"))) {
        opts.log.warn({ remote: client }, "softphone stream refused: missing, used or expired token");
        reject(socket, 403, "Forbidden");
        return;
      }
    } else if (opts.authToken) {
      const sig = req.headers["x-twilio-signature"];
      if (!isValidStreamUpgrade(opts.authToken, typeof sig === "string" ? sig : undefined, opts.publicOrigin(), url)) {
        opts.log.warn({ url: redactUrl(url), remote: client }, "media stream upgrade refused: missing or invalid X-Twilio-Signature");
        reject(socket, 403, "Forbidden");
        return;
      }
    }
    wss.handleUpgrade(req, socket, head, (ws) => handleSocket(ws, opts));
  });
  return wss;
}

function reject(socket: Duplex, status: number, text: string): void {
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}

function handleSocket(ws: WebSocket, opts: MediaStreamOptions): void {
  let call: CallRuntime | null = null;
  const count = (kind: string, detail: string) => {
    if (call) call.protocolError(kind, detail);
    else {
      opts.counters[kind] = (opts.counters[kind] ?? 0) + 1;
      opts.log.warn({ kind, detail }, "media stream protocol error before start");
    }
  };

  ws.on("message", (data: RawData, isBinary: boolean) => {
    if (isBinary) {
      count("binary_frame", "Twilio sends text frames only");
      return;
    }
    const parsed = parseInbound(data.toString());
    if (!parsed.ok) {
      count(parsed.kind, parsed.detail);
      return;
    }
    const msg = parsed.msg;
    if (call) {
      call.onMessage(msg);
      return;
    }
    if (msg.event === "connected") return;
    if (msg.event !== "start") {
      count("before_start", `${msg.event} before start`);
      return;
    }
    const claimed = opts.manager.claim(msg.customParameters.token, msg.callSid);
    if ("error" in claimed) {
      opts.log.warn({ callSid: msg.callSid, reason: claimed.error }, "media stream refused");
      ws.close(1008, claimed.error);
      return;
    }
    call = claimed.call;
    opts.log.info({ callSid: call.callSid, streamSid: msg.streamSid }, "media stream started");
    call.attach(socket, msg);
  });

  const socket = { send: (d: string) => ws.readyState === ws.OPEN && ws.send(d), close: (code?: number, reason?: string) => ws.close(code, reason) };
  ws.on("close", (code, reason) => call?.socketClosed(socket, code, reason.toString()));
  ws.on("error", (err) => opts.log.warn({ err, callSid: call?.callSid }, "media stream socket error"));
}
