import { readdirSync } from "node:fs";
import path from "node:path";
import WebSocket from "ws";
import { generateKeyPairSync, sign } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CallRecord } from "../src/store/call-record.ts";
import { clipMulaw } from "./helpers/audio.ts";
import { useParley } from "./helpers/harness.ts";
import { finishedUtterances, speechBounds } from "./helpers/twilio-client.ts";
import { TelnyxStandIn, type StandInCall } from "./helpers/telnyx-standin.ts";
import { MULAW_TO_PCM16 } from "../src/audio/mulaw.ts";

/**
 * Parley on Telnyx (Call Control v2), end to end over real sockets, against a local stand-in that signs its webhooks
 * with a real Ed25519 key, takes Parley's commands through its REST API (sent by the official `telnyx` client), opens
 * the media stream on answer, plays Parley's audio on its own clock, echoes marks once played and honours `clear`.
 * Real speech from ../shared/audio, the real Silero VAD and recogniser. One Parley for the file.
 */
describe("Telnyx, against a stand-in", () => {
  const API_TOKEN = "telnyx-e2e-api-token-0123456789";
  let standIn: TelnyxStandIn;
  beforeAll(async () => {
    standIn = await TelnyxStandIn.start({ ringMs: 150 });
  });
  afterAll(async () => {
    await standIn?.close();
  });
  const parley = useParley(() => ({
    GREETING: "Hello! This is Parley.",
    TELNYX_API_KEY: standIn.apiKey,
    TELNYX_PUBLIC_KEY: standIn.publicKey,
    TELNYX_CONNECTION_ID: "2811212257810187875",
    TELNYX_FROM_NUMBER: "+15550100001",
    TELNYX_API_URL: standIn.url,
    API_TOKEN,
  }));
  let base = "";
  beforeAll(async () => {
    ({ base } = await parley.start());
  });

  const authed = { authorization: `Bearer ${API_TOKEN}` };
  const record = async (sid: string) => (await (await fetch(`${base}/api/calls/${sid}`, { headers: authed })).json()) as CallRecord & { live: boolean };
  const waitRecord = async (sid: string, check: (r: CallRecord & { live: boolean }) => boolean, what: string) => {
    for (let i = 0; i < 200; i++) {
      const r = await record(sid);
      if (check(r)) return r;
      await new Promise((res) => setTimeout(res, 50));
    }
    throw new Error(`timed out waiting for ${what}: ${JSON.stringify(await record(sid)).slice(0, 400)}`);
  };
  const place = async (body: Record<string, unknown>) => {
    const res = await fetch(`${base}/api/calls`, { method: "POST", headers: { ...authed, "content-type": "application/json" }, body: JSON.stringify(body) });
    expect(res.status).toBe(201);
    return ((await res.json()) as { callSid: string }).callSid;
  };
  const standInCallOf = (rec: CallRecord): StandInCall => standIn.calls.get(rec.carrierCallId!)!;

  it("inbound: answered by command, greeting, a reply, barge-in with heard text, a dropped stream resumed, hang-up", async () => {
    const call = await standIn.inbound({ webhookUrl: `${base}/telnyx/webhook`, from: "+15550100007", to: "+15550100001" });
    expect(call.webhooks[0]!.status).toBe(200);
    // Answered with one bidirectional PCMU stream, by REST command, carrying Parley's id in client_state.
    const answer = call.commands.find((c) => c.action === "answer")!;
    expect(answer.body).toMatchObject({ stream_track: "inbound_track", stream_codec: "PCMU", stream_bidirectional_mode: "rtp", stream_bidirectional_codec: "PCMU" });
    expect(answer.body.stream_url).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\/telnyx\/stream\/[A-Za-z0-9_-]+$/);
    const s1 = await standIn.waitForStream(call, 1);
    await s1.waitFor(() => finishedUtterances(s1) >= 1, 15_000, "the greeting's final mark");

    s1.say(await clipMulaw("whats-the-weather-like"));
    s1.silence(1200);
    await s1.waitFor(() => finishedUtterances(s1) >= 2, 20_000, "the reply");

    // Barge-in: a long question, then the caller talks over its reply.
    const before = s1.frames.length;
    s1.say(await clipMulaw("austen-0880"));
    s1.silence(900);
    await s1.waitFor(() => s1.frames.slice(before).filter((f) => f.playedAt !== null).length >= 25, 20_000, "half a second of the second reply heard");
    const stars = await clipMulaw("new-home-in-the-stars");
    const over = s1.say(stars);
    await s1.waitFor(() => s1.eventsOf("clear").length > 0, 10_000, "clear after barge-in");
    const clearAt = s1.eventsOf("clear")[0]!.at;
    expect(clearAt).toBeGreaterThan(over.startsAt + speechBounds(stars, (b) => MULAW_TO_PCM16[b]!).onsetMs);
    s1.silence(1200);
    await s1.waitFor(() => finishedUtterances(s1) >= 3, 20_000, "the reply after the barge-in");

    // The stream drops while the call is up: Telnyx says `streaming.stopped`, Parley asks `streaming_start`.
    await standIn.dropStream(call);
    const s2 = await standIn.waitForStream(call, 2);
    expect(call.commands.map((c) => c.action)).toContain("streaming_start");
    s2.say(await clipMulaw("whats-the-weather-like"));
    s2.silence(1200);
    await s2.waitFor(() => finishedUtterances(s2) >= 1, 20_000, "a reply on the resumed stream");
    await standIn.hangUp(call);

    const sid = (await waitRecord((await listBy(call.callControlId))!, (r) => !r.live, "the end")).callSid;
    const rec = await record(sid);
    // Parley's own id names the record; Telnyx's `v3:` id rides beside it and names no file.
    expect(sid).toMatch(/^TX[0-9a-f]{32}$/);
    expect(rec).toMatchObject({ carrier: "telnyx", carrierCallId: call.callControlId, direction: "inbound", endReason: "caller hung up", bargeIns: 1 });
    expect(rec.statuses).toContain("completed");
    const files = readdirSync(path.join(parley.services.config.dataDir, "calls"));
    expect(files).toContain(`${sid}.jsonl`);
    expect(files.filter((f) => f.includes(":") || f.includes("v3"))).toEqual([]);
    const interrupted = rec.turns.find((t) => t.interrupted)!;
    expect(interrupted.heardText!.length).toBeGreaterThan(0);
    expect(interrupted.text.startsWith(interrupted.heardText!)).toBe(true);
    expect(interrupted.heardText!.length).toBeLessThan(interrupted.text.length);
    expect(rec.turns.filter((t) => t.role === "assistant" && t.kind === "reply")).toHaveLength(4);
    expect([...s1.violations, ...s2.violations, ...standIn.errors]).toEqual([]);
  }, 90_000);

  /** Parley's id of the call Telnyx knows as `carrierCallId` (from the call list). */
  const listBy = async (carrierCallId: string): Promise<string | undefined> => {
    const { calls } = (await (await fetch(`${base}/api/calls`, { headers: authed })).json()) as { calls: { callSid: string }[] };
    for (const c of calls) if ((await record(c.callSid)).carrierCallId === carrierCallId) return c.callSid;
    return undefined;
  };

  it("notify: dials with the stream in the request, speaks the message whole, hangs up once its last mark is back", async () => {
    const sid = await place({ to: "+15550100002", mode: "notify", message: "Your build is broken." });
    expect(sid).toMatch(/^TX[0-9a-f]{32}$/);
    const rec0 = await record(sid);
    const call = standInCallOf(rec0);
    expect(call.commands[0]).toMatchObject({ action: "dial", body: { connection_id: "2811212257810187875", from: "+15550100001", stream_bidirectional_mode: "rtp", stream_auth_token: expect.any(String) } });
    const s = await standIn.waitForStream(call, 1);
    const rec = await waitRecord(sid, (r) => !r.live && r.statuses.includes("completed"), "the end");
    expect(finishedUtterances(s)).toBe(1);
    expect(call.commands.map((c) => c.action)).toContain("hangup");
    expect(rec).toMatchObject({ direction: "outbound", carrier: "telnyx", greetingDelivered: true, endReason: "message delivered" });
    expect(rec.statuses.slice(0, 2)).toEqual(["initiated", "answered"]);
  }, 30_000);

  it("outbound conversation: the message, a reply to real speech, touch tones, a hang-up through the API", async () => {
    const sid = await place({ to: "+15550100003", mode: "conversation", message: "Hi, it's Parley calling back." });
    const call = standInCallOf(await record(sid));
    const s = await standIn.waitForStream(call, 1);
    await s.waitFor(() => finishedUtterances(s) >= 1, 15_000, "the message");
    s.say(await clipMulaw("new-home-in-the-stars"));
    s.silence(1200);
    await s.waitFor(() => finishedUtterances(s) >= 2, 20_000, "the reply");
    // Touch tones over the stream, as Telnyx's `dtmf` frames.
    s.dtmf("4");
    s.dtmf("2");
    await s.waitFor(() => finishedUtterances(s) >= 3, 15_000, "the reply to the keys");
    expect((await fetch(`${base}/api/calls/${sid}/hangup`, { method: "POST", headers: { ...authed, "content-type": "application/json" }, body: "{}" })).status).toBe(202);
    const rec = await waitRecord(sid, (r) => !r.live, "the end");
    expect(rec.endReason).toBe("hung up through the control API");
    expect(rec.turns.map((t) => [t.role, t.kind ?? ""]).slice(0, 5)).toEqual([["assistant", "greeting"], ["user", ""], ["assistant", "reply"], ["user", ""], ["assistant", "reply"]]);
    expect(rec.turns[3]!.text).toBe("the caller pressed 4 2");
    expect(call.commands.map((c) => c.action)).toContain("hangup");
  }, 40_000);

  it("refuses forged webhooks (another key, a stale timestamp, none) and forged streams (no token, an unknown one)", async () => {
    const live = (await (await fetch(`${base}/healthz`)).json()) as { liveCalls: number };
    const fake = standIn.prepare({ webhookUrl: `${base}/telnyx/webhook`, from: "+15550100099", to: "+15550100001" });
    const other = generateKeyPairSync("ed25519").privateKey;
    const now = Math.floor(Date.now() / 1000);
    const forgedKey = (body: string) => ({ "telnyx-signature-ed25519": sign(null, Buffer.from(`${now}|${body}`), other).toString("base64"), "telnyx-timestamp": String(now) });
    const stale = (body: string) => standIn.signature(body, now - 600);
    const unsigned = () => ({});
    for (const forge of [forgedKey, stale, unsigned]) expect((await standIn.webhook(fake, "call.initiated", { direction: "incoming" }, forge)).status).toBe(403);
    expect(fake.commands).toEqual([]);
    // The same event, really signed, is answered: the refusals above were the signature's doing.
    const real = await standIn.webhook(fake, "call.initiated", { direction: "incoming" });
    expect(real.status).toBe(200);
    expect(fake.commands.map((c) => c.action)).toEqual(["answer"]);
    await standIn.waitForStream(fake, 1);
    await standIn.hangUp(fake);

    const upgrade = (p: string) =>
      new Promise<number>((resolve) => {
        const ws = new WebSocket(`${base.replace("http", "ws")}${p}`);
        ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
        ws.on("open", () => (ws.close(), resolve(101)));
        ws.on("error", () => resolve(-1));
      });
    expect(await upgrade("/telnyx/stream")).toBe(403);
    expect(await upgrade("/telnyx/stream/not-a-token-anyone-issued")).toBe(403);
    for (let i = 0; i < 100 && ((await (await fetch(`${base}/healthz`)).json()) as { liveCalls: number }).liveCalls !== live.liveCalls; i++) await new Promise((r) => setTimeout(r, 50));
    const after = (await (await fetch(`${base}/healthz`)).json()) as { liveCalls: number };
    expect(after.liveCalls).toBe(live.liveCalls);
  }, 20_000);
});
