import type { Clock } from "../util/clock.ts";
import type { RedisConnection } from "./redis-client.ts";

/**
 * The single-use tokens that bind a media stream to its call. Twilio drops query strings from stream URLs, so the
 * token travels as a <Parameter>; it expires, and only the call it was issued for can redeem it. A softphone token
 * admits a stream on the softphone's path only, and a Twilio stream token on Twilio's path only.
 */
export interface StreamTokens {
  bind(token: string, callSid: string, ttlMs: number, browser: boolean): Promise<void>;
  /** Whether `token` is an unused, unexpired softphone token (it admits the softphone's upgrade; nothing is spent). */
  isBrowserToken(token: string): Promise<boolean>;
  /**
   * Whether `token` is unused, unexpired and of this path's kind: it admits an upgrade that carries no signature, only
   * the token (the softphone, Telnyx); nothing is spent.
   */
  isLive(token: string, path: "twilio" | "phone"): Promise<boolean>;
  /**
   * Spend `token` for `callSid` on a stream path. A token for another call, or of the other path's kind, is refused
   * without being spent, so a wrong guess cannot burn it. Check and spend are one step.
   */
  redeem(token: string, callSid: string, path: "twilio" | "phone"): Promise<{ ok: true } | { error: string }>;
}

const ANOTHER_CALL = "token belongs to another call";
const UNKNOWN = "unknown or already used token";
const wrongPath = (path: "twilio" | "phone") => (path === "twilio" ? "softphone token on the Twilio stream path" : "not a softphone token");

/** Tokens of this process. */
export class MemoryStreamTokens implements StreamTokens {
  private readonly tokens = new Map<string, { callSid: string; expiresAt: number; browser?: true }>();

  constructor(private readonly clock: Clock) {}

  async bind(token: string, callSid: string, ttlMs: number, browser: boolean): Promise<void> {
    const now = this.clock.now();
    for (const [t, v] of this.tokens) if (v.expiresAt < now) this.tokens.delete(t);
    this.tokens.set(token, browser ? { callSid, expiresAt: now + ttlMs, browser } : { callSid, expiresAt: now + ttlMs });
  }

  async isBrowserToken(token: string): Promise<boolean> {
    const t = this.tokens.get(token);
    return !!t?.browser && t.expiresAt >= this.clock.now();
  }

  async isLive(token: string, path: "twilio" | "phone"): Promise<boolean> {
    const t = this.tokens.get(token);
    return !!t && !!t.browser === (path === "phone") && t.expiresAt >= this.clock.now();
  }

  async redeem(token: string, callSid: string, path: "twilio" | "phone"): Promise<{ ok: true } | { error: string }> {
    const t = this.tokens.get(token);
    if (!t) return { error: UNKNOWN };
    const unexpired = t.expiresAt >= this.clock.now();
    if (unexpired && !!t.browser !== (path === "phone")) return { error: wrongPath(path) };
    if (t.callSid !== callSid) return { error: ANOTHER_CALL };
    this.tokens.delete(token);
    if (!unexpired) return { error: "expired token" };
    return { ok: true };
  }
}

/** Compare, then spend, in one step: GETDEL alone would let a token presented for the wrong call burn it. */
const REDEEM = `
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local sid, kind = string.match(v, '^([^|]*)|(.*)$')
if kind ~= ARGV[2] then return 2 end
if sid ~= ARGV[1] then return 1 end
redis.call('DEL', KEYS[1])
return 3`;

/** Tokens in Redis, so a stream may open on any instance: `SET PX` to bind, one script to check and spend. */
export class RedisStreamTokens implements StreamTokens {
  constructor(private readonly redis: RedisConnection) {
    redis.script("parleyRedeemToken", 1, REDEEM);
  }

  private key(token: string): string {
    return this.redis.key("tok", token);
  }

  async bind(token: string, callSid: string, ttlMs: number, browser: boolean): Promise<void> {
    await this.redis.call(() => this.redis.client.set(this.key(token), `${callSid}|${browser ? "phone" : "twilio"}`, "PX", Math.max(1, Math.round(ttlMs))));
  }

  async isBrowserToken(token: string): Promise<boolean> {
    const v = await this.redis.call(() => this.redis.client.get(this.key(token)));
    return v !== null && v.endsWith("|phone");
  }

  async isLive(token: string, path: "twilio" | "phone"): Promise<boolean> {
    const v = await this.redis.call(() => this.redis.client.get(this.key(token)));
    return v !== null && v.endsWith(`|${path}`);
  }

  async redeem(token: string, callSid: string, path: "twilio" | "phone"): Promise<{ ok: true } | { error: string }> {
    const r = await this.redis.run<number>("parleyRedeemToken", [this.key(token)], [callSid, path]);
    if (r === 3) return { ok: true };
    return { error: r === 1 ? ANOTHER_CALL : r === 2 ? wrongPath(path) : UNKNOWN };
  }
}
