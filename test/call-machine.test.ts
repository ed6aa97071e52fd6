import { describe, expect, it } from "vitest";
import { createActor, SimulatedClock, type AnyEventObject, type SnapshotFrom } from "xstate";
import { getShortestPaths } from "xstate/graph";
import { flat, start, stubActors } from "./helpers/machine.ts";
import {
  APOLOGY_TEXT,
  callMachine,
  GOODBYE_SILENCE_TEXT,
  SILENCE_PROMPT_TEXT,
  type CallEvent,
} from "../machines/call.machine.ts";

type Snap = SnapshotFrom<typeof callMachine>;

const input = { callSid: "CA1", greetingText: "Hello there", limits: { silencePrompts: 1 } };

/** Events a caller, the pipeline and the providers can produce in a given state (turn ids follow the snapshot). */
function possibleEvents(s: Snap): CallEvent[] {
  const turnId = s.context.turnId;
  return [
    { type: "STREAM.STARTED", streamSid: "MZ1" },
    { type: "SPEECH.STARTED" },
    { type: "SPEECH.ENDED" },
    { type: "TRANSCRIPT", text: "hi" },
    { type: "AGENT.TEXT", turnId, text: "Hello." },
    { type: "AGENT.DONE", turnId },
    { type: "AGENT.ERROR", turnId, error: "boom" },
    { type: "AGENT.ACTION", turnId, action: { type: "end_call" } },
    { type: "AGENT.ACTION", turnId, action: { type: "send_dtmf", digits: "12" } },
    { type: "PLAYBACK.STARTED", turnId },
    { type: "PLAYBACK.DONE", turnId, heardText: "x" },
    { type: "PLAYBACK.ERROR", turnId, error: "tts failed" },
    { type: "HANGUP", reason: "api" },
    { type: "STREAM.CLOSED", reason: "stop" },
    { type: "STREAM.DROPPED", reason: "network" },
    { type: "CALL.ANSWERED" },
    { type: "CALL.ENDED", status: "completed" },
    { type: "DTMF", digit: "5" },
    { type: "SAY", text: "Your table is ready.", interrupt: false },
    { type: "SAY", text: "Urgent.", interrupt: true },
    { type: "REPLY.INTERRUPTIBLE", turnId, speech: false, dtmf: true },
    ...callMachine.events.filter((t) => t.startsWith("xstate.after.") || t.startsWith("xstate.done.")).map((type) => ({ type }) as unknown as CallEvent),
  ];
}

/**
 * A screened outbound call, up to its first words: who answered, and the voicemail message. What follows a person's
 * answer is the conversation the other inputs already walk, so only the events that lead there are tried.
 */
function screeningEvents(s: Snap): CallEvent[] {
  const turnId = s.context.turnId;
  return [
    { type: "CALL.ANSWERED" },
    { type: "STREAM.STARTED", streamSid: "MZ1" },
    { type: "SCREENING.DECIDED", answeredBy: "human", cue: "short greeting" },
    { type: "SCREENING.DECIDED", answeredBy: "machine", cue: "long greeting" },
    { type: "SCREENING.DECIDED", answeredBy: "fax", cue: "fax tone" },
    { type: "SCREENING.READY", cue: "beep" },
    { type: "SPEECH.STARTED" },
    { type: "TRANSCRIPT", text: "leave a message" },
    { type: "PLAYBACK.STARTED", turnId },
    { type: "PLAYBACK.DONE", turnId, heardText: "x" },
    { type: "PLAYBACK.ERROR", turnId, error: "tts failed" },
    { type: "STREAM.CLOSED", reason: "stop" },
    ...callMachine.events.filter((t) => t.startsWith("xstate.after.") || t.startsWith("xstate.done.")).map((type) => ({ type }) as unknown as CallEvent),
  ];
}

const serializeState = (s: Snap) =>
  JSON.stringify([
    s.value,
    s.status,
    s.context.mode,
    s.context.greetingDelivered,
    s.context.silencePromptsUsed,
    s.context.transcriptsPending > 0,
    s.context.announcements.length > 0,
    s.context.digits.length > 0,
    s.context.endAfterReply,
    s.context.speaking?.bargeIn.speech === false,
    s.context.held.speaking,
    s.context.screening?.answeredBy ?? null,
  ]);

