/**
 * Embedded speech recognition: SoundSwallower (PocketSphinx compiled to WASM) in a worker thread.
 *
 * SoundSwallower has no n-gram language model. "open" mode approximates dictation with a frequency-weighted loop over
 * the most common spoken-English words, and is inaccurate (see bench/stt-accuracy.ts). "phrases" and "grammar" modes
 * constrain the decoder to what a dialog expects, and are accurate for that.
 */
import type { Worker } from "node:worker_threads";
import { startWorker } from "../../util/worker.ts";
import type { SttProvider, SttSession, Transcript } from "../types.ts";
import type { FromWorker, SphinxWorkerConfig, ToWorker } from "./sphinx.worker.ts";
import { englishOnly } from "./language.ts";

export type SphinxMode = "open" | "phrases" | "grammar";

export interface SphinxOptions {
  mode?: SphinxMode;
  /**
   * "phrases" mode: the caller says exactly one of these (case and punctuation are ignored). The whole utterance must
   * fit a phrase: other speech comes back as the nearest phrase or as "" (use a grammar for optional words).
   */
  phrases?: string[];
  /** "grammar" mode: a JSGF grammar; its first public rule is used. */
  grammar?: string;
  /** "open" mode: how many frequent words the word loop holds. */
  vocabularySize?: number;
  /** Extra dictionary entries, [word, ARPAbet pronunciation], e.g. ["parley", "P AA R L IY"]. */
  words?: Array<[string, string]>;
  /** Pruning beams (smaller = wider = slower). Default per mode, see SPHINX_BEAMS. */
  beam?: number;
  wbeam?: number;
  pbeam?: number;
  /** Word insertion penalty (smaller = fewer words). Default per mode, see SPHINX_BEAMS. */
  wordInsertionPenalty?: number;
  /** Decoders kept in the worker, one per utterance in progress; further utterances wait for a free one. */
  maxDecoders?: number;
  /** How often sessions that asked for partial hypotheses get one, in ms of audio. */
  partialEveryMs?: number;
}

export const SPHINX_DEFAULTS = {
  mode: "open" as SphinxMode,
  vocabularySize: 2000,
  // One worker thread decodes the open loop at ~0.2-0.3x real time, so 4 simultaneous utterances keep up on one core.
  maxDecoders: 4,
  partialEveryMs: 300,
};

export const SPHINX_BEAMS = {
  // A 2000-word loop is slow with PocketSphinx's default beams (~0.7x real time) and no more accurate; the default
  // insertion penalty, meant for small grammars, lets the loop fill silence and noise with short words.
  open: { beam: 1e-30, wbeam: 1e-20, pbeam: 1e-30, wip: 0.1 },
  // Small grammars are cheap: keep PocketSphinx's defaults.
  constrained: { beam: 1e-48, wbeam: 7e-29, pbeam: 1e-48, wip: 0.65 },
};

export interface SphinxSessionOptions {
  callId: string;
  /** Hypothesis so far, while the caller is still speaking. */
  onPartial?: (text: string) => void;
}

interface Pending {
  resolve: (t: Transcript) => void;
  reject: (err: Error) => void;
  onPartial?: (text: string) => void;
}

export class SphinxStt implements SttProvider {
  readonly name = "sphinx";
  /** Words the decoder can recognise, known once ready() resolved. */
  vocabularySize = 0;

  private readonly config: SphinxWorkerConfig;
  private worker: Worker | undefined;
  private booting: Promise<void> | undefined;
  private booted = false;
  private fatal = "";
  private initError: Error | undefined;
  private closed = false;
  private seq = 0;
  private readonly pending = new Map<number, Pending>();

  constructor(options: SphinxOptions = {}) {
    const mode = options.mode ?? SPHINX_DEFAULTS.mode;
    if (mode === "phrases" && !options.phrases?.length) throw new Error('sphinx: mode "phrases" needs a non-empty `phrases` list');
    if (mode === "grammar" && !options.grammar?.trim()) throw new Error('sphinx: mode "grammar" needs a JSGF `grammar`');
    const beams = mode === "open" ? SPHINX_BEAMS.open : SPHINX_BEAMS.constrained;
    this.config = {
      mode,
      phrases: options.phrases,
      grammar: options.grammar,
      vocabularySize: options.vocabularySize ?? SPHINX_DEFAULTS.vocabularySize,
      words: options.words ?? [],
      decoder: {
        beam: options.beam ?? beams.beam,
        wbeam: options.wbeam ?? beams.wbeam,
        pbeam: options.pbeam ?? beams.pbeam,
        wip: options.wordInsertionPenalty ?? beams.wip,
      },
      maxDecoders: Math.max(1, options.maxDecoders ?? SPHINX_DEFAULTS.maxDecoders),
      partialEveryMs: options.partialEveryMs ?? SPHINX_DEFAULTS.partialEveryMs,
    };
  }

  ready(): Promise<void> {
    const w = this.spawn();
    return w instanceof Error ? Promise.reject(w) : this.booting!;
  }

  languageProblem(language: string): string | undefined {
    return englishOnly("SoundSwallower", language);
  }

