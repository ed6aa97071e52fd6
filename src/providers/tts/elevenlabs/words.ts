import type { WordTiming } from "../../types.ts";

/** Character timings of one audio chunk, in milliseconds from the start of that chunk (or of whatever `offsetMs` says). */
export interface CharAlignment {
  chars: string[];
  startMs: number[];
  durMs: number[];
}

const SPACE = /^\s+$/;

/**
 * Turns ElevenLabs' per-character alignment into word timings for one utterance.
 *
 * The words are the whitespace-separated words of the text as written (punctuation included), each reported once, in
 * order, so the words heard so far join back into the text that was heard. Their times come from the alignment: a
 * word starts where its first non-space character starts, and alignment times are relative to their chunk, so the
 * caller passes each chunk's position in the utterance (`offsetMs`, audio bytes so far / 8).
 *
 * The alignment's characters are matched to the written words by walking both: whitespace ends a word, and so does
 * reaching a written word's length when the next character begins the next written word (in case the server leaves
 * out the space between two flushes). Words the alignment never covers (missing alignment, an HTTP response without
 * timestamps) get times estimated in proportion to their length over the audio they were spoken in (`estimate`).
 */
export class WordTracker {
  private readonly words: string[] = [];
  /** Index of the written word the character stream is in (or will start next). */
  private cursor = 0;
  private inWord = false;
  private seenInWord = 0;
  /** Words reported so far (a prefix of `words`). */
  private emitted = 0;
  /** Words whose characters have all been aligned (a prefix of `words`), and where each one's audio ends. */
  private completed = 0;
  private readonly endMs: number[] = [];
  private lastStartMs = 0;
  /** End of the last aligned character, in utterance time. */
  private lastEndMs = 0;

  /** Append the words of newly written text. */
  add(text: string): void {
    for (const w of text.split(/\s+/)) if (w) this.words.push(w);
  }

  get count(): number {
    return this.words.length;
  }

  /**
   * How many words (from the first) had their audio received completely, given `receivedMs` of audio: all their
   * characters aligned, and the last one's audio ended by then. The rest would have to be spoken again.
   */
  completeBefore(receivedMs: number): number {
    let n = 0;
    while (n < this.completed && (this.endMs[n] ?? 0) <= receivedMs + 0.5) n++;
    return n;
  }

  get emittedCount(): number {
    return this.emitted;
  }

  /** The written words from `index` on, joined by single spaces. */
  textFrom(index: number, to = this.words.length): string {
    return this.words.slice(index, to).join(" ");
  }

  /** The character stream restarts at written word `index` (a new request for the text from there). */
  rewind(index: number): void {
    this.cursor = index;
    this.inWord = false;
    this.seenInWord = 0;
  }

  /**
   * One chunk's alignment. `offsetMs` is added to its times; `byLength` allows a written word to end when its length
   * is reached (only for alignment of the text as written, not the normalized text).
   */
  align(a: CharAlignment, offsetMs: number, byLength = true): WordTiming[] {
    const out: WordTiming[] = [];
    const n = Math.min(a.chars.length, a.startMs.length);
    for (let i = 0; i < n; i++) {
      const c = a.chars[i]!;
      const start = offsetMs + a.startMs[i]!;
      const dur = a.durMs[i];
      if (typeof dur === "number" && Number.isFinite(dur)) this.lastEndMs = Math.max(this.lastEndMs, start + Math.max(0, dur));
      else this.lastEndMs = Math.max(this.lastEndMs, start);
      if (c === "" || SPACE.test(c)) {
        this.finishWord();
        continue;
      }
      if (this.inWord && byLength && this.cursor < this.words.length) {
        const word = this.words[this.cursor]!;
        const next = this.words[this.cursor + 1];
        // The written word is complete and this character starts the next one: the space between them was left out.
        if (this.seenInWord >= word.length && next !== undefined && next.startsWith(c)) this.finishWord();
      }
      if (!this.inWord) {
        this.inWord = true;
        this.seenInWord = 0;
        if (this.cursor < this.words.length && this.cursor >= this.emitted) {
          const startMs = Math.max(this.lastStartMs, Math.round(start));
          this.lastStartMs = startMs;
          out.push({ text: this.words[this.cursor]!, startMs });
          this.emitted = this.cursor + 1;
        }
      }
      this.seenInWord += c.length;
      if (this.cursor < this.words.length) {
        const end = typeof dur === "number" && Number.isFinite(dur) ? start + Math.max(0, dur) : start;
        this.endMs[this.cursor] = Math.max(this.endMs[this.cursor] ?? 0, end);
        if (byLength && this.seenInWord >= this.words[this.cursor]!.length) this.completed = Math.max(this.completed, this.cursor + 1);
      }
    }
    return out;
  }

