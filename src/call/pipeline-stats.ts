import { createHistogram, monitorEventLoopDelay, type IntervalHistogram, type RecordableHistogram } from "node:perf_hooks";

const LOOP_RESOLUTION_MS = 10;

/** The process's memory now (MiB), for the soak benchmark: heap slopes tell a leak from RSS the allocator keeps. */
export interface MemoryMiB {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
}

function memoryMiB(): MemoryMiB {
  const m = process.memoryUsage();
  const mib = (b: number) => Math.round((b / 2 ** 20) * 1000) / 1000;
  return { rss: mib(m.rss), heapUsed: mib(m.heapUsed), heapTotal: mib(m.heapTotal), external: mib(m.external), arrayBuffers: mib(m.arrayBuffers) };
}

export interface Percentiles {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

/**
 * The pipeline's own timing, for the capacity benchmark and for operators: how long an inbound frame waits for its
 * VAD decision, and how late the event loop runs. Exact percentiles (HDR histograms from perf_hooks), recorded in
 * microseconds; reported in milliseconds.
 */
export class PipelineStats {
  /** Frame received -> VAD decision for the window that frame completed. */
  readonly inbound: RecordableHistogram = createHistogram();
  /**
   * The same, since the last mark: a benchmark marks when every call is live and reads it before the first one ends,
   * so the steady state is measured apart from call set-up and teardown.
   */
  readonly inboundSinceMark: RecordableHistogram = createHistogram();
  readonly eventLoopSinceMark: IntervalHistogram = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
  readonly eventLoop: IntervalHistogram = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
  /** Underrun heard by callers (ms), summed at the end of each call's streams. */
  underrunMs = 0;
  /** Per second since the last reset: the slowest inbound decision, and how many took over 20 ms (when tails happen). */
  private perSecond: { maxMs: number; over20: number }[] = [];
  private since = performance.now();

  constructor() {
    this.eventLoop.enable();
    this.eventLoopSinceMark.enable();
  }

  /** `now`: performance.now() at the decision, which the caller has already read. */
  recordInbound(ms: number, now: number): void {
    const us = Math.max(1, Math.round(ms * 1000));
    this.inbound.record(us);
    this.inboundSinceMark.record(us);
    const sec = Math.floor((now - this.since) / 1000);
    if (sec >= 3600) return;
    while (this.perSecond.length <= sec) this.perSecond.push({ maxMs: 0, over20: 0 });
    const b = this.perSecond[sec]!;
    if (ms > b.maxMs) b.maxMs = ms;
    if (ms > 20) b.over20++;
  }

  mark(): void {
    this.inboundSinceMark.reset();
    this.eventLoopSinceMark.reset();
  }

  reset(): void {
    this.mark();
    this.perSecond = [];
    this.since = performance.now();
    this.inbound.reset();
    this.eventLoop.reset();
    this.underrunMs = 0;
  }

  snapshot(): {
    inboundMs: Percentiles;
    eventLoopMs: Percentiles;
    sinceMark: { inboundMs: Percentiles; eventLoopMs: Percentiles };
    windows: number;
    underrunMs: number;
    inboundPerSecond: { maxMs: number; over20: number }[];
    memory: MemoryMiB;
  } {
    const pct = (h: RecordableHistogram | IntervalHistogram, scale: number): Percentiles => ({
      count: h.count,
      p50: h.count ? h.percentile(50) / scale : 0,
      p95: h.count ? h.percentile(95) / scale : 0,
      p99: h.count ? h.percentile(99) / scale : 0,
      max: h.count ? h.max / scale : 0,
    });
    // The event-loop monitor records nanoseconds, and on Node 20 each sample includes its own 10 ms timer interval.
    const lateness = (v: number) => Math.max(0, v - LOOP_RESOLUTION_MS);
    const loopMs = (h: IntervalHistogram): Percentiles => {
      const loop = pct(h, 1e6);
      return { count: loop.count, p50: lateness(loop.p50), p95: lateness(loop.p95), p99: lateness(loop.p99), max: lateness(loop.max) };
    };
    return {
      inboundMs: pct(this.inbound, 1000),
      eventLoopMs: loopMs(this.eventLoop),
      sinceMark: { inboundMs: pct(this.inboundSinceMark, 1000), eventLoopMs: loopMs(this.eventLoopSinceMark) },
      windows: this.inbound.count, // VAD windows decided
      underrunMs: this.underrunMs,
      inboundPerSecond: this.perSecond,
      memory: memoryMiB(),
    };
  }

  close(): void {
    this.eventLoop.disable();
    this.eventLoopSinceMark.disable();
  }
}
