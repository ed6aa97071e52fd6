/**
 * SoundSwallower decoders, off the main thread. One WASM module holds a bounded pool of decoders; each active
 * utterance borrows one from `start` to `finish`/`cancel`. Messages for one utterance run strictly in order on that
 * utterance's own promise chain, so a decoder being created for one caller never holds up another caller's audio.
 */
import { parentPort, workerData } from "node:worker_threads";
import { createRequire } from "node:module";
import path from "node:path";
import createModule, { type Decoder, type SoundSwallowerModule } from "soundswallower";
import { grammarWords, openVocabulary, phraseGrammar, unknownWords, wordLoopGrammar } from "./vocabulary.ts";
import { errorMessage } from "../../util/errors.ts";

export interface SphinxWorkerConfig {
  mode: "open" | "phrases" | "grammar";
  phrases?: string[];
  grammar?: string;
  vocabularySize: number;
  words: Array<[string, string]>;
  decoder: { beam: number; wbeam: number; pbeam: number; wip: number };
  maxDecoders: number;
  /** Audio between partial hypotheses, in ms of speech; 0 disables them. */
  partialEveryMs: number;
}

export type ToWorker =
  | { type: "start"; id: number; partials: boolean }
  | { type: "audio"; id: number; pcm: Int16Array }
  | { type: "finish"; id: number }
  | { type: "cancel"; id: number };

export type FromWorker =
  | { type: "ready"; vocabularySize: number }
  | { type: "init-error"; message: string }
  | { type: "partial"; id: number; text: string }
  | { type: "result"; id: number; text: string; confidence?: number }
  | { type: "error"; id: number; message: string }
  | { type: "fatal"; message: string };

interface Utterance {
  id: number;
  chain: Promise<void>;
  decoder?: Decoder;
  started: boolean;
  dead: boolean;
  sincePartial: number;
  partial: string;
  partials: boolean;
}

const SAMPLE_RATE = 8000;
const config = workerData as SphinxWorkerConfig;
const port = parentPort!;

// The C library reports the useful detail ("The word 'x' is missing...") only on its log: keep the recent lines.
const recentErrors: string[] = [];
let ss: SoundSwallowerModule;
let grammar = "";
const free: Decoder[] = [];
let decoderCount = 0;
const waiting: Array<{ u: Utterance; give: (d: Decoder | undefined) => void }> = [];
const utterances = new Map<number, Utterance>();

const ready = init();
ready.then(
  (msg) => port.postMessage(msg),
  (err: unknown) => port.postMessage({ type: "init-error", message: errorMessage(err) } satisfies FromWorker),
);

async function init(): Promise<FromWorker> {
  const modelBase = path.join(path.dirname(createRequire(import.meta.url).resolve("soundswallower")), "model") + path.sep;
  ss = await createModule({ modelBase, print: () => {}, printErr: (line: string) => logError(line) } as Partial<SoundSwallowerModule>);
  const first = await newDecoder(false);
  const inDictionary = (w: string) => first.lookup_word(w) != null;
  let vocabularySize = 0;
  if (config.mode === "open") {
    const words = openVocabulary(config.vocabularySize, inDictionary);
    vocabularySize = words.length;
    grammar = wordLoopGrammar(words);
  } else {
    grammar = config.mode === "phrases" ? phraseGrammar(config.phrases ?? []) : (config.grammar ?? "");
    const words = grammarWords(grammar);
    const unknown = unknownWords(words, inDictionary);
    if (unknown.length > 0) {
      throw new Error(`sphinx: ${unknown.length} word(s) of the ${config.mode === "phrases" ? "phrase list" : "grammar"} are not in the dictionary: ${unknown.join(", ")} (add them with the \`words\` option)`);
    }
    vocabularySize = words.length;
  }
  setGrammar(first);
  free.push(first);
  return { type: "ready", vocabularySize };
}

async function newDecoder(withGrammar = true): Promise<Decoder> {
  const d = new ss.Decoder({ samprate: SAMPLE_RATE, loglevel: "ERROR", ...config.decoder });
  decoderCount++;
  try {
    await d.initialize();
    if (config.words.length > 0) d.add_words(...config.words);
    if (withGrammar) setGrammar(d);
    return d;
  } catch (err) {
    discard(d);
    throw err;
  }
}

function setGrammar(d: Decoder): void {
  recentErrors.length = 0;
  try {
    d.set_grammar(grammar);
  } catch (err) {
    throw new Error(`sphinx: invalid grammar: ${recentErrors.join("; ") || errorMessage(err)}`);
  }
  // An undefined rule reference is only logged, and the grammar silently loses that branch.
  if (recentErrors.length > 0) throw new Error(`sphinx: invalid grammar: ${recentErrors.join("; ")}`);
}

function discard(d: Decoder): void {
  decoderCount--;
  try {
    d.delete();
  } catch {
    // Already unusable: nothing more to free.
  }
}

function acquire(u: Utterance): Promise<Decoder | undefined> {
  const d = free.pop();
  if (d) return Promise.resolve(d);
  if (decoderCount < config.maxDecoders) return newDecoder();
  // Every decoder is busy: wait for one rather than fail the caller; the backlog is decoded faster than real time.
  return new Promise((give) => waiting.push({ u, give }));
}

