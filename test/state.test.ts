import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isBusy, RedisAdmission, type Ticket } from "../src/state/admission.ts";
import { RedisConnection, StateUnavailableError } from "../src/state/redis-client.ts";
import { createSharedState, type SharedState } from "../src/state/shared-state.ts";
import { ManualClock, systemClock } from "../src/util/clock.ts";
import { TestRedis } from "./helpers/redis.ts";

/**
 * One contract for the shared state, run over both implementations: this process's memory (time moved by hand) and a
 * real redis-server (time passes for real: TTLs here are short, and nothing asserts how long anything took).
 */
let redis: TestRedis;
const connections: RedisConnection[] = [];
const states: SharedState[] = [];
beforeAll(async () => {
  redis = await TestRedis.start();
}, 30_000);
afterAll(async () => {
  for (const s of states) s.close();
  for (const c of connections) await c.close();
  await redis?.close();
});

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const config = (over: Partial<{ maxConcurrentCalls: number; rateLimitPerMinute: number; instanceId: string; redisLeaseTtlMs: number }> = {}) => ({
  maxConcurrentCalls: 3,
  rateLimitPerMinute: 600,
  instanceId: "A",
  redisLeaseTtlMs: 60_000,
  ...over,
});

async function connect(prefix: string): Promise<RedisConnection> {
  const c = await RedisConnection.connect(redis.url, { prefix });
  connections.push(c);
  return c;
}

interface Fixture {
  /** A state set: another instance of the same fleet when `fleet` is shared. */
  make(over?: Parameters<typeof config>[0]): Promise<SharedState>;
  /** Let `ms` pass for the state's expiries. */
  advance(ms: number): Promise<void>;
}

const implementations: [string, () => Fixture][] = [
  [
    "memory",
    () => {
      const clock = new ManualClock();
      return {
        make: async (over) => track(createSharedState(config(over), clock, null)),
        advance: async (ms) => clock.advance(ms),
      };
    },
  ],
  [
    "redis",
    () => {
      const prefix = `t${randomBytes(4).toString("hex")}:`;
      return {
        make: async (over) => track(createSharedState(config(over), systemClock, await connect(prefix))),
        advance: (ms) => sleep(ms + 30),
      };
    },
  ],
];
const track = (s: SharedState) => (states.push(s), s);

