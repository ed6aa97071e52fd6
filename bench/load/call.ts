import WebSocket from "ws";
import { SILENCE_B64, type ScriptClip } from "./clips.ts";
import type { CallSummary } from "./protocol.ts";
import { sendText, type CallDialect } from "./wire.ts";

/**
 * The carrier's side of one call, for the load generator: the call set up on its carrier's wire (./wire*.ts: Twilio,
 * Telnyx or Plivo), the caller's audio on an absolute 20 ms schedule, and Parley's audio played on the caller's own
 * 20 ms playout clock (marks or checkpoints echoed when the audio before them has played, clears honoured as the
 * carrier does). Calls own no timers: the generator's one shared timer calls `tick`.
 *
 * The caller's script: after the greeting's final mark, speak a clip, then silence; every other turn (0, 2, 4, ...)
 * the caller talks over the reply (the next clip starts 600 ms after the reply's first frame played); on the others
 * they wait for the reply's final mark (and at least 1.5 s of silence after the clip) before speaking again.
 */

export const FRAME_MS = 20;
const BARGE_AFTER_MS = 600;
const GAP_AFTER_CLIP_MS = 1500;
const NO_GREETING_MS = 4000;
const GREETING_MAX_MS = 30_000;
const REPLY_TIMEOUT_MS = 10_000;
const TURN_MAX_MS = 30_000;
const CLEAR_TIMEOUT_MS = 1000;
const CONNECT_TIMEOUT_MS = 15_000;
const MAX_ERROR_MESSAGES = 20;

/** Totals over all calls of a run. */
export class RunTotals {
  framesSent = 0;
  framesReceived = 0;
  underrunMs = 0;
  lateFrames = 0;
  lateAfterClear = 0;
  clears = 0;
  turns = 0;
  bargeInAttempts = 0;
  bargeInsWithoutClear = 0;
  repliesMissed = 0;
  callsConnected = 0;
  callsLive = 0;
  callsDone = 0;
  turnLatencyMs: number[] = [];
  bargeInMs: number[] = [];
  greetingMs: number[] = [];
  underrunTimeline: number[] = [];
  errors = { connect: 0, closedByServer: 0, protocol: 0, timeout: 0, total: 0, messages: [] as string[] };
  /** How late caller frames were sent against their schedule, 1 ms buckets (last bucket: >= 1 s). */
  readonly sendLag = new Float64Array(1001);

  constructor(readonly runStart: number) {}

  error(kind: "connect" | "closedByServer" | "protocol" | "timeout", message: string): void {
    this.errors[kind]++;
    this.errors.total++;
    if (this.errors.messages.length < MAX_ERROR_MESSAGES) this.errors.messages.push(message);
  }

  underrun(at: number, ms: number): void {
    this.underrunMs += ms;
    const sec = Math.max(0, Math.floor((at - this.runStart) / 1000));
    const t = this.underrunTimeline;
    while (t.length <= sec) t.push(0);
    t[sec]! += ms;
  }

  /** Make the timeline cover the run even where nothing went wrong. */
  timelineUpTo(at: number): number[] {
    const sec = Math.floor((at - this.runStart) / 1000);
    while (this.underrunTimeline.length <= sec) this.underrunTimeline.push(0);
    return this.underrunTimeline;
  }
}

export interface CallConfig {
  index: number;
  /** How this call speaks its carrier. */
  dialect: CallDialect;
  talkSeconds: number;
  clips: readonly ScriptClip[];
  totals: RunTotals;
  now: () => number;
}

type State = "pending" | "connecting" | "live" | "ended";

export class LoadCall {
  state: State = "pending";
  /** The socket has closed (or never opened). */
  closed = false;
  readonly summary: CallSummary;

  private ws: WebSocket | null = null;
  private stopRequested = false;
  private readonly totals: RunTotals;
  private readonly dialect: CallDialect;
  private readonly mediaPrefix: Buffer;
  /** The carrier's first frames (connected/start) took the numbers before this. */
  private seq = 2;

  // Clocks (ms, the generator's monotonic clock).
  private startSentAt = 0;
  private sendStart = 0;
  private sentFrames = 0;
  private playStart = 0;
  private playedTicks = 0;

  // Playout queue: runs of frames (numbers) and marks (strings), consumed from `qh`.
  private q: (number | string)[] = [];
  private qh = 0;
  /** An utterance is playing (its first frame played, its final mark not reached, not cleared). */
  private playing = false;
  /** The queue ran dry mid-utterance (and no frame has played since). */
  private dry = false;

  // Receiving.
  /** Between the first frame of an utterance and its final mark (or a clear), as received. */
  private rxInUtterance = false;
  /** Length of this stream's media messages once one was fully checked (0: not yet). */
  private mediaLen = 0;
  /** Frames received before this time (after a clear, while the caller still talks) are late audio of a cut turn. */
  private lateUntil = 0;

