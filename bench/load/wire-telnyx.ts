import { createPrivateKey, randomUUID, sign } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import WebSocket from "ws";
import { callerNumber, CALLED_NUMBER, openSocket, parseJson, sendText, twilioLike, type CallDialect, type Outgoing, type Wire } from "./wire.ts";

/**
 * Telnyx Call Control v2 for the load generator (carriers.md part A; the same wire as test/helpers/telnyx-standin.ts,
 * built for hundreds of calls): the generator is Telnyx's REST API (`/v2/calls/{id}/actions/*`, Bearer key) and its
 * webhook sender (Ed25519 over `"{timestamp}|{body}"`). A call: `call.initiated` -> Parley's `answer` command with the
 * stream settings -> `call.answered`, the stream opens (connected + start with the echoed `client_state`) ->
 * `streaming.started`. The caller hangs up with `stop` and close, then `streaming.stopped` and `call.hangup`.
 */
export interface TelnyxWireOptions {
  baseUrl: string;
  /** The account's Ed25519 private key, PKCS#8 DER in base64 (Parley holds the public half as TELNYX_PUBLIC_KEY). */
  privateKey: string;
  /** TELNYX_API_KEY as Parley sends it. */
  apiKey: string;
  /** Where the REST API listens (Parley's TELNYX_API_URL is http://127.0.0.1:<port>/v2). */
  restPort: number;
}

