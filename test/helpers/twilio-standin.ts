import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { signWebhook } from "../../src/carriers/twilio/verify.ts";
import { TwilioCall } from "./twilio-client.ts";

/**
 * A local stand-in for Twilio, toward Parley: the REST API (create a call, hang up, fetch) and what Twilio then does
 * with the call: signed status callbacks in order, ringing, the callee answering (or not), and the TwiML executed the
 * way Twilio does: `<Connect><Stream>` opens a Media Stream (played by `TwilioCall`), and when Parley closes the socket
 * or the connection drops, the `<Connect action>` URL is asked for the next TwiML. Inbound calls start from the voice
 * webhook. Everything Twilio would sign carries `X-Twilio-Signature`.
 *
 * It implements Parley's own simple TwiML (`<Connect><Stream><Parameter/>`, `<Hangup/>`, `<Reject/>`, and a transfer's
 * `<Dial>` to a number or into a `<Conference>`, put in place by a REST `Twiml` update: the stream gets `stop`, the
 * number is recorded in `dialled`, a room's members are `conferenceMembers(room)`); other verbs are skipped and noted
 * in `StandInCall.notes`, so a test can assert Parley never sends them.
 */

const API_VERSION = "2010-04-01";
/** Twilio times out webhooks after 15 s. */
const WEBHOOK_TIMEOUT_MS = 15_000;
/** Guard against an action URL that keeps answering with a stream that keeps failing. */
const MAX_TWIML_DOCUMENTS = 20;
const MAX_INLINE_TWIML = 4000;
const CALLBACK_EVENTS = ["initiated", "ringing", "answered", "completed"] as const;

export type CallStatus = "queued" | "initiated" | "ringing" | "in-progress" | "completed" | "busy" | "no-answer" | "failed" | "canceled";
export type Outcome = "answer" | "busy" | "no-answer" | "failed";
const TERMINAL: ReadonlySet<CallStatus> = new Set(["completed", "busy", "no-answer", "failed", "canceled"]);
/** SIP codes Twilio reports on terminal events. */
const SIP_CODE: Partial<Record<CallStatus, string>> = { completed: "200", busy: "486", "no-answer": "487", failed: "404", canceled: "487" };

export interface StatusCallbackRecord {
  status: CallStatus;
  at: number;
  sequenceNumber: number;
  url: string;
  params: Record<string, string>;
  /** Parley's HTTP status, or null if the request failed (`error`). */
  httpStatus: number | null;
  error?: string;
}

export interface TwimlRequestRecord {
  /** "voice": the inbound webhook or the REST `Url`; "action": a `<Connect action>` request. */
  kind: "voice" | "action";
  url: string;
  params: Record<string, string>;
  at: number;
  httpStatus: number | null;
  twiml: string | null;
  error?: string;
}

export interface StreamCallbackRecord {
  event: "stream-started" | "stream-stopped" | "stream-error";
  streamSid: string;
  url: string;
  at: number;
  httpStatus: number | null;
}

export interface RestRequestRecord {
  at: number;
  method: string;
  path: string;
  /** The raw form body, as sent (repeated keys and all). */
  body: string;
  form: URLSearchParams;
  authorization: string | undefined;
  /** What the stand-in answered. */
  status: number;
}

export interface RestError {
  status: number;
  code?: number;
  message?: string;
}

export interface InboundOptions {
  webhookUrl: string;
  from: string;
  to: string;
  /** The number's status callback, if configured (only `completed` unless events are given). */
  statusCallback?: string;
  statusCallbackEvent?: string[];
}

type Verb =
  | { verb: "Connect"; action?: string; method?: string; stream: StreamNoun | null }
  | { verb: "Hangup" }
  | { verb: "Reject"; reason?: string }
  /** A transfer: to a number (`<Dial>+1…</Dial>` or `<Number>`), or into a `<Conference>` room. */
  | { verb: "Dial"; number: string | null; conference: string | null; callerId?: string }
  | { verb: "Other"; name: string };

interface StreamNoun {
  url: string;
  parameters: Record<string, string>;
  statusCallback?: string;
}

const now = (): number => performance.timeOrigin + performance.now();

const sid = (prefix: string): string => `${prefix}${randomBytes(16).toString("hex")}`;

/** RFC 2822 in UTC, as Twilio writes dates ("Tue, 31 Aug 2010 20:36:28 +0000"). */
function rfc2822(ms: number): string {
  return new Date(ms).toUTCString().replace("GMT", "+0000");
}

