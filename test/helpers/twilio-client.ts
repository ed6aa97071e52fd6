import { randomBytes } from "node:crypto";
import WebSocket from "ws";
import { signWebhook } from "../../src/carriers/twilio/verify.ts";

/**
 * A stand-in for Twilio's side of a call, speaking the documented wire protocol: it fetches TwiML from the voice
 * webhook, opens the bidirectional Media Stream it names, sends the caller's audio as 20 ms mu-law frames on a real-time
 * clock, and plays what it receives on its own playout clock the way Twilio does: audio is buffered and played in
 * order, a mark is echoed when the audio before it has played, and `clear` drops the buffer and echoes pending marks.
 *
 * The wire messages are its protected methods (`handshake`, `mediaMessage`, `markEchoMessage`, `dtmfMessage`,
 * `stopMessage`, `decode`, `upgradeHeaders`): a peer for another carrier overrides those and keeps the clocks and the
 * playout model (`TelnyxCall` in test/helpers/telnyx-standin.ts).
 */

export const FRAME = 160;
const SILENCE = 0xff;

export interface ReceivedFrame {
  at: number; // when it arrived
  playedAt: number | null; // when the caller heard it (null if cleared)
  /** Where it played on this side's playout schedule: the start of its 20 ms slot (playedAt, less the timer's lateness). */
  playSlotAt?: number;
}

export interface ClientEvent {
  at: number;
  type: "media" | "mark-sent" | "mark-echoed" | "clear" | "closed";
  name?: string;
}

export interface CallOptions {
  /** Parley's origin (http://127.0.0.1:port), for `fetchTwiml()` / `connect()`. Not needed with `openStream()`. */
  baseUrl?: string;
  authToken?: string;
  from?: string;
  to?: string;
  now?: () => number;
  /** The call this stream belongs to (default: a fresh CA sid). */
  callSid?: string;
  accountSid?: string;
  /** False: never echo marks (audio still plays), like a broken edge. Also `stopEchoingMarks()`. */
  echoMarks?: boolean;
  /** False: do not answer WebSocket pings (every RFC 6455 client does), like a hung peer. */
  answerPings?: boolean;
  /** Bind the socket to this local address (127.0.0.x are all loopback: distinct client addresses in one test). */
  localAddress?: string;
}

export interface OpenStreamOptions {
  /** The `<Stream url>` from the TwiML (ws:// or wss://). */
  streamUrl: string;
  /** The `<Parameter>`s, sent as `start.customParameters`. */
  parameters: Record<string, string>;
  callSid: string;
  accountSid?: string;
  /** When given, the upgrade carries X-Twilio-Signature over the ws(s):// URL with no params, as Twilio does. */
  authToken?: string;
  now?: () => number;
}

/** Who ended the socket: Parley ("server"), this side with `stop` + close ("client"), or a cut connection ("dropped"). */
export type ClosedBy = "server" | "client" | "dropped";

const DEFAULT_ACCOUNT_SID = "AC00000000000000000000000000000000";

/** Twilio signs the upgrade over the stream URL with the ws(s) scheme. */
function toWsUrl(url: string): string {
  return url.replace(/^http/, "ws");
}

type QueueItem = { kind: "audio"; frame: ReceivedFrame } | { kind: "mark"; name: string };

export class TwilioCall {
  readonly callSid: string;
  readonly accountSid: string;
  readonly streamSid = `MZ${randomBytes(16).toString("hex")}`;
  readonly events: ClientEvent[] = [];
  readonly frames: ReceivedFrame[] = [];
  /** Every media payload received, in order (what the callee's phone was sent). */
  readonly payloads: Buffer[] = [];
  ws!: WebSocket;
  startSentAt = 0;
  closedBy: ClosedBy | null = null;
  closeCode: number | null = null;
  closeReason = "";
  /** The `start.customParameters` this stream sent. */
  parameters: Record<string, string> = {};
  /** Resolves when the socket has closed, whoever closed it. */
  readonly closed: Promise<{ by: ClosedBy; code: number }>;
  private resolveClosed!: (v: { by: ClosedBy; code: number }) => void;
  private queue: QueueItem[] = [];
  protected seq = 1;
  private chunk = 1;
  private playTimer: NodeJS.Timeout | null = null;
  private sendTimer: NodeJS.Timeout | null = null;
  private outgoing: Uint8Array = new Uint8Array(0);
  private outPos = 0;
  private sentFrames = 0;
  private sendStartedAt = 0;
  private waiters: { check: () => boolean; resolve: () => void }[] = [];
  private mediaStopped = false;
  private echoMarks: boolean;
  /** When the last media message was sent. */
  lastMediaSentAt = 0;
  readonly now: () => number;

