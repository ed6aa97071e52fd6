import { VAD_SAMPLE_RATE, VAD_WINDOW_SAMPLES } from "./model.ts";

export interface SpeechDetectorOptions {
  /** A window at or above this probability is speech. */
  threshold?: number;
  /** Below this a window is silence; between the two it continues whatever is going on (hysteresis band). */
  negThreshold?: number;
  /** Speech must last this long, with no window below negThreshold, before speech-start is confirmed. */
  minSpeechMs?: number;
  /** Silence must last this long, with no window at or above threshold, before speech-end is confirmed. */
  minSilenceMs?: number;
  sampleRate?: number;
  /** Samples per probability, used when push() is not given positions. */
  windowSamples?: number;
}

export const SPEECH_DETECTOR_DEFAULTS = {
  threshold: 0.5,
  /** negThreshold defaults to threshold minus this (never below 0.01). */
  negThresholdGap: 0.15,
  minSpeechMs: 150,
  minSilenceMs: 550,
  sampleRate: VAD_SAMPLE_RATE,
  windowSamples: VAD_WINDOW_SAMPLES,
} as const;

/** Positions are sample counts on the stream's timeline (a window ending at sample n covers [n - windowSamples, n)). */
export type SpeechEvent =
  | { type: "speech-start"; startSample: number; confirmedSample: number }
  | { type: "speech-end"; startSample: number; endSample: number; confirmedSample: number };

/**
 * Turns per-window speech probabilities into confirmed speech-start / speech-end decisions. Pure and clock-free:
 * durations are measured between window positions, so dropped windows (gaps) count as elapsed time, and tests can
 * drive it with synthetic sequences.
 */
export class SpeechDetector {
  readonly threshold: number;
  readonly negThreshold: number;
  readonly minSpeechSamples: number;
  readonly minSilenceSamples: number;
  readonly windowSamples: number;

  private speaking = false;
  private lastEnd = 0;
  /** Start of the speech being confirmed or in progress; -1 when none. */
  private speechStart = -1;
  /** End of the last window that still counted as speech. */
  private lastSpeechEnd = 0;
  /** Start of the silence being confirmed while speaking; -1 when none. */
  private silenceStart = -1;

  constructor(opts: SpeechDetectorOptions = {}) {
    const d = SPEECH_DETECTOR_DEFAULTS;
    this.threshold = opts.threshold ?? d.threshold;
    this.negThreshold = opts.negThreshold ?? Math.max(this.threshold - d.negThresholdGap, 0.01);
    if (!(this.negThreshold <= this.threshold)) throw new Error(`SpeechDetector: negThreshold ${this.negThreshold} must not exceed threshold ${this.threshold}`);
    const rate = opts.sampleRate ?? d.sampleRate;
    this.minSpeechSamples = Math.round(((opts.minSpeechMs ?? d.minSpeechMs) * rate) / 1000);
    this.minSilenceSamples = Math.round(((opts.minSilenceMs ?? d.minSilenceMs) * rate) / 1000);
    this.windowSamples = opts.windowSamples ?? d.windowSamples;
  }

  /** True between a confirmed speech-start and its speech-end. */
  get inSpeech(): boolean {
    return this.speaking;
  }

  /** Where the speech in progress began (-1 when none is confirmed). */
  get speechStartSample(): number {
    return this.speaking ? this.speechStart : -1;
  }

  /** In speech, samples of silence since the last window that counted as speech (0 while the caller talks). */
  get silenceSamples(): number {
    return this.speaking && this.silenceStart >= 0 ? this.lastEnd - this.lastSpeechEnd : 0;
  }

  /**
   * Feed the probability of the window ending at windowEndSample (default: right after the previous one).
   * Returns the decision this window confirms, if any.
   */
  push(prob: number, windowEndSample: number = this.lastEnd + this.windowSamples): SpeechEvent | null {
    const end = windowEndSample;
    const start = end - this.windowSamples;
    this.lastEnd = end;

    if (!this.speaking) {
      if (this.speechStart < 0) {
        if (prob >= this.threshold) this.speechStart = start;
      } else if (prob < this.negThreshold) {
        this.speechStart = -1; // a blip: it fell silent before it lasted minSpeech
      }
      if (this.speechStart >= 0 && end - this.speechStart >= this.minSpeechSamples) {
        this.speaking = true;
        this.lastSpeechEnd = end;
        this.silenceStart = -1;
        return { type: "speech-start", startSample: this.speechStart, confirmedSample: end };
      }
      return null;
    }

    if (prob >= this.threshold) {
      this.silenceStart = -1;
      this.lastSpeechEnd = end;
    } else if (prob < this.negThreshold) {
      if (this.silenceStart < 0) this.silenceStart = start;
    } else if (this.silenceStart < 0) {
      this.lastSpeechEnd = end; // in the band, speech goes on until silence has begun
    }
    if (this.silenceStart >= 0 && end - this.lastSpeechEnd >= this.minSilenceSamples) return this.endSpeech(end);
    return null;
  }

  /** Close speech still open (the stream ended): speech-end at the last speech window, or null. */
  finish(): SpeechEvent | null {
    return this.speaking ? this.endSpeech(this.lastEnd) : null;
  }

  reset(): void {
    this.speaking = false;
    this.speechStart = -1;
    this.silenceStart = -1;
    this.lastSpeechEnd = 0;
    this.lastEnd = 0;
  }

  private endSpeech(confirmedSample: number): SpeechEvent {
    const ev: SpeechEvent = { type: "speech-end", startSample: this.speechStart, endSample: this.lastSpeechEnd, confirmedSample };
    this.speaking = false;
    this.speechStart = -1;
    this.silenceStart = -1;
    return ev;
  }
}
