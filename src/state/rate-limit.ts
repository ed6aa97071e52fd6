import type { Logger } from "pino";
import { RateLimiter } from "../server/security.ts";
import type { Clock } from "../util/clock.ts";
import type { RedisConnection } from "./redis-client.ts";

/** Requests and stream upgrades per client address (RATE_LIMIT_PER_MINUTE): a token bucket per client. */
export interface ClientRateLimit {
  /** Take one request from the client's bucket; false when it is empty. */
  take(client: string): Promise<boolean>;
}

/** Buckets of this process (see RateLimiter: bounded, swept). */
export class MemoryRateLimit implements ClientRateLimit {
  readonly limiter: RateLimiter;

  constructor(
    perMinute: number,
    private readonly clock: Clock,
  ) {
    this.limiter = new RateLimiter(perMinute);
  }

  async take(client: string): Promise<boolean> {
    return this.limiter.take(client, this.clock.now());
  }
}

/**
 * The same bucket as RateLimiter's (capacity `perMinute`, refilled continuously), in one script so two instances
 * drawing on one client's bucket cannot both spend its last token. Redis's own clock (TIME) is the bucket's clock, so
 * instances' clocks need not agree. A bucket left alone expires once it would be full again, so Redis keeps no more
 * than the clients active in the last minute.
 *
 * rate-limiter-flexible was considered: its limiters count fixed windows, which let a client spend twice the budget
 * across a window's edge and would change RATE_LIMIT_PER_MINUTE's meaning between one instance and a fleet.
 */
const TAKE = `
local cap = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1]) or cap
local at = tonumber(b[2]) or now
tokens = math.min(cap, tokens + (math.max(0, now - at) * cap) / 60000)
local ok = 0
if tokens >= 1 then tokens = tokens - 1; ok = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], 60000)
return ok`;

/**
 * Buckets shared by the fleet. While Redis is unreachable each instance falls back to its own buckets (logged once per
 * outage): a limiter that refused everything would also refuse `/healthz`, and one that allowed everything would drop
 * the limit; per-instance limits for the length of an outage are the lesser harm.
 */
export class RedisRateLimit implements ClientRateLimit {
  private readonly fallback: MemoryRateLimit;
  private degraded = false;

  constructor(
    private readonly redis: RedisConnection,
    private readonly perMinute: number,
    clock: Clock,
    private readonly log?: Logger,
  ) {
    redis.script("parleyTakeToken", 1, TAKE);
    this.fallback = new MemoryRateLimit(perMinute, clock);
  }

  async take(client: string): Promise<boolean> {
    if (this.redis.problem() === null) {
      try {
        const ok = (await this.redis.run<number>("parleyTakeToken", [this.redis.key("rl", client)], [Math.max(1, this.perMinute)])) === 1;
        this.degraded = false;
        return ok;
      } catch (err) {
        if (!this.degraded) this.log?.warn({ err: (err as Error).message }, "rate limits are per instance until Redis is back");
      }
    } else if (!this.degraded) this.log?.warn({ redis: this.redis.problem() }, "rate limits are per instance until Redis is back");
    this.degraded = true;
    return this.fallback.take(client);
  }
}