  constructor(protected readonly opts: CallOptions = {}) {
    this.now = opts.now ?? (() => performance.timeOrigin + performance.now());
    this.callSid = opts.callSid ?? `CA${randomBytes(16).toString("hex")}`;
    this.accountSid = opts.accountSid ?? DEFAULT_ACCOUNT_SID;
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    this.echoMarks = opts.echoMarks ?? true;
  }

  /**
   * Open a Media Stream the way Twilio does when it executes `<Connect><Stream>`: connect to `streamUrl`, send
   * `connected` and `start` (with `parameters` as customParameters), then run the caller's audio and playout clocks.
   * Resolves once `start` is sent; rejects if the upgrade fails.
   */
  static async openStream(opts: OpenStreamOptions): Promise<TwilioCall> {
    const call = new TwilioCall({
      callSid: opts.callSid,
      ...(opts.accountSid !== undefined ? { accountSid: opts.accountSid } : {}),
      ...(opts.authToken !== undefined ? { authToken: opts.authToken } : {}),
      ...(opts.now !== undefined ? { now: opts.now } : {}),
    });
    await call.openSocket(opts.streamUrl, opts.parameters);
    return call;
  }

  /** Ask the webhook for TwiML, as Twilio does when a call comes in. */
  async fetchTwiml(): Promise<{ streamUrl: string; parameters: Record<string, string>; twiml: string }> {
    if (!this.opts.baseUrl) throw new Error("fetchTwiml() needs CallOptions.baseUrl");
    const url = `${this.opts.baseUrl}/voice/webhook`;
    const params = { CallSid: this.callSid, From: this.opts.from ?? "+15550100001", To: this.opts.to ?? "+15550100002", Direction: "inbound", CallStatus: "ringing" };
    const headers: Record<string, string> = { "content-type": "application/x-www-form-urlencoded" };
    if (this.opts.authToken) headers["x-twilio-signature"] = signWebhook(this.opts.authToken, url, params);
    const res = await fetch(url, { method: "POST", headers, body: new URLSearchParams(params).toString() });
    const twiml = await res.text();
    if (!res.ok) throw new Error(`webhook answered ${res.status}: ${twiml}`);
    return { ...streamFromTwiml(twiml), twiml };
  }

  /** Place the call: webhook, then the stream with connected + start. Resolves once `start` is sent. */
  async connect(): Promise<{ twiml: string }> {
    const { streamUrl, parameters, twiml } = await this.fetchTwiml();
    await this.openSocket(streamUrl, parameters);
    return { twiml };
  }

  /** The upgrade's headers: Twilio signs it (a subclass for another carrier sends its own). */
  protected upgradeHeaders(streamUrl: string): Record<string, string> {
    const headers: Record<string, string> = {};
    if (this.opts.authToken) headers["x-twilio-signature"] = signWebhook(this.opts.authToken, toWsUrl(streamUrl), {});
    return headers;
  }

  /** What the carrier sends once the socket is open: Twilio's `connected` and `start`. */
  protected handshake(parameters: Record<string, string>): unknown[] {
    return [
      { event: "connected", protocol: "Call", version: "1.0.0" },
      startMessage({ streamSid: this.streamSid, callSid: this.callSid, accountSid: this.accountSid, sequenceNumber: this.seq++, parameters }),
    ];
  }

