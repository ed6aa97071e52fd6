import { describe, expect, it } from "vitest";
import { InboundAudio, type UtteranceSink } from "../src/call/inbound.ts";
import type { ProbabilityListener, SileroVadPool, VadStream } from "../src/vad/silero-pool.ts";

/**
 * The per-frame layer tells the recogniser when the caller may have finished (a pause of STT_EARLY_DECODE_MS) and when
 * they went on, so a whole-utterance recogniser can start early. Driven window by window with chosen probabilities,
 * through a VAD pool that hands them over as the real one does.
 */
describe("pause and resume between speech start and a confirmed end", () => {
  const setup = (pauseMs: number) => {
    let listener!: ProbabilityListener;
    const stream: VadStream = { id: 1, closed: false, droppedWindows: 0, pushMulaw: () => {}, reset: () => {}, close: () => {} };
    const pool = { openStream: (l: ProbabilityListener) => ((listener = l), stream) } as unknown as SileroVadPool;
    const events: string[] = [];
    const inbound = new InboundAudio(pool, { minSpeechMs: 64, minSilenceMs: 320 }, { speechStarted: () => events.push("start"), speechEnded: () => events.push("end") }, undefined, pauseMs);
    const sink: UtteranceSink = { start: () => {}, push: () => {}, pause: () => events.push("pause"), resume: () => events.push("resume"), end: () => events.push("sink-end") };
    inbound.setSink(sink);
    let at = 0;
    const windows = (prob: number, n: number) => {
      for (let i = 0; i < n; i++) listener(prob, (at += 256));
    };
    return { events, windows };
  };

  it("pauses after the silence it was given, resumes when speech comes back, and ends as before", () => {
    const { events, windows } = setup(96); // 3 windows of 32 ms
    windows(0.9, 4);
    expect(events).toEqual(["start"]);
    windows(0.1, 2);
    expect(events).toEqual(["start"]); // 64 ms of silence: not yet
    windows(0.1, 1);
    expect(events).toEqual(["start", "pause"]);
    windows(0.4, 2); // the band between the thresholds does not end a pause
    expect(events).toEqual(["start", "pause"]);
    windows(0.9, 1);
    expect(events).toEqual(["start", "pause", "resume"]);
    windows(0.1, 10);
    expect(events).toEqual(["start", "pause", "resume", "pause", "end", "sink-end"]);
  });

  it("0 turns it off", () => {
    const { events, windows } = setup(0);
    windows(0.9, 4);
    windows(0.1, 12);
    expect(events).toEqual(["start", "end", "sink-end"]);
  });
});
