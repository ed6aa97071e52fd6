/**
 * Debian's PocketSphinx (libpocketsphinx3, the 0.8+5prealpha C library) with its US-English model (pocketsphinx-en-us:
 * a 16 kHz acoustic model and a trigram language model), called through koffi, off the main thread.
 *
 * One decoder, utterances decoded one at a time, each whole once the VAD has ended it: the model's feat.params asks for
 * batch cepstral-mean normalisation, which needs the whole utterance (decoding 20 ms at a time measured 42% WER
 * against 29% whole, bench/stt-accuracy.ts). Decoding costs ~0.3-0.5 s of one core per second of speech, so one
 * decoder keeps up with a few callers speaking at once; a queued utterance can still be cancelled before its turn.
 */
import { parentPort, workerData } from "node:worker_threads";
import path from "node:path";
import { errorMessage } from "../../util/errors.ts";

export interface PocketSphinxWorkerConfig {
  /** File name or path given to dlopen (e.g. "libpocketsphinx.so.3"). */
  library: string;
  /** Directory holding en-us/ (acoustic model), en-us.lm.bin and cmudict-en-us.dict. */
  modelDir: string;
  /** The decoder's beam: most HMMs searched per frame (-maxhmmpf); fewer is faster and a little less accurate. */
  maxHmmPerFrame: number;
}

export type ToWorker = { type: "decode"; id: number; pcm: Int16Array } | { type: "cancel"; id: number };

export type FromWorker =
  | { type: "ready" }
  | { type: "init-error"; message: string }
  | { type: "result"; id: number; text: string; decodeMs: number; samples: number }
  | { type: "error"; id: number; message: string };

/** Where the model files are inside a model directory laid out like Debian's pocketsphinx-en-us. */
export function modelFiles(modelDir: string): { hmm: string; lm: string; dict: string } {
  return { hmm: path.join(modelDir, "en-us"), lm: path.join(modelDir, "en-us.lm.bin"), dict: path.join(modelDir, "cmudict-en-us.dict") };
}

/**
 * 8 kHz to 16 kHz by linear interpolation. The acoustic model's filterbank reaches 6.8 kHz (feat.params overrides any
 * -upperf we pass, and 8 kHz features fail with this model), so the audio must be 16 kHz. Interpolation leaves a
 * mirror image of the 0-4 kHz band above 4 kHz, where the model expects speech energy; measured on the shared
 * recordings it beats a band-limited sinc resampler (29% against 37% WER), which leaves those bands empty.
 */
export function upsample2x(pcm: Int16Array, out: Int16Array): Int16Array {
  const n = pcm.length;
  for (let i = 0; i < n; i++) {
    const a = pcm[i]!;
    const b = i + 1 < n ? pcm[i + 1]! : a;
    out[2 * i] = a;
    out[2 * i + 1] = (a + b) >> 1;
  }
  return out.subarray(0, 2 * n);
}

interface Api {
  decoder: unknown;
  startStream(d: unknown): number;
  startUtt(d: unknown): number;
  processRaw(d: unknown, data: Int16Array, n: number, noSearch: number, fullUtt: number): number;
  endUtt(d: unknown): number;
  getHyp(d: unknown, score: number[]): string | null;
}

async function init(config: PocketSphinxWorkerConfig): Promise<Api> {
  const { default: koffi } = await import("koffi");
  let lib: ReturnType<typeof koffi.load>;
  try {
    lib = koffi.load(config.library);
  } catch (err) {
    throw new Error(`pocketsphinx: cannot load ${config.library}: ${errorMessage(err)}`);
  }
  // cmd_ln_parse_r lives in libsphinxbase; dlsym on libpocketsphinx's handle finds it among its dependencies.
  const psArgs = lib.func("void *ps_args(void)");
  const parseArgs = lib.func("void *cmd_ln_parse_r(void *inout, void *defn, int argc, const char **argv, int strict)");
  const psInit = lib.func("void *ps_init(void *config)");
  const files = modelFiles(config.modelDir);
  // The library logs every step to stderr unless told otherwise.
  const argv = ["-hmm", files.hmm, "-lm", files.lm, "-dict", files.dict, "-samprate", "16000", "-logfn", "/dev/null", "-maxhmmpf", String(config.maxHmmPerFrame)];
  const cmdln = parseArgs(null, psArgs(), argv.length, argv, 1);
  if (!cmdln) throw new Error(`pocketsphinx: the library rejected its arguments (${argv.join(" ")})`);
  const decoder = psInit(cmdln);
  if (!decoder) throw new Error(`pocketsphinx: could not load the model from ${config.modelDir} (is pocketsphinx-en-us installed?)`);
  return {
    decoder,
    startStream: lib.func("int ps_start_stream(void *ps)"),
    startUtt: lib.func("int ps_start_utt(void *ps)"),
    processRaw: lib.func("int ps_process_raw(void *ps, const int16_t *data, size_t n, int no_search, int full_utt)"),
    endUtt: lib.func("int ps_end_utt(void *ps)"),
    getHyp: lib.func("const char *ps_get_hyp(void *ps, _Out_ int *score)"),
  };
}

function decode(api: Api, pcm: Int16Array): string {
  if (wide.length < pcm.length * 2) wide = new Int16Array(pcm.length * 2);
  const x = upsample2x(pcm, wide);
  const d = api.decoder;
  // A new "stream" resets the noise and silence estimates the front end carries between utterances: without it one
  // caller's transcript depends on whatever another caller said before (measured: the same clip decoded differently).
  if (api.startStream(d) < 0 || api.startUtt(d) < 0) throw new Error("pocketsphinx: ps_start_utt failed");
  const rc = api.processRaw(d, x, x.length, 0, 1);
  if (api.endUtt(d) < 0 || rc < 0) throw new Error("pocketsphinx: decoding failed");
  return (api.getHyp(d, [0]) ?? "").trim();
}

/** 16 kHz audio of the utterance being decoded; grows to the longest utterance seen, then is reused. */
let wide = new Int16Array(16000 * 10);

if (parentPort) {
  const port = parentPort;
  const queue: Array<{ id: number; pcm: Int16Array }> = [];
  let api: Api | undefined;
  let draining = false;

  const drain = () => {
    const job = queue.shift();
    if (!job || !api) {
      draining = false;
      return;
    }
    try {
      const t0 = performance.now();
      const text = decode(api, job.pcm);
      port.postMessage({ type: "result", id: job.id, text, decodeMs: performance.now() - t0, samples: job.pcm.length } satisfies FromWorker);
    } catch (err) {
      port.postMessage({ type: "error", id: job.id, message: errorMessage(err) } satisfies FromWorker);
    }
    // One utterance per turn of the event loop, so a cancel for a queued one is seen before its turn.
    setImmediate(drain);
  };
  const kick = () => {
    if (draining || !api) return;
    draining = true;
    setImmediate(drain);
  };

  port.on("message", (m: ToWorker) => {
    if (m.type === "decode") queue.push({ id: m.id, pcm: m.pcm });
    else {
      const i = queue.findIndex((j) => j.id === m.id);
      if (i >= 0) queue.splice(i, 1);
    }
    kick();
  });

  init(workerData as PocketSphinxWorkerConfig).then(
    (a) => {
      api = a;
      port.postMessage({ type: "ready" } satisfies FromWorker);
      kick();
    },
    (err: unknown) => port.postMessage({ type: "init-error", message: errorMessage(err) } satisfies FromWorker),
  );
}