  protected mediaMessage(payload: string, chunk: number): unknown {
    return { event: "media", sequenceNumber: String(this.seq++), media: { track: "inbound", chunk: String(chunk), timestamp: String(chunk * 20), payload }, streamSid: this.streamSid };
  }

  protected markEchoMessage(name: string): unknown {
    return { event: "mark", sequenceNumber: String(this.seq++), streamSid: this.streamSid, mark: { name } };
  }

  protected dtmfMessage(digit: string): unknown {
    return { event: "dtmf", streamSid: this.streamSid, sequenceNumber: String(this.seq++), dtmf: { track: "inbound_track", digit } };
  }

  protected stopMessage(): unknown {
    return { event: "stop", sequenceNumber: String(this.seq++), streamSid: this.streamSid, stop: { accountSid: this.accountSid, callSid: this.callSid } };
  }

  /** What Parley sent, in the playout's terms; throws on anything Twilio would not accept. */
  protected decode(text: string): { event: "media"; payload: string } | { event: "mark"; name: string } | { event: "clear" } {
    const msg = JSON.parse(text);
    if (msg.streamSid !== this.streamSid) throw new Error(`message for stream ${msg.streamSid}, expected ${this.streamSid}`);
    if (msg.event === "media") return { event: "media", payload: msg.media.payload };
    if (msg.event === "mark") return { event: "mark", name: msg.mark.name };
    if (msg.event === "clear") return { event: "clear" };
    throw new Error(`unexpected message from Parley: ${text}`);
  }

  protected async openSocket(streamUrl: string, parameters: Record<string, string>): Promise<void> {
    const headers = this.upgradeHeaders(streamUrl);
    this.parameters = parameters;
    this.ws = new WebSocket(streamUrl, {
      headers,
      ...(this.opts.answerPings === false ? { autoPong: false } : {}),
      ...(this.opts.localAddress ? { localAddress: this.opts.localAddress } : {}),
    });
    await new Promise<void>((resolve, reject) => {
      this.ws.once("open", resolve);
      this.ws.once("error", reject);
    });
    // After the handshake, socket errors (a reset when the peer vanishes) end in `close`; without a listener, `ws`
    // would throw them as an uncaught exception.
    this.ws.on("error", () => {});
    this.ws.on("message", (data) => this.onMessage(data.toString()));
    this.ws.on("close", (code, reason) => {
      this.closeCode = code;
      this.closeReason = reason.toString();
      this.closedBy ??= "server";
      this.events.push({ at: this.now(), type: "closed" });
      this.stopTimers();
      this.resolveClosed({ by: this.closedBy, code });
      this.wake();
    });
    const [first, ...rest] = this.handshake(parameters);
    this.sendJson(first);
    this.startSentAt = this.now();
    for (const m of rest) this.sendJson(m);
    this.startClocks();
  }

