import { describe, expect, it } from "vitest";
import { SPEECH_DETECTOR_DEFAULTS, SpeechDetector, type SpeechDetectorOptions, type SpeechEvent } from "../src/vad/hysteresis.ts";

const W = 256; // samples per window at 8 kHz (32 ms)

/** Feed probabilities one window apart; return each event with the index of the window that produced it. */
function run(probs: number[], opts?: SpeechDetectorOptions): { at: number; ev: SpeechEvent }[] {
  const d = new SpeechDetector(opts);
  const out: { at: number; ev: SpeechEvent }[] = [];
  probs.forEach((p, i) => {
    const ev = d.push(p);
    if (ev) out.push({ at: i, ev });
  });
  return out;
}

const rep = (p: number, n: number): number[] => Array<number>(n).fill(p);

describe("SpeechDetector defaults", () => {
  it("exposes the documented defaults, converted to samples", () => {
    expect(SPEECH_DETECTOR_DEFAULTS).toMatchObject({ threshold: 0.5, negThresholdGap: 0.15, minSpeechMs: 150, minSilenceMs: 550 });
    const d = new SpeechDetector();
    expect(d.threshold).toBe(0.5);
    expect(d.negThreshold).toBeCloseTo(0.35);
    expect(d.minSpeechSamples).toBe(1200);
    expect(d.minSilenceSamples).toBe(4400);
    expect(new SpeechDetector({ threshold: 0.3 }).negThreshold).toBeCloseTo(0.15);
    expect(() => new SpeechDetector({ threshold: 0.4, negThreshold: 0.6 })).toThrow(/negThreshold/);
  });
});

describe("speech-start", () => {
  it("ignores blips shorter than minSpeech (4 windows = 128 ms < 150 ms)", () => {
    expect(run([...rep(0, 3), ...rep(0.9, 4), ...rep(0, 30), ...rep(0.9, 4), ...rep(0, 5)])).toEqual([]);
  });

  it("confirms after minSpeech and reports where speech began and where it was confirmed", () => {
    const ev = run([...rep(0, 3), ...rep(0.9, 5), ...rep(0.9, 10)]);
    // Window 3 is the first above threshold: it starts at 3 * 256. The 5th speech window (index 7, ending at 8 * 256)
    // brings the span to 160 ms, the first count of windows that reaches 150 ms.
    expect(ev).toEqual([{ at: 7, ev: { type: "speech-start", startSample: 3 * W, confirmedSample: 8 * W } }]);
  });

  it("a dip below negThreshold while confirming discards the candidate; the next start counts afresh", () => {
    const ev = run([...rep(0.9, 3), 0.2, ...rep(0.9, 5)]);
    expect(ev).toEqual([{ at: 8, ev: { type: "speech-start", startSample: 4 * W, confirmedSample: 9 * W } }]);
  });

  it("the band between negThreshold and threshold never starts speech, but carries a started candidate", () => {
    expect(run(rep(0.45, 50))).toEqual([]);
    const ev = run([0, 0.6, ...rep(0.4, 4)]);
    expect(ev).toEqual([{ at: 5, ev: { type: "speech-start", startSample: 1 * W, confirmedSample: 6 * W } }]);
  });

  it("custom thresholds move the band", () => {
    const opts = { threshold: 0.7, negThreshold: 0.6 };
    expect(run(rep(0.65, 20), opts)).toEqual([]);
    expect(run([0.75, 0.55, ...rep(0.75, 10)], opts)[0]?.ev).toMatchObject({ type: "speech-start", startSample: 2 * W });
    expect(run([0.75, 0.65, ...rep(0.75, 10)], opts)[0]?.ev).toMatchObject({ type: "speech-start", startSample: 0 });
  });

  it("minSpeechMs is honoured", () => {
    const ev = run(rep(0.9, 20), { minSpeechMs: 300 }); // 300 ms = 2400 samples = 9.4 windows -> 10
    expect(ev).toEqual([{ at: 9, ev: { type: "speech-start", startSample: 0, confirmedSample: 10 * W } }]);
  });
});

