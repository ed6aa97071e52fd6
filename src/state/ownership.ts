import type { Logger } from "pino";
import type { Lease, Leases } from "./leases.ts";

/**
 * The leases of the calls this instance runs: taken when a call is set up, renewed every third of the TTL while it
 * lives (one command per call per interval), given back when it ends. A renewal refused means another instance took
 * the call over after this one's lease expired: logged, and the lease forgotten here (acting on it is for takeover).
 */
export class CallOwnership {
  private readonly held = new Map<string, Lease>();
  /** Acquisitions under way: a call that ends before its lease arrives must still give it back. */
  private readonly pending = new Map<string, Promise<Lease | null>>();
  private readonly releasing = new Set<Promise<void>>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    readonly leases: Leases,
    readonly holder: string,
    readonly ttlMs: number,
    private readonly log?: Logger,
    /** Called when a renewal is refused: another instance took the call over, so this one must let it go. */
    private readonly onLost?: (callSid: string) => void,
    /** Called with every lease this instance comes to hold (the shared record is written with its fence). */
    private readonly onLease?: (lease: Lease) => void,
  ) {
    this.timer = setInterval(() => void this.renewAll(), Math.max(100, Math.floor(ttlMs / 3)));
    this.timer.unref();
  }

  /** The lease this instance holds on a call, if any. */
  lease(callSid: string): Lease | undefined {
    return this.held.get(callSid);
  }

  /** Take the call's lease; null (logged) when another instance holds it. */
  async claim(callSid: string): Promise<Lease | null> {
    const mine = this.held.get(callSid);
    if (mine) return mine;
    const under = this.pending.get(callSid);
    if (under) return under;
    const taking = this.take(callSid).finally(() => this.pending.delete(callSid));
    this.pending.set(callSid, taking);
    return taking;
  }

  private async take(callSid: string): Promise<Lease | null> {
    const lease = await this.leases.acquire(callSid, this.holder, this.ttlMs);
    if (!lease) {
      const owner = await this.leases.owner(callSid).catch(() => null);
      this.log?.warn({ callSid, owner }, "call is owned by another instance: running it here without its lease");
      return null;
    }
    this.hold(lease);
    return lease;
  }

  private hold(lease: Lease): void {
    this.held.set(lease.callSid, lease);
    this.onLease?.(lease);
  }

  /** Take the call from an owner found dead (see Leases.takeOver); null when someone else got there first. */
  async takeOver(callSid: string, from: { holder: string; fence: number }): Promise<Lease | null> {
    const lease = await this.leases.takeOver(callSid, this.holder, this.ttlMs, from);
    if (lease) this.hold(lease);
    return lease;
  }

  /** A lease this instance just acquired itself (see Leases.acquire): renewed and released like any other. */
  adopt(lease: Lease): Lease {
    this.hold(lease);
    return lease;
  }

  /** Releases under way have reached Redis (or failed): before exiting, so another instance can take the calls. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.releasing]);
  }

  drop(callSid: string): Promise<void> {
    const p = this.release(callSid);
    this.releasing.add(p);
    void p.catch(() => {}).finally(() => this.releasing.delete(p));
    return p;
  }

  private async release(callSid: string): Promise<void> {
    await this.pending.get(callSid)?.catch(() => null);
    const lease = this.held.get(callSid);
    if (!lease) return;
    this.held.delete(callSid);
    await this.leases.release(lease);
  }

  async renewAll(): Promise<void> {
    for (const [callSid, lease] of this.held) {
      try {
        if (await this.leases.renew(lease, this.ttlMs)) continue;
        if (this.held.get(callSid) !== lease) continue; // dropped meanwhile
        // No lease at all: Redis lost it (restarted without persistence), nobody took the call. Take it again.
        if (!(await this.leases.owner(callSid))) {
          const again = await this.leases.acquire(callSid, this.holder, this.ttlMs);
          if (again && this.held.get(callSid) === lease) {
            this.hold(again);
            this.log?.warn({ callSid, fence: again.fence }, "the call's lease had vanished from Redis: taken again");
            continue;
          }
          if (again) await this.leases.release(again);
        }
        this.held.delete(callSid);
        this.log?.error({ callSid, fence: lease.fence }, "lost the call's lease: another instance holds it now");
        this.onLost?.(callSid);
      } catch (err) {
        this.log?.warn({ callSid, err: (err as Error).message }, "could not renew the call's lease");
      }
    }
  }

  close(): void {
    clearInterval(this.timer);
  }
}
