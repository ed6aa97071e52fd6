import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import { WebSocketServer, type RawData, type WebSocket } from "ws";
import type { CallManager } from "../call/call-manager.ts";
import type { CallRuntime, StreamSocket } from "../call/call-runtime.ts";
import type { Config } from "../config.ts";
import type { Carrier, Carriers, Inbound, StreamStart } from "../carriers/carrier.ts";
import { TWILIO_PATHS } from "../carriers/twilio/carrier.ts";
import { BROWSER_PATHS } from "../carriers/browser/carrier.ts";
import { redactUrl } from "./security.ts";

/** Twilio's stream path (kept for importers; each carrier names its own in `carrier.paths.stream`). */
export const STREAM_PATH = TWILIO_PATHS.stream;
/** The softphone's stream: admitted by the single-use token in its query instead of a signature. */
export const PHONE_STREAM_PATH = BROWSER_PATHS.stream;
/** Largest frame accepted from any carrier: a 20 ms frame is ~300 bytes of JSON; a second of audio in one ~11 kB. */
const MAX_MESSAGE_BYTES = 64 * 1024;

/** Close code for a socket refused by policy: a bad token, no `start` in time, too much before `start`. */
export const POLICY_CLOSE_CODE = 1008;
/** A peer that does not answer our close frame within this is cut off, so a dead peer cannot hold its socket. */
const CLOSE_GRACE_MS = 1000;
/** Carriers send at most a handshake then `start`: anything much beyond that before `start` is not a carrier. */
const MAX_MESSAGES_BEFORE_START = 8;
/** Held while a `start` token is redeemed: 5 s of media, far beyond one round trip to Redis. */
const MAX_HELD_WHILE_STARTING = 256;

export type StreamLimits = Pick<Config, "streamStartTimeoutMs" | "maxPendingStreams" | "maxPendingStreamsPerClient" | "streamPingIntervalMs">;

export interface MediaStreamOptions {
  manager: CallManager;
  log: Logger;
  /** The carriers whose media sockets are served, each on its own path (`carrier.paths.stream`). */
  carriers: Carriers;
  /** The public origin streams come to (the URL a carrier signs the upgrade over). */
  publicOrigin: () => URL;
  /** Counters for messages that could not be attributed to a call. */
  counters: Record<string, number>;
  /** The client's address (through trusted proxies only: TRUST_PROXY). */
  clientOf: (req: IncomingMessage) => string;
  /** Rate limit on upgrades, per client address. */
  allowUpgrade?: (client: string) => boolean | Promise<boolean>;
  /** Socket discipline; the configured values when omitted are the defaults of `src/config.ts`. */
  limits?: Partial<StreamLimits>;
}

const DEFAULT_LIMITS: StreamLimits = { streamStartTimeoutMs: 5000, maxPendingStreams: 256, maxPendingStreamsPerClient: 64, streamPingIntervalMs: 10_000 };

/** What the server keeps per open socket. */
interface SocketState {
  /** A pong (or the upgrade) since the last ping. */
  alive: boolean;
  /** Why we cut it off, when we did (a terminated socket closes with 1006 and no reason). */
  cutReason: string | null;
}

/**
 * The media-socket endpoint of every carrier: the carrier of the path checks the upgrade (403 when refused: Twilio's
 * signature, or a token that is not live for Telnyx and the softphone) and parses the frames with its codec. Each
 * socket binds to its call on `start` through the single-use token; every later message goes to that call's runtime.
 * A malformed message is counted and logged, and never closes the socket or touches other calls.
 *
 * Socket discipline, since a signature on an upgrade covers a fixed URL and so admits any number of sockets: a socket
 * must send `start` within `streamStartTimeoutMs`; at most `maxPendingStreams` sockets (`maxPendingStreamsPerClient`
 * per client address) may be waiting for their `start` at once, beyond which the upgrade gets 503 / 429; and every
 * socket is pinged every `streamPingIntervalMs` and cut off when the pong of the previous ping has not come back.
 */
