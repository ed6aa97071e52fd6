/**
 * Silero VAD for many concurrent calls: batched in a worker pool vs. one ORT session per call on the main thread.
 *
 * N streams of real speech (silero-vad-test.wav as 8 kHz mu-law, each stream starting at a different point) go in as
 * 160-byte frames, either at real time (each stream's frames 20 ms apart, streams out of phase) or as fast as the
 * engine takes them. Reports per-window latency (the push that completed a window -> its probability) p50/p99, CPU per
 * stream-second of audio (whole process, all threads), main-thread event-loop utilisation and mean batch size.
 *
 *   node --import tsx bench/vad-batching.ts [--streams 1,50,200,500] [--seconds 10] [--workers 1] [--max-batch 64]
 *        [--baseline-realtime]   (also run the baseline at real time; at high N it cannot keep up)
 *        [--skip-baseline]       (the baseline needs ~50 ms and ~10 MB RSS per session, one per stream)
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import ort from "onnxruntime-node";
import { MULAW_TO_FLOAT } from "../src/audio/mulaw.ts";
import { sileroModelPath, SileroVadPool, VAD_CONTEXT_SAMPLES, VAD_INPUT_SAMPLES, VAD_WINDOW_SAMPLES } from "../src/vad/index.ts";
import { clipMulaw } from "../test/helpers/audio.ts";
import { parseCli } from "./cli.ts";
import { num } from "./table.ts";

const USAGE = `
npm run bench:vad -- [options]   Silero VAD for many streams: batched worker pool vs one ORT session per call

  --streams N,N,...      stream counts to run (default 1,50,200,500)
  --seconds S            seconds of audio per stream (default 10)
  --workers K            VAD worker threads (default 1)
  --max-batch B          largest batch per inference (default 64)
  --baseline-realtime    also run the session-per-call baseline at real time
  --skip-baseline        skip the session-per-call baseline
  -h, --help             this text
`;
const { values, check } = parseCli("bench:vad", USAGE, {
  streams: { type: "string", default: "1,50,200,500" },
  seconds: { type: "string", default: "10" },
  workers: { type: "string", default: "1" },
  "max-batch": { type: "string", default: "64" },
  "baseline-realtime": { type: "boolean", default: false },
  "skip-baseline": { type: "boolean", default: false },
});
const COUNTS = check.intList("streams");
const SECONDS = check.int("seconds", 1);
const WORKERS = check.int("workers", 1);
const MAX_BATCH = check.int("max-batch", 1);
const FRAME = 160;
const FRAMES = SECONDS * 50;
const WINDOWS = Math.floor((FRAMES * FRAME) / VAD_WINDOW_SAMPLES);

type Listener = (prob: number, windowEndSample: number) => void;
interface Engine {
  name: string;
  open(onProb: Listener): { pushMulaw(b: Uint8Array): void; close(): void };
  meanBatch(): number;
  inferMsPerBatch(): number;
  dropped(): number;
  close(): Promise<void>;
}

async function batchedEngine(): Promise<Engine> {
  const pool = await SileroVadPool.create({ workers: WORKERS, maxBatch: MAX_BATCH });
  return {
    name: "batched pool",
    open: (l) => pool.openStream(l),
    meanBatch: () => pool.stats().meanBatchSize,
    inferMsPerBatch: () => pool.stats().meanInferenceMsPerBatch,
    dropped: () => pool.stats().droppedWindows,
    close: () => pool.close(),
  };
}

/** What the peers do: a session per call, run on the event loop whenever a call's window fills. */
async function baselineEngine(n: number): Promise<Engine> {
  const model = sileroModelPath();
  const sessions: ort.InferenceSession[] = [];
  for (let i = 0; i < n; i++) sessions.push(await ort.InferenceSession.create(model, { intraOpNumThreads: 1, interOpNumThreads: 1 }));
  const sr = new ort.Tensor("int64", BigInt64Array.from([8000n]), []);
  let next = 0;
  return {
    name: "session per call",
    open(onProb) {
      const session = sessions[next++ % n]!; // state is passed in, so a session can serve the next run's stream
      const win = new Float32Array(VAD_INPUT_SAMPLES);
      let fill = VAD_CONTEXT_SAMPLES;
      let samples = 0;
      let state: Float32Array = new Float32Array(256);
      let chain = Promise.resolve();
      const infer = async (input: Float32Array, end: number): Promise<void> => {
        const out = await session.run({ input: new ort.Tensor("float32", input, [1, VAD_INPUT_SAMPLES]), state: new ort.Tensor("float32", state, [2, 1, 128]), sr });
        state = out.stateN!.data as Float32Array;
        onProb((out.output!.data as Float32Array)[0]!, end);
      };
      return {
        pushMulaw(bytes) {
          for (let i = 0; i < bytes.length; i++) {
            win[fill++] = MULAW_TO_FLOAT[bytes[i]!]!;
            if (fill === VAD_INPUT_SAMPLES) {
              const input = win.slice();
              const end = samples + i + 1;
              chain = chain.then(() => infer(input, end));
              win.copyWithin(0, VAD_WINDOW_SAMPLES);
              fill = VAD_CONTEXT_SAMPLES;
            }
          }
          samples += bytes.length;
        },
        close() {},
      };
    },
    meanBatch: () => 1,
    inferMsPerBatch: () => NaN,
    dropped: () => 0,
    close: async () => {
      for (const s of sessions) await s.release();
    },
  };
}