/** Resolve when `check` holds, polling: the state it watches lives in several streams and calls. */
export function waitUntil(check: () => boolean, timeoutMs: number, what: string, pollMs = 5): Promise<void> {
  if (check()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const timer = setInterval(() => {
      if (check()) {
        clearInterval(timer);
        resolve();
      } else if (Date.now() - started > timeoutMs) {
        clearInterval(timer);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }
    }, pollMs);
  });
}

// ---------------------------------------------------------------- TwiML (Parley's own simple documents)

const ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };

/** One pass, so `&amp;lt;` becomes `&lt;` and not `<`. */
export function decodeXmlEntities(s: string): string {
  return s.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos);/gi, (_, e: string) => {
    if (e[0] !== "#") return ENTITIES[e.toLowerCase()]!;
    return String.fromCodePoint(e[1] === "x" || e[1] === "X" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10));
  });
}

function attributes(raw: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of raw.matchAll(/([A-Za-z_][\w:.-]*)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) out[m[1]!] = decodeXmlEntities(m[2] ?? m[3] ?? "");
  return out;
}

/** Elements at one level: `<Name attrs/>` or `<Name attrs>inner</Name>` (no same-name nesting in TwiML). */
function elements(xml: string): { name: string; attrs: Record<string, string>; inner: string }[] {
  const re = /<([A-Za-z]+)((?:\s+[^\s=>/]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(?:\/>|>([\s\S]*?)<\/\1\s*>)/g;
  return [...xml.matchAll(re)].map((m) => ({ name: m[1]!, attrs: attributes(m[2] ?? ""), inner: m[3] ?? "" }));
}

/** The verbs of a TwiML document, or null if it is not a `<Response>`. */
export function parseTwiml(twiml: string): Verb[] | null {
  const xml = twiml.replace(/<\?xml[\s\S]*?\?>/, "").replace(/<!--[\s\S]*?-->/g, "").trim();
  if (/^<Response\s*\/>$/.test(xml)) return [];
  const body = /^<Response(?:\s[^>]*)?>([\s\S]*)<\/Response>$/.exec(xml)?.[1];
  if (body === undefined) return null;
  return elements(body).map((el): Verb => {
    switch (el.name) {
      case "Connect": {
        const s = elements(el.inner).find((c) => c.name === "Stream");
        const stream: StreamNoun | null = s?.attrs.url
          ? {
              url: s.attrs.url,
              parameters: Object.fromEntries(elements(s.inner).filter((p) => p.name === "Parameter").map((p) => [p.attrs.name ?? "", p.attrs.value ?? ""])),
              ...(s.attrs.statusCallback ? { statusCallback: s.attrs.statusCallback } : {}),
            }
          : null;
        return { verb: "Connect", stream, ...(el.attrs.action ? { action: el.attrs.action } : {}), ...(el.attrs.method ? { method: el.attrs.method } : {}) };
      }
      case "Hangup":
        return { verb: "Hangup" };
      case "Dial": {
        const kids = elements(el.inner);
        const conference = kids.find((c) => c.name === "Conference");
        const number = kids.find((c) => c.name === "Number")?.inner ?? (kids.length ? null : el.inner);
        return {
          verb: "Dial",
          number: number !== null && number.trim() ? decodeXmlEntities(number.trim()) : null,
          conference: conference ? decodeXmlEntities(conference.inner.trim()) : null,
          ...(el.attrs.callerId ? { callerId: el.attrs.callerId } : {}),
        };
      }
      case "Reject":
        return { verb: "Reject", ...(el.attrs.reason ? { reason: el.attrs.reason } : {}) };
      default:
        return { verb: "Other", name: el.name };
    }
  });
}

// ---------------------------------------------------------------- webhooks

interface Posted {
  status: number;
  text: string;
}

/** A signed, form-encoded request, as Twilio sends webhooks (POST: params in the body; GET: in the query string). */
async function sendSigned(authToken: string, url: string, params: Record<string, string>, method = "POST"): Promise<Posted> {
  if (method.toUpperCase() === "GET") {
    const u = new URL(url);
    for (const [k, v] of Object.entries(params)) u.searchParams.append(k, v);
    const res = await fetch(u, {
      headers: { "x-twilio-signature": signWebhook(authToken, u.toString(), {}) },
      signal: AbortSignal.timeout(WEBHOOK_TIMEOUT_MS),
    });
    return { status: res.status, text: await res.text() };
  }
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signWebhook(authToken, url, params) },
    body: new URLSearchParams(params).toString(),
    signal: AbortSignal.timeout(WEBHOOK_TIMEOUT_MS),
  });
  return { status: res.status, text: await res.text() };
}

// ---------------------------------------------------------------- one call