  // The caller's script.
  private talking = false;
  private hangupAt = 0;
  private greetingFrameAt = 0;
  private greetingDone = false;
  private turn = -1;
  private clip: ScriptClip | null = null;
  private clipStartFrame = 0;
  private clipEndFrame = 0;
  /** The previous clip, while frames of it are still to be sent. */
  private prevClip: ScriptClip | null = null;
  private prevStartFrame = 0;
  private clipEndAt = 0;
  private speechEndAt = 0;
  private replyRx = false;
  private replyPlayedAt = 0;
  private nextClipAt = 0;
  private barge: { clipStartAt: number; onsetAt: number; speechEndAt: number } | null = null;

  constructor(private readonly cfg: CallConfig) {
    this.totals = cfg.totals;
    this.dialect = cfg.dialect;
    this.mediaPrefix = cfg.dialect.mediaPrefix;
    this.summary = {
      callSid: cfg.dialect.callId,
      connected: false,
      end: "unfinished",
      greetingMs: null,
      turns: 0,
      turnLatencies: 0,
      bargeInAttempts: 0,
      bargeIns: 0,
      clears: 0,
      underrunMs: 0,
      lateFrames: 0,
      lateAfterClear: 0,
      framesSent: 0,
      framesReceived: 0,
      error: null,
    };
  }

