import { randomUUID } from "node:crypto";
import { TelnyxWebhook } from "telnyx/lib/webhooks";
import type { Carrier, CarrierEvent, CarrierReply, PlaceRequest, RawRequest, Refused, StreamAdmitted, StreamTicket, Verified } from "../carrier.ts";
import { callIdOfClientState, clientStateOf } from "./client-state.ts";
import { telnyxCodec } from "./codec.ts";
import type { TelnyxRest } from "./rest.ts";
import { telnyxStatus } from "./status.ts";

/** One webhook URL for every Call Control event, and the stream below its own path (the token is the last segment). */
export const TELNYX_PATHS = { webhook: "/telnyx/webhook", stream: "/telnyx/stream" } as const;

export interface TelnyxCarrierOptions {
  rest: TelnyxRest;
  /** TELNYX_PUBLIC_KEY: the account's Ed25519 public key (base64 of 32 bytes). */
  publicKey: string;
  /** TELNYX_CONNECTION_ID: the Call Control application outbound calls are placed on (none: no outbound calls). */
  connectionId?: string;  /** TELNYX_FROM_NUMBER. */
  fromNumber?: string;
}

const JSON_TYPE = "application/json";
const command = (name: string, body: Record<string, unknown>): CarrierReply => ({ contentType: JSON_TYPE, body: JSON.stringify(body), via: "command", command: name });
const obj = (v: unknown): v is Record<string, unknown> => !!v && typeof v === "object" && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);

/**
 * Telnyx Call Control v2. Its webhook is a notification only (its response body is ignored): Parley answers 200 and
 * acts by REST commands, `answer` with a bidirectional stream (PCMU at 8 kHz, `stream_bidirectional_mode: "rtp"`, or
 * Telnyx silently drops what we send), `reject`, `streaming_start` to resume a dropped stream, `hangup`. Webhooks are
 * signed with Ed25519 over `"{telnyx-timestamp}|{raw body}"`, checked with the official package's `TelnyxWebhook`
 * (which also bounds the clock skew to 300 s). The stream's upgrade is not signed by Telnyx, so its URL carries the
 * single-use token (`/telnyx/stream/<token>`) and the upgrade is refused unless the token is live.
 *
 * Telnyx's `call_control_id` (`v3:…`) is not safe as a file name: Parley mints its own id and puts it in
 * `client_state`, which Telnyx echoes on every event and in the stream's `start`.
 */
export class TelnyxCarrier implements Carrier {
  readonly name = "telnyx" as const;
  readonly callIds = "parley" as const;
  readonly codec = telnyxCodec;
  readonly paths = TELNYX_PATHS;
  readonly callerId: { number?: string; setting: string };
  private readonly verifier: TelnyxWebhook;
  readonly place?: (req: PlaceRequest) => Promise<{ carrierCallId: string }>;

  constructor(private readonly opts: TelnyxCarrierOptions) {
    this.verifier = new TelnyxWebhook(opts.publicKey.trim());
    this.callerId = { ...(opts.fromNumber ? { number: opts.fromNumber } : {}), setting: "TELNYX_FROM_NUMBER" };
    const connectionId = opts.connectionId;
    if (connectionId)
      this.place = async (req) => {
        const carrierCallId = await opts.rest.dial({
          connection_id: connectionId,
          to: req.to,
          from: req.from,
          timeout_secs: req.timeoutSeconds,
          webhook_url: new URL(TELNYX_PATHS.webhook, req.stream.webhookOrigin).toString(),
          webhook_url_method: "POST",
          command_id: randomUUID(),
          ...this.streamSettings(req.stream, true),
        });
        return { carrierCallId };
      };
  }

  async verifyWebhook(req: RawRequest): Promise<Verified | Refused> {
    const headers: Record<string, string> = {};
    for (const name of ["telnyx-signature-ed25519", "telnyx-timestamp"]) {
      const v = req.headers[name];
      const one = Array.isArray(v) ? v[0] : v;
      if (one !== undefined) headers[name] = one;
    }
    try {
      await this.verifier.verify(req.body, headers);
    } catch (err) {
      return { ok: false, status: 403, reason: `Telnyx signature refused: ${(err as Error).message}` };
    }
    // Telnyx may deliver one event more than once (and re-signs each delivery): `data.id` names the event.
    const id = eventOf(req.body)?.id;
    return { ok: true, replayKey: typeof id === "string" ? `telnyx:${id}` : `telnyx-sig:${headers["telnyx-signature-ed25519"]}` };
  }