interface CallInit {
  direction: "outbound-api" | "inbound";
  from: string;
  to: string;
  accountSid: string;
  authToken: string;
  statusCallback?: string;
  statusCallbackMethod?: string;
  statusCallbackEvent?: string[];
  timeLimitSeconds?: number;
}

export class StandInCall {
  readonly sid = sid("CA");
  readonly direction: "outbound-api" | "inbound";
  readonly from: string;
  readonly to: string;
  readonly accountSid: string;
  status: CallStatus;
  readonly createdAt = now();
  answeredAt: number | null = null;
  endedAt: number | null = null;
  /** Every Media Stream of the call, in order; the current one is the last. */
  readonly streams: TwilioCall[] = [];
  readonly statusCallbacksSent: StatusCallbackRecord[] = [];
  /** The voice webhook / `Url` request and every `<Connect action>` request, with the TwiML they returned. */
  readonly twimlRequests: TwimlRequestRecord[] = [];
  readonly streamCallbacksSent: StreamCallbackRecord[] = [];
  /** What happened that is not a protocol message: skipped verbs, failed streams, failed webhooks. */
  readonly notes: string[] = [];
  /** Resolves when the call has ended and its final status callback has been delivered (or failed). */
  readonly ended: Promise<void>;
  /** Numbers the call was connected to by `<Dial>` (a cold transfer), in order. */
  readonly dialled: string[] = [];
  /** The `<Conference>` room the call is in (a warm transfer), until it ends. */
  conference: string | null = null;
  /** TwiML a REST update put in place of the running document (Twilio's `Twiml` update). */
  private redirected: string | null = null;
  /** Ends the wait of a `<Dial>` in progress (the call ended or was redirected). */
  private leaveDial: () => void = () => {};

  private resolveEnded!: () => void;
  private readonly authToken: string;
  private readonly statusCallback: string | undefined;
  private readonly statusCallbackMethod: string;
  private readonly events: Set<string>;
  private readonly timeLimitSeconds: number | undefined;
  private callbackSeq = 0;
  private callbacks: Promise<void> = Promise.resolve();
  /** Set once someone decided to end the call (REST, caller, time limit, close): the TwiML runner must stop. */
  private ending = false;
  private timers = new Set<NodeJS.Timeout>();
  private interruptRinging: () => void = () => {};
  private onStreamOpened: () => void = () => {};

  constructor(init: CallInit) {
    this.direction = init.direction;
    this.from = init.from;
    this.to = init.to;
    this.accountSid = init.accountSid;
    this.authToken = init.authToken;
    this.statusCallback = init.statusCallback;
    this.statusCallbackMethod = init.statusCallbackMethod ?? "POST";
    // "If no status_callback_event is specified, we will send the completed status."
    this.events = new Set([...(init.statusCallbackEvent ?? []), "completed"]);
    this.timeLimitSeconds = init.timeLimitSeconds;
    this.status = init.direction === "inbound" ? "ringing" : "queued";
    this.ended = new Promise((resolve) => (this.resolveEnded = resolve));
  }

  /** The current stream (the last one opened). */
  get stream(): TwilioCall | undefined {
    return this.streams.at(-1);
  }

  get isOver(): boolean {
    return TERMINAL.has(this.status);
  }

  /** The `<Connect action>` requests, with the TwiML Parley answered. */
  get actionRequests(): TwimlRequestRecord[] {
    return this.twimlRequests.filter((r) => r.kind === "action");
  }

  /** Cut the current stream's connection, as a network failure would (no `stop`). Twilio then follows `<Connect action>`. */
  drop(): void {
    this.stream?.drop();
  }

  /** The caller (or callee, on an outbound call) hangs up: `stop` + close on the stream, then the `completed` callback. */
  async callerHangsUp(): Promise<void> {
    await this.hangUp();
  }

  waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
    return waitUntil(check, timeoutMs, what);
  }

  /** Wait until the call has had `count` streams; resolves with that stream (its `start` already sent). */
  async waitForStream(count = 1, timeoutMs = 10_000): Promise<TwilioCall> {
    await waitUntil(() => this.streams.length >= count || this.isOver, timeoutMs, `stream #${count} of call ${this.sid}`);
    const s = this.streams[count - 1];
    if (!s) throw new Error(`call ${this.sid} ended (${this.status}) with ${this.streams.length} stream(s): ${this.describe()}`);
    return s;
  }

  /** What happened to the call, for failure messages: TwiML requests and their answers, and notes. */
  describe(): string {
    const requests = this.twimlRequests.map((r) => `${r.kind} ${r.url} -> ${r.httpStatus ?? r.error}: ${(r.twiml ?? "").replace(/^<\?xml[^>]*>/, "").slice(0, 160)}`);
    return [...requests, ...this.notes].join("; ") || "no TwiML requests, no notes";
  }

  /** The Call resource as Twilio's REST API returns it. */
  toJSON(): Record<string, unknown> {
    const duration = this.answeredAt !== null && this.endedAt !== null ? String(Math.round((this.endedAt - this.answeredAt) / 1000)) : null;
    return {
      sid: this.sid,
      account_sid: this.accountSid,
      parent_call_sid: null,
      to: this.to,
      to_formatted: this.to,
      from: this.from,
      from_formatted: this.from,
      phone_number_sid: null,
      status: this.status,
      direction: this.direction,
      api_version: API_VERSION,
      answered_by: null,
      forwarded_from: null,
      group_sid: null,
      caller_name: null,
      queue_time: "0",
      trunk_sid: null,
      date_created: rfc2822(this.createdAt),
      date_updated: rfc2822(now()),
      start_time: this.answeredAt !== null ? rfc2822(this.answeredAt) : null,
      end_time: this.endedAt !== null ? rfc2822(this.endedAt) : null,
      duration,
      price: null,
      price_unit: "USD",
      uri: `/${API_VERSION}/Accounts/${this.accountSid}/Calls/${this.sid}.json`,
      subresource_uris: {},
    };
  }

  // ------------------------------------------------------------ lifecycle (driven by TwilioStandIn)

  /** Outbound: initiated -> ringing -> (ringMs) -> answered or the given outcome -> TwiML. */
  async runOutbound(outcome: Outcome, ringMs: number, source: { twiml: string } | { url: string; method: string }): Promise<void> {
    await new Promise((r) => setImmediate(r)); // the 201 goes out first, as with Twilio: the call is only "queued"
    if (this.ending) return;
    this.setStatus("initiated");
    if (outcome === "busy" || outcome === "failed") return this.finish(outcome);
    this.setStatus("ringing");
    await new Promise<void>((resolve) => {
      const t = this.timer(ringMs, resolve);
      this.interruptRinging = () => {
        clearTimeout(t);
        resolve();
      };
    });
    if (this.ending) return;
    if (outcome === "no-answer") return this.finish("no-answer");
    this.answer();
    const twiml = "twiml" in source ? source.twiml : await this.fetchTwiml("voice", source.url, source.method);
    if (twiml === null) return this.finish("completed"); // Twilio would say "an application error has occurred" and hang up
    await this.execute(twiml, "url" in source ? source.url : undefined);
  }

  /** Inbound: the voice webhook, then its TwiML. Resolves once the first stream is open (or the call is over). */
  async runInbound(webhookUrl: string): Promise<void> {
    const twiml = await this.fetchTwiml("voice", webhookUrl, "POST");
    if (twiml === null) return this.finish("completed");
    await new Promise<void>((resolve) => {
      this.onStreamOpened = resolve;
      void this.execute(twiml, webhookUrl).finally(resolve);
    });
    this.onStreamOpened = () => {};
  }

  /**
   * End the call from Twilio's side (REST `Status=completed`, the caller hanging up, TimeLimit): before answer it is
   * canceled; after, the open stream gets `stop` and is closed, and `completed` is reported once the socket has closed.
   */
  async hangUp(): Promise<void> {
    if (this.ending || this.isOver) return;
    this.ending = true;
    if (this.answeredAt === null) return this.finish("canceled");
    const closing = this.stream?.isOpen ? this.stream.hangUp() : Promise.resolve();
    this.finish("completed", closing);
    await closing;
  }

  /**
   * A REST update with `Twiml`: the running document is abandoned for this one. A call inside `<Connect><Stream>`
   * leaves it, so the stream gets `stop` and closes (protocols.md 3.3); a call in a `<Dial>` leaves the dial.
   */
  redirect(twiml: string): void {
    this.redirected = twiml;
    if (this.stream?.isOpen) void this.stream.hangUp();
    this.leaveDial();
  }

  /** `Status=canceled`: only affects calls that have not been answered. Returns whether it did anything. */
  cancel(): boolean {
    if (this.ending || this.isOver || this.answeredAt !== null) return false;
    this.ending = true;
    this.finish("canceled");
    return true;
  }

  /** Stand-in shutdown: cut everything, report nothing more. */
  abort(): void {
    this.ending = true;
    for (const t of this.timers) clearTimeout(t);
    this.interruptRinging();
    for (const s of this.streams) s.drop();
    this.resolveEnded();
  }

  // ------------------------------------------------------------ TwiML execution

  private async execute(firstDoc: string, firstUrl: string | undefined): Promise<void> {
    let doc: string | null = firstDoc;
    let docUrl = firstUrl;
    for (let n = 0; doc !== null; n++) {
      if (n >= MAX_TWIML_DOCUMENTS) {
        this.notes.push(`gave up after ${MAX_TWIML_DOCUMENTS} TwiML documents`);
        break;
      }
      const next = await this.runDocument(doc, docUrl);
      if (next === "stop") return; // someone else ended the call and reports it
      doc = next?.twiml ?? null;
      docUrl = next?.url;
    }
    if (!this.ending) {
      this.ending = true;
      this.finish("completed");
    }
  }

  /** Run one document: "stop" if the call was ended meanwhile, the next document if an action supplied one, else null. */
  private async runDocument(doc: string, docUrl: string | undefined): Promise<"stop" | { twiml: string; url: string | undefined } | null> {
    const verbs = parseTwiml(doc);
    if (verbs === null) {
      this.notes.push(`invalid TwiML: ${doc.slice(0, 200)}`);
      return null;
    }
    for (const v of verbs) {
      if (this.ending) return "stop";
      switch (v.verb) {
        case "Hangup":
          this.answer();
          return null;
        case "Reject":
          // Only a first verb can reject: "the call ends with a status of busy or no-answer".
          if (this.answeredAt === null) {
            this.ending = true;
            this.finish(v.reason === "busy" ? "busy" : "no-answer");
            return "stop";
          }
          return null;
        case "Other":
          this.answer();
          this.notes.push(`unsupported verb <${v.name}> skipped`);
          continue;
        case "Dial": {
          this.answer();
          if (v.number) this.dialled.push(v.number);
          if (v.conference) this.conference = v.conference;
          if (!v.number && !v.conference) this.notes.push("<Dial> with nothing to dial skipped");
          // The far end answers at once and the call stays in the dial until someone hangs up or it is redirected.
          await new Promise<void>((resolve) => (this.leaveDial = resolve));
          this.leaveDial = () => {};
          this.conference = null;
          if (this.ending) return "stop";
          const next = this.takeRedirect();
          if (next) return next;
          continue;
        }
        case "Connect": {
          this.answer();
          if (!v.stream) {
            this.notes.push("<Connect> without <Stream url> skipped");
            continue;
          }
          await this.runStream(v.stream, docUrl);
          if (this.ending) return "stop";
          // A REST update ended the stream: its TwiML runs now, not the action URL.
          const next = this.takeRedirect();
          if (next) return next;
          // Parley closed the socket or it dropped: the call is still up, and Twilio moves on.
          if (!v.action) continue;
          const url = this.resolveUrl(v.action, docUrl);
          if (!url) return null;
          const twiml = await this.fetchTwiml("action", url, v.method ?? "POST");
          if (this.ending) return "stop";
          return twiml === null ? null : { twiml, url };
        }
      }
    }
    return null;
  }

  private takeRedirect(): { twiml: string; url: undefined } | null {
    const twiml = this.redirected;
    this.redirected = null;
    return twiml === null ? null : { twiml, url: undefined };
  }

  private async runStream(noun: StreamNoun, docUrl: string | undefined): Promise<void> {
    let stream: TwilioCall;
    const statusCallback = noun.statusCallback ? this.resolveUrl(noun.statusCallback, docUrl) : null;
    try {
      stream = await TwilioCall.openStream({
        streamUrl: noun.url,
        parameters: noun.parameters,
        callSid: this.sid,
        accountSid: this.accountSid,
        authToken: this.authToken,
        now,
      });
    } catch (err) {
      // Twilio reports the failed handshake (31920 in the debugger) and carries on with the TwiML.
      this.notes.push(`stream to ${noun.url} failed: ${(err as Error).message}`);
      if (statusCallback) await this.streamCallback(statusCallback, "stream-error", "");
      return;
    }
    this.streams.push(stream);
    this.onStreamOpened();
    if (this.ending) {
      // Hung up while the socket was opening: Twilio ends the stream with the call.
      await stream.hangUp();
      return;
    }
    if (statusCallback) void this.streamCallback(statusCallback, "stream-started", stream.streamSid);
    await stream.closed;
    if (statusCallback) void this.streamCallback(statusCallback, "stream-stopped", stream.streamSid);
  }

  private resolveUrl(url: string, base: string | undefined): string | null {
    try {
      return new URL(url, base).toString();
    } catch {
      this.notes.push(`cannot resolve URL "${url}"${base ? ` against ${base}` : " (inline TwiML has no base URL)"}`);
      return null;
    }
  }

  /** Ask for TwiML (voice webhook, REST Url, Connect action). Null if the request failed. */
  private async fetchTwiml(kind: "voice" | "action", url: string, method: string): Promise<string | null> {
    const params = { ...this.baseParams(), CallStatus: kind === "voice" && this.direction === "inbound" ? "ringing" : "in-progress" };
    const record: TwimlRequestRecord = { kind, url, params, at: now(), httpStatus: null, twiml: null };
    this.twimlRequests.push(record);
    try {
      const res = await sendSigned(this.authToken, url, params, method);
      record.httpStatus = res.status;
      if (res.status < 200 || res.status >= 300) {
        record.error = `HTTP ${res.status}: ${res.text.slice(0, 200)}`;
        this.notes.push(`${kind} request to ${url} answered ${res.status}`);
        return null;
      }
      record.twiml = res.text;
      return res.text;
    } catch (err) {
      record.error = (err as Error).message;
      this.notes.push(`${kind} request to ${url} failed: ${record.error}`);
      return null;
    }
  }

  // ------------------------------------------------------------ status and callbacks

  private baseParams(): Record<string, string> {
    return {
      AccountSid: this.accountSid,
      CallSid: this.sid,
      From: this.from,
      To: this.to,
      Caller: this.from,
      Called: this.to,
      Direction: this.direction,
      ApiVersion: API_VERSION,
    };
  }

  private answer(): void {
    if (this.answeredAt !== null) return;
    this.answeredAt = now();
    this.setStatus("in-progress");
    if (this.timeLimitSeconds !== undefined) this.timer(this.timeLimitSeconds * 1000, () => void this.hangUp());
  }

  private setStatus(status: CallStatus): void {
    this.status = status;
    const event = status === "in-progress" ? "answered" : TERMINAL.has(status) ? "completed" : status;
    if (this.statusCallback && this.events.has(event)) this.queueCallback(status, Promise.resolve());
  }

  /** Terminal status, then the final callback (after `after`, e.g. the stream's close), then `ended`. */
  private finish(status: CallStatus, after: Promise<unknown> = Promise.resolve()): void {
    if (this.isOver) return;
    const wasQueued = this.status === "queued";
    this.endedAt = now();
    for (const t of this.timers) clearTimeout(t);
    this.interruptRinging();
    this.leaveDial();
    this.conference = null;
    this.status = status;
    // "If the call is canceled while still in queued status, no status callbacks are fired."
    if (this.statusCallback && !wasQueued) this.queueCallback(status, after);
    void this.callbacks.then(() => this.resolveEnded());
  }

  /** Callbacks go out one at a time, in SequenceNumber order, so tests see a deterministic order. */
  private queueCallback(status: CallStatus, after: Promise<unknown>): void {
    const params: Record<string, string> = {
      ...this.baseParams(),
      CallStatus: status,
      CallbackSource: "call-progress-events",
      SequenceNumber: String(this.callbackSeq++),
      Timestamp: rfc2822(now()),
    };
    if (TERMINAL.has(status)) {
      const seconds = this.answeredAt !== null ? Math.round(((this.endedAt ?? now()) - this.answeredAt) / 1000) : 0;
      params.CallDuration = String(seconds);
      params.Duration = String(Math.ceil(seconds / 60)); // billed minutes
      params.SipResponseCode = SIP_CODE[status] ?? "200";
    }
    const url = this.statusCallback!;
    this.callbacks = this.callbacks.then(async () => {
      await after.catch(() => {});
      const record: StatusCallbackRecord = { status, at: now(), sequenceNumber: Number(params.SequenceNumber), url, params, httpStatus: null };
      this.statusCallbacksSent.push(record);
      try {
        record.httpStatus = (await sendSigned(this.authToken, url, params, this.statusCallbackMethod)).status;
      } catch (err) {
        record.error = (err as Error).message;
      }
    });
  }

  private async streamCallback(url: string, event: StreamCallbackRecord["event"], streamSid: string): Promise<void> {
    const params = { AccountSid: this.accountSid, CallSid: this.sid, StreamSid: streamSid, StreamName: "", StreamEvent: event, Timestamp: rfc2822(now()) };
    const record: StreamCallbackRecord = { event, streamSid, url, at: now(), httpStatus: null };
    this.streamCallbacksSent.push(record);
    try {
      record.httpStatus = (await sendSigned(this.authToken, url, params)).status;
    } catch {
      // recorded with httpStatus null
    }
  }

  private timer(ms: number, fn: () => void): NodeJS.Timeout {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
    return t;
  }
}

