import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../bench/parley-process.ts";
import type { CallRecord } from "../src/store/call-record.ts";
import { signWebhook } from "../src/carriers/twilio/verify.ts";
import { clipMulaw } from "./helpers/audio.ts";
import { TestLoadBalancer } from "./helpers/load-balancer.ts";
import { OpenAiMock } from "./helpers/openai-mock.ts";
import { TestRedis } from "./helpers/redis.ts";
import { finishedUtterances, streamFromTwiml } from "./helpers/twilio-client.ts";
import { TwilioStandIn } from "./helpers/twilio-standin.ts";

/**
 * A fleet as it runs in production: Parley instances as separate processes, each with its own DATA_DIR (two
 * machines' disks), one real redis-server, a load balancer in front for Twilio's webhooks, and the Twilio stand-in,
 * which follows `<Connect action>` through the load balancer when a stream ends. Media streams go straight to the
 * instance that runs the call (INSTANCE_URL).
 */
const now = (): number => performance.timeOrigin + performance.now();

/** Parley as its own process, as `npm start` runs it, answering /healthz at `base`. */
export async function parleyProcess(base: string, env: Record<string, string>): Promise<ChildProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], { env: { ...process.env, ...env }, stdio: ["ignore", "inherit", "inherit"] });
  for (const until = Date.now() + 180_000; Date.now() < until; ) {
    if (child.exitCode !== null) throw new Error(`parley exited with ${child.exitCode}`);
    try {
      if ((await fetch(`${base}/healthz`)).ok) return child;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill("SIGKILL");
  throw new Error(`parley at ${base} did not start within 180 s`);
}

describe("a call outlives the instance it started on", () => {
  const AUTH = "fleet-failover-auth-token";
  const ACCOUNT = "AC0123456789abcdef0123456789abcdef";
  const GREETING = "Hello, this is Parley.";
  const API_TOKEN = "fleet-failover-api-token-0123456789";
  const authed = { headers: { authorization: `Bearer ${API_TOKEN}` } };
  let redis: TestRedis;
  let standIn: TwilioStandIn;
  let openai: OpenAiMock;
  let lb: TestLoadBalancer;
  const dirs: string[] = [];
  const children: ChildProcess[] = [];
  /** The process running each instance now. */
  const proc: Record<string, ChildProcess> = {};
  const ports = { A: 0, B: 0 };
  const url = (name: "A" | "B") => `http://127.0.0.1:${ports[name]}`;

  /** Instance `name` as its own process, on its own port and disk. */
  async function instance(name: "A" | "B", dataDir: string): Promise<ChildProcess> {
    const child = await parleyProcess(url(name), {
      PORT: String(ports[name]),
      DATA_DIR: dataDir,
      INSTANCE_ID: name,
      INSTANCE_URL: url(name),
      PUBLIC_URL: lb.url,
      REDIS_URL: redis.url,
      REDIS_LEASE_TTL_MS: "5000",
      TWILIO_AUTH_TOKEN: AUTH,
      API_TOKEN,
      GREETING,
      AGENT_PROVIDER: "openai",
      OPENAI_API_KEY: "sk-test",
      OPENAI_BASE_URL: openai.url,
      LOG_LEVEL: "warn",
      // Every request here comes from 127.0.0.1 (the load balancer's health checks among them).
      RATE_LIMIT_PER_MINUTE: "100000",
      DRAIN_TIMEOUT_S: "3",
    });
    children.push(child);
    proc[name] = child;
    return child;
  }

  beforeAll(async () => {
    redis = await TestRedis.start();
    standIn = await TwilioStandIn.start({ accountSid: ACCOUNT, authToken: AUTH });
    let n = 0;
    openai = (await OpenAiMock.start()).reply(() => ({ text: `Reply number ${++n}.` }));
    ports.A = await freePort();
    ports.B = await freePort();
    lb = await TestLoadBalancer.start([url("A"), url("B")]);
    for (const _ of [0, 1]) dirs.push(mkdtempSync(path.join(tmpdir(), "parley-fleet-")));
    await Promise.all([instance("A", dirs[0]!), instance("B", dirs[1]!)]);
    // The first webhook must find both in rotation (A first), not a health check that ran while A was starting.
    await lb.allUp();
  }, 240_000);

  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    await lb?.close();
    await standIn?.close();
    await openai?.close();
    await redis?.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const record = async (base: string, sid: string) => (await (await fetch(`${base}/api/calls/${sid}`, authed)).json()) as CallRecord & { live: boolean; owner?: string };
  const turns = (r: CallRecord) => r.turns.map((t) => `${t.role}:${t.kind ?? ""}:${t.text}`);

  it("A is SIGKILLed mid-call: Twilio's <Connect action> reaches B, which takes the call over with its history; one record holds both", async () => {
    const call = await standIn.inbound({ webhookUrl: `${lb.url}/voice/webhook`, from: "+15550100007", to: "+15550100001" });
    const s1 = await call.waitForStream(1);
    expect(streamFromTwiml(call.twimlRequests[0]!.twiml!).streamUrl).toBe(`ws://127.0.0.1:${ports.A}/voice/stream`);
    await s1.waitFor(() => finishedUtterances(s1) >= 1, 60_000, "the greeting");
    s1.say(await clipMulaw("whats-the-weather-like"));
    s1.silence(1500);
    await s1.waitFor(() => finishedUtterances(s1) >= 2, 90_000, "the reply on A");

    // B serves the live call's record from Redis: A's turns, and A as its owner.
    let fromB = await record(url("B"), call.sid);
    for (let i = 0; i < 100 && fromB.turns.length < 3; i++) {
      await new Promise((r) => setTimeout(r, 50));
      fromB = await record(url("B"), call.sid);
    }
    expect(turns(fromB)).toEqual([`assistant:greeting:${GREETING}`, expect.stringMatching(/^user::.+/), "assistant:reply:Reply number 1."]);
    expect(fromB).toMatchObject({ live: true, owner: "A" });
    const { calls: listed } = (await (await fetch(`${url("B")}/api/calls`, authed)).json()) as { calls: { callSid: string; live: boolean }[] };
    expect(listed.filter((c) => c.callSid === call.sid)).toEqual([expect.objectContaining({ live: true })]);
    const userTextOnA = fromB.turns[1]!.text;

    const killedAt = now();
    proc.A!.kill("SIGKILL");
    const s2 = await call.waitForStream(2, 60_000).catch((err) => {
      console.log("stand-in notes, action requests, load balancer routing:", JSON.stringify(call.notes), JSON.stringify(call.actionRequests), JSON.stringify(lb.routed));
      throw err;
    });
    const streamOnB = now();
    const action = call.actionRequests[0]!;
    expect(streamFromTwiml(action.twiml!).streamUrl).toBe(`ws://127.0.0.1:${ports.B}/voice/stream`);
    expect(action.url).toBe(`${lb.url}/voice/connect-action`);

    // The conversation goes on at B, which sends the whole history to the agent.
    const before = openai.requests.length;
    s2.say(await clipMulaw("new-home-in-the-stars"));
    s2.silence(1500);
    await s2.waitFor(() => s2.frames.length > 0, 90_000, "B's first frame");
    const firstFrameOnB = now();
    await s2.waitFor(() => finishedUtterances(s2) >= 1, 90_000, "the reply on B");
    const sent = openai.requests.slice(before).at(-1)!.messages.filter((m) => m.role !== "system");
    expect(sent.slice(0, 3).map((m) => [m.role, m.content])).toEqual([
      ["assistant", GREETING],
      ["user", userTextOnA],
      ["assistant", "Reply number 1."],
    ]);
    console.log(
      `takeover: A killed -> <Connect action> asked ${action.at - killedAt} ms; action asked -> stream open on B ${streamOnB - action.at} ms; ` +
        `A killed -> B's first frame (the reply to a new utterance) ${firstFrameOnB - killedAt} ms`,
    );

    await s2.hangUp();
    let rec = await record(url("B"), call.sid);
    for (let i = 0; i < 100 && rec.endedAt === null; i++) {
      await new Promise((r) => setTimeout(r, 50));
      rec = await record(url("B"), call.sid);
    }
    // One record: A's turns and B's, in order, ended by the caller, read at B.
    expect(turns(rec)).toEqual([...turns(fromB), expect.stringMatching(/^user::.+/), "assistant:reply:Reply number 2."]);
    expect(rec.endReason).toBe("caller hung up");
    expect(rec.turns.at(-1)!.turnId).toBeGreaterThan(rec.turns[2]!.turnId);

    // A comes back on its own disk, which holds only its half: it serves the whole record, from Redis.
    const aAgain = await instance("A", dirs[0]!);
    expect(aAgain.exitCode).toBeNull();
    const fromA = await record(url("A"), call.sid);
    expect(turns(fromA)).toEqual(turns(rec));
    expect(fromA).toMatchObject({ live: false, endReason: "caller hung up" });
  }, 400_000);

  it("SIGTERM drains A: /healthz says draining, new calls are refused, and the live call moves to B when A lets it go", async () => {
    // The previous test left B, and A restarted; the load balancer prefers A.
    for (let i = 0; i < 100 && !lb.up.get(url("A")); i++) await new Promise((r) => setTimeout(r, 100));
    const call = await standIn.inbound({ webhookUrl: `${lb.url}/voice/webhook`, from: "+15550100008", to: "+15550100001" });
    const s1 = await call.waitForStream(1);
    expect(streamFromTwiml(call.twimlRequests[0]!.twiml!).streamUrl).toBe(`ws://127.0.0.1:${ports.A}/voice/stream`);
    await s1.waitFor(() => finishedUtterances(s1) >= 1, 60_000, "the greeting");

    const a = proc.A!;
    const exited = new Promise<number | null>((resolve) => a.once("exit", (code) => resolve(code)));
    a.kill("SIGTERM");
    let health: Response | null = null;
    for (let i = 0; i < 100; i++) {
      health = await fetch(`${url("A")}/healthz`);
      if (health.status === 503) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(health!.status).toBe(503);
    expect(await health!.json()).toMatchObject({ status: "draining", instance: "A" });
    // A new call straight at A is turned away as busy while it drains; the call in progress carries on there.
    const params = { CallSid: `CA${"1".repeat(32)}`, From: "+15550100009", To: "+15550100001" };
    const signature = signWebhook(AUTH, `${lb.url}/voice/webhook`, params); // signed over PUBLIC_URL, as Twilio does
    const refused = await fetch(`${url("A")}/voice/webhook`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature }, body: new URLSearchParams(params).toString() });
    expect(await refused.text()).toContain('<Reject reason="busy"/>');
    expect(call.streams).toHaveLength(1);

    // DRAIN_TIMEOUT_S later A suspends the call and gives its lease back; Twilio's <Connect action> lands on B.
    const s2 = await call.waitForStream(2, 60_000);
    expect(streamFromTwiml(call.actionRequests.at(-1)!.twiml!).streamUrl).toBe(`ws://127.0.0.1:${ports.B}/voice/stream`);
    expect(await exited).toBe(0);
    s2.say(await clipMulaw("new-home-in-the-stars"));
    s2.silence(1500);
    await s2.waitFor(() => finishedUtterances(s2) >= 1, 90_000, "the reply on B");
    await s2.hangUp();
    let rec = await record(url("B"), call.sid);
    for (let i = 0; i < 100 && rec.endedAt === null; i++) {
      await new Promise((r) => setTimeout(r, 50));
      rec = await record(url("B"), call.sid);
    }
    expect(turns(rec)).toEqual([`assistant:greeting:${GREETING}`, expect.stringMatching(/^user::.+/), expect.stringMatching(/^assistant:reply:Reply number \d+\.$/)]);
    expect(rec.endReason).toBe("caller hung up");
  }, 400_000);
});