  /**
   * Report the words before `end` that the alignment never reached, spread over [fromMs, toMs] in proportion to
   * their length (starting after the last aligned audio). Afterwards they count as spoken.
   */
  estimate(end: number, fromMs: number, toMs: number): WordTiming[] {
    this.finishWord();
    end = Math.min(end, this.words.length);
    const first = this.emitted;
    for (let i = this.completed; i < end; i++) this.endMs[i] = Math.max(this.endMs[i] ?? 0, toMs);
    this.completed = Math.max(this.completed, end);
    this.cursor = Math.max(this.cursor, end);
    if (first >= end) return [];
    const from = Math.max(fromMs, this.lastEndMs, this.lastStartMs);
    const to = Math.max(from, toMs);
    const weights = this.words.slice(first, end).map((w) => w.length + 1);
    const total = weights.reduce((a, b) => a + b, 0);
    const out: WordTiming[] = [];
    let acc = 0;
    for (let i = first; i < end; i++) {
      const startMs = Math.max(this.lastStartMs, Math.round(from + ((to - from) * acc) / total));
      out.push({ text: this.words[i]!, startMs });
      this.lastStartMs = startMs;
      acc += weights[i - first]!;
    }
    this.emitted = end;
    return out;
  }

  private finishWord(): void {
    if (!this.inWord) return;
    this.inWord = false;
    this.seenInWord = 0;
    if (this.cursor < this.words.length) {
      this.cursor++;
      this.completed = Math.max(this.completed, this.cursor);
    }
  }
}

/**
 * ElevenLabs alignment as it arrives: WebSocket `{chars, charStartTimesMs, charDurationsMs}` (older docs:
 * `charsDurationsMs`) or REST with-timestamps `{characters, characterStartTimesSeconds, characterEndTimesSeconds}`
 * (the SDK's camelCase mapping of `character_start_times_seconds`...). Anything malformed gives null.
 */
export function readAlignment(raw: unknown): CharAlignment | null {
  if (!raw || typeof raw !== "object") return null;
  const r = raw as Record<string, unknown>;
  if (Array.isArray(r.chars) && Array.isArray(r.charStartTimesMs)) {
    const durs = (Array.isArray(r.charDurationsMs) ? r.charDurationsMs : Array.isArray(r.charsDurationsMs) ? r.charsDurationsMs : []) as unknown[];
    return checked(r.chars, r.charStartTimesMs, durs);
  }
  const chars = r.characters;
  const starts = r.characterStartTimesSeconds ?? r.character_start_times_seconds;
  const ends = r.characterEndTimesSeconds ?? r.character_end_times_seconds;
  if (Array.isArray(chars) && Array.isArray(starts)) {
    const s = starts.map((x) => (typeof x === "number" ? x * 1000 : x));
    const d = Array.isArray(ends) ? ends.map((e, i) => (typeof e === "number" && typeof starts[i] === "number" ? (e - starts[i]) * 1000 : e)) : [];
    return checked(chars, s, d);
  }
  return null;
}

function checked(chars: unknown[], starts: unknown[], durs: unknown[]): CharAlignment | null {
  if (chars.length !== starts.length) return null;
  if (!chars.every((c) => typeof c === "string")) return null;
  if (!starts.every((t) => typeof t === "number" && Number.isFinite(t) && t >= 0)) return null;
  const durMs = durs.length === chars.length && durs.every((t) => typeof t === "number" && Number.isFinite(t)) ? (durs as number[]) : [];
  return { chars: chars as string[], startMs: starts as number[], durMs };
}
