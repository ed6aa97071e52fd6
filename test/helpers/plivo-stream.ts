import { randomBytes, randomUUID } from "node:crypto";
import WebSocket from "ws";
import { signPlivoV3 } from "../../src/carriers/plivo/signature.ts";

/**
 * Plivo's side of one bidirectional Audio Stream (carriers.md B.4), as the stand-in runs it: it opens the socket with
 * a V3-signed GET upgrade (signed over the stream URL with `http(s)://`, as Plivo does), sends `start` (no `connected`),
 * sends the caller's audio as 20 ms mu-law `media` frames on a real-time clock, and plays what it receives on its own
 * playout clock: `playAudio` is buffered and played in order, a `checkpoint` is echoed as `playedStream` once the
 * audio before it has played, and `clearAudio` drops the buffer **and the pending checkpoints** (never echoed: Plivo
 * "emits playedStream only if the preceding events were played") and answers `clearedAudio`. When the call ends the
 * socket just closes: Plivo sends no `stop`.
 */

export const FRAME = 160;
const SILENCE = 0xff;

export interface PlivoFrame {
  at: number;
  /** When the caller heard it; null if it was cleared (or never played). */
  playedAt: number | null;
}

export interface PlivoEvent {
  at: number;
  type: "media" | "checkpoint-sent" | "checkpoint-played" | "clear" | "checkpoint-cleared" | "closed";
  name?: string;
}

export interface OpenPlivoStream {
  /** The `<Stream>` element's text: ws:// or wss://. */
  streamUrl: string;
  callUuid: string;
  accountId: string;
  /** Signs the upgrade when given (X-Plivo-Signature-V3 + nonce). */
  authToken?: string;
  /** Scheme the upgrade is signed with (default http, what Plivo was seen to use). */
  signScheme?: "http" | "https";
  extraHeaders?: string;
  mediaFormat?: { encoding: string; sampleRate: number };
}

type QueueItem = { kind: "audio"; frame: PlivoFrame } | { kind: "checkpoint"; name: string };

export type ClosedBy = "server" | "client" | "dropped";

const now = (): number => performance.timeOrigin + performance.now();

export class PlivoStream {
  readonly streamId = randomUUID();
  readonly events: PlivoEvent[] = [];
  readonly frames: PlivoFrame[] = [];
  /** Every audio payload received, decoded (what the caller's phone was sent). */
  readonly payloads: Buffer[] = [];
  /** Frames from Parley that broke the protocol (not thrown: Plivo would drop them). */
  readonly protocolErrors: string[] = [];
  startSentAt = 0;
  closedBy: ClosedBy | null = null;
  closeCode: number | null = null;
  readonly closed: Promise<{ by: ClosedBy; code: number }>;
  private resolveClosed!: (v: { by: ClosedBy; code: number }) => void;
  private ws!: WebSocket;
  private queue: QueueItem[] = [];
  private seq = 1;
  private chunk = 1;
  private outgoing: Uint8Array = new Uint8Array(0);
  private outPos = 0;
  private sentFrames = 0;
  private sendStartedAt = 0;
  private timers: NodeJS.Timeout[] = [];
  private waiters: { check: () => boolean; resolve: () => void }[] = [];

  private constructor(private readonly opts: OpenPlivoStream) {
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
  }

  /** Open the socket as Plivo does when it runs `<Stream>`; resolves once `start` is sent, rejects if refused. */
  static async open(opts: OpenPlivoStream): Promise<PlivoStream> {
    const s = new PlivoStream(opts);
    await s.connect();
    return s;
  }

