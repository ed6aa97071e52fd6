import { createHistogram, type RecordableHistogram } from "node:perf_hooks";

/**
 * Where a VAD decision's time goes, step by step, for finding the tail of the round trip (issue 13):
 *   queued      a window is complete (enqueued) -> its batch is posted to the worker
 *   toWorker    posted -> the worker thread receives the message
 *   workerWait  received -> inference starts (the worker's own queue: an earlier batch still running)
 *   inference   session.run
 *   fromWorker  inference ends -> the main thread receives the result
 *   delivery    result received -> this window's listener runs (the rows before it in the batch go first)
 *   total       enqueued -> listener
 * Per window, in microseconds, into HDR histograms: recording allocates nothing. Times across threads are compared on
 * the absolute clock (`performance.timeOrigin + performance.now()` in each thread).
 */
export const DECISION_STAGES = ["queued", "toWorker", "workerWait", "inference", "fromWorker", "delivery", "total"] as const;
export type DecisionStage = (typeof DECISION_STAGES)[number];

export interface StagePercentiles {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

/** What the worker stamps on a batch, on the absolute clock (ms). */
export interface WorkerStamps {
  receivedAt: number;
  startedAt: number;
  endedAt: number;
}

export class DecisionTiming {
  private readonly h: Record<DecisionStage, RecordableHistogram>;
  /** Rows per batch. */
  private readonly rows = createHistogram();

  constructor() {
    this.h = Object.fromEntries(DECISION_STAGES.map((s) => [s, createHistogram()])) as Record<DecisionStage, RecordableHistogram>;
  }

  /**
   * One batch's result has arrived. `postedAt`, `enqueuedAt` and `now` are this thread's performance.now();
   * `stamps` are the worker's, absolute.
   */
  batch(rows: number, postedAt: number, enqueuedAt: Float64Array, stamps: WorkerStamps, receivedAt: number, deliveredAt: Float64Array): void {
    const origin = performance.timeOrigin;
    const recv = stamps.receivedAt - origin;
    const start = stamps.startedAt - origin;
    const end = stamps.endedAt - origin;
    this.rows.record(Math.max(1, rows));
    rec(this.h.toWorker, recv - postedAt, rows);
    rec(this.h.workerWait, start - recv, rows);
    rec(this.h.inference, end - start, rows);
    rec(this.h.fromWorker, receivedAt - end, rows);
    for (let r = 0; r < rows; r++) {
      rec(this.h.queued, postedAt - enqueuedAt[r]!, 1);
      rec(this.h.delivery, deliveredAt[r]! - receivedAt, 1);
      rec(this.h.total, deliveredAt[r]! - enqueuedAt[r]!, 1);
    }
  }

  reset(): void {
    for (const s of DECISION_STAGES) this.h[s].reset();
    this.rows.reset();
  }

  snapshot(): { stagesMs: Record<DecisionStage, StagePercentiles>; batchRows: StagePercentiles } {
    const ms = (h: RecordableHistogram): StagePercentiles => ({
      count: h.count,
      p50: h.count ? h.percentile(50) / 1000 : 0,
      p99: h.count ? h.percentile(99) / 1000 : 0,
      max: h.count ? h.max / 1000 : 0,
    });
    const stagesMs = Object.fromEntries(DECISION_STAGES.map((s) => [s, ms(this.h[s])])) as Record<DecisionStage, StagePercentiles>;
    const r = this.rows;
    return { stagesMs, batchRows: { count: r.count, p50: r.count ? r.percentile(50) : 0, p99: r.count ? r.percentile(99) : 0, max: r.count ? r.max : 0 } };
  }
}

/** A stage shared by a batch's rows counts once per row, so every stage's percentiles are per window. */
function rec(h: RecordableHistogram, ms: number, times: number): void {
  const us = Math.max(1, Math.round(ms * 1000));
  for (let i = 0; i < times; i++) h.record(us);
}
