import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Services } from "../src/call/services.ts";
import { RoutingTable } from "../src/session/session.ts";
import type { CallRecord } from "../src/store/call-record.ts";
import { clipMulaw } from "./helpers/audio.ts";
import { useParley } from "./helpers/harness.ts";
import { RelayApp } from "./helpers/relay-app.ts";
import { finishedUtterances, TwilioCall } from "./helpers/twilio-client.ts";

const AUTH = "relay-e2e-auth-token";
const API_TOKEN = "relay-e2e-api-token-0123456789";
const LINE = "+15550100088";

/**
 * An unmodified ConversationRelay-style app (test/helpers/relay-app.ts, which knows nothing of Parley) is the brain
 * of whole calls through Parley: real speech in, its streamed tokens spoken out, barge-in reported as Twilio reports
 * it, touch tones, its `end` with handoff data, and an app that goes away.
 */
describe("ConversationRelay apps as the brain of a call", () => {
  let app: RelayApp;
  const LONG = "Well, let me tell you all about the weather, the tides, the winds and the stars, which will take a good while to say out loud.";
  beforeAll(async () => {
    app = await RelayApp.start({
      authToken: AUTH,
      greeting: ["Hi, ", "this is ", "the relay app."],
      reply: (prompt) => (prompt.includes("stars") ? [LONG] : ["You ", "asked: ", prompt, "."]),
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
  const start = (extra: Partial<Services> = {}) =>
    parley.start({ routes: RoutingTable.parse({ [LINE]: { agent: { relay: app.url, customParameters: { tenant: "acme" } } } }), ...extra }, { twilioAuthToken: AUTH });
  const record = async (base: string, sid: string) =>
    (await (await fetch(`${base}/api/calls/${sid}`, { headers: { authorization: `Bearer ${API_TOKEN}` } })).json()) as CallRecord & { live: boolean };

  it("holds a conversation with barge-in; the app sees setup, prompts, the words heard and touch tones", async () => {
    const { base } = await start();
    const call = new TwilioCall({ baseUrl: base, to: LINE, authToken: AUTH });
    await call.connect();
    await app.waitFor(() => app.sessions.length > 0 && !!app.session.setup, "setup", 10_000);
    const s = app.session;
    expect(s.signatureValid).toBe(true);
    expect(s.setup).toMatchObject({ type: "setup", callSid: call.callSid, from: "+15550100001", to: LINE, direction: "inbound", customParameters: { tenant: "acme" } });

    // The app speaks first (its tokens arrive outside any turn), then answers the caller's question.
    await call.waitFor(() => finishedUtterances(call) >= 1, 20_000, "the app's greeting");
    call.say(await clipMulaw("whats-the-weather-like"));
    call.silence(1500);
    await app.waitFor(() => s.of("prompt").length >= 1, "the prompt", 20_000);
    expect(s.of("prompt")[0]).toMatchObject({ voicePrompt: "what's the weather like", last: true });
    await call.waitFor(() => finishedUtterances(call) >= 2, 20_000, "the app's reply");

    // The caller talks over a long reply: Twilio's interrupt, with what the caller heard of it.
    const before = call.frames.length;
    call.say(await clipMulaw("new-home-in-the-stars"));
    call.silence(1200);
    await call.waitFor(() => call.frames.length > before + 40 && call.frames.slice(before).some((f) => f.playedAt !== null), 20_000, "the long reply to be heard");
    const bargeIn = call.say(await clipMulaw("whats-the-weather-like"));
    await call.waitFor(() => call.eventsOf("clear", bargeIn.startsAt).length > 0, 10_000, "clear");
    await app.waitFor(() => s.of("interrupt").length >= 1, "interrupt", 10_000);
    const interrupt = s.of("interrupt")[0]!;
    expect(LONG.startsWith(String(interrupt.utteranceUntilInterrupt))).toBe(true);
    expect(String(interrupt.utteranceUntilInterrupt).length).toBeGreaterThan(0);
    expect(String(interrupt.utteranceUntilInterrupt).length).toBeLessThan(LONG.length);
    expect(interrupt.durationUntilInterruptMs).toBeGreaterThan(0);
    call.silence(1500);
    await app.waitFor(() => s.of("prompt").length >= 3, "the prompt after the barge-in", 20_000);
    const heardBefore = finishedUtterances(call);
    await call.waitFor(() => finishedUtterances(call) > heardBefore, 20_000, "the reply to the third prompt");

    // Touch tones go to the app as dtmf frames, never as a prompt.
    const prompts = s.of("prompt").length;
    call.dtmf("4");
    call.dtmf("2");
    await app.waitFor(() => s.of("dtmf").length >= 2, "dtmf", 10_000);
    expect(s.of("dtmf").map((f) => f.digit)).toEqual(["4", "2"]);
    await new Promise((r) => setTimeout(r, 2500));
    expect(s.of("prompt").length).toBe(prompts);

    const rec = await record(base, call.callSid);
    const heard = rec.turns.filter((t) => t.role === "assistant").map((t) => t.text);
    expect(heard[0]).toBe("Hi, this is the relay app.");
    expect(heard).toContain("You asked: what's the weather like.");
    expect(rec.turns.find((t) => t.interrupted)?.heardText).toBe(String(interrupt.utteranceUntilInterrupt).trim());
    await call.hangUp();
  });

  it("the app's end carries handoff data into the record and the outcome, after its last words are heard", async () => {
    const { base } = await start();
    const known = app.sessions.length;
    const call = new TwilioCall({ baseUrl: base, to: LINE, authToken: AUTH });
    await call.connect();
    await app.waitFor(() => app.sessions.length > known && !!app.session.setup, "this call's setup", 10_000);
    const s = app.session;
    await call.waitFor(() => finishedUtterances(call) >= 1, 20_000, "the app's greeting");
    await s.say(["That is all, ", "goodbye!"], { last: true });
    s.end(JSON.stringify({ reason: "done", score: 3 }));
    await call.waitFor(() => !call.isOpen, 20_000, "Parley to end the call");
    expect(finishedUtterances(call)).toBeGreaterThanOrEqual(2);
    for (let i = 0; i < 100; i++) {
      const rec = await record(base, call.callSid);
      if (rec.outcome) {
        expect(rec.endReason).toBe("relay app ended the session");
        expect(rec.handoffData).toEqual({ reason: "done", score: 3 });
        expect(rec.outcome.handoffData).toEqual({ reason: "done", score: 3 });
        // Words the app sends outside a turn are spoken clause by clause, each as it is complete.
        expect(rec.turns.filter((t) => t.role === "assistant").map((t) => t.text).join(" ")).toBe("Hi, this is the relay app. That is all, goodbye!");
        return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error("no outcome");
  });

  it("junk from the app gets an error back and the call goes on; an app that goes away twice leaves an apology and an ended call", async () => {
    const { base } = await start();
    const known = app.sessions.length;
    const call = new TwilioCall({ baseUrl: base, to: LINE, authToken: AUTH });
    await call.connect();
    await app.waitFor(() => app.sessions.length > known && !!app.session.setup, "this call's setup", 10_000);
    const first = app.session;
    await call.waitFor(() => finishedUtterances(call) >= 1, 20_000, "the app's greeting");
    first.sendRaw("this is not json");
    first.send({ type: "text", token: 42 });
    await app.waitFor(() => first.of("error").length >= 2, "errors", 10_000);
    expect(String(first.of("error")[0]!.description)).toMatch(/JSON/i);

    // Dropped once: Parley reconnects with a new setup. Dropped again, and refused: the caller hears the apology.
    const sessions = app.sessions.length;
    first.drop();
    await app.waitFor(() => app.sessions.length > sessions && !!app.session.setup, "the reconnect", 10_000);
    const before = finishedUtterances(call);
    app.refuse = true;
    app.session.drop();
    await call.waitFor(() => !call.isOpen, 30_000, "the call to end");
    app.refuse = false;
    expect(finishedUtterances(call)).toBeGreaterThan(before);
    const rec = await record(base, call.callSid);
    expect(rec.turns.at(-1)).toMatchObject({ role: "assistant", text: "Sorry, I'm having trouble answering right now." });
    expect(rec.endReason).toBe("relay app unreachable");
    expect(rec.errors.some((e) => e.type === "relay.error")).toBe(true);
  });
});