describe.each(implementations)("shared state contract: %s", (_name, fixture) => {
  it("a stream token is single use, bound to its call, and refused unspent for another call", async () => {
    const { tokens } = await fixture().make();
    await tokens.bind("tok1", "CA1", 60_000, false);
    expect(await tokens.redeem("tok1", "CA2", "twilio")).toEqual({ error: "token belongs to another call" });
    expect(await tokens.isBrowserToken("tok1")).toBe(false);
    expect(await tokens.redeem("tok1", "CA1", "phone")).toEqual({ error: "not a softphone token" });
    expect(await tokens.redeem("tok1", "CA1", "twilio")).toEqual({ ok: true });
    expect(await tokens.redeem("tok1", "CA1", "twilio")).toEqual({ error: "unknown or already used token" });
    expect(await tokens.redeem("never", "CA1", "twilio")).toEqual({ error: "unknown or already used token" });
  });

  it("a softphone token admits the softphone's path only, and expires", async () => {
    const f = fixture();
    const { tokens } = await f.make();
    await tokens.bind("ph1", "BR1", 60_000, true);
    expect(await tokens.isBrowserToken("ph1")).toBe(true);
    expect(await tokens.redeem("ph1", "BR1", "twilio")).toEqual({ error: "softphone token on the Twilio stream path" });
    expect(await tokens.redeem("ph1", "BR1", "phone")).toEqual({ ok: true });
    expect(await tokens.isBrowserToken("ph1")).toBe(false);
    await tokens.bind("ph2", "BR2", 100, true);
    await tokens.bind("tw2", "CA2", 100, false);
    await f.advance(150);
    expect(await tokens.isBrowserToken("ph2")).toBe(false);
    expect(await tokens.redeem("tw2", "CA2", "twilio")).not.toEqual({ ok: true });
  });

  it("the replay guard lets one copy through, and a failed request's copy again after forget", async () => {
    const { replay } = await fixture().make();
    const copies = await Promise.all(Array.from({ length: 5 }, () => replay.claim("req1")));
    expect(copies.filter(Boolean)).toHaveLength(1);
    expect(await replay.claim("req2")).toBe(true);
    await replay.forget("req2");
    expect(await replay.claim("req2")).toBe(true);
    expect(await replay.claim("req2")).toBe(false);
  });

  it("rate limits are a bucket per client that refills", async () => {
    const f = fixture();
    const { rateLimit } = await f.make({ rateLimitPerMinute: 600 });
    const first = await Promise.all(Array.from({ length: 605 }, () => rateLimit.take("10.0.0.1")));
    expect(first.filter(Boolean).length).toBe(600);
    expect(await rateLimit.take("10.0.0.2")).toBe(true);
    await f.advance(300); // 600 a minute: ten a second, so about three back
    let more = 0;
    for (let i = 0; i < 20; i++) if (await rateLimit.take("10.0.0.1")) more++;
    expect(more).toBeGreaterThanOrEqual(1);
    expect(more).toBeLessThan(20);
  });

  it("admission takes exactly the cap under concurrent admits, and gives slots back", async () => {
    const { admission } = await fixture().make({ maxConcurrentCalls: 3 });
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => admission.admit(`c${i}`, "inbound")));
    const held = results.filter((r): r is Ticket => !isBusy(r));
    expect(held).toHaveLength(3);
    expect(results.find(isBusy)).toMatchObject({ busy: true, inUse: 3, max: 3 });
    expect(await admission.admit(held[0]!.id, "inbound")).toBe(held[0]); // already held: a no-op
    await admission.release(held[0]!);
    await admission.release(held[0]!);
    expect(admission.inUse).toBe(2);
    const renamed = await admission.rename(held[1]!, "renamed");
    expect(renamed.id).toBe("renamed");
    expect(isBusy(await admission.admit("d1", "outbound"))).toBe(false);
    expect(isBusy(await admission.admit("d2", "outbound"))).toBe(true);
    await admission.release(renamed);
    expect(isBusy(await admission.admit("d2", "outbound"))).toBe(false);
  });

  it("a lease is fenced: after it expires and another holder takes it, the old holder's renew, write and release are refused", async () => {
    const f = fixture();
    const { leases } = await f.make();
    const a = (await leases.acquire("CAx", "A", 200))!;
    expect(a).toMatchObject({ callSid: "CAx", holder: "A" });
    expect(await leases.acquire("CAx", "B", 200)).toBeNull();
    expect(await leases.owner("CAx")).toEqual({ holder: "A", fence: a.fence });
    expect(await leases.renew(a, 200)).toBe(true);
    expect(await leases.append(a, "from A")).toBe(true);
    await f.advance(250);
    expect(await leases.owner("CAx")).toBeNull();
    const b = (await leases.acquire("CAx", "B", 60_000))!;
    expect(b.fence).toBeGreaterThan(a.fence);
    expect(await leases.renew(a, 200)).toBe(false);
    expect(await leases.append(a, "stale write from A")).toBe(false);
    expect(await leases.release(a)).toBe(false);
    expect(await leases.append(b, "from B")).toBe(true);
    expect(await leases.owner("CAx")).toEqual({ holder: "B", fence: b.fence });
    expect(await leases.entries("CAx")).toEqual(["from A", "from B"]);
    expect(await leases.release(b)).toBe(true);
    expect(await leases.owner("CAx")).toBeNull();
    const again = (await leases.acquire("CAx", "A", 200))!;
    expect(again.fence).toBeGreaterThan(b.fence);
    // The same holder name (an instance restarted under its old INSTANCE_ID) with an older fence is still stale.
    expect(await leases.append(a, "A's first life")).toBe(false);
    expect(await leases.renew(a, 200)).toBe(false);
    expect(await leases.append(again, "A again")).toBe(true);
  });

  it("a call's lease is taken at set-up and given back at its end, even when it ends before the lease arrived", async () => {
    const { ownership, leases } = await fixture().make({ instanceId: "A" });
    const taking = ownership.claim("CAo");
    await ownership.drop("CAo"); // the call ended at once
    expect(await taking).toMatchObject({ holder: "A" });
    expect(ownership.lease("CAo")).toBeUndefined();
    expect(await leases.owner("CAo")).toBeNull();
    const lease = (await ownership.claim("CAp"))!;
    expect(await leases.owner("CAp")).toEqual({ holder: "A", fence: lease.fence });
    await ownership.drop("CAp");
    expect(await leases.owner("CAp")).toBeNull();
  });

  it("a holder that keeps renewing keeps its lease past the TTL", async () => {
    const f = fixture();
    const { leases } = await f.make();
    const a = (await leases.acquire("CAy", "A", 200))!;
    for (let i = 0; i < 4; i++) {
      await f.advance(100);
      expect(await leases.renew(a, 200)).toBe(true);
    }
    expect(await leases.acquire("CAy", "B", 200)).toBeNull();
  });
});

