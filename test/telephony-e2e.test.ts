import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeServices, createLogger, createServices } from "../src/bootstrap.ts";
import type { Services } from "../src/call/services.ts";
import { loadConfig } from "../src/config.ts";
import { buildApp, type App } from "../src/server/app.ts";
import { clipMulaw } from "./helpers/audio.ts";
import { finishedUtterances, type TwilioCall } from "./helpers/twilio-client.ts";
import { TwilioStandIn } from "./helpers/twilio-standin.ts";
import { apiClient } from "./helpers/api-client.ts";

/**
 * The control plane end to end, against a local stand-in for Twilio that behaves as Twilio does: it places calls
 * from the REST API, rings, answers, runs the inline TwiML, opens the Media Stream, plays audio on its own clock,
 * echoes marks, follows <Connect action> after a dropped socket, and sends signed status callbacks.
 */
describe("telephony control plane, against a Twilio stand-in", () => {
  const ACCOUNT = "AC0123456789abcdef0123456789abcdef";
  const AUTH = "standin-auth-token";
  const API_TOKEN = "e2e-api-token-0123456789abcdef";
  let dataDir: string;
  let services: Services;
  let app: App;
  let base: string;
  let standIn: TwilioStandIn;

  const { api, record, waitRecord } = apiClient(() => base, API_TOKEN);

  beforeAll(async () => {
    standIn = await TwilioStandIn.start({ accountSid: ACCOUNT, authToken: AUTH, ringMs: 300 });
    dataDir = mkdtempSync(path.join(tmpdir(), "parley-tel-"));
    const config = loadConfig({
      env: {
        DATA_DIR: dataDir,
        LOG_LEVEL: "silent",
        PORT: "0",
        GREETING: "Hello! You have reached Parley. How can I help?",
        TWILIO_ACCOUNT_SID: ACCOUNT,
        TWILIO_AUTH_TOKEN: AUTH,
        TWILIO_API_URL: standIn.url,
        TWILIO_FROM_NUMBER: "+15550100001",
        API_TOKEN,
      },
    });
    services = await createServices(config, createLogger(config));
    app = buildApp(services);
    base = `http://127.0.0.1:${await app.listen()}`;
  }, 120_000);

  afterAll(async () => {
    await app?.close();
    if (services) await closeServices(services);
    await standIn?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("notify: rings, speaks the message whole over the stream, hangs up after its last mark", async () => {
    const placed = await api("/api/calls", { to: "+15550100002", mode: "notify", message: "Your build on main is broken." });
    expect(placed.status).toBe(201);
    expect(placed.json.state).toEqual({ connecting: "ringing" });
    const call = standIn.call(placed.json.callSid);
    const create = standIn.requests.find((r) => r.path.endsWith("/Calls.json"))!;
    expect(create.form.get("Twiml")).toMatch(/^<\?xml[^>]*\?><Response><Connect action="[^"]+\/voice\/connect-action\?connect=[\w-]+" method="POST"><Stream url="ws:\/\/[^"]+\/voice\/stream">/);
    expect(create.form.get("Twiml")).not.toMatch(/<Say|<Gather|<Play/);
    expect(create.form.getAll("StatusCallbackEvent")).toEqual(["initiated", "ringing", "answered", "completed"]);

    const stream = await call.waitForStream(1);
    await call.ended;
    expect(finishedUtterances(stream)).toBe(1);
    expect(stream.frames.length).toBeGreaterThan(50); // the whole message, about 2 s
    expect(stream.frames.every((f) => f.playedAt !== null)).toBe(true); // ... and all of it was heard
    const hangup = standIn.requests.find((r) => r.path.endsWith(`/Calls/${call.sid}.json`))!;
    expect(hangup.form.get("Status")).toBe("completed");
    expect(call.statusCallbacksSent.map((c) => c.status)).toEqual(["initiated", "ringing", "in-progress", "completed"]);

    const rec = await waitRecord(call.sid, (r) => r.statuses.includes("completed"), "the completed callback in the record");
    expect(rec).toMatchObject({ direction: "outbound", mode: "notify", greetingDelivered: true, endReason: "message delivered", live: false });
    expect(rec.turns.map((t) => [t.role, t.kind, t.text])).toEqual([["assistant", "greeting", "Your build on main is broken."]]);
  }, 60_000);

  it("conversation: message, a reply, API speech, live events, and a hang-up through the API", async () => {
    const placed = await api("/api/calls", { to: "+15550100003", mode: "conversation", message: "Hi, it's Parley calling back." });
    const sid = placed.json.callSid as string;
    const call = standIn.call(sid);

    const events: { type: string }[] = [];
    const sse = fetch(`${base}/api/calls/${sid}/events`, { headers: { authorization: `Bearer ${API_TOKEN}` } }).then(async (res) => {
      const text = await res.text();
      for (const block of text.split("\n\n")) {
        const type = /^event: (.+)$/m.exec(block)?.[1];
        if (type) events.push({ type });
      }
    });

    const stream = await call.waitForStream(1);
    await stream.waitFor(() => finishedUtterances(stream) >= 1, 15_000, "the message");
    stream.say(await clipMulaw("whats-the-weather-like"));
    stream.silence(1500);
    await stream.waitFor(() => finishedUtterances(stream) >= 2, 20_000, "the reply");

    expect((await api(`/api/calls/${sid}/speak`, { text: "One more thing: your table is ready." })).status).toBe(202);
    await stream.waitFor(() => finishedUtterances(stream) >= 3, 20_000, "the announcement");

    expect((await api(`/api/calls/${sid}/hangup`, {})).status).toBe(202);
    await call.ended;
    await sse;
    const rec = await waitRecord(sid, (r) => !r.live && r.statuses.includes("completed"), "the end");
    expect(rec.endReason).toBe("hung up through the control API");
    expect(rec.turns.map((t) => [t.role, t.kind ?? ""])).toEqual([
      ["assistant", "greeting"],
      ["user", ""],
      ["assistant", "reply"],
      ["assistant", "announcement"],
      ["assistant", "goodbye"],
    ]);
    expect(finishedUtterances(stream)).toBe(4); // the goodbye was heard before the hang-up
    const types = new Set(events.map((e) => e.type));
    for (const t of ["snapshot", "state", "transcript", "turn", "mark", "call.status", "end"]) expect(types).toContain(t);
    const listed = await api("/api/calls?direction=outbound&state=ended");
    expect(listed.json.calls.map((c: { callSid: string }) => c.callSid)).toContain(sid);
  }, 90_000);

  it("a socket cut mid-greeting resumes on a new stream; the caller hears the whole greeting, then talks with keys", async () => {
    const call = await standIn.inbound({ webhookUrl: `${base}/voice/webhook`, from: "+15550100004", to: "+15550100001" });
    const first = await call.waitForStream(1);
    await first.waitFor(() => first.frames.filter((f) => f.playedAt !== null).length >= 10, 10_000, "the greeting to start playing");
    call.drop();
    const second = await call.waitForStream(2, 15_000);
    expect(second.streamSid).not.toBe(first.streamSid);
    expect(call.actionRequests).toHaveLength(1);
    await second.waitFor(() => finishedUtterances(second) >= 1, 15_000, "the whole greeting on the new stream");
    // The greeting is ~3 s: the new stream carried all of it, not the rest of it.
    expect(second.frames.length).toBeGreaterThanOrEqual(first.frames.length);
    expect(second.frames.length).toBeGreaterThan(100);

    second.dtmf("4");
    second.dtmf("2");
    await second.waitFor(() => finishedUtterances(second) >= 2, 15_000, "the reply to the keys");
    await call.callerHangsUp();
    await call.ended;

    const rec = await waitRecord(call.sid, (r) => !r.live, "the end");
    expect(rec.greetingDelivered).toBe(true);
    expect(rec.endReason).toBe("caller hung up");
    expect(rec.turns.find((t) => t.role === "user")!.text).toBe("the caller pressed 4 2");
    expect(rec.turns.find((t) => t.kind === "reply")!.text).toBe("You said: the caller pressed 4 2.");
    const states = rec.states.map((s) => JSON.stringify(s.value));
    expect(states).toContain('{"live":"reconnecting"}');
  }, 60_000);

  it("stop, socket close and the completed callback, in any order, end the call once", async () => {
    const call = await standIn.inbound({ webhookUrl: `${base}/voice/webhook`, from: "+15550100005", to: "+15550100001" });
    const stream = await call.waitForStream(1);
    await stream.waitFor(() => stream.frames.length > 0, 10_000, "audio");
    // Twilio's completed callback first (signed, as Twilio sends it) ...
    const { signWebhook } = await import("../src/carriers/twilio/verify.ts");
    const url = `${base}/voice/status`;
    const params = { CallSid: call.sid, AccountSid: ACCOUNT, CallStatus: "completed", SequenceNumber: "9" };
    const post = () =>
      fetch(url, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signWebhook(AUTH, url, params) }, body: new URLSearchParams(params).toString() });
    expect((await post()).status).toBe(200);
    // ... then stop and close from the caller's side, and the same callback again (Twilio retried).
    await call.callerHangsUp().catch(() => {});
    expect((await post()).status).toBe(409);
    const rec = await waitRecord(call.sid, (r) => !r.live, "the end");
    expect(rec.endReason).toBe("call completed");
    expect(rec.statuses.filter((s) => s === "completed")).toHaveLength(1);
    // The call ended once: the stop and close that followed changed nothing.
    await new Promise((r) => setTimeout(r, 200));
    const again = await record(call.sid);
    expect([again.endedAt, again.endReason]).toEqual([rec.endedAt, rec.endReason]);
  }, 30_000);
});