const ALL_STATES = [
  "connecting.ringing",
  "connecting.answered",
  "live.active.screening",
  "live.active.voicemail.waiting",
  "live.active.voicemail.leaving",
  "live.active.greeting",
  "live.active.listening",
  "live.active.callerSpeaking",
  "live.active.awaitingTranscript",
  "live.active.collectingDigits",
  "live.active.replying.thinking",
  "live.active.replying.speaking",
  "live.active.prompting",
  "live.active.apologizing",
  "live.active.announcing",
  "live.active.goodbye",
  "live.reconnecting",
  "ending",
  "ended",
];


describe("call machine: graph", () => {
  // Inbound and outbound conversations, and outbound notifications, each from a fresh call; and an outbound call that
  // is screened and leaves a voicemail message on a machine.
  const screened = { ...input, answered: false, screening: { voicemail: "leave" as const, message: "Please call us back." } };
  const inputs = [input, { ...input, answered: false }, { ...input, answered: false, mode: "notify" as const }, screened];
  const paths = inputs.flatMap((i) =>
    getShortestPaths(callMachine, { input: i, events: i === screened ? screeningEvents : possibleEvents, serializeState }).map((p) => ({ ...p, input: i })),
  );

  it("reaches every state", () => {
    const reached = new Set(paths.map((p) => flat(p.state)));
    // Transient states (connecting.pending, live.active.opening) are never at rest, by design.
    expect([...reached].sort()).toEqual([...ALL_STATES].sort());
  });

  it("every path replays on a real actor to the same state", () => {
    for (const path of paths) {
      const actor = createActor(callMachine.provide({ actors: stubActors().actors }), { input: path.input, clock: new SimulatedClock() });
      actor.start();
      for (const step of path.steps.slice(1)) actor.send(step.event as AnyEventObject as CallEvent);
      expect(flat(actor.getSnapshot())).toBe(flat(path.state));
      actor.stop();
    }
  });

  it("from every reachable state, a closed stream ends the call and stops every side effect", () => {
    for (const path of paths) {
      const stubs = stubActors();
      const actor = createActor(callMachine.provide({ actors: stubs.actors }), { input: path.input, clock: new SimulatedClock() });
      actor.start();
      for (const step of path.steps.slice(1)) actor.send(step.event as AnyEventObject as CallEvent);
      if (actor.getSnapshot().status !== "done") actor.send({ type: "STREAM.CLOSED", reason: "stop" });
      expect(actor.getSnapshot().status).toBe("done");
      expect([...stubs.speakers, ...stubs.agentTurns].every((r) => r.stopped)).toBe(true);
    }
  });

  it("speaking is only ever entered once playback has actually started", () => {
    for (const path of paths)
      for (const step of path.steps) if (flat(step.state) === "live.active.replying.speaking") expect(step.state.context.speaking?.started).toBe(true);
  });
});

