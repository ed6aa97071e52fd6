import type { Clock } from "../util/clock.ts";
import type { RedisConnection } from "./redis-client.ts";

/**
 * Ownership of live calls: which instance runs which call. A lease is held by one instance until it expires or is
 * released, and every acquisition takes the next number of the call's fencing counter. An instance that stalled past
 * its lease (a long GC pause, a partition) and comes back still believes it owns the call; its fence is then older
 * than the new owner's, so its renewals and its writes are refused.
 */
export interface Lease {
  readonly callSid: string;
  readonly holder: string;
  readonly fence: number;
}

export interface Leases {
  /** Take the call's lease if it is free (never taken, released, or expired); null when another holder has it. */
  acquire(callSid: string, holder: string, ttlMs: number): Promise<Lease | null>;
  /**
   * Take the lease from `from` (an owner found dead) even though it has not expired yet: only if `from` still holds it
   * with that fence, and with a new, higher fence, so whatever the old owner still writes is refused.
   */
  takeOver(callSid: string, holder: string, ttlMs: number, from: { holder: string; fence: number }): Promise<Lease | null>;
  /** Extend the lease; false when it is no longer this holder's with this fence (it expired, or was taken over). */
  renew(lease: Lease, ttlMs: number): Promise<boolean>;
  /** Give the lease up; false (and nothing changes) when it is not this holder's with this fence. */
  release(lease: Lease): Promise<boolean>;
  /** Who holds the call now, or null. */
  owner(callSid: string): Promise<{ holder: string; fence: number } | null>;
  /** Append to the call's shared log, only while `lease` is the current one: a stale owner's write is refused. */
  append(lease: Lease, entry: string): Promise<boolean>;
  /** The call's shared log, in order. */
  entries(callSid: string): Promise<string[]>;
}

/** Leases of one process (a single instance owns all its calls; this keeps the contract the same). */
export class MemoryLeases implements Leases {
  private readonly leases = new Map<string, { holder: string; fence: number; until: number }>();
  /** One counter for every call: still strictly increasing per call, and nothing kept per ended call. */
  private fence = 0;
  private readonly logs = new Map<string, string[]>();

  constructor(private readonly clock: Clock) {}

  private current(callSid: string) {
    const l = this.leases.get(callSid);
    if (l && l.until <= this.clock.now()) {
      this.leases.delete(callSid);
      return undefined;
    }
    return l;
  }

  private holds(lease: Lease): boolean {
    const l = this.current(lease.callSid);
    return !!l && l.holder === lease.holder && l.fence === lease.fence;
  }

  async acquire(callSid: string, holder: string, ttlMs: number): Promise<Lease | null> {
    if (this.current(callSid)) return null;
    const fence = ++this.fence;
    this.leases.set(callSid, { holder, fence, until: this.clock.now() + ttlMs });
    return { callSid, holder, fence };
  }

  async takeOver(callSid: string, holder: string, ttlMs: number, from: { holder: string; fence: number }): Promise<Lease | null> {
    const l = this.current(callSid);
    if (l && (l.holder !== from.holder || l.fence !== from.fence)) return null;
    const fence = ++this.fence;
    this.leases.set(callSid, { holder, fence, until: this.clock.now() + ttlMs });
    return { callSid, holder, fence };
  }

  async renew(lease: Lease, ttlMs: number): Promise<boolean> {
    if (!this.holds(lease)) return false;
    this.leases.get(lease.callSid)!.until = this.clock.now() + ttlMs;
    return true;
  }

  async release(lease: Lease): Promise<boolean> {
    if (!this.holds(lease)) return false;
    this.leases.delete(lease.callSid);
    // A process's own log goes with its lease (in Redis it stays, for the instance that takes the call next).
    this.logs.delete(lease.callSid);
    return true;
  }

  async owner(callSid: string): Promise<{ holder: string; fence: number } | null> {
    const l = this.current(callSid);
    return l ? { holder: l.holder, fence: l.fence } : null;
  }

  async append(lease: Lease, entry: string): Promise<boolean> {
    if (!this.holds(lease)) return false;
    const log = this.logs.get(lease.callSid) ?? [];
    log.push(entry);
    this.logs.set(lease.callSid, log);
    return true;
  }

