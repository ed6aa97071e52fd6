import type { Logger } from "pino";
import { foldLines } from "../store/call-store.ts";
import type { CallRecord } from "../store/call-record.ts";
import { KEEP_MS, type Lease } from "./leases.ts";
import { StateUnavailableError, type RedisConnection } from "./redis-client.ts";

/**
 * Call records readable by every instance: each call's journal lines are also appended to a Redis list
 * (`log:<CallSid>`, the same list `Leases.entries` reads), and the call is put in an index (`calls`, a sorted set by
 * creation time). The local journal stays the durable copy; Redis is what another instance folds the record from.
 *
 * Nothing here is on the per-frame path, and no append waits for Redis: lines are buffered per call and sent in one
 * fenced script per call when the journal flushes (each turn, hang-up) or at most `flushMs` after the first line
 * waiting. While Redis is away the lines stay buffered (at most `maxBuffered` in all) and go out on reconnect.
 *
 * Writes are fenced: a batch is appended only while this instance's lease on the call is the current one, or, once
 * the lease was released at the call's end, while no one has taken a newer fence since. If Redis lost both (a restart
 * without persistence), the lines wait for the lease to be taken again. A stale owner's lines are
 * refused and dropped here (its local journal keeps them).
 */
const APPEND = `
local l = redis.call('HMGET', KEYS[1], 'holder', 'fence')
if l[1] then
  if l[1] ~= ARGV[1] or l[2] ~= ARGV[2] then return 0 end
else
  local f = redis.call('GET', KEYS[2])
  if not f then return 2 end
  if f ~= ARGV[2] then return 0 end
end
redis.call('RPUSH', KEYS[3], unpack(ARGV, 6))
redis.call('PEXPIRE', KEYS[3], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[5])
redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -100001)
return 1`;

/** Lines per script call: Lua's unpack has a stack limit, and one call should stay short for the server. */
const BATCH = 500;

interface Pending {
  lines: string[];
  /** When the call was created (the index's score): read from its first line. */
  createdAt: number;
  lease: Lease | null;
  refused: boolean;
  timer: NodeJS.Timeout | null;
}

export class SharedRecords {
  private readonly calls = new Map<string, Pending>();
  /** The lease each recent call was written with, so lines after its end (the outcome) go out with the same fence. */
  private readonly known = new Map<string, Lease>();
  private buffered = 0;
  private dropped = 0;
  private flushing: Promise<void> = Promise.resolve();
  private retry: NodeJS.Timeout | null = null;

  constructor(
    private readonly redis: RedisConnection,
    private readonly opts: { flushMs: number; maxBuffered: number; log?: Logger },
  ) {
    redis.script("parleyRecordAppend", 4, APPEND);
    redis.client.on("ready", () => this.flushAll());
  }

  /** Lines waiting for Redis, and lines dropped because the buffer was full. */
  stats(): { buffered: number; dropped: number } {
    return { buffered: this.buffered, dropped: this.dropped };
  }

  /** A journal line of `callSid` (already JSON): buffered, sent soon. Synchronous, allocation-light. */
  add(callSid: string, line: string, t: number): void {
    let p = this.calls.get(callSid);
    if (!p) this.calls.set(callSid, (p = { lines: [], createdAt: t, lease: this.known.get(callSid) ?? null, refused: false, timer: null }));
    if (p.refused) return;
    if (this.buffered >= this.opts.maxBuffered) {
      if (this.dropped++ === 0) this.opts.log?.error({ max: this.opts.maxBuffered }, "shared record buffer full (RECORD_BUFFER_MAX): lines kept on local disk only");
      return;
    }
    p.lines.push(line);
    this.buffered++;
    p.timer ??= setTimeout(() => this.flush(callSid), this.opts.flushMs);
  }

  /** The lease to write the call's lines with (this instance owns it). Until then its lines wait. */
  bind(lease: Lease): void {
    this.known.delete(lease.callSid);
    this.known.set(lease.callSid, lease);
    if (this.known.size > 10_000) this.known.delete(this.known.keys().next().value!);
    const p = this.calls.get(lease.callSid);
    if (p) {
      p.lease = lease;
      p.refused = false;
      this.flush(lease.callSid);
    }
  }

