import { randomBytes, randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { signPlivoV3 } from "../../src/carriers/plivo/signature.ts";
import { PlivoStream } from "./plivo-stream.ts";
import { decodeXmlEntities, waitUntil } from "./twilio-standin.ts";

/**
 * A local stand-in for Plivo, toward Parley (carriers.md part B): the Voice API (place a call, hang up, read the
 * account) with Basic auth, and what Plivo then does with a call: the ring request, the answer request whose XML it
 * runs (`<Stream>` opens an Audio Stream played by `PlivoStream`; `<Redirect>` asks its URL for the next XML;
 * `<Hangup>` ends the call), the stream status
 * callbacks and the hangup request. Every request it makes is form-encoded and carries X-Plivo-Signature-V3 (+ Ma-V3)
 * and its nonce. It follows Plivo's rules that Parley must get right: without `keepCallAlive="true"` the call ends as
 * soon as the XML has run, the stream's format is the `contentType` asked for (L16 when none), and when the stream
 * ends, the XML goes on (a `<Redirect>` after it is asked for more, as Twilio asks a `<Connect action>`), and with
 * nothing after it the call ends (4010, "End Of XML Instructions").
 */

const WEBHOOK_TIMEOUT_MS = 15_000;
/** Guard against a redirect URL that keeps answering with a stream that keeps failing. */
const MAX_XML_DOCUMENTS = 20;

export type PlivoCallStatus = "queued" | "ringing" | "in-progress" | "completed" | "busy" | "failed" | "timeout" | "no-answer" | "cancel";
export type PlivoOutcome = "answer" | "busy" | "timeout" | "failed";

export interface PlivoRequestRecord {
  kind: "answer" | "redirect" | "ring" | "hangup" | "stream-status";
  url: string;
  params: Record<string, string>;
  at: number;
  httpStatus: number | null;
  body: string | null;
  error?: string;
}

export interface PlivoRestRecord {
  at: number;
  method: string;
  path: string;
  json: Record<string, unknown> | null;
  authorization: string | undefined;
  status: number;
}

interface StreamElement {
  url: string;
  attrs: Record<string, string>;
}

const now = (): number => performance.timeOrigin + performance.now();
const nonce = (): string => randomBytes(8).readBigUInt64BE().toString();

/** `<Response>`'s elements (Plivo XML as Parley writes it: no nesting of the same name). */
export function parsePlivoXml(xml: string): { name: string; attrs: Record<string, string>; text: string }[] | null {
  const body = /^\s*(?:<\?xml[^>]*\?>\s*)?<Response>([\s\S]*)<\/Response>\s*$/.exec(xml)?.[1];
  if (body === undefined) return /^\s*(?:<\?xml[^>]*\?>\s*)?<Response\s*\/>\s*$/.test(xml) ? [] : null;
  const re = /<([A-Za-z]+)((?:\s+[^\s=>/]+\s*=\s*"[^"]*")*)\s*(?:\/>|>([\s\S]*?)<\/\1\s*>)/g;
  return [...body.matchAll(re)].map((m) => ({
    name: m[1]!,
    attrs: Object.fromEntries([...(m[2] ?? "").matchAll(/([^\s=]+)\s*=\s*"([^"]*)"/g)].map((a) => [a[1]!, decodeXmlEntities(a[2]!)])),
    text: decodeXmlEntities((m[3] ?? "").trim()),
  }));
}

/** Plivo's requests: form-encoded POST, signed V3 over the exact URL and the parameters. */
export async function postSigned(authToken: string, url: string, params: Record<string, string>): Promise<{ status: number; text: string }> {
  const n = nonce();
  const sig = signPlivoV3(authToken, "POST", url, n, params);
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", "x-plivo-signature-v3": sig, "x-plivo-signature-ma-v3": sig, "x-plivo-signature-v3-nonce": n },
    body: new URLSearchParams(params).toString(),
    signal: AbortSignal.timeout(WEBHOOK_TIMEOUT_MS),
  });
  return { status: res.status, text: await res.text() };
}

interface CallInit {
  direction: "inbound" | "outbound";
  from: string;
  to: string;
  authId: string;
  authToken: string;
  answerUrl: string;
  hangupUrl?: string;
  ringUrl?: string;
}

export class PlivoStandInCall {
  readonly callUuid = randomUUID();
  /** Outbound only: Make Call's id, which is not the CallUUID. */
  readonly requestUuid: string | null;
  readonly direction: "inbound" | "outbound";
  status: PlivoCallStatus;
  answeredAt: number | null = null;
  endedAt: number | null = null;
  hangupCause = "";
  readonly streams: PlivoStream[] = [];
  readonly requests: PlivoRequestRecord[] = [];
  readonly notes: string[] = [];
  readonly ended: Promise<void>;
  private resolveEnded!: () => void;
  private ending = false;
  private ringTimer: NodeJS.Timeout | null = null;
  private interruptRinging: () => void = () => {};

  constructor(private readonly init: CallInit) {
    this.direction = init.direction;
    this.requestUuid = init.direction === "outbound" ? randomUUID() : null;
    this.status = init.direction === "inbound" ? "ringing" : "queued";
    this.ended = new Promise((r) => (this.resolveEnded = r));
  }

  get stream(): PlivoStream | undefined {
    return this.streams.at(-1);
  }

  get isOver(): boolean {
    return this.endedAt !== null;
  }

  async waitForStream(count = 1, timeoutMs = 10_000): Promise<PlivoStream> {
    await waitUntil(() => this.streams.length >= count || this.isOver, timeoutMs, `stream #${count} of Plivo call ${this.callUuid}`);
    const s = this.streams[count - 1];
    if (!s) throw new Error(`Plivo call ${this.callUuid} ended (${this.status}, ${this.hangupCause}) with ${this.streams.length} stream(s): ${this.describe()}`);
    return s;
  }

  describe(): string {
    return [...this.requests.map((r) => `${r.kind} ${r.url} -> ${r.httpStatus ?? r.error}: ${(r.body ?? "").slice(0, 200)}`), ...this.notes].join("; ") || "nothing";
  }

  /** The caller (or callee) hangs up: the socket closes, then the hangup request. */
  callerHangsUp(): Promise<void> {
    return this.end("completed", "Normal Hangup");
  }

  /** Inbound: the answer request, then its XML. Resolves when the first stream is open or the call is over. */
  async runInbound(): Promise<void> {
    await new Promise<void>((resolve) => {
      void this.answerAndRun(resolve).finally(resolve);
    });
  }

  /** Outbound: ring (ring request), then the outcome; answered calls get the answer request and run its XML. */
  async runOutbound(outcome: PlivoOutcome, ringMs: number): Promise<void> {
    await new Promise((r) => setImmediate(r)); // the 201 goes out first
    if (this.ending) return;
    if (outcome === "failed") return this.end("failed", "Unallocated Number");
    this.status = "ringing";
    if (this.init.ringUrl) await this.request("ring", this.init.ringUrl, this.params({ CallStatus: "ringing", Event: "Ring" }));
    await new Promise<void>((resolve) => {
      this.ringTimer = setTimeout(resolve, ringMs);
      this.interruptRinging = () => (clearTimeout(this.ringTimer!), resolve());
    });
    if (this.ending) return;
    if (outcome === "busy") return this.end("busy", "Busy Line");
    if (outcome === "timeout") return this.end("timeout", "No Answer");
    await this.answerAndRun(() => {});
  }

  /** End the call from Plivo's side (REST hang-up, the caller, the end of the XML). */
  async end(status: PlivoCallStatus, cause: string): Promise<void> {
    if (this.ending) return;
    this.ending = true;
    this.interruptRinging();
    for (const s of this.streams) await s.close();
    this.status = this.answeredAt === null && status === "completed" ? "cancel" : status;
    this.hangupCause = cause;
    this.endedAt = now();
    if (this.init.hangupUrl) {
      const duration = this.answeredAt !== null ? Math.round((this.endedAt - this.answeredAt) / 1000) : 0;
      await this.request(
        "hangup",
        this.init.hangupUrl,
        this.params({ CallStatus: this.status, Event: "Hangup", HangupCause: cause, HangupCauseName: cause, Duration: String(duration), BillDuration: String(duration) }),
      );
    }
    this.resolveEnded();
  }

  /** Stand-in shutdown: cut everything, report nothing. */
  abort(): void {
    this.ending = true;
    this.interruptRinging();
    for (const s of this.streams) s.drop();
    this.resolveEnded();
  }

  private params(extra: Record<string, string>): Record<string, string> {
    return {
      CallUUID: this.callUuid,
      From: this.init.from,
      To: this.init.to,
      Direction: this.direction,
      CallerName: "",
      BillRate: "0.0085",
      ...(this.requestUuid ? { RequestUUID: this.requestUuid, ALegUUID: this.callUuid, ALegRequestUUID: this.requestUuid } : {}),
      ...extra,
    };
  }

  private async answerAndRun(onStreamOpen: () => void): Promise<void> {
    this.answeredAt = now();
    this.status = "in-progress";
    const status = this.direction === "inbound" ? "ringing" : "in-progress";
    let next: { kind: "answer" | "redirect"; url: string } | null = { kind: "answer", url: this.init.answerUrl };
    for (let n = 0; next && n < MAX_XML_DOCUMENTS; n++) {
      const rec = await this.request(next.kind, next.url, this.params({ CallStatus: next.kind === "answer" ? status : "in-progress", Event: next.kind === "answer" ? "StartApp" : "Redirect" }));
      if (this.ending) return;
      // Plivo retries a failing answer URL, then gives up (7011); an invalid document ends the call (8011).
      if (rec.httpStatus === null || rec.httpStatus >= 300) return this.end("completed", "Error Reaching Answer URL");
      const elements = parsePlivoXml(rec.body ?? "");
      if (!elements) {
        this.notes.push(`invalid XML: ${(rec.body ?? "").slice(0, 200)}`);
        return this.end("completed", "Invalid Answer XML");
      }
      next = null;
      for (const el of elements) {
        if (this.ending) return;
        if (el.name === "Hangup") return this.end(el.attrs.reason === "busy" ? "busy" : "completed", el.attrs.reason === "busy" ? "Busy Line" : "Answer XML");
        if (el.name === "Redirect") {
          // "Transfers control of the call to the URL": what follows a <Redirect> never runs.
          next = { kind: "redirect", url: el.text };
          break;
        }
        if (el.name !== "Stream") {
          this.notes.push(`element <${el.name}> not run by the stand-in`);
          continue;
        }
        await this.runStream({ url: el.text, attrs: el.attrs }, onStreamOpen);
      }
    }
    if (!this.ending) await this.end("completed", "End Of XML Instructions");
  }

  private async runStream(el: StreamElement, onStreamOpen: () => void): Promise<void> {
    const { attrs } = el;
    if (attrs.bidirectional !== "true") this.notes.push("<Stream> without bidirectional=\"true\": Parley's audio would not be played");
    const contentType = attrs.contentType ?? "audio/x-l16;rate=8000";
    const [encoding, rate] = contentType.split(";rate=");
    let stream: PlivoStream;
    try {
      stream = await PlivoStream.open({
        streamUrl: el.url,
        callUuid: this.callUuid,
        accountId: this.init.authId,
        authToken: this.init.authToken,
        ...(attrs.extraHeaders ? { extraHeaders: attrs.extraHeaders } : {}),
        mediaFormat: { encoding: encoding!, sampleRate: Number(rate ?? 8000) },
      });
    } catch (err) {
      this.notes.push(`stream to ${el.url} failed: ${(err as Error).message}`);
      if (attrs.statusCallbackUrl) await this.request("stream-status", attrs.statusCallbackUrl, this.params({ Event: "DroppedStream", StreamID: "" }));
      return;
    }
    this.streams.push(stream);
    onStreamOpen();
    if (attrs.statusCallbackUrl) void this.request("stream-status", attrs.statusCallbackUrl, this.params({ Event: "StartStream", StreamID: stream.streamId }));
    if (attrs.keepCallAlive !== "true") {
      // "Subsequent XML elements execute only after the stream disconnects" holds only with keepCallAlive: without
      // it the XML moves on at once, and with nothing after the stream the call ends.
      this.notes.push('<Stream> without keepCallAlive="true": the XML moved on and the call ended');
      return;
    }
    await stream.closed;
    if (attrs.statusCallbackUrl && !this.ending) void this.request("stream-status", attrs.statusCallbackUrl, this.params({ Event: "StopStream", StreamID: stream.streamId }));
  }

  private async request(kind: PlivoRequestRecord["kind"], url: string, params: Record<string, string>): Promise<PlivoRequestRecord> {
    const rec: PlivoRequestRecord = { kind, url, params, at: now(), httpStatus: null, body: null };
    this.requests.push(rec);
    try {
      const res = await postSigned(this.init.authToken, url, params);
      rec.httpStatus = res.status;
      rec.body = res.text;
    } catch (err) {
      rec.error = (err as Error).message;
    }
    return rec;
  }
}

export interface PlivoStandInOptions {
  authId: string;
  authToken: string;
  /** How long an outbound call rings. Default 200 ms. */
  ringMs?: number;
}

export class PlivoStandIn {
  /** Origin of the REST API: Parley's PLIVO_API_URL. */
  readonly url: string;
  ringMs: number;
  /** What the next outbound call does; back to "answer" after one use. */
  nextOutcome: PlivoOutcome = "answer";
  readonly calls: PlivoStandInCall[] = [];
  readonly requests: PlivoRestRecord[] = [];
  /** The account's numbers (digits, no `+`) and the answer URL of the Application each is linked to (null: none). */
  readonly numbers = new Map<string, string | null>();

  private constructor(
    private readonly server: Server,
    readonly authId: string,
    readonly authToken: string,
    ringMs: number,
  ) {
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    this.ringMs = ringMs;
  }

  static async start(opts: PlivoStandInOptions): Promise<PlivoStandIn> {
    let standIn: PlivoStandIn | null = null;
    const server = createServer((req, res) => {
      standIn!.handle(req, res).catch((err: Error) => {
        if (!res.headersSent) res.writeHead(500, { "content-type": "application/json" });
        res.end(JSON.stringify({ api_id: randomUUID(), error: `stand-in error: ${err.message}` }));
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", resolve);
    });
    standIn = new PlivoStandIn(server, opts.authId, opts.authToken, opts.ringMs ?? 200);
    return standIn;
  }

  /** The call with this CallUUID or request_uuid. */
  call(id: string): PlivoStandInCall {
    const c = this.calls.find((x) => x.callUuid === id || x.requestUuid === id);
    if (!c) throw new Error(`the Plivo stand-in has no call ${id}`);
    return c;
  }

  /** A call comes in on a number whose Application has this answer URL (and hangup URL). */
  async inbound(opts: { answerUrl: string; hangupUrl?: string; from: string; to: string }): Promise<PlivoStandInCall> {
    const call = new PlivoStandInCall({ direction: "inbound", authId: this.authId, authToken: this.authToken, ...opts });
    this.calls.push(call);
    await call.runInbound();
    return call;
  }

  async close(): Promise<void> {
    for (const c of this.calls) c.abort();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString("utf8");
    const path = new URL(req.url ?? "/", this.url).pathname;
    const rec: PlivoRestRecord = { at: now(), method: req.method ?? "GET", path, json: null, authorization: req.headers.authorization, status: 0 };
    this.requests.push(rec);
    const reply = (status: number, json?: unknown) => {
      rec.status = status;
      res.writeHead(status, json === undefined ? {} : { "content-type": "application/json" });
      res.end(json === undefined ? undefined : JSON.stringify(json));
    };
    const error = (status: number, message: string) => reply(status, { api_id: randomUUID(), error: message });
    const m = /^\/v1\/Account\/([^/]+)\/(?:(Call|Request|Number|Application)\/(?:([^/]+)\/)?)?$/.exec(path);
    const basic = /^Basic\s+(.+)$/i.exec(req.headers.authorization ?? "");
    if (!basic || Buffer.from(basic[1]!, "base64").toString() !== `${this.authId}:${this.authToken}`) return error(401, "Authentication credentials invalid");
    if (!m || m[1] !== this.authId) return error(404, "not found");
    const [, , resource, id] = m;
    if (!resource && req.method === "GET") return reply(200, { account_type: "standard", auth_id: this.authId, name: "stand-in", resource_uri: `/v1/Account/${this.authId}/` });
    // A number links to an Application by its resource URI; the Application's id here is the number's digits.
    if (resource === "Number" && id && req.method === "GET") {
      if (!this.numbers.has(id)) return error(404, "number not found");
      const linked = this.numbers.get(id) !== null;
      return reply(200, { number: id, alias: null, application: linked ? `/v1/Account/${this.authId}/Application/${id}/` : null, resource_uri: path });
    }
    if (resource === "Application" && id && req.method === "GET") {
      const url = this.numbers.get(id);
      if (!url) return error(404, "application not found");
      return reply(200, { app_id: id, app_name: "parley", answer_url: url, answer_method: "POST", resource_uri: path });
    }
    if (resource === "Call" && !id && req.method === "POST") {
      try {
        rec.json = JSON.parse(text);
      } catch {
        return error(400, "invalid JSON body");
      }
      return this.placeCall(rec.json!, reply, error);
    }
    if (id && req.method === "DELETE") {
      const call = this.calls.find((c) => (resource === "Call" ? c.callUuid === id && c.answeredAt !== null : c.requestUuid === id));
      if (!call || call.isOver) return error(404, "call not found");
      if (resource === "Request" && call.answeredAt !== null) return error(404, "request already answered: hang up the Call");
      void call.end("completed", "API Request");
      return reply(204);
    }
    return error(405, "method not allowed");
  }

  private placeCall(body: Record<string, unknown>, reply: (s: number, j?: unknown) => void, error: (s: number, m: string) => void): void {
    const str = (k: string) => (typeof body[k] === "string" ? (body[k] as string) : undefined);
    const [from, to, answerUrl] = [str("from"), str("to"), str("answer_url")];
    if (!from || !to || !answerUrl) return error(400, "from, to and answer_url are required");
    if ((str("answer_method") ?? "POST") !== "POST") return error(400, "the stand-in requests answer_url with POST only");
    const call = new PlivoStandInCall({
      direction: "outbound",
      from,
      to,
      authId: this.authId,
      authToken: this.authToken,
      answerUrl,
      ...(str("hangup_url") ? { hangupUrl: str("hangup_url")! } : {}),
      ...(str("ring_url") ? { ringUrl: str("ring_url")! } : {}),
    });
    this.calls.push(call);
    const outcome = this.nextOutcome;
    this.nextOutcome = "answer";
    void call.runOutbound(outcome, this.ringMs).catch((err: Error) => call.notes.push(`stand-in error: ${err.message}`));
    reply(201, { api_id: randomUUID(), message: "call fired", request_uuid: call.requestUuid });
  }
}
