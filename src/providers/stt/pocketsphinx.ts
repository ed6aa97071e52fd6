/**
 * Embedded dictation: Debian's PocketSphinx library and US-English trigram model (apt-get install libpocketsphinx3
 * pocketsphinx-en-us), in a worker thread. Far better than SoundSwallower's word loop at open-vocabulary speech
 * (bench/stt-accuracy.ts), but it decodes each utterance whole after the VAD ends it: no partial hypotheses, and no
 * phrase-list or grammar mode (those stay on SoundSwallower, which is accurate there).
 *
 * The session gathers the utterance's audio in a buffer of its own (grown by doubling, then reused, so pushing a frame
 * allocates nothing) and hands it to the worker in one message when the utterance ends.
 */
import { existsSync } from "node:fs";
import type { Worker } from "node:worker_threads";
import { startWorker } from "../../util/worker.ts";
import { errorMessage } from "../../util/errors.ts";
import type { SttProvider, SttSession, Transcript } from "../types.ts";
import { modelFiles, type FromWorker, type PocketSphinxWorkerConfig, type ToWorker } from "./pocketsphinx.worker.ts";
import { englishOnly } from "./language.ts";

export const POCKETSPHINX_DEFAULTS = {
  library: "libpocketsphinx.so.3",
  modelDir: "/usr/share/pocketsphinx/model/en-us",
  // Measured on ../shared/audio (bench:stt): the library's default (30000) gives 27.5 % WER at 0.44–0.65 CPU RTF
  // here; 4000 gives 29.3 % at 0.26–0.38, inside both targets (35 %, 0.5), so two cores carry more callers.
  maxHmmPerFrame: 4000,
};

export const POCKETSPHINX_INSTALL_HINT = "apt-get install libpocketsphinx3 pocketsphinx-en-us";

export interface PocketSphinxOptions {
  /** File name or path of the shared library, as dlopen takes it. */
  library?: string;
  /** Directory with en-us/, en-us.lm.bin and cmudict-en-us.dict (Debian's layout). */
  modelDir?: string;
  /** The decoder's beam (-maxhmmpf). */
  maxHmmPerFrame?: number;
}

/**
 * Why this machine cannot run the provider ("" when it can): the model files are missing, or the library (or koffi)
 * does not load. Loading the library here only maps it; the model is read by the worker.
 */
export async function pocketsphinxProblem(options: PocketSphinxOptions = {}): Promise<string> {
  const library = options.library ?? POCKETSPHINX_DEFAULTS.library;
  const modelDir = options.modelDir ?? POCKETSPHINX_DEFAULTS.modelDir;
  const missing = Object.values(modelFiles(modelDir)).filter((f) => !existsSync(f));
  if (missing.length) return `model files missing: ${missing.join(", ")}`;
  try {
    const { default: koffi } = await import("koffi");
    koffi.load(library);
    return "";
  } catch (err) {
    return `cannot load ${library}: ${errorMessage(err)}`;
  }
}

/** Audio kept per utterance at most (8 kHz samples): bounds what one caller can queue at the recogniser. */
const MAX_UTTERANCE_SAMPLES = 60 * 8000;

export class PocketSphinxStt implements SttProvider {
  readonly name = "pocketsphinx";

  private readonly config: PocketSphinxWorkerConfig;
  private worker: Worker | undefined;
  private booting: Promise<void> | undefined;
  private booted = false;
  private initError: Error | undefined;
  private closed = false;
  private seq = 0;
  private readonly pending = new Map<number, { resolve: (t: Transcript) => void; reject: (e: Error) => void }>();
  /** What the decoder has done: decodes, their CPU time and the audio they covered; early decodes used and dropped. */
  readonly work = { decodes: 0, decodeMs: 0, audioMs: 0, earlyUsed: 0, earlyDropped: 0 };

  /** For /debug/stats: what recognition costs (an early decode dropped is work done for nothing). */
  stats(): Record<string, number> {
    return { ...this.work, decodeMs: Math.round(this.work.decodeMs), audioMs: Math.round(this.work.audioMs) };
  }

