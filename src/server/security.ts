import { timingSafeEqual } from "node:crypto";

/**
 * Token bucket per client address; refills continuously. Keyed by remote input, so bounded: a bucket that has been
 * idle long enough to be full again holds nothing worth keeping and is swept (at most every few seconds, so the cost
 * is spread), and past `maxClients` the least recently seen clients are dropped first.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private sweptAt = 0;

  constructor(
    private readonly perMinute: number,
    private readonly maxClients = 50_000,
    private readonly sweepEveryMs = 5_000,
  ) {}

  /** Clients remembered now. */
  get size(): number {
    return this.buckets.size;
  }

  take(client: string, now: number): boolean {
    const capacity = Math.max(1, this.perMinute);
    if (now - this.sweptAt >= this.sweepEveryMs) this.sweep(now, capacity);
    let b = this.buckets.get(client);
    if (b) this.buckets.delete(client); // re-inserted below: Map order is recency order
    else b = { tokens: capacity, at: now };
    b.tokens = Math.min(capacity, b.tokens + ((now - b.at) * capacity) / 60_000);
    b.at = now;
    this.buckets.set(client, b);
    while (this.buckets.size > this.maxClients) this.buckets.delete(this.buckets.keys().next().value!);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Forget clients whose bucket has refilled: oldest first, stopping at the first one still refilling. */
  private sweep(now: number, capacity: number): void {
    this.sweptAt = now;
    for (const [k, b] of this.buckets) {
      if (b.tokens + ((now - b.at) * capacity) / 60_000 < capacity) break;
      this.buckets.delete(k);
    }
  }
}

/** A URL for the logs: secrets in its query (`access_token`, `token`) replaced. */
export function redactUrl(url: string): string {
  return url.replace(/([?&](?:access_token|token)=)[^&#]*/gi, "$1[redacted]");
}

export function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(header ?? "");
  if (!m) return false;
  const a = Buffer.from(m[1]!.trim());
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

// Their home was here; importers keep working.
export { signedFormParams, verifyTwilioSignature } from "../carriers/twilio/verify.ts";
