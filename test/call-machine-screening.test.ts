import { describe, expect, it } from "vitest";
import { REASON_FAX, REASON_VOICEMAIL_HANGUP, REASON_VOICEMAIL_LEFT, type VoicemailPolicy } from "../machines/call.machine.ts";
import { start } from "./helpers/machine.ts";

const MESSAGE = "Hi, this is Parley calling for Dana about tomorrow's appointment. Please call us back.";

/** An outbound call, answered and streaming, being screened. */
function screenedCall(voicemail: VoicemailPolicy = "leave", message = MESSAGE) {
  const call = start("Hello, this is Parley.", { answered: false, screening: { voicemail, message } });
  call.send({ type: "CALL.ANSWERED" });
  call.send({ type: "STREAM.STARTED", streamSid: "MZ1" });
  return call;
}

describe("call machine: screening an outbound call", () => {
  it("says nothing until it knows who answered; a person hears the greeting at once", () => {
    const call = screenedCall();
    expect(call.state()).toBe("live.active.screening");
    // The person's "hello?" is not a turn, and does not make the machine listen or think.
    call.send({ type: "SPEECH.STARTED" });
    call.send({ type: "SPEECH.ENDED" });
    expect(call.state()).toBe("live.active.screening");
    expect(call.stubs.speakers).toHaveLength(0);
    call.send({ type: "SCREENING.DECIDED", answeredBy: "human", cue: "short greeting" });
    expect(call.state()).toBe("live.active.greeting");
    expect(call.stubs.speakers[0]!.input).toMatchObject({ kind: "greeting", text: "Hello, this is Parley." });
    expect(call.emitted).toContainEqual({ type: "screening.decided", answeredBy: "human", cue: "short greeting", action: "greet" });
    expect(call.actor.getSnapshot().context.transcriptsPending).toBe(0);
  });

  it("greets when screening cannot tell within SCREENING_MAX_MS (silence on the line), and says so", () => {
    const call = screenedCall();
    call.clock.increment(3_499);
    expect(call.state()).toBe("live.active.screening");
    call.clock.increment(1);
    expect(call.state()).toBe("live.active.greeting");
    expect(call.emitted).toContainEqual({ type: "screening.decided", answeredBy: "unknown", cue: "timeout", action: "greet" });
  });

  it("on a machine, waits for the beep, leaves the message whole (speech does not cut it), then hangs up", () => {
    const call = screenedCall("leave");
    call.send({ type: "SCREENING.DECIDED", answeredBy: "machine", cue: "long greeting" });
    expect(call.state()).toBe("live.active.voicemail.waiting");
    call.send({ type: "TRANSCRIPT", text: "please leave a message after the tone" });
    expect(call.emitted).toContainEqual({ type: "screening.transcript", text: "please leave a message after the tone" });
    expect(call.stubs.speakers).toHaveLength(0);
    call.send({ type: "SCREENING.READY", cue: "beep" });
    expect(call.state()).toBe("live.active.voicemail.leaving");
    expect(call.emitted).toContainEqual({ type: "voicemail.ready", cue: "beep" });
    const speaker = call.stubs.speakers[0]!;
    expect(speaker.input).toMatchObject({ kind: "voicemail", text: MESSAGE });
    const turnId = call.turn();
    call.send({ type: "PLAYBACK.STARTED", turnId });
    call.send({ type: "SPEECH.STARTED" }); // the machine's own noise, or a second beep
    expect(call.state()).toBe("live.active.voicemail.leaving");
    expect(speaker.stopped).toBe(false);
    call.send({ type: "PLAYBACK.DONE", turnId, heardText: MESSAGE });
    expect(call.stubs.hangups).toEqual([REASON_VOICEMAIL_LEFT]);
    expect(call.emitted).toContainEqual(expect.objectContaining({ type: "turn.assistant", kind: "voicemail", text: MESSAGE, heardText: MESSAGE }));
  });

  it("leaves the message anyway when no beep comes within VOICEMAIL_MAX_WAIT_MS", () => {
    const call = screenedCall("leave");
    call.send({ type: "SCREENING.DECIDED", answeredBy: "machine", cue: "long greeting" });
    call.clock.increment(30_000);
    expect(call.state()).toBe("live.active.voicemail.leaving");
    expect(call.emitted).toContainEqual({ type: "voicemail.ready", cue: "timeout" });
  });

  it("voicemail: hangup ends the call at once; continue talks as to a person; a fax is hung up on", () => {
    const hang = screenedCall("hangup");
    hang.send({ type: "SCREENING.DECIDED", answeredBy: "machine", cue: "beep" });
    expect(hang.stubs.hangups).toEqual([REASON_VOICEMAIL_HANGUP]);
    expect(hang.stubs.speakers).toHaveLength(0);
    expect(hang.emitted).toContainEqual({ type: "screening.decided", answeredBy: "machine", cue: "beep", action: "hangup" });

    const cont = screenedCall("continue");
    cont.send({ type: "SCREENING.DECIDED", answeredBy: "machine", cue: "long greeting" });
    expect(cont.state()).toBe("live.active.greeting");

    const fax = screenedCall("continue");
    fax.send({ type: "SCREENING.DECIDED", answeredBy: "fax", cue: "fax tone" });
    expect(fax.stubs.hangups).toEqual([REASON_FAX]);
  });

  it("with no message to leave, a machine is hung up on rather than greeted with silence", () => {
    const call = screenedCall("leave", "  ");
    call.send({ type: "SCREENING.DECIDED", answeredBy: "machine", cue: "long greeting" });
    expect(call.stubs.hangups).toEqual([REASON_VOICEMAIL_HANGUP]);
  });

  it("a quick 'human' overturned (the greeting went on after a pause): the greeting is cut, the machine's words are no turn, the message waits for the beep", () => {
    const call = screenedCall("leave");
    call.send({ type: "SCREENING.DECIDED", answeredBy: "human", cue: "short greeting" });
    const greeting = call.stubs.speakers[0]!;
    call.send({ type: "PLAYBACK.STARTED", turnId: call.turn() });
    call.send({ type: "SPEECH.STARTED" }); // the recording goes on: it barges in on our greeting
    call.send({ type: "SPEECH.ENDED" });
    call.send({ type: "TRANSCRIPT", text: "you have reached the voicemail of" });
    call.send({ type: "SCREENING.DECIDED", answeredBy: "machine", cue: "greeting went on after a pause" });
    expect(call.state()).toBe("live.active.voicemail.waiting");
    expect(greeting.stopped).toBe(true);
    expect(call.stubs.agentTurns.every((t) => t.stopped)).toBe(true);
    const ctx = call.actor.getSnapshot().context;
    expect([ctx.pendingUserText, ctx.transcriptsPending, ctx.screening?.answeredBy]).toEqual(["", 0, "machine"]);
    expect(call.emitted).toContainEqual({ type: "screening.decided", answeredBy: "machine", cue: "greeting went on after a pause", action: "leave" });
    call.send({ type: "SCREENING.READY", cue: "beep" });
    expect(call.stubs.speakers.at(-1)!.input).toMatchObject({ kind: "voicemail", text: MESSAGE });
  });

  it("a second 'machine' after the first changes nothing, and a call that was never screened ignores decisions", () => {
    const call = screenedCall("hangup");
    call.send({ type: "SCREENING.DECIDED", answeredBy: "human", cue: "short greeting" });
    call.send({ type: "SCREENING.DECIDED", answeredBy: "human", cue: "carrier: human" });
    expect(call.state()).toBe("live.active.greeting");
    const plain = start("Hello");
    plain.send({ type: "STREAM.STARTED", streamSid: "MZ1" });
    plain.send({ type: "SCREENING.DECIDED", answeredBy: "machine", cue: "beep" });
    expect(plain.state()).toBe("live.active.greeting");
    expect(plain.stubs.hangups).toEqual([]);
  });

  it("a restored call (taken over, or after a restart) is not screened again", () => {
    const call = start("Hello", { screening: { voicemail: "leave", message: MESSAGE }, restored: { history: [], greetingDelivered: false, turnId: 0 } } as never);
    call.send({ type: "STREAM.STARTED", streamSid: "MZ1" });
    expect(call.state()).toBe("live.active.greeting");
  });
});
