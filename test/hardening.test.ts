import { createCarriers } from "../src/carriers/registry.ts";
import { TwilioRest } from "../src/carriers/twilio/rest.ts";
import { createHash } from "node:crypto";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pino from "pino";
import WebSocket from "ws";
import type { Services } from "../src/call/services.ts";
import { EarlyStatuses } from "../src/call/call-manager.ts";
import { SpeechCache } from "../src/call/speech-cache.ts";
import { ConfigError, loadConfig } from "../src/config.ts";
import type { TtsChunk, TtsProvider } from "../src/providers/types.ts";
import { buildApp } from "../src/server/app.ts";
import { clientAddress, trustProxies } from "../src/server/client-address.ts";
import { RateLimiter, redactUrl } from "../src/server/security.ts";
import { isBusy, MemoryAdmission } from "../src/state/admission.ts";
import { systemClock } from "../src/util/clock.ts";
import { useParley } from "./helpers/harness.ts";
import { TwilioStandIn } from "./helpers/twilio-standin.ts";

const ACCOUNT = "AC0123456789abcdef0123456789abcdef";
const AUTH = "hardening-auth-token";
const API_TOKEN = "hardening-api-token-0123456789";
const sid = () => `CA${createHash("md5").update(String(Math.random())).digest("hex")}`;
const form = (params: Record<string, string>) => new URLSearchParams(params).toString();

