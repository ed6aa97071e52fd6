import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Services } from "../src/call/services.ts";
import { verifyOutcomeSignature, SIGNATURE_HEADER } from "../src/outcome/webhook.ts";
import { RoutingTable } from "../src/session/session.ts";
import type { CallRecord } from "../src/store/call-record.ts";
import { clipMulaw } from "./helpers/audio.ts";
import { useParley } from "./helpers/harness.ts";
import { finishedUtterances, TwilioCall } from "./helpers/twilio-client.ts";

const ASSISTANT_LINE = "+15550100077";
const OUTCOME_SECRET = "outcome-secret-0123456789";

/**
 * An assistant drives a call turn by turn (`agent: "assistant"`), over a real stream with real recorded speech: ask,
 * the callee's answer, barge-in over a question, the filler while the assistant thinks, silence, the end; and every
 * call's outcome, on the record, on SSE and POSTed signed to its webhook.
 */
describe("assistant-driven calls and outcomes", () => {
  const parley = useParley(() => ({
    GREETING: "Hello.",
    STT_MODE: "phrases",
    // The clause the VAD confirms can start a syllable late on a loaded machine: the shorter forms keep it matchable.
    STT_PHRASES: "what's the weather like|the weather like|we must find a new home in the stars|find a new home in the stars",
    ASSISTANT_FILLER_MS: "400",
    // Two cores shared with everything else: recognition must not be cut short by a busy machine.
    TRANSCRIPT_TIMEOUT_MS: "15000",
    OUTCOME_WEBHOOK_SECRET: OUTCOME_SECRET,
  }));

  let receiver: http.Server;
  let hookUrl = "";
  const hooks: { body: string; signature: string | undefined }[] = [];
  beforeAll(async () => {
    receiver = http.createServer((req, res) => {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        hooks.push({ body, signature: req.headers[SIGNATURE_HEADER] as string | undefined });
        // The first try fails, as a busy receiver would: the second must follow.
        res.writeHead(hooks.length === 1 ? 503 : 200).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
  });
  afterAll(() => new Promise<void>((r) => receiver.close(() => r())));

  const start = async (extra: Partial<Services> = {}) => {
    const routes = RoutingTable.parse({
      [ASSISTANT_LINE]: { agent: "assistant", message: "Hi, this is Parley calling for Sam.", instructions: "Find out what the callee wants.", outcomeWebhook: hookUrl, metadata: { ticket: 42 } },
    });
    return parley.start({ routes, ...extra });
  };
  const api = (base: string, p: string, body?: unknown) =>
    fetch(`${base}${p}`, { method: body === undefined ? "GET" : "POST", headers: body === undefined ? {} : { "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) });
  const record = async (base: string, sid: string) => (await (await api(base, `/api/calls/${sid}`)).json()) as CallRecord & { live: boolean };

  it("ask: says the question, returns the callee's words; the next say is the reply; filler while the assistant thinks", async () => {
    const { base } = await start();
    const call = new TwilioCall({ baseUrl: base, to: ASSISTANT_LINE });
    await call.connect();
    await call.waitFor(() => finishedUtterances(call) >= 1, 20_000, "the session's first words");

    const asked = api(base, `/api/calls/${call.callSid}/ask`, { text: "What would you like to know?", timeoutMs: 30_000 });
    await call.waitFor(() => finishedUtterances(call) >= 2, 20_000, "the question");
    call.say(await clipMulaw("whats-the-weather-like"));
    call.silence(1500);
    const res = await asked;
    expect(res.status).toBe(200);
    const answer = (await res.json()) as { reply: string; status: string };
    expect(answer.status).toBe("answered");
    expect(answer.reply).toMatch(/the weather like$/);

    // The assistant takes its time: the caller hears the filler, then the assistant's words, in one reply.
    const answeredAt = call.frames.length;
    await call.waitFor(() => call.frames.length > answeredAt + 20, 20_000, "the filler");
    expect((await api(base, `/api/calls/${call.callSid}/speak`, { text: "It is sunny today." })).status).toBe(202);
    await call.waitFor(() => finishedUtterances(call) >= 3, 20_000, "the assistant's reply");
    const rec = await record(base, call.callSid);
    const replies = rec.turns.filter((t) => t.role === "assistant").map((t) => [t.kind, t.text]);
    expect(replies).toEqual([
      ["greeting", "Hi, this is Parley calling for Sam."],
      ["announcement", "What would you like to know?"],
      ["reply", "One moment. It is sunny today."],
    ]);
    expect(rec.session).toMatchObject({ agent: "assistant", metadata: { ticket: 42 } });
    expect(rec.events).toBeGreaterThan(0);
    await call.hangUp();
  });

  it("a callee who talks over the question is answered with their words (interrupted); silence times out; an ended call says ended", async () => {
    const { base } = await start();
    const call = new TwilioCall({ baseUrl: base, to: ASSISTANT_LINE });
    await call.connect();
    await call.waitFor(() => finishedUtterances(call) >= 1, 20_000, "the first words");

    const long = "I have a rather long question for you, about the weather, the stars, and whatever else you might like to talk about today.";
    const before = call.frames.length;
    const asked = api(base, `/api/calls/${call.callSid}/ask`, { text: long, timeoutMs: 30_000 });
    await call.waitFor(() => call.frames.length > before + 25, 20_000, "the question to be playing");
    call.say(await clipMulaw("new-home-in-the-stars"));
    call.silence(1500);
    const res = await asked;
    const got2 = (await res.json()) as { reply: string; status: string };
    expect(got2.status).toBe("interrupted");
    expect(got2.reply).toMatch(/home in the stars$/);
    await api(base, `/api/calls/${call.callSid}/speak`, { text: "Noted." });

    // A second ask while one waits is refused, clearly.
    const q = api(base, `/api/calls/${call.callSid}/ask`, { text: "Anything else?", timeoutMs: 2_000 });
    await new Promise((r) => setTimeout(r, 100));
    const second = await api(base, `/api/calls/${call.callSid}/ask`, { text: "Hello?", timeoutMs: 2_000 });
    expect(second.status).toBe(409);
    expect(((await second.json()) as { error: string }).error).toMatch(/already waiting/);
    expect(await (await q).json()).toEqual({ reply: "", status: "silence" });

    const last = api(base, `/api/calls/${call.callSid}/ask`, { text: "Are you there?", timeoutMs: 60_000 });
    await new Promise((r) => setTimeout(r, 300));
    await call.hangUp();
    expect(await (await last).json()).toEqual({ reply: "", status: "ended" });
    const after = await api(base, `/api/calls/${call.callSid}/ask`, { text: "Hello?" });
    expect(after.status).toBe(409);
    expect(((await after.json()) as { error: string }).error).toMatch(/not live/);
  });

  it("ask refuses calls an assistant does not drive; sessions are validated field by field", async () => {
    const { base } = await start();
    const call = new TwilioCall({ baseUrl: base, to: "+15550100001" });
    await call.connect();
    await call.waitFor(() => finishedUtterances(call) >= 1, 20_000, "the greeting");
    const res = await api(base, `/api/calls/${call.callSid}/ask`, { text: "Hi?" });
    expect(res.status).toBe(409);
    expect(((await res.json()) as { error: string }).error).toMatch(/agent "assistant"/);
    expect((await api(base, `/api/calls/CAnope/ask`, { text: "Hi?" })).status).toBe(404);
    await call.hangUp();

    expect(() => RoutingTable.parse({ "5550100": {} })).toThrow(/not an E\.164 number/);
    expect(() => RoutingTable.parse({ "*": { outcomeSchema: { type: "objekt" } } })).toThrow(/outcomeSchema: is not a valid JSON Schema/);
    expect(() => RoutingTable.parse({ "*": { agent: { relay: "http://x" } } })).toThrow(/ws:\/\/ or wss:\/\//);
    expect(() => RoutingTable.parse({ "*": { bogus: 1 } })).toThrow(/bogus/);
    expect(RoutingTable.parse({ "*": { message: "Hi" } }).sessionFor("+15550100009")).toEqual({ message: "Hi" });
  });

  it("every ended call gets its outcome: on the record, on SSE after the end, and POSTed signed, retried", async () => {
    hooks.length = 0;
    const { base } = await start();
    const call = new TwilioCall({ baseUrl: base, to: ASSISTANT_LINE });
    await call.connect();
    await call.waitFor(() => finishedUtterances(call) >= 1, 20_000, "the first words");
    const events: string[] = [];
    let outcomeEvent: { outcome: { summary: string } } | null = null;
    const sse = fetch(`${base}/api/calls/${call.callSid}/events`).then(async (res) => {
      const text = await res.text();
      for (const block of text.split("\n\n")) {
        const ev = /^event: (.+)$/m.exec(block)?.[1];
        if (!ev) continue;
        events.push(ev);
        if (ev === "outcome") outcomeEvent = JSON.parse(/^data: (.+)$/m.exec(block)![1]!);
      }
    });
    const asked = api(base, `/api/calls/${call.callSid}/ask`, { text: "What do you need?", timeoutMs: 30_000 });
    await call.waitFor(() => finishedUtterances(call) >= 2, 20_000, "the question");
    call.say(await clipMulaw("whats-the-weather-like"));
    call.silence(1200);
    const got = (await (await asked).json()) as { reply: string; status: string };
    expect(got.status).toBe("answered");
    expect(got.reply).toMatch(/the weather like$/);
    await api(base, `/api/calls/${call.callSid}/hangup`, { message: "Thanks, bye now." });
    await call.waitFor(() => !call.isOpen, 20_000, "Parley to hang up");
    await sse;
    expect(events.indexOf("end")).toBeGreaterThan(0);
    expect(events.indexOf("outcome")).toBeGreaterThan(events.indexOf("end"));
    expect(outcomeEvent!.outcome.summary).toMatch(/^Summary made from the transcript/);

    const rec = await record(base, call.callSid);
    expect(rec.turns.filter((t) => t.role === "assistant").at(-1)).toMatchObject({ kind: "goodbye", text: "Thanks, bye now." });
    expect(rec.outcome).toMatchObject({ callSid: call.callSid, summarySource: "transcript", data: null, dataError: null, endReason: "hung up through the control API", metadata: { ticket: 42 } });
    expect(rec.outcome!.summary).toMatch(/The caller said: ".*the weather like"/);
    expect(rec.outcome!.transcript.map((l) => l.role)).toEqual(["parley", "parley", "caller", "parley"]);
    expect(rec.outcome!.durationS).toBeGreaterThan(1);

    // The receiver failed once; the retry (1 s later) succeeded, signed over the same body.
    for (let i = 0; i < 100 && hooks.length < 2; i++) await new Promise((r) => setTimeout(r, 50));
    expect(hooks).toHaveLength(2);
    expect(hooks[0]!.body).toBe(hooks[1]!.body);
    expect(JSON.parse(hooks[1]!.body)).toEqual(rec.outcome);
    expect(verifyOutcomeSignature(OUTCOME_SECRET, hooks[1]!.body, hooks[1]!.signature, Math.floor(Date.now() / 1000))).toBe(true);
    for (let i = 0; i < 40; i++) {
      const r = await record(base, call.callSid);
      if (r.outcomeDeliveries.length >= 2) {
        expect(r.outcomeDeliveries.map((d) => [d.attempt, d.ok, d.status])).toEqual([
          [1, false, 503],
          [2, true, 200],
        ]);
        return;
      }
      await new Promise((res) => setTimeout(res, 50));
    }
    throw new Error("the deliveries were not recorded");
  });

  it("touch tones from the API reach the callee as audio and the record", async () => {
    const { base } = await start();
    const call = new TwilioCall({ baseUrl: base });
    await call.connect();
    await call.waitFor(() => finishedUtterances(call) >= 1, 20_000, "the greeting");
    const before = call.frames.length;
    expect((await api(base, `/api/calls/${call.callSid}/dtmf`, { digits: "12#" })).status).toBe(202);
    expect((await api(base, `/api/calls/${call.callSid}/dtmf`, { digits: "12x" })).status).toBe(400);
    await call.waitFor(() => finishedUtterances(call) >= 2, 20_000, "the tones");
    expect(call.frames.length - before).toBeGreaterThan(10);
    const rec = await record(base, call.callSid);
    expect(rec.turns.at(-1)).toMatchObject({ kind: "announcement", text: "(pressed 12#)" });
    await call.hangUp();
  });
});