  get isLive(): boolean {
    return this.state === "live";
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Connecting: the carrier's control plane, the upgrade, its first frames.

  async connect(): Promise<void> {
    this.state = "connecting";
    let ws: WebSocket;
    try {
      ws = await this.dialect.connect(CONNECT_TIMEOUT_MS);
      this.ws = ws;
      this.summary.callSid = this.dialect.callId;
    } catch (e) {
      this.closed = true;
      this.finish("connect-failed");
      const err = e as Error & { cause?: { code?: string; message?: string } };
      const why = err.cause ? `${err.message} (${err.cause.code ?? err.cause.message})` : err.message;
      this.totals.error("connect", `call ${this.cfg.index}: ${why}`);
      this.summary.error = why;
      return;
    }
    ws.on("error", () => {}); // after the handshake, errors end in `close`
    ws.on("message", (data, isBinary) => this.onMessage(data as Buffer, isBinary));
    ws.on("close", (code, reason) => this.onClose(code, reason.toString()));
    if (this.stopRequested) {
      // Stopped while connecting (the run was cut short): hang up at once.
      this.hangUp("unfinished");
      return;
    }
    const now = this.cfg.now();
    this.startSentAt = this.sendStart = this.playStart = now;
    this.state = "live";
    this.summary.connected = true;
    this.totals.callsConnected++;
    this.totals.callsLive++;
  }

  // ---------------------------------------------------------------------------------------------------------------
  // The shared tick: playout, then the script, then caller audio.

  tick(now: number): void {
    if (this.state !== "live") return;
    const due = Math.floor((now - this.playStart) / FRAME_MS);
    while (this.playedTicks < due) {
      this.playedTicks++;
      this.playOne(this.playStart + this.playedTicks * FRAME_MS);
    }
    this.script(now);
    if (this.state === "live") this.sendDue(now);
  }

  /** Stop now (run cut short): hang up if live; a call still connecting hangs up as soon as it is up. */
  stop(): void {
    if (this.state === "live") this.hangUp();
    else if (this.state === "connecting") this.stopRequested = true;
    else if (this.state === "pending") {
      this.closed = true;
      this.finish("unfinished");
    }
  }

  /** Cut the socket without a close handshake (at the very end, for sockets whose close never completed). */
  terminate(): void {
    this.ws?.terminate();
    this.closed = true;
  }

  private sendDue(now: number): void {
    const ws = this.ws!;
    const due = Math.floor((now - this.sendStart) / FRAME_MS) + 1;
    const totals = this.totals;
    while (this.sentFrames < due) {
      if (ws.readyState !== WebSocket.OPEN) return;
      const n = this.sentFrames;
      let b64 = SILENCE_B64;
      const clip = this.clip;
      if (clip && n >= this.clipStartFrame) {
        const i = n - this.clipStartFrame;
        if (i < clip.b64.length) b64 = clip.b64[i]!;
      } else if (this.prevClip) {
        const i = n - this.prevStartFrame;
        if (i >= 0 && i < this.prevClip.b64.length) b64 = this.prevClip.b64[i]!;
      }
      ws.send(this.dialect.media(this.seq++, n + 1, b64));
      this.sentFrames++;
      this.summary.framesSent++;
      totals.framesSent++;
      const lag = now - (this.sendStart + n * FRAME_MS);
      totals.sendLag[lag <= 0 ? 0 : lag >= 1000 ? 1000 : Math.floor(lag)]!++;
    }
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Playout, as the carriers do: one frame per 20 ms; a mark is echoed when everything before it has played.

  private playOne(t: number): void {
    const q = this.q;
    while (this.qh < q.length && typeof q[this.qh] === "string") this.markReached(q[this.qh++] as string, t);
    if (this.qh < q.length) {
      const left = (q[this.qh] as number) - 1;
      if (left === 0) this.qh++;
      else q[this.qh] = left;
      this.dry = false;
      if (!this.playing) {
        this.playing = true;
        this.utteranceStarted(t);
      }
      if (this.qh === q.length) {
        q.length = 0;
        this.qh = 0;
      } else if (this.qh > 512) {
        q.splice(0, this.qh);
        this.qh = 0;
      }
    } else {
      q.length = 0;
      this.qh = 0;
      if (this.playing) {
        // Mid-utterance and nothing to play: the caller hears a gap.
        this.dry = true;
        this.summary.underrunMs += FRAME_MS;
        this.totals.underrun(t, FRAME_MS);
      }
    }
  }

  private markReached(name: string, t: number): void {
    this.echoMark(name);
    if (!name.endsWith(":end")) return;
    this.playing = false;
    this.dry = false;
    if (!this.talking) {
      this.greetingDone = true;
      return;
    }
    this.replyEnded(t);
  }

  /** The reply to a turn on which the caller waits has ended (final mark, or cut by a clear): speak again. */
  private replyEnded(t: number): void {
    if (this.replyPlayedAt > 0 && !this.isBargeTurn() && this.nextClipAt === 0) this.nextClipAt = Math.max(t, this.clipEndAt + GAP_AFTER_CLIP_MS);
  }

  private utteranceStarted(t: number): void {
    if (!this.talking || !this.replyRx || this.replyPlayedAt !== 0) return;
    this.replyPlayedAt = t;
    if (this.isBargeTurn() && this.nextClipAt === 0) this.nextClipAt = t + BARGE_AFTER_MS;
  }

  private isBargeTurn(): boolean {
    return this.turn % 2 === 0;
  }

  private echoMark(name: string): void {
    this.sendText(this.dialect.markEcho(this.seq++, name));
  }

  // ---------------------------------------------------------------------------------------------------------------
  // The caller's script.

  private script(now: number): void {
    if (!this.talking) {
      const since = now - this.startSentAt;
      const noGreeting = this.greetingFrameAt === 0 && since >= NO_GREETING_MS;
      if (this.greetingDone || noGreeting || since >= GREETING_MAX_MS) {
        if (!this.greetingDone && !noGreeting) this.protocolError(`greeting's final mark not reached ${GREETING_MAX_MS} ms after start`);
        this.talking = true;
        this.hangupAt = now + this.cfg.talkSeconds * 1000;
        this.startClip(0);
      }
      return;
    }
    if (now >= this.hangupAt) {
      this.hangUp();
      return;
    }
    if (this.barge && now > this.barge.speechEndAt + CLEAR_TIMEOUT_MS) {
      this.totals.bargeInsWithoutClear++;
      this.barge = null;
    }
    if (this.nextClipAt !== 0) {
      if (now >= this.nextClipAt) this.startClip(this.turn + 1);
    } else if (!this.replyRx && now > this.speechEndAt + REPLY_TIMEOUT_MS) {
      this.totals.repliesMissed++;
      this.nextClipAt = now;
    } else if (now > this.speechEndAt + TURN_MAX_MS) {
      this.nextClipAt = now; // a reply that never ends: move on
    }
  }

  private startClip(turn: number): void {
    const clip = this.cfg.clips[turn % this.cfg.clips.length]!;
    const startFrame = Math.max(this.sentFrames, this.clipEndFrame);
    if (this.clip && this.sentFrames < this.clipEndFrame) {
      this.prevClip = this.clip;
      this.prevStartFrame = this.clipStartFrame;
    } else this.prevClip = null;
    const startAt = this.sendStart + startFrame * FRAME_MS;
    this.turn = turn;
    this.clip = clip;
    this.clipStartFrame = startFrame;
    this.clipEndFrame = startFrame + clip.b64.length;
    this.clipEndAt = startAt + clip.b64.length * FRAME_MS;
    this.speechEndAt = startAt + clip.endMs;
    this.replyRx = false;
    this.replyPlayedAt = 0;
    this.nextClipAt = 0;
    this.totals.turns++;
    this.summary.turns++;
    // Started over a reply that is still playing: a barge-in.
    if (turn > 0 && this.playing) {
      this.barge = { clipStartAt: startAt, onsetAt: startAt + clip.onsetMs, speechEndAt: this.speechEndAt };
      this.totals.bargeInAttempts++;
      this.summary.bargeInAttempts++;
    }
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Receiving. Media: a prefix check and a count (the first one of the stream is checked in full). JSON for the rest.

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (this.state !== "live") return;
    const prefix = this.mediaPrefix;
    if (!isBinary && this.mediaLen !== 0 && data.length === this.mediaLen && data.compare(prefix, 0, prefix.length, 0, prefix.length) === 0) {
      this.onFrame(this.cfg.now());
      return;
    }
    const at = this.cfg.now();
    if (isBinary) return this.protocolError(`binary message (${data.length} bytes)`);
    const msg = this.dialect.parse(data.toString());
    switch (msg.kind) {
      case "media": {
        const bytes = Buffer.byteLength(msg.payload, "base64");
        if (bytes !== 160) this.protocolError(`media payload of ${bytes} bytes (expected one 160-byte frame)`);
        else if (this.mediaLen === 0) this.mediaLen = data.length; // checked once: the rest of the stream is counted by length
        for (let n = Math.max(1, Math.round(bytes / 160)); n > 0; n--) this.onFrame(at);
        return;
      }
      case "mark":
        return this.onMark(msg.name, at);
      case "clear":
        return this.onClear(at);
      case "bad":
        return this.protocolError(msg.why);
    }
  }

  private onFrame(at: number): void {
    this.totals.framesReceived++;
    this.summary.framesReceived++;
    if (at < this.lateUntil) {
      this.totals.lateAfterClear++;
      this.summary.lateAfterClear++;
    }
    if (!this.rxInUtterance) {
      this.rxInUtterance = true;
      if (!this.talking) {
        if (this.greetingFrameAt === 0) {
          this.greetingFrameAt = at;
          this.summary.greetingMs = at - this.startSentAt;
          this.totals.greetingMs.push(at - this.startSentAt);
        }
      } else if (!this.replyRx && this.turn >= 0 && at >= this.speechEndAt) {
        this.replyRx = true;
        this.totals.turnLatencyMs.push(at - this.speechEndAt);
        this.summary.turnLatencies++;
      }
    }
    if (this.dry) {
      this.totals.lateFrames++;
      this.summary.lateFrames++;
    }
    const q = this.q;
    const last = q.length - 1;
    if (last >= this.qh && typeof q[last] === "number") q[last] = (q[last] as number) + 1;
    else q.push(1);
  }

  private onMark(name: string, at: number): void {
    if (name.endsWith(":end")) this.rxInUtterance = false;
    if (this.qh === this.q.length) {
      // Nothing queued: Twilio echoes at once.
      this.q.length = 0;
      this.qh = 0;
      this.markReached(name, at);
    } else this.q.push(name);
  }

  private onClear(at: number): void {
    this.totals.clears++;
    this.summary.clears++;
    const q = this.q;
    // Twilio and Telnyx return the marks a clear dropped; Plivo answers `clearedAudio` and never echoes them.
    if (this.dialect.clearEchoesMarks) {
      for (let i = this.qh; i < q.length; i++) if (typeof q[i] === "string") this.echoMark(q[i] as string);
    } else {
      const reply = this.dialect.clearReply(this.seq++);
      if (reply) this.sendText(reply);
    }
    q.length = 0;
    this.qh = 0;
    this.playing = false;
    this.dry = false;
    this.rxInUtterance = false;
    const b = this.barge;
    if (b && at >= b.clipStartAt) {
      this.totals.bargeInMs.push(at - b.onsetAt);
      this.summary.bargeIns++;
      this.barge = null;
    }
    // Anything received from now until the caller stops talking is audio of the turn that was just cut.
    const speaking = this.talking && this.turn >= 0 && at < this.speechEndAt;
    this.lateUntil = speaking ? this.speechEndAt : 0;
    if (this.talking) this.replyEnded(at);
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Ending.

  /** Hang up as the carrier reports a caller ending the call (Twilio: `stop`, then close). */
  private hangUp(end: CallSummary["end"] = "caller"): void {
    const ws = this.ws;
    this.finish(end);
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    this.dialect.hangUp(ws, this.seq++);
  }

  private onClose(code: number, reason: string): void {
    this.closed = true;
    if (this.state === "live") {
      this.finish("server");
      const message = `call ${this.cfg.index}: stream closed by the server (code ${code}${reason ? `, ${reason}` : ""}) ${this.talking ? "while talking" : "before the greeting ended"}`;
      this.summary.error ??= message;
      this.totals.error("closedByServer", message);
    }
  }

  private finish(end: CallSummary["end"]): void {
    if (this.state === "ended") return;
    if (this.state === "live") this.totals.callsLive--;
    this.state = "ended";
    this.summary.end = end;
    this.totals.callsDone++;
  }

  private protocolError(message: string): void {
    const m = `call ${this.cfg.index}: ${message}`;
    this.summary.error ??= m;
    this.totals.error("protocol", m);
  }

  private sendText(text: string): void {
    if (this.ws) sendText(this.ws, text);
  }
}
