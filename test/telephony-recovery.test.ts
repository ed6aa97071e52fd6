import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Services } from "../src/call/services.ts";
import type { CallRecord } from "../src/store/call-record.ts";
import { signWebhook } from "../src/carriers/twilio/verify.ts";
import type { TwilioRest } from "../src/carriers/twilio/rest.ts";
import { createCarriers } from "../src/carriers/registry.ts";
import { EchoAgent } from "../src/providers/agent/echo.ts";
import type { ChatMessage } from "../src/providers/types.ts";
import { clipMulaw } from "./helpers/audio.ts";
import { useParley } from "./helpers/harness.ts";
import { finishedUtterances, streamFromTwiml, TwilioCall } from "./helpers/twilio-client.ts";
import { TwilioStandIn } from "./helpers/twilio-standin.ts";

/** Calls outlive the process that took them; calls that never get a stream are not left hanging; the CLI drives it all. */
describe("recovery and timeouts", () => {
  const ACCOUNT = "AC0123456789abcdef0123456789abcdef";
  const AUTH = "recovery-auth-token";
  const API_TOKEN = "recovery-api-token-0123456789";
  let standIn: TwilioStandIn;
  // Before useParley's hook, which reads the stand-in's URL.
  beforeAll(async () => {
    standIn = await TwilioStandIn.start({ accountSid: ACCOUNT, authToken: AUTH, ringMs: 100 });
  });
  afterAll(async () => {
    await standIn?.close();
  });
  const parley = useParley(() => ({
    GREETING: "Hello, Parley here.",
    TWILIO_ACCOUNT_SID: ACCOUNT,
    TWILIO_AUTH_TOKEN: AUTH,
    TWILIO_API_URL: standIn.url,
    TWILIO_FROM_NUMBER: "+15550100001",
    // Carrier credentials make the control API a way to place calls on the account: it must have a token.
    API_TOKEN,
  }));
  const authed = { authorization: `Bearer ${API_TOKEN}` };
  const start = (overrides: Partial<Services> = {}, config: Partial<Services["config"]> = {}) => parley.start(overrides, config);
  const signedPost = (url: string, params: Record<string, string>) =>
    fetch(url, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signWebhook(AUTH, url, params) },
      body: new URLSearchParams(params).toString(),
    });

  it("a call resumes on a restarted process, from its record, with its history", async () => {
    const first = await start();
    const call = await standIn.inbound({ webhookUrl: `${first.base}/voice/webhook`, from: "+15550100007", to: "+15550100001" });
    const s1 = await call.waitForStream(1);
    await s1.waitFor(() => finishedUtterances(s1) >= 1, 15_000, "the greeting");
    s1.say(await clipMulaw("whats-the-weather-like"));
    s1.silence(1500);
    await s1.waitFor(() => finishedUtterances(s1) >= 2, 20_000, "the reply");
    for (let i = 0; i < 100; i++) {
      const r = (await (await fetch(`${first.base}/api/calls/${call.sid}`, { headers: authed })).json()) as CallRecord;
      if (r.turns.length >= 3) break;
      await new Promise((res) => setTimeout(res, 20));
    }
    await first.app.close(); // the process goes away; the call does not

    // A new process (same records, empty memory) gets Twilio's <Connect action> request.
    const histories: ChatMessage[][] = [];
    const echo = new EchoAgent();
    const second = await start({ agent: { name: "recording", respond: (input) => (histories.push(input.history), echo.respond(input)) } });
    const url = `${second.base}/voice/connect-action`;
    const res = await signedPost(url, { CallSid: call.sid, AccountSid: ACCOUNT, From: "+15550100007", To: "+15550100001", CallStatus: "in-progress" });
    const twiml = await res.text();
    const { streamUrl, parameters } = streamFromTwiml(twiml);
    const s2 = await TwilioCall.openStream({ streamUrl, parameters, callSid: call.sid, authToken: AUTH });
    // The greeting was delivered before the restart: no replay; the conversation simply goes on.
    s2.say(await clipMulaw("new-home-in-the-stars"));
    s2.silence(1500);
    await s2.waitFor(() => finishedUtterances(s2) >= 1, 20_000, "a reply on the resumed call");
    await s2.hangUp();

    const rec = (await (await fetch(`${second.base}/api/calls/${call.sid}`, { headers: authed })).json()) as CallRecord;
    expect(rec.turns.map((t) => [t.role, t.kind ?? ""])).toEqual([
      ["assistant", "greeting"],
      ["user", ""],
      ["assistant", "reply"],
      ["user", ""],
      ["assistant", "reply"],
    ]);
    expect(rec.endReason).toBe("caller hung up");
    expect(rec.turns.at(-1)!.turnId).toBeGreaterThan(rec.turns[2]!.turnId);
    // The agent on the new process saw the conversation from before the restart.
    expect(histories[0]!.map((m) => m.role)).toEqual(["assistant", "user", "assistant"]);
    expect(histories[0]![0]!.content).toBe("Hello, Parley here.");
  }, 90_000);

  it("answered but no stream within STREAM_TIMEOUT_MS: hangs up through REST and records the error", async () => {
    const hangups: string[] = [];
    const rest = {
      createCall: async () => ({ sid: "CA00000000000000000000000000000abc", status: "queued" }),
      hangup: async (sid: string) => void hangups.push(sid),
    } as unknown as TwilioRest;
    const { base } = await start({ carriers: createCarriers(parley.services.config, { twilioRest: rest }) }, { streamTimeoutMs: 1000 });
    const placed = await fetch(`${base}/api/calls`, { method: "POST", headers: { ...authed, "content-type": "application/json" }, body: JSON.stringify({ to: "+15550100002", message: "Hello?" }) });
    const sid = ((await placed.json()) as { callSid: string }).callSid;
    expect((await signedPost(`${base}/voice/status`, { CallSid: sid, CallStatus: "in-progress", SequenceNumber: "2" })).status).toBe(200);
    for (let i = 0; i < 100 && !hangups.length; i++) await new Promise((r) => setTimeout(r, 50));
    expect(hangups).toEqual([sid]);
    const rec = (await (await fetch(`${base}/api/calls/${sid}`, { headers: authed })).json()) as CallRecord;
    expect(rec.errors.map((e) => e.message)).toContain("answered but no media stream connected in time");
    expect(rec.endReason).toBe("answered but no media stream connected");
  }, 30_000);

  it("the parley CLI drives the real API", async () => {
    const { base } = await start();
    const run = (...args: string[]) =>
      promisify(execFile)(process.execPath, ["bin/parley.js", ...args], { env: { ...process.env, PARLEY_URL: base, API_TOKEN } }).then(
        (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
        (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
      );
    const placed = await run("call", "+15550100002", "--message", "This is a test notification.", "--mode", "notify", "--json");
    expect(placed.code).toBe(0);
    const sid = (JSON.parse(placed.stdout) as { callSid: string }).callSid;
    const tail = await run("tail", sid);
    expect(tail.code).toBe(0);
    expect(tail.stdout).toMatch(/greeting\.delivered/);
    expect(tail.stdout).toMatch(/call\.ended/);
    const listed = await run("calls", "--direction", "outbound", "--json");
    expect((JSON.parse(listed.stdout) as { callSid: string }[]).map((c) => c.callSid)).toContain(sid);
    const gone = await run("hangup", sid);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/HTTP 409/);
  }, 60_000);
});
