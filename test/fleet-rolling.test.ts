import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CallRecord } from "../src/store/call-record.ts";
import { clipMulaw } from "./helpers/audio.ts";
import { TestFleet } from "./helpers/fleet.ts";
import { OpenAiMock } from "./helpers/openai-mock.ts";
import { finishedUtterances, streamFromTwiml } from "./helpers/twilio-client.ts";
import { TwilioStandIn, waitUntil, type StandInCall } from "./helpers/twilio-standin.ts";

/**
 * A rolling restart under load (issue #14): two Parley processes on one real redis-server behind a round-robin load
 * balancer, six calls talking real speech the whole time. A is drained (SIGTERM), its calls move to B through Twilio's
 * `<Connect action>`; A starts again; B is drained, and all six move to A. No call may be lost or end early, every call
 * must keep answering after each restart, and each call's one record must hold its turns from every instance it ran
 * on, in order, once each. Each instance has its own agent (a mock naming it in every reply), so the record shows
 * which instance answered which turn.
 */
const CALLS = 6;

describe("a rolling restart under load loses no call", () => {
  const AUTH = "fleet-rolling-auth-token";
  const ACCOUNT = "AC0123456789abcdef0123456789abcdef";
  const GREETING = "Hello, this is Parley.";
  const API_TOKEN = "fleet-rolling-api-token-0123456789";
  let fleet: TestFleet;
  let standIn: TwilioStandIn;
  const agents: Record<string, OpenAiMock> = {};

  beforeAll(async () => {
    standIn = await TwilioStandIn.start({ accountSid: ACCOUNT, authToken: AUTH });
    for (const name of ["A", "B"]) {
      let n = 0;
      agents[name] = (await OpenAiMock.start()).reply(() => ({ text: `Reply ${++n} from ${name}.` }));
    }
    fleet = await TestFleet.start({
      roundRobin: true,
      env: (name) => ({
        TWILIO_AUTH_TOKEN: AUTH,
        API_TOKEN,
        GREETING,
        AGENT_PROVIDER: "openai",
        OPENAI_API_KEY: "sk-test",
        OPENAI_BASE_URL: agents[name]!.url,
        // Longer than the load balancer's health checks (200 ms) take to see the instance draining.
        DRAIN_TIMEOUT_S: "2",
      }),
    });
  }, 240_000);

  afterAll(async () => {
    await fleet?.close();
    await standIn?.close();
    for (const a of Object.values(agents)) await a.close();
  });

  /** A caller that keeps talking: an utterance, a pause, the reply heard to its end; on a new stream when one ends. */
  class Talker {
    /** Replies heard to their end, in total (across streams). */
    answered = 0;
    stopped = false;
    readonly done: Promise<void>;
    constructor(
      readonly call: StandInCall,
      clips: Uint8Array[],
    ) {
      this.done = this.run(clips);
    }
    private async run(clips: Uint8Array[]): Promise<void> {
      for (let i = 0; !this.stopped; i++) {
        const n = this.call.streams.length;
        const s = this.call.streams[n - 1]!;
        const before = finishedUtterances(s);
        s.say(clips[i % clips.length]!);
        s.silence(1500);
        await waitUntil(() => finishedUtterances(s) > before || !s.isOpen || this.stopped, 120_000, `a reply on call ${this.call.sid}`, 20);
        if (finishedUtterances(s) > before) this.answered++;
        // The instance let the stream go (drained): Twilio asks the action URL and opens the next one.
        if (!s.isOpen && !this.stopped) await this.call.waitForStream(n + 1, 120_000);
      }
    }
  }

  /** Which instance each of the call's streams went to, from the TwiML that opened it. */
  const hosts = (call: StandInCall) =>
    call.twimlRequests.map((r) => {
      const port = r.twiml?.includes("<Stream") ? new URL(streamFromTwiml(r.twiml).streamUrl).port : "";
      return fleet.names.find((n) => new URL(fleet.url(n)).port === port) ?? `none (${r.httpStatus ?? r.error})`;
    });

  /** Every call answers at least one more turn than it had, on the instance named (the one it must now run on). */
  async function everyCallAnswersAgain(talkers: Talker[], on: (t: Talker) => string, what: string): Promise<void> {
    const before = talkers.map((t) => t.answered);
    await Promise.all(
      talkers.map((t, i) =>
        waitUntil(() => t.answered > before[i]! || t.call.isOver, 120_000, `call ${i} to answer ${what}`, 20).then(() => {
          expect(t.call.isOver, `call ${i} ended: ${t.call.describe()}`).toBe(false);
          expect(hosts(t.call).at(-1)).toBe(on(t));
        }),
      ),
    );
  }

  it("SIGTERM A, start it again, SIGTERM B, while six calls talk: every call carries on, and its record holds each turn once, in order", async () => {
    const clips = [await clipMulaw("whats-the-weather-like"), await clipMulaw("new-home-in-the-stars")];
    const calls = await Promise.all(Array.from({ length: CALLS }, (_, i) => standIn.inbound({ webhookUrl: `${fleet.lb.url}/voice/webhook`, from: `+1555010010${i}`, to: "+15550100001" })));
    await Promise.all(calls.map((c) => c.waitForStream(1, 30_000)));
    const origin = new Map(calls.map((c) => [c, hosts(c)[0]!]));
    // Round robin: half the calls on each instance.
    expect([...origin.values()].filter((h) => h === "A")).toHaveLength(CALLS / 2);
    expect([...origin.values()].filter((h) => h === "B")).toHaveLength(CALLS / 2);
    await Promise.all(calls.map((c) => c.stream!.waitFor(() => finishedUtterances(c.stream!) >= 1, 60_000, "the greeting")));
    const talkers = calls.map((c) => new Talker(c, clips));
    await everyCallAnswersAgain(talkers, (t) => origin.get(t.call)!, "on the instance it started on");

    // A drains: its calls move to B when it lets them go; B's calls never notice.
    expect(await fleet.stop("A", "SIGTERM")).toBe(0);
    const aBack = fleet.instance("A"); // started again at once; the calls keep talking on B meanwhile
    await everyCallAnswersAgain(talkers, () => "B", "on B after A drained");
    await aBack;
    await fleet.lb.allUp();
    await everyCallAnswersAgain(talkers, () => "B", "on B while A came back");

    // B drains: every call moves to A.
    expect(await fleet.stop("B", "SIGTERM")).toBe(0);
    await everyCallAnswersAgain(talkers, () => "A", "on A after B drained");

    for (const t of talkers) t.stopped = true;
    await Promise.all(talkers.map((t) => t.done));
    for (const c of calls) {
      expect(c.isOver).toBe(false);
      // Each stream ended by a drain was followed by an action request that opened the next: none refused.
      expect(c.actionRequests.map((r) => r.httpStatus)).toEqual(origin.get(c) === "A" ? [200, 200] : [200]);
      expect(hosts(c)).toEqual(origin.get(c) === "A" ? ["A", "B", "A"] : ["B", "A"]);
    }
    await Promise.all(calls.map((c) => c.hangUp()));

    const records = await Promise.all(
      calls.map(async (c) => {
        let rec: CallRecord | null = null;
        for (let i = 0; i < 200 && rec?.endedAt == null; i++) {
          rec = (await (await fetch(`${fleet.url("A")}/api/calls/${c.sid}`, { headers: { authorization: `Bearer ${API_TOKEN}` } })).json()) as CallRecord;
          if (rec.endedAt == null) await new Promise((r) => setTimeout(r, 50));
        }
        return rec!;
      }),
    );
    for (const [i, rec] of records.entries()) {
      const call = calls[i]!;
      expect(rec.endReason, call.sid).toBe("caller hung up");
      // Once each, in order: the greeting first and only once, turn ids rising, no reply recorded twice.
      expect(rec.turns.filter((t) => t.kind === "greeting").map((t) => t.text)).toEqual([GREETING]);
      expect(rec.turns[0]!.kind).toBe("greeting");
      // A turn id names an exchange: the caller's words and the reply to them share it.
      const ids = rec.turns.map((t) => t.turnId);
      expect(ids, call.sid).toEqual([...ids].sort((a, b) => a - b));
      const keys = rec.turns.map((t) => `${t.turnId}:${t.role}`);
      expect(new Set(keys).size, `${call.sid}: ${keys.join(" ")}`).toBe(keys.length);
      const replies = rec.turns.filter((t) => t.role === "assistant" && t.kind === "reply").map((t) => t.text);
      expect(new Set(replies).size, call.sid).toBe(replies.length);
      // The instances that answered, in the order they ran the call: the record holds the turns from each.
      const by = replies.map((r) => /from ([AB])\.$/.exec(r)?.[1]).filter((x, j, xs) => x !== xs[j - 1]);
      expect(by, call.sid).toEqual(origin.get(call) === "A" ? ["A", "B", "A"] : ["B", "A"]);
      // Every reply the caller heard to its end is in the record (one cut by a drain may be there too, interrupted).
      expect(rec.turns.filter((t) => t.kind === "reply" && !t.interrupted).length).toBeGreaterThanOrEqual(talkers[i]!.answered);
      expect(rec.turns.filter((t) => t.role === "user").length).toBeGreaterThanOrEqual(talkers[i]!.answered);
    }
    console.log(`rolling restart: ${CALLS} calls, replies heard per call ${talkers.map((t) => t.answered).join(", ")}; turns recorded per call ${records.map((r) => r.turns.length).join(", ")}`);
  }, 300_000);
});
