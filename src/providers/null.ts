import { MULAW_SILENCE } from "../audio/mulaw.ts";
import type { SttProvider, SttSession, Transcript, TtsChunk, TtsProvider } from "./types.ts";

/**
 * Instant providers, for benchmarks that measure the pipeline's own cost: recognition answers "hello" the moment an
 * utterance ends, synthesis returns 400 ms of audio per word at once. Never for real calls.
 */
export class NullStt implements SttProvider {
  readonly name = "null";
  async ready(): Promise<void> {}
  openSession(): SttSession {
    let samples = 0;
    return {
      start: () => void (samples = 0),
      push: (pcm) => void (samples += pcm.length),
      finish: async (): Promise<Transcript> => ({ text: samples > 0 ? "hello" : "", confidence: 1 }),
      cancel: () => void (samples = 0),
      close: () => {},
    };
  }
  async close(): Promise<void> {}
}

// Long enough that a reply can be talked over, as in real calls.
const MS_PER_WORD = 400;
/** A quiet 400 Hz tone rather than digital silence, so a listener can tell audio from a gap. */
const TONE = (() => {
  const out = new Uint8Array(8 * MS_PER_WORD);
  for (let i = 0; i < out.length; i++) out[i] = i % 20 < 10 ? 0xf0 : 0x70;
  return out;
})();

export class NullTts implements TtsProvider {
  readonly name = "null";
  async ready(): Promise<void> {}
  async *synthesize(text: string, signal: AbortSignal): AsyncIterable<TtsChunk> {
    const words = text.split(/\s+/).filter(Boolean);
    if (signal.aborted) return;
    const mulaw = new Uint8Array(Math.max(1, words.length) * TONE.length).fill(MULAW_SILENCE);
    for (let w = 0; w < words.length; w++) mulaw.set(TONE, w * TONE.length);
    yield { mulaw, words: words.map((text, i) => ({ text, startMs: i * MS_PER_WORD })) };
  }
  async close(): Promise<void> {}
}
