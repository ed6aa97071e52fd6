import type { TtsChunk, TtsProvider } from "../providers/types.ts";

/**
 * Synthesized audio kept per text, so a phrase's first frame can leave as soon as it is needed.
 *
 * Two tiers. The fixed phrases (greeting, silence prompt, goodbyes, apology) are pinned: they never leave, because
 * the apology must play even while the TTS is down. Everything else (outbound messages, API `speak` texts) goes
 * through a bounded LRU of its own, so no amount of other texts can evict a pinned phrase. A failed synthesis is
 * never cached: the next use tries again.
 */
export class SpeechCache {
  private readonly pinnedTexts = new Set<string>();
  private readonly pinned = new Map<string, Promise<TtsChunk[]>>();
  private readonly recent = new Map<string, Promise<TtsChunk[]>>();

  constructor(
    private readonly tts: TtsProvider,
    private readonly maxRecent = 64,
  ) {}

  /** How many texts each tier holds. */
  get size(): { pinned: number; recent: number } {
    return { pinned: this.pinned.size, recent: this.recent.size };
  }

  get(text: string): Promise<TtsChunk[]> {
    const pinned = this.pinned.get(text);
    if (pinned) return pinned;
    if (this.pinnedTexts.has(text)) return this.load(this.pinned, text);
    const p = this.recent.get(text);
    if (p) {
      // Refresh recency (Map iteration order is insertion order).
      this.recent.delete(text);
      this.recent.set(text, p);
      return p;
    }
    const loaded = this.load(this.recent, text);
    while (this.recent.size > this.maxRecent) this.recent.delete(this.recent.keys().next().value!);
    return loaded;
  }

  /** Pin fixed phrases and synthesize them ahead of need; failures are reported, not thrown (first use retries). */
  async warm(texts: string[], opts: { pin?: boolean } = { pin: true }): Promise<{ text: string; error?: string }[]> {
    const wanted = texts.filter((t) => t.trim());
    if (opts.pin)
      for (const t of wanted) {
        this.pinnedTexts.add(t);
        const p = this.recent.get(t);
        this.recent.delete(t);
        if (p) this.pinned.set(t, p);
      }
    return Promise.all(wanted.map((text) => this.get(text).then(() => ({ text }), (err: Error) => ({ text, error: err.message }))));
  }

  private load(tier: Map<string, Promise<TtsChunk[]>>, text: string): Promise<TtsChunk[]> {
    const p = this.synthesize(text);
    tier.set(text, p);
    p.catch(() => {
      if (tier.get(text) === p) tier.delete(text);
    });
    return p;
  }

  private async synthesize(text: string): Promise<TtsChunk[]> {
    const chunks: TtsChunk[] = [];
    for await (const c of this.tts.synthesize(text, new AbortController().signal)) chunks.push(c);
    if (!chunks.some((c) => c.mulaw.length)) throw new Error(`synthesis of ${JSON.stringify(text)} produced no audio`);
    return chunks;
  }
}
