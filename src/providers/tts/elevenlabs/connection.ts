import WebSocket from "ws";
import { ElevenLabsTtsError, networkError, statusError } from "./errors.ts";

/** Pino-compatible logging, so the provider can be given the service's logger (or nothing). */
export interface ElevenLabsLogger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export const silentLogger: ElevenLabsLogger = { debug() {}, info() {}, warn() {} };

/** One utterance's side of a multi-context socket. */
export interface ContextHandler {
  readonly contextId: string;
  /** False once the context is closing (no keepalives needed). */
  readonly wantsKeepalive: boolean;
  /** A message for this context (already parsed; `contextId` matched). */
  onServerMessage(msg: Record<string, unknown>): void;
  /** The socket failed or closed while this context was on it. */
  onConnectionLost(err: ElevenLabsTtsError): void;
}

export interface ConnectionSettings {
  /** Full ws:// or wss:// URL of `multi-stream-input`, query included. */
  url: string;
  apiKey: string;
  connectTimeoutMs: number;
  /** Close a connection that has carried no context for this long. */
  idleTimeoutMs: number;
  /** Send `{context_id, text: ""}` to a live context after this long without sending it anything. */
  keepaliveMs: number;
  maxContexts: number;
  voiceId: string;
  modelId: string;
  log: ElevenLabsLogger;
}

let nextConnectionId = 1;

/**
 * One `multi-stream-input` WebSocket carrying up to `maxContexts` utterances. Messages written before the socket
 * opens are queued and sent on open, in order. Server messages are routed by `contextId`; anything else (not JSON,
 * binary, no or unknown context id: e.g. audio still in flight for a context we closed) is dropped and counted.
 */
export class MultiContextConnection {
  readonly id = nextConnectionId++;
  readonly contexts = new Map<string, ContextHandler>();
  state: "connecting" | "open" | "closing" | "closed" = "connecting";
  /** Resolves when the socket is open; rejects (handled) with the reason it could not open. */
  readonly opened: Promise<void>;
  /** Messages dropped as unusable (garbage, or for contexts no longer here). */
  dropped = 0;
  /** performance.now() of the last message from the server. */
  lastMessageAt = 0;
  private readonly ws: WebSocket;
  private outbox: { contextId: string | null; data: string }[] = [];
  private failure: ElevenLabsTtsError | undefined;
  private settleOpen!: { resolve: () => void; reject: (e: ElevenLabsTtsError) => void };
  private idleTimer: NodeJS.Timeout | undefined;
  private keepaliveTimer: NodeJS.Timeout | undefined;
  private readonly lastSent = new Map<string, number>();

  constructor(
    private readonly s: ConnectionSettings,
    private readonly onClosed: (conn: MultiContextConnection, err: ElevenLabsTtsError, everOpened: boolean) => void,
  ) {
    this.opened = new Promise<void>((resolve, reject) => (this.settleOpen = { resolve, reject }));
    this.opened.catch(() => {}); // surfaced through the contexts (and ready()), never as an unhandled rejection
    this.ws = new WebSocket(s.url, {
      headers: { "xi-api-key": s.apiKey },
      handshakeTimeout: s.connectTimeoutMs,
      perMessageDeflate: false,
    });
    let everOpened = false;
    this.ws.on("open", () => {
      everOpened = true;
      this.state = "open";
      const queued = this.outbox;
      this.outbox = [];
      for (const m of queued) this.ws.send(m.data, noop);
      this.keepaliveTimer = setInterval(() => this.keepalive(), Math.max(250, Math.floor(s.keepaliveMs / 2)));
      this.keepaliveTimer.unref();
      if (this.contexts.size === 0) this.startIdleTimer();
      s.log.debug({ connection: this.id }, "ElevenLabs WebSocket open");
      this.settleOpen.resolve();
    });
    this.ws.on("unexpected-response", (req, res) => {
      // The upgrade was refused (401 bad key, 429, 5xx...): read the reason, then abort.
      const chunks: Buffer[] = [];
      let size = 0;
      const done = () => {
        clearTimeout(timer);
        if (!this.failure) this.failure = statusError(res.statusCode ?? 0, Buffer.concat(chunks).toString("utf8"), s);
        this.ws.terminate();
      };
      const timer = setTimeout(done, 1000);
      res.on("data", (c: Buffer) => {
        if (size < 4096) chunks.push(c);
        size += c.length;
      });
      res.on("end", done);
      res.on("error", done);
      res.on("close", done);
      void req;
    });
    this.ws.on("error", (err) => {
      if (!this.failure)
        this.failure = networkError(everOpened ? "the WebSocket connection failed" : `cannot connect to ${hostOf(s.url)}`, err);
    });
    this.ws.on("close", (code, reasonBuf) => {
      const wasClosing = this.state === "closing";
      this.state = "closed";
      this.clearTimers();
      const reason = reasonBuf.toString("utf8");
      const err =
        this.failure ??
        (wasClosing
          ? new ElevenLabsTtsError("ElevenLabs: connection closed", "closed")
          : closeError(code, reason));
      this.settleOpen.reject(err);
      const contexts = [...this.contexts.values()];
      this.contexts.clear();
      this.outbox = [];
      s.log.debug({ connection: this.id, code, reason, error: err.message, contexts: contexts.length }, "ElevenLabs WebSocket closed");
      this.onClosed(this, err, everOpened);
      for (const c of contexts) c.onConnectionLost(err);
    });
    this.ws.on("message", (data, isBinary) => this.receive(data, isBinary));
    this.ws.on("pong", () => (this.lastMessageAt = performance.now()));
  }