describe("call machine: conversations", () => {
  it("greets on stream start and listens once the greeting's last mark is echoed", () => {
    const c = start();
    expect(c.state()).toBe("connecting.answered");
    c.send({ type: "STREAM.STARTED", streamSid: "MZ1" });
    expect(c.state()).toBe("live.active.greeting");
    expect(c.stubs.speakers[0]!.input).toMatchObject({ kind: "greeting", text: "Hello there" });
    c.send({ type: "PLAYBACK.STARTED", turnId: c.turn() });
    expect(c.state()).toBe("live.active.greeting");
    c.send({ type: "PLAYBACK.DONE", turnId: c.turn(), heardText: "Hello there" });
    expect(c.state()).toBe("live.active.listening");
    expect(c.actor.getSnapshot().context.greetingDelivered).toBe(true);
    expect(c.emitted).toContainEqual({ type: "greeting.delivered", attempts: 1 });
    expect(c.actor.getSnapshot().context.history).toEqual([{ role: "assistant", content: "Hello there" }]);
  });

  it("retries a greeting that failed to play instead of dropping it", () => {
    const c = start();
    c.send({ type: "STREAM.STARTED", streamSid: "MZ1" });
    c.send({ type: "PLAYBACK.ERROR", turnId: c.turn(), error: "tts crashed" });
    expect(c.state()).toBe("live.active.greeting");
    expect(c.stubs.speakers).toHaveLength(2);
    expect(c.stubs.speakers[0]!.stopped).toBe(true);
    expect(c.stubs.speakers[1]!.input.kind).toBe("greeting");
    c.send({ type: "PLAYBACK.DONE", turnId: c.turn(), heardText: "Hello there" });
    expect(c.emitted).toContainEqual({ type: "greeting.delivered", attempts: 2 });
  });

  it("ignores playback events of an old turn", () => {
    const c = start();
    c.send({ type: "STREAM.STARTED", streamSid: "MZ1" });
    const greetingTurn = c.turn();
    c.send({ type: "PLAYBACK.DONE", turnId: greetingTurn - 1, heardText: "" });
    expect(c.state()).toBe("live.active.greeting");
  });

  it("runs a turn: speech -> transcript -> agent text streamed to the speaker -> playback -> listening", () => {
    const c = start("");
    c.send({ type: "STREAM.STARTED", streamSid: "MZ1" });
    expect(c.state()).toBe("live.active.listening");
    c.send({ type: "SPEECH.STARTED" });
    c.send({ type: "SPEECH.ENDED" });
    expect(c.state()).toBe("live.active.awaitingTranscript");
    c.send({ type: "TRANSCRIPT", text: "what's the weather like" });
    expect(c.state()).toBe("live.active.replying.thinking");
    expect(c.stubs.agentTurns[0]!.input).toMatchObject({ userText: "what's the weather like", history: [] });
    const t = c.turn();
    c.send({ type: "AGENT.TEXT", turnId: t, text: "You said: " });
    c.send({ type: "AGENT.TEXT", turnId: t, text: "what's the weather like." });
    c.send({ type: "AGENT.DONE", turnId: t });
    const speaker = c.stubs.speakers.at(-1)!;
    expect(speaker.commands).toEqual([
      { type: "SPEAKER.TEXT", text: "You said: " },
      { type: "SPEAKER.TEXT", text: "what's the weather like." },
      { type: "SPEAKER.END" },
    ]);
    c.send({ type: "PLAYBACK.STARTED", turnId: t });
    expect(c.state()).toBe("live.active.replying.speaking");
    c.send({ type: "PLAYBACK.DONE", turnId: t, heardText: "You said: what's the weather like." });
    expect(c.state()).toBe("live.active.listening");
    expect(c.actor.getSnapshot().context.history).toEqual([
      { role: "user", content: "what's the weather like" },
      { role: "assistant", content: "You said: what's the weather like." },
    ]);
    expect(c.emitted.find((e) => e.type === "turn.assistant")).toMatchObject({ interrupted: false, heardText: "You said: what's the weather like." });
  });

  it("barge-in stops agent and speaker at once and keeps only the heard text", () => {
    const c = start("");
    c.send({ type: "STREAM.STARTED", streamSid: "MZ1" });
    c.send({ type: "SPEECH.STARTED" });
    c.send({ type: "SPEECH.ENDED" });
    c.send({ type: "TRANSCRIPT", text: "tell me a story" });
    const t = c.turn();
    c.send({ type: "AGENT.TEXT", turnId: t, text: "Once upon a time there was a fox." });
    c.send({ type: "PLAYBACK.STARTED", turnId: t });
    c.send({ type: "PLAYBACK.PROGRESS", turnId: t, heardText: "Once upon a time" });
    c.send({ type: "SPEECH.STARTED" });
    expect(c.state()).toBe("live.active.callerSpeaking");
    expect(c.stubs.agentTurns[0]!.stopped).toBe(true);
    expect(c.stubs.speakers.at(-1)!.stopped).toBe(true);
    expect(c.emitted).toContainEqual({ type: "barge-in", turnId: t, heardText: "Once upon a time", by: "speech" });
    expect(c.emitted.find((e) => e.type === "turn.assistant")).toMatchObject({ interrupted: true, heardText: "Once upon a time", text: "Once upon a time there was a fox." });
    expect(c.actor.getSnapshot().context.history.at(-1)).toEqual({ role: "assistant", content: "Once upon a time" });
    // Late events of the interrupted turn change nothing.
    c.send({ type: "PLAYBACK.DONE", turnId: t, heardText: "Once upon a time there was a fox." });
    expect(c.state()).toBe("live.active.callerSpeaking");
  });

  it("caller resuming before the reply is audible discards the reply and merges their words", () => {
    const c = start("");
    c.send({ type: "STREAM.STARTED", streamSid: "MZ1" });
    c.send({ type: "SPEECH.STARTED" });
    c.send({ type: "SPEECH.ENDED" });
    c.send({ type: "TRANSCRIPT", text: "I want" });
    expect(c.state()).toBe("live.active.replying.thinking");
    c.send({ type: "SPEECH.STARTED" });
    expect(c.stubs.agentTurns[0]!.stopped).toBe(true);
    c.send({ type: "SPEECH.ENDED" });
    c.send({ type: "TRANSCRIPT", text: "a pizza" });
    expect(c.stubs.agentTurns[1]!.input).toMatchObject({ userText: "I want a pizza" });
  });

  it("an agent failure becomes a spoken apology, not dead air", () => {
    const c = start("");
    c.send({ type: "STREAM.STARTED", streamSid: "MZ1" });
    c.send({ type: "SPEECH.STARTED" });
    c.send({ type: "SPEECH.ENDED" });
    c.send({ type: "TRANSCRIPT", text: "hello" });
    const t = c.turn();
    c.send({ type: "AGENT.ERROR", turnId: t, error: "timeout" });
    expect(c.stubs.speakers.at(-1)!.commands).toEqual([{ type: "SPEAKER.TEXT", text: APOLOGY_TEXT }, { type: "SPEAKER.END" }]);
    expect(c.emitted).toContainEqual({ type: "agent.error", turnId: t, error: "timeout" });
  });

  it("silence: prompts once, then says goodbye and hangs up", () => {
    const c = start("");
    c.send({ type: "STREAM.STARTED", streamSid: "MZ1" });
    c.clock.increment(10_000);
    expect(c.state()).toBe("live.active.prompting");
    expect(c.stubs.speakers.at(-1)!.input).toMatchObject({ kind: "prompt", text: SILENCE_PROMPT_TEXT });
    c.send({ type: "PLAYBACK.DONE", turnId: c.turn(), heardText: SILENCE_PROMPT_TEXT });
    c.clock.increment(10_000);
    expect(c.state()).toBe("live.active.goodbye");
    expect(c.stubs.speakers.at(-1)!.input).toMatchObject({ kind: "goodbye", text: GOODBYE_SILENCE_TEXT });
    c.send({ type: "PLAYBACK.DONE", turnId: c.turn(), heardText: GOODBYE_SILENCE_TEXT });
    expect(c.stubs.hangups).toEqual(["caller silent"]);
  });

  it("maximum duration ends the call even mid-conversation", async () => {
    const c = start("");
    c.send({ type: "STREAM.STARTED", streamSid: "MZ1" });
    c.send({ type: "SPEECH.STARTED" });
    c.clock.increment(60_000);
    expect(c.state()).toBe("live.active.goodbye");
    c.send({ type: "PLAYBACK.DONE", turnId: c.turn(), heardText: "" });
    await Promise.resolve();
    await Promise.resolve();
    expect(c.state()).toBe("ended");
    expect(c.emitted).toContainEqual({ type: "hangup", reason: "maximum call duration reached" });
  });

  it("stream closing ends the call from any state", () => {
    const c = start();
    c.send({ type: "STREAM.STARTED", streamSid: "MZ1" });
    c.send({ type: "STREAM.CLOSED", reason: "stop" });
    expect(c.state()).toBe("ended");
    expect(c.actor.getSnapshot().status).toBe("done");
    expect(c.stubs.speakers[0]!.stopped).toBe(true);
  });

  it("notify: an outbound call rings, speaks its message whole, then hangs up once the last mark is echoed", async () => {
    const c = start("Your build is broken.", { answered: false, mode: "notify" });
    expect(c.state()).toBe("connecting.ringing");
    c.send({ type: "CALL.ANSWERED" });
    expect(c.state()).toBe("connecting.answered");
    c.send({ type: "STREAM.STARTED", streamSid: "MZ1" });
    expect(c.stubs.speakers[0]!.input).toMatchObject({ kind: "greeting", text: "Your build is broken." });
    c.send({ type: "PLAYBACK.STARTED", turnId: c.turn() });
    c.send({ type: "SPEECH.STARTED" }); // talking over a notification does not stop it
    c.send({ type: "DTMF", digit: "1" });
    expect(c.state()).toBe("live.active.greeting");
    c.send({ type: "PLAYBACK.DONE", turnId: c.turn(), heardText: "Your build is broken." });
    await Promise.resolve();
    expect(c.stubs.hangups).toEqual(["message delivered"]);
    expect(c.emitted).toContainEqual({ type: "greeting.delivered", attempts: 1 });
  });

  it("an outbound call that is never answered, or answered without a stream, ends with the reason", async () => {
    const busy = start("Hi", { answered: false });
    busy.send({ type: "CALL.ENDED", status: "busy" });
    expect(busy.state()).toBe("ended");
    expect(busy.actor.getSnapshot().context.hangupReason).toBe("call busy");

    const silent = start("Hi", { answered: false });
    silent.send({ type: "CALL.ANSWERED" });
    silent.clock.increment(10_000); // streamTimeout default
    expect(silent.emitted).toContainEqual({ type: "call.error", message: "answered but no media stream connected in time" });
    await Promise.resolve();
    expect(silent.stubs.hangups).toEqual(["answered but no media stream connected"]);
  });

  it("a dropped stream waits for a new one and replays an undelivered greeting in full", () => {
    const c = start("Hello there");
    c.send({ type: "STREAM.STARTED", streamSid: "MZ1" });
    c.send({ type: "PLAYBACK.STARTED", turnId: c.turn() });
    c.send({ type: "PLAYBACK.PROGRESS", turnId: c.turn(), heardText: "Hello" });
    c.send({ type: "STREAM.DROPPED", reason: "network" });
    expect(c.state()).toBe("live.reconnecting");
    expect(c.stubs.speakers[0]!.stopped).toBe(true);
    c.send({ type: "STREAM.STARTED", streamSid: "MZ2" });
    expect(c.emitted).toContainEqual({ type: "stream.resumed", greetingPending: true });
    expect(c.state()).toBe("live.active.greeting");
    expect(c.stubs.speakers[1]!.input).toMatchObject({ kind: "greeting", text: "Hello there" });
    expect(c.actor.getSnapshot().context.streams).toBe(2);
  });

  it("a stream that is never resumed ends the call", () => {
    const c = start("");
    c.send({ type: "STREAM.STARTED", streamSid: "MZ1" });
    c.send({ type: "STREAM.DROPPED", reason: "network" });
    c.clock.increment(15_000);
    expect(c.state()).toBe("ended");
    expect(c.actor.getSnapshot().context.hangupReason).toBe("media stream lost and not resumed");
  });

  it("touch-tone digits barge in and reach the agent as words once the caller pauses", () => {
    const c = start("Press one for sales");
    c.send({ type: "STREAM.STARTED", streamSid: "MZ1" });
    c.send({ type: "PLAYBACK.STARTED", turnId: c.turn() });
    c.send({ type: "DTMF", digit: "1" });
    expect(c.state()).toBe("live.active.collectingDigits");
    expect(c.emitted).toContainEqual({ type: "barge-in", turnId: 1, heardText: "", by: "dtmf" });
    c.send({ type: "DTMF", digit: "2" });
    c.clock.increment(1_000);
    c.send({ type: "DTMF", digit: "3" });
    c.clock.increment(1_500);
    expect(c.state()).toBe("live.active.replying.thinking");
    expect(c.stubs.agentTurns[0]!.input).toMatchObject({ userText: "the caller pressed 1 2 3" });
  });

  it("the control API's speech waits for a pause, or interrupts when asked", () => {
    const c = start("");
    c.send({ type: "STREAM.STARTED", streamSid: "MZ1" });
    c.send({ type: "SPEECH.STARTED" });
    c.send({ type: "SAY", text: "Your table is ready.", interrupt: false });
    expect(c.state()).toBe("live.active.callerSpeaking");
    c.send({ type: "SPEECH.ENDED" });
    c.send({ type: "TRANSCRIPT", text: "thanks" });
    const t = c.turn();
    c.send({ type: "AGENT.TEXT", turnId: t, text: "You said: thanks." });
    c.send({ type: "AGENT.DONE", turnId: t });
    c.send({ type: "PLAYBACK.STARTED", turnId: t });
    c.send({ type: "PLAYBACK.DONE", turnId: t, heardText: "You said: thanks." });
    expect(c.state()).toBe("live.active.announcing");
    expect(c.stubs.speakers.at(-1)!.input).toMatchObject({ kind: "announcement", text: "Your table is ready." });
    c.send({ type: "PLAYBACK.STARTED", turnId: c.turn() });
    c.send({ type: "SAY", text: "Actually, it is not.", interrupt: true });
    expect(c.stubs.speakers.at(-2)!.stopped).toBe(true);
    expect(c.stubs.speakers.at(-1)!.input).toMatchObject({ kind: "announcement", text: "Actually, it is not." });
    expect(c.emitted.filter((e) => e.type === "barge-in").at(-1)).toMatchObject({ by: "api" });
  });

  it("agent actions: touch tones go to the speaker in order, and end_call hangs up once the reply is heard", async () => {
    const c = start("");
    c.send({ type: "STREAM.STARTED", streamSid: "MZ1" });
    c.send({ type: "SPEECH.STARTED" });
    c.send({ type: "SPEECH.ENDED" });
    c.send({ type: "TRANSCRIPT", text: "press one then goodbye" });
    const t = c.turn();
    c.send({ type: "AGENT.TEXT", turnId: t, text: "Pressing one." });
    c.send({ type: "AGENT.ACTION", turnId: t, action: { type: "send_dtmf", digits: "1" } });
    c.send({ type: "AGENT.TEXT", turnId: t, text: "Goodbye!" });
    c.send({ type: "AGENT.ACTION", turnId: t, action: { type: "end_call", reason: "done" } });
    c.send({ type: "AGENT.DONE", turnId: t });
    expect(c.stubs.speakers.at(-1)!.commands).toEqual([
      { type: "SPEAKER.TEXT", text: "Pressing one." },
      { type: "SPEAKER.TONES", digits: "1" },
      { type: "SPEAKER.TEXT", text: "Goodbye!" },
      { type: "SPEAKER.END" },
    ]);
    c.send({ type: "PLAYBACK.STARTED", turnId: t });
    expect(c.state()).toBe("live.active.replying.speaking");
    c.send({ type: "PLAYBACK.DONE", turnId: t, heardText: "Pressing one. Goodbye!" });
    await Promise.resolve();
    expect(c.stubs.hangups).toEqual(["the agent ended the call"]);
  });

  it("speech synthesis failing mid-reply: a cached apology, then listening", () => {
    const c = start("");
    c.send({ type: "STREAM.STARTED", streamSid: "MZ1" });
    c.send({ type: "SPEECH.STARTED" });
    c.send({ type: "SPEECH.ENDED" });
    c.send({ type: "TRANSCRIPT", text: "hello" });
    c.send({ type: "PLAYBACK.ERROR", turnId: c.turn(), error: "ElevenLabs: 500" });
    expect(c.state()).toBe("live.active.apologizing");
    expect(c.stubs.speakers.at(-1)!.input).toMatchObject({ kind: "prompt", text: APOLOGY_TEXT });
    c.send({ type: "PLAYBACK.DONE", turnId: c.turn(), heardText: APOLOGY_TEXT });
    expect(c.state()).toBe("live.active.listening");
  });
});