  /** Another instance owns the call: its lines are not ours to share (the local journal keeps them). */
  refuse(callSid: string): void {
    const p = this.calls.get(callSid);
    this.known.delete(callSid);
    if (!p) return;
    this.buffered -= p.lines.length;
    p.lines = [];
    p.refused = true;
  }

  /** The call ended here and its last lines went out: forget it (later lines, e.g. its outcome, reopen it). */
  forgetWhenFlushed(callSid: string): void {
    this.flush(callSid);
    void this.flushing.then(() => {
      const p = this.calls.get(callSid);
      if (p && !p.lines.length && !p.timer) this.calls.delete(callSid);
    });
  }

  /** Send the call's waiting lines now (the journal flushed: a turn ended, or the call did). */
  flush(callSid: string): void {
    const p = this.calls.get(callSid);
    if (!p) return;
    if (p.timer) clearTimeout(p.timer);
    p.timer = null;
    if (!p.lines.length || !p.lease) return;
    this.flushing = this.flushing.then(() => this.send(callSid, p));
  }

  private flushAll(): void {
    for (const sid of this.calls.keys()) this.flush(sid);
  }

  private async send(callSid: string, p: Pending): Promise<void> {
    while (p.lines.length && p.lease && !p.refused) {
      const batch = p.lines.slice(0, BATCH);
      const lease = p.lease;
      const r = this.redis;
      const keys = [r.key("lease", callSid), r.key("fence", callSid), r.key("log", callSid), r.key("calls")];
      let ok: number;
      try {
        ok = await r.run<number>("parleyRecordAppend", keys, [lease.holder, lease.fence, KEEP_MS, Math.round(p.createdAt), callSid, ...batch]);
      } catch (err) {
        // Redis away: keep the lines; they go out when it is back (on "ready", or the retry below).
        if (!(err instanceof StateUnavailableError)) this.opts.log?.error({ callSid, err: (err as Error).message }, "shared record append failed");
        this.retry ??= setTimeout(() => {
          this.retry = null;
          this.flushAll();
        }, 1000);
        return;
      }
      if (ok === 2) {
        // Neither lease nor fence: Redis lost its data (restarted without persistence). The lines wait for the lease
        // the ownership takes again (bind).
        p.lease = null;
        return;
      }
      if (!ok) {
        this.opts.log?.error({ callSid, fence: lease.fence }, "shared record append refused: another instance owns the call now (stale fence)");
        this.refuse(callSid);
        return;
      }
      p.lines.splice(0, batch.length);
      this.buffered -= batch.length;
    }
  }

  /** Resolves once every send queued so far has been made (or has failed: Redis away). */
  idle(): Promise<void> {
    return this.flushing;
  }

  /** The call's record folded from Redis, or null when Redis holds none. */
  async read(callSid: string): Promise<CallRecord | null> {
    const lines = await this.lines(callSid);
    return lines.length ? foldLines(callSid, lines.join("\n")) : null;
  }

  /** The call's journal lines in Redis, in order. */
  lines(callSid: string): Promise<string[]> {
    return this.redis.call(() => this.redis.client.lrange(this.redis.key("log", callSid), 0, -1));
  }

  /** The newest `limit` calls of the fleet's index, with their records (one round trip for all). */
  async recent(limit: number): Promise<CallRecord[]> {
    const ids = await this.redis.call(() => this.redis.client.zrevrange(this.redis.key("calls"), 0, limit - 1));
    if (!ids.length) return [];
    const pipe = this.redis.client.pipeline();
    for (const id of ids) pipe.lrange(this.redis.key("log", id), 0, -1);
    const res = (await this.redis.call(() => pipe.exec())) ?? [];
    return ids.flatMap((id, i) => {
      const lines = res[i]?.[1] as string[] | undefined;
      return lines?.length ? [foldLines(id, lines.join("\n"))] : [];
    });
  }

  close(): void {
    if (this.retry) clearTimeout(this.retry);
    for (const p of this.calls.values()) if (p.timer) clearTimeout(p.timer);
  }
}
