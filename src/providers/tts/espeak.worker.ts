/**
 * eSpeak NG worker: synthesizes requests one at a time, in arrival order, and posts 8 kHz mu-law chunks as eSpeak
 * produces them. eSpeak's synth call is synchronous, so cancellation cannot arrive as a message: each request carries
 * a shared flag that the audio callback polls.
 */
import { parentPort, workerData } from "node:worker_threads";
import { encodeMulawFloat } from "../../audio/mulaw.ts";
import { StreamingResampler, type ResamplerQuality } from "../../audio/resampler.ts";
import type { WordTiming } from "../types.ts";
import { errorMessage } from "../../util/errors.ts";

export interface EspeakWorkerConfig {
  module: string;
  voice: string;
  rate: number;
  pitch: number;
  resamplerQuality: ResamplerQuality;
}

/** `cancel` holds one Int32: non-zero once the request is cancelled. `voice`: an eSpeak voice known to be installed. */
export type ToEspeakWorker = { type: "synth"; id: number; text: string; voice: string; cancel: SharedArrayBuffer };

export type FromEspeakWorker =
  /** `voices`: each name a session may use (a language like "en-gb", or a voice like "en-gb-x-rp", lower case) and the
   *  voice identifier `set_voice` takes for it (for names spoken by several voices, the voice eSpeak ranks first). */
  | { type: "ready"; voices: [string, string][] }
  | { type: "fatal"; message: string }
  | { type: "chunk"; id: number; mulaw: Uint8Array; words: WordTiming[] }
  | { type: "end"; id: number }
  | { type: "error"; id: number; message: string };

interface EspeakEvent {
  type: string;
  /** 1-based, in code points of the whole text. */
  text_position: number;
  word_length: number;
  /** Milliseconds from the start of the synthesis. */
  audio_position: number;
}

interface EspeakEngine {
  set_voice(name: string): number;
  list_voices(): { name: string; identifier: string; languages: { name: string; priority: number }[] }[];
  set_rate(wpm: number): void;
  set_pitch(pitch: number): void;
  get_samplerate(): number;
  /** The callback returning true aborts the synthesis. */
  synthesize(text: string, callback: (audio: Int16Array, events: EspeakEvent[]) => boolean): void;
}

const OUT_RATE = 8000;
const WARM_UP_TEXT = "Hello, this warms up the synthesizer.";

const port = parentPort!;
const config = workerData as EspeakWorkerConfig;

let engine: { espeak: EspeakEngine; resampler: StreamingResampler; voice: string } | undefined;
let floats = new Float32Array(4096);
let queue: Promise<void> = Promise.resolve();

function post(msg: FromEspeakWorker, transfer: ArrayBuffer[] = []): void {
  port.postMessage(msg, transfer);
}

async function loadEngine(): Promise<NonNullable<typeof engine>> {
  let mod: { default: () => Promise<{ eSpeakNGWorker: new () => EspeakEngine }> };
  try {
    mod = await import(config.module);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ERR_MODULE_NOT_FOUND" && String(err).includes(config.module)) {
      throw new Error(
        `The espeak TTS provider needs the optional package ${config.module} (GPL-3.0), which is not installed: ` +
          `run "npm install ${config.module}" or choose another TTS provider.`,
      );
    }
    throw err;
  }
  const espeak = new (await mod.default()).eSpeakNGWorker();
  if (espeak.set_voice(config.voice) !== 0) throw new Error(`eSpeak NG has no voice "${config.voice}"`);
  espeak.set_rate(config.rate);
  espeak.set_pitch(config.pitch);
  const resampler = await StreamingResampler.create(espeak.get_samplerate(), OUT_RATE, config.resamplerQuality);
  // The first few syntheses pay for JIT and dictionary loading (~50 ms to the first chunk instead of ~2 ms): pay it
  // here rather than on the first caller's reply.
  const warmUp = (audio: Int16Array): boolean => (resampler.process(toFloats(audio)), false);
  for (let i = 0; i < 3; i++) espeak.synthesize(WARM_UP_TEXT, warmUp);
  resampler.reset();
  return { espeak, resampler, voice: config.voice };
}

/** A call's voice, switched per request: one worker serves every call, each in its session's voice. */
function useVoice(e: NonNullable<typeof engine>, voice: string): void {
  if (e.voice === voice) return;
  if (e.espeak.set_voice(voice) !== 0) throw new Error(`eSpeak NG has no voice "${voice}"`);
  // Switching the voice resets the speaking parameters to the voice's own.
  e.espeak.set_rate(config.rate);
  e.espeak.set_pitch(config.pitch);
  e.voice = voice;
}

