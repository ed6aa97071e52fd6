import { parentPort, workerData } from "node:worker_threads";
import ort from "onnxruntime-node";
import { VAD_INPUT_SAMPLES, VAD_SAMPLE_RATE, VAD_STATE_SAMPLES, VAD_STATE_WIDTH } from "./model.ts";
import { errorMessage } from "../util/errors.ts";
import type { WorkerStamps } from "./decision-timing.ts";

export interface SileroWorkerData {
  modelPath: string;
  maxBatch: number;
}

/** Main -> worker. Messages are handled strictly in arrival order, so a reset/release sent after a run applies after it. */
export type ToWorker =
  | {
      type: "run";
      batch: number;
      rows: number;
      /** Rows per layer, run one after another: a stream has at most one window per layer, its oldest first. */
      layerCount: number;
      layers: Int32Array<ArrayBuffer>;
      input: Float32Array<ArrayBuffer>;
      ids: Int32Array<ArrayBuffer>;
      probs: Float32Array<ArrayBuffer>;
    }
  | { type: "reset"; id: number }
  | { type: "release"; id: number }
  | { type: "crash" };

/** Worker -> main. A run's buffers go back with its result so the pool can reuse them. */
export type FromWorker =
  | { type: "ready" }
  | {
      type: "result";
      batch: number;
      rows: number;
      input: Float32Array<ArrayBuffer>;
      ids: Int32Array<ArrayBuffer>;
      probs: Float32Array<ArrayBuffer>;
      layers: Int32Array<ArrayBuffer>;
      inferMs: number;
      /** On the absolute clock (timeOrigin + now), for the decision breakdown. */
      stamps: WorkerStamps;
    }
  | { type: "run-error"; batch: number; message: string };

const port = parentPort;
if (!port) throw new Error("silero.worker.ts must run as a worker thread");
const { modelPath, maxBatch } = workerData as SileroWorkerData;

const session = await ort.InferenceSession.create(modelPath, {
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  executionMode: "sequential",
  graphOptimizationLevel: "all",
});
const sr = new ort.Tensor("int64", BigInt64Array.from([BigInt(VAD_SAMPLE_RATE)]), []);

/** Each stream's recurrent state, [2][128], kept here so it never crosses the thread boundary. */
const states = new Map<number, Float32Array>();
const stateBuf = new Float32Array(2 * maxBatch * VAD_STATE_WIDTH);
/** State tensors by batch size, over views of stateBuf: batch sizes vary, but only up to maxBatch of them exist. */
const stateTensors: (ort.Tensor | undefined)[] = [];

function stateOf(id: number): Float32Array {
  let s = states.get(id);
  if (!s) states.set(id, (s = new Float32Array(VAD_STATE_SAMPLES)));
  return s;
}

/** One layer: rows [first, first + rows) of the batch, at most one per stream. Returns session.run's time. */
async function runLayer(input: Float32Array, ids: Int32Array, probs: Float32Array, first: number, rows: number): Promise<[number, number]> {
  const plane = rows * VAD_STATE_WIDTH; // one of the two [B, 128] halves of the [2, B, 128] tensor
  for (let r = 0; r < rows; r++) {
    const s = stateOf(ids[first + r]!);
    for (let k = 0; k < VAD_STATE_WIDTH; k++) {
      stateBuf[r * VAD_STATE_WIDTH + k] = s[k]!;
      stateBuf[plane + r * VAD_STATE_WIDTH + k] = s[VAD_STATE_WIDTH + k]!;
    }
  }
  const stateT = (stateTensors[rows] ??= new ort.Tensor("float32", stateBuf.subarray(0, 2 * plane), [2, rows, VAD_STATE_WIDTH]));
  const inputT = new ort.Tensor("float32", input.subarray(first * VAD_INPUT_SAMPLES, (first + rows) * VAD_INPUT_SAMPLES), [rows, VAD_INPUT_SAMPLES]);

  const t0 = performance.now();
  const out = await session.run({ input: inputT, state: stateT, sr });
  const t1 = performance.now();

  const p = out.output!.data as Float32Array;
  const next = out.stateN!.data as Float32Array;
  for (let r = 0; r < rows; r++) {
    probs[first + r] = p[r]!;
    const s = stateOf(ids[first + r]!);
    for (let k = 0; k < VAD_STATE_WIDTH; k++) {
      s[k] = next[r * VAD_STATE_WIDTH + k]!;
      s[VAD_STATE_WIDTH + k] = next[plane + r * VAD_STATE_WIDTH + k]!;
    }
  }
  return [t0, t1];
}

async function run(msg: Extract<ToWorker, { type: "run" }>, receivedAt: number): Promise<void> {
  const { rows, ids, input, probs, layers, layerCount } = msg;
  let first = 0;
  let inferMs = 0;
  let startedAt = 0;
  let endedAt = 0;
  for (let l = 0; l < layerCount; l++) {
    const n = layers[l]!;
    const [t0, t1] = await runLayer(input, ids, probs, first, n);
    if (l === 0) startedAt = t0;
    endedAt = t1;
    inferMs += t1 - t0;
    first += n;
  }
  if (first !== rows) throw new Error(`batch ${msg.batch}: layers hold ${first} rows, the batch ${rows}`);
  const origin = performance.timeOrigin;
  const stamps = { receivedAt, startedAt: origin + startedAt, endedAt: origin + endedAt };
  const reply: FromWorker = { type: "result", batch: msg.batch, rows, input, ids, probs, layers, inferMs, stamps };
  port!.postMessage(reply, [input.buffer, ids.buffer, probs.buffer, layers.buffer]);
}

function handle(msg: ToWorker, receivedAt: number): Promise<void> | void {
  switch (msg.type) {
    case "run":
      return run(msg, receivedAt).catch((err: unknown) => {
        const reply: FromWorker = { type: "run-error", batch: msg.batch, message: errorMessage(err) };
        port!.postMessage(reply);
      });
    case "reset":
      states.get(msg.id)?.fill(0);
      return;
    case "release":
      states.delete(msg.id);
      return;
    case "crash":
      // Test hook: an uncaught exception, the way a real bug in this thread would surface.
      setImmediate(() => {
        throw new Error("silero worker: crash requested");
      });
      return;
  }
}

// session.run yields (setImmediate) before computing, so later messages must wait for it or a release could race a run.
let chain: Promise<void> = Promise.resolve();
port.on("message", (msg: ToWorker) => {
  const receivedAt = performance.timeOrigin + performance.now();
  chain = chain.then(() => handle(msg, receivedAt));
});
port.postMessage({ type: "ready" } satisfies FromWorker);