  async entries(callSid: string): Promise<string[]> {
    return [...(this.logs.get(callSid) ?? [])];
  }
}

// KEYS[1] = the lease (a hash: holder, fence), KEYS[2] = the call's fencing counter.
const ACQUIRE = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local fence = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'fence', fence)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return fence`;

// Taken from ARGV[4] with fence ARGV[5] (or free): the same as ACQUIRE otherwise.
const TAKE_OVER = `
local l = redis.call('HMGET', KEYS[1], 'holder', 'fence')
if l[1] and (l[1] ~= ARGV[4] or l[2] ~= ARGV[5]) then return 0 end
local fence = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'fence', fence)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return fence`;

/** Whether the lease in KEYS[1] is ARGV[1]'s with fence ARGV[2]. */
const HOLDS = `
local l = redis.call('HMGET', KEYS[1], 'holder', 'fence')
local holds = l[1] == ARGV[1] and l[2] == ARGV[2]`;

const RENEW = `${HOLDS}
if not holds then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1`;

const RELEASE = `${HOLDS}
if not holds then return 0 end
redis.call('DEL', KEYS[1])
return 1`;

// KEYS[2] = the call's log.
const APPEND = `${HOLDS}
if not holds then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1`;

/** How long a call's fencing counter and shared log outlive the last write: fences must never go back to 1 mid-call. */
export const KEEP_MS = 7 * 24 * 3600_000;

/** Leases in Redis: the lease is a hash with a TTL, the fence an INCR counter, every check-and-act one script. */
export class RedisLeases implements Leases {
  constructor(private readonly redis: RedisConnection) {
    redis.script("parleyLeaseAcquire", 2, ACQUIRE);
    redis.script("parleyLeaseTakeOver", 2, TAKE_OVER);
    redis.script("parleyLeaseRenew", 1, RENEW);
    redis.script("parleyLeaseRelease", 1, RELEASE);
    redis.script("parleyLeaseAppend", 2, APPEND);
  }

  private k(callSid: string, what: "lease" | "fence" | "log"): string {
    return this.redis.key(what, callSid);
  }

  async acquire(callSid: string, holder: string, ttlMs: number): Promise<Lease | null> {
    const fence = await this.redis.run<number>("parleyLeaseAcquire", [this.k(callSid, "lease"), this.k(callSid, "fence")], [holder, ttlMs, KEEP_MS]);
    return fence ? { callSid, holder, fence } : null;
  }

  async takeOver(callSid: string, holder: string, ttlMs: number, from: { holder: string; fence: number }): Promise<Lease | null> {
    const keys = [this.k(callSid, "lease"), this.k(callSid, "fence")];
    const fence = await this.redis.run<number>("parleyLeaseTakeOver", keys, [holder, ttlMs, KEEP_MS, from.holder, from.fence]);
    return fence ? { callSid, holder, fence } : null;
  }

  async renew(lease: Lease, ttlMs: number): Promise<boolean> {
    return (await this.redis.run<number>("parleyLeaseRenew", [this.k(lease.callSid, "lease")], [lease.holder, lease.fence, ttlMs])) === 1;
  }

  async release(lease: Lease): Promise<boolean> {
    return (await this.redis.run<number>("parleyLeaseRelease", [this.k(lease.callSid, "lease")], [lease.holder, lease.fence])) === 1;
  }

  async owner(callSid: string): Promise<{ holder: string; fence: number } | null> {
    const [holder, fence] = await this.redis.call(() => this.redis.client.hmget(this.k(callSid, "lease"), "holder", "fence"));
    return holder && fence ? { holder, fence: Number(fence) } : null;
  }

  async append(lease: Lease, entry: string): Promise<boolean> {
    return (await this.redis.run<number>("parleyLeaseAppend", [this.k(lease.callSid, "lease"), this.k(lease.callSid, "log")], [lease.holder, lease.fence, entry, KEEP_MS])) === 1;
  }

  async entries(callSid: string): Promise<string[]> {
    return this.redis.call(() => this.redis.client.lrange(this.k(callSid, "log"), 0, -1));
  }
}
