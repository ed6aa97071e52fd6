import { createHash } from "node:crypto";
import type { Clock } from "../util/clock.ts";
import type { RedisConnection } from "./redis-client.ts";

/**
 * Requests already seen, by signature, URL and body: a replayed webhook carries a valid signature, so only memory of
 * it tells it apart. Twilio signs the same request identically when it retries after a failure, so a request that was
 * not handled successfully is forgotten again (`forget`), and Twilio's retry goes through.
 *
 * `claim` checks and remembers in one step, so two copies of one request arriving together (at one instance or at
 * two) let exactly one through.
 */
export interface ReplayGuard {
  /** True for the first copy of a request within the window; false for a replay. */
  claim(key: string): Promise<boolean>;
  /** The request was not handled successfully: let the same request through again. */
  forget(key: string): Promise<void>;
}

export function replayKey(signature: string, url: string, rawBody: string): string {
  return createHash("sha256").update(signature).update("\n").update(url).update("\n").update(rawBody).digest("base64url");
}

export const REPLAY_WINDOW_MS = 15 * 60_000;

/** Requests seen by this process, bounded: past `max`, expired ones go first, then the oldest. */
export class MemoryReplayGuard implements ReplayGuard {
  private readonly seen = new Map<string, number>();

  constructor(
    private readonly clock: Clock,
    private readonly ttlMs = REPLAY_WINDOW_MS,
    private readonly max = 100_000,
  ) {}

  async claim(key: string): Promise<boolean> {
    const now = this.clock.now();
    const at = this.seen.get(key);
    if (at !== undefined && now - at < this.ttlMs) return false;
    this.seen.set(key, now);
    if (this.seen.size > this.max) for (const [k, t] of this.seen) if (now - t >= this.ttlMs || this.seen.size > this.max) this.seen.delete(k);
    return true;
  }

  async forget(key: string): Promise<void> {
    this.seen.delete(key);
  }
}

/** Requests seen by any instance of the fleet: `SET NX PX` is the check and the claim at once. */
export class RedisReplayGuard implements ReplayGuard {
  constructor(
    private readonly redis: RedisConnection,
    private readonly ttlMs = REPLAY_WINDOW_MS,
  ) {}

  async claim(key: string): Promise<boolean> {
    const r = await this.redis.call(() => this.redis.client.set(this.redis.key("replay", key), "1", "PX", this.ttlMs, "NX"));
    return r === "OK";
  }

  async forget(key: string): Promise<void> {
    await this.redis.call(() => this.redis.client.del(this.redis.key("replay", key)));
  }
}
