import type { Clock } from "../util/clock.ts";

interface Tickable {
  tick(now: number): void;
  readonly hasWork: boolean;
}

/** Something checked now and then against the clock (a stream's watchdogs). */
export interface Watched {
  check(now: number): void;
}

/**
 * One timer for all calls' outbound audio, instead of a timer per call: at hundreds of calls, one 10 ms loop costs far
 * less than hundreds of timers, and each playout sends against its own absolute clock, so tick jitter never drifts.
 * Beside it, one coarse interval for every stream's watchdogs: they compare timestamps, so a check every
 * `watchIntervalMs` is enough, and no call needs a timer of its own.
 */
export class PlayoutTicker {
  private readonly members = new Set<Tickable>();
  private timer: NodeJS.Timeout | null = null;
  private readonly watched = new Set<Watched>();
  private watchTimer: NodeJS.Timeout | null = null;
  private lastSweepAt = 0;

  constructor(
    private readonly clock: Clock,
    private readonly intervalMs = 10,
    private readonly watchIntervalMs = 100,
  ) {}

  add(p: Tickable): void {
    this.members.add(p);
    p.tick(this.clock.now());
    if (!this.timer) this.timer = setTimeout(this.run, this.intervalMs);
  }

  remove(p: Tickable): void {
    this.members.delete(p);
  }

  watch(w: Watched): void {
    this.watched.add(w);
    // Unref'd: watchdogs alone must not keep a process alive.
    this.watchTimer ??= setInterval(this.sweep, this.watchIntervalMs).unref();
  }

  unwatch(w: Watched): void {
    this.watched.delete(w);
    if (!this.watched.size && this.watchTimer) {
      clearInterval(this.watchTimer);
      this.watchTimer = null;
      this.lastSweepAt = 0;
    }
  }

  private readonly run = (): void => {
    const now = this.clock.now();
    for (const p of this.members) {
      p.tick(now);
      if (!p.hasWork) this.members.delete(p);
    }
    this.timer = this.members.size ? setTimeout(this.run, this.intervalMs) : null;
  };

  private readonly sweep = (): void => {
    const now = this.clock.now();
    const late = this.lastSweepAt > 0 && now - this.lastSweepAt > 3 * this.watchIntervalMs;
    this.lastSweepAt = now;
    // This process stalled (CPU starvation, a long GC): messages that arrived meanwhile may still be unread in socket
    // buffers (timers run before I/O), so a silence now proves nothing about the peer. Check next round.
    if (late) return;
    for (const w of this.watched) {
      try {
        w.check(now);
      } catch {
        // A watchdog's own failure is its call's business (it reports through its call); the others still run.
      }
    }
  };

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.watchTimer) clearInterval(this.watchTimer);
    this.timer = this.watchTimer = null;
    this.members.clear();
    this.watched.clear();
  }
}
