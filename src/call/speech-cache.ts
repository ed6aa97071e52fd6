import type { TtsChunk, TtsProvider } from "../providers/types.ts";

/**
 * Synthesized audio of fixed phrases (greeting, prompts, goodbyes), kept per text so the first frame of a greeting
 * can leave as soon as the stream starts. A failed synthesis is not cached: the next use tries again.
 */
export class SpeechCache {
  private readonly entries = new Map<string, Promise<TtsChunk[]>>();

  constructor(
    private readonly tts: TtsProvider,
    private readonly maxEntries = 64,
  ) {}

  get(text: string): Promise<TtsChunk[]> {
    let p = this.entries.get(text);
    if (p) {
      // Refresh recency (Map iteration order is insertion order).
      this.entries.delete(text);
      this.entries.set(text, p);
      return p;
    }
    p = this.synthesize(text);
    this.entries.set(text, p);
    p.catch(() => this.entries.delete(text));
    while (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    return p;
  }

  /** Synthesize ahead of need; failures are reported, not thrown. */
  async warm(texts: string[]): Promise<{ text: string; error?: string }[]> {
    return Promise.all(
      texts.filter((t) => t.trim()).map((text) => this.get(text).then(() => ({ text }), (err: Error) => ({ text, error: err.message }))),
    );
  }

  private async synthesize(text: string): Promise<TtsChunk[]> {
    const chunks: TtsChunk[] = [];
    for await (const c of this.tts.synthesize(text, new AbortController().signal)) chunks.push(c);
    if (!chunks.some((c) => c.mulaw.length)) throw new Error(`synthesis of ${JSON.stringify(text)} produced no audio`);
    return chunks;
  }
}
