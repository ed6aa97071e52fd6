import type { Logger } from "pino";
import type { RedisConnection } from "./redis-client.ts";
import type { SharedState } from "./shared-state.ts";

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


/** Where a call is: on a live owner (`url`), or to be run here, taken `from` a dead owner or from nobody. */
export type OwnerLocation = { holder: string; url: string } | { from: { holder: string; fence: number } | null };

/**
 * Who runs a call this instance does not have. When its lease is free, nobody: restore it here. When another
 * instance holds the lease and answers at its INSTANCE_URL, it is handed back there; when it does not answer (killed,
 * gone), its lease is taken over (`from`) without waiting for it to expire.
 */
export async function locateOwner(state: SharedState, directory: InstanceDirectory, callSid: string, probeTimeoutMs: number, log?: Logger): Promise<OwnerLocation> {
  const owner = await state.leases.owner(callSid);
  if (!owner) return { from: null };
  if (owner.holder === state.instanceId) return { from: owner }; // this instance, restarted under the same name
  const url = await directory.urlOf(owner.holder);
  if (url && (await instanceAnswers(url, probeTimeoutMs))) return { holder: owner.holder, url };
  log?.warn({ callSid, owner: owner.holder, url }, "the call's owner does not answer: taking the call over");
  return { from: owner };
}
