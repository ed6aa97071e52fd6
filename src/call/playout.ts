import { FRAME_BYTES, FRAME_MS, MulawFramer } from "../audio/framer.ts";
import { Pacer } from "../audio/pacer.ts";
import type { MediaWriter } from "../carriers/carrier.ts";
import type { WordTiming } from "../providers/types.ts";

/** What the speaker of an utterance learns from playback. */
export interface UtteranceListener {
  started(): void;
  progress(heardText: string, heardMs: number): void;
  done(heardText: string): void;
}

/** What the call record learns from playback. */
export interface PlayoutObserver {
  firstFrame(turnId: number): void;
  markEchoed(turnId: number, heardMs: number, final: boolean): void;
  cleared(turnId: number, unplayedMs: number): void;
  dropped(turnId: number, bytes: number): void;
  /** Audio just sent, whose first sample the caller hears at `startMs` on the playout clock (the call recording). */
  sent?(mulaw: Uint8Array, startMs: number): void;
  /** A `clear` went out at `now`: what had not begun playing is never heard (the call recording). */
  cut?(now: number): void;
}

export interface PlayoutOptions {
  leadMs: number;
  markEveryMs: number;
  /** Bound on audio queued per call (ms). */
  maxQueuedMs: number;
  /** A mark not echoed this long after the audio ahead of it should have played means the stream is gone. */
  markGraceMs?: number;
  /**
   * 20 ms frames per media message (1 by default). With 2, each message carries 40 ms: half the messages, so half the
   * serialization and socket writes per call-second, for up to 20 ms more audio buffered at the carrier.
   */
  framesPerMessage?: number;
}

interface Utterance {
  turnId: number;
  listener: UtteranceListener;
  framer: MulawFramer;
  words: WordTiming[];
  queuedMs: number;
  sentMs: number;
  lastMarkMs: number;
  heardMs: number;
  ended: boolean;
  finalMarkSent: boolean;
}

/**
 * One call's outbound audio: paces 20 ms frames against the caller's playout clock, marks what was sent, and learns
 * from the carrier's mark echoes what the caller actually heard. Mark names are `<turn>:<ms>` (and `<turn>:<ms>:end` for the
 * last), so an echo says which turn and how far into it; echoes of a cleared turn are ignored.
 */
export class Playout {
  private current: Utterance | null = null;
  private readonly pacer: Pacer;
  /**
   * The mark watchdog, without a queue of marks: the deadline of the oldest mark not yet echoed (0: none outstanding;
   * -1: some are, re-arm from the next check). Echoes come in order, so an echo of the last mark sent clears it.
   */
  private markDeadline = 0;
  private markArmedAt = 0;
  private lastMarkSent = "";
  private readonly perMessage: number;
  /** A message's audio when it holds more than one frame (reused: the send path allocates nothing of its own). */
  private readonly payload: Uint8Array;

  constructor(
    private readonly send: (data: string | Buffer) => void,
    /** The carrier's serializer for this stream: the playout knows marks and clears, not how a carrier spells them. */
    private readonly serializer: MediaWriter,
    private readonly opts: PlayoutOptions,
    private readonly observer: PlayoutObserver,
  ) {
    this.pacer = new Pacer(opts.leadMs);
    this.perMessage = Math.max(1, opts.framesPerMessage ?? 1);
    this.payload = new Uint8Array(this.perMessage * FRAME_BYTES);
  }

  get underrunMs(): number {
    return this.pacer.underrunMs;
  }

  /** True while there is audio to send this tick. */
  get hasWork(): boolean {
    const u = this.current;
    return !!u && !u.finalMarkSent && (u.framer.frames > 0 || u.ended);
  }

  get activeTurn(): number | null {
    return this.current?.turnId ?? null;
  }

  begin(turnId: number, listener: UtteranceListener, now: number): void {
    if (this.current) this.interrupt(this.current.turnId, now);
    this.current = {
      turnId,
      listener,
      framer: new MulawFramer(this.opts.maxQueuedMs * 8),
      words: [],
      queuedMs: 0,
      sentMs: 0,
      lastMarkMs: 0,
      heardMs: 0,
      ended: false,
      finalMarkSent: false,
    };
  }

  /** Position (ms into the utterance) where the next appended audio will start. */
  queuedMs(turnId: number): number {
    return this.current?.turnId === turnId ? this.current.queuedMs : 0;
  }

  /** Queue audio; word start times are relative to the start of the utterance. */
  append(turnId: number, mulaw: Uint8Array, words: readonly WordTiming[]): boolean {
    const u = this.current;
    if (!u || u.turnId !== turnId || u.ended) return false;
    if (!u.framer.push(mulaw)) {
      this.observer.dropped(turnId, mulaw.length);
      return false;
    }
    for (const w of words) u.words.push(w);
    u.queuedMs += mulaw.length / 8;
    return true;
  }