  get live(): boolean {
    return this.state === "connecting" || this.state === "open";
  }

  get hasRoom(): boolean {
    return this.live && this.contexts.size < this.s.maxContexts;
  }

  attach(ctx: ContextHandler): void {
    this.contexts.set(ctx.contextId, ctx);
    this.lastSent.set(ctx.contextId, performance.now());
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  /** Send (or queue, while connecting) a message of `contextId`. Ignored once the socket is closing. */
  send(contextId: string | null, msg: object): void {
    const data = JSON.stringify(msg);
    if (contextId) this.lastSent.set(contextId, performance.now());
    if (this.state === "open") this.ws.send(data, noop);
    else if (this.state === "connecting") this.outbox.push({ contextId, data });
  }

  /**
   * Stop a context now (barge-in, failure): `close_context` if the server may know it, or nothing at all if its
   * messages never left the outbox. Late audio for it is dropped.
   */
  abortContext(contextId: string): void {
    if (this.state === "connecting") {
      const before = this.outbox.length;
      this.outbox = this.outbox.filter((m) => m.contextId !== contextId);
      if (before === this.outbox.length && this.contexts.has(contextId)) this.send(contextId, { context_id: contextId, close_context: true });
    } else if (this.state === "open") this.send(contextId, { context_id: contextId, close_context: true });
    this.detach(contextId);
  }

  /** Forget a context (it finished or was closed). */
  detach(contextId: string): void {
    if (!this.contexts.delete(contextId)) return;
    this.lastSent.delete(contextId);
    if (this.contexts.size === 0 && this.state === "open") this.startIdleTimer();
  }

  /** Ping, and resolve whether the socket answered within `timeoutMs`. */
  probe(timeoutMs: number): Promise<boolean> {
    if (this.state !== "open") return Promise.resolve(false);
    return new Promise((resolve) => {
      const onPong = () => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.ws.off("pong", onPong);
        resolve(false);
      }, timeoutMs);
      timer.unref();
      this.ws.once("pong", onPong);
      try {
        this.ws.ping();
      } catch {
        clearTimeout(timer);
        this.ws.off("pong", onPong);
        resolve(false);
      }
    });
  }

  /** Drop the socket at once; its contexts get `err`. */
  terminate(err: ElevenLabsTtsError): void {
    if (this.state === "closed") return;
    if (!this.failure) this.failure = err;
    this.ws.terminate();
  }

  /** Close gracefully: `close_socket`, then a normal close. Contexts still here get `err`. */
  close(err?: ElevenLabsTtsError): void {
    if (!this.live) return;
    if (err && !this.failure) this.failure = err;
    if (this.state === "open") {
      this.ws.send(JSON.stringify({ close_socket: true }), noop);
      this.state = "closing";
      this.ws.close(1000);
      // A server that never completes the closing handshake must not hold the socket (or the process) open.
      const t = setTimeout(() => this.ws.terminate(), 2000);
      t.unref();
    } else {
      this.state = "closing";
      this.ws.terminate();
    }
  }

  private receive(data: WebSocket.RawData, isBinary: boolean): void {
    this.lastMessageAt = performance.now();
    if (isBinary) return this.drop("binary frame");
    let msg: unknown;
    try {
      msg = JSON.parse(rawToString(data));
    } catch {
      return this.drop("not JSON");
    }
    if (!msg || typeof msg !== "object" || Array.isArray(msg)) return this.drop("not an object");
    const m = msg as Record<string, unknown>;
    const id = m.contextId ?? m.context_id;
    if (typeof id !== "string") {
      if (typeof m.error === "string" || typeof m.message === "string")
        this.s.log.warn({ connection: this.id, error: m.error, message: m.message }, "ElevenLabs WebSocket: server error message");
      return this.drop("no context id");
    }
    const ctx = this.contexts.get(id);
    if (!ctx) return this.drop("unknown or closed context");
    ctx.onServerMessage(m);
  }

  private drop(why: string): void {
    this.dropped++;
    if (this.dropped <= 5 || this.dropped % 100 === 0)
      this.s.log.debug({ connection: this.id, why, dropped: this.dropped }, "ElevenLabs WebSocket: message dropped");
  }

  private keepalive(): void {
    if (this.state !== "open") return;
    const now = performance.now();
    for (const [id, ctx] of this.contexts) {
      if (!ctx.wantsKeepalive) continue;
      if (now - (this.lastSent.get(id) ?? 0) >= this.s.keepaliveMs) this.send(id, { context_id: id, text: "" });
    }
  }

  private startIdleTimer(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      if (this.contexts.size === 0 && this.state === "open") {
        this.s.log.debug({ connection: this.id }, "ElevenLabs WebSocket idle: closing");
        this.close();
      }
    }, this.s.idleTimeoutMs);
    this.idleTimer.unref();
  }

  private clearTimers(): void {
    clearTimeout(this.idleTimer);
    clearInterval(this.keepaliveTimer);
    this.idleTimer = undefined;
    this.keepaliveTimer = undefined;
  }
}

