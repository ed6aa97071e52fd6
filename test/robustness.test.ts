import { describe, expect, it } from "vitest";
import WebSocket from "ws";
import { APOLOGY_TEXT } from "../machines/call.machine.ts";
import type { Services } from "../src/call/services.ts";
import type { AgentProvider } from "../src/providers/types.ts";
import type { CallRecord } from "../src/store/call-record.ts";
import { signWebhook } from "../src/carriers/twilio/verify.ts";
import { clipMulaw } from "./helpers/audio.ts";
import { useParley } from "./helpers/harness.ts";
import { finishedUtterances, TwilioCall } from "./helpers/twilio-client.ts";

/** Bad input gets a clear error and loses nothing: other calls, this call and its record carry on. */
describe("robustness", () => {
  const parley = useParley(() => ({ GREETING: "Hi, Parley here." }));
  const start = async (overrides: Partial<Services> = {}, config: Partial<Services["config"]> = {}) => (await parley.start(overrides, config)).base;
  const record = async (base: string, sid: string) => (await (await fetch(`${base}/api/calls/${sid}`)).json()) as CallRecord & { live: boolean };

  it("counts malformed messages per call and never disturbs this call or another", async () => {
    const base = await start();
    const victim = new TwilioCall({ baseUrl: base });
    const bystander = new TwilioCall({ baseUrl: base });
    await Promise.all([victim.connect(), bystander.connect()]);

    victim.sendRaw("{not json");
    victim.sendRaw(Buffer.from([1, 2, 3]), true);
    victim.sendRaw(JSON.stringify({ event: "media", streamSid: victim.streamSid, media: { payload: "!!!not base64!!!" } }));
    victim.sendRaw(JSON.stringify({ event: "media", streamSid: victim.streamSid, media: { payload: "A".repeat(80_000) } }));
    victim.sendRaw(JSON.stringify({ event: "media", streamSid: "MZ-someone-else", media: { payload: "/w==" } }));
    victim.sendRaw(JSON.stringify({ event: "start", streamSid: victim.streamSid, start: { streamSid: victim.streamSid, callSid: victim.callSid } }));
    victim.sendRaw(JSON.stringify({ event: "teleport" }));

    // Both greetings play to their last mark; neither socket is closed.
    await Promise.all([
      victim.waitFor(() => finishedUtterances(victim) >= 1, 15_000, "victim greeting"),
      bystander.waitFor(() => finishedUtterances(bystander) >= 1, 15_000, "bystander greeting"),
    ]);
    expect(victim.closedBy).toBeNull();
    expect(bystander.closedBy).toBeNull();

    // The victim's conversation still works after the garbage.
    const before = victim.frames.length;
    victim.say(await clipMulaw("whats-the-weather-like"));
    victim.silence(1500);
    await victim.waitFor(() => victim.frames.length > before, 15_000, "a reply after the garbage");

    const rec = await record(base, victim.callSid);
    expect(rec.protocolErrors).toEqual({ bad_json: 1, binary_frame: 1, bad_payload: 1, oversized: 1, wrong_stream: 1, duplicate_start: 1, unknown_event: 1 });
    expect((await record(base, bystander.callSid)).protocolErrors).toEqual({});
    await Promise.all([victim.hangUp(), bystander.hangUp()]);
  }, 60_000);

  it("refuses a stream without a valid token, and counts media sent before start", async () => {
    const base = await start();
    const ws = new WebSocket(base.replace("http", "ws") + "/voice/stream");
    await new Promise((r) => ws.once("open", r));
    ws.send(JSON.stringify({ event: "media", streamSid: "MZ1", media: { payload: "/w==" } }));
    const closed = new Promise<number>((r) => ws.once("close", (code) => r(code)));
    ws.send(JSON.stringify({ event: "start", streamSid: "MZ1", start: { streamSid: "MZ1", callSid: "CA1", customParameters: { token: "forged" } } }));
    expect(await closed).toBe(1008);
    const health = (await (await fetch(`${base}/healthz`)).json()) as { protocolErrors: Record<string, number> };
    expect(health.protocolErrors.before_start).toBeGreaterThanOrEqual(1);

    // A token is single-use: a second stream for the same call is refused.
    const call = new TwilioCall({ baseUrl: base });
    const { streamUrl, parameters } = await call.fetchTwiml();
    const first = new WebSocket(streamUrl);
    const second = new WebSocket(streamUrl);
    await Promise.all([new Promise((r) => first.once("open", r)), new Promise((r) => second.once("open", r))]);
    const sendStart = (ws: WebSocket, sid: string) =>
      ws.send(JSON.stringify({ event: "start", streamSid: sid, start: { streamSid: sid, callSid: call.callSid, customParameters: parameters } }));
    sendStart(first, "MZa");
    const secondClosed = new Promise<number>((r) => second.once("close", (code) => r(code)));
    sendStart(second, "MZb");
    expect(await secondClosed).toBe(1008);
    first.close();
  }, 30_000);

  it("with TWILIO_AUTH_TOKEN, unsigned or forged webhooks and upgrades get 403; signed ones work", async () => {
    const token = "test-auth-token";
    const base = await start({}, { twilioAuthToken: token });
    const url = `${base}/voice/webhook`;
    const params = { CallSid: "CA0123456789abcdef0123456789abcdef", From: "+15550100001", To: "+15550100002" };
    const post = (headers: Record<string, string>) =>
      fetch(url, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded", ...headers }, body: new URLSearchParams(params).toString() });
    expect((await post({})).status).toBe(403);
    expect((await post({ "x-twilio-signature": signWebhook("wrong-token", url, params) })).status).toBe(403);
    expect((await post({ "x-twilio-signature": signWebhook(token, url, { ...params, From: "+15559999999" }) })).status).toBe(403);
    expect((await post({ "x-twilio-signature": signWebhook(token, url, params) })).status).toBe(200);

    const upgrade = (headers: Record<string, string>) =>
      new Promise<number>((resolve) => {
        const ws = new WebSocket(base.replace("http", "ws") + "/voice/stream", { headers });
        ws.once("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
        ws.once("open", () => {
          ws.close();
          resolve(101);
        });
      });
    expect(await upgrade({})).toBe(403);
    expect(await upgrade({ "x-twilio-signature": signWebhook("wrong-token", base.replace("http", "ws") + "/voice/stream", {}) })).toBe(403);

    const call = new TwilioCall({ baseUrl: base, authToken: token });
    await call.connect();
    await call.waitFor(() => call.frames.length > 0, 10_000, "greeting over a signed stream");
    await call.hangUp();
  }, 30_000);

  it("an agent failing mid-turn gives a spoken apology, the call goes on, and the record names the error", async () => {
    let turns = 0;
    const flaky: AgentProvider = {
      name: "flaky",
      async *respond() {
        turns++;
        yield "Let me check";
        throw new Error("upstream 503");
      },
    };
    const base = await start({ agent: flaky });
    const call = new TwilioCall({ baseUrl: base });
    await call.connect();
    await call.waitFor(() => finishedUtterances(call) >= 1, 15_000, "greeting");
    call.say(await clipMulaw("whats-the-weather-like"));
    call.silence(1500);
    await call.waitFor(() => finishedUtterances(call) >= 2, 20_000, "the apology to finish playing");
    expect(call.closedBy).toBeNull();
    const rec = await record(base, call.callSid);
    expect(turns).toBe(1);
    expect(rec.errors.map((e) => [e.type, e.message])).toContainEqual(["agent.error", "upstream 503"]);
    const reply = rec.turns.find((t) => t.kind === "reply")!;
    // The unfinished clause is dropped rather than spoken as a fragment; the apology is what the caller hears.
    expect(reply.text).toBe(APOLOGY_TEXT);
    expect(reply.interrupted).toBe(false);
    expect(rec.live).toBe(true);
    await call.hangUp();
  }, 60_000);
});
