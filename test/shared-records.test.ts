import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RedisLeases } from "../src/state/leases.ts";
import { CallOwnership } from "../src/state/ownership.ts";
import { RedisConnection } from "../src/state/redis-client.ts";
import { SharedRecords } from "../src/state/shared-records.ts";
import { TestRedis } from "./helpers/redis.ts";
import { remainingMs } from "../src/call/call-runtime.ts";

/** Call records shared through a real redis-server: batched, fenced, buffered while Redis is away. */
describe("shared call records", () => {
  let redis: TestRedis;
  const closers: (() => unknown)[] = [];
  beforeAll(async () => {
    redis = await TestRedis.start();
  }, 30_000);
  afterAll(async () => {
    for (const c of closers.reverse()) await c();
    await redis?.close();
  });

  /** One instance's view: its connection, leases, ownership (which binds leases to the records) and records. */
  async function instance(holder: string, prefix: string, url = redis.url, flushMs = 10_000) {
    const conn = await RedisConnection.connect(url, { prefix });
    const records = new SharedRecords(conn, { flushMs, maxBuffered: 1000 });
    const leases = new RedisLeases(conn);
    const ownership = new CallOwnership(leases, holder, 60_000, undefined, undefined, (l) => records.bind(l));
    closers.push(() => conn.close(), () => records.close(), () => ownership.close());
    const line = (sid: string, type: string, t = Date.now()) => records.add(sid, JSON.stringify({ t, type }), t);
    const types = async (sid: string) => (await records.lines(sid)).map((l) => (JSON.parse(l) as { type: string }).type);
    return { conn, records, leases, ownership, line, types };
  }
  const fresh = () => ({ prefix: `rec${randomBytes(4).toString("hex")}:`, sid: `CA${randomBytes(16).toString("hex")}` });

  it("a turn's events go out in one script call when the journal flushes, and another instance folds the record", async () => {
    const { prefix, sid } = fresh();
    const a = await instance("A", prefix);
    const b = await instance("B", prefix);
    a.line(sid, "call.created");
    await a.ownership.claim(sid);
    for (const type of ["state", "turn", "state", "state", "turn"]) a.line(sid, type);
    const before = a.conn.stats().ops["script:parleyRecordAppend"] ?? 0;
    a.records.flush(sid);
    await a.records.idle();
    expect((a.conn.stats().ops["script:parleyRecordAppend"] ?? 0) - before).toBe(1);
    expect(await b.types(sid)).toEqual(["call.created", "state", "turn", "state", "state", "turn"]);
    expect((await b.records.read(sid))!.events).toBe(6);
    expect((await b.records.recent(10)).map((r) => r.callSid)).toEqual([sid]);
  });

  it("lines left waiting go out by themselves after RECORD_FLUSH_MS", async () => {
    const { prefix, sid } = fresh();
    const a = await instance("A", prefix, redis.url, 30);
    await a.ownership.claim(sid);
    a.line(sid, "call.created");
    for (let i = 0; i < 100 && !(await a.types(sid)).length; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await a.types(sid)).toEqual(["call.created"]);
  });

  it("a stale owner's lines are refused once another instance took the call over", async () => {
    const { prefix, sid } = fresh();
    const a = await instance("A", prefix);
    const b = await instance("B", prefix);
    const leaseA = (await a.ownership.claim(sid))!;
    a.line(sid, "call.created");
    a.records.flush(sid);
    await a.records.idle();
    // B found A dead and took the call (a new fence); A, only stalled, comes back and writes.
    expect(await b.ownership.takeOver(sid, { holder: "A", fence: leaseA.fence })).toMatchObject({ holder: "B", fence: leaseA.fence + 1 });
    b.line(sid, "call.restored");
    b.records.flush(sid);
    a.line(sid, "turn");
    a.records.flush(sid);
    await Promise.all([a.records.idle(), b.records.idle()]);
    expect(await a.types(sid)).toEqual(["call.created", "call.restored"]);
    // A lets go of its lines for good (its own disk keeps them); B's keep going in.
    a.line(sid, "turn");
    a.records.flush(sid);
    b.line(sid, "turn");
    b.records.flush(sid);
    await Promise.all([a.records.idle(), b.records.idle()]);
    expect(await a.types(sid)).toEqual(["call.created", "call.restored", "turn"]);
    expect(a.records.stats().buffered).toBe(0);
  });

  it("after the call ends and its lease is released, its outcome still goes in; not once another instance took the call", async () => {
    const { prefix, sid } = fresh();
    const a = await instance("A", prefix);
    const b = await instance("B", prefix);
    await a.ownership.claim(sid);
    a.line(sid, "call.ended");
    a.records.flush(sid);
    await a.records.idle();
    await a.ownership.drop(sid);
    a.line(sid, "outcome");
    a.records.flush(sid);
    await a.records.idle();
    expect(await a.types(sid)).toEqual(["call.ended", "outcome"]);
    await b.ownership.claim(sid);
    a.line(sid, "outcome.delivery");
    a.records.flush(sid);
    await a.records.idle();
    expect(await a.types(sid)).toEqual(["call.ended", "outcome"]);
  });

  it("Redis away: lines are buffered, and go out once it is back and the lease is taken again", async () => {
    const own = await TestRedis.start();
    closers.push(() => own.close());
    const { prefix, sid } = fresh();
    const a = await instance("A", prefix, own.url);
    await a.ownership.claim(sid);
    a.line(sid, "call.created");
    a.records.flush(sid);
    await a.records.idle();
    await own.stop();
    for (let i = 0; i < 200 && a.conn.problem() === null; i++) await new Promise((r) => setTimeout(r, 10));
    for (const type of ["turn", "state", "turn"]) a.line(sid, type);
    a.records.flush(sid);
    await a.records.idle();
    expect(a.records.stats()).toEqual({ buffered: 3, dropped: 0 });
    // Back, but empty (this test's Redis keeps nothing across a restart): the renewal finds no lease and takes it again.
    await own.start();
    for (let i = 0; i < 300 && a.conn.problem() !== null; i++) await new Promise((r) => setTimeout(r, 10));
    await a.ownership.renewAll();
    for (let i = 0; i < 100 && a.records.stats().buffered; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await a.types(sid)).toEqual(["turn", "state", "turn"]);
    expect(a.records.stats()).toEqual({ buffered: 0, dropped: 0 });
  }, 30_000);
});

describe("a restored call's maxDuration", () => {
  it("keeps its deadline from its first stream, whichever instance that was on", () => {
    expect(remainingMs(60_000, null, 5_000)).toBe(60_000); // never started: all of it
    expect(remainingMs(60_000, 1_000, 21_000)).toBe(40_000);
    expect(remainingMs(60_000, 1_000, 90_000)).toBe(0); // already past: ends at once
  });
});
