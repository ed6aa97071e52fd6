import { generateKeyPairSync, randomBytes, randomUUID, sign, type KeyObject } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { TwilioCall } from "./twilio-client.ts";

/**
 * A local stand-in for Telnyx (Call Control v2), toward Parley, following the documented wire formats
 * (../shared/reference/carriers.md, part A):
 *
 * - its REST API under `/v2`: `POST /calls` (dial), `POST /calls/{id}/actions/{answer,reject,streaming_start,hangup}`,
 *   Bearer-authenticated, `{"data":{"result":"ok"}}`, 422 with code 90018 for a call that has ended;
 * - webhooks signed with a real Ed25519 key over `"{telnyx-timestamp}|{raw body}"`, in the `{data:{event_type, id,
 *   payload}}` envelope, `client_state` echoed from the last command that set it;
 * - the media stream it opens when a call is answered with stream settings (`TelnyxCall`: Telnyx's frames, on the
 *   shared real-time clocks and playout model of `TwilioCall`: marks echoed once played, `clear` honoured);
 * - a dropped stream reported as `streaming.stopped`, after which `streaming_start` opens a new one.
 */

/** A Telnyx media-stream peer: TwilioCall's clocks and playout, Telnyx's frames. */
export class TelnyxCall extends TwilioCall {
  readonly streamId = randomUUID();
  /** Protocol errors seen in what Parley sent (a frame Telnyx would reject or ignore). */
  readonly violations: string[] = [];

  constructor(
    readonly callControlId: string,
    private readonly start: { clientState?: string; from: string; to: string; authToken?: string },
  ) {
    super({ callSid: callControlId });
  }

  protected override upgradeHeaders(): Record<string, string> {
    return this.start.authToken ? { "x-telnyx-streaming-auth-token": this.start.authToken } : {};
  }

  protected override handshake(): unknown[] {
    return [
      { event: "connected", version: "1.0.0" },
      {
        event: "start",
        sequence_number: String(this.seq++),
        stream_id: this.streamId,
        start: {
          user_id: "3E6F995F-85F7-4705-9741-53B116D28237",
          call_control_id: this.callControlId,
          call_session_id: randomUUID(),
          from: this.start.from,
          to: this.start.to,
          ...(this.start.clientState ? { client_state: this.start.clientState } : {}),
          media_format: { encoding: "PCMU", sample_rate: 8000, channels: 1 },
        },
      },
    ];
  }

  protected override mediaMessage(payload: string, chunk: number): unknown {
    return { event: "media", sequence_number: String(this.seq++), stream_id: this.streamId, media: { track: "inbound", chunk: String(chunk), timestamp: String(chunk * 20), payload } };
  }

  protected override markEchoMessage(name: string): unknown {
    return { event: "mark", sequence_number: String(this.seq++), stream_id: this.streamId, mark: { name } };
  }

  protected override dtmfMessage(digit: string): unknown {
    return { event: "dtmf", sequence_number: String(this.seq++), stream_id: this.streamId, dtmf: { digit } };
  }

  protected override stopMessage(): unknown {
    return { event: "stop", sequence_number: String(this.seq++), stream_id: this.streamId, stop: { call_control_id: this.callControlId } };
  }

  /** Telnyx's outbound frames name no stream, and media must carry at least 20 ms (160 bytes of PCMU). */
  protected override decode(text: string): { event: "media"; payload: string } | { event: "mark"; name: string } | { event: "clear" } {
    const msg = JSON.parse(text);
    if ("streamSid" in msg) this.violations.push(`Twilio's streamSid in a Telnyx frame: ${text.slice(0, 80)}`);
    if (msg.event === "media") {
      if (Buffer.from(msg.media.payload, "base64").length < 160) this.violations.push("media frame under 20 ms");
      return { event: "media", payload: msg.media.payload };
    }
    if (msg.event === "mark" && typeof msg.mark?.name === "string") return { event: "mark", name: msg.mark.name };
    if (msg.event === "clear") return { event: "clear" };
    throw new Error(`unexpected message from Parley: ${text}`);
  }

  /** Open the stream Telnyx connects when a call is answered (or `streaming_start` runs). */
  async open(streamUrl: string): Promise<void> {
    await this.openSocket(streamUrl, {});
  }
}

export interface WebhookRecord {
  eventType: string;
  body: string;
  status: number | null;
}

export interface StandInCall {
  callControlId: string;
  direction: "incoming" | "outgoing";
  from: string;
  to: string;
  webhookUrl: string;
  clientState?: string;
  /** Streams opened for this call, in order. */
  streams: TelnyxCall[];
  commands: { action: string; body: Record<string, unknown> }[];
  webhooks: WebhookRecord[];
  ended: boolean;
  hangupCause?: string;
}