  verifyStream(req: RawRequest): StreamAdmitted | Refused {
    const url = new URL(req.url);
    const fromPath = url.pathname.startsWith(`${TELNYX_PATHS.stream}/`) ? decodeURIComponent(url.pathname.slice(TELNYX_PATHS.stream.length + 1)) : "";
    const h = req.headers["x-telnyx-streaming-auth-token"];
    const fromHeader = (Array.isArray(h) ? h[0] : h)?.replace(/^Bearer\s+/i, "");
    const token = fromPath || fromHeader;
    if (!token) return { ok: false, status: 403, reason: "no stream token in the URL or x-telnyx-streaming-auth-token" };
    if (fromPath && fromHeader && fromPath !== fromHeader) return { ok: false, status: 403, reason: "the stream token in the URL and the header differ" };
    return { ok: true, token, checkToken: true };
  }

  event(req: RawRequest): CarrierEvent {
    const data = eventOf(req.body);
    if (!data || typeof data.event_type !== "string" || !obj(data.payload)) return { kind: "invalid", reason: "a Telnyx webhook needs data.event_type and data.payload" };
    const p = data.payload;
    const carrierCallId = str(p.call_control_id);
    if (!carrierCallId) return { kind: "ignored", why: `${data.event_type} names no call` };
    const callId = callIdOfClientState(p.client_state);
    const type = data.event_type;
    if (type === "call.initiated" && p.direction === "incoming" && !callId) return { kind: "incoming", carrierCallId, from: str(p.from) ?? "", to: str(p.to) ?? "" };
    if (type === "streaming.stopped" || type === "streaming.failed") return { kind: "stream-ended", carrierCallId, ...(callId ? { callId } : {}) };
    const status = telnyxStatus(type, p);
    if (status)
      return {
        kind: "status",
        carrierCallId,
        ...(callId ? { callId } : {}),
        status,
        carrierStatus: type === "call.hangup" ? `${type}:${str(p.hangup_cause) ?? "unknown"}` : type,
      };
    // `call.dtmf.received` too: the stream carries the same digit, and that copy is the one acted on.
    return { kind: "ignored", why: `${type} needs nothing from Parley` };
  }

  /** `actions/answer` with the stream settings: Telnyx connects the stream as it answers. */
  answer(ticket: StreamTicket): CarrierReply {
    return command("answer", { ...this.streamSettings(ticket, false), webhook_url: new URL(TELNYX_PATHS.webhook, ticket.webhookOrigin).toString(), command_id: randomUUID() });
  }

  reject(reason: "busy" | "rejected"): CarrierReply {
    return command("reject", { cause: reason === "busy" ? "USER_BUSY" : "CALL_REJECTED", command_id: randomUUID() });
  }

  /**
   * The stream ended while the call is up: `streaming_start` opens a new one on the same call (Telnyx has no
   * `<Connect action>`, but lets a stream start at any time). A call that is over is hung up.
   */
  resume(ticket: StreamTicket | null): CarrierReply {
    return ticket ? command("streaming_start", { ...this.streamSettings(ticket, true), command_id: randomUUID() }) : command("hangup", { command_id: randomUUID() });
  }

  async command(carrierCallId: string, reply: CarrierReply): Promise<void> {
    const body = JSON.parse(reply.body) as Record<string, unknown>;
    const action = reply.command === "streaming_start" ? "startStreaming" : reply.command;
    if (action !== "answer" && action !== "reject" && action !== "startStreaming" && action !== "hangup") throw new Error(`unknown Telnyx command ${reply.command}`);
    await this.opts.rest.action(carrierCallId, action, body);
  }

  async hangUp(carrierCallId: string): Promise<void> {
    await this.opts.rest.action(carrierCallId, "hangup", { command_id: randomUUID() });
  }

  /**
   * One bidirectional stream of PCMU at 8 kHz: Telnyx sends the caller's audio (`inbound_track` only: our own would
   * come back as barge-in) and plays what we send (`rtp` mode). `answer` takes no auth token or sampling rate (the
   * SDK's types say so), hence the token in the URL; `dial` and `streaming_start` take both.
   */
  private streamSettings(ticket: StreamTicket, full: boolean): Record<string, unknown> {
    const url = new URL(`${TELNYX_PATHS.stream}/${encodeURIComponent(ticket.token)}`, ticket.streamOrigin).toString();
    return {
      stream_url: url,
      stream_track: "inbound_track",
      stream_codec: "PCMU",
      stream_bidirectional_mode: "rtp",
      stream_bidirectional_codec: "PCMU",
      stream_bidirectional_target_legs: "self",
      ...(full ? { stream_bidirectional_sampling_rate: 8000, stream_auth_token: ticket.token } : {}),
      ...(ticket.callId ? { client_state: clientStateOf(ticket.callId) } : {}),
    };
  }
}

/** The `data` of a Telnyx webhook envelope, or null when the body is not one. */
function eventOf(body: string): { id?: unknown; event_type?: unknown; payload?: Record<string, unknown> } | null {
  try {
    const v = JSON.parse(body) as { data?: unknown };
    return obj(v) && obj(v.data) ? (v.data as { id?: unknown; event_type?: unknown; payload?: Record<string, unknown> }) : null;
  } catch {
    return null;
  }
}
