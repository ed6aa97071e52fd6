import type { TtsChunk, TtsProvider, VoiceChoice } from "../providers/types.ts";

/**
 * Synthesized audio kept per text, so a phrase's first frame can leave as soon as it is needed.
 *
 * Two tiers. The fixed phrases (greeting, silence prompt, goodbyes, apology) are pinned: they never leave, because
 * the apology must play even while the TTS is down. Everything else (outbound messages, API `speak` texts) goes
 * through a bounded LRU of its own, so no amount of other texts can evict a pinned phrase. A failed synthesis is
 * never cached: the next use tries again.
 *
 * Entries are per voice: a call whose session picks another voice gets its phrases in that voice (keyed by voice and
 * language as well as text). The pinned phrases are made in the configured voice; if a call's own voice cannot make
 * one (its TTS is down), the pinned one plays instead, so the apology is never lost to a voice choice.
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

  get(text: string, voice?: VoiceChoice): Promise<TtsChunk[]> {
    const vk = voiceKey(voice);
    if (vk) {
      const own = this.recentGet(`${vk}\u0000${text}`, text, voice);
      if (!this.pinnedTexts.has(text)) return own;
      return own.catch((err: unknown) => this.get(text).catch(() => Promise.reject(err)));
    }
    const pinned = this.pinned.get(text);
    if (pinned) return pinned;
    if (this.pinnedTexts.has(text)) return this.load(this.pinned, text, text);
    return this.recentGet(text, text, undefined);
  }

  private recentGet(key: string, text: string, voice: VoiceChoice | undefined): Promise<TtsChunk[]> {
    const p = this.recent.get(key);
    if (p) {
      // Refresh recency (Map iteration order is insertion order).
      this.recent.delete(key);
      this.recent.set(key, p);
      return p;
    }
    const loaded = this.load(this.recent, key, text, voice);
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

  private load(tier: Map<string, Promise<TtsChunk[]>>, key: string, text: string, voice?: VoiceChoice): Promise<TtsChunk[]> {
    const p = this.synthesize(text, voice);
    tier.set(key, p);
    p.catch(() => {
      if (tier.get(key) === p) tier.delete(key);
    });
    return p;
  }

  private async synthesize(text: string, voice: VoiceChoice | undefined): Promise<TtsChunk[]> {
    const chunks: TtsChunk[] = [];
    for await (const c of this.tts.synthesize(text, new AbortController().signal, voice)) chunks.push(c);
    if (!chunks.some((c) => c.mulaw.length)) throw new Error(`synthesis of ${JSON.stringify(text)} produced no audio`);
    return chunks;
  }
}

/** "" for the configured voice; otherwise what tells this voice apart in the cache. */
function voiceKey(v: VoiceChoice | undefined): string {
  if (!v || (!v.voice && !v.language)) return "";
  return `${v.voice ?? ""}|${v.language ?? ""}`;
}