export function attachMediaStreams(server: import("node:http").Server, opts: MediaStreamOptions): WebSocketServer {
  const limits: StreamLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  // maxPayload above our own limit, so an oversized frame is counted and dropped rather than killing the socket.
  // Carriers send ASCII JSON, and every message is parsed and checked anyway: skip ws's UTF-8 pass over each frame.
  const wss = new WebSocketServer({ noServer: true, maxPayload: 4 * MAX_MESSAGE_BYTES, perMessageDeflate: false, skipUTF8Validation: true });
  const sockets = new Map<WebSocket, SocketState>();
  const pendingByClient = new Map<string, number>();
  let pending = 0;

  /** Reserve a place among the sockets waiting for `start`; the returned function gives it back (once). */
  const reservePending = (client: string): (() => void) => {
    pending++;
    pendingByClient.set(client, (pendingByClient.get(client) ?? 0) + 1);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      pending--;
      const n = (pendingByClient.get(client) ?? 1) - 1;
      if (n > 0) pendingByClient.set(client, n);
      else pendingByClient.delete(client);
    };
  };

  // One interval for every socket's liveness: a socket whose pong for the previous ping has not come is cut off.
  let lastPingAt = 0;
  const pinger = setInterval(() => {
    const now = performance.now();
    // After a stall of this process (timers run before I/O), pongs may be waiting unread: ping again, judge next time.
    const late = lastPingAt > 0 && now - lastPingAt > 1.5 * limits.streamPingIntervalMs;
    lastPingAt = now;
    for (const [ws, state] of sockets) {
      if (!state.alive && !late) {
        state.cutReason = `no pong within ${limits.streamPingIntervalMs} ms`;
        opts.log.warn({ reason: state.cutReason }, "media stream socket cut off: it stopped answering pings");
        ws.terminate();
        continue;
      }
      state.alive = false;
      ws.ping();
    }
  }, limits.streamPingIntervalMs).unref();
  wss.on("close", () => clearInterval(pinger));

  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    upgrade(req, socket, head).catch((err: Error) => {
      // The shared state (rate limits, tokens) could not be asked: refuse now, the peer may try again.
      opts.log.warn({ err: err.message, remote: opts.clientOf(req) }, "media stream upgrade refused: shared state unavailable");
      reject(socket, 503, "Service Unavailable");
    });
  });
  /** One upgrade: at most one round trip to the shared state for the rate limit, and one for a softphone token. */
  const upgrade = async (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> => {
    // While the checks below wait on the shared state, a peer that resets must not raise an unhandled 'error'.
    const ignore = () => {};
    socket.on("error", ignore);
    const url = req.url ?? "/";
    const pathname = url.split("?", 1)[0]!;
    const carrier = carrierOf(opts.carriers, pathname);
    if (!carrier) {
      reject(socket, 404, "Not Found");
      return;
    }
    const client = opts.clientOf(req);
    if (opts.allowUpgrade && !(await opts.allowUpgrade(client))) {
      reject(socket, 429, "Too Many Requests");
      return;
    }
    let publicUrl: string;
    try {
      publicUrl = new URL(url, opts.publicOrigin()).toString();
    } catch {
      reject(socket, 400, "Bad Request");
      return;
    }
    const admitted = carrier.verifyStream({ method: "GET", url: publicUrl, headers: req.headers, body: "" });
    if (!admitted.ok) {
      opts.log.warn({ carrier: carrier.name, url: redactUrl(url), remote: client }, `media stream upgrade refused: ${admitted.reason}`);
      reject(socket, admitted.status, "Forbidden");
      return;
    }
    // No signature on this upgrade, only a token: it must be live before the socket is accepted (spent at `start`).
    if (admitted.checkToken && !(await opts.manager.isStreamToken(admitted.token, carrier))) {
      opts.log.warn({ carrier: carrier.name, remote: client }, `${carrier.name === "browser" ? "softphone" : carrier.name} stream refused: missing, used or expired token`);
      reject(socket, 403, "Forbidden");
      return;
    }
    if (pending >= limits.maxPendingStreams) {
      opts.log.warn({ remote: client, pending }, `media stream upgrade refused: ${pending} sockets already waiting for start (MAX_PENDING_STREAMS)`);
      reject(socket, 503, "Service Unavailable");
      return;
    }
    if ((pendingByClient.get(client) ?? 0) >= limits.maxPendingStreamsPerClient) {
      opts.log.warn({ remote: client }, "media stream upgrade refused: too many sockets from this address waiting for start (MAX_PENDING_STREAMS_PER_CLIENT)");
      reject(socket, 429, "Too Many Requests");
      return;
    }
    const release = reservePending(client);
    // Whatever happens to the upgrade (even a socket that dies before it completes), the place is given back.
    socket.once("close", release);
    socket.off("error", ignore);
    wss.handleUpgrade(req, socket, head, (ws) => {
      const state: SocketState = { alive: true, cutReason: null };
      sockets.set(ws, state);
      ws.on("pong", () => (state.alive = true));
      handleSocket(ws, state, opts, limits, { carrier, admittedToken: admitted.token ?? null, release, client });
      ws.once("close", () => sockets.delete(ws));
    });
  };
  return wss;
}

/** The carrier whose stream path this is (its path exactly, or below it: Telnyx puts the token in the path). */
function carrierOf(carriers: Carriers, pathname: string): Carrier | undefined {
  return carriers.all.find((c) => pathname === c.paths.stream || pathname.startsWith(`${c.paths.stream}/`));
}

function reject(socket: Duplex, status: number, text: string): void {
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}

/** Close with a code and reason, and cut the socket off if the peer does not complete the close handshake. */
function closeSocket(ws: WebSocket, code: number, reason: string): void {
  if (ws.readyState === ws.CLOSED) return;
  ws.close(code, reason.slice(0, 120));
  const cut = setTimeout(() => ws.terminate(), CLOSE_GRACE_MS).unref();
  ws.once("close", () => clearTimeout(cut));
}

