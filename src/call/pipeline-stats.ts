import { constants, createHistogram, monitorEventLoopDelay, PerformanceObserver, type IntervalHistogram, type RecordableHistogram } from "node:perf_hooks";

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

export interface SecondStats {
  maxMs: number;
  over20: number;
  gcMs: number;
  gcMaxMs: number;
}

export interface GcStats {
  count: number;
  totalMs: number;
  maxMs: number;
  byKind: Record<string, { count: number; totalMs: number; maxMs: number }>;
}

const newGcStats = (): GcStats => ({ count: 0, totalMs: 0, maxMs: 0, byKind: {} });

const GC_KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: "minor",
  [constants.NODE_PERFORMANCE_GC_MAJOR]: "major",
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: "incremental",
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: "weakcb",
};

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
  /**
   * Per second since the last reset: the slowest inbound decision, how many took over 20 ms, and the main thread's
   * garbage-collection pauses in that second, so a tail can be laid beside the GC that may have caused it.
   */
  private perSecond: SecondStats[] = [];
  private since = performance.now();
  /** Main-thread GC pauses since the last mark, by kind (minor = scavenge, major = mark-sweep-compact, ...). */
  private gc = newGcStats();
  private readonly gcObserver: PerformanceObserver;

  constructor() {
    this.eventLoop.enable();
    this.eventLoopSinceMark.enable();
    this.gcObserver = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) this.recordGc(e.startTime, e.duration, ((e as unknown as { detail?: { kind?: number } }).detail?.kind ?? 0));
    });
    this.gcObserver.observe({ entryTypes: ["gc"] });
  }

  private recordGc(at: number, ms: number, kind: number): void {
    const name = GC_KINDS[kind] ?? "other";
    const k = (this.gc.byKind[name] ??= { count: 0, totalMs: 0, maxMs: 0 });
    k.count++;
    k.totalMs += ms;
    if (ms > k.maxMs) k.maxMs = ms;
    this.gc.count++;
    this.gc.totalMs += ms;
    if (ms > this.gc.maxMs) this.gc.maxMs = ms;
    const b = this.second(at);
    if (b) {
      b.gcMs += ms;
      if (ms > b.gcMaxMs) b.gcMaxMs = ms;
    }
  }

  private second(now: number): SecondStats | undefined {
    const sec = Math.floor((now - this.since) / 1000);
    if (sec < 0 || sec >= 3600) return undefined;
    while (this.perSecond.length <= sec) this.perSecond.push({ maxMs: 0, over20: 0, gcMs: 0, gcMaxMs: 0 });
    return this.perSecond[sec]!;
  }

  /** `now`: performance.now() at the decision, which the caller has already read. */
  recordInbound(ms: number, now: number): void {
    const us = Math.max(1, Math.round(ms * 1000));
    this.inbound.record(us);
    this.inboundSinceMark.record(us);
    const b = this.second(now);
    if (!b) return;
    if (ms > b.maxMs) b.maxMs = ms;
    if (ms > 20) b.over20++;
  }

  mark(): void {
    this.inboundSinceMark.reset();
    this.eventLoopSinceMark.reset();
    this.gc = newGcStats();
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
    inboundPerSecond: SecondStats[];
    gcSinceMark: GcStats;
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
      gcSinceMark: this.gc,
      memory: memoryMiB(),
    };
  }

  close(): void {
    this.gcObserver.disconnect();
    this.eventLoop.disable();
    this.eventLoopSinceMark.disable();
  }
}
