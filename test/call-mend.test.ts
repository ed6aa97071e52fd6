import { describe, expect, it } from "vitest";
import { REPLACED_CLOSE_CODE } from "../src/call/call-runtime.ts";
import type { TtsProvider } from "../src/providers/types.ts";
import type { CallRecord } from "../src/store/call-record.ts";
import { clipMulaw } from "./helpers/audio.ts";
import { useParley } from "./helpers/harness.ts";
import { finishedUtterances, streamFromTwiml, TwilioCall } from "./helpers/twilio-client.ts";

/** Edges of a live call: a stream replaced by a new one, speech synthesis failing mid-reply. */
describe("call mending", () => {
  const parley = useParley(() => ({ GREETING: "Hi, Parley here." }));
  const record = async (base: string, sid: string) => (await (await fetch(`${base}/api/calls/${sid}`)).json()) as CallRecord & { live: boolean };

  it("a new stream for the call closes the one it replaces, with a code and a reason", async () => {
    const { base } = await parley.start();
    const first = new TwilioCall({ baseUrl: base });
    await first.connect();
    await first.waitFor(() => finishedUtterances(first) >= 1, 15_000, "greeting on the first stream");

    // Twilio opened a new stream (through the <Connect action>) before the old socket was seen to die.
    const res = await fetch(`${base}/voice/connect-action`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ CallSid: first.callSid, CallStatus: "in-progress" }).toString(),
    });
    const { streamUrl, parameters } = streamFromTwiml(await res.text());
    const second = await TwilioCall.openStream({ streamUrl, parameters, callSid: first.callSid });

    const closed = await Promise.race([first.closed, new Promise<null>((r) => setTimeout(() => r(null), 5000))]);
    expect(closed).toEqual({ by: "server", code: REPLACED_CLOSE_CODE });
    expect(first.closeReason).toBe("replaced by a new stream");
    expect(second.isOpen).toBe(true);
    const rec = await record(base, first.callSid);
    expect(rec.streamSid).toBe(second.streamSid);
    // Nothing the old socket sent was taken for the new stream's garbage.
    expect(rec.protocolErrors).toEqual({});
    await second.hangUp();
  }, 30_000);

  it("speech synthesis failing mid-reply is a failed turn (and an error), not an interrupted one", async () => {
    const real = parley.services.tts;
    // The greeting comes from the speech cache (the real synthesizer); replies fail after their first chunk.
    const failing: TtsProvider = {
      name: "failing",
      ready: () => real.ready(),
      close: async () => {},
      async *synthesize(text, signal) {
        for await (const chunk of real.synthesize(text, signal)) {
          yield chunk;
          throw new Error("synthesis crashed");
        }
      },
    };
    const { base } = await parley.start({ tts: failing });
    const call = new TwilioCall({ baseUrl: base });
    await call.connect();
    await call.waitFor(() => finishedUtterances(call) >= 1, 15_000, "greeting");
    call.say(await clipMulaw("whats-the-weather-like"));
    call.silence(1500);
    // The reply breaks off; the cached apology plays to its end.
    await call.waitFor(() => finishedUtterances(call) >= 2, 20_000, "the apology");
    const rec = await record(base, call.callSid);
    const reply = rec.turns.find((t) => t.kind === "reply")!;
    expect(reply).toMatchObject({ failed: true, interrupted: false });
    expect(rec.errors.map((e) => [e.type, e.message])).toContainEqual(["tts.error", "synthesis crashed"]);
    expect(rec.bargeIns).toBe(0);
    expect(rec.live).toBe(true);
    await call.hangUp();
  }, 60_000);
});