describe("admission is one step", () => {
  it("a memory admission never lets more than the cap in, whatever interleaves", async () => {
    const adm = new MemoryAdmission(() => 3);
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => adm.admit(`c${i}`, "outbound")));
    expect(results.filter((r) => !isBusy(r))).toHaveLength(3);
    const busy = results.find(isBusy)!;
    expect(busy).toMatchObject({ busy: true, inUse: 3, max: 3 });
    expect(busy.retryAfterS).toBeGreaterThan(0);
    // Releasing frees exactly one slot; releasing the same ticket again frees nothing.
    const held = results.filter((r) => !isBusy(r));
    await adm.release(held[0]! as never);
    await adm.release(held[0]! as never);
    expect(adm.inUse).toBe(2);
    expect(isBusy(await adm.admit("d1", "inbound"))).toBe(false);
    expect(isBusy(await adm.admit("d2", "inbound"))).toBe(true);
  });

  describe("through the API and the webhook", () => {
    let standIn: TwilioStandIn;
    beforeAll(async () => {
      standIn = await TwilioStandIn.start({ accountSid: ACCOUNT, authToken: AUTH, ringMs: 60_000 });
    });
    afterAll(async () => {
      await standIn?.close();
    });
    const parley = useParley(() => ({
      GREETING: "Hi.",
      TWILIO_ACCOUNT_SID: ACCOUNT,
      TWILIO_AUTH_TOKEN: AUTH,
      TWILIO_API_URL: standIn.url,
      TWILIO_FROM_NUMBER: "+15550100001",
      API_TOKEN,
    }));

    /** Twilio's REST API on the stand-in, and webhooks taken unsigned (no signature to compute in these tests). */
    const unsignedWithRest = () => createCarriers({ ...parley.services.config, twilioAuthToken: undefined }, { twilioRest: new TwilioRest({ accountSid: ACCOUNT, authToken: AUTH, apiUrl: standIn.url }) });

    it("12 concurrent POST /api/calls under MAX_CONCURRENT_CALLS=3 admit exactly 3; the rest are busy with Retry-After", async () => {
      const { base, app } = await parley.start({ carriers: unsignedWithRest() }, { maxConcurrentCalls: 3, twilioAuthToken: undefined });
      const post = () =>
        fetch(`${base}/api/calls`, {
          method: "POST",
          headers: { authorization: `Bearer ${API_TOKEN}`, "content-type": "application/json" },
          body: JSON.stringify({ to: "+15550100002", message: "Hello there." }),
        });
      const res = await Promise.all(Array.from({ length: 12 }, post));
      expect(res.filter((r) => r.status === 201)).toHaveLength(3);
      const refused = res.filter((r) => r.status !== 201);
      expect(refused).toHaveLength(9);
      for (const r of refused) {
        expect(r.status).toBe(503);
        expect(Number(r.headers.get("retry-after"))).toBeGreaterThan(0);
        expect(((await r.json()) as { error: string }).error).toMatch(/^busy: at capacity .*MAX_CONCURRENT_CALLS=3/);
      }
      expect(app.manager.liveCount).toBe(3);
      // An inbound call and a softphone call find the same slots taken.
      const webhook = await fetch(`${base}/voice/webhook`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: form({ CallSid: sid(), From: "+15550100009", To: "+15550100001" }) });
      expect(await webhook.text()).toMatch(/<Reject reason="busy"\/>/);
      const phone = await fetch(`${base}/api/phone/calls`, { method: "POST", headers: { authorization: `Bearer ${API_TOKEN}` } });
      expect(phone.status).toBe(503);
      expect(app.manager.admission.inUse).toBe(3);
    });

    it("a REST failure gives its slot back", async () => {
      const { base, app } = await parley.start({ carriers: unsignedWithRest() }, { maxConcurrentCalls: 1, twilioAuthToken: undefined });
      standIn.nextRestError = { status: 400, code: 21211, message: "Invalid 'To' Phone Number" };
      const bad = await fetch(`${base}/api/calls`, {
        method: "POST",
        headers: { authorization: `Bearer ${API_TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({ to: "+15550100002", message: "Hello." }),
      });
      expect(bad.status).toBeGreaterThanOrEqual(400);
      expect(bad.status).not.toBe(503);
      expect(app.manager.admission.inUse).toBe(0);
      const phone = await fetch(`${base}/api/phone/calls`, { method: "POST", headers: { authorization: `Bearer ${API_TOKEN}` } });
      expect(phone.status).toBe(201);
      expect(app.manager.admission.inUse).toBe(1);
    });
  });
});

describe("memory keyed by remote input is bounded", () => {
  it("rate-limiter buckets of clients gone quiet are swept, and the map is capped", () => {
    const limiter = new RateLimiter(60, 1000);
    for (let i = 0; i < 500; i++) limiter.take(`10.0.${i >> 8}.${i & 255}`, 0);
    expect(limiter.size).toBe(500);
    // A minute later every one of them has refilled: the next request sweeps them.
    limiter.take("10.9.9.9", 61_000);
    expect(limiter.size).toBe(1);
    // A flood of distinct addresses never holds more than the cap.
    for (let i = 0; i < 5000; i++) limiter.take(`10.1.${i >> 8}.${i & 255}`, 62_000);
    expect(limiter.size).toBe(1000);
    // Buckets still refilling are kept: a client that spent its budget stays limited.
    const tight = new RateLimiter(2);
    expect(tight.take("a", 0) && tight.take("a", 0)).toBe(true);
    expect(tight.take("a", 6_000)).toBe(false);
  });

  it("early status callbacks are bounded in calls, per call and in bytes", () => {
    const early = new EarlyStatuses(100, 4);
    const big = { status: "ringing" as const, carrierStatus: "ringing", durationS: "9".repeat(60_000), answeredBy: "human", sequence: "1".repeat(60_000) };
    let held = 0;
    for (let i = 0; i < 300; i++) if (early.hold(`CA${i}`, big, 0)) held++;
    expect(held).toBe(100);
    expect(early.size).toBe(100);
    for (let i = 0; i < 10; i++) early.hold("CA0", { ...big, carrierStatus: `s${i}`.repeat(1000) }, 0);
    const items = early.take("CA0");
    expect(items).toHaveLength(4);
    expect(JSON.stringify(items).length).toBeLessThan(1000);
    expect(items[0]).toMatchObject({ durationS: "9".repeat(64), answeredBy: "human", sequence: "1".repeat(16) });
    // After their minute they are forgotten, making room again.
    expect(early.hold("CAnew", { status: "ringing", carrierStatus: "ringing" }, 61_000)).toBe(true);
    expect(early.size).toBe(1);
  });
});

describe("fixed phrases are pinned in the speech cache", () => {
  /** A synthesizer that can be switched off, counting what it was asked. */
  class SwitchableTts implements TtsProvider {
    readonly name = "switchable";
    up = true;
    calls = 0;
    async ready(): Promise<void> {}
    async close(): Promise<void> {}
    async *synthesize(text: string): AsyncIterable<TtsChunk> {
      this.calls++;
      if (!this.up) throw new Error("TTS is down");
      yield { mulaw: new Uint8Array(Math.max(160, text.length * 10)).fill(0x7f) } as TtsChunk;
    }
  }

  it("no number of other texts evicts the apology, which plays with the TTS down", async () => {
    const tts = new SwitchableTts();
    const cache = new SpeechCache(tts as unknown as TtsProvider, 8);
    const fixed = ["Hello!", "Are you still there?", "Sorry, I am having trouble. Goodbye."];
    expect((await cache.warm(fixed)).every((w) => !w.error)).toBe(true);
    for (let i = 0; i < 200; i++) await cache.get(`outbound message number ${i}`);
    expect(cache.size).toEqual({ pinned: 3, recent: 8 });
    tts.up = false;
    const before = tts.calls;
    for (const t of fixed) expect((await cache.get(t))[0]!.mulaw.length).toBeGreaterThan(0);
    expect(tts.calls).toBe(before);
    await expect(cache.get("outbound message number 0")).rejects.toThrow(/TTS is down/);
  });

  it("a pinned phrase whose first synthesis failed is retried on use and then kept", async () => {
    const tts = new SwitchableTts();
    tts.up = false;
    const cache = new SpeechCache(tts as unknown as TtsProvider, 2);
    expect((await cache.warm(["Goodbye."]))[0]!.error).toMatch(/TTS is down/);
    tts.up = true;
    await cache.get("Goodbye.");
    for (let i = 0; i < 10; i++) await cache.get(`other ${i}`);
    tts.up = false;
    await expect(cache.get("Goodbye.")).resolves.toHaveLength(1);
  });
});

describe("no open control plane by accident", () => {
  it("refuses to start behind a tunnel or with carrier credentials without API_TOKEN, saying how to make one", () => {
    // The README's real-number steps: loopback, a tunnel's https origin, Twilio credentials.
    const tunnel = { HOST: "127.0.0.1", PUBLIC_URL: "https://parley-demo.trycloudflare.com", TWILIO_ACCOUNT_SID: ACCOUNT, TWILIO_AUTH_TOKEN: AUTH };
    let err: unknown;
    try {
      loadConfig({ env: tunnel });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const msg = (err as Error).message;
    expect(msg).toMatch(/API_TOKEN is required/);
    expect(msg).toMatch(/PUBLIC_URL=https:\/\/parley-demo\.trycloudflare\.com is reachable from outside/);
    expect(msg).toMatch(/carrier credentials are set/);
    expect(msg).toMatch(/openssl rand/);
    expect(() => loadConfig({ env: { PUBLIC_URL: "https://x.example.com" } })).toThrow(/API_TOKEN is required/);
    expect(() => loadConfig({ env: { TWILIO_AUTH_TOKEN: AUTH } })).toThrow(/API_TOKEN is required/);
    // A loopback PUBLIC_URL with no credentials is the local default and needs nothing.
    expect(() => loadConfig({ env: { PUBLIC_URL: "http://127.0.0.1:3334" } })).not.toThrow();
    expect(() => loadConfig({ env: {} })).not.toThrow();
  });

  describe("the README's tunnel steps, with the token they now require", () => {
    const parley = useParley(() => ({
      PUBLIC_URL: "https://parley-demo.trycloudflare.com",
      TWILIO_ACCOUNT_SID: ACCOUNT,
      TWILIO_AUTH_TOKEN: AUTH,
      API_TOKEN,
    }));
    it("the API, the softphone's calls, the visualizer and /metrics answer 401 without it", async () => {
      const { base } = await parley.start();
      expect((await fetch(`${base}/api/calls`)).status).toBe(401);
      expect((await fetch(`${base}/api/phone/calls`, { method: "POST" })).status).toBe(401);
      expect((await fetch(`${base}/api/calls`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ to: "+15550100002", message: "x" }) })).status).toBe(401);
      expect((await fetch(`${base}/metrics`)).status).toBe(401);
      expect((await fetch(`${base}/debug`)).status).toBe(401);
      expect((await fetch(`${base}/api/calls`, { headers: { authorization: `Bearer ${API_TOKEN}` } })).status).toBe(200);
    });
  });
});

describe("TRUST_PROXY", () => {
  it("believes X-Forwarded-For only from trusted proxies, walking from the right", () => {
    const none = trustProxies([]);
    expect(clientAddress("127.0.0.1", "203.0.113.9", none)).toBe("127.0.0.1");
    const lo = trustProxies(["loopback"]);
    expect(clientAddress("::ffff:127.0.0.1", "203.0.113.9", lo)).toBe("203.0.113.9");
    // A client that forges an entry gets its real address appended by the proxy: that is the one used.
    expect(clientAddress("127.0.0.1", "198.51.100.1, 203.0.113.9", lo)).toBe("203.0.113.9");
    // Chains of trusted proxies are walked through.
    const chain = trustProxies(["127.0.0.1", "10.0.0.0/8"]);
    expect(clientAddress("127.0.0.1", "203.0.113.9, 10.1.2.3", chain)).toBe("203.0.113.9");
    // From an untrusted peer the header is ignored.
    expect(clientAddress("198.51.100.7", "203.0.113.9", chain)).toBe("198.51.100.7");
    expect(clientAddress("127.0.0.1", "not-an-address", lo)).toBe("127.0.0.1");
    expect(() => loadConfig({ env: { TRUST_PROXY: "10.0.0.0/33" } })).toThrow(/TRUST_PROXY/);
    expect(loadConfig({ env: { TRUST_PROXY: "loopback, 10.0.0.0/8 ::1" } }).trustProxy).toEqual(["loopback", "10.0.0.0/8", "::1"]);
  });

  const parley = useParley(() => ({ GREETING: "Hi." }));
  const burst = async (base: string, xff: string, n: number) => {
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push((await fetch(`${base}/healthz`, { headers: { "x-forwarded-for": xff } })).status);
    return out;
  };
  const upgrade = (base: string, xff: string) =>
    new Promise<number>((resolve) => {
      const ws = new WebSocket(base.replace("http", "ws") + "/voice/stream", { headers: { "x-forwarded-for": xff } });
      ws.once("unexpected-response", (_q, r) => resolve(r.statusCode ?? 0));
      ws.once("open", () => {
        ws.terminate();
        resolve(101);
      });
    });

  it("off: everyone behind the proxy is one client; on: each forwarded client has its own limit, upgrades included", async () => {
    const off = (await parley.start({}, { rateLimitPerMinute: 3 })).base;
    expect((await burst(off, "203.0.113.1", 3)).every((s) => s === 200)).toBe(true);
    expect(await burst(off, "203.0.113.2", 1)).toEqual([429]);
    expect(await upgrade(off, "203.0.113.3")).toBe(429);

    const on = (await parley.start({}, { rateLimitPerMinute: 3, trustProxy: ["loopback"] })).base;
    expect((await burst(on, "203.0.113.1", 3)).every((s) => s === 200)).toBe(true);
    expect(await burst(on, "203.0.113.1", 1)).toEqual([429]);
    expect(await burst(on, "203.0.113.2", 1)).toEqual([200]);
    expect(await upgrade(on, "203.0.113.3")).toBe(101);
    // A client cannot escape its limit by forging an entry on the left.
    expect(await burst(on, "198.51.100.50, 203.0.113.1", 1)).toEqual([429]);
  });
});

describe("secrets stay out of the logs", () => {
  it("redacts tokens in URLs", () => {
    expect(redactUrl(`/api/calls?state=live&access_token=${API_TOKEN}`)).toBe("/api/calls?state=live&access_token=[redacted]");
    expect(redactUrl(`/phone/stream?token=abc&x=1`)).toBe("/phone/stream?token=[redacted]&x=1");
  });

  it("the rate-limit line does not carry the access_token", async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    });
    const config = loadConfig({ env: { LOG_LEVEL: "warn", PORT: "0", RATE_LIMIT_PER_MINUTE: "1", API_TOKEN } });
    const log = pino({ level: "warn" }, sink);
    const services = { config, log, clock: systemClock, metrics: undefined, stats: undefined, carriers: createCarriers(config) } as unknown as Services;
    const app = buildApp(services);
    const port = await app.listen();
    try {
      for (let i = 0; i < 3; i++) await fetch(`http://127.0.0.1:${port}/api/openapi.json?access_token=${API_TOKEN}`);
    } finally {
      await app.fastify.close();
    }
    const limited = lines.filter((l) => l.includes("rate limit exceeded"));
    expect(limited.length).toBeGreaterThan(0);
    expect(lines.join("")).not.toContain(API_TOKEN);
  });
});
