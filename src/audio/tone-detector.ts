import { MULAW_TO_FLOAT } from "./mulaw.ts";

/**
 * Finds steady single-frequency tones in 8 kHz mu-law: a voicemail's "leave your message after the tone" beep, a fax
 * machine's calling tone (CNG, 1100 Hz). Per 20 ms block it estimates the frequency from zero crossings, then measures
 * how much of the block's energy sits at that frequency with three Goertzel filters (the estimate and 15 Hz either
 * side): a sine puts nearly all of it there, speech and noise spread it. O(n) per sample, allocates nothing.
 */
export interface ToneDetectorOptions {
  /** Share of a block's energy at one frequency for the block to count as tone (0..1). */
  minTonality?: number;
  /** Quietest tone, dBFS (RMS of the block). */
  minLevelDbfs?: number;
  /** A tone must last this long to be reported (sung vowels hold one pitch for up to ~150 ms). */
  minMs?: number;
  /** Lowest and highest frequency taken for a tone (Hz). */
  minHz?: number;
  maxHz?: number;
}

export const TONE_DETECTOR_DEFAULTS = { minTonality: 0.8, minLevelDbfs: -40, minMs: 200, minHz: 300, maxHz: 3000 } as const;

/** A tone that has ended: its mean frequency and where it lay on the stream's timeline (8 kHz samples). */
export interface Tone {
  hz: number;
  startSample: number;
  endSample: number;
}

const RATE = 8000;
const BLOCK = 160; // 20 ms
/** Blocks of one tone must agree on the frequency within this (Hz). */
const DRIFT_HZ = 40;
/**
 * Blocks a tone may miss and go on: on a noisy line a burst of noise can push one block's tonality under the bar mid
 * beep, which would split one beep into two (and call the message's start at the first half's end). 40 ms bridged;
 * the tone's end stays its last tone block, so a real end is reported with the same sample, 40 ms later.
 */
const MAX_GAP_BLOCKS = 2;

export class ToneDetector {
  private readonly minTonality: number;
  private readonly minPower: number;
  private readonly minBlocks: number;
  private readonly minHz: number;
  private readonly maxHz: number;
  private readonly block = new Float32Array(BLOCK);
  private fill = 0;
  private samples = 0;
  /** The tone in progress: blocks counted, the sum of their frequencies, where it began. */
  private toneBlocks = 0;
  private toneHzSum = 0;
  private toneStart = 0;
  /** Where the tone's last tone block ended, and the non-tone blocks since. */
  private toneEnd = 0;
  private gapBlocks = 0;

  constructor(opts: ToneDetectorOptions = {}) {
    const o = { ...TONE_DETECTOR_DEFAULTS, ...opts };
    this.minTonality = o.minTonality;
    this.minPower = 10 ** (o.minLevelDbfs / 10); // mean square of a full-scale-1 signal
    this.minBlocks = Math.max(1, Math.ceil(o.minMs / 20));
    this.minHz = o.minHz;
    this.maxHz = o.maxHz;
  }

  /** Feed mu-law bytes (any length). Returns a tone that ended within them, or null. */
  push(mulaw: Uint8Array): Tone | null {
    let found: Tone | null = null;
    for (let i = 0; i < mulaw.length; i++) {
      this.block[this.fill++] = MULAW_TO_FLOAT[mulaw[i]!]!;
      if (this.fill === BLOCK) {
        this.fill = 0;
        this.samples += BLOCK;
        const t = this.endBlock();
        if (t) found = t;
      }
    }
    return found;
  }

  /** The tone in progress is reported as ended now (the stream closed, or the caller wants to know). */
  flush(): Tone | null {
    return this.finishTone(this.toneEnd);
  }

  private endBlock(): Tone | null {
    const hz = this.toneHz();
    if (hz > 0) {
      if (this.toneBlocks > 0 && Math.abs(hz - this.toneHzSum / this.toneBlocks) > DRIFT_HZ) {
        // Another tone right after this one (a two-tone beep): each is its own.
        const ended = this.finishTone(this.toneEnd);
        this.startTone(hz);
        return ended;
      }
      if (this.toneBlocks === 0) this.startTone(hz);
      else {
        this.toneBlocks++;
        this.toneHzSum += hz;
        this.toneEnd = this.samples;
        this.gapBlocks = 0;
      }
      return null;
    }
    if (this.toneBlocks === 0) return null;
    if (++this.gapBlocks <= MAX_GAP_BLOCKS) return null;
    return this.finishTone(this.toneEnd);
  }

  private startTone(hz: number): void {
    this.toneBlocks = 1;
    this.toneHzSum = hz;
    this.toneStart = this.samples - BLOCK;
    this.toneEnd = this.samples;
    this.gapBlocks = 0;
  }

  private finishTone(end: number): Tone | null {
    const blocks = this.toneBlocks;
    const hz = blocks ? this.toneHzSum / blocks : 0;
    this.toneBlocks = 0;
    this.toneHzSum = 0;
    this.gapBlocks = 0;
    if (blocks < this.minBlocks) return null;
    return { hz: Math.round(hz), startSample: this.toneStart, endSample: end };
  }

  /** The block's frequency if it is a tone, else 0. */
  private toneHz(): number {
    const x = this.block;
    let energy = 0;
    let crossings = 0;
    let prev = x[0]!;
    for (let i = 0; i < BLOCK; i++) {
      const v = x[i]!;
      energy += v * v;
      if ((v >= 0) !== (prev >= 0)) crossings++;
      prev = v;
    }
    if (energy / BLOCK < this.minPower) return 0;
    const estimate = (crossings * RATE) / (2 * BLOCK);
    if (estimate < this.minHz - 50 || estimate > this.maxHz + 50) return 0;
    // Zero crossings are off by up to half a period per block: look around the estimate for the peak.
    let bestHz = 0;
    let best = 0;
    for (let d = -30; d <= 30; d += 10) {
      const p = goertzelPower(x, estimate + d);
      if (p > best) {
        best = p;
        bestHz = estimate + d;
      }
    }
    // A sine of amplitude A gives |X|^2 = (A N / 2)^2 and energy A^2 N / 2: their ratio 2|X|^2 / (N energy) is 1.
    const tonality = (2 * best) / (BLOCK * energy);
    if (tonality < this.minTonality || bestHz < this.minHz || bestHz > this.maxHz) return 0;
    return bestHz;
  }
}

/** Squared magnitude of the block's component at `hz` (Goertzel, any frequency, not only bin centres). */
function goertzelPower(x: Float32Array, hz: number): number {
  const coeff = 2 * Math.cos((2 * Math.PI * hz) / RATE);
  let s1 = 0;
  let s2 = 0;
  for (let i = 0; i < x.length; i++) {
    const s0 = x[i]! + coeff * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  return s1 * s1 + s2 * s2 - coeff * s1 * s2;
}
