import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeServices, createLogger, createServices } from "../src/bootstrap.ts";
import type { Services } from "../src/call/services.ts";
import { loadConfig } from "../src/config.ts";
import { buildApp, type App } from "../src/server/app.ts";
import type { CallRecord } from "../src/store/call-record.ts";
import { signPlivoV3 } from "../src/carriers/plivo/signature.ts";
import { clipMulaw } from "./helpers/audio.ts";
import { PlivoStandIn, postSigned, type PlivoStandInCall } from "./helpers/plivo-standin.ts";
import { finishedUtterances, PlivoStream } from "./helpers/plivo-stream.ts";

/**
 * Parley on Plivo, end to end, over real sockets with real speech, the real Silero VAD and the embedded recogniser
 * and synthesizer, against a local stand-in for Plivo that follows its documented wire formats: signed (V3) answer,
 * redirect and hangup requests, the Plivo XML run as Plivo runs it, an Audio Stream that plays Parley's `playAudio` on
 * its own clock, echoes `checkpoint`s as `playedStream` once their audio has played, answers `clearAudio` with
 * `clearedAudio` (dropping the checkpoints it cleared), and the Voice API for placing and hanging up calls.
 */
describe("Plivo end to end, against a Plivo stand-in", () => {
  const AUTH_ID = "MAZDQ1ZWI4ZME2ODVKNT";
  const AUTH = "plivo-e2e-auth-token";
  const API_TOKEN = "plivo-e2e-api-token-0123456789";
  let dataDir: string;
  let services: Services;
  let app: App;
  let base: string;
  let standIn: PlivoStandIn;

  const api = async (p: string, body?: unknown) => {
    const res = await fetch(`${base}${p}`, {
      method: body === undefined ? "GET" : "POST",
      headers: { authorization: `Bearer ${API_TOKEN}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, json: (await res.json()) as any };
  };
  const waitRecord = async (id: string, check: (r: CallRecord & { live: boolean }) => boolean, what: string) => {
    let r: CallRecord & { live: boolean } = (await api(`/api/calls/${id}`)).json;
    for (let i = 0; i < 200 && !check(r); i++) {
      await new Promise((res) => setTimeout(res, 50));
      r = (await api(`/api/calls/${id}`)).json;
    }
    if (!check(r)) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(r).slice(0, 600)}`);
    return r;
  };
  /** The Parley call that an inbound Plivo call became: its id, as Parley wrote it into the answer XML. */
  const parleyIdOf = (call: PlivoStandInCall) => {
    const id = /parleyCallId=(PV[0-9a-f]+)/.exec(call.requests.find((r) => r.kind === "answer")?.body ?? "")?.[1];
    if (!id) throw new Error(`no Parley id in the answer to Plivo call ${call.callUuid}: ${call.describe()}`);
    return id;
  };
  const inbound = (from: string) => standIn.inbound({ answerUrl: `${base}/plivo/answer`, hangupUrl: `${base}/plivo/status`, from, to: "+15550100001" });

  beforeAll(async () => {
    standIn = await PlivoStandIn.start({ authId: AUTH_ID, authToken: AUTH, ringMs: 300 });
    dataDir = mkdtempSync(path.join(tmpdir(), "parley-plivo-"));
    const config = loadConfig({
      env: {
        DATA_DIR: dataDir,
        LOG_LEVEL: "silent",
        PORT: "0",
        GREETING: "Hello! This is Parley.",
        PLIVO_AUTH_ID: AUTH_ID,
        PLIVO_AUTH_TOKEN: AUTH,
        PLIVO_API_URL: standIn.url,
        PLIVO_FROM_NUMBER: "+15550100001",
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

  it("inbound: greeting, a reply, barge-in with the heard words, the caller hangs up", async () => {
    const call = await inbound("+15550100010");
    const answer = call.requests.find((r) => r.kind === "answer")!;
    expect(answer.body).toMatch(
      /^<Response><Stream bidirectional="true" keepCallAlive="true" contentType="audio\/x-mulaw;rate=8000" extraHeaders="parleyCallId=PV[0-9a-f]+">ws:\/\/127\.0\.0\.1:\d+\/plivo\/stream\?token=[\w-]+<\/Stream><Redirect method="POST">http:\/\/127\.0\.0\.1:\d+\/plivo\/resume\?callId=PV[0-9a-f]+<\/Redirect><\/Response>$/,
    );
    const stream = await call.waitForStream(1);
    await stream.waitFor(() => finishedUtterances(stream) >= 1, 15_000, "the greeting's last checkpoint");
    const greetingFrames = stream.frames.length;
    expect(greetingFrames).toBeGreaterThan(25);

    // The caller says something; the reply ("You said: …") is long enough to talk over.
    stream.say(await clipMulaw("austen-0880"));
    stream.silence(1000);
    // Talk over it once 800 ms of it has been heard.
    await stream.waitFor(() => stream.frames.slice(greetingFrames).filter((f) => f.playedAt !== null).length >= 40, 20_000, "the reply to be heard");
    stream.say(await clipMulaw("new-home-in-the-stars"));
    await stream.waitFor(() => stream.eventsOf("clear").length > 0, 10_000, "clearAudio after barge-in");
    stream.silence(1500);
    const clearAt = stream.eventsOf("clear")[0]!.at;
    // clearAudio dropped the rest of the reply (and any checkpoint among it, which Plivo never reports).
    expect(stream.frames.slice(greetingFrames).some((f) => f.playedAt === null)).toBe(true);
    const afterClear = stream.frames.length;
    await stream.waitFor(() => finishedUtterances(stream) >= 2, 20_000, "the reply to what was said over it");
    expect(stream.eventsOf("media").filter((e) => e.at > clearAt).length).toBeGreaterThan(0);
    expect(stream.frames.length).toBeGreaterThan(afterClear);
    expect(stream.protocolErrors).toEqual([]);

    await call.callerHangsUp();
    const id = parleyIdOf(call);
    const rec = await waitRecord(id, (r) => !r.live, "the end of the call");
    expect(rec).toMatchObject({ carrier: "plivo", carrierCallId: call.callUuid, greetingDelivered: true, bargeIns: 1 });
    expect(rec.statuses).toContain("completed");
    expect(rec.turns.map((t) => [t.role, t.kind ?? "", t.interrupted ?? false])).toEqual([
      ["assistant", "greeting", false],
      ["user", "", false],
      ["assistant", "reply", true],
      ["user", "", false],
      ["assistant", "reply", false],
    ]);
    const interrupted = rec.turns[2]!;
    // The heard words come from the playedStream echoes: a beginning of the reply, not all of it.
    expect(interrupted.text.startsWith(interrupted.heardText!)).toBe(true);
    expect(interrupted.heardText!.length).toBeGreaterThan(0);
    expect(interrupted.heardText!.length).toBeLessThan(interrupted.text.length);
  }, 60_000);

  it("notify: placed through the Call API, the message heard whole, then hung up", async () => {
    const placed = await api("/api/calls", { to: "+15550100011", mode: "notify", message: "Your build on main is broken." });
    expect(placed.status).toBe(201);
    const id = placed.json.callSid as string;
    const create = standIn.requests.find((r) => r.method === "POST" && r.path === `/v1/Account/${AUTH_ID}/Call/`)!;
    expect(create.json).toMatchObject({
      from: "+15550100001",
      to: "+15550100011",
      answer_url: `${base}/plivo/answer?callId=${id}`,
      answer_method: "POST",
      hangup_url: `${base}/plivo/status?callId=${id}`,
    });
    const call = standIn.call(placed.json.carrierCallId ?? (await waitRecord(id, (r) => !!r.carrierCallId, "the carrier id")).carrierCallId!);
    const stream = await call.waitForStream(1);
    await call.ended;
    expect(finishedUtterances(stream)).toBe(1);
    expect(stream.frames.length).toBeGreaterThan(50);
    expect(stream.frames.every((f) => f.playedAt !== null)).toBe(true);
    const rec = await waitRecord(id, (r) => !r.live && r.statuses.includes("completed"), "the hangup request in the record");
    expect(rec).toMatchObject({ direction: "outbound", mode: "notify", greetingDelivered: true, endReason: "message delivered", carrier: "plivo" });
    // Plivo reports the answer as its request for the XML (answered through the stream, not a status): ringing and
    // the hangup are the statuses it sends.
    expect(rec.statuses).toEqual(["ringing", "completed"]);
  }, 30_000);

  it("outbound conversation: a reply, then a hang-up through the API reaches the answered call's CallUUID", async () => {
    const placed = await api("/api/calls", { to: "+15550100012", mode: "conversation", message: "Hi, it's Parley calling back." });
    const id = placed.json.callSid as string;
    const rec0 = await waitRecord(id, (r) => !!r.carrierCallId, "the carrier id");
    const call = standIn.call(rec0.carrierCallId!);
    // Plivo's answered call has its own CallUUID, not the request_uuid the Call API returned.
    expect(call.callUuid).not.toBe(call.requestUuid);
    const stream = await call.waitForStream(1);
    await stream.waitFor(() => finishedUtterances(stream) >= 1, 15_000, "the message");
    stream.say(await clipMulaw("whats-the-weather-like"));
    stream.silence(1500);
    await stream.waitFor(() => finishedUtterances(stream) >= 2, 20_000, "the reply");
    expect((await api(`/api/calls/${id}/hangup`, {})).status).toBe(202);
    await call.ended;
    const rec = await waitRecord(id, (r) => !r.live, "the end");
    expect(rec.endReason).toBe("hung up through the control API");
    expect(rec.turns.map((t) => [t.role, t.kind ?? ""])).toEqual([
      ["assistant", "greeting"],
      ["user", ""],
      ["assistant", "reply"],
      ["assistant", "goodbye"],
    ]);
    expect(finishedUtterances(stream)).toBe(3); // the goodbye was heard before the hang-up
    // Parley knows the call by its request_uuid; the hang-up went to the CallUUID that answered it.
    const deletes = standIn.requests.filter((r) => r.method === "DELETE").map((r) => r.path);
    expect(deletes).toContain(`/v1/Account/${AUTH_ID}/Call/${call.callUuid}/`);
    expect(deletes).not.toContain(`/v1/Account/${AUTH_ID}/Call/${call.requestUuid}/`);
  }, 40_000);

  it("a dropped socket resumes through the <Redirect>: the caller hears the whole greeting on the new stream", async () => {
    const call = await inbound("+15550100013");
    const first = await call.waitForStream(1);
    await first.waitFor(() => first.frames.filter((f) => f.playedAt !== null).length >= 10, 10_000, "the greeting to start");
    first.drop();
    const second = await call.waitForStream(2, 15_000);
    expect(second.streamId).not.toBe(first.streamId);
    expect(call.requests.filter((r) => r.kind === "redirect")).toHaveLength(1);
    await second.waitFor(() => finishedUtterances(second) >= 1, 15_000, "the whole greeting on the new stream");
    expect(second.frames.length).toBeGreaterThanOrEqual(first.frames.length);
    second.dtmf("4");
    second.dtmf("2");
    await second.waitFor(() => finishedUtterances(second) >= 2, 15_000, "the reply to the keys");
    await call.callerHangsUp();
    const rec = await waitRecord(parleyIdOf(call), (r) => !r.live, "the end");
    expect(rec.turns.find((t) => t.role === "user")!.text).toBe("the caller pressed 4 2");
    expect(rec.states.map((s) => JSON.stringify(s.value))).toContain('{"live":"reconnecting"}');
  }, 40_000);

  it("forged webhooks and streams are refused; a replayed request is refused once handled", async () => {
    const url = `${base}/plivo/answer`;
    const params = { CallUUID: "0f5e6a4e-0000-4000-8000-000000000001", From: "+15550100014", To: "+15550100001", CallStatus: "ringing", Direction: "inbound" };
    const post = (headers: Record<string, string>) =>
      fetch(url, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded", ...headers }, body: new URLSearchParams(params).toString() });
    expect((await post({})).status).toBe(403);
    expect((await post({ "x-plivo-signature-v3": signPlivoV3("not-the-token", "POST", url, "123", params), "x-plivo-signature-v3-nonce": "123" })).status).toBe(403);
    // Signed for other parameters (the caller's number changed on the way).
    expect((await post({ "x-plivo-signature-v3": signPlivoV3(AUTH, "POST", url, "124", { ...params, From: "+15550100099" }), "x-plivo-signature-v3-nonce": "124" })).status).toBe(403);
    const good = { "x-plivo-signature-v3": signPlivoV3(AUTH, "POST", url, "125", params), "x-plivo-signature-v3-nonce": "125" };
    const answered = await post(good);
    expect(answered.status).toBe(200);
    expect(await answered.text()).toMatch(/<Stream /);
    expect((await post(good)).status).toBe(409);

    const streamUrl = `${base.replace("http", "ws")}/plivo/stream?token=forged`;
    // Unsigned, and signed with another token: refused at the upgrade.
    await expect(PlivoStream.open({ streamUrl, callUuid: params.CallUUID, accountId: AUTH_ID })).rejects.toThrow(/403/);
    await expect(PlivoStream.open({ streamUrl, callUuid: params.CallUUID, accountId: AUTH_ID, authToken: "not-the-token" })).rejects.toThrow(/403/);
    // Signed, but the stream token was never issued: closed by policy at `start`, before any audio.
    const s = await PlivoStream.open({ streamUrl, callUuid: params.CallUUID, accountId: AUTH_ID, authToken: AUTH });
    const closed = await s.closed;
    expect(closed.code).toBe(1008);
    expect(s.frames).toHaveLength(0);
    // Still fine after all that: a real call goes through.
    const ok = await postSigned(AUTH, url, { ...params, CallUUID: "0f5e6a4e-0000-4000-8000-000000000002" });
    expect(ok.status).toBe(200);
  }, 20_000);
});
