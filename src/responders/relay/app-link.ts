import type WebSocket from "ws";
import { connectRelay } from "./connect.ts";
import type { ParleyToApp, SetupMessage } from "./protocol.ts";

export interface AppLinkEvents {
  /** A text frame from the app. */
  message(raw: string): void;
  /** The socket is (again) open and `setup` has gone out; `attempt` 1 is the first connection. */
  connected(attempt: number): void;
  /** The socket dropped and a reconnect is under way. */
  dropped?(why: string): void;
  /** No app to talk to: the first connect and the one retry failed, or the socket dropped a second time. */
  unreachable(why: string): void;
  record(type: string, data?: Record<string, unknown>): void;
}

/** Messages kept while reconnecting and sent after the new `setup` (Twilio's application reconnect keeps 500). */
const MAX_PENDING = 500;

/**
 * The socket to the app over a session. One retry in all: a failed first connect or an unexpected drop is retried
 * once, with a fresh `setup`; after that the app is unreachable. While reconnecting, messages for the app are kept
 * and sent after the new `setup`, in order.
 */
export class AppLink {
  private ws: WebSocket | null = null;
  private attempts = 0;
  private pending: string[] = [];
  private state: "idle" | "connecting" | "open" | "closed" = "idle";

  constructor(
    private readonly url: string,
    private readonly opts: { authToken?: string; connectTimeoutMs: number; retryDelayMs: number },
    private readonly setup: () => SetupMessage,
    private readonly on: AppLinkEvents,
  ) {}

  get isOpen(): boolean {
    return this.state === "open";
  }

  /** Resolves once connected, or once the app is found unreachable (never rejects). */
  async connect(): Promise<void> {
    if (this.state !== "idle") return;
    this.state = "connecting";
    await this.dial();
  }

  private async dial(): Promise<void> {
    while (this.state === "connecting") {
      this.attempts++;
      try {
        const ws = await connectRelay(this.url, { authToken: this.opts.authToken, timeoutMs: this.opts.connectTimeoutMs });
        if (this.closedMeanwhile()) {
          ws.close(1000);
          return;
        }
        this.adopt(ws);
        return;
      } catch (err) {
        const why = err instanceof Error ? err.message : String(err);
        this.on.record("relay.connect_failed", { attempt: this.attempts, message: why });
        if (this.attempts >= 2) return this.giveUp(`could not connect: ${why}`);
        await new Promise((r) => setTimeout(r, this.opts.retryDelayMs));
      }
    }
  }

  /** Send a message now, or after the reconnect under way; false when there is no socket to send it on. */
  send(msg: ParleyToApp): boolean {
    const frame = JSON.stringify(msg);
    if (this.state === "open" && this.ws) {
      this.ws.send(frame);
      return true;
    }
    if (this.state === "connecting" && this.pending.length < MAX_PENDING) {
      this.pending.push(frame);
      return true;
    }
    return false;
  }

  /** Close on purpose (the session ended, the call is over, or the app misbehaved): no reconnect. */
  close(code = 1000, reason = ""): void {
    if (this.state === "closed") return;
    this.state = "closed";
    this.pending = [];
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.removeAllListeners("close");
      ws.on("close", () => {});
      ws.close(code, reason);
    }
  }

  /** After an await: `close()` may have run (a plain comparison would be narrowed away by the compiler). */
  private closedMeanwhile(): boolean {
    return this.state === "closed";
  }

  private adopt(ws: WebSocket): void {
    this.ws = ws;
    this.state = "open";
    ws.on("message", (data, isBinary) => {
      if (this.ws !== ws) return;
      this.on.message(isBinary ? "<binary frame>" : data.toString());
    });
    ws.on("error", (err) => this.on.record("relay.socket_error", { message: err.message }));
    ws.on("close", (code, reason) => this.lost(ws, code, reason.toString()));
    this.on.record("relay.connected", { attempt: this.attempts, url: redact(this.url) });
    ws.send(JSON.stringify(this.setup()));
    const backlog = this.pending;
    this.pending = [];
    for (const frame of backlog) ws.send(frame);
    this.on.connected(this.attempts);
  }

  private lost(ws: WebSocket, code: number, reason: string): void {
    if (this.ws !== ws || this.state === "closed") return;
    this.ws = null;
    const why = `app closed the socket (code ${code}${reason ? `, ${reason}` : ""})`;
    this.on.record("relay.dropped", { attempt: this.attempts, code, reason });
    if (this.attempts >= 2) return this.giveUp(why);
    this.state = "connecting"; // messages for the app are kept from now on
    this.on.dropped?.(why);
    setTimeout(() => void this.dial(), this.opts.retryDelayMs).unref();
  }

  private giveUp(why: string): void {
    this.state = "closed";
    this.pending = [];
    this.on.unreachable(why);
  }
}

/** The app URL without its query (it may carry a tenant key) for the record. */
function redact(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.host}${u.pathname}${u.search ? "?…" : ""}`;
}