  constructor(options: PocketSphinxOptions = {}) {
    this.config = {
      library: options.library ?? POCKETSPHINX_DEFAULTS.library,
      modelDir: options.modelDir ?? POCKETSPHINX_DEFAULTS.modelDir,
      maxHmmPerFrame: options.maxHmmPerFrame ?? POCKETSPHINX_DEFAULTS.maxHmmPerFrame,
    };
  }

  ready(): Promise<void> {
    const w = this.spawn();
    return w instanceof Error ? Promise.reject(w) : this.booting!;
  }

  languageProblem(language: string): string | undefined {
    return englishOnly("PocketSphinx", language);
  }

  openSession(): SttSession {
    return new PocketSphinxSession(this);
  }

  async close(): Promise<void> {
    this.closed = true;
    const w = this.worker;
    this.worker = undefined; // so its exit is not taken for a crash
    this.failAll(new Error("pocketsphinx: provider closed"));
    if (w) await w.terminate();
  }

  /** @internal Decode one finished utterance (8 kHz PCM, transferred to the worker). */
  decode(pcm: Int16Array): { id: number; result: Promise<Transcript> } {
    const id = ++this.seq;
    const result = new Promise<Transcript>((resolve, reject) => this.pending.set(id, { resolve, reject }));
    const w = this.spawn();
    if (w instanceof Error) this.settle(id, w);
    else w.postMessage({ type: "decode", id, pcm } satisfies ToWorker, [pcm.buffer as ArrayBuffer]);
    this.updateRef();
    return { id, result };
  }

  /** @internal Drop an utterance still waiting for its turn (its session closed): it resolves to no text. */
  drop(id: number): void {
    if (!this.pending.has(id)) return;
    this.worker?.postMessage({ type: "cancel", id } satisfies ToWorker);
    this.settle(id, { text: "" });
  }

  /** Start the worker if none is running; an Error when the provider cannot run at all. */
  private spawn(): Worker | Error {
    if (this.closed) return new Error("pocketsphinx: provider closed");
    if (this.initError) return this.initError;
    if (this.worker) return this.worker;
    const w = startWorker(new URL("./pocketsphinx.worker.ts", import.meta.url), { workerData: this.config });
    this.worker = w;
    this.booted = false;
    this.booting = new Promise<void>((resolve, reject) => {
      w.on("message", (m: FromWorker) => this.onMessage(w, m, resolve, reject));
      w.on("error", (err) => this.onDeath(w, `crashed: ${err.message}`, reject));
      w.on("exit", (code) => this.onDeath(w, `exited (code ${code})`, reject));
    });
    this.booting.catch(() => {});
    this.updateRef();
    return w;
  }

  private onMessage(w: Worker, m: FromWorker, resolve: () => void, reject: (e: Error) => void): void {
    if (w !== this.worker) return;
    if (m.type === "ready") {
      this.booted = true;
      resolve();
    } else if (m.type === "init-error") {
      // A missing library or model does not appear on retry: fail fast from now on.
      this.initError = new Error(`${m.message} (install: ${POCKETSPHINX_INSTALL_HINT})`);
      this.worker = undefined;
      void w.terminate();
      reject(this.initError);
      this.failAll(this.initError);
    } else if (m.type === "result") {
      this.work.decodes++;
      this.work.decodeMs += m.decodeMs;
      this.work.audioMs += m.samples / 8;
      this.settle(m.id, { text: m.text });
    } else {
      this.settle(m.id, new Error(m.message));
    }
    this.updateRef();
  }

  private onDeath(w: Worker, how: string, reject: (e: Error) => void): void {
    if (w !== this.worker) return; // closed, replaced, or already handled ('error' is followed by 'exit')
    this.worker = undefined;
    this.booting = undefined;
    const err = new Error(`pocketsphinx: recognition worker ${how}; utterances being decoded were lost, the next one starts a new worker`);
    reject(err);
    this.failAll(err);
  }

