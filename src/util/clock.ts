/** Time source in epoch milliseconds (sub-millisecond, monotonic within a process). Injected wherever timing matters. */
export interface Clock {
  now(): number;
}

const origin = performance.timeOrigin;
export const systemClock: Clock = { now: () => origin + performance.now() };

/** A clock tests move by hand. */
export class ManualClock implements Clock {
  constructor(private t = 1_700_000_000_000) {}
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}