const TELNYX_ID = () => `v3:${randomBytes(24).toString("base64url")}`;

export class TelnyxStandIn {
  readonly apiKey = `KEY${randomBytes(12).toString("hex")}`;
  readonly publicKey: string;
  readonly calls = new Map<string, StandInCall>();
  /** What went wrong on the stand-in's side after a command was acknowledged (a test asserts it stays empty). */
  readonly errors: string[] = [];
  private readonly privateKey: KeyObject;
  private streamWaiters: (() => void)[] = [];

  private constructor(
    private readonly server: Server,
    readonly url: string,
    keys: { publicKey: KeyObject; privateKey: KeyObject },
    private readonly ringMs: number,
  ) {
    this.privateKey = keys.privateKey;
    // The portal shows the raw 32-byte key, base64: the JWK's `x`, re-encoded.
    this.publicKey = Buffer.from(keys.publicKey.export({ format: "jwk" }).x!, "base64url").toString("base64");
  }

  static async start(opts: { ringMs?: number } = {}): Promise<TelnyxStandIn> {
    const keys = generateKeyPairSync("ed25519");
    let self: TelnyxStandIn | null = null;
    const server = createServer((req, res) => void self!.handle(req, res));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    self = new TelnyxStandIn(server, `http://127.0.0.1:${port}/v2`, keys, opts.ringMs ?? 200);
    return self;
  }