describe("speech-end", () => {
  const speech = rep(0.9, 10); // confirmed at window 4, last speech window ends at 10 * 256

  it("brief dips shorter than minSilence do not end speech (17 windows = 544 ms < 550 ms)", () => {
    const ev = run([...speech, ...rep(0.1, 17), ...rep(0.9, 3), ...rep(0.1, 17), 0.9]);
    expect(ev.map((e) => e.ev.type)).toEqual(["speech-start"]);
  });

  it("ends after minSilence, at the end of the last speech window", () => {
    const ev = run([...speech, ...rep(0.1, 30)]);
    expect(ev).toEqual([
      { at: 4, ev: { type: "speech-start", startSample: 0, confirmedSample: 5 * W } },
      { at: 27, ev: { type: "speech-end", startSample: 0, endSample: 10 * W, confirmedSample: 28 * W } },
    ]);
  });

  it("band windows extend speech until silence begins, then neither extend it nor interrupt the silence", () => {
    // Band right after speech: still speech, so the end moves to the last band window.
    const a = run([...speech, ...rep(0.4, 5), ...rep(0.1, 30)]);
    expect(a[1]?.ev).toEqual({ type: "speech-end", startSample: 0, endSample: 15 * W, confirmedSample: 33 * W });
    // Band inside the silence: the silence keeps counting from its first window.
    const b = run([...speech, ...rep(0.1, 8), 0.4, ...rep(0.1, 30)]);
    expect(b[1]?.ev).toEqual({ type: "speech-end", startSample: 0, endSample: 10 * W, confirmedSample: 28 * W });
  });

  it("a window at or above threshold during the silence cancels it", () => {
    const ev = run([...speech, ...rep(0.1, 12), 0.6, ...rep(0.1, 30)]);
    expect(ev[1]?.ev).toEqual({ type: "speech-end", startSample: 0, endSample: 23 * W, confirmedSample: 41 * W });
  });

  it("starts again after an end and reports each segment's own positions", () => {
    const ev = run([...speech, ...rep(0, 20), ...rep(0.8, 6), ...rep(0, 20)]);
    expect(ev.map((e) => e.ev)).toEqual([
      { type: "speech-start", startSample: 0, confirmedSample: 5 * W },
      { type: "speech-end", startSample: 0, endSample: 10 * W, confirmedSample: 28 * W },
      { type: "speech-start", startSample: 30 * W, confirmedSample: 35 * W },
      { type: "speech-end", startSample: 30 * W, endSample: 36 * W, confirmedSample: 54 * W },
    ]);
  });
});

describe("positions and lifecycle", () => {
  it("measures durations between the given positions, so a gap of dropped windows counts as elapsed time", () => {
    const d = new SpeechDetector();
    const base = 100_000;
    for (let i = 1; i <= 10; i++) d.push(0.9, base + i * W);
    expect(d.inSpeech).toBe(true);
    // 6000 samples (750 ms) went missing; the next window is silent, so silence has lasted since the last speech.
    expect(d.push(0.1, base + 10 * W + 6000)).toEqual({ type: "speech-end", startSample: base, endSample: base + 10 * W, confirmedSample: base + 10 * W + 6000 });
  });

  it("finish() closes open speech at the last speech window; reset() forgets everything", () => {
    const d = new SpeechDetector();
    expect(d.finish()).toBeNull();
    for (const p of [...rep(0.9, 8), ...rep(0.1, 3)]) d.push(p);
    expect(d.finish()).toEqual({ type: "speech-end", startSample: 0, endSample: 8 * W, confirmedSample: 11 * W });
    expect(d.inSpeech).toBe(false);
    for (const p of rep(0.9, 8)) d.push(p);
    d.reset();
    expect(d.inSpeech).toBe(false);
    expect(d.push(0.9)).toBeNull();
    expect(d.finish()).toBeNull();
  });
});