  openSession(opts: SphinxSessionOptions): SttSession {
    return new SphinxSession(this, opts.onPartial);
  }

  async close(): Promise<void> {
    this.closed = true;
    const w = this.worker;
    this.worker = undefined; // so its exit is not taken for a crash
    this.failAll(new Error("sphinx: provider closed"));
    if (w) await w.terminate();
  }

  /** @internal Begin an utterance; its transcript promise settles when the worker answers. */
  begin(onPartial?: (text: string) => void): { id: number; result: Promise<Transcript> } {
    const id = ++this.seq;
    const result = new Promise<Transcript>((resolve, reject) => this.pending.set(id, { resolve, reject, onPartial }));
    result.catch(() => {}); // the session may never call finish(); its rejection must not go unhandled
    const w = this.spawn();
    if (w instanceof Error) this.settle(id, w);
    else this.send({ type: "start", id, partials: onPartial !== undefined });
    this.updateRef();
    return { id, result };
  }

  /** @internal */
  push(id: number, pcm: Int16Array): void {
    if (!this.pending.has(id)) return;
    const copy = pcm.slice(); // the caller may reuse its array; the copy is transferred, not cloned again
    this.send({ type: "audio", id, pcm: copy }, [copy.buffer]);
  }

  /** @internal */
  finish(id: number): void {
    if (this.pending.has(id)) this.send({ type: "finish", id });
  }

  /** @internal */
  cancel(id: number): void {
    if (!this.pending.delete(id)) return;
    this.send({ type: "cancel", id });
    this.updateRef();
  }

  private send(msg: ToWorker, transfer?: ArrayBuffer[]): void {
    this.worker?.postMessage(msg, transfer);
  }

  /** Start the worker if none is running; an Error when the provider cannot run at all. */
  private spawn(): Worker | Error {
    if (this.closed) return new Error("sphinx: provider closed");
    if (this.initError) return this.initError;
    if (this.worker) return this.worker;
    const w = startWorker(new URL("./sphinx.worker.ts", import.meta.url), { workerData: this.config });
    this.worker = w;
    this.booted = false;
    this.fatal = "";
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
    switch (m.type) {
      case "ready":
        this.booted = true;
        this.vocabularySize = m.vocabularySize;
        resolve();
        break;
      case "init-error": {
        // Grammar and dictionary problems do not go away on retry: fail fast from now on.
        this.initError = new Error(m.message);
        this.worker = undefined;
        void w.terminate();
        reject(this.initError);
        this.failAll(this.initError);
        break;
      }
      case "partial":
        try {
          this.pending.get(m.id)?.onPartial?.(m.text);
        } catch {
          // A throwing listener must not take the provider down.
        }
        break;
      case "result":
        this.settle(m.id, { text: m.text, ...(m.confidence !== undefined && { confidence: m.confidence }) });
        break;
      case "error":
        this.settle(m.id, new Error(m.message));
        break;
      case "fatal":
        this.fatal = m.message;
        break;
    }
    this.updateRef();
  }

  private onDeath(w: Worker, how: string, reject: (e: Error) => void): void {
    if (w !== this.worker) return; // closed, replaced, or already handled ('error' is followed by 'exit')
    this.worker = undefined;
    this.booting = undefined;
    const err = new Error(`sphinx: recognition worker ${how}${this.fatal ? `: ${this.fatal}` : ""}; utterances in progress were lost, the next one starts a new worker`);
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

  /** An idle worker must not keep the process alive; one with work in flight must. */
  private updateRef(): void {
    if (!this.worker) return;
    if (this.pending.size > 0 || !this.booted) this.worker.ref();
    else this.worker.unref();
  }
}

/** Audio kept per utterance at most (8 kHz samples): bounds what one caller can queue at the recogniser. */
const MAX_UTTERANCE_SAMPLES = 60 * 8000;

class SphinxSession implements SttSession {
  private current: { id: number; result: Promise<Transcript>; samples: number } | undefined;
  private closed = false;
  /** Samples dropped because an utterance ran past MAX_UTTERANCE_SAMPLES. */
  droppedSamples = 0;

  constructor(
    private readonly stt: SphinxStt,
    private readonly onPartial?: (text: string) => void,
  ) {}

  start(): void {
    if (this.closed) return;
    this.cancel(); // a new utterance replaces one that was never finished
    this.current = { ...this.stt.begin(this.onPartial), samples: 0 };
  }

  /** Audio outside an utterance (before start(), after finish() or close()) is dropped. */
  push(pcm: Int16Array): void {
    const u = this.current;
    if (!u || pcm.length === 0) return;
    if (u.samples + pcm.length > MAX_UTTERANCE_SAMPLES) {
      this.droppedSamples += pcm.length;
      return;
    }
    u.samples += pcm.length;
    this.stt.push(u.id, pcm);
  }

  finish(): Promise<Transcript> {
    const u = this.current;
    this.current = undefined;
    if (!u) return Promise.resolve({ text: "" });
    this.stt.finish(u.id);
    return u.result;
  }

  cancel(): void {
    const u = this.current;
    this.current = undefined;
    if (u) this.stt.cancel(u.id);
  }

  close(): void {
    this.cancel();
    this.closed = true;
  }
}
