/**
 * A ConversationRelay application, written the way one is written for Twilio (and nothing from Parley's `src`):
 * a WebSocket server that checks `X-Twilio-Signature` on the upgrade with the twilio library's `validateRequest`,
 * waits for `setup`, answers each final `prompt` with streamed `text` tokens ending `last: true`, stops replying on
 * `interrupt`, and logs `dtmf` and `error` frames. Tests steer it: speak unprompted, `play`, `sendDigits`, `end`,
 * send junk, drop the socket, refuse connections.
 */
import { EventEmitter } from "node:events";
import http from "node:http";
import type { AddressInfo } from "node:net";
import twilio from "twilio";
import { WebSocket, WebSocketServer } from "ws";
import { waitForChange } from "./wait.ts";

/** A frame from Twilio's side, as a JSON object. */
export type Frame = { type: string } & Record<string, unknown>;

export interface RelayAppOptions {
  /** The account's auth token: upgrades without a valid signature are refused with 403. */
  authToken?: string;
  /** Path and query the app is reached at. Default "/relay?tenant=7". */
  path?: string;
  /** The reply to a prompt, as tokens. Default: "You said: <prompt>." in a few tokens. */
  reply?: (prompt: string, session: RelaySession) => string[];
  /** Gap between reply tokens; 0 sends each on its own event-loop turn. */
  tokenGapMs?: number;
  /** Tokens to say right after `setup` (the app speaks first). */
  greeting?: string[];
  /** Called just before each reply token goes out (the benchmark's timestamp). */
  onTokenSent?: (token: string) => void;
}

export class RelaySession {
  readonly received: Frame[] = [];
  setup: Frame | null = null;
  private replying: AbortController | null = null;

  constructor(
    readonly ws: WebSocket,
    /** What the signature check said (null when the app has no auth token). */
    readonly signatureValid: boolean | null,
    private readonly app: RelayApp,
  ) {}

  of(type: string): Frame[] {
    return this.received.filter((f) => f.type === type);
  }

  send(msg: Record<string, unknown>): void {
    this.ws.send(JSON.stringify(msg));
  }

  /** A frame exactly as given (junk included). */
  sendRaw(text: string): void {
    this.ws.send(text);
  }

  /** One talk cycle: the tokens, the last with `last: true`; `extra` goes on every token (interruptible, …). */
  async say(tokens: string[], extra: Record<string, unknown> = {}, signal?: AbortSignal): Promise<void> {
    for (let i = 0; i < tokens.length; i++) {
      if (signal?.aborted || this.ws.readyState !== WebSocket.OPEN) return;
      this.app.opts.onTokenSent?.(tokens[i]!);
      this.send({ type: "text", token: tokens[i], last: i === tokens.length - 1, ...extra });
      if (i < tokens.length - 1) await this.gap();
    }
  }

  play(source: string, extra: Record<string, unknown> = {}): void {
    this.send({ type: "play", source, ...extra });
  }

  sendDigits(digits: string): void {
    this.send({ type: "sendDigits", digits });
  }

  end(handoffData?: string): void {
    this.send(handoffData === undefined ? { type: "end" } : { type: "end", handoffData });
  }

  /** Cut the connection without a close handshake, as a crashed app or a broken network does. */
  drop(): void {
    this.ws.terminate();
  }

  handle(frame: Frame): void {
    this.received.push(frame);
    switch (frame.type) {
      case "setup":
        this.setup = frame;
        if (this.app.opts.greeting) void this.say(this.app.opts.greeting);
        break;
      case "prompt": {
        if (frame.last === false) break; // partials are not answered
        this.replying?.abort();
        const ac = new AbortController();
        this.replying = ac;
        const prompt = String(frame.voicePrompt);
        const tokens = this.app.opts.reply?.(prompt, this) ?? ["You ", "said: ", prompt, "."];
        void this.say(tokens, {}, ac.signal);
        break;
      }
      case "interrupt":
        this.replying?.abort(); // what a real app does: stop generating, trim its history to the heard words
        break;
    }
    this.app.emit("change");
  }

  private gap(): Promise<void> {
    const ms = this.app.opts.tokenGapMs ?? 0;
    return new Promise((resolve) => (ms > 0 ? setTimeout(resolve, ms) : setImmediate(resolve)));
  }
}

export class RelayApp extends EventEmitter {
  readonly sessions: RelaySession[] = [];
  /** Upgrades answered with a refusal (bad signature, or `refuse` set). */
  refused = 0;
  /** Refuse every upgrade with 503, as an app that is down behind its load balancer. */
  refuse = false;
  /** Refuse only this many upgrades from now on (an app that is restarting). */
  refuseNext = 0;
  url = "";
  private readonly server: http.Server;
  private readonly wss = new WebSocketServer({ noServer: true });

  private constructor(readonly opts: RelayAppOptions) {
    super();
    this.server = http.createServer((_req, res) => res.writeHead(426).end("WebSocket only"));
    this.server.on("upgrade", (req, socket, head) => {
      const refuse = (status: number, text: string) => {
        this.refused++;
        socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
        this.emit("change");
      };
      if (this.refuse || this.refuseNext > 0) {
        this.refuseNext = Math.max(0, this.refuseNext - 1);
        return refuse(503, "Service Unavailable");
      }
      let signatureValid: boolean | null = null;
      if (opts.authToken) {
        // Twilio signs the URL it requested, scheme ws/wss included, with no parameters.
        const url = `ws://${req.headers.host}${req.url}`;
        const sig = req.headers["x-twilio-signature"];
        signatureValid = typeof sig === "string" && twilio.validateRequest(opts.authToken, sig, url, {});
        if (!signatureValid) return refuse(403, "Forbidden");
      }
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        const session = new RelaySession(ws, signatureValid, this);
        this.sessions.push(session);
        ws.on("message", (data) => {
          let frame: Frame;
          try {
            frame = JSON.parse(data.toString()) as Frame;
          } catch {
            return; // an app ignores what it cannot read
          }
          session.handle(frame);
        });
        ws.on("close", () => this.emit("change"));
        this.emit("change");
      });
    });
  }

  static async start(opts: RelayAppOptions = {}): Promise<RelayApp> {
    const app = new RelayApp(opts);
    await new Promise<void>((resolve) => app.server.listen(0, "127.0.0.1", resolve));
    const { port } = app.server.address() as AddressInfo;
    app.url = `ws://127.0.0.1:${port}${opts.path ?? "/relay?tenant=7"}`;
    return app;
  }

  get session(): RelaySession {
    const s = this.sessions.at(-1);
    if (!s) throw new Error("RelayApp: no session yet");
    return s;
  }

  /** Resolves once `pred` holds (checked now and after every frame or connection); rejects after `timeoutMs`. */
  waitFor(pred: () => boolean, what = "condition", timeoutMs = 5000): Promise<void> {
    return waitForChange(this, pred, timeoutMs, () => `RelayApp: timed out waiting for ${what}`);
  }

  async close(): Promise<void> {
    for (const client of this.wss.clients) client.terminate();
    this.wss.close();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