  private settle(id: number, outcome: Transcript | Error): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (outcome instanceof Error) p.reject(outcome);
    else p.resolve(outcome);
    this.updateRef();
  }

  private failAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  /** An idle worker must not keep the process alive; one with work in flight (or booting) must. */
  private updateRef(): void {
    if (!this.worker) return;
    if (this.pending.size > 0 || !this.booted) this.worker.ref();
    else this.worker.unref();
  }
}

class PocketSphinxSession implements SttSession {
  /** The current utterance's audio so far; grows by doubling up to MAX_UTTERANCE_SAMPLES, then is reused. */
  private buf = new Int16Array(8000 * 4);
  private length = 0;
  private inUtterance = false;
  private decoding: number | undefined;
  /** A decode started at a pause, of the utterance's first `length` samples; finish() takes it if no speech followed. */
  private early: { id: number; result: Promise<Transcript>; length: number } | undefined;
  private closed = false;
  /** Decodes started at a pause and used, and dropped because the caller went on (for tests and tuning). */
  readonly earlyDecodes = { used: 0, dropped: 0 };
  /** Samples dropped because an utterance ran past MAX_UTTERANCE_SAMPLES. */
  droppedSamples = 0;

  constructor(private readonly stt: PocketSphinxStt) {}

  start(): void {
    if (this.closed) return;
    this.cancel(); // a new utterance replaces one that was never finished
    this.inUtterance = true;
    this.length = 0;
  }

  /** Audio outside an utterance (before start(), after finish() or close()) is dropped. */
  push(pcm: Int16Array): void {
    if (!this.inUtterance || pcm.length === 0) return;
    const room = MAX_UTTERANCE_SAMPLES - this.length;
    if (pcm.length > room) {
      this.droppedSamples += pcm.length;
      return;
    }
    if (this.length + pcm.length > this.buf.length) {
      const bigger = new Int16Array(Math.min(MAX_UTTERANCE_SAMPLES, Math.max(this.buf.length * 2, this.length + pcm.length)));
      bigger.set(this.buf.subarray(0, this.length));
      this.buf = bigger;
    }
    this.buf.set(pcm, this.length);
    this.length += pcm.length;
  }

  /**
   * The caller paused: decode what they said so far now, instead of after the rest of the silence window. The audio
   * after it is that silence, which adds nothing to the transcript.
   */
  pause(): void {
    if (!this.inUtterance || this.length === 0 || this.closed) return;
    this.dropEarly();
    const { id, result } = this.stt.decode(this.buf.slice(0, this.length));
    this.early = { id, result, length: this.length };
  }

  /** They went on talking: the early decode missed the rest. */
  resume(): void {
    this.dropEarly();
  }

  private dropEarly(): void {
    if (!this.early) return;
    this.stt.drop(this.early.id);
    this.early = undefined;
    this.earlyDecodes.dropped++;
    this.stt.work.earlyDropped++;
  }

  finish(): Promise<Transcript> {
    if (!this.inUtterance) return Promise.resolve({ text: "" });
    this.inUtterance = false;
    const early = this.early;
    this.early = undefined;
    if (early) {
      this.earlyDecodes.used++;
      this.stt.work.earlyUsed++;
      this.decoding = early.id;
      return early.result.finally(() => {
        if (this.decoding === early.id) this.decoding = undefined;
      });
    }
    if (this.length === 0) return Promise.resolve({ text: "" });
    // One copy per utterance, transferred to the worker; the session keeps its buffer for the next utterance.
    const { id, result } = this.stt.decode(this.buf.slice(0, this.length));
    this.decoding = id;
    return result.finally(() => {
      if (this.decoding === id) this.decoding = undefined;
    });
  }

  /** Drops the utterance being gathered; one already finished still delivers its transcript, as with SoundSwallower. */
  cancel(): void {
    this.dropEarly();
    this.inUtterance = false;
    this.length = 0;
  }

  /** The call is over: an utterance still queued at the worker is not decoded, and its finish() resolves to "". */
  close(): void {
    this.cancel();
    this.closed = true;
    if (this.decoding !== undefined) this.stt.drop(this.decoding);
    this.decoding = undefined;
  }
}
