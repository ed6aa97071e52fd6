import { hostname } from "node:os";
import type { Logger } from "pino";
import type { Config } from "../config.ts";
import type { Clock } from "../util/clock.ts";
import { MemoryAdmission, RedisAdmission, type Admission } from "./admission.ts";
import { MemoryLeases, RedisLeases, type Leases } from "./leases.ts";
import { MemoryRateLimit, RedisRateLimit, type ClientRateLimit } from "./rate-limit.ts";
import type { RedisConnection } from "./redis-client.ts";
import { MemoryReplayGuard, RedisReplayGuard, type ReplayGuard } from "./replay.ts";
import { CallOwnership } from "./ownership.ts";
import { SharedRecords } from "./shared-records.ts";
import { MemoryStreamTokens, RedisStreamTokens, type StreamTokens } from "./tokens.ts";

/**
 * What the instances of a fleet must agree on, behind one interface: in this process's memory (no REDIS_URL: a
 * single instance, as Parley always was), or in Redis. None of it is touched per media frame: only per webhook, per
 * stream upgrade and start, at a call's set-up and teardown, and by a renewal timer every third of the lease TTL.
 */
export interface SharedState {
  readonly kind: "memory" | "redis";
  /** This instance's name: the holder of its slots and leases. */
  readonly instanceId: string;
  readonly leaseTtlMs: number;
  readonly admission: Admission;
  readonly tokens: StreamTokens;
  readonly replay: ReplayGuard;
  readonly rateLimit: ClientRateLimit;
  readonly leases: Leases;
  /** The leases of this instance's live calls, renewed while they run. */
  readonly ownership: CallOwnership;
  /** Call records readable by every instance (journal lines appended to Redis); null in memory (local files only). */
  readonly records: SharedRecords | null;
  /** Why the shared state cannot be used now (new calls are refused), or null. */
  problem(): string | null;
  /** Redis commands sent, by kind; null in memory. */
  stats(): { url: string; status: string; ops: Record<string, number>; total: number } | null;
  /** Stop this state's timers (the connection belongs to the services). */
  close(): void;
}

export function defaultInstanceId(): string {
  return `${hostname()}-${process.pid}`;
}

type StateConfig = Pick<Config, "maxConcurrentCalls" | "rateLimitPerMinute" | "instanceId" | "redisLeaseTtlMs"> & Partial<Pick<Config, "recordFlushMs" | "recordBufferMax">>;

/** The shared state for one app: in memory, or on `redis` when REDIS_URL is set. `config` is read live (the cap). */
export function createSharedState(config: StateConfig, clock: Clock, redis: RedisConnection | null, log?: Logger, onLost?: (callSid: string) => void): SharedState {
  const instanceId = config.instanceId ?? defaultInstanceId();
  const leaseTtlMs = config.redisLeaseTtlMs;
  if (!redis) {
    const leases = new MemoryLeases(clock);
    const ownership = new CallOwnership(leases, instanceId, leaseTtlMs, log, onLost);
    return {
      kind: "memory",
      records: null,
      instanceId,
      leaseTtlMs,
      admission: new MemoryAdmission(() => config.maxConcurrentCalls),
      tokens: new MemoryStreamTokens(clock),
      replay: new MemoryReplayGuard(clock),
      rateLimit: new MemoryRateLimit(config.rateLimitPerMinute, clock),
      leases,
      ownership,
      problem: () => null,
      stats: () => null,
      close: () => ownership.close(),
    };
  }
  const admission = new RedisAdmission(redis, () => config.maxConcurrentCalls, leaseTtlMs, 5, (err) => log?.warn({ err: err.message }, "could not renew this instance's call slots in Redis"));
  const leases = new RedisLeases(redis);
  const records = new SharedRecords(redis, { flushMs: config.recordFlushMs ?? 500, maxBuffered: config.recordBufferMax ?? 100_000, log });
  const ownership = new CallOwnership(leases, instanceId, leaseTtlMs, log, onLost, (lease) => records.bind(lease));
  return {
    kind: "redis",
    records,
    instanceId,
    leaseTtlMs,
    admission,
    tokens: new RedisStreamTokens(redis),
    replay: new RedisReplayGuard(redis),
    rateLimit: new RedisRateLimit(redis, config.rateLimitPerMinute, clock, log),
    leases,
    ownership,
    problem: () => redis.problem(),
    stats: () => redis.stats(),
    close: () => {
      admission.close();
      ownership.close();
      records.close();
    },
  };
}