describe("a fleet on one Redis: two instances, each with its own connection", () => {
  const fleet = async (over: Parameters<typeof config>[0] = {}) => {
    const prefix = `f${randomBytes(4).toString("hex")}:`;
    return [track(createSharedState(config({ ...over, instanceId: "A" }), systemClock, await connect(prefix))), track(createSharedState(config({ ...over, instanceId: "B" }), systemClock, await connect(prefix)))] as const;
  };

  it("a token issued by A is redeemed at B, once", async () => {
    const [a, b] = await fleet();
    await a.tokens.bind("shared", "CA1", 60_000, false);
    await b.tokens.bind("phone", "BR1", 60_000, true);
    expect(await b.tokens.redeem("shared", "CA2", "twilio")).toEqual({ error: "token belongs to another call" });
    expect(await b.tokens.redeem("shared", "CA1", "twilio")).toEqual({ ok: true });
    expect(await a.tokens.redeem("shared", "CA1", "twilio")).toEqual({ error: "unknown or already used token" });
    expect(await a.tokens.isBrowserToken("phone")).toBe(true);
  });

  it("a request replayed across instances is refused", async () => {
    const [a, b] = await fleet();
    const both = await Promise.all([a.replay.claim("r"), b.replay.claim("r"), a.replay.claim("r"), b.replay.claim("r")]);
    expect(both.filter(Boolean)).toHaveLength(1);
    expect(await b.replay.claim("r")).toBe(false);
  });

  it("the cap holds under concurrent admits from both instances, and released slots come back to either", async () => {
    const [a, b] = await fleet({ maxConcurrentCalls: 3 });
    const by = (i: number) => (i % 2 ? a : b);
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => by(i).admission.admit(`c${i}`, "inbound")));
    expect(results.filter((r) => !isBusy(r))).toHaveLength(3);
    expect(a.admission.inUse + b.admission.inUse).toBe(3);
    const i = results.findIndex((r) => !isBusy(r));
    const [holder, ticket] = [by(i), results[i] as Ticket];
    const other = holder === a ? b : a;
    expect(isBusy(await other.admission.admit("late", "inbound"))).toBe(true);
    await holder.admission.release(ticket);
    expect(isBusy(await other.admission.admit("late", "inbound"))).toBe(false);
  });

  it("a live instance's slots are renewed past their TTL; a crashed instance's slots expire", async () => {
    const [a, b] = await fleet({ maxConcurrentCalls: 2, redisLeaseTtlMs: 300 });
    expect(isBusy(await a.admission.admit("a1", "inbound"))).toBe(false);
    expect(isBusy(await a.admission.admit("a2", "inbound"))).toBe(false);
    await sleep(700); // more than twice the TTL: only the renewals keep them
    expect(isBusy(await b.admission.admit("b1", "inbound"))).toBe(true);
    a.close(); // A stops renewing, as if its process had died
    await sleep(400);
    expect(isBusy(await b.admission.admit("b1", "inbound"))).toBe(false);
  });

  it("a stale owner is fenced out across instances", async () => {
    const [a, b] = await fleet();
    const la = (await a.leases.acquire("CAz", a.instanceId, 150))!;
    await sleep(200); // A stalls past its lease
    const lb = (await b.leases.acquire("CAz", b.instanceId, 60_000))!;
    expect(lb.fence).toBeGreaterThan(la.fence);
    expect(await a.leases.renew(la, 150)).toBe(false);
    expect(await a.leases.append(la, "stale")).toBe(false);
    expect(await b.leases.append(lb, "fresh")).toBe(true);
    expect(await a.leases.entries("CAz")).toEqual(["fresh"]);
    expect(await a.leases.owner("CAz")).toEqual({ holder: "B", fence: lb.fence });
  });
});

