import type { MediaWriter } from "../carriers/carrier.ts";
import { InboundAudio } from "./inbound.ts";
import { Playout } from "./playout.ts";
import type { Services } from "./services.ts";

export type WatchdogKind = "media" | "mark";

/** Close code for a stream a watchdog gave up on (4000-4999 is for applications). */
export const WATCHDOG_CLOSE_CODE = 4000;

/**
 * The watchdogs of one started stream. The carrier sends a `media` message every 20 ms while the call is up, and echoes
 * each mark once the audio before it has played; a half-open socket or a frozen edge does neither, and would otherwise
 * keep the call up until MAX_DURATION_SECONDS. Per frame this costs one timestamp write (`mediaAt`); the checks run
 * on the ticker's one coarse interval for all streams.
 */
export class StreamWatch {
  /** When the last media message arrived (written by the runtime per frame). */
  mediaAt: number;
  private fired = false;

  constructor(
    now: number,
    private readonly mediaTimeoutMs: number,
    private readonly playout: Playout,
    private readonly lost: (watchdog: WatchdogKind, waitedMs: number) => void,
    /** Also run on every check (the call's throttled protocol-error log). */
    private readonly onCheck?: (now: number) => void,
  ) {
    this.mediaAt = now;
  }

  check(now: number): void {
    this.onCheck?.(now);
    if (this.fired) return;
    const silentMs = now - this.mediaAt;
    if (silentMs >= this.mediaTimeoutMs) return this.fire("media", silentMs);
    const markMs = this.playout.markOverdueMs(now);
    if (markMs > 0) this.fire("mark", markMs);
  }

  private fire(watchdog: WatchdogKind, waitedMs: number): void {
    this.fired = true;
    this.lost(watchdog, Math.round(waitedMs));
  }
}

/**
 * A call's protocol errors, counted per kind, and reported at most once per `intervalMs`: the first at once, the rest
 * summed until the interval has passed (then by the next error or the next watchdog check, or at the end). A peer
 * sending garbage 50 times a second costs a counter increment per message, not a log line and a journal write.
 */
export class ProtocolErrorLog {
  private readonly pending = new Map<string, { count: number; detail: string }>();
  private pendingTotal = 0;
  private lastReportAt = -Infinity;

  constructor(
    private readonly report: (counts: { kind: string; count: number; detail: string }[]) => void,
    private readonly intervalMs = 1000,
  ) {}

  add(kind: string, detail: string, now: number): void {
    const p = this.pending.get(kind);
    if (p) {
      p.count++;
      p.detail = detail;
    } else this.pending.set(kind, { count: 1, detail });
    this.pendingTotal++;
    this.maybeReport(now);
  }

  /** Report what is pending if the interval has passed. */
  maybeReport(now: number): void {
    if (this.pendingTotal && now - this.lastReportAt >= this.intervalMs) this.flush(now);
  }

  /** Report what is pending now. */
  flush(now: number): void {
    if (!this.pendingTotal) return;
    this.lastReportAt = now;
    const counts = [...this.pending].map(([kind, p]) => ({ kind, count: p.count, detail: p.detail }));
    this.pending.clear();
    this.pendingTotal = 0;
    this.report(counts);
  }
}

/** What one stream's pipeline reports to its call. */
export interface StreamHooks {
  send(data: string | Buffer): void;
  record(type: string, data?: Record<string, unknown>): void;
  speechStarted(ev: { startSample: number; confirmedSample: number }): void;
  speechEnded(ev: { startSample: number; endSample: number; confirmedSample: number }): void;
  firstFrame(turnId: number): void;
  /** A watchdog gave the stream up for lost. */
  lost(watchdog: WatchdogKind, waitedMs: number): void;
  /** Run on every watchdog check (for work that must happen even when no message comes). */
  check(now: number): void;
  /** Outbound audio as sent and where it plays, and `clear`s (the call recording; see PlayoutObserver). */
  audioSent?(mulaw: Uint8Array, startMs: number): void;
  audioCut?(now: number): void;
}

/** One started stream: its inbound audio, its outbound playout, and their watchdogs (registered on the ticker). */
export interface StreamPipeline {
  inbound: InboundAudio;
  playout: Playout;
  watch: StreamWatch;
}

/** Build the pipeline of a stream that just started. The caller unwatches `watch` and closes `inbound` when it ends. */
export function openStreamPipeline(services: Services, writer: MediaWriter, hooks: StreamHooks): StreamPipeline {
  const { config, vad, clock } = services;
  const inbound = new InboundAudio(
    vad,
    { threshold: config.vadThreshold, minSpeechMs: config.vadMinSpeechMs, minSilenceMs: config.vadMinSilenceMs },
    { speechStarted: hooks.speechStarted, speechEnded: hooks.speechEnded },
    services.stats,
    config.sttEarlyDecodeMs,
  );
  const playout = new Playout(
    hooks.send,
    writer,
    { leadMs: config.playoutLeadMs, markEveryMs: config.markEveryMs, maxQueuedMs: 300_000, markGraceMs: config.markGraceMs, framesPerMessage: config.playoutFramesPerMessage },
    {
      firstFrame: hooks.firstFrame,
      markEchoed: (turnId, heardMs, final) => hooks.record("mark", { turnId, heardMs, final }),
      cleared: (turnId, unplayedMs) => hooks.record("clear", { turnId, unplayedMs }),
      dropped: (turnId, bytes) => hooks.record("playout.error", { turnId, message: `outbound queue full: dropped ${bytes} bytes` }),
      ...(hooks.audioSent ? { sent: hooks.audioSent } : {}),
      ...(hooks.audioCut ? { cut: hooks.audioCut } : {}),
    },
  );
  const watch = new StreamWatch(clock.now(), config.mediaTimeoutMs, playout, hooks.lost, hooks.check);
  services.ticker.watch(watch);
  return { inbound, playout, watch };
}