function voiceNames(espeak: EspeakEngine): [string, string][] {
  // Not every language name works with set_voice ("en-gb" does not, its voice's identifier "gmw/en" does): map each
  // name to an identifier, which always does. Lower priority numbers are eSpeak's better match for a language.
  const best = new Map<string, { id: string; priority: number }>();
  const offer = (name: string, id: string, priority: number) => {
    const key = name.toLowerCase();
    const had = best.get(key);
    if (!had || priority < had.priority) best.set(key, { id, priority });
  };
  for (const v of espeak.list_voices()) {
    offer(v.identifier.split("/").pop()!, v.identifier, -1);
    for (const l of v.languages) offer(l.name, v.identifier, l.priority);
  }
  return [...best].map(([name, { id }]) => [name, id]);
}

function toFloats(audio: Int16Array): Float32Array {
  if (floats.length < audio.length) floats = new Float32Array(audio.length * 2);
  for (let i = 0; i < audio.length; i++) floats[i] = audio[i]! / 32768;
  return floats.subarray(0, audio.length);
}

/** Whitespace-separated words of `text`, and for each code point (eSpeak's unit) the index of its word or -1. */
function splitWords(text: string): { words: string[]; wordAt: Int32Array } {
  const chars = Array.from(text);
  const wordAt = new Int32Array(chars.length).fill(-1);
  const words: string[] = [];
  let current = "";
  chars.forEach((ch, i) => {
    if (/\s/u.test(ch)) {
      if (current) words.push(current);
      current = "";
    } else {
      current += ch;
      wordAt[i] = words.length;
    }
  });
  if (current) words.push(current);
  return { words, wordAt };
}

function synthesize({ id, text, voice, cancel }: ToEspeakWorker, e: NonNullable<typeof engine>): void {
  const { espeak, resampler } = e;
  useVoice(e, voice);
  const cancelled = new Int32Array(cancel);
  // eSpeak reports a word more than once when it splits it (numbers, CJK): keep the first report of each source word.
  const { words, wordAt } = splitWords(text);
  let lastWord = -1;
  let pending: WordTiming[] = [];
  let samplesOut = 0;
  const msPerSample = 1000 / OUT_RATE;

  const emit = (pcm: Float32Array, final: boolean): void => {
    if (pcm.length === 0) return; // words wait for audio; any reported past the end of it were never heard
    samplesOut += pcm.length;
    const endMs = samplesOut * msPerSample;
    let n = 0;
    while (n < pending.length && (final || pending[n]!.startMs < endMs)) n++;
    const chunkWords = n === 0 ? [] : n === pending.length ? pending : pending.slice(0, n);
    pending = n === pending.length ? [] : pending.slice(n);
    const mulaw = encodeMulawFloat(pcm);
    post({ type: "chunk", id, mulaw, words: chunkWords }, [mulaw.buffer as ArrayBuffer]);
  };

  try {
    espeak.synthesize(text, (audio, events) => {
      if (Atomics.load(cancelled, 0) !== 0) return true;
      for (const ev of events) {
        if (ev.type !== "word") continue;
        const w = wordAt[ev.text_position - 1] ?? -1;
        if (w <= lastWord) continue;
        lastWord = w;
        pending.push({ text: words[w]!, startMs: ev.audio_position });
      }
      emit(resampler.process(toFloats(audio)), false);
      return false;
    });
    if (Atomics.load(cancelled, 0) === 0) emit(resampler.flush(), true);
    else resampler.reset();
  } catch (err) {
    // eSpeak may be left mid-sentence: rebuild it for the next request rather than trust its state.
    engine?.resampler.destroy();
    engine = undefined;
    throw err;
  }
}

async function handle(msg: ToEspeakWorker): Promise<void> {
  try {
    if (Atomics.load(new Int32Array(msg.cancel), 0) === 0) synthesize(msg, (engine ??= await loadEngine()));
    post({ type: "end", id: msg.id });
  } catch (err) {
    post({ type: "error", id: msg.id, message: errorMessage(err) });
  }
}

try {
  engine = await loadEngine();
  post({ type: "ready", voices: voiceNames(engine.espeak) });
  port.on("message", (msg: ToEspeakWorker) => {
    queue = queue.then(() => handle(msg));
  });
} catch (err) {
  post({ type: "fatal", message: errorMessage(err) });
}
