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

  constructor(
    private readonly clock: Clock,
    private readonly intervalMs = 10,
  ) {}

  add(p: Tickable): void {
    this.members.add(p);
    p.tick(this.clock.now());
    if (!this.timer) this.timer = setTimeout(this.run, this.intervalMs);
  }

  remove(p: Tickable): void {
    this.members.delete(p);
  }

  private readonly run = (): void => {
    const now = this.clock.now();
    for (const p of this.members) {
      p.tick(now);
      if (!p.hasWork) this.members.delete(p);
    }
    this.timer = this.members.size ? setTimeout(this.run, this.intervalMs) : null;
  };

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.members.clear();
  }
}