function noop(): void {}

function rawToString(data: WebSocket.RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString("utf8");
  if (data instanceof ArrayBuffer) return Buffer.from(data).toString("utf8");
  return data.toString("utf8");
}

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}

/** Why the server closed an open socket. Policy closes that name the key are auth errors (no fallback). */
function closeError(code: number, reason: string): ElevenLabsTtsError {
  const r = reason.trim();
  if (/quota/i.test(r))
    return new ElevenLabsTtsError(`ElevenLabs: 401 quota exceeded — the account has no characters left (${r})`, "auth", { detail: r });
  if (/api[ _-]?key|unauthori[sz]ed|authenticat/i.test(r))
    return new ElevenLabsTtsError(`ElevenLabs: 401 Unauthorized — check ELEVENLABS_API_KEY (${r})`, "auth", { detail: r });
  return new ElevenLabsTtsError(
    code === 1006
      ? "ElevenLabs: the WebSocket connection dropped (code 1006)"
      : `ElevenLabs: the WebSocket was closed by the server (code ${code}${r ? `: ${r}` : ""})`,
    "network",
    r ? { detail: r } : {},
  );
}

/**
 * The WebSockets of one provider. A new utterance goes on the first live socket with room (connecting ones count:
 * six utterances started at once need two sockets, not six); a socket opens lazily when none has room. After a socket
 * fails to open (other than for auth), new utterances go straight to HTTP for a back-off period (1 s, doubling to
 * 30 s, reset by the next successful open) instead of each paying for another failing attempt.
 */
export class ConnectionPool {
  private readonly conns: MultiContextConnection[] = [];
  private backoffMs = 0;
  private backoffUntil = 0;
  private closed = false;

  constructor(
    private readonly settings: ConnectionSettings,
    private readonly backoff: { minMs: number; maxMs: number },
  ) {}

  /** A connection with room for one more context, or null when WebSockets are in back-off (use HTTP). */
  acquire(): MultiContextConnection | null {
    if (this.closed) return null;
    const c = this.conns.find((x) => x.hasRoom);
    if (c) return c;
    if (performance.now() < this.backoffUntil) return null;
    return this.open();
  }

  /** Some live connection (opening one if there is none), for warming up. */
  warm(): MultiContextConnection | null {
    if (this.closed) return null;
    return this.conns.find((x) => x.live) ?? this.open();
  }

  get connections(): readonly MultiContextConnection[] {
    return this.conns;
  }

  closeAll(err: ElevenLabsTtsError): void {
    this.closed = true;
    for (const c of [...this.conns]) c.close(err);
  }

  private open(): MultiContextConnection {
    const conn = new MultiContextConnection(this.settings, (c, err, everOpened) => {
      const i = this.conns.indexOf(c);
      if (i >= 0) this.conns.splice(i, 1);
      if (!everOpened && !err.definitive && this.backoff.minMs > 0) {
        this.backoffMs = Math.min(this.backoff.maxMs, this.backoffMs ? this.backoffMs * 2 : this.backoff.minMs);
        this.backoffUntil = performance.now() + this.backoffMs;
        this.settings.log.warn(
          { error: err.message, retryInMs: this.backoffMs },
          "ElevenLabs WebSocket unavailable: using HTTP streaming until the retry",
        );
      }
    });
    conn.opened.then(
      () => {
        this.backoffMs = 0;
        this.backoffUntil = 0;
      },
      () => {},
    );
    this.conns.push(conn);
    return conn;
  }
}
