import { randomBytes } from "node:crypto";
import type { CallMode, ChatTurn } from "../../machines/call.machine.ts";
import { isSafeCallId } from "../store/call-store.ts";
import type { CallRecord } from "../store/call-record.ts";
import { connectStreamTwiml } from "../telephony/twiml.ts";
import { CallRuntime, type CallDirection, type CallInit } from "./call-runtime.ts";
import type { Services } from "./services.ts";

const TOKEN_TTL_MS = 60_000;
const newToken = () => randomBytes(18).toString("base64url");

export class CapacityError extends Error {}
/** A request the caller must fix (4xx). */
export class RequestError extends Error {
  constructor(
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

export interface CallSummary {
  callSid: string;
  direction: string | null;
  from: string | null;
  to: string | null;
  state: unknown;
  createdAt: number;
  endedAt: number | null;
  endReason: string | null;
  live: boolean;
}

export interface OutboundRequest {
  to: string;
  from?: string;
  mode: CallMode;
  message: string;
}

/** URLs Twilio reaches us on, from the configured public origin. */
export interface PublicUrls {
  stream: string;
  status: string;
  connectAction: string;
}

/**
 * The live calls of this process, and the single-use tokens that bind a media stream to its call. Twilio drops query
 * strings from stream URLs, so the token travels as a <Parameter>; it expires, and only the call it was issued for
 * can redeem it.
 */
export class CallManager {
  private readonly calls = new Map<string, CallRuntime>();
  private readonly tokens = new Map<string, { callSid: string; expiresAt: number; browser?: true }>();
  /** Ended calls stay readable from memory for a while (the journal on disk is the durable copy). */
  private readonly recent = new Map<string, CallRecord>();
  /** Status callbacks that beat the REST response announcing their call (Twilio sends them concurrently). */
  private readonly early = new Map<string, { at: number; items: [string, string | undefined, Record<string, string>][] }>();

  constructor(
    private readonly services: Services,
    private readonly urls: () => PublicUrls,
  ) {}

  get liveCount(): number {
    return this.calls.size;
  }

  private checkCapacity(): void {
    const max = this.services.config.maxConcurrentCalls;
    if (this.calls.size >= max) throw new CapacityError(`at capacity (${this.calls.size} live calls, MAX_CONCURRENT_CALLS=${max})`);
  }

  /** An inbound call announced by the voice webhook: its actor, and the TwiML that opens its stream. */
  answerInbound(init: Omit<CallInit, "direction">): string {
    if (!isSafeCallId(init.callSid)) throw new RequestError(`invalid CallSid ${JSON.stringify(init.callSid)}`);
    if (this.calls.has(init.callSid)) throw new RequestError(`call ${init.callSid} was already answered`, 409);
    this.checkCapacity();
    this.add(new CallRuntime(this.services, { ...init, direction: "inbound" }, (c) => this.finished(c)));
    return this.streamTwiml(init.callSid);
  }

  /**
   * A call from the browser softphone. There is no Twilio behind it: the browser speaks the Media Streams protocol
   * itself, and the single-use token it is given here stands in for Twilio's signature on the stream upgrade.
   */
  answerBrowser(init: { from?: string }): { callSid: string; token: string } {
    this.checkCapacity();
    const callSid = `BR${randomBytes(16).toString("hex")}`;
    this.add(new CallRuntime(this.services, { callSid, from: init.from ?? "browser", to: "parley", direction: "browser" }, (c) => this.finished(c)));
    return { callSid, token: this.bindToken(newToken(), callSid, TOKEN_TTL_MS, true) };
  }

  /** Whether a token was issued to the softphone and is still unused: it admits a stream upgrade without a signature. */
  isBrowserToken(token: string | null): boolean {
    const t = token ? this.tokens.get(token) : undefined;
    return !!t?.browser && t.expiresAt >= this.services.clock.now();
  }

  /**
   * Place a call through Twilio's REST API with the stream TwiML inline (no webhook round trip). The message is
   * synthesized while the phone rings, so it plays the moment the stream opens.
   */
  async placeOutbound(req: OutboundRequest): Promise<CallRuntime> {
    const { config, rest, speechCache, log } = this.services;
    if (!rest) throw new RequestError("outbound calls need TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN", 503);
    const from = req.from ?? config.twilioFromNumber;
    if (!from) throw new RequestError('no caller ID: pass "from" or set TWILIO_FROM_NUMBER');
    this.checkCapacity();
    speechCache.get(req.message).catch((err: Error) => log.warn({ err: err.message }, "could not pre-synthesize the outbound message"));
    const token = newToken();
    const urls = this.urls();
    const twiml = connectStreamTwiml({ streamUrl: urls.stream, parameters: { token }, connectAction: urls.connectAction });
    const created = await rest.createCall({ to: req.to, from, twiml, statusCallback: urls.status, timeoutSeconds: config.ringTimeoutSeconds });
    const call = new CallRuntime(
      this.services,
      { callSid: created.sid, from, to: req.to, direction: "outbound", mode: req.mode, greetingText: req.message, answered: false },
      (c) => this.finished(c),
    );
    this.add(call);
    for (const [status, seq, params] of this.early.get(created.sid)?.items ?? []) call.onStatus(status, seq, params);
    this.early.delete(created.sid);
    this.bindToken(token, created.sid, Math.max(TOKEN_TTL_MS, (config.ringTimeoutSeconds + 30) * 1000));
    log.info({ callSid: created.sid, to: req.to, mode: req.mode }, "outbound call placed");
    return call;
  }

  /**
   * Twilio asks the <Connect action> URL when a stream ends while the call is up. A call that wants its stream back
   * gets a new one (restored from its record if this process restarted); anything else is hung up.
   */
  async resumeTwiml(callSid: string): Promise<{ twiml: string; resumed: boolean }> {
    let call = this.calls.get(callSid);
    if (!call && isSafeCallId(callSid)) call = await this.restore(callSid);
    if (!call || !call.wantsStream) return { twiml: '<?xml version="1.0" encoding="UTF-8"?><Response><Hangup/></Response>', resumed: false };
    return { twiml: this.streamTwiml(callSid), resumed: true };
  }

  /** Redeem a stream token: single use, unexpired, and bound to the CallSid the stream reports. */
  claim(token: string | undefined, callSid: string): { call: CallRuntime } | { error: string } {
    if (!token) return { error: "missing token parameter" };
    const t = this.tokens.get(token);
    if (!t) return { error: "unknown or already used token" };
    this.tokens.delete(token);
    if (t.expiresAt < this.services.clock.now()) return { error: "expired token" };
    if (t.callSid !== callSid) return { error: "token belongs to another call" };
    const call = this.calls.get(callSid);
    if (!call || !call.live) return { error: "call is no longer live" };
    return { call };
  }

  /** A status callback: applied to a live call, or appended to the record of an ended one. */
  async status(callSid: string, status: string, sequence: string | undefined, params: Record<string, string>): Promise<"applied" | "duplicate" | "unknown"> {
    const call = this.calls.get(callSid);
    if (call) return call.onStatus(status, sequence, params) ? "applied" : "duplicate";
    const rec = this.recent.get(callSid) ?? (isSafeCallId(callSid) ? await this.services.store.read(callSid) : null);
    if (!rec) {
      if (!isSafeCallId(callSid)) return "unknown";
      const now = this.services.clock.now();
      for (const [sid, e] of this.early) if (now - e.at > 60_000) this.early.delete(sid);
      if (this.early.size > 1000) return "unknown";
      const e = this.early.get(callSid) ?? { at: now, items: [] };
      e.items.push([status, sequence, params]);
      this.early.set(callSid, e);
      return "applied";
    }
    if (rec.statuses.includes(status)) return "duplicate";
    rec.statuses.push(status);
    await this.services.store.appendOnce(callSid, { t: this.services.clock.now(), type: "call.status", status, sequence: sequence ?? null, duration: params.CallDuration ?? null });
    return "applied";
  }

  get(callSid: string): CallRuntime | undefined {
    return this.calls.get(callSid);
  }

  /** The record of a live or ended call, or null. */
  async recordOf(callSid: string): Promise<(CallRecord & { live: boolean }) | null> {
    const live = this.calls.get(callSid);
    if (live) return { ...live.record, live: live.live };
    const rec = this.recent.get(callSid) ?? (isSafeCallId(callSid) ? await this.services.store.read(callSid) : null);
    return rec ? { ...rec, live: false } : null;
  }

  /** Live and recorded calls, newest first. */
  async list(filter: { state?: string; direction?: string; since?: number }): Promise<CallSummary[]> {
    const seen = new Set<string>();
    const out: CallSummary[] = [];
    const add = (r: CallRecord, live: boolean) => {
      if (seen.has(r.callSid)) return;
      seen.add(r.callSid);
      out.push({ callSid: r.callSid, direction: r.direction, from: r.from, to: r.to, state: r.state, createdAt: r.createdAt, endedAt: r.endedAt, endReason: r.endReason, live });
    };
    for (const c of this.calls.values()) add(c.record, true);
    for (const r of this.recent.values()) add(r, false);
    for (const sid of await this.services.store.list()) {
      if (seen.has(sid)) continue;
      const r = await this.services.store.read(sid);
      if (r) add(r, false);
    }
    return out
      .filter((c) => !filter.direction || c.direction === filter.direction)
      .filter((c) => filter.since === undefined || c.createdAt >= filter.since)
      .filter((c) => !filter.state || stateMatches(c, filter.state))
      .sort((a, b) => b.createdAt - a.createdAt);
  }

  /** End every live call (process shutdown). */
  shutdown(): void {
    for (const call of [...this.calls.values()]) call.shutdown();
  }

  private add(call: CallRuntime): void {
    this.calls.set(call.callSid, call);
  }

  private streamTwiml(callSid: string): string {
    const token = this.bindToken(newToken(), callSid, TOKEN_TTL_MS);
    const urls = this.urls();
    return connectStreamTwiml({ streamUrl: urls.stream, parameters: { token, callSid }, connectAction: urls.connectAction });
  }

  /** Bring back a call this process does not know (it restarted) from its record, if the record says it is not over. */
  private async restore(callSid: string): Promise<CallRuntime | undefined> {
    const rec = await this.services.store.read(callSid);
    if (!rec || rec.endedAt !== null) return undefined;
    const history: ChatTurn[] = [];
    for (const t of rec.turns) {
      const content = (t.role === "assistant" ? (t.heardText ?? t.text) : t.text).trim();
      if (content) history.push({ role: t.role, content });
    }
    const message = rec.message ?? undefined;
    const call = new CallRuntime(
      this.services,
      {
        callSid,
        direction: (rec.direction as CallDirection | null) ?? "inbound",
        mode: (rec.mode as CallMode | null) ?? "conversation",
        greetingText: message,
        restored: { history, greetingDelivered: rec.greetingDelivered, turnId: rec.turns.reduce((m, t) => Math.max(m, t.turnId), 0), record: rec },
      },
      (c) => this.finished(c),
    );
    this.add(call);
    this.services.log.info({ callSid, turns: history.length }, "call restored from its record to resume its stream");
    return call;
  }

  private finished(call: CallRuntime): void {
    this.calls.delete(call.callSid);
    this.recent.set(call.callSid, call.record);
    while (this.recent.size > 1000) this.recent.delete(this.recent.keys().next().value!);
  }

  /** Make `token` redeemable for `callSid` until `ttlMs` from now (and forget expired ones). */
  private bindToken(token: string, callSid: string, ttlMs: number, browser = false): string {
    const now = this.services.clock.now();
    for (const [t, v] of this.tokens) if (v.expiresAt < now) this.tokens.delete(t);
    this.tokens.set(token, browser ? { callSid, expiresAt: now + ttlMs, browser } : { callSid, expiresAt: now + ttlMs });
    return token;
  }
}

/** `state=live|ended` or a state name anywhere in the call's state value (e.g. `reconnecting`, `speaking`). */
function stateMatches(c: CallSummary, state: string): boolean {
  if (state === "live") return c.live;
  if (state === "ended") return !c.live;
  return JSON.stringify(c.state ?? "").includes(`"${state}"`);
}