/** Takes frames and answers every window at once without inferring: what the driver itself costs. */
function nullEngine(): Engine {
  return {
    name: "driver only",
    open(onProb) {
      let samples = 0;
      return {
        pushMulaw(bytes) {
          const before = Math.floor(samples / VAD_WINDOW_SAMPLES);
          samples += bytes.length;
          for (let w = before + 1; w <= Math.floor(samples / VAD_WINDOW_SAMPLES); w++) onProb(0, w * VAD_WINDOW_SAMPLES);
        },
        close() {},
      };
    },
    meanBatch: () => 0,
    inferMsPerBatch: () => NaN,
    dropped: () => 0,
    close: async () => {},
  };
}

interface Result {
  engine: string;
  mode: "realtime" | "fast";
  streams: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Whole process CPU per second of one stream's audio, less what the driver alone costs at the same N and mode. */
  cpuMsPerStreamSecond: number;
  rawCpuMsPerStreamSecond: number;
  mainElu: number;
  /** How late the main thread's event loop ran (ms): stalls there delay every stream's results. */
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
  wallOverAudio: number;
  meanBatch: number;
  inferMsPerBatch: number;
  droppedWindows: number;
}

const pct = (sorted: Float64Array, q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const driverCpu = new Map<string, number>();

async function drive(engine: Engine, n: number, mode: "realtime" | "fast", audio: Uint8Array): Promise<Result> {
  const pushTimes = Array.from({ length: n }, () => new Float64Array(FRAMES));
  const latency = new Float64Array(n * WINDOWS);
  const received = new Int32Array(n);
  let total = 0;
  let wake: (() => void) | null = null;
  const streams = Array.from({ length: n }, (_, i) =>
    engine.open((_p, end) => {
      latency[total++] = performance.now() - pushTimes[i]![Math.ceil(end / FRAME) - 1]!;
      received[i]!++;
      if (wake) {
        const w = wake;
        wake = null;
        w();
      }
    }),
  );
  // Different calls say different things at any moment: each starts at its own place in the 60 s recording.
  const offsets = Array.from({ length: n }, (_, i) => Math.floor(((i * 1.37) % 40) * 50) * FRAME);
  const sent = new Int32Array(n);
  const push = (i: number): void => {
    const o = offsets[i]! + sent[i]! * FRAME;
    pushTimes[i]![sent[i]!] = performance.now();
    streams[i]!.pushMulaw(audio.subarray(o, o + FRAME));
    sent[i]!++;
  };

  const loopDelay = monitorEventLoopDelay({ resolution: 1 });
  loopDelay.enable();
  const cpu0 = process.cpuUsage();
  const elu0 = performance.eventLoopUtilization();
  const t0 = performance.now();
  if (mode === "realtime") {
    const phase = Array.from({ length: n }, (_, i) => (20 * i) / n); // calls' frames are not aligned with each other
    while (total < n * WINDOWS) {
      const t = performance.now() - t0;
      let nextDue = Infinity;
      for (let i = 0; i < n; i++) {
        const due = Math.min(FRAMES, Math.floor((t - phase[i]!) / 20) + 1);
        while (sent[i]! < due) push(i);
        if (sent[i]! < FRAMES) nextDue = Math.min(nextDue, phase[i]! + sent[i]! * 20);
      }
      // Wake for the next frame due, not on a fixed poll, so the driver's own CPU stays small next to the engine's.
      await sleep(nextDue === Infinity ? 1 : Math.max(1, nextDue - (performance.now() - t0)));
    }
  } else {
    // As fast as the engine goes, keeping each stream at most 8 windows ahead of its results (no drops).
    const ahead = 8 * VAD_WINDOW_SAMPLES;
    while (total < n * WINDOWS) {
      for (let i = 0; i < n; i++) while (sent[i]! < FRAMES && sent[i]! * FRAME - received[i]! * VAD_WINDOW_SAMPLES < ahead) push(i);
      if (total < n * WINDOWS) await new Promise<void>((r) => (wake = r)); // sleep until a result, do not spin

    }
  }
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const elu = performance.eventLoopUtilization(elu0);
  loopDelay.disable();
  streams.forEach((s) => s.close());
  const sorted = latency.subarray(0, total).sort();
  return {
    engine: engine.name,
    mode,
    streams: n,
    p50Ms: pct(sorted, 0.5),
    p90Ms: pct(sorted, 0.9),
    p99Ms: pct(sorted, 0.99),
    maxMs: sorted[sorted.length - 1]!,
    cpuMsPerStreamSecond: (cpu.user + cpu.system) / 1000 / (n * SECONDS) - (driverCpu.get(`${mode}/${n}`) ?? 0),
    rawCpuMsPerStreamSecond: (cpu.user + cpu.system) / 1000 / (n * SECONDS),
    mainElu: elu.utilization,
    loopDelayP99Ms: loopDelay.percentile(99) / 1e6,
    loopDelayMaxMs: loopDelay.max / 1e6,
    wallOverAudio: wall / 1000 / SECONDS,
    meanBatch: engine.meanBatch(),
    inferMsPerBatch: engine.inferMsPerBatch(),
    droppedWindows: engine.dropped(),
  };
}

const clip = await clipMulaw("silero-vad-test");
const audio = new Uint8Array(clip.length * 2);
audio.set(clip);
audio.set(clip, clip.length);
if (SECONDS > 20) throw new Error("--seconds: at most 20 (streams start up to 40 s into a 60 s recording, looped once)");

const results: Result[] = [];
const ms = (r: Result, v: number): string => (r.mode === "fast" ? "-" : num(v, 2)).padStart(7); // fast mode queues on purpose
const print = (r: Result): void =>
  console.log(
    [r.engine.padEnd(16), r.mode.padEnd(8), String(r.streams).padStart(4), ms(r, r.p50Ms), ms(r, r.p99Ms), num(r.cpuMsPerStreamSecond, 2).padStart(15), num(r.mainElu, 2).padStart(4), num(r.wallOverAudio, 2).padStart(10), num(r.meanBatch, 1).padStart(5), String(r.droppedWindows).padStart(7)].join(" | "),
  );
console.log(`${cpus().length} cores (${cpus()[0]?.model}), ${SECONDS} s of audio per stream, workers=${WORKERS}, maxBatch=${MAX_BATCH}`);
console.log("engine           | mode     |    N |  p50 ms |  p99 ms | CPU ms/stream-s |  ELU | wall/audio | batch | dropped");

for (const n of COUNTS) {
  for (const mode of ["realtime", "fast"] as const) {
    const r = await drive(nullEngine(), n, mode, audio);
    driverCpu.set(`${mode}/${n}`, r.rawCpuMsPerStreamSecond);
    print({ ...r, cpuMsPerStreamSecond: r.rawCpuMsPerStreamSecond });
  }
  for (const mode of ["realtime", "fast"] as const) {
    const engine = await batchedEngine();
    results.push(await drive(engine, n, mode, audio));
    print(results.at(-1)!);
    await engine.close();
  }
  if (values["skip-baseline"]) continue;
  const base = await baselineEngine(n);
  for (const mode of values["baseline-realtime"] ? (["realtime", "fast"] as const) : (["fast"] as const)) {
    results.push(await drive(base, n, mode, audio));
    print(results.at(-1)!);
  }
  await base.close();
}

const ratios = COUNTS.map((n) => {
  const find = (engine: string): Result | undefined => results.find((r) => r.streams === n && r.mode === "fast" && r.engine === engine);
  const b = find("batched pool");
  const s = find("session per call");
  return { streams: n, baselineOverBatchedCpu: b && s ? s.cpuMsPerStreamSecond / b.cpuMsPerStreamSecond : null };
});
console.log("CPU per stream-second, session-per-call / batched (fast mode):", ratios.map((r) => `N=${r.streams}: ${r.baselineOverBatchedCpu === null ? "n/a" : `${r.baselineOverBatchedCpu.toFixed(2)}x`}`).join(", "));

mkdirSync(new URL("./out/", import.meta.url), { recursive: true });
const file = new URL("./out/vad-batching.json", import.meta.url);
writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), cores: cpus().length, seconds: SECONDS, workers: WORKERS, maxBatch: MAX_BATCH, results, ratios }, null, 2));
console.log(`wrote ${file.pathname}`);
