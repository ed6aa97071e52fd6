/**
 * What one Silero inference costs per window, by batch size and ONNX Runtime session options: the floor under the
 * VAD's share of Parley's CPU (a call brings 31.25 windows a second). One thread, nothing else running.
 *
 *   node --import tsx bench/vad-inference.ts [--rows 1,16,32,64,128,256,512] [--seconds 2]
 */
import ort from "onnxruntime-node";
import { sileroModelPath, VAD_INPUT_SAMPLES, VAD_SAMPLE_RATE, VAD_STATE_WIDTH } from "../src/vad/model.ts";
import { parseCli } from "./cli.ts";

const USAGE = `
node --import tsx bench/vad-inference.ts [options]   Silero inference cost per window by batch size

  --rows N,N,...   batch sizes (default 1,16,32,64,128,256,512)
  --seconds S      time per batch size and variant (default 2)
  --silence        digital silence in every window (else a tone with noise)
  -h, --help       this text
`;
const { values, check } = parseCli("bench:vad-inference", USAGE, {
  rows: { type: "string", default: "1,16,32,64,128,256,512" },
  seconds: { type: "string", default: "2" },
  silence: { type: "boolean", default: false },
});
const ROWS = check.intList("rows");
const SECONDS = check.positive("seconds");

const variants: Record<string, ort.InferenceSession.SessionOptions> = {
  default: { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: "sequential", graphOptimizationLevel: "all" },
  "no-arena": { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: "sequential", graphOptimizationLevel: "all", enableCpuMemArena: false },
  "extended-opt": { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: "sequential", graphOptimizationLevel: "extended" },
  "denormal-as-zero": { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: "sequential", graphOptimizationLevel: "all", extra: { session: { set_denormal_as_zero: "1" } } },
};

const sr = new ort.Tensor("int64", BigInt64Array.from([BigInt(VAD_SAMPLE_RATE)]), []);
const SILENT = values.silence;
console.log(`input: ${SILENT ? "digital silence" : "tone and noise"}`);
console.log(`| variant | rows | ms per run | µs per window | windows/s on one core | cores for 100 calls |`);
console.log(`|---|---:|---:|---:|---:|---:|`);
for (const [name, opts] of Object.entries(variants)) {
  const session = await ort.InferenceSession.create(sileroModelPath(), opts);
  for (const rows of ROWS) {
    const input = new Float32Array(rows * VAD_INPUT_SAMPLES);
    if (!SILENT) for (let i = 0; i < input.length; i++) input[i] = Math.sin(i * 0.05) * 0.3 + (Math.random() - 0.5) * 0.05;
    const feeds: Record<string, ort.Tensor> = {
      input: new ort.Tensor("float32", input, [rows, VAD_INPUT_SAMPLES]),
      state: new ort.Tensor("float32", new Float32Array(2 * rows * VAD_STATE_WIDTH), [2, rows, VAD_STATE_WIDTH]),
      sr,
    };
    // Recurrent, as in a call: each run's state goes into the next (long silences drive it towards tiny values).
    const step = async () => {
      const out = await session.run(feeds);
      feeds.state = out.stateN!;
    };
    for (let i = 0; i < 200; i++) await step();
    let runs = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < SECONDS * 1000) {
      await step();
      runs++;
    }
    const ms = (performance.now() - t0) / runs;
    const perWindow = (ms * 1000) / rows;
    console.log(`| ${name} | ${rows} | ${ms.toFixed(2)} | ${perWindow.toFixed(1)} | ${Math.round(1e6 / perWindow)} | ${((100 * 31.25 * perWindow) / 1e6).toFixed(3)} |`);
  }
  await session.release();
}
