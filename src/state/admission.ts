/**
 * The concurrency cap. Checking for room and taking it must be one step: a check followed by an `await` and then the
 * take lets every request that arrives in between through (12 concurrent POSTs once got 5 calls past a cap of 3).
 * The in-memory implementation does both synchronously inside `admit`; a shared one (Redis) does both in one script.
 */

export type AdmissionKind = "inbound" | "outbound" | "browser" | "restored";

export interface Ticket {
  readonly id: string;
  readonly kind: AdmissionKind;
}

export interface Busy {
  busy: true;
  /** How many slots are taken, and the cap, for the refusal's message. */
  inUse: number;
  max: number;
  /** Seconds after which trying again is reasonable (`Retry-After`). */
  retryAfterS: number;
}

export interface Admission {
  /** Take a slot for `id` if one is free. Check and take are one step. Admitting an id that holds a slot is a no-op. */
  admit(id: string, kind: AdmissionKind): Promise<Ticket | Busy>;
  /** Give a slot back; releasing twice, or a ticket that was never admitted, does nothing. */
  release(ticket: Ticket): Promise<void>;
  /** Re-key a ticket (an outbound call learns its id from the carrier only after its slot was taken). */
  rename(ticket: Ticket, id: string): Promise<Ticket>;
  /** Slots taken now. */
  readonly inUse: number;
}

export const isBusy = (t: Ticket | Busy): t is Busy => "busy" in t;

/** Slots of this process. */
export class MemoryAdmission implements Admission {
  private readonly held = new Map<string, Ticket>();

  constructor(
    private readonly max: () => number,
    private readonly retryAfterS = 5,
  ) {}

  get inUse(): number {
    return this.held.size;
  }

  async admit(id: string, kind: AdmissionKind): Promise<Ticket | Busy> {
    return this.admitNow(id, kind);
  }

  /** The synchronous core: nothing can interleave between the check and the take. */
  admitNow(id: string, kind: AdmissionKind): Ticket | Busy {
    const existing = this.held.get(id);
    if (existing) return existing;
    const max = this.max();
    if (this.held.size >= max) return { busy: true, inUse: this.held.size, max, retryAfterS: this.retryAfterS };
    const ticket = { id, kind };
    this.held.set(id, ticket);
    return ticket;
  }

  async release(ticket: Ticket): Promise<void> {
    if (this.held.get(ticket.id) === ticket) this.held.delete(ticket.id);
  }

  async rename(ticket: Ticket, id: string): Promise<Ticket> {
    if (this.held.get(ticket.id) !== ticket) throw new Error(`ticket ${ticket.id} is not held`);
    this.held.delete(ticket.id);
    const renamed = { id, kind: ticket.kind };
    this.held.set(id, renamed);
    return renamed;
  }
}

/**
 * The fleet's slots, in one sorted set: member = the call's id, score = when the slot expires (Redis's clock). Admit
 * is one script (drop expired holders, check, take), so 12 concurrent admits across any number of instances under a
 * cap of 3 let exactly 3 in. Each instance renews the slots it holds every third of `ttlMs` in one command; the slots
 * of an instance that died stop being renewed and are dropped by the first admit after they expire.
 */
const ADMIT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  return {1, redis.call('ZCARD', KEYS[1])}
end
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[2]) then return {0, n} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
return {1, n + 1}`;

/** Extend the given holders' slots (a slot that already expired is taken again: its call is still running). */
const RENEW = `
local t = redis.call('TIME')
local until_ = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], until_, ARGV[i]) end
return #ARGV - 1`;

const RENAME = `
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], s, ARGV[2])
return 1`;

export class RedisAdmission implements Admission {
  private readonly held = new Map<string, Ticket>();
  private readonly key: string;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly redis: import("./redis-client.ts").RedisConnection,
    private readonly max: () => number,
    private readonly ttlMs: number,
    private readonly retryAfterS = 5,
    onRenewError?: (err: Error) => void,
  ) {
    this.key = redis.key("slots");
    redis.script("parleyAdmit", 1, ADMIT);
    redis.script("parleyRenewSlots", 1, RENEW);
    redis.script("parleyRenameSlot", 1, RENAME);
    this.timer = setInterval(() => this.renew().catch((err: Error) => onRenewError?.(err)), Math.max(100, Math.floor(ttlMs / 3)));
    this.timer.unref();
  }

  /** Slots this instance holds (the fleet's total is in Redis). */
  get inUse(): number {
    return this.held.size;
  }

  async admit(id: string, kind: AdmissionKind): Promise<Ticket | Busy> {
    const existing = this.held.get(id);
    if (existing) return existing;
    const max = this.max();
    const [ok, n] = await this.redis.run<[number, number]>("parleyAdmit", [this.key], [id, max, this.ttlMs]);
    if (!ok) return { busy: true, inUse: n, max, retryAfterS: this.retryAfterS };
    const ticket = this.held.get(id) ?? { id, kind };
    this.held.set(id, ticket);
    return ticket;
  }

  async release(ticket: Ticket): Promise<void> {
    if (this.held.get(ticket.id) !== ticket) return;
    this.held.delete(ticket.id);
    await this.redis.call(() => this.redis.client.zrem(this.key, ticket.id));
  }

  async rename(ticket: Ticket, id: string): Promise<Ticket> {
    if (this.held.get(ticket.id) !== ticket) throw new Error(`ticket ${ticket.id} is not held`);
    const moved = await this.redis.run<number>("parleyRenameSlot", [this.key], [ticket.id, id]);
    this.held.delete(ticket.id);
    const renamed = { id, kind: ticket.kind };
    this.held.set(id, renamed);
    // The slot expired under us (Redis was away longer than the TTL): take it again for the call that holds it.
    if (!moved) await this.renew();
    return renamed;
  }

  /** Extend every slot this instance holds: one command per interval, however many calls. */
  async renew(): Promise<void> {
    if (!this.held.size) return;
    await this.redis.run<number>("parleyRenewSlots", [this.key], [this.ttlMs, ...this.held.keys()]);
  }

  close(): void {
    clearInterval(this.timer);
  }
}
