import type { Carrier, CarrierEvent, CarrierReply, PlaceRequest, RawRequest, Refused, StreamAdmitted, StreamTicket, Verified } from "../carrier.ts";
import { plivoHangupXml, plivoStreamXml } from "./answer-xml.ts";
import { plivoCodecWith } from "./codec.ts";
import type { PlivoRest } from "./rest.ts";
import { formParams, isValidPlivoSignature, isValidPlivoUpgrade, PLIVO_NONCE_HEADER, PLIVO_SIGNATURE_HEADER } from "./signature.ts";
import { plivoStatus, plivoStatusDetails } from "./status.ts";

/** Plivo's paths: the number's Application points its answer URL at `webhook` and its hangup URL at `status`. */
export const PLIVO_PATHS = { webhook: "/plivo/answer", status: "/plivo/status", resume: "/plivo/resume", stream: "/plivo/stream" } as const;

export interface PlivoCarrierOptions {
  /** PLIVO_AUTH_TOKEN: V3 signatures on webhooks and the stream upgrade. Without it nothing is checked (development). */
  authToken?: string;
  /** The REST client (outbound calls, hang-up), when PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN are set. */
  rest: PlivoRest | null;
  /** PLIVO_FROM_NUMBER: the caller ID of placed calls. */
  fromNumber?: string;
}

const XML = "application/xml";
const xml = (body: string): CarrierReply => ({ contentType: XML, body, via: "response" });
const header = (req: RawRequest, name: string): string | undefined => {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
};
/** How many placed calls' id pairs are remembered (a call is answered within its ring timeout). */
const MAX_REMEMBERED_IDS = 10_000;

/**
 * Plivo: Plivo XML answers (`<Stream bidirectional keepCallAlive contentType="audio/x-mulaw;rate=8000">`, the token
 * in the stream URL's query, Parley's call id in `extraHeaders`), signature V3 on webhooks and on the stream upgrade
 * (the official helper), and the Voice API for outbound calls and hang-up.
 *
 * Resume: Plivo has no `<Connect action>`. With `keepCallAlive`, what follows `<Stream>` runs only once the stream has
 * ended, so the answer puts a `<Redirect>` to Parley's resume URL after it: when the socket drops while the call is up,
 * Plivo asks that URL and Parley answers a new stream (or `<Hangup/>` when the call is over). This follows Plivo's
 * documented XML semantics; it has been checked against the stand-in, not on a live Plivo call.
 *
 * Ids: Parley mints its own (`PV…`). A placed call is known to Plivo's API by its `request_uuid` until it is answered,
 * and by its `CallUUID` after, which may differ; the record keeps the `request_uuid`, and this carrier remembers which
 * CallUUID answered it, to map the stream's `start` and the hang-up onto the right one.
 */
export class PlivoCarrier implements Carrier {
  readonly name = "plivo" as const;
  readonly callIds = "parley" as const;
  readonly paths = PLIVO_PATHS;
  readonly codec = plivoCodecWith((callUuid) => this.requestOf.get(callUuid) ?? callUuid);

  readonly place?: (req: PlaceRequest) => Promise<{ carrierCallId: string }>;
  readonly hangUp?: (carrierCallId: string) => Promise<void>;
  readonly checkCredentials?: () => Promise<void>;
  readonly voiceUrlOf?: (number: string) => Promise<string | null>;
  readonly callerId: { number?: string; setting: string };

  /** CallUUID -> request_uuid of the calls Parley placed, and back. */
  private readonly requestOf = new Map<string, string>();
  private readonly callOf = new Map<string, string>();
  /**
   * CallUUID -> Parley's id of the inbound calls answered here: the number's hangup URL is the Application's, with no
   * Parley id in it, and a call whose caller hangs up must still hear about it (Plivo sends no `stop` on the socket).
   */
  private readonly parleyOf = new Map<string, string>();

  constructor(private readonly opts: PlivoCarrierOptions) {
    this.callerId = { ...(opts.fromNumber ? { number: opts.fromNumber } : {}), setting: "PLIVO_FROM_NUMBER" };
    const rest = opts.rest;
    if (!rest) return;
    this.place = async (req) => {
      const callId = req.callId ?? req.stream.callId;
      // Plivo's answer request must name the call: Parley mints the id before placing it (callIds "parley").
      if (!callId) throw new Error("a Plivo call is placed with Parley's call id");
      const q = `?callId=${encodeURIComponent(callId)}`;
      const at = (path: string) => new URL(path + q, req.stream.webhookOrigin).toString();
      const placed = await rest.placeCall({
        to: req.to,
        from: req.from,
        answerUrl: at(PLIVO_PATHS.webhook),
        hangupUrl: at(PLIVO_PATHS.status),
        ringUrl: at(PLIVO_PATHS.status),
        ringTimeoutSeconds: req.timeoutSeconds,
      });
      return { carrierCallId: placed.requestUuid };
    };
    this.hangUp = async (carrierCallId) => {
      await rest.hangUp({ callUuid: this.callOf.get(carrierCallId) ?? carrierCallId, requestUuid: carrierCallId });
    };
    this.checkCredentials = async () => {
      await rest.account();
    };
    this.voiceUrlOf = (number) => rest.voiceUrlOf(number);
  }

