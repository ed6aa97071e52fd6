import { createActor, SimulatedClock } from "xstate";
import { describe, expect, it } from "vitest";
import { callMachine, type CallActor } from "../machines/call.machine.ts";
import { ClipStore } from "../src/call/clips.ts";
import { ResponderBridge } from "../src/call/responder-bridge.ts";
import type { RelayHost } from "../src/responders/relay/host.ts";
import type { Responder } from "../src/responders/responder.ts";
import { systemClock } from "../src/util/clock.ts";
import { flat, stubActors } from "./helpers/machine.ts";

/** The bridge between a relay responder and a real call machine (stub side effects): what the app's interruptible becomes. */
function bridged() {
  let host!: RelayHost;
  const responder: Responder = { kind: "relay", speculates: false, open: (h) => void (host = h as RelayHost), respond: async function* () {}, close: () => {} };
  const actor: CallActor = createActor(callMachine.provide({ actors: stubActors().actors }), {
    input: { callSid: "CA1", greetingText: "", limits: { silencePrompts: 1 } },
    clock: new SimulatedClock(),
  });
  actor.start();
  actor.send({ type: "STREAM.STARTED", streamSid: "MZ1" });
  const bridge = new ResponderBridge(responder, { callSid: "CA1", from: null, to: null, direction: "inbound" }, () => actor, {
    clock: systemClock,
    clips: new ClipStore(),
    record: () => {},
    fail: (err) => {
      throw err;
    },
  });
  bridge.open();
  return { host, actor, state: () => flat(actor.getSnapshot()) };
}

describe("responder bridge: a relay app's interruptible reaches the call machine", () => {
  it('out-of-turn speech and plays carry their mode: "none" plays through the caller\'s speech, "any" is cut', () => {
    const { host, actor, state } = bridged();
    host.say("Please hold.", { interruptible: "none" });
    expect(state()).toBe("live.active.announcing");
    expect(actor.getSnapshot().context.speaking?.bargeIn).toEqual({ speech: false, dtmf: false });
    actor.send({ type: "PLAYBACK.STARTED", turnId: actor.getSnapshot().context.turnId });
    actor.send({ type: "SPEECH.STARTED" });
    expect(state()).toBe("live.active.announcing");

    const other = bridged();
    other.host.playAudio!(new Uint8Array(800), { interruptible: "any" });
    other.actor.send({ type: "PLAYBACK.STARTED", turnId: other.actor.getSnapshot().context.turnId });
    other.actor.send({ type: "SPEECH.STARTED" });
    expect(other.state()).toBe("live.active.callerSpeaking");
  });

  it("a reply's mode is sent for its turn: speech and keys as Twilio's modes say", () => {
    const { host, actor } = bridged();
    actor.send({ type: "SPEECH.STARTED" });
    actor.send({ type: "SPEECH.ENDED" });
    actor.send({ type: "TRANSCRIPT", text: "hello" });
    const turnId = actor.getSnapshot().context.turnId;
    const modes = { dtmf: { speech: false, dtmf: true }, speech: { speech: true, dtmf: false }, none: { speech: false, dtmf: false }, any: { speech: true, dtmf: true } } as const;
    for (const [mode, bargeIn] of Object.entries(modes)) {
      host.replyInterruptible!(turnId, mode as keyof typeof modes);
      expect(actor.getSnapshot().context.speaking?.bargeIn).toEqual(bargeIn);
    }
  });
});