export async function telnyxWire(o: TelnyxWireOptions): Promise<Wire> {
  const key = createPrivateKey({ key: Buffer.from(o.privateKey, "base64"), format: "der", type: "pkcs8" });
  const calls = new Map<string, TelnyxDialect>();
  const server = createServer((req, res) => void handle(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.restPort, "127.0.0.1", resolve);
  });
  const webhookUrl = `${o.baseUrl}/telnyx/webhook`;

  const webhook = async (call: TelnyxDialect, eventType: string, extra: Record<string, unknown>): Promise<void> => {
    const payload = { call_control_id: call.callControlId, call_leg_id: call.legId, call_session_id: call.sessionId, connection_id: "2811212257810187875", from: call.from, to: CALLED_NUMBER, client_state: call.clientState, ...extra };
    const body = JSON.stringify({ data: { record_type: "event", event_type: eventType, id: randomUUID(), occurred_at: new Date().toISOString(), payload }, meta: { attempt: 1, delivered_to: webhookUrl } });
    const at = String(Math.floor(Date.now() / 1000));
    const signature = sign(null, Buffer.from(`${at}|${body}`), key).toString("base64");
    const res = await fetch(webhookUrl, { method: "POST", headers: { "content-type": "application/json", "telnyx-signature-ed25519": signature, "telnyx-timestamp": at }, body, signal: AbortSignal.timeout(15_000) });
    await res.arrayBuffer();
    if (!res.ok) throw new Error(`${eventType} webhook answered ${res.status}`);
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const reply = (status: number, body: unknown): void => void res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
    if (req.headers.authorization !== `Bearer ${o.apiKey}`) return reply(401, { errors: [{ code: "10009", title: "Authentication failed" }] });
    const m = /^\/v2\/calls\/([^/]+)\/actions\/([a-z_]+)$/.exec(new URL(req.url ?? "/", "http://x").pathname);
    const call = m ? calls.get(decodeURIComponent(m[1]!)) : undefined;
    if (!m || !call) return reply(404, { errors: [{ code: "10005", title: "Resource not found" }] });
    if (call.ended) return reply(422, { errors: [{ code: "90018", title: "Call has already ended" }] });
    const body = (parseJson(Buffer.concat(chunks).toString()) ?? {}) as Record<string, unknown>;
    if (typeof body.client_state === "string") call.clientState = body.client_state;
    reply(200, { data: { result: "ok" } });
    call.command(m[2]!, body);
  }

  return {
    name: "telnyx",
    dialect: (index) => {
      const d = new TelnyxDialect(index, webhook, () => calls.delete(d.callControlId));
      calls.set(d.callControlId, d);
      return d;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

type Webhook = (call: TelnyxDialect, eventType: string, extra: Record<string, unknown>) => Promise<void>;

const TX_A = '{"event":"media","sequence_number":"';
const TX_B = '","stream_id":"';
const TX_C = '","media":{"track":"inbound","chunk":"';
const TX_D = '","timestamp":"';
const TX_E = '","payload":"';
const TX_F = '"}}';

class TelnyxDialect implements CallDialect {
  readonly callControlId = `v3:${randomUUID().replace(/-/g, "")}${randomUUID().slice(0, 8)}`;
  readonly legId = randomUUID();
  readonly sessionId = randomUUID();
  readonly streamId = randomUUID();
  readonly from: string;
  readonly mediaPrefix = Buffer.from('{"event":"media"');
  readonly clearEchoesMarks = true;
  clientState: string | null = null;
  ended = false;
  callId: string;
  private answered: ((body: Record<string, unknown>) => void) | null = null;
  private ws: WebSocket | null = null;
  private readonly prefix: string;

  constructor(
    index: number,
    private readonly webhook: Webhook,
    private readonly forget: () => void,
  ) {
    this.from = callerNumber(index);
    this.callId = this.callControlId;
    this.prefix = TX_B + this.streamId + TX_C;
  }

  async connect(timeoutMs: number): Promise<WebSocket> {
    const answer = new Promise<Record<string, unknown>>((resolve, reject) => {
      this.answered = resolve;
      setTimeout(() => reject(new Error(`no answer command within ${timeoutMs} ms of call.initiated`)), timeoutMs).unref();
    });
    try {
      await this.webhook(this, "call.initiated", { direction: "incoming", state: "parked" });
      const body = await answer;
      const streamUrl = body.stream_url;
      if (typeof streamUrl !== "string") throw new Error(`answer without stream_url: ${JSON.stringify(body).slice(0, 200)}`);
      if (body.stream_bidirectional_mode !== "rtp" || body.stream_bidirectional_codec !== "PCMU") throw new Error(`answer without a bidirectional PCMU stream: ${JSON.stringify(body).slice(0, 200)}`);
      await this.webhook(this, "call.answered", { state: "answered" });
      // Parley's own id rides in client_state (src/carriers/telnyx/client-state.ts); its API knows the call by it.
      const parley = this.clientState ? (parseJson(Buffer.from(this.clientState, "base64").toString()) as { parley?: unknown } | null) : null;
      if (typeof parley?.parley === "string") this.callId = parley.parley;
      const headers: Record<string, string> = typeof body.stream_auth_token === "string" ? { "x-telnyx-streaming-auth-token": body.stream_auth_token } : {};
      const ws = await openSocket(streamUrl, headers, timeoutMs);
      this.ws = ws;
      sendText(ws, '{"event":"connected","version":"1.0.0"}');
      const start = { user_id: "3E6F995F-85F7-4705-9741-53B116D28237", call_control_id: this.callControlId, call_session_id: this.sessionId, from: this.from, to: CALLED_NUMBER, ...(this.clientState ? { client_state: this.clientState } : {}), media_format: { encoding: "PCMU", sample_rate: 8000, channels: 1 } };
      sendText(ws, JSON.stringify({ event: "start", sequence_number: "1", stream_id: this.streamId, start }));
      void this.webhook(this, "streaming.started", { stream_url: streamUrl }).catch(() => {});
      return ws;
    } catch (err) {
      this.end();
      throw err;
    }
  }

  /** A REST command from Parley for this call (acknowledged already). */
  command(action: string, body: Record<string, unknown>): void {
    if (action === "answer") this.answered?.(body);
    else if (action === "hangup" || action === "reject") {
      // Parley ends the call: Telnyx closes the stream and reports the hang-up.
      this.ws?.close(1000);
      this.end();
      void this.webhook(this, "call.hangup", { state: "hangup", hangup_cause: action === "reject" ? "call_rejected" : "normal_clearing", hangup_source: "callee" }).catch(() => {});
    }
  }

  media(seq: number, chunk: number, b64: string): string {
    return TX_A + seq + this.prefix + chunk + TX_D + chunk * 20 + TX_E + b64 + TX_F;
  }

  mediaObject(seq: number, chunk: number, b64: string): unknown {
    return { event: "media", sequence_number: String(seq), stream_id: this.streamId, media: { track: "inbound", chunk: String(chunk), timestamp: String(chunk * 20), payload: b64 } };
  }

  /** Telnyx's outbound frames name no stream (a Twilio `streamSid` in one would be a bug). */
  parse(text: string): Outgoing {
    const msg = parseJson(text);
    if (!msg) return { kind: "bad", why: `not JSON: ${text.slice(0, 80)}` };
    if ("streamSid" in msg) return { kind: "bad", why: `Twilio's streamSid in a Telnyx frame: ${text.slice(0, 80)}` };
    return twilioLike(msg);
  }

  markEcho(seq: number, name: string): string {
    return `{"event":"mark","sequence_number":"${seq}","stream_id":"${this.streamId}","mark":{"name":${JSON.stringify(name)}}}`;
  }

  clearReply(): null {
    return null;
  }

  hangUp(ws: WebSocket, seq: number): void {
    sendText(ws, `{"event":"stop","sequence_number":"${seq}","stream_id":"${this.streamId}","stop":{"call_control_id":"${this.callControlId}"}}`);
    ws.close(1000);
    if (this.ended) return;
    this.end();
    void this.webhook(this, "streaming.stopped", {})
      .then(() => this.webhook(this, "call.hangup", { state: "hangup", hangup_cause: "normal_clearing", hangup_source: "caller", sip_hangup_cause: "200" }))
      .catch(() => {});
  }

  private end(): void {
    this.ended = true;
    // Kept for a while so a late command gets Telnyx's 422 "already ended", then forgotten.
    setTimeout(this.forget, 30_000).unref();
  }
}

