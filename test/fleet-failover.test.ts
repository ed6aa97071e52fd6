import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CallRecord } from "../src/store/call-record.ts";
import { signWebhook } from "../src/carriers/twilio/verify.ts";
import { clipMulaw } from "./helpers/audio.ts";
import { TestFleet } from "./helpers/fleet.ts";
import { OpenAiMock } from "./helpers/openai-mock.ts";
import { finishedUtterances, streamFromTwiml } from "./helpers/twilio-client.ts";
import { TwilioStandIn } from "./helpers/twilio-standin.ts";

/**
 * A fleet as it runs in production (test/helpers/fleet.ts): Parley instances as separate processes, each with its own
 * DATA_DIR, one real redis-server, a load balancer in front for Twilio's webhooks, and the Twilio stand-in, which
 * follows `<Connect action>` through the load balancer when a stream ends.
 */
const now = (): number => performance.timeOrigin + performance.now();

describe("a call outlives the instance it started on", () => {
  const AUTH = "fleet-failover-auth-token";
  const ACCOUNT = "AC0123456789abcdef0123456789abcdef";
  const GREETING = "Hello, this is Parley.";
  const API_TOKEN = "fleet-failover-api-token-0123456789";
  const authed = { headers: { authorization: `Bearer ${API_TOKEN}` } };
  let fleet: TestFleet;
  let standIn: TwilioStandIn;
  let openai: OpenAiMock;
  const url = (name: "A" | "B") => fleet.url(name);

  beforeAll(async () => {
    standIn = await TwilioStandIn.start({ accountSid: ACCOUNT, authToken: AUTH });
    let n = 0;
    openai = (await OpenAiMock.start()).reply(() => ({ text: `Reply number ${++n}.` }));
    fleet = await TestFleet.start({
      env: () => ({
        REDIS_LEASE_TTL_MS: "5000",
        TWILIO_AUTH_TOKEN: AUTH,
        API_TOKEN,
        GREETING,
        AGENT_PROVIDER: "openai",
        OPENAI_API_KEY: "sk-test",
        OPENAI_BASE_URL: openai.url,
        DRAIN_TIMEOUT_S: "3",
      }),
    });
  }, 240_000);

  afterAll(async () => {
    await fleet?.close();
    await standIn?.close();
    await openai?.close();
  });

  const record = async (base: string, sid: string) => (await (await fetch(`${base}/api/calls/${sid}`, authed)).json()) as CallRecord & { live: boolean; owner?: string };
  const turns = (r: CallRecord) => r.turns.map((t) => `${t.role}:${t.kind ?? ""}:${t.text}`);

  it("A is SIGKILLed mid-call: Twilio's <Connect action> reaches B, which takes the call over with its history; one record holds both", async () => {
    const call = await standIn.inbound({ webhookUrl: `${fleet.lb.url}/voice/webhook`, from: "+15550100007", to: "+15550100001" });
    const s1 = await call.waitForStream(1);
    expect(streamFromTwiml(call.twimlRequests[0]!.twiml!).streamUrl).toBe(`${url("A").replace("http", "ws")}/voice/stream`);
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
    expect(turns(fromB), `errors: ${JSON.stringify(fromB.errors)}`).toEqual([`assistant:greeting:${GREETING}`, expect.stringMatching(/^user::.+/), "assistant:reply:Reply number 1."]);
    expect(fromB).toMatchObject({ live: true, owner: "A" });
    const { calls: listed } = (await (await fetch(`${url("B")}/api/calls`, authed)).json()) as { calls: { callSid: string; live: boolean }[] };
    expect(listed.filter((c) => c.callSid === call.sid)).toEqual([expect.objectContaining({ live: true })]);
    const userTextOnA = fromB.turns[1]!.text;

    const killedAt = now();
    fleet.proc.A!.kill("SIGKILL");
    const s2 = await call.waitForStream(2, 60_000).catch((err) => {
      console.log("stand-in notes, action requests, load balancer routing:", JSON.stringify(call.notes), JSON.stringify(call.actionRequests), JSON.stringify(fleet.lb.routed));
      throw err;
    });
    const streamOnB = now();
    const action = call.actionRequests[0]!;
    expect(streamFromTwiml(action.twiml!).streamUrl).toBe(`${url("B").replace("http", "ws")}/voice/stream`);
    expect(action.url).toMatch(new RegExp(`^${fleet.lb.url}/voice/connect-action\\?connect=[\\w-]+$`));

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
    const aAgain = await fleet.instance("A");
    expect(aAgain.exitCode).toBeNull();
    const fromA = await record(url("A"), call.sid);
    expect(turns(fromA)).toEqual(turns(rec));
    expect(fromA).toMatchObject({ live: false, endReason: "caller hung up" });
  }, 400_000);

  it("SIGTERM drains A: /healthz says draining, new calls are refused, and the live call moves to B when A lets it go", async () => {
    // The previous test left B, and A restarted; the load balancer prefers A.
    for (let i = 0; i < 100 && !fleet.lb.up.get(url("A")); i++) await new Promise((r) => setTimeout(r, 100));
    const call = await standIn.inbound({ webhookUrl: `${fleet.lb.url}/voice/webhook`, from: "+15550100008", to: "+15550100001" });
    const s1 = await call.waitForStream(1);
    expect(streamFromTwiml(call.twimlRequests[0]!.twiml!).streamUrl).toBe(`${url("A").replace("http", "ws")}/voice/stream`);
    await s1.waitFor(() => finishedUtterances(s1) >= 1, 60_000, "the greeting");

    const exited = fleet.stop("A", "SIGTERM");
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
    const signature = signWebhook(AUTH, `${fleet.lb.url}/voice/webhook`, params); // signed over PUBLIC_URL, as Twilio does
    const refused = await fetch(`${url("A")}/voice/webhook`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature }, body: new URLSearchParams(params).toString() });
    expect(await refused.text()).toContain('<Reject reason="busy"/>');
    expect(call.streams).toHaveLength(1);

    // DRAIN_TIMEOUT_S later A suspends the call and gives its lease back; Twilio's <Connect action> lands on B.
    const s2 = await call.waitForStream(2, 60_000);
    expect(streamFromTwiml(call.actionRequests.at(-1)!.twiml!).streamUrl).toBe(`${url("B").replace("http", "ws")}/voice/stream`);
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
