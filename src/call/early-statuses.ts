import type { StatusUpdate } from "./call-runtime.ts";

/**
 * Status callbacks for calls not known yet, held until the REST response that names the call arrives. Everything
 * here comes from remote input, so it is bounded in calls, in callbacks per call, and in bytes (only the fields a call
 * reads are kept, each truncated), and forgotten after a minute.
 */
export class EarlyStatuses {
  private readonly held = new Map<string, { at: number; items: StatusUpdate[] }>();

  constructor(
    readonly maxCalls = 1000,
    readonly maxPerCall = 8,
    readonly ttlMs = 60_000,
  ) {}

  get size(): number {
    return this.held.size;
  }

  /** Hold a callback; false when it cannot be held (full). */
  hold(callSid: string, update: StatusUpdate, now: number): boolean {
    for (const [sid, e] of this.held) {
      if (now - e.at <= this.ttlMs) break; // insertion order is age order
      this.held.delete(sid);
    }
    let e = this.held.get(callSid);
    if (!e) {
      if (this.held.size >= this.maxCalls) return false;
      this.held.set(callSid, (e = { at: now, items: [] }));
    }
    if (e.items.length >= this.maxPerCall) return false;
    e.items.push({
      status: update.status,
      carrierStatus: update.carrierStatus.slice(0, 32),
      ...(update.sequence !== undefined ? { sequence: update.sequence.slice(0, 16) } : {}),
      ...(update.durationS !== undefined ? { durationS: update.durationS.slice(0, 64) } : {}),
      ...(update.answeredBy !== undefined ? { answeredBy: update.answeredBy.slice(0, 64) } : {}),
    });
    return true;
  }

  /** The callbacks held for a call, forgetting them. */
  take(callSid: string): StatusUpdate[] {
    const e = this.held.get(callSid);
    this.held.delete(callSid);
    return e?.items ?? [];
  }
}