  verifyWebhook(req: RawRequest): Verified | Refused {
    const token = this.opts.authToken;
    if (!token) return { ok: true, replayKey: null };
    const signature = header(req, PLIVO_SIGNATURE_HEADER);
    const nonce = header(req, PLIVO_NONCE_HEADER);
    const method = req.method.toUpperCase() === "GET" ? "GET" : "POST";
    if (!isValidPlivoSignature({ authToken: token, method, url: req.url, signature, nonce, params: formParams(req.body) }))
      return { ok: false, status: 403, reason: "missing or invalid X-Plivo-Signature-V3" };
    // V3 signs no timestamp: the nonce is the replay key (with the URL, so one nonce reused elsewhere is not a replay).
    return { ok: true, replayKey: `plivo:${nonce}:${req.url}` };
  }

  verifyStream(req: RawRequest): StreamAdmitted | Refused {
    const url = new URL(req.url);
    const token = url.searchParams.get("token") ?? undefined;
    const authToken = this.opts.authToken;
    // Unsigned (development): the token alone admits, and only while it is live.
    if (!authToken) return { ok: true, ...(token ? { token } : {}), checkToken: true };
    if (!isValidPlivoUpgrade(authToken, new URL(url.origin), url.pathname + url.search, header(req, PLIVO_SIGNATURE_HEADER), header(req, PLIVO_NONCE_HEADER)))
      return { ok: false, status: 403, reason: "missing or invalid X-Plivo-Signature-V3" };
    return { ok: true, ...(token ? { token } : {}) };
  }

  event(req: RawRequest): CarrierEvent {
    const p: Record<string, string> = {};
    for (const [k, v] of new URLSearchParams(req.body)) p[k] ??= v;
    const url = new URL(req.url);
    const callUuid = p.CallUUID;
    if (!callUuid) return { kind: "invalid", reason: "CallUUID is required" };
    const callId = url.searchParams.get("callId") ?? (url.pathname !== PLIVO_PATHS.webhook ? this.parleyOf.get(callUuid) : undefined);
    const requestUuid = p.ALegRequestUUID || p.RequestUUID;
    if (callId && requestUuid) this.remember(callUuid, requestUuid);
    const carrierCallId = this.requestOf.get(callUuid) ?? callUuid;
    const ids = { carrierCallId, ...(callId ? { callId } : {}) };
    switch (url.pathname) {
      case PLIVO_PATHS.webhook:
        return { kind: "incoming", ...ids, from: p.From ?? "", to: p.To ?? "" };
      case PLIVO_PATHS.status: {
        const status = plivoStatus(p);
        if (!status) return { kind: "ignored", why: `Plivo CallStatus ${JSON.stringify((p.CallStatus ?? "").slice(0, 32))} means nothing to Parley` };
        return { kind: "status", ...ids, status, carrierStatus: p.CallStatus ?? p.Event ?? "", ...plivoStatusDetails(p) };
      }
      case PLIVO_PATHS.resume:
        return { kind: "stream-ended", ...ids };
      default:
        return { kind: "ignored", why: `no Plivo webhook at ${url.pathname}` };
    }
  }

  answer(ticket: StreamTicket): CarrierReply {
    if (ticket.callId && ticket.carrierCallId && !this.callOf.has(ticket.carrierCallId)) bounded(this.parleyOf).set(ticket.carrierCallId, ticket.callId);
    return xml(this.streamXml(ticket));
  }

  reject(reason: "busy" | "rejected"): CarrierReply {
    return xml(plivoHangupXml(reason));
  }

  /** Plivo ran the `<Redirect>` after a stream that ended: a new stream, or `<Hangup/>` when the call is over. */
  resume(ticket: StreamTicket | null): CarrierReply {
    return xml(ticket ? this.streamXml(ticket) : plivoHangupXml());
  }

  private streamXml(ticket: StreamTicket): string {
    const stream = new URL(PLIVO_PATHS.stream, ticket.streamOrigin);
    stream.searchParams.set("token", ticket.token);
    const id = ticket.callId;
    return plivoStreamXml({
      streamUrl: stream.toString(),
      ...(id ? { extraHeaders: `parleyCallId=${id}`, redirectUrl: new URL(`${PLIVO_PATHS.resume}?callId=${encodeURIComponent(id)}`, ticket.webhookOrigin).toString() } : {}),
    });
  }

  private remember(callUuid: string, requestUuid: string): void {
    if (this.requestOf.get(callUuid) === requestUuid) return;
    bounded(this.requestOf).set(callUuid, requestUuid);
    bounded(this.callOf).set(requestUuid, callUuid);
  }
}

/** The map, with its oldest entry dropped when it is full (insertion order is age order). */
function bounded(map: Map<string, string>): Map<string, string> {
  if (map.size >= MAX_REMEMBERED_IDS) map.delete(map.keys().next().value!);
  return map;
}