function handleSocket(
  ws: WebSocket,
  state: SocketState,
  opts: MediaStreamOptions,
  limits: StreamLimits,
  ctx: { carrier: Carrier; admittedToken: string | null; release: () => void; client: string },
): void {
  let call: CallRuntime | null = null;
  /** Set once we close the socket: what it still sends (e.g. a replaced stream's last frames) is dropped unread. */
  let closing = false;
  let beforeStart = 0;
  let errorsBeforeStart = 0;
  const refuse = (reason: string) => {
    closing = true;
    ctx.release();
    clearTimeout(startTimer);
    closeSocket(ws, POLICY_CLOSE_CODE, reason);
  };
  // Before `start` nothing is attributed to a call: counted in the process counters, and only the first is logged.
  const count = (kind: string, detail: string) => {
    if (call) return call.protocolError(kind, detail);
    opts.counters[kind] = (opts.counters[kind] ?? 0) + 1;
    if (errorsBeforeStart++ === 0) opts.log.warn({ kind, detail, remote: ctx.client }, "media stream protocol error before start");
  };

  const startTimer = setTimeout(() => {
    opts.log.warn({ remote: ctx.client, errorsBeforeStart }, "media stream closed: no start in time (STREAM_START_TIMEOUT_MS)");
    refuse(`no start within ${limits.streamStartTimeoutMs} ms`);
  }, limits.streamStartTimeoutMs);

  /**
   * Messages that arrive while the `start` token is being redeemed (a round trip to the shared state): carriers send
   * media right behind `start`, and it belongs to the call once bound, so it is held, in order, and handed over.
   */
  let starting: Inbound[] | null = null;

  ws.on("message", (data: RawData, isBinary: boolean) => {
    if (closing) return;
    if (!call && !starting && ++beforeStart > MAX_MESSAGES_BEFORE_START) {
      if (beforeStart === MAX_MESSAGES_BEFORE_START + 1) {
        count("too_many_before_start", `more than ${MAX_MESSAGES_BEFORE_START} messages before start`);
        refuse(`more than ${MAX_MESSAGES_BEFORE_START} messages before start`);
      }
      return;
    }
    const msg = ctx.carrier.codec.parse(isBinary ? asBuffer(data) : data.toString(), isBinary);
    if (msg.kind === "malformed") {
      count(msg.error, msg.detail);
      return;
    }
    if (call) {
      call.onMessage(msg);
      return;
    }
    if (starting) {
      if (starting.length < MAX_HELD_WHILE_STARTING) starting.push(msg);
      else count("held_while_starting", `more than ${MAX_HELD_WHILE_STARTING} messages while the stream token was checked`);
      return;
    }
    if (msg.kind === "handshake") return;
    if (msg.kind !== "start") {
      count("before_start", `${msg.kind} before start`);
      return;
    }
    starting = [];
    void start(msg);
  });

  const start = async (msg: StreamStart): Promise<void> => {
    const token = msg.token ?? ctx.admittedToken ?? undefined;
    // A socket admitted on a token in its URL (Telnyx, the softphone) is bound to that token: a `start` carrying
    // another is refused, and the softphone must send it again in `start`. A softphone token is good on the
    // softphone's path only (a carrier's path may be unsigned in development): see claim().
    const differs = ctx.admittedToken !== null && (msg.token !== undefined || ctx.carrier.name === "browser") && msg.token !== ctx.admittedToken;
    const mismatch = differs && "start token differs from the token the socket was admitted with";
    let claimed: Awaited<ReturnType<CallManager["claim"]>>;
    try {
      claimed = mismatch ? { error: mismatch } : await opts.manager.claim(token, msg, ctx.carrier);
    } catch (err) {
      claimed = { error: `could not check the stream token: ${(err as Error).message}` };
    }
    const held = starting ?? [];
    starting = null;
    if (closing || ws.readyState !== ws.OPEN) return;
    if ("error" in claimed) {
      opts.log.warn({ carrier: ctx.carrier.name, callSid: msg.callId ?? msg.carrierCallId, reason: claimed.error, remote: ctx.client }, "media stream refused");
      refuse(claimed.error);
      return;
    }
    clearTimeout(startTimer);
    ctx.release();
    call = claimed.call;
    opts.log.info({ carrier: ctx.carrier.name, callSid: call.callSid, streamSid: msg.streamId }, "media stream started");
    call.attach(socket, msg);
    for (const m of held) call.onMessage(m);
  };

  const socket: StreamSocket = {
    send: (d: string | Buffer) => {
      if (ws.readyState === ws.OPEN) ws.send(d);
    },
    close: (code?: number, reason?: string) => {
      closing = true;
      closeSocket(ws, code ?? 1000, reason ?? "");
    },
  };
  ws.on("close", (code, reason) => {
    clearTimeout(startTimer);
    ctx.release();
    if (!call && errorsBeforeStart > 1) opts.log.warn({ remote: ctx.client, errorsBeforeStart }, "media stream closed before start after protocol errors");
    call?.socketClosed(socket, code, state.cutReason ?? reason.toString(), state.cutReason ? { watchdog: "ping", waitedMs: limits.streamPingIntervalMs } : undefined);
  });
  ws.on("error", (err) => opts.log.warn({ err, callSid: call?.callSid }, "media stream socket error"));
}

/** A binary frame's bytes as one Buffer, whatever form `ws` delivered them in. */
function asBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  return Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
}