// ---------------------------------------------------------------- the REST API

export interface StandInOptions {
  accountSid: string;
  authToken: string;
  /** How long an outbound call rings before the callee answers (or not). Default 200 ms. */
  ringMs?: number;
}

export class TwilioStandIn {
  /** Origin of the REST API: Parley's TWILIO_API_URL. */
  readonly url: string;
  readonly accountSid: string;
  readonly authToken: string;
  ringMs: number;
  /** What happens to the next outbound call; back to "answer" after one use. */
  nextOutcome: Outcome = "answer";
  /** Answer the next REST request (after auth) with this error instead; cleared after one use. */
  nextRestError: RestError | null = null;
  readonly calls: StandInCall[] = [];
  readonly requests: RestRequestRecord[] = [];
  /** The account's numbers, for `IncomingPhoneNumbers.json` reads (`parley doctor`). */
  numbers: Array<{ phoneNumber: string; voiceUrl: string; voiceMethod?: string; voiceApplicationSid?: string }> = [];

  private constructor(
    private readonly server: Server,
    opts: StandInOptions,
  ) {
    const { port } = server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${port}`;
    this.accountSid = opts.accountSid;
    this.authToken = opts.authToken;
    this.ringMs = opts.ringMs ?? 200;
  }

  static async start(opts: StandInOptions): Promise<TwilioStandIn> {
    let standIn: TwilioStandIn | null = null;
    const server = createServer((req, res) => {
      standIn!.handle(req, res).catch((err: Error) => {
        if (!res.headersSent) res.writeHead(500, { "content-type": "application/json" });
        res.end(JSON.stringify({ code: 20500, message: `stand-in error: ${err.message}`, status: 500 }));
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", resolve);
    });
    standIn = new TwilioStandIn(server, opts);
    return standIn;
  }

  /** The call with this SID (throws if the stand-in never created it). */
  call(callSid: string): StandInCall {
    const c = this.calls.find((x) => x.sid === callSid);
    if (!c) throw new Error(`the stand-in has no call ${callSid} (calls: ${this.calls.map((x) => x.sid).join(", ") || "none"})`);
    return c;
  }

  waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
    return waitUntil(check, timeoutMs, what);
  }

  /** The calls in a `<Conference>` room now (a warm transfer joins both legs in one). */
  conferenceMembers(room: string): StandInCall[] {
    return this.calls.filter((c) => c.conference === room && !c.isOver);
  }

  /** A call comes in: the voice webhook (signed), then its TwiML. Resolves once its first stream is open or it ended. */
  async inbound(opts: InboundOptions): Promise<StandInCall> {
    const call = new StandInCall({
      direction: "inbound",
      from: opts.from,
      to: opts.to,
      accountSid: this.accountSid,
      authToken: this.authToken,
      ...(opts.statusCallback ? { statusCallback: opts.statusCallback } : {}),
      ...(opts.statusCallbackEvent ? { statusCallbackEvent: opts.statusCallbackEvent } : {}),
    });
    this.calls.push(call);
    await call.runInbound(opts.webhookUrl);
    return call;
  }

  async close(): Promise<void> {
    for (const c of this.calls) c.abort();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  // ------------------------------------------------------------ HTTP

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString("utf8");
    const path = new URL(req.url ?? "/", this.url).pathname;
    const record: RestRequestRecord = {
      at: now(),
      method: req.method ?? "GET",
      path,
      body,
      form: new URLSearchParams(body),
      authorization: req.headers.authorization,
      status: 0,
    };
    this.requests.push(record);
    const reply = (status: number, json: unknown) => {
      record.status = status;
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(json));
    };
    const error = (status: number, code: number, message: string) =>
      reply(status, { code, message, more_info: `https://www.twilio.com/docs/errors/${code}`, status });

    if (!this.authorized(req.headers.authorization)) return error(401, 20003, "Authenticate");
    if (this.nextRestError) {
      const e = this.nextRestError;
      this.nextRestError = null;
      return error(e.status, e.code ?? 20500, e.message ?? `injected HTTP ${e.status}`);
    }
    const read = req.method === "GET" ? this.accountRead(path, new URL(req.url ?? "/", this.url).searchParams) : null;
    if (read) return reply(200, read);
    const m = /^\/2010-04-01\/Accounts\/([^/]+)\/Calls(?:\/([^/]+))?\.json$/.exec(path);
    if (!m || m[1] !== this.accountSid) return error(404, 20404, `The requested resource ${path} was not found`);
    const callSid = m[2];
    if (!callSid && req.method === "POST") return this.createCall(record.form, reply, error);
    if (callSid) {
      const call = this.calls.find((c) => c.sid === callSid);
      if (!call) return error(404, 20404, `The requested resource ${path} was not found`);
      if (req.method === "GET") return reply(200, call.toJSON());
      if (req.method === "POST") return this.updateCall(call, record.form, reply, error);
    }
    return error(405, 20004, "Method not allowed");
  }