function release(d: Decoder): void {
  const next = waiting.shift();
  if (next) next.give(d);
  else free.push(d);
}

/** Run `step` after the utterance's earlier messages; a failure ends that utterance only. */
function enqueue(u: Utterance, step: () => void | Promise<void>): void {
  u.chain = u.chain.then(() => (u.dead ? undefined : step())).catch((err: unknown) => fail(u, err));
}

function fail(u: Utterance, err: unknown): void {
  if (isWasmTrap(err)) {
    // The WASM module aborted: every decoder in it is gone. Dying lets the provider reject everything and restart us.
    port.postMessage({ type: "fatal", message: errorMessage(err) } satisfies FromWorker);
    process.exit(1);
  }
  const wasLive = !u.dead;
  end(u, false);
  if (wasLive) port.postMessage({ type: "error", id: u.id, message: errorMessage(err) } satisfies FromWorker);
}

/** Stop tracking the utterance and hand its decoder on; a decoder that failed mid-utterance is not trusted again. */
function end(u: Utterance, reusable: boolean): void {
  leave(u);
  const d = u.decoder;
  u.decoder = undefined;
  if (!d) return;
  if (reusable && stopped(u, d)) {
    release(d);
  } else {
    discard(d);
    // Keep the pool able to serve a waiting utterance after losing a decoder.
    const next = waiting.shift();
    if (next) {
      newDecoder().then(next.give, (err: unknown) => {
        next.give(undefined);
        fail(next.u, err);
      });
    }
  }
}

/** Forget the utterance; if it is still queued for a decoder, give up its place. */
function leave(u: Utterance): void {
  u.dead = true;
  utterances.delete(u.id);
  const w = waiting.findIndex((x) => x.u === u);
  if (w >= 0) waiting.splice(w, 1)[0]!.give(undefined);
}

function stopped(u: Utterance, d: Decoder): boolean {
  if (!u.started) return true;
  u.started = false;
  try {
    d.stop();
    return true;
  } catch (err) {
    if (isWasmTrap(err)) throw err;
    return false;
  }
}

async function begin(u: Utterance): Promise<void> {
  await ready;
  const d = await acquire(u);
  if (!d) return;
  if (u.dead) return release(d);
  u.decoder = d;
  // Fresh cepstral-mean estimate per utterance: otherwise the result would depend on which caller used the decoder last.
  await d.reinitialize_audio();
  d.start();
  u.started = true;
}

function decode(u: Utterance, pcm: Int16Array): void {
  const d = u.decoder;
  if (!d) return;
  const f = new Float32Array(pcm.length);
  for (let i = 0; i < pcm.length; i++) f[i] = pcm[i]! / 32768;
  d.process_audio(f, false, false);
  if (!u.partials || config.partialEveryMs <= 0) return;
  u.sincePartial += pcm.length;
  if (u.sincePartial < (config.partialEveryMs * SAMPLE_RATE) / 1000) return;
  u.sincePartial = 0;
  const text = d.get_text();
  if (text !== u.partial) {
    u.partial = text;
    port.postMessage({ type: "partial", id: u.id, text } satisfies FromWorker);
  }
}

function complete(u: Utterance): void {
  const d = u.decoder;
  let text = "";
  let confidence: number | undefined;
  if (d) {
    d.stop();
    u.started = false;
    text = d.get_text().trim();
    confidence = wordConfidence(d);
  }
  end(u, true);
  port.postMessage({ type: "result", id: u.id, text, confidence } satisfies FromWorker);
}

/**
 * Mean posterior probability of the recognised words (fillers and silences excluded). Weak evidence: speech outside a
 * phrase list, forced onto the nearest phrase, still scores about 0.8-0.9.
 */
function wordConfidence(d: Decoder): number | undefined {
  const words = (d.get_alignment().w ?? []).filter((w) => !/^(<.*>|\[.*\]|\(NULL\))$/.test(w.t));
  if (words.length === 0) return undefined;
  return words.reduce((s, w) => s + w.p, 0) / words.length;
}

port.on("message", (m: ToWorker) => {
  if (m.type === "start") {
    const u: Utterance = { id: m.id, chain: Promise.resolve(), started: false, dead: false, sincePartial: 0, partial: "", partials: m.partials };
    utterances.set(m.id, u);
    enqueue(u, () => begin(u));
    return;
  }
  const u = utterances.get(m.id);
  if (!u) return; // cancelled or failed already
  if (m.type === "audio") enqueue(u, () => decode(u, m.pcm));
  else if (m.type === "finish") enqueue(u, () => complete(u));
  else {
    // Dead now, so its queued audio is skipped; its decoder is freed once any step in progress has finished.
    leave(u);
    u.chain = u.chain.then(() => end(u, true)).catch((err: unknown) => fail(u, err));
  }
});

function logError(line: string): void {
  recentErrors.push(line.replace(/^ERROR: "[^"]*", line \d+: /, "").trim());
  if (recentErrors.length > 5) recentErrors.shift();
}

/** A trap or abort inside WASM (WebAssembly.RuntimeError): the module's memory can no longer be trusted. */
function isWasmTrap(err: unknown): boolean {
  return err instanceof Error && err.name === "RuntimeError";
}