  private async connect(): Promise<void> {
    const headers: Record<string, string> = {};
    if (this.opts.authToken) {
      const nonce = randomBytes(10).readBigUInt64BE().toString();
      const u = new URL(this.opts.streamUrl);
      const signed = `${this.opts.signScheme ?? "http"}://${u.host}${u.pathname}${u.search}`;
      headers["x-plivo-signature-v3"] = signPlivoV3(this.opts.authToken, "GET", signed, nonce);
      headers["x-plivo-signature-ma-v3"] = headers["x-plivo-signature-v3"];
      headers["x-plivo-signature-v3-nonce"] = nonce;
    }
    this.ws = new WebSocket(this.opts.streamUrl, { headers });
    await new Promise<void>((resolve, reject) => {
      this.ws.once("open", resolve);
      this.ws.once("unexpected-response", (_req, res) => reject(new Error(`upgrade refused: HTTP ${res.statusCode}`)));
      this.ws.once("error", reject);
    });
    this.ws.on("error", () => {});
    this.ws.on("message", (data, binary) => this.onMessage(data.toString(), binary));
    this.ws.on("close", (code) => {
      this.closeCode = code;
      this.closedBy ??= "server";
      this.events.push({ at: now(), type: "closed" });
      this.stopTimers();
      this.resolveClosed({ by: this.closedBy, code });
      this.wake();
    });
    this.startSentAt = now();
    this.send({
      event: "start",
      sequenceNumber: this.seq++,
      start: {
        callId: this.opts.callUuid,
        streamId: this.streamId,
        accountId: this.opts.accountId,
        tracks: ["inbound"],
        mediaFormat: this.opts.mediaFormat ?? { encoding: "audio/x-mulaw", sampleRate: 8000 },
      },
      extra_headers: this.opts.extraHeaders ?? "",
    });
    this.startClocks();
  }