  /** GET Accounts/{sid}.json and IncomingPhoneNumbers.json?PhoneNumber=, in Twilio's JSON shapes; null for other paths. */
  private accountRead(path: string, query: URLSearchParams): Record<string, unknown> | null {
    const base = `/${API_VERSION}/Accounts/${this.accountSid}`;
    if (path === `${base}.json`) return { sid: this.accountSid, friendly_name: "stand-in", status: "active", type: "Full", uri: `${base}.json` };
    if (path !== `${base}/IncomingPhoneNumbers.json`) return null;
    const wanted = query.get("PhoneNumber");
    const rows = this.numbers
      .filter((n) => !wanted || n.phoneNumber === wanted)
      .map((n) => ({
        sid: `PN${n.phoneNumber.replace(/\D/g, "").padEnd(32, "0")}`,
        account_sid: this.accountSid,
        phone_number: n.phoneNumber,
        voice_url: n.voiceUrl,
        voice_method: n.voiceMethod ?? "POST",
        voice_application_sid: n.voiceApplicationSid ?? "",
      }));
    return { incoming_phone_numbers: rows, page: 0, page_size: 50, uri: `${base}/IncomingPhoneNumbers.json` };
  }

  private authorized(header: string | undefined): boolean {
    const m = /^Basic\s+(.+)$/i.exec(header ?? "");
    return !!m && Buffer.from(m[1]!, "base64").toString("utf8") === `${this.accountSid}:${this.authToken}`;
  }