  async close(): Promise<void> {
    for (const c of this.calls.values()) for (const s of c.streams) s.drop();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  /** Sign as Telnyx does: Ed25519 over `"{timestamp}|{body}"`, base64. `at` (unix seconds) defaults to now. */
  signature(body: string, at = Math.floor(Date.now() / 1000)): { "telnyx-signature-ed25519": string; "telnyx-timestamp": string } {
    return { "telnyx-signature-ed25519": sign(null, Buffer.from(`${at}|${body}`), this.privateKey).toString("base64"), "telnyx-timestamp": String(at) };
  }

  /** A caller dials the number: `call.initiated` (incoming) to Parley's webhook. Resolves with the call. */
  async inbound(o: { webhookUrl: string; from: string; to: string }): Promise<StandInCall> {
    const call = this.newCall("incoming", o.from, o.to, o.webhookUrl);
    await this.webhook(call, "call.initiated", { direction: "incoming", state: "parked" });
    return call;
  }

  /** A call Telnyx knows, with no event sent yet (tests send their own, e.g. forged ones). */
  prepare(o: { webhookUrl: string; from: string; to: string }): StandInCall {
    return this.newCall("incoming", o.from, o.to, o.webhookUrl);
  }

  /** Resolve once `call` has `n` streams. */
  async waitForStream(call: StandInCall, n = 1, timeoutMs = 15_000): Promise<TelnyxCall> {
    const until = Date.now() + timeoutMs;
    while (call.streams.length < n) {
      if (Date.now() > until) throw new Error(`timed out waiting for stream ${n} of ${call.callControlId}`);
      await new Promise<void>((r) => {
        this.streamWaiters.push(r);
        setTimeout(r, 50);
      });
    }
    return call.streams[n - 1]!;
  }

  /** The caller hangs up: `stop` and close on the stream, then `streaming.stopped` and `call.hangup`. */
  async hangUp(call: StandInCall): Promise<void> {
    await call.streams.at(-1)?.hangUp();
    await this.end(call, "normal_clearing", "caller");
  }

  /** The stream's connection drops while the call stays up: Telnyx reports `streaming.stopped`. */
  async dropStream(call: StandInCall): Promise<void> {
    call.streams.at(-1)?.drop();
    await this.webhook(call, "streaming.stopped", {});
  }

  /** Send an event for `call` to its webhook URL, signed (or as `sign` says: forged tests). */
  async webhook(call: StandInCall, eventType: string, extra: Record<string, unknown>, sign?: (body: string) => Record<string, string>): Promise<WebhookRecord> {
    const payload = { call_control_id: call.callControlId, call_leg_id: randomUUID(), call_session_id: randomUUID(), connection_id: "2811212257810187875", from: call.from, to: call.to, client_state: call.clientState ?? null, ...extra };
    const body = JSON.stringify({ data: { record_type: "event", event_type: eventType, id: randomUUID(), occurred_at: new Date().toISOString(), payload }, meta: { attempt: 1, delivered_to: call.webhookUrl } });
    const rec: WebhookRecord = { eventType, body, status: null };
    call.webhooks.push(rec);
    try {
      const res = await fetch(call.webhookUrl, { method: "POST", headers: { "content-type": "application/json", ...(sign ? sign(body) : this.signature(body)) }, body });
      rec.status = res.status;
      await res.arrayBuffer();
    } catch {
      rec.status = null;
    }
    return rec;
  }

  private newCall(direction: "incoming" | "outgoing", from: string, to: string, webhookUrl: string): StandInCall {
    const call: StandInCall = { callControlId: TELNYX_ID(), direction, from, to, webhookUrl, streams: [], commands: [], webhooks: [], ended: false };
    this.calls.set(call.callControlId, call);
    return call;
  }

  private async openStream(call: StandInCall, body: Record<string, unknown>): Promise<void> {
    if (body.stream_bidirectional_mode !== "rtp" || body.stream_bidirectional_codec !== "PCMU" || body.stream_codec !== "PCMU") throw new Error(`stream settings Parley must send: ${JSON.stringify(body)}`);
    const stream = new TelnyxCall(call.callControlId, {
      from: call.from,
      to: call.to,
      ...(call.clientState ? { clientState: call.clientState } : {}),
      ...(typeof body.stream_auth_token === "string" ? { authToken: body.stream_auth_token } : {}),
    });
    await stream.open(body.stream_url as string);
    call.streams.push(stream);
    for (const w of this.streamWaiters.splice(0)) w();
    await this.webhook(call, "streaming.started", { stream_url: body.stream_url });
  }

  private async end(call: StandInCall, cause: string, source: string): Promise<void> {
    if (call.ended) return;
    call.ended = true;
    call.hangupCause = cause;
    for (const s of call.streams) if (s.isOpen) await s.hangUp();
    await this.webhook(call, "streaming.stopped", {});
    await this.webhook(call, "call.hangup", { state: "hangup", hangup_cause: cause, hangup_source: source, sip_hangup_cause: "200" });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (req.headers.authorization !== `Bearer ${this.apiKey}`) return reply(401, { errors: [{ code: "10009", title: "Authentication failed" }] });
    let body: Record<string, unknown>;
    try {
      body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : {};
    } catch {
      return reply(400, { errors: [{ code: "10015", title: "Bad Request" }] });
    }
    const path = new URL(req.url ?? "/", "http://x").pathname;
    if (req.method === "POST" && path === "/v2/calls") {
      const missing = ["connection_id", "to", "from", "webhook_url", "stream_url"].filter((k) => typeof body[k] !== "string");
      if (missing.length) return reply(422, { errors: [{ code: "10032", title: "Invalid parameters", detail: `missing ${missing.join(", ")}` }] });
      return reply(200, { data: this.dial(body) });
    }
    const m = /^\/v2\/calls\/([^/]+)\/actions\/([a-z_]+)$/.exec(path);
    const call = m ? this.calls.get(decodeURIComponent(m[1]!)) : undefined;
    if (!m || !call) return reply(404, { errors: [{ code: "10005", title: "Resource not found" }] });
    const action = m[2]!;
    if (call.ended) return reply(422, { errors: [{ code: "90018", title: "Call has already ended" }] });
    call.commands.push({ action, body });
    if (typeof body.client_state === "string") call.clientState = body.client_state;
    reply(200, { data: { result: "ok" } });
    // What Telnyx does after acknowledging the command (a failure is kept for the test to see, not thrown).
    try {
      if (action === "answer") {
        await this.webhook(call, "call.answered", { state: "answered" });
        if (body.stream_url) await this.openStream(call, body);
      } else if (action === "streaming_start") await this.openStream(call, body);
      else if (action === "hangup") await this.end(call, "normal_clearing", "callee");
      else if (action === "reject") await this.end(call, "call_rejected", "callee");
    } catch (err) {
      this.errors.push(`${action}: ${(err as Error).message}`);
    }
  }

  /** `POST /calls`: the call rings for `ringMs`, is answered, and its stream opens as it answers. */
  private dial(body: Record<string, unknown>): Record<string, unknown> {
    const call = this.newCall("outgoing", body.from as string, body.to as string, body.webhook_url as string);
    if (typeof body.client_state === "string") call.clientState = body.client_state;
    call.commands.push({ action: "dial", body });
    setTimeout(async () => {
      await this.webhook(call, "call.initiated", { direction: "outgoing", state: "bridging" });
      await new Promise((r) => setTimeout(r, this.ringMs));
      if (call.ended) return;
      await this.webhook(call, "call.answered", { state: "answered" });
      await this.openStream(call, body).catch((err: Error) => this.errors.push(`dial stream: ${err.message}`));
    }, 0);
    return { call_control_id: call.callControlId, call_leg_id: randomUUID(), call_session_id: randomUUID(), is_alive: false, record_type: "call" };
  }
}
