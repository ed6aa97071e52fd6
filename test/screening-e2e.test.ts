import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeServices, createLogger, createServices } from "../src/bootstrap.ts";
import type { Services } from "../src/call/services.ts";
import { loadConfig } from "../src/config.ts";
import { buildApp, type App } from "../src/server/app.ts";
import { signWebhook } from "../src/carriers/twilio/verify.ts";
import { personAnswers, silenceMulaw, voicemailGreeting } from "./helpers/answering.ts";
import { clipMulaw } from "./helpers/audio.ts";
import { finishedUtterances } from "./helpers/twilio-client.ts";
import { TwilioStandIn } from "./helpers/twilio-standin.ts";
import { apiClient } from "./helpers/api-client.ts";

/**
 * Outbound calls meet people, answering machines and fax machines. Against the Twilio stand-in, over real sockets:
 * the callee's side plays real speech (a short "hello", a long voicemail greeting) and a sox-made beep on its own
 * clock, and Parley must say nothing until it knows who answered.
 */
describe("outbound calls screened for who answered, against the Twilio stand-in", () => {
  const ACCOUNT = "AC0123456789abcdef0123456789abcdef";
  const AUTH = "screening-auth-token";
  const API_TOKEN = "screening-api-token-0123456789";
  const MESSAGE = "Hi, this is Parley calling from the dental office about your appointment tomorrow. Please call us back.";
  let dataDir: string;
  let services: Services;
  let app: App;
  let base: string;
  let standIn: TwilioStandIn;

  const { api, waitRecord } = apiClient(() => base, API_TOKEN);
  const ended = (sid: string) => waitRecord(sid, (r) => !r.live && !!r.outcome, `call ${sid} to end with its outcome`);

  beforeAll(async () => {
    standIn = await TwilioStandIn.start({ accountSid: ACCOUNT, authToken: AUTH, ringMs: 200 });
    dataDir = mkdtempSync(path.join(tmpdir(), "parley-screening-"));
    const config = loadConfig({
      env: {
        DATA_DIR: dataDir,
        LOG_LEVEL: "silent",
        PORT: "0",
        TWILIO_ACCOUNT_SID: ACCOUNT,
        TWILIO_AUTH_TOKEN: AUTH,
        TWILIO_API_URL: standIn.url,
        TWILIO_FROM_NUMBER: "+15550100001",
        API_TOKEN,
        CARRIER_AMD: "true",
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

  it("a machine answers: Parley is silent through its greeting, leaves the message after the beep, and hangs up", async () => {
    const placed = await api("/api/calls", { to: "+15550100010", message: "Hello, this is Parley.", voicemail: "leave", voicemailMessage: MESSAGE });
    expect(placed.status).toBe(201);
    const sid = placed.json.callSid as string;
    // Twilio was asked for its asynchronous answering-machine detection, to report to Parley's AMD route.
    const create = standIn.requests.find((r) => r.method === "POST" && r.path.endsWith("/Calls.json") && r.form.get("To") === "+15550100010")!;
    expect([create.form.get("MachineDetection"), create.form.get("AsyncAmd"), create.form.get("AsyncAmdStatusCallback")]).toEqual(["DetectMessageEnd", "true", `${base}/voice/amd`]);
    const call = standIn.call(sid);
    const stream = await call.waitForStream(1);
    const vm = await voicemailGreeting(["austen-0880", "austen-0890"], 1000);
    const { startsAt } = stream.say(vm.mulaw);
    const beepEndsAt = startsAt + vm.cueEndMs;
    await call.ended;
    const rec = await ended(sid);
    // Nothing was sent while the greeting played: the first frame came after the beep.
    expect(stream.frames.length).toBeGreaterThan(0);
    expect(stream.frames[0]!.at).toBeGreaterThan(beepEndsAt);
    expect(finishedUtterances(stream)).toBe(1); // the message was played out whole before the hang-up
    expect(rec.turns.map((t) => [t.role, t.kind, t.text, t.heardText])).toEqual([["assistant", "voicemail", MESSAGE, MESSAGE]]);
    expect(rec).toMatchObject({ answeredBy: "machine", voicemail: "left", endReason: "voicemail message left" });
    expect(rec.outcome).toMatchObject({ answeredBy: "machine", voicemail: "left" });
  }, 60_000);

  it("a person answers: the greeting follows their hello, and the conversation goes on", async () => {
    const placed = await api("/api/calls", { to: "+15550100011", message: "Hello, this is Parley from the dental office.", voicemail: "hangup" });
    const sid = placed.json.callSid as string;
    const call = standIn.call(sid);
    const stream = await call.waitForStream(1);
    const hello = await personAnswers("whats-the-weather-like", 0);
    const { startsAt } = stream.say(hello.mulaw);
    stream.silence(4000);
    await stream.waitFor(() => finishedUtterances(stream) >= 1, 20_000, "the greeting");
    expect(stream.frames[0]!.at).toBeGreaterThan(startsAt + hello.cueEndMs);
    stream.say(await clipMulaw("new-home-in-the-stars"));
    stream.silence(2000);
    await stream.waitFor(() => finishedUtterances(stream) >= 2, 20_000, "the reply");
    expect((await api(`/api/calls/${sid}/hangup`, {})).status).toBe(202);
    const rec = await ended(sid);
    expect(rec).toMatchObject({ answeredBy: "human", voicemail: null });
    expect(rec.turns.map((t) => [t.role, t.kind ?? ""]).slice(0, 3)).toEqual([
      ["assistant", "greeting"],
      ["user", ""],
      ["assistant", "reply"],
    ]);
  }, 60_000);

  it("a machine, and the session says hang up: nothing is said, the record says so", async () => {
    const placed = await api("/api/calls", { to: "+15550100012", message: "Hello, this is Parley.", voicemail: "hangup" });
    const sid = placed.json.callSid as string;
    const call = standIn.call(sid);
    const stream = await call.waitForStream(1);
    stream.say((await voicemailGreeting(["austen-0870"], 850)).mulaw);
    await call.ended;
    const rec = await ended(sid);
    expect(stream.frames).toHaveLength(0);
    expect(rec).toMatchObject({ answeredBy: "machine", voicemail: "hung-up", endReason: "answering machine: hung up", turns: [] });
  }, 60_000);

  it("Twilio's detection (signed, to /voice/amd) decides a silent line, and its message-end starts the message; a forged report is refused", async () => {
    const placed = await api("/api/calls", { to: "+15550100013", message: "Hello.", voicemail: "leave", voicemailMessage: "Please call back." });
    const sid = placed.json.callSid as string;
    const call = standIn.call(sid);
    const stream = await call.waitForStream(1);
    stream.say(silenceMulaw(6000));
    const url = `${base}/voice/amd`;
    const post = (params: Record<string, string>, signature: string) =>
      fetch(url, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature }, body: new URLSearchParams(params).toString() });
    const forged = { CallSid: sid, AccountSid: ACCOUNT, AnsweredBy: "human", MachineDetectionDuration: "900" };
    expect((await post(forged, signWebhook("not-the-auth-token", url, forged))).status).toBe(403);
    const report = { CallSid: sid, AccountSid: ACCOUNT, AnsweredBy: "machine_end_beep", MachineDetectionDuration: "1800" };
    expect((await post(report, signWebhook(AUTH, url, report))).status).toBe(200);
    await call.ended;
    const rec = await ended(sid);
    expect(rec).toMatchObject({ answeredBy: "machine", voicemail: "left" });
    expect(rec.turns.map((t) => t.text)).toEqual(["Please call back."]);
    expect(finishedUtterances(stream)).toBe(1);
  }, 60_000);
});
