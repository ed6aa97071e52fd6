import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import WebSocket from "ws";
import type { Services } from "../src/call/services.ts";
import { ConfigError, loadConfig } from "../src/config.ts";
import { signWebhook } from "../src/carriers/twilio/verify.ts";
import { systemClock } from "../src/util/clock.ts";
import { useParley } from "./helpers/harness.ts";
import { TwilioCall } from "./helpers/twilio-client.ts";

/** Every refusal of the security model, one by one. */
describe("security", () => {
  const AUTH = "security-test-auth-token";
  const API_TOKEN = "security-test-api-token-0123456789";
  const parley = useParley(() => ({ GREETING: "Hi." }));
  /** Moves the service's clock forward without touching real time (token expiry). */
  let clockOffset = 0;
  const start = async (config: Partial<Services["config"]> = {}) =>
    (await parley.start({ clock: { now: () => systemClock.now() + clockOffset } }, config)).base;

  const sid = () => `CA${createHash("md5").update(String(Math.random())).digest("hex")}`;
  const form = (params: Record<string, string>) => new URLSearchParams(params).toString();

  it("refuses to start reachable from other machines without signature checks or an API token", () => {
    expect(() => loadConfig({ env: { HOST: "0.0.0.0", API_TOKEN } })).toThrow(/signing secret is required .*TWILIO_AUTH_TOKEN, TELNYX_PUBLIC_KEY \(with TELNYX_API_KEY\) or PLIVO_AUTH_TOKEN/);
    expect(() => loadConfig({ env: { HOST: "0.0.0.0", TWILIO_AUTH_TOKEN: AUTH } })).toThrow(/API_TOKEN is required/);
    expect(() => loadConfig({ env: { HOST: "0.0.0.0", TWILIO_AUTH_TOKEN: AUTH, API_TOKEN } })).not.toThrow();
    expect(() => loadConfig({ env: { HOST: "0.0.0.0", ALLOW_UNSIGNED_WEBHOOKS: "true", API_TOKEN } })).not.toThrow();
    expect(() => loadConfig({ env: { HOST: "127.0.0.1" } })).not.toThrow();
    expect(() => loadConfig({ env: { HOST: "0.0.0.0" } })).toThrow(ConfigError);
  });

  it("checks signatures of form and JSON (bodySHA256) webhooks, and refuses replays", async () => {
    const base = await start({ twilioAuthToken: AUTH });
    const callSid = sid();

    // Form-encoded: a valid signature, then the very same request again.
    const url = `${base}/voice/webhook`;
    const params = { CallSid: callSid, From: "+15550100001", To: "+15550100002" };
    const signed = { "content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signWebhook(AUTH, url, params) };
    expect((await fetch(url, { method: "POST", headers: signed, body: form(params) })).status).toBe(200);
    expect((await fetch(url, { method: "POST", headers: signed, body: form(params) })).status).toBe(409);

    // JSON: the URL carries the body's hash; the signature covers the URL.
    const body = JSON.stringify({ CallSid: callSid, CallStatus: "ringing" });
    const hash = createHash("sha256").update(body).digest("hex");
    const jsonUrl = `${base}/voice/status?bodySHA256=${hash}`;
    const jsonHeaders = { "content-type": "application/json", "x-twilio-signature": signWebhook(AUTH, jsonUrl, {}) };
    expect((await fetch(jsonUrl, { method: "POST", headers: jsonHeaders, body })).status).toBe(200);
    const tampered = body.replace("ringing", "completed");
    expect((await fetch(jsonUrl, { method: "POST", headers: jsonHeaders, body: tampered })).status).toBe(403);
    const noHash = `${base}/voice/status`;
    expect((await fetch(noHash, { method: "POST", headers: { "content-type": "application/json", "x-twilio-signature": signWebhook(AUTH, noHash, {}) }, body })).status).toBe(403);
  });

  it("stream tokens are bound to their call and expire", async () => {
    const base = await start();
    const call = new TwilioCall({ baseUrl: base });
    const { streamUrl, parameters } = await call.fetchTwiml();
    const startWith = async (callSid: string) => {
      const ws = new WebSocket(streamUrl);
      await new Promise((r) => ws.once("open", r));
      const closed = new Promise<number>((r) => ws.once("close", (code) => r(code)));
      ws.send(JSON.stringify({ event: "start", streamSid: "MZx", start: { streamSid: "MZx", callSid, customParameters: parameters } }));
      const first = await Promise.race([closed, new Promise<string>((r) => ws.once("message", () => r("media")))]);
      ws.terminate();
      return first;
    };
    expect(await startWith(sid())).toBe(1008); // another call's CallSid
    // Refused without being spent: the rightful call can still redeem it, once.
    expect(await startWith(call.callSid)).toBe("media");
    expect(await startWith(call.callSid)).toBe(1008);

    const second = new TwilioCall({ baseUrl: base });
    const twiml2 = await second.fetchTwiml();
    clockOffset += 61_000;
    const ws = new WebSocket(twiml2.streamUrl);
    await new Promise((r) => ws.once("open", r));
    const closed = new Promise<number>((r) => ws.once("close", (code) => r(code)));
    ws.send(JSON.stringify({ event: "start", streamSid: "MZy", start: { streamSid: "MZy", callSid: second.callSid, customParameters: twiml2.parameters } }));
    expect(await closed).toBe(1008);
  });

  it("limits body size and request rate", async () => {
    const base = await start({ rateLimitPerMinute: 5 });
    const big = form({ CallSid: sid(), Junk: "x".repeat(70_000) });
    const res = await fetch(`${base}/voice/webhook`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: big });
    expect(res.status).toBe(413);
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) statuses.push((await fetch(`${base}/healthz`)).status);
    expect(statuses).toContain(429);
    expect(statuses.filter((s) => s === 200).length).toBeLessThanOrEqual(5);
    const upgrade = await new Promise<number>((resolve) => {
      const ws = new WebSocket(base.replace("http", "ws") + "/voice/stream");
      ws.once("unexpected-response", (_q, r) => resolve(r.statusCode ?? 0));
      ws.once("open", () => resolve(101));
    });
    expect(upgrade).toBe(429);
  });

  it("the control API wants its bearer token and valid bodies", async () => {
    const base = await start({ apiToken: API_TOKEN });
    const api = (p: string, init: RequestInit = {}, token: string | null = API_TOKEN) =>
      fetch(`${base}${p}`, { ...init, headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}), ...(init.headers ?? {}) } });
    expect((await api("/api/calls", {}, null)).status).toBe(401);
    expect((await api("/api/calls", {}, "wrong-token-wrong-token-wrong-token")).status).toBe(401);
    expect((await api("/api/calls")).status).toBe(200);
    const bad = await api("/api/calls", { method: "POST", body: JSON.stringify({ to: "555-0100", message: "hi" }) });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toMatch(/to/);
    expect((await api("/api/calls", { method: "POST", body: JSON.stringify({ to: "+15550100", message: "" }) })).status).toBe(400);
    expect((await api("/api/calls", { method: "POST", body: JSON.stringify({ to: "+15550100", message: "hi", extra: 1 }) })).status).toBe(400);
    // Valid, but nothing to place it with.
    const noRest = await api("/api/calls", { method: "POST", body: JSON.stringify({ to: "+15550100111", message: "hi" }) });
    expect(noRest.status).toBe(503);
    expect(((await noRest.json()) as { error: string }).error).toMatch(/TWILIO_ACCOUNT_SID/);
    expect((await api("/api/calls/CAnope/hangup", { method: "POST" })).status).toBe(404);
    expect((await api("/api/calls/CAnope/speak", { method: "POST", body: JSON.stringify({ text: "" }) })).status).toBe(400);
    expect((await api("/api/calls/..%2F..%2Fetc")).status).toBe(400);
    // Pages and EventSource cannot send headers: the token may come as access_token.
    expect((await fetch(`${base}/api/calls?access_token=${API_TOKEN}`)).status).toBe(200);
    expect((await fetch(`${base}/api/calls?access_token=wrong-token-wrong-token`)).status).toBe(401);
    expect((await fetch(`${base}/debug`)).status).toBe(401);
    const page = await fetch(`${base}/debug?access_token=${API_TOKEN}`);
    expect(page.headers.get("content-type")).toMatch(/text\/html/);
    const chart = await (await fetch(`${base}/debug/chart.svg?access_token=${API_TOKEN}`)).text();
    expect(chart).toContain('data-state="call.live.active.replying.speaking"');
    const spec = (await (await fetch(`${base}/api/openapi.json`)).json()) as { paths: Record<string, unknown> };
    expect(Object.keys(spec.paths)).toEqual(expect.arrayContaining(["/api/calls", "/api/calls/{callSid}/events", "/api/calls/{callSid}/speak"]));
  });

  it("inbound policy: disabled and allowlist reject with <Reject/>; allowed callers get a stream", async () => {
    const post = (base: string, from: string) =>
      fetch(`${base}/voice/webhook`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: form({ CallSid: sid(), From: from, To: "+15550100002" }) }).then((r) => r.text());
    const disabled = await start({ inboundPolicy: "disabled" });
    expect(await post(disabled, "+15550100001")).toMatch(/<Reject reason="rejected"\/>/);
    const allow = await start({ inboundPolicy: "allowlist", inboundAllowlist: ["+15550100001"] });
    expect(await post(allow, "+15550100009")).toMatch(/<Reject/);
    expect(await post(allow, "+15550100001")).toMatch(/<Connect action="[^"]+"[^>]*><Stream /);
    const full = await start({ maxConcurrentCalls: 1 });
    await post(full, "+15550100001");
    expect(await post(full, "+15550100001")).toMatch(/<Reject reason="busy"\/>/);
  });
});
