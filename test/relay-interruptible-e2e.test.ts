import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RoutingTable } from "../src/session/session.ts";
import type { CallRecord } from "../src/store/call-record.ts";
import { clipMulaw } from "./helpers/audio.ts";
import { useParley } from "./helpers/harness.ts";
import { RelayApp } from "./helpers/relay-app.ts";
import { finishedUtterances, TwilioCall } from "./helpers/twilio-client.ts";

const AUTH = "relay-interruptible-auth-token";
const API_TOKEN = "relay-interruptible-api-token-0123";
const LINE = "+15550100089";
const LONG = "Please listen carefully, your confirmation code is four two seven, and your table is booked for eight people at seven tonight.";

/**
 * A relay app marks its reply `interruptible: false` (then "dtmf"), and a caller talks over it with real speech:
 * as on Twilio, the reply is not cut (no `clear`, no `interrupt` to the app, no barge-in on the record) and plays
 * whole; what the caller said over it is transcribed and reaches the app as the next prompt once it has played.
 */
describe("ConversationRelay: a reply the caller's speech may not cut", () => {
  let app: RelayApp;
  let mode: boolean | string = false;
  let question = false;
  beforeAll(async () => {
    app = await RelayApp.start({
      authToken: AUTH,
      greeting: ["Hi, ", "this is ", "the relay app."],
      // The first prompt of each round (the question) gets the long reply that may not be cut, the next (the words said
      // over it) a short answer. By order, not by words: a phrase-list recogniser may mishear the question.
      reply: (prompt, s) => (question ? ((question = false), void s.say([LONG], { interruptible: mode }), []) : ["You ", "asked: ", prompt, "."]),
    });
  });
  afterAll(async () => {
    await app?.close();
  });

  const parley = useParley(() => ({
    GREETING: "",
    STT_MODE: "phrases",
    STT_PHRASES: "what's the weather like|we must find a new home in the stars",
    TRANSCRIPT_TIMEOUT_MS: "15000",
    API_TOKEN,
  }));
  const record = async (base: string, sid: string) =>
    (await (await fetch(`${base}/api/calls/${sid}`, { headers: { authorization: `Bearer ${API_TOKEN}` } })).json()) as CallRecord;

  it('interruptible false, then "dtmf": the reply plays whole through the caller\'s speech, whose words are the next prompt', async () => {
    const { base } = await parley.start({ routes: RoutingTable.parse({ [LINE]: { agent: { relay: app.url } } }) }, { twilioAuthToken: AUTH });
    const call = new TwilioCall({ baseUrl: base, to: LINE, authToken: AUTH });
    await call.connect();
    await app.waitFor(() => app.sessions.length > 0 && !!app.session.setup, "setup", 10_000);
    const s = app.session;
    await call.waitFor(() => finishedUtterances(call) >= 1, 20_000, "the app's greeting");

    for (const setting of [false, "dtmf"]) {
      mode = setting;
      question = true;
      const prompts = s.of("prompt").length;
      const heard = finishedUtterances(call);
      call.say(await clipMulaw("new-home-in-the-stars"));
      call.silence(1200);
      await app.waitFor(() => s.of("prompt").length > prompts, "the question", 20_000);
      const before = call.frames.length;
      await call.waitFor(() => call.frames.length > before + 40 && call.frames.slice(before).some((f) => f.playedAt !== null), 20_000, "the reply to be heard");
      expect(finishedUtterances(call)).toBe(heard); // the caller talks while the reply is still playing
      const over = call.say(await clipMulaw("whats-the-weather-like"));
      call.silence(1500);
      await app.waitFor(() => s.of("prompt").length > prompts + 1, "the words said over the reply, as the next prompt", 40_000);
      expect(s.of("prompt").at(-1)).toMatchObject({ voicePrompt: "what's the weather like", last: true });
      expect(finishedUtterances(call)).toBeGreaterThan(heard); // ...sent once the reply had been heard
      expect(call.eventsOf("clear", over.startsAt)).toEqual([]);
      expect(s.of("interrupt")).toEqual([]);
      await call.waitFor(() => finishedUtterances(call) > heard + 1, 20_000, "the answer to the held words");
    }

    const rec = await record(base, call.callSid);
    const longs = rec.turns.filter((t) => t.role === "assistant" && t.text === LONG);
    expect(longs).toHaveLength(2);
    for (const t of longs) expect(t).toMatchObject({ heardText: LONG, interrupted: false });
    expect(rec.bargeIns).toBe(0);
    expect(rec.turns.filter((t) => t.role === "assistant").map((t) => t.text)).toContain("You asked: what's the weather like.");
    await call.hangUp();
  }, 120_000);
});
