import { randomBytes } from "node:crypto";
import { isSafeCallId } from "../store/call-store.ts";
import type { CallRecord } from "../store/call-record.ts";
import { CallRuntime, type CallInit } from "./call-runtime.ts";
import type { Services } from "./services.ts";

const TOKEN_TTL_MS = 60_000;

export class CapacityError extends Error {}

/**
 * The live calls of this process, and the single-use tokens that bind a media stream to the webhook that announced
 * it. Twilio drops query strings from stream URLs, so the token travels as a <Parameter>.
 */
export class CallManager {
  private readonly calls = new Map<string, CallRuntime>();
  private readonly tokens = new Map<string, { callSid: string; expiresAt: number }>();
  /** Ended calls stay readable from memory for a while (the journal on disk is the durable copy). */
  private readonly recent = new Map<string, CallRecord>();

  constructor(private readonly services: Services) {}

  get liveCount(): number {
    return this.calls.size;
  }

  /** A new call announced by a webhook: create its actor and a token for its stream. */
  announce(init: CallInit): { call: CallRuntime; token: string } {
    if (!isSafeCallId(init.callSid)) throw new Error(`invalid CallSid ${JSON.stringify(init.callSid)}`);
    const existing = this.calls.get(init.callSid);
    if (!existing && this.calls.size >= this.services.config.maxConcurrentCalls)
      throw new CapacityError(`at capacity (${this.calls.size} live calls, MAX_CONCURRENT_CALLS=${this.services.config.maxConcurrentCalls})`);
    const call = existing ?? new CallRuntime(this.services, init, (c) => this.finished(c));
    this.calls.set(init.callSid, call);
    const token = randomBytes(18).toString("base64url");
    this.tokens.set(token, { callSid: init.callSid, expiresAt: this.services.clock.now() + TOKEN_TTL_MS });
    this.sweepTokens();
    return { call, token };
  }

  /** Redeem a stream token: single use, unexpired, and bound to the CallSid the stream reports. */
  claim(token: string | undefined, callSid: string): { call: CallRuntime } | { error: string } {
    if (!token) return { error: "missing token parameter" };
    const t = this.tokens.get(token);
    if (!t) return { error: "unknown or already used token" };
    this.tokens.delete(token);
    if (t.expiresAt < this.services.clock.now()) return { error: "expired token" };
    if (t.callSid !== callSid) return { error: `token belongs to another call` };
    const call = this.calls.get(callSid);
    if (!call || !call.live) return { error: "call is no longer live" };
    return { call };
  }

  get(callSid: string): CallRuntime | undefined {
    return this.calls.get(callSid);
  }

  /** The record of a live or recently ended call, or null (callers then look on disk). */
  recordOf(callSid: string): CallRecord | null {
    return this.calls.get(callSid)?.record ?? this.recent.get(callSid) ?? null;
  }

  live(): CallRuntime[] {
    return [...this.calls.values()];
  }

  /** End every live call (process shutdown). */
  shutdown(): void {
    for (const call of this.calls.values()) call.socketClosed(1001, "server shutting down");
  }

  private finished(call: CallRuntime): void {
    this.calls.delete(call.callSid);
    this.recent.set(call.callSid, call.record);
    while (this.recent.size > 1000) this.recent.delete(this.recent.keys().next().value!);
  }

  private sweepTokens(): void {
    const now = this.services.clock.now();
    for (const [token, t] of this.tokens) if (t.expiresAt < now) this.tokens.delete(token);
  }
}
