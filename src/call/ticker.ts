import type { Clock } from "../util/clock.ts";

interface Tickable {
  tick(now: number): void;
  readonly hasWork: boolean;
}

/**
 * One timer for all calls' outbound audio, instead of a timer per call: at hundreds of calls, one 10 ms loop costs far
 * less than hundreds of timers, and each playout sends against its own absolute clock, so tick jitter never drifts.
 */
export class PlayoutTicker {
  private readonly members = new Set<Tickable>();
  private timer: NodeJS.Timeout | null = null;
  /** Event-loop lateness of each tick, for metrics. */
  lastLateMs = 0;
  private nextAt = 0;

  constructor(
    private readonly clock: Clock,
    private readonly intervalMs = 10,
  ) {}

  add(p: Tickable): void {
    this.members.add(p);
    p.tick(this.clock.now());
    if (!this.timer) this.schedule(this.clock.now());
  }

  remove(p: Tickable): void {
    this.members.delete(p);
  }

  get size(): number {
    return this.members.size;
  }

  private schedule(from: number): void {
    this.nextAt = from + this.intervalMs;
    this.timer = setTimeout(this.run, this.intervalMs);
  }

  private readonly run = (): void => {
    const now = this.clock.now();
    this.lastLateMs = Math.max(0, now - this.nextAt);
    for (const p of this.members) {
      p.tick(now);
      if (!p.hasWork) this.members.delete(p);
    }
    if (this.members.size) this.schedule(now);
    else this.timer = null;
  };

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.members.clear();
  }
}
