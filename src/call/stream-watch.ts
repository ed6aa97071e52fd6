import type { Playout } from "./playout.ts";

export type WatchdogKind = "media" | "mark";

/** Close code for a stream a watchdog gave up on (4000-4999 is for applications). */
export const WATCHDOG_CLOSE_CODE = 4000;

/**
 * The watchdogs of one started stream. Twilio sends a `media` message every 20 ms while the call is up, and echoes
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