  end(turnId: number): void {
    const u = this.current;
    if (!u || u.turnId !== turnId || u.ended) return;
    u.framer.padToFrame();
    u.queuedMs = Math.ceil(u.queuedMs / FRAME_MS) * FRAME_MS;
    u.ended = true;
  }

  /** Send whatever is due at `now`. Called by the shared ticker, and directly when audio is first queued. */
  tick(now: number): void {
    const u = this.current;
    if (!u || u.finalMarkSent) return;
    let due = this.pacer.framesDue(now);
    while (due > 0) {
      // A message takes up to `perMessage` frames of what is ready, even when fewer are due: the carrier's buffer then
      // runs up to a message ahead of the lead.
      const n = Math.min(this.perMessage, u.framer.frames);
      if (n === 0) break;
      let audio: Uint8Array;
      if (n === 1) audio = u.framer.shift()!;
      else {
        for (let i = 0; i < n; i++) this.payload.set(u.framer.shift()!, i * FRAME_BYTES);
        audio = this.payload.subarray(0, n * FRAME_BYTES);
      }
      this.send(this.serializer.media(audio));
      for (let i = 0; i < n; i++) this.pacer.sent(now, u.sentMs > 0 || i > 0);
      this.observer.sent?.(audio, this.pacer.playheadMs - n * FRAME_MS);
      if (u.sentMs === 0) {
        this.observer.firstFrame(u.turnId);
        u.listener.started();
      }
      u.sentMs += n * FRAME_MS;
      due -= n;
      if (u.sentMs - u.lastMarkMs >= this.opts.markEveryMs && (u.framer.frames > 0 || !u.ended)) {
        u.lastMarkMs = u.sentMs;
        this.sendMark(`${u.turnId}:${u.sentMs}`, now);
      }
    }
    if (u.ended && u.framer.frames === 0) {
      u.finalMarkSent = true;
      this.sendMark(`${u.turnId}:${u.sentMs}:end`, now);
    }
  }

  private sendMark(name: string, now: number): void {
    this.send(this.serializer.mark(name));
    this.lastMarkSent = name;
    // The caller hears this mark once the audio buffered ahead of it has played; past that and a grace, it is lost.
    if (this.markDeadline === 0) this.armMark(now);
  }

  private armMark(now: number): void {
    this.markArmedAt = now;
    this.markDeadline = now + this.pacer.bufferedMs(now) + (this.opts.markGraceMs ?? 3000);
  }

  /**
   * How long the oldest unechoed mark has been waiting, once it is past its deadline (else 0). Checked by the
   * stream's watchdog on a coarse interval.
   */
  markOverdueMs(now: number): number {
    if (this.markDeadline < 0) this.armMark(now);
    return this.markDeadline > 0 && now >= this.markDeadline ? now - this.markArmedAt : 0;
  }

  onMark(name: string): void {
    const [turnStr, msStr, end] = name.split(":");
    const turnId = Number(turnStr);
    const ms = Number(msStr);
    const u = this.current;
    if (!u || u.turnId !== turnId || !Number.isFinite(ms)) return;
    // All sent marks are in: nothing to wait for. Otherwise the rest get a fresh bound from the next check.
    this.markDeadline = name === this.lastMarkSent ? 0 : -1;
    const final = end === "end";
    u.heardMs = Math.max(u.heardMs, ms);
    this.observer.markEchoed(turnId, u.heardMs, final);
    if (final) {
      this.current = null;
      u.listener.done(wordsText(u.words));
    } else {
      u.listener.progress(heardWords(u.words, u.heardMs, u.queuedMs), u.heardMs);
    }
  }

  /**
   * Stop a turn now: drop what is queued and, if the caller may still be hearing it, tell the carrier to `clear`. Echoes of
   * its marks that follow are ignored. Returns what the caller heard, in whole words.
   */
  interrupt(turnId: number, now: number): string | null {
    const u = this.current;
    if (!u || u.turnId !== turnId) return null;
    this.current = null;
    this.markDeadline = 0; // echoes of a cleared turn are not waited for
    u.framer.clear();
    if (u.sentMs > 0) {
      this.send(this.serializer.clear());
      this.observer.cleared(turnId, Math.max(0, u.sentMs - u.heardMs));
      this.observer.cut?.(now);
      this.pacer.reset(now);
    }
    return heardWords(u.words, u.heardMs, u.queuedMs);
  }
}

function wordsText(words: readonly WordTiming[]): string {
  return words.map((w) => w.text).join(" ");
}

/** Words whose audio finished by `heardMs` (a word ends where the next begins). */
export function heardWords(words: readonly WordTiming[], heardMs: number, totalMs: number): string {
  const out: string[] = [];
  for (let i = 0; i < words.length; i++) {
    const end = i + 1 < words.length ? words[i + 1]!.startMs : totalMs;
    if (end > heardMs + FRAME_MS) break;
    out.push(words[i]!.text);
  }
  return out.join(" ");
}