  /** The socket is open (neither side has closed it). */
  get isOpen(): boolean {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  /** Queue caller audio (mu-law); it is sent in real time, 20 ms per frame, after what is already queued. */
  say(mulaw: Uint8Array): { startsAt: number; endsAt: number } {
    const pending = this.outgoing.length - this.outPos;
    const next = new Uint8Array(pending + mulaw.length);
    next.set(this.outgoing.subarray(this.outPos), 0);
    next.set(mulaw, pending);
    this.outgoing = next;
    this.outPos = 0;
    const startsAt = this.frameDueAt(this.sentFrames + Math.ceil(pending / FRAME));
    return { startsAt, endsAt: startsAt + (mulaw.length / 8) };
  }

  silence(ms: number): { startsAt: number; endsAt: number } {
    return this.say(new Uint8Array(ms * 8).fill(SILENCE));
  }

  /** When sample `n` of the caller's audio (8 kHz, from the stream's first frame) was due to be sent. */
  sampleDueAt(n: number): number {
    return this.sendStartedAt + n / 8;
  }

  /** Milliseconds of queued caller audio not yet sent. */
  get outgoingMs(): number {
    return (this.outgoing.length - this.outPos) / 8;
  }

  dtmf(digit: string): void {
    this.sendJson(this.dtmfMessage(digit));
  }

  /**
   * Stop sending media but keep the socket open, as a frozen edge or a half-open connection would look from Parley.
   * Returns when the last media message went out.
   */
  stopMedia(): number {
    this.mediaStopped = true;
    return this.lastMediaSentAt;
  }

  /** From now on, marks reach their place in the playout and are dropped instead of echoed. */
  stopEchoingMarks(): void {
    this.echoMarks = false;
  }

  sendRaw(data: string | Buffer, binary = false): void {
    this.ws.send(data, { binary });
  }

  /** Hang up as Twilio does when the caller ends the call: `stop`, then close. */
  async hangUp(): Promise<void> {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.closedBy = "client";
    this.sendJson(this.stopMessage());
    this.ws.close(1000);
    await new Promise<void>((r) => (this.ws.readyState === WebSocket.CLOSED ? r() : this.ws.once("close", () => r())));
    this.stopTimers();
  }

  /** Cut the connection abruptly, as a network failure would: no `stop`, no close handshake. */
  drop(): void {
    if (this.ws?.readyState !== WebSocket.OPEN) return;
    this.closedBy ??= "dropped";
    this.ws.terminate();
    this.stopTimers();
  }

  /** Audio queued at the caller's side and not yet played. */
  get bufferedFrames(): number {
    return this.queue.filter((q) => q.kind === "audio").length;
  }

  /** Resolve when `check` holds (re-checked on every protocol event and playout tick). */
  waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const waiter = {
        check,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      this.waiters.push(waiter);
    });
  }

  eventsOf(type: ClientEvent["type"], after = 0): ClientEvent[] {
    return this.events.filter((e) => e.type === type && e.at >= after);
  }

  private frameDueAt(index: number): number {
    return this.sendStartedAt + index * 20;
  }

  private startClocks(): void {
    this.sendStartedAt = this.now();
    // Caller audio: one frame per 20 ms against an absolute schedule (Twilio keeps sending silence when nobody talks).
    const sendTick = () => {
      const due = Math.floor((this.now() - this.sendStartedAt) / 20) + 1;
      while (this.sentFrames < due && this.ws.readyState === WebSocket.OPEN && !this.mediaStopped) {
        let frame: Uint8Array;
        if (this.outgoing.length - this.outPos >= FRAME) {
          frame = this.outgoing.subarray(this.outPos, this.outPos + FRAME);
          this.outPos += FRAME;
        } else frame = new Uint8Array(FRAME).fill(SILENCE);
        this.sendJson(this.mediaMessage(Buffer.from(frame).toString("base64"), this.chunk));
        this.lastMediaSentAt = this.now();
        this.chunk++;
        this.sentFrames++;
      }
      this.sendTimer = setTimeout(sendTick, 5);
    };
    sendTick();
    // Playout: one 20 ms frame per tick against an absolute schedule; marks echo when reached.
    let playedTicks = 0;
    const playStart = this.now();
    const playTick = () => {
      const due = Math.floor((this.now() - playStart) / 20);
      while (playedTicks < due) {
        playedTicks++;
        this.drainMarks();
        const item = this.queue[0];
        if (item?.kind === "audio") {
          this.queue.shift();
          item.frame.playedAt = this.now();
          item.frame.playSlotAt = playStart + playedTicks * 20;
        }
      }
      this.wake();
      this.playTimer = setTimeout(playTick, 5);
    };
    playTick();
  }

  private drainMarks(): void {
    while (this.queue[0]?.kind === "mark") {
      const m = this.queue.shift() as { kind: "mark"; name: string };
      this.echoMark(m.name);
    }
  }

  private echoMark(name: string): void {
    if (!this.echoMarks) return;
    this.events.push({ at: this.now(), type: "mark-echoed", name });
    this.sendJson(this.markEchoMessage(name));
  }

  private onMessage(text: string): void {
    const msg = this.decode(text);
    const at = this.now();
    switch (msg.event) {
      case "media": {
        const bytes = Buffer.from(msg.payload, "base64");
        this.payloads.push(bytes);
        for (let off = 0; off < bytes.length; off += FRAME) {
          const frame: ReceivedFrame = { at, playedAt: null };
          this.frames.push(frame);
          this.queue.push({ kind: "audio", frame });
        }
        this.events.push({ at, type: "media" });
        break;
      }
      case "mark":
        this.events.push({ at, type: "mark-sent", name: msg.name });
        this.queue.push({ kind: "mark", name: msg.name });
        if (this.queue.length === 1) this.drainMarks(); // nothing buffered: Twilio echoes at once
        break;
      case "clear": {
        this.events.push({ at, type: "clear" });
        const marks = this.queue.filter((q) => q.kind === "mark") as { kind: "mark"; name: string }[];
        this.queue = [];
        for (const m of marks) this.echoMark(m.name);
        break;
      }
    }
    this.wake();
  }

  private wake(): void {
    for (const w of [...this.waiters]) if (w.check()) {
      this.waiters = this.waiters.filter((x) => x !== w);
      w.resolve();
    }
  }

  protected sendJson(obj: unknown): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(obj));
  }

  private stopTimers(): void {
    if (this.playTimer) clearTimeout(this.playTimer);
    if (this.sendTimer) clearTimeout(this.sendTimer);
    this.playTimer = this.sendTimer = null;
  }
}

