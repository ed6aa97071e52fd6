import ort from "onnxruntime-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MULAW_TO_FLOAT, encodeMulawFloat } from "../src/audio/mulaw.ts";
import { sileroModelPath, SileroVadPool, SpeechDetector, type SileroVadPoolOptions, type VadStream } from "../src/vad/index.ts";
import { clipMulaw } from "./helpers/audio.ts";

const SR = 8000;
const W = 256;
const FRAME = 160; // Twilio: 20 ms of mu-law per media message

interface Run {
  probs: number[];
  ends: number[];
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Push a whole clip in 160-byte frames at once (the pool must queue it all), resolve with every window's result. */
function runAlone(pool: SileroVadPool, mu: Uint8Array): Promise<Run> {
  return new Promise((resolve) => {
    const n = Math.floor(mu.length / W);
    const run: Run = { probs: [], ends: [] };
    const stream = pool.openStream((p, end) => {
      run.probs.push(p);
      run.ends.push(end);
      if (run.probs.length === n) {
        stream.close();
        resolve(run);
      }
    });
    for (let o = 0; o < mu.length; o += FRAME) stream.pushMulaw(mu.subarray(o, o + FRAME));
  });
}

/** Feed several clips side by side, frame by frame, yielding to the event loop as a server would between messages. */
async function runTogether(pool: SileroVadPool, clips: Uint8Array[], framesPerTurn = 3): Promise<Run[]> {
  const runs = clips.map((): Run => ({ probs: [], ends: [] }));
  let remaining = clips.reduce((n, mu) => n + Math.floor(mu.length / W), 0);
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  const streams = clips.map((_, i) =>
    pool.openStream((p, end) => {
      runs[i]!.probs.push(p);
      runs[i]!.ends.push(end);
      if (--remaining === 0) done();
    }),
  );
  const longest = Math.max(...clips.map((c) => c.length));
  for (let f = 0; f * FRAME < longest; f++) {
    clips.forEach((mu, i) => {
      // Staggered starts, so streams join and leave batches at different times and batch sizes vary.
      const o = (f - i * 7) * FRAME;
      if (o >= 0 && o < mu.length) streams[i]!.pushMulaw(mu.subarray(o, o + FRAME));
    });
    if (f % framesPerTurn === framesPerTurn - 1) await tick();
  }
  for (let i = 0; i < clips.length; i++) {
    // Staggered streams end later than the longest clip's frame count: push their tails.
    const mu = clips[i]!;
    for (let o = Math.max(0, (Math.ceil(longest / FRAME) - i * 7) * FRAME); o < mu.length; o += FRAME) streams[i]!.pushMulaw(mu.subarray(o, o + FRAME));
  }
  await finished;
  streams.forEach((s) => s.close());
  return runs;
}

function maxAbsDiff(a: number[], b: number[]): number {
  expect(a.length).toBe(b.length);
  return a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
}

type Seg = [start: number, end: number];

/** Speech segments by the default detector; the last may have been cut by the end of the clip, not by silence. */
function detect(run: Run): Seg[] {
  return detectWithTail(run).segs;
}

function detectWithTail(run: Run): { segs: Seg[]; cutAtEnd: boolean } {
  const d = new SpeechDetector();
  const segs: Seg[] = [];
  const take = (ev: ReturnType<SpeechDetector["push"]>): void => {
    if (ev?.type === "speech-end") segs.push([ev.startSample, ev.endSample]);
  };
  run.probs.forEach((p, i) => take(d.push(p, run.ends[i])));
  const cutAtEnd = d.inSpeech;
  take(d.finish());
  return { segs, cutAtEnd };
}

/**
 * Where a clip is loud, independent of any model: 32 ms frames above max(noise floor + 15 dB, peak - 30 dB), gaps
 * under 550 ms bridged and islands under 150 ms dropped (the detector's own defaults), in samples.
 */
function energySegments(mu: Uint8Array): Seg[] {
  const n = Math.floor(mu.length / W);
  const db: number[] = [];
  for (let w = 0; w < n; w++) {
    let e = 0;
    for (let i = w * W; i < (w + 1) * W; i++) e += MULAW_TO_FLOAT[mu[i]!]! ** 2;
    db.push(10 * Math.log10(e / W + 1e-10));
  }
  const sorted = [...db].sort((a, b) => a - b);
  const thr = Math.max(sorted[Math.floor(n * 0.1)]! + 15, sorted[Math.floor(n * 0.95)]! - 30);
  const segs: Seg[] = [];
  db.forEach((v, w) => {
    if (v <= thr) return;
    const last = segs.at(-1);
    if (last && w * W - last[1] < 0.55 * SR) last[1] = (w + 1) * W;
    else segs.push([w * W, (w + 1) * W]);
  });
  return segs.filter(([a, b]) => b - a >= 0.15 * SR);
}

const overlap = (a: Seg, b: Seg): number => Math.max(0, Math.min(a[1], b[1]) - Math.max(a[0], b[0]));
const covered = (segs: Seg[], by: Seg[]): number => segs.reduce((s, a) => s + by.reduce((t, b) => t + overlap(a, b), 0), 0);
const total = (segs: Seg[]): number => segs.reduce((s, [a, b]) => s + b - a, 0);

let pool: SileroVadPool;
const mulaw = new Map<string, Uint8Array>();
const alone = new Map<string, Run>();
const CLIPS = ["silero-vad-test", "harvard-osr-0034-8k", "jfk", "austen-0870", "vosk-digits", "new-home-in-the-stars", "whats-the-weather-like"];

beforeAll(async () => {
  pool = await SileroVadPool.create({ maxQueueWindows: 2048 }); // whole clips are pushed faster than real time
  for (const name of CLIPS) mulaw.set(name, await clipMulaw(name));
  for (const name of CLIPS) alone.set(name, await runAlone(pool, mulaw.get(name)!));
});
afterAll(() => pool?.close());

describe("SileroVadPool on real speech", () => {
  it("matches a plain, unbatched Silero loop run on this thread (context and state carried window to window)", async () => {
    const mu = mulaw.get("jfk")!;
    const session = await ort.InferenceSession.create(sileroModelPath(), { intraOpNumThreads: 1, interOpNumThreads: 1 });
    const sr = new ort.Tensor("int64", BigInt64Array.from([8000n]), []);
    let state = new Float32Array(256);
    const input = new Float32Array(32 + W);
    const ref: number[] = [];
    for (let o = 0; o + W <= mu.length; o += W) {
      input.copyWithin(0, W); // previous window's last 32 samples
      for (let i = 0; i < W; i++) input[32 + i] = MULAW_TO_FLOAT[mu[o + i]!]!;
      const out = await session.run({ input: new ort.Tensor("float32", input, [1, 32 + W]), state: new ort.Tensor("float32", state, [2, 1, 128]), sr });
      state = Float32Array.from(out.stateN!.data as Float32Array);
      ref.push((out.output!.data as Float32Array)[0]!);
    }
    await session.release();
    const run = alone.get("jfk")!;
    expect(maxAbsDiff(run.probs, ref)).toBeLessThan(1e-5);
    expect(run.ends).toEqual(ref.map((_, i) => (i + 1) * W));
  });

  it("finds the speech in each clip, and only there (checked against the clip's energy envelope)", () => {
    for (const name of CLIPS) {
      const vad = detect(alone.get(name)!);
      const energy = energySegments(mulaw.get(name)!);
      const pad = 0.3 * SR;
      const padded = energy.map(([a, b]): Seg => [a - pad, b + pad]);
      expect(vad.length, name).toBeGreaterThan(0);
      expect(covered(energy, vad) / total(energy), `${name}: share of loud audio inside speech`).toBeGreaterThan(0.85);
      expect(covered(vad, padded) / total(vad), `${name}: share of speech near loud audio`).toBeGreaterThan(0.95);
    }
  });

  it("puts speech starts and ends near where the loud audio starts and ends", () => {
    // jfk is left out here: its "ask" at 3.3 s scores only ~0.5 even at 16 kHz, so the model starts that phrase at
    // "not" (4.0 s). That is the model's call, not a timing error, and the coverage test above still holds for jfk.
    for (const name of CLIPS.filter((n) => n !== "jfk")) {
      const { segs: vad, cutAtEnd } = detectWithTail(alone.get(name)!);
      const energy = energySegments(mulaw.get(name)!);
      for (const seg of vad) {
        // The energy envelope may split what the detector's hang-over joins: compare with everything it overlaps.
        const parts = energy.filter((e) => overlap(seg, e) > 0);
        expect(parts.length, `${name} ${seg.map((s) => (s / SR).toFixed(2)).join("-")} s overlaps loud audio`).toBeGreaterThan(0);
        const where = `${name} segment ${(seg[0] / SR).toFixed(2)}-${(seg[1] / SR).toFixed(2)} s`;
        expect(Math.abs(seg[0] - parts[0]![0]) / SR, `${where}: start`).toBeLessThan(0.25);
        // Speech still going when the clip ends has no end to check (silero-vad-test: a word begins at 59.9 s).
        if (!(cutAtEnd && seg === vad.at(-1))) expect(Math.abs(seg[1] - parts.at(-1)![1]) / SR, `${where}: end`).toBeLessThan(0.4);
      }
    }
  });

  it("the 60 s recording with pauses splits into several segments", () => {
    expect(detect(alone.get("silero-vad-test")!).length).toBeGreaterThanOrEqual(5);
    expect(detect(alone.get("harvard-osr-0034-8k")!).length).toBeGreaterThanOrEqual(10); // ten sentences
  });

  it("hears no speech in near-silence: digital silence, faint noise, faint hum", async () => {
    const n = 5 * SR;
    let seed = 1;
    const rand = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
    const quiet = {
      silence: new Uint8Array(n).fill(0xff),
      noise: encodeMulawFloat(Float32Array.from({ length: n }, () => rand() * 0.003)), // ~ -55 dBFS
      hum: encodeMulawFloat(Float32Array.from({ length: n }, (_, i) => 0.01 * Math.sin((2 * Math.PI * 50 * i) / SR))),
    };
    for (const [name, mu] of Object.entries(quiet)) {
      const run = await runAlone(pool, mu);
      expect(detect(run), name).toEqual([]);
      expect(Math.max(...run.probs), name).toBeLessThan(0.35);
    }
  });
});

describe("batching across streams", () => {
  const compare = (runs: Run[]): void => {
    runs.forEach((run, i) => {
      const ref = alone.get(CLIPS[i]!)!;
      expect(run.ends, CLIPS[i]).toEqual(ref.ends);
      // Batched rows go through different GEMM shapes, so allow float rounding, nothing more.
      expect(maxAbsDiff(run.probs, ref.probs), CLIPS[i]).toBeLessThan(1e-5);
    });
  };

  it("several streams at once give each stream the probabilities it gets alone", async () => {
    const before = pool.stats();
    compare(await runTogether(pool, CLIPS.map((n) => mulaw.get(n)!)));
    const after = pool.stats();
    // Batches really held several streams, or this test would prove nothing about batching.
    expect((after.windows - before.windows) / (after.batches - before.batches)).toBeGreaterThan(2);
    expect(after.droppedWindows).toBe(0);
  });

  it("times every decision step by step: one sample per window per step, and the steps add up to the whole", async () => {
    pool.resetTiming();
    const before = pool.stats();
    await runTogether(pool, CLIPS.map((n) => mulaw.get(n)!));
    const after = pool.stats();
    const { stagesMs, batchRows } = after.decision;
    const windows = after.windows - before.windows;
    for (const [step, p] of Object.entries(stagesMs)) expect(p.count, step).toBe(windows);
    expect(batchRows.count).toBe(after.batches - before.batches);
    // Inference is a real, measured cost (a 32 ms window of Silero takes tens of microseconds at least), and the whole
    // decision of a window is never shorter than its inference (the two threads' clocks agree).
    expect(stagesMs.inference.p50).toBeGreaterThan(0.01);
    expect(stagesMs.total.p50).toBeGreaterThanOrEqual(stagesMs.inference.p50);
    expect(stagesMs.total.max).toBeGreaterThanOrEqual(stagesMs.inference.max);
    const parts = stagesMs.queued.max + stagesMs.toWorker.max + stagesMs.workerWait.max + stagesMs.inference.max + stagesMs.fromWorker.max + stagesMs.delivery.max;
    expect(stagesMs.total.max).toBeLessThanOrEqual(parts + 0.01);
    pool.resetTiming();
    expect(pool.stats().decision.stagesMs.total.count).toBe(0);
  });

  it("still holds with small batches (streams take turns), with two workers, with batches pipelined to the worker, and with any catch-up depth", async () => {
    const variants: SileroVadPoolOptions[] = [
      { maxBatch: 2 },
      { workers: 2, maxBatch: 3 },
      { batchesInFlight: 2 },
      { workers: 2, maxBatch: 3, batchesInFlight: 3 },
      { windowsPerStream: 1 },
      { windowsPerStream: 32, maxBatch: 3 },
      { windowsPerStream: 3, batchesInFlight: 2 },
    ];
    for (const opts of variants) {
      const p = await SileroVadPool.create({ ...opts, maxQueueWindows: 2048 });
      try {
        compare(await runTogether(p, CLIPS.map((n) => mulaw.get(n)!), 5));
        const stats = p.stats();
        expect(stats.meanBatchSize).toBeGreaterThan(1);
        // Pipelining really happened (else the order of a stream's windows across batches went untested).
        if (opts.batchesInFlight) expect(stats.peakBatchesInFlight).toBe(opts.batchesInFlight);
        else expect(stats.peakBatchesInFlight).toBe(1);
        // Clips are pushed faster than real time, so streams fall behind: with a depth above one, their windows rode
        // in later layers of a batch (else the in-order catch-up went untested); with one, never.
        if (opts.windowsPerStream === 1) expect(stats.catchUpWindows).toBe(0);
        else expect(stats.catchUpWindows, JSON.stringify(opts)).toBeGreaterThan(stats.windows / 4);
      } finally {
        await p.close();
      }
    }
  });
});

describe("stream lifecycle", () => {
  it("closing a stream with windows queued and in flight is safe, and a new stream starts from fresh state", async () => {
    const mu = mulaw.get("harvard-osr-0034-8k")!;
    let afterClose = 0;
    let closed = false;
    const s: VadStream = pool.openStream(() => {
      if (closed) afterClose++;
    });
    s.pushMulaw(mu.subarray(0, 4 * SR));
    await tick(); // first window now in flight, the rest queued
    s.close();
    closed = true;
    s.close();
    s.pushMulaw(mu.subarray(0, SR)); // a late frame after hang-up is ignored
    expect(s.closed).toBe(true);
    // A stream opened afterwards shares the worker; when it is done, the closed stream's batch has long returned.
    const next = await runAlone(pool, mulaw.get("austen-0870")!);
    expect(afterClose).toBe(0);
    expect(maxAbsDiff(next.probs, alone.get("austen-0870")!.probs)).toBeLessThan(1e-5);
  });

  it("reset() forgets state and pending windows; positions keep counting on the stream's timeline", async () => {
    const before = mulaw.get("jfk")!.subarray(0, 1000); // 3 windows and 232 spare samples
    const mu = mulaw.get("new-home-in-the-stars")!;
    const n = Math.floor(mu.length / W);
    const run: Run = { probs: [], ends: [] };
    let resetDone = false;
    const got = new Promise<void>((resolve) => {
      const s = pool.openStream((p, end) => {
        if (!resetDone) return;
        run.probs.push(p);
        run.ends.push(end);
        if (run.probs.length === n) {
          s.close();
          resolve();
        }
      });
      s.pushMulaw(before);
      void tick().then(() => {
        s.reset(); // one window in flight: its result must be discarded
        resetDone = true;
        for (let o = 0; o < mu.length; o += FRAME) s.pushMulaw(mu.subarray(o, o + FRAME));
      });
    });
    await got;
    await tick();
    const ref = alone.get("new-home-in-the-stars")!;
    expect(run.ends).toEqual(ref.ends.map((e) => e + before.length));
    expect(maxAbsDiff(run.probs, ref.probs)).toBeLessThan(1e-5);
  });

  it("a stream that falls far behind drops its oldest windows and counts them", async () => {
    const p = await SileroVadPool.create({ maxQueueWindows: 4 });
    try {
      const ends: number[] = [];
      const s = p.openStream((_, end) => ends.push(end));
      s.pushMulaw(mulaw.get("jfk")!.subarray(0, 100 * W)); // 100 windows before the pool gets a turn
      while (ends.length < 4) await tick();
      expect(ends).toEqual([97, 98, 99, 100].map((k) => k * W));
      expect(s.droppedWindows).toBe(96);
      expect(p.stats()).toMatchObject({ droppedWindows: 96, windows: 4, queuedWindows: 0 });
    } finally {
      await p.close();
    }
  });
});

describe("failures", () => {
  it("survives a worker crash: reports it, restarts the worker, and streams carry on", async () => {
    const errors: Error[] = [];
    const p = await SileroVadPool.create({ maxQueueWindows: 2048, onError: (e) => errors.push(e) });
    try {
      const mu = mulaw.get("austen-0870")!;
      const probs: number[] = [];
      const s = p.openStream((prob) => probs.push(prob));
      s.pushMulaw(mu.subarray(0, 2 * SR));
      while (probs.length < 10) await tick();
      p.crashWorkerForTest(0);
      while (errors.length === 0) await tick();
      expect(errors[0]?.message).toMatch(/silero worker 0 exited/);
      const had = probs.length;
      s.pushMulaw(mu.subarray(2 * SR));
      while (probs.length < had + 50) await tick();
      expect(p.stats().workerRestarts).toBe(1);
      // A stream opened after the restart is exactly like one on a healthy pool.
      const fresh = await runAlone(p, mu);
      expect(maxAbsDiff(fresh.probs, alone.get("austen-0870")!.probs)).toBeLessThan(1e-5);
    } finally {
      await p.close();
    }
  });

  it("a listener that throws is reported and does not stop other streams", async () => {
    const errors: Error[] = [];
    const p = await SileroVadPool.create({ maxQueueWindows: 2048, onError: (e) => errors.push(e) });
    try {
      const bad = p.openStream(() => {
        throw new Error("listener bug");
      });
      bad.pushMulaw(mulaw.get("jfk")!.subarray(0, 10 * W));
      const good = await runAlone(p, mulaw.get("austen-0870")!);
      expect(good.probs.length).toBe(alone.get("austen-0870")!.probs.length);
      expect(errors.length).toBe(10);
      expect(errors[0]?.message).toBe("listener bug");
    } finally {
      await p.close();
    }
  });

  it("fails to start with a clear error when the model cannot be loaded", async () => {
    await expect(SileroVadPool.create({ modelPath: "/nonexistent/silero.onnx" })).rejects.toThrow(/silero worker 0 exited.*nonexistent/);
  });
});
