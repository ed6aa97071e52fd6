import { describe, expect, it } from "vitest";
import { TurnTimeline } from "../src/call/turn-timeline.ts";

describe("turn timeline", () => {
  it("binds the caller's end of speech and its transcript to the reply turn that follows", () => {
    const tl = new TurnTimeline();
    tl.speechEnded(1000);
    tl.transcript(1080);
    tl.beginTurn(1);
    tl.mark(1, "agentRequestAt", 1081);
    tl.mark(1, "agentFirstTextAt", 1200);
    tl.mark(1, "ttsFirstByteAt", 1210);
    tl.mark(1, "firstFrameAt", 1212);
    expect(tl.latency(1)).toMatchObject({ sttMs: 80, agentMs: 120, ttsMs: 10, sendMs: 2, totalMs: 212 });
  });

  it("a transcript that arrives after its turn began (the STT timed out) is not lent to the next turn", () => {
    const tl = new TurnTimeline();
    tl.speechEnded(1000);
    tl.beginTurn(1); // TRANSCRIPT_TIMEOUT_MS passed: the reply went on without the words
    tl.transcript(6000); // ... which came late
    expect(tl.latency(1)!.sttMs).toBeNull();
    tl.end(1);

    tl.speechEnded(9000);
    tl.beginTurn(2); // this one timed out too: it has no transcript moment of its own
    expect(tl.latency(2)!.sttMs).toBeNull();
    tl.end(2);

    tl.speechEnded(12_000);
    tl.transcript(12_050);
    tl.beginTurn(3);
    expect(tl.latency(3)!.sttMs).toBe(50);
  });
});