/** First and last 20 ms frame of a mu-law clip whose energy marks speech (for onset / end-of-speech timing). */
export function speechBounds(mulaw: Uint8Array, decode: (b: number) => number): { onsetMs: number; endMs: number } {
  const frames = Math.floor(mulaw.length / FRAME);
  const rms: number[] = [];
  for (let f = 0; f < frames; f++) {
    let sum = 0;
    for (let i = 0; i < FRAME; i++) {
      const s = decode(mulaw[f * FRAME + i]!);
      sum += s * s;
    }
    rms.push(Math.sqrt(sum / FRAME));
  }
  const peak = Math.max(...rms);
  const threshold = peak * 0.1;
  const first = rms.findIndex((r) => r >= threshold);
  let last = rms.length - 1;
  while (last > 0 && rms[last]! < threshold) last--;
  return { onsetMs: Math.max(0, first) * 20, endMs: (last + 1) * 20 };
}

/** Utterances whose last mark came back: each is a greeting, reply or announcement the caller heard to the end. */
export function finishedUtterances(call: TwilioCall): number {
  return call.eventsOf("mark-echoed").filter((m) => m.name!.endsWith(":end")).length;
}

const unescapeXml = (s: string) => s.replace(/&(amp|lt|gt|quot|apos);/g, (_, e: string) => ({ amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" })[e]!);

/** The stream a TwiML document opens: its `<Stream url>` and `<Parameter>`s, XML entities decoded. */
export function streamFromTwiml(twiml: string): { streamUrl: string; parameters: Record<string, string> } {
  const rawUrl = /<Stream[^>]*\surl="([^"]+)"/.exec(twiml)?.[1];
  if (!rawUrl) throw new Error(`no <Stream url> in TwiML: ${twiml.slice(0, 200)}`);
  const parameters: Record<string, string> = {};
  for (const m of twiml.matchAll(/<Parameter\s+name="([^"]+)"\s+value="([^"]*)"\s*\/>/g)) parameters[unescapeXml(m[1]!)] = unescapeXml(m[2]!);
  return { streamUrl: unescapeXml(rawUrl), parameters };
}

/** Twilio's `start` message for a bidirectional stream (protocols.md §1.3). */
export function startMessage(o: { streamSid: string; callSid: string; accountSid: string; sequenceNumber: number; parameters: Record<string, string> }) {
  return {
    event: "start",
    sequenceNumber: String(o.sequenceNumber),
    start: {
      accountSid: o.accountSid,
      streamSid: o.streamSid,
      callSid: o.callSid,
      tracks: ["inbound"],
      customParameters: o.parameters,
      mediaFormat: { encoding: "audio/x-mulaw", sampleRate: 8000, channels: 1 },
    },
    streamSid: o.streamSid,
  };
}
