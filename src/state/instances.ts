import type { RedisConnection } from "./redis-client.ts";

/**
 * Where each instance of the fleet can be reached (its INSTANCE_URL), so a `<Connect action>` that lands on the wrong
 * instance can hand the call back to its owner, and whether that owner is still there to take it.
 *
 * One hash, `instances` (field: instance id, value: its URL), written once at start. Entries are not expired: an
 * instance that died leaves its URL behind, and the probe below is what tells a live owner from a dead one.
 */
export class InstanceDirectory {
  constructor(private readonly redis: RedisConnection | null) {}

  async register(instanceId: string, url: string): Promise<void> {
    await this.redis?.call(() => this.redis!.client.hset(this.redis!.key("instances"), instanceId, url));
  }

  async urlOf(instanceId: string): Promise<string | null> {
    if (!this.redis) return null;
    return this.redis.call(() => this.redis!.client.hget(this.redis!.key("instances"), instanceId));
  }
}

/**
 * Whether an instance answers at all: any HTTP answer from its `/healthz` (200, or 503 while draining or cut off from
 * Redis) means the process is up and still holds its calls; a refused connection or no answer within `timeoutMs`
 * means it is gone. A process that was only stalled and comes back has lost the call to the new fence, so a wrong
 * "gone" costs that process its writes, never a second writer.
 */
export async function instanceAnswers(url: string, timeoutMs: number): Promise<boolean> {
  try {
    const res = await fetch(new URL("/healthz", url), { signal: AbortSignal.timeout(timeoutMs) });
    await res.body?.cancel();
    return true;
  } catch {
    return false;
  }
}
