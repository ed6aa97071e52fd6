import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { RedisConnection } from "../src/state/redis-client.ts";
import { signWebhook } from "../src/carriers/twilio/verify.ts";
import { useParley } from "./helpers/harness.ts";
import { TestRedis } from "./helpers/redis.ts";
import { TwilioCall } from "./helpers/twilio-client.ts";

/**
 * Two Parley apps on one real redis-server, reached over real sockets: what one instance hands out or remembers, the
 * other honours. Each pair of apps gets its own key prefix (and its own connections), so tests do not share slots.
 */
describe("a fleet of two instances on Redis", () => {
  let redis: TestRedis;
  const connections: RedisConnection[] = [];
  beforeAll(async () => {
    redis = await TestRedis.start();
  }, 30_000);
  // Registered after Redis is up: the services connect to it at start.
  const parley = useParley(() => ({ REDIS_URL: redis.url, GREETING: "Hi." }));
  afterAll(async () => {
    for (const c of connections) await c.close();
    await redis?.close();
  });

  const AUTH = "fleet-test-auth-token";
  const PUBLIC = "http://fleet.example"; // both behind one load balancer: one public URL, signed as such
  /** Seconds of audio: the per-frame path is busy while the test looks at Redis. */
  const LONG_GREETING = "Hello there. This greeting is long on purpose, so that its audio is still playing while the test looks at what the call asks of Redis.";
  const sid = () => `CA${randomBytes(16).toString("hex")}`;

  /** Apps A and B, each with its own Redis connection, sharing a fresh key prefix. */
  async function pair(config: Parameters<typeof parley.start>[1] = {}, url = redis.url) {
    const prefix = `fleet${randomBytes(4).toString("hex")}:`;
    const start = async (instanceId: string) => {
      const conn = await RedisConnection.connect(url, { prefix });
      connections.push(conn);
      return parley.start({ redis: conn }, { instanceId, ...config });
    };
    return [await start("A"), await start("B")] as const;
  }

  /** Open a Twilio stream and send `start`: what the server says first (a close code and reason, or media). */
  async function startStream(base: string, callSid: string, parameters: Record<string, string>): Promise<string> {
    const ws = new WebSocket(`${base.replace(/^http/, "ws")}/voice/stream`);
    await new Promise((r) => ws.once("open", r));
    const first = new Promise<string>((resolve) => {
      ws.once("close", (code, reason) => resolve(`${code} ${reason.toString()}`));
      ws.once("message", () => resolve("media"));
    });
    ws.send(JSON.stringify({ event: "start", streamSid: "MZ1", start: { streamSid: "MZ1", callSid, customParameters: parameters } }));
    const out = await first;
    ws.terminate();
    return out;
  }

  it("the services use Redis when REDIS_URL is set", () => {
    expect(parley.services.redis).not.toBeNull();
  });

  it("a webhook handled by A is refused as a replay at B", async () => {
    const [a, b] = await pair({ twilioAuthToken: AUTH, publicUrl: PUBLIC });
    const params = { CallSid: sid(), From: "+15550100001", To: "+15550100002" };
    const headers = { "content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signWebhook(AUTH, `${PUBLIC}/voice/webhook`, params) };
    const post = (base: string) => fetch(`${base}/voice/webhook`, { method: "POST", headers, body: new URLSearchParams(params).toString() });
    const first = await post(a.base);
    expect(first.status).toBe(200);
    expect(await first.text()).toContain("<Stream");
    expect((await post(b.base)).status).toBe(409);
    expect((await post(a.base)).status).toBe(409);
  });

  it("a stream token issued by A is spent at B: B finds it (the call runs on A), and A then refuses it as used", async () => {
    const [a, b] = await pair();
    const call = new TwilioCall({ baseUrl: a.base });
    const { parameters } = await call.fetchTwiml();
    expect(await startStream(b.base, sid(), parameters)).toBe("1008 token belongs to another call");
    // Found at B and spent there: B does not run the call (taking calls over is not built yet).
    expect(await startStream(b.base, call.callSid, parameters)).toBe("1008 call is no longer live");
    expect(await startStream(a.base, call.callSid, parameters)).toBe("1008 unknown or already used token");
  });

  it("MAX_CONCURRENT_CALLS is fleet-wide under concurrent requests to both", async () => {
    const [a, b] = await pair({ maxConcurrentCalls: 2 });
    const res = await Promise.all(Array.from({ length: 8 }, (_, i) => fetch(`${(i % 2 ? a : b).base}/api/phone/calls`, { method: "POST" })));
    expect(res.filter((r) => r.status === 201)).toHaveLength(2);
    const refused = res.filter((r) => r.status !== 201);
    for (const r of refused) {
      expect(r.status).toBe(503);
      expect(((await r.json()) as { error: string }).error).toMatch(/^busy: at capacity \(2 calls, MAX_CONCURRENT_CALLS=2\)/);
    }
    expect(a.app.manager.liveCount + b.app.manager.liveCount).toBe(2);
    // Each admitted call is leased by the instance running it (the live-call index).
    for (const [i, r] of res.entries()) {
      if (r.status !== 201) continue;
      const { callSid } = (await r.json()) as { callSid: string };
      await waitFor(() => !!(i % 2 ? a : b).app.state.ownership.lease(callSid), "the call's lease");
      expect(await a.app.state.leases.owner(callSid)).toMatchObject({ holder: i % 2 ? "A" : "B" });
    }
    // An inbound call at either instance finds the same slots taken.
    const inbound = await fetch(`${a.base}/voice/webhook`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams({ CallSid: sid(), From: "+15550100009", To: "+15550100001" }).toString() });
    expect(await inbound.text()).toMatch(/<Reject reason="busy"\/>/);
  });

  it("media sent right behind start is held while the token is redeemed in Redis, then handed to the call", async () => {
    const [a] = await pair();
    const call = new TwilioCall({ baseUrl: a.base });
    const { parameters } = await call.fetchTwiml();
    const ws = new WebSocket(`${a.base.replace(/^http/, "ws")}/voice/stream`);
    await new Promise((r) => ws.once("open", r));
    const first = new Promise<string>((resolve) => {
      ws.once("close", (code, reason) => resolve(`${code} ${reason.toString()}`));
      ws.once("message", () => resolve("media"));
    });
    const payload = Buffer.alloc(160, 0xff).toString("base64");
    // In one go, as a socket delivers a burst: more than the 8 messages allowed before `start` is bound.
    ws.send(JSON.stringify({ event: "start", streamSid: "MZ2", start: { streamSid: "MZ2", callSid: call.callSid, customParameters: parameters } }));
    for (let i = 1; i <= 20; i++) ws.send(JSON.stringify({ event: "media", streamSid: "MZ2", media: { track: "inbound", chunk: String(i), timestamp: String(i * 20), payload } }));
    expect(await first).toBe("media");
    const health = (await (await fetch(`${a.base}/healthz`)).json()) as { protocolErrors: Record<string, number> };
    expect(health.protocolErrors).toEqual({});
    ws.terminate();
  });

  it("a call costs a handful of Redis commands, and a media frame none", async () => {
    // Shared-record lines go out at each turn's end and at hang-up; the timer is set out of the way here, so a second
    // of the greeting's audio (no turn ends in it) must cost nothing at all.
    const [a] = await pair({ greeting: LONG_GREETING, recordFlushMs: 60_000 });
    const conn = a.app.state;
    const count = () => {
      const ops = { ...conn.stats()!.ops };
      // The renewal timers run every third of the lease TTL whatever the traffic: not per call, not per frame.
      for (const k of Object.keys(ops)) if (k.startsWith("script:parleyRenew") || k === "script:parleyLeaseRenew") delete ops[k];
      return ops;
    };
    const total = (ops: Record<string, number>) => Object.values(ops).reduce((x, y) => x + y, 0);
    const before = count();
    const call = new TwilioCall({ baseUrl: a.base });
    await call.connect();
    await waitFor(() => call.frames.length > 0, "the greeting's first frame");
    const started = count();
    const framesAt = call.frames.length;
    await waitFor(() => call.frames.length >= framesAt + 50, "50 more frames of the greeting");
    expect(count()).toEqual(started); // a second of media both ways: no Redis command
    await call.hangUp();
    // As Twilio does when the caller hangs up: the status callback ends the call at once.
    const done = await fetch(`${a.base}/voice/status`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams({ CallSid: call.callSid, CallStatus: "completed" }).toString() });
    expect(done.status).toBe(200);
    await waitFor(() => a.app.manager.liveCount === 0, "the call to end");
    await waitFor(() => total(count()) > total(started) + 1, "the slot and lease to be released");
    const perCall: Record<string, number> = {};
    for (const [k, n] of Object.entries(count())) if (n - (before[k] ?? 0)) perCall[k] = n - (before[k] ?? 0);
    console.log(`Redis commands for one inbound call (webhook, stream, hang-up, status callback): ${JSON.stringify(perCall)}`);
    // PART A's 9, plus the shared record's appends: the greeting's turn and the hang-up, then the outcome and the
    // status callback after it (one append, or two when the callback comes after the outcome went out).
    expect(total(perCall) - (perCall["script:parleyRecordAppend"] ?? 0)).toBeLessThanOrEqual(10);
    expect(perCall["script:parleyRecordAppend"]).toBeLessThanOrEqual(4);
  });

  it("speak, hangup and SSE at B for a call A runs are served by A (Redis pub/sub); /metrics names its instance", async () => {
    const [a, b] = await pair();
    const call = new TwilioCall({ baseUrl: a.base });
    await call.connect();
    await waitFor(() => call.frames.length > 0, "the greeting's first frame");
    await waitFor(() => !!a.app.state.ownership.lease(call.callSid), "the call's lease");
    const post = (base: string, what: string, body: unknown) =>
      fetch(`${base}/api/calls/${call.callSid}/${what}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    expect(b.app.manager.get(call.callSid)).toBeUndefined();
    // B's SSE stream of the call follows it as it runs on A, to its end.
    const sse = await fetch(`${b.base}/api/calls/${call.callSid}/events`);
    expect(sse.status).toBe(200);
    let text = "";
    const reading = (async () => {
      for await (const chunk of sse.body!) text += Buffer.from(chunk).toString();
    })();
    await waitFor(() => text.includes("event: snapshot"), "the snapshot");
    expect(text).toContain('"live":true');
    expect((await post(b.base, "speak", { text: "Routed through Redis." })).status).toBe(202);
    await waitFor(() => a.app.manager.get(call.callSid)!.record.turns.some((t) => t.text === "Routed through Redis."), "A to say the routed words");
    // B reads the live call's record from Redis, with A as its owner.
    const rec = (await (await fetch(`${b.base}/api/calls/${call.callSid}`)).json()) as { live: boolean; owner: string };
    expect(rec).toMatchObject({ live: true, owner: "A" });
    expect((await post(b.base, "hangup", {})).status).toBe(202);
    await waitFor(() => a.app.manager.liveCount === 0, "A to hang the call up");
    await reading; // the stream ends once the call has released its observers
    expect(text).toMatch(/event: turn\ndata: .*Routed through Redis\./);
    expect(text).toMatch(/event: end\ndata: .*hung up through the control API/);
    let ended = await b.app.manager.recordOf(call.callSid);
    for (let i = 0; i < 100 && ended?.endedAt == null; i++) {
      await new Promise((r) => setTimeout(r, 20));
      ended = await b.app.manager.recordOf(call.callSid);
    }
    expect(ended?.endReason).toBe("hung up through the control API");
    // Ended: the command is refused as before, from either instance.
    expect((await post(b.base, "speak", { text: "Too late." })).status).toBe(409);
    expect(await (await fetch(`${b.base}/metrics`)).text()).toMatch(/parley_live_calls\{instance="[AB]"\}/);
  });

  it("Redis going away: the live call keeps talking, new calls get 503 and /healthz says why; after it is back, calls are admitted", async () => {
    const own = await TestRedis.start();
    try {
      const [a] = await pair({ greeting: LONG_GREETING }, own.url);
      const call = new TwilioCall({ baseUrl: a.base });
      await call.connect();
      await waitFor(() => call.frames.length > 0, "the greeting's first frame");
      expect((await fetch(`${a.base}/healthz`)).status).toBe(200);

      await own.stop();
      await waitFor(() => a.app.state.problem() !== null, "the connection to notice Redis is gone");
      const atStop = call.frames.length;
      const health = await fetch(`${a.base}/healthz`);
      expect(health.status).toBe(503);
      expect(await health.json()).toMatchObject({ ok: false, redis: expect.stringMatching(/^unreachable: /) });
      const refused = await fetch(`${a.base}/api/phone/calls`, { method: "POST" });
      expect(refused.status).toBe(503);
      expect(((await refused.json()) as { error: string }).error).toContain(`Redis at ${own.url}`);
      // Per frame nothing needs Redis: the greeting keeps streaming (25 frames = half a second of audio).
      await waitFor(() => call.frames.length >= atStop + 25, "audio to keep flowing without Redis");
      expect(a.app.manager.get(call.callSid)?.live).toBe(true);

      await own.start();
      await waitFor(() => a.app.state.problem() === null, "the client to reconnect");
      expect((await fetch(`${a.base}/healthz`)).status).toBe(200);
      expect((await fetch(`${a.base}/api/phone/calls`, { method: "POST" })).status).toBe(201);
      await call.hangUp();
    } finally {
      await own.close();
    }
  }, 60_000);
});

async function waitFor(pred: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