  get isOpen(): boolean {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  /** Queue caller audio (mu-law), sent in real time after what is already queued; when it is due to be sent. */
  say(mulaw: Uint8Array): { startsAt: number; endsAt: number } {
    const pending = this.outgoing.length - this.outPos;
    const next = new Uint8Array(pending + mulaw.length);
    next.set(this.outgoing.subarray(this.outPos), 0);
    next.set(mulaw, pending);
    this.outgoing = next;
    this.outPos = 0;
    const startsAt = this.sendStartedAt + (this.sentFrames + Math.ceil(pending / FRAME)) * 20;
    return { startsAt, endsAt: startsAt + mulaw.length / 8 };
  }

  silence(ms: number): { startsAt: number; endsAt: number } {
    return this.say(new Uint8Array(ms * 8).fill(SILENCE));
  }

  dtmf(digit: string): void {
    this.send({ event: "dtmf", sequenceNumber: this.seq++, streamId: this.streamId, dtmf: { track: "inbound", digit, timestamp: String(Date.now()) }, extra_headers: "" });
  }

  sendRaw(data: string | Buffer, binary = false): void {
    this.ws.send(data, { binary });
  }

  /** The call ended on Plivo's side: the socket closes (no `stop` frame). */
  async close(): Promise<void> {
    if (!this.isOpen) return;
    this.closedBy = "client";
    this.ws.close(1000);
    await this.closed;
  }

  /** Cut the connection, as a network failure would. */
  drop(): void {
    if (!this.isOpen) return;
    this.closedBy = "dropped";
    this.ws.terminate();
    this.stopTimers();
  }

  eventsOf(type: PlivoEvent["type"], after = 0): PlivoEvent[] {
    return this.events.filter((e) => e.type === type && e.at >= after);
  }

  waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = { check, resolve: () => (clearTimeout(timer), resolve()) };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  private startClocks(): void {
    this.sendStartedAt = now();
    // Caller audio: one frame per 20 ms on an absolute schedule (silence when nobody talks).
    const sendTick = () => {
      const due = Math.floor((now() - this.sendStartedAt) / 20) + 1;
      while (this.sentFrames < due && this.isOpen) {
        let frame: Uint8Array;
        if (this.outgoing.length - this.outPos >= FRAME) {
          frame = this.outgoing.subarray(this.outPos, this.outPos + FRAME);
          this.outPos += FRAME;
        } else frame = new Uint8Array(FRAME).fill(SILENCE);
        this.send({
          event: "media",
          sequenceNumber: this.seq++,
          streamId: this.streamId,
          media: { track: "inbound", timestamp: String(Math.round(this.sendStartedAt + this.chunk * 20)), chunk: this.chunk++, payload: Buffer.from(frame).toString("base64") },
          extra_headers: this.opts.extraHeaders ?? "",
        });
        this.sentFrames++;
      }
      this.timers[0] = setTimeout(sendTick, 5);
    };
    sendTick();
    // Playout: one 20 ms frame per tick; checkpoints fire when every frame before them has played.
    let played = 0;
    const playStart = now();
    const playTick = () => {
      const due = Math.floor((now() - playStart) / 20);
      while (played < due) {
        played++;
        this.drainCheckpoints();
        const item = this.queue[0];
        if (item?.kind === "audio") {
          this.queue.shift();
          item.frame.playedAt = now();
        }
      }
      this.drainCheckpoints();
      this.wake();
      this.timers[1] = setTimeout(playTick, 5);
    };
    playTick();
  }

  private drainCheckpoints(): void {
    while (this.queue[0]?.kind === "checkpoint") {
      const { name } = this.queue.shift() as { kind: "checkpoint"; name: string };
      this.events.push({ at: now(), type: "checkpoint-played", name });
      this.send({ event: "playedStream", sequenceNumber: this.seq++, streamId: this.streamId, name });
    }
  }

  private onMessage(text: string, binary: boolean): void {
    const at = now();
    let msg: any;
    try {
      if (binary) throw new Error("binary frame");
      msg = JSON.parse(text);
    } catch (err) {
      this.protocolErrors.push(`${(err as Error).message}: ${text.slice(0, 80)}`);
      return;
    }
    switch (msg.event) {
      case "playAudio": {
        const m = msg.media;
        if (m?.contentType !== "audio/x-mulaw" || m?.sampleRate !== 8000 || typeof m?.payload !== "string") {
          this.protocolErrors.push(`playAudio with ${JSON.stringify({ ...m, payload: undefined })}`);
          return;
        }
        const bytes = Buffer.from(m.payload, "base64");
        this.payloads.push(bytes);
        for (let off = 0; off < bytes.length; off += FRAME) {
          const frame: PlivoFrame = { at, playedAt: null };
          this.frames.push(frame);
          this.queue.push({ kind: "audio", frame });
        }
        this.events.push({ at, type: "media" });
        break;
      }
      case "checkpoint":
        if (msg.streamId !== this.streamId || typeof msg.name !== "string") {
          this.protocolErrors.push(`checkpoint: ${text.slice(0, 120)}`);
          return;
        }
        this.events.push({ at, type: "checkpoint-sent", name: msg.name });
        this.queue.push({ kind: "checkpoint", name: msg.name });
        this.drainCheckpoints(); // nothing buffered before it: reached at once
        break;
      case "clearAudio": {
        if (msg.streamId !== this.streamId) {
          this.protocolErrors.push(`clearAudio: ${text.slice(0, 120)}`);
          return;
        }
        this.events.push({ at, type: "clear" });
        for (const q of this.queue) if (q.kind === "checkpoint") this.events.push({ at, type: "checkpoint-cleared", name: q.name });
        this.queue = [];
        this.send({ event: "clearedAudio", sequenceNumber: this.seq++, streamId: this.streamId });
        break;
      }
      default:
        this.protocolErrors.push(`unexpected event: ${text.slice(0, 120)}`);
    }
    this.wake();
  }

  private wake(): void {
    for (const w of [...this.waiters])
      if (w.check()) {
        this.waiters = this.waiters.filter((x) => x !== w);
        w.resolve();
      }
  }

  private send(obj: unknown): void {
    if (this.isOpen) this.ws.send(JSON.stringify(obj));
  }

  private stopTimers(): void {
    for (const t of this.timers) clearTimeout(t);
  }
}

/** Utterances heard to the end: Parley names an utterance's last mark `…:end`. */
export function finishedUtterances(s: PlivoStream): number {
  return s.eventsOf("checkpoint-played").filter((e) => e.name!.endsWith(":end")).length;
}