  private createCall(form: URLSearchParams, reply: (s: number, j: unknown) => void, error: (s: number, c: number, m: string) => void): void {
    const to = form.get("To");
    const from = form.get("From");
    const twiml = form.get("Twiml");
    const url = form.get("Url");
    if (!to) return error(400, 21201, "No 'To' number is specified");
    if (!from) return error(400, 21603, "A 'From' phone number is required.");
    if (!url && !twiml) return error(400, 21205, "Url parameter is required.");
    // "If both twiml and url are provided then twiml parameter will be ignored."
    if (!url && [...twiml!].length > MAX_INLINE_TWIML) return error(400, 32018, "Twiml size exceeded maximum allowed value of 4000 characters");
    const statusCallback = form.get("StatusCallback");
    const timeLimit = form.get("TimeLimit");
    const call = new StandInCall({
      direction: "outbound-api",
      from,
      to,
      accountSid: this.accountSid,
      authToken: this.authToken,
      ...(statusCallback ? { statusCallback } : {}),
      ...(form.get("StatusCallbackMethod") ? { statusCallbackMethod: form.get("StatusCallbackMethod")! } : {}),
      // Unknown values are ignored (Twilio accepts the call and just never sends them).
      statusCallbackEvent: form.getAll("StatusCallbackEvent").filter((e) => (CALLBACK_EVENTS as readonly string[]).includes(e)),
      ...(timeLimit ? { timeLimitSeconds: Number(timeLimit) } : {}),
    });
    this.calls.push(call);
    const outcome = this.nextOutcome;
    this.nextOutcome = "answer";
    const source = url ? { url, method: form.get("Method") ?? "POST" } : { twiml: twiml! };
    void call.runOutbound(outcome, this.ringMs, source).catch((err: Error) => call.notes.push(`stand-in error: ${err.message}`));
    reply(201, call.toJSON());
  }

  private updateCall(call: StandInCall, form: URLSearchParams, reply: (s: number, j: unknown) => void, error: (s: number, c: number, m: string) => void): void {
    const status = form.get("Status");
    const twiml = form.get("Twiml");
    if (call.isOver) return error(400, 21220, "Call is not in-progress. Cannot redirect.");
    if (twiml !== null && !status) {
      if ([...twiml].length > MAX_INLINE_TWIML) return error(400, 32018, "Twiml size exceeded maximum allowed value of 4000 characters");
      if (parseTwiml(twiml) === null) return error(400, 12100, "Document parse failure");
      if (call.answeredAt === null) return error(400, 21220, "Call is not in-progress. Cannot redirect.");
      call.redirect(twiml);
      return reply(200, call.toJSON());
    }
    if (status === "completed") void call.hangUp();
    else if (status === "canceled") call.cancel(); // "will not affect calls already in progress"
    else return error(400, 20001, `the stand-in supports only Status=completed|canceled and Twiml updates (got ${[...form.keys()].join(", ") || "nothing"})`);
    reply(200, call.toJSON());
  }
}