describe("Redis restarts", () => {
  it("startup against an unreachable Redis fails naming the URL", async () => {
    const err = await RedisConnection.connect("redis://127.0.0.1:1", { connectTimeoutMs: 1000 }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(StateUnavailableError);
    expect((err as Error).message).toMatch(/Redis at redis:\/\/127\.0\.0\.1:1.*\(REDIS_URL\) is unreachable/);
  });

  it("while Redis is down admission is refused with a clear error; after it is back, the client reconnects and admits", async () => {
    const own = await TestRedis.start();
    try {
      const conn = await RedisConnection.connect(own.url, { prefix: "r:" });
      connections.push(conn);
      const state = track(createSharedState(config({ maxConcurrentCalls: 5 }), systemClock, conn));
      expect(isBusy(await state.admission.admit("before", "inbound"))).toBe(false);
      expect(state.problem()).toBeNull();
      await own.stop();
      for (let i = 0; i < 100 && state.problem() === null; i++) await sleep(20);
      expect(state.problem()).toMatch(/^unreachable: /);
      const refused = await state.admission.admit("during", "inbound").catch((e: Error) => e);
      expect(refused).toBeInstanceOf(StateUnavailableError);
      expect((refused as Error).message).toContain(`Redis at ${own.url}`);
      await expect(state.tokens.bind("t", "CA", 1000, false)).rejects.toBeInstanceOf(StateUnavailableError);
      // Rate limits fall back to this instance's own buckets rather than refusing everyone.
      expect(await state.rateLimit.take("10.1.1.1")).toBe(true);
      await own.start();
      for (let i = 0; i < 200 && state.problem() !== null; i++) await sleep(25);
      expect(state.problem()).toBeNull();
      expect(isBusy(await state.admission.admit("after", "inbound"))).toBe(false);
      await state.tokens.bind("t", "CA", 1000, false);
      expect(await state.tokens.redeem("t", "CA", "twilio")).toEqual({ ok: true });
    } finally {
      await own.close();
    }
  });
});

it("RedisAdmission is what the redis state uses (so the contract above covers it)", async () => {
  const state = track(createSharedState(config(), systemClock, await connect("x:")));
  expect(state.admission).toBeInstanceOf(RedisAdmission);
});

it("REDIS_URL and INSTANCE_ID are validated at start", async () => {
  const { loadConfig } = await import("../src/config.ts");
  expect(() => loadConfig({ env: { REDIS_URL: "http://127.0.0.1:6379" } })).toThrow(/REDIS_URL.*redis:\/\/ or rediss:\/\//s);
  expect(() => loadConfig({ env: { INSTANCE_ID: "a b" } })).toThrow(/INSTANCE_ID/);
  const c = loadConfig({ env: { REDIS_URL: "redis://10.0.0.5:6379/0", INSTANCE_ID: "parley-1" } });
  expect(c).toMatchObject({ redisUrl: "redis://10.0.0.5:6379/0", instanceId: "parley-1", redisKeyPrefix: "parley:", redisLeaseTtlMs: 15_000 });
  expect(loadConfig({ env: {} }).redisUrl).toBeUndefined();
});
