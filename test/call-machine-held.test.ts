import { describe, expect, it } from "vitest";
import { start } from "./helpers/machine.ts";

/** A call whose caller asked something and whose reply has started playing; returns the reply's turn. */
function replying(c: ReturnType<typeof start>, interruptible?: { speech: boolean; dtmf: boolean }): number {
  c.send({ type: "STREAM.STARTED", streamSid: "MZ1" });
  c.send({ type: "SPEECH.STARTED" });
  c.send({ type: "SPEECH.ENDED" });
  c.send({ type: "TRANSCRIPT", text: "what is my code" });
  const t = c.turn();
  if (interruptible) c.send({ type: "REPLY.INTERRUPTIBLE", turnId: t, ...interruptible });
  c.send({ type: "AGENT.TEXT", turnId: t, text: "Your code is 4 2 7." });
  c.send({ type: "AGENT.DONE", turnId: t });
  c.send({ type: "PLAYBACK.STARTED", turnId: t });
  return t;
}

describe("call machine: utterances the caller may not cut (a relay app's interruptible)", () => {
  it("a reply marked speech-proof plays on through the caller's speech; their words are the next turn once it is heard", () => {
    const c = start("");
    const t = replying(c, { speech: false, dtmf: false });
    c.send({ type: "SPEECH.STARTED" });
    expect(c.state()).toBe("live.active.replying.speaking");
    expect(c.stubs.speakers.at(-1)!.stopped).toBe(false);
    c.send({ type: "SPEECH.ENDED" });
    c.send({ type: "TRANSCRIPT", text: "sorry say again" });
    expect(c.state()).toBe("live.active.replying.speaking");
    c.send({ type: "PLAYBACK.DONE", turnId: t, heardText: "Your code is 4 2 7." });
    // the reply is on the record whole, nobody barged in, and the held words went to the agent as their own turn
    expect(c.emitted.filter((e) => e.type === "barge-in")).toEqual([]);
    expect(c.emitted).toContainEqual(expect.objectContaining({ type: "turn.assistant", turnId: t, heardText: "Your code is 4 2 7.", interrupted: false }));
    expect(c.state()).toBe("live.active.replying.thinking");
    expect(c.stubs.agentTurns.at(-1)!.input).toMatchObject({
      userText: "sorry say again",
      history: [
        { role: "user", content: "what is my code" },
        { role: "assistant", content: "Your code is 4 2 7." },
      ],
    });
  });

  it("a caller still talking when the reply ends has the floor; their transcript, when it comes, is the turn", () => {
    const c = start("");
    const t = replying(c, { speech: false, dtmf: true });
    c.send({ type: "SPEECH.STARTED" });
    expect(c.state()).toBe("live.active.replying.speaking");
    c.send({ type: "PLAYBACK.DONE", turnId: t, heardText: "Your code is 4 2 7." });
    expect(c.state()).toBe("live.active.callerSpeaking");
    c.send({ type: "SPEECH.ENDED" });
    expect(c.state()).toBe("live.active.awaitingTranscript");
    c.send({ type: "TRANSCRIPT", text: "thank you" });
    expect(c.stubs.agentTurns.at(-1)!.input).toMatchObject({ userText: "thank you" });
  });

  it("a transcript still due when the reply ends is waited for", () => {
    const c = start("");
    const t = replying(c, { speech: false, dtmf: false });
    c.send({ type: "SPEECH.STARTED" });
    c.send({ type: "SPEECH.ENDED" });
    expect(c.state()).toBe("live.active.replying.speaking");
    c.send({ type: "PLAYBACK.DONE", turnId: t, heardText: "Your code is 4 2 7." });
    expect(c.state()).toBe("live.active.awaitingTranscript");
    c.send({ type: "TRANSCRIPT", text: "got it" });
    expect(c.stubs.agentTurns.at(-1)!.input).toMatchObject({ userText: "got it" });
  });

  it('"dtmf" mode: speech is held but a key cuts the reply; "speech" mode: the reverse', () => {
    const dtmfOnly = start("");
    replying(dtmfOnly, { speech: false, dtmf: true });
    dtmfOnly.send({ type: "SPEECH.STARTED" });
    expect(dtmfOnly.state()).toBe("live.active.replying.speaking");
    dtmfOnly.send({ type: "DTMF", digit: "1" });
    expect(dtmfOnly.state()).toBe("live.active.collectingDigits");
    expect(dtmfOnly.emitted).toContainEqual(expect.objectContaining({ type: "barge-in", by: "dtmf" }));

    const speechOnly = start("");
    const t = replying(speechOnly, { speech: true, dtmf: false });
    speechOnly.send({ type: "DTMF", digit: "5" });
    expect(speechOnly.state()).toBe("live.active.replying.speaking");
    speechOnly.send({ type: "PLAYBACK.DONE", turnId: t, heardText: "Your code is 4 2 7." });
    expect(speechOnly.state()).toBe("live.active.collectingDigits"); // the key pressed over it is the next turn
    expect(speechOnly.emitted.filter((e) => e.type === "barge-in")).toEqual([]);
  });

  it("a reply with no setting, or turned back to any, is cut by speech as before", () => {
    const c = start("");
    const t = replying(c, { speech: false, dtmf: false });
    c.send({ type: "REPLY.INTERRUPTIBLE", turnId: t, speech: true, dtmf: true });
    c.send({ type: "SPEECH.STARTED" });
    expect(c.state()).toBe("live.active.callerSpeaking");
    expect(c.emitted).toContainEqual(expect.objectContaining({ type: "barge-in", turnId: t, by: "speech" }));
  });

  it("a setting for another turn changes nothing", () => {
    const c = start("");
    const t = replying(c);
    c.send({ type: "REPLY.INTERRUPTIBLE", turnId: t - 1, speech: false, dtmf: false });
    c.send({ type: "SPEECH.STARTED" });
    expect(c.state()).toBe("live.active.callerSpeaking");
  });

  it("a reply not yet audible is not discarded when speech may not cut it", () => {
    const c = start("");
    c.send({ type: "STREAM.STARTED", streamSid: "MZ1" });
    c.send({ type: "SPEECH.STARTED" });
    c.send({ type: "SPEECH.ENDED" });
    c.send({ type: "TRANSCRIPT", text: "hello" });
    const t = c.turn();
    c.send({ type: "REPLY.INTERRUPTIBLE", turnId: t, speech: false, dtmf: false });
    c.send({ type: "SPEECH.STARTED" });
    expect(c.state()).toBe("live.active.replying.thinking");
    expect(c.stubs.agentTurns.at(-1)!.stopped).toBe(false);
  });

  it("an out-of-turn utterance with its own setting (a relay app's say or play) plays through speech", () => {
    const c = start("");
    c.send({ type: "STREAM.STARTED", streamSid: "MZ1" });
    c.send({ type: "SAY", text: "Please hold.", interrupt: false, bargeIn: { speech: false, dtmf: false } });
    expect(c.state()).toBe("live.active.announcing");
    const t = c.turn();
    c.send({ type: "PLAYBACK.STARTED", turnId: t });
    c.send({ type: "SPEECH.STARTED" });
    c.send({ type: "DTMF", digit: "2" });
    expect(c.state()).toBe("live.active.announcing");
    c.send({ type: "SPEECH.ENDED" });
    c.send({ type: "TRANSCRIPT", text: "okay" });
    c.send({ type: "PLAYBACK.DONE", turnId: t, heardText: "Please hold." });
    expect(c.emitted.filter((e) => e.type === "barge-in")).toEqual([]);
    // words and the key both reach the agent: the digits are collected first, then folded into the turn
    expect(c.state()).toBe("live.active.replying.thinking");
    expect(c.stubs.agentTurns.at(-1)!.input).toMatchObject({ userText: "okay" });
  });
});
