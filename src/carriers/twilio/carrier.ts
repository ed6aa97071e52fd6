import { replayKey } from "../../state/replay.ts";
import { isSafeCallId } from "../../store/call-store.ts";
import { parseFormBody, parseJsonBody, webhookParams } from "../../server/webhook-body.ts";
import { TwilioTransfer } from "./transfer.ts";
import type { CallTransfer, Carrier, CarrierEvent, CarrierReply, PlaceRequest, RawRequest, Refused, StreamAdmitted, StreamTicket, Verified } from "../carrier.ts";
import { connectStreamTwiml, HANGUP_TWIML, oneTimeActionUrl, rejectTwiml } from "./answer.ts";
import { twilioCodec } from "./codec.ts";
import type { TwilioRest } from "./rest.ts";
import { twilioStatus } from "./status.ts";
import { isValidStreamUpgrade, verifyTwilioSignature } from "./verify.ts";

/** Twilio's paths, as they always were: numbers already configured with them keep working. */
export const TWILIO_PATHS = { webhook: "/voice/webhook", status: "/voice/status", resume: "/voice/connect-action", amd: "/voice/amd", stream: "/voice/stream" } as const;

export interface TwilioCarrierOptions {
  /** TWILIO_AUTH_TOKEN: signatures on webhooks and the stream upgrade. Without it nothing is checked (development). */
  authToken?: string;
  /** The REST client (outbound calls, hang-up), when TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are set. */
  rest: TwilioRest | null;
  /** TWILIO_FROM_NUMBER. */
  fromNumber?: string;
}

const TWIML = "text/xml";
const twiml = (body: string): CarrierReply => ({ contentType: TWIML, body, via: "response" });
const header = (req: RawRequest, name: string): string | undefined => {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
};

/**
 * Twilio: TwiML answers (`<Connect><Stream>` with the token as a `<Parameter>`, since Twilio drops query strings on
 * stream URLs), `X-Twilio-Signature` on webhooks and on the stream upgrade, `<Connect action>` to resume a dropped
 * stream, and its REST API through the official library. Twilio's CallSid is safe as a file name, so it is Parley's
 * call id too: records, links and the control API keep the ids they always had.
 */
export class TwilioCarrier implements Carrier {
  readonly name = "twilio" as const;
  readonly callIds = "carrier" as const;
  readonly codec = twilioCodec;
  readonly paths = TWILIO_PATHS;
  readonly callerId: { number?: string; setting: string };

  /** Present only with REST credentials: without them Parley cannot place calls, and ends calls by closing the socket. */
  readonly place?: (req: PlaceRequest) => Promise<{ carrierCallId: string }>;
  readonly hangUp?: (carrierCallId: string) => Promise<void>;
  readonly transfer?: CallTransfer;

  constructor(private readonly opts: TwilioCarrierOptions) {
    this.callerId = { ...(opts.fromNumber ? { number: opts.fromNumber } : {}), setting: "TWILIO_FROM_NUMBER" };
    const rest = opts.rest;
    if (!rest) return;
    this.place = async (req) => {
      // Inline TwiML: no webhook round trip when the callee answers. The CallSid is not known yet, so only the token.
      const twimlDoc = this.streamTwiml(req.stream, false);
      const statusCallback = new URL(TWILIO_PATHS.status, req.stream.webhookOrigin).toString();
      // AsyncAmd: the call proceeds at once, and Twilio's verdict comes later to the AMD path (DetectMessageEnd: for a
      // machine, once its greeting has ended).
      const amdCallback = req.amd ? { amdCallback: new URL(TWILIO_PATHS.amd, req.stream.webhookOrigin).toString() } : {};
      const created = await rest.createCall({ to: req.to, from: req.from, twiml: twimlDoc, statusCallback, timeoutSeconds: req.timeoutSeconds, ...amdCallback });
      return { carrierCallId: created.sid };
    };
    // Twilio ends the call whatever its state (`Status=completed`), then sends `stop` and closes the stream.
    this.hangUp = (carrierCallId) => rest.hangup(carrierCallId);
    this.transfer = new TwilioTransfer(rest, opts.fromNumber);
  }

  verifyWebhook(req: RawRequest): Verified | Refused {
    const token = this.opts.authToken;
    if (!token) return { ok: true, replayKey: null };
    const sig = header(req, "x-twilio-signature");
    if (!verifyTwilioSignature(token, sig, req.url, header(req, "content-type"), req.body))
      return { ok: false, status: 403, reason: "missing or invalid X-Twilio-Signature" };
    return { ok: true, replayKey: replayKey(sig!, req.url, req.body) };
  }

  verifyStream(req: RawRequest): StreamAdmitted | Refused {
    const token = this.opts.authToken;
    if (!token) return { ok: true };
    const url = new URL(req.url);
    if (!isValidStreamUpgrade(token, header(req, "x-twilio-signature"), new URL(url.origin), url.pathname + url.search))
      return { ok: false, status: 403, reason: "missing or invalid X-Twilio-Signature" };
    return { ok: true };
  }

  event(req: RawRequest): CarrierEvent {
    // Form-encoded as Twilio sends them; JSON for the signed bodySHA256 variant (a malformed one has no fields).
    let p: Record<string, string> = {};
    try {
      p = webhookParams(isJson(req) ? parseJsonBody(req.body) : parseFormBody(req.body));
    } catch {
      p = {};
    }
    const path = new URL(req.url).pathname;
    const callSid = p.CallSid;
    if (path === TWILIO_PATHS.webhook) {
      if (!callSid || !isSafeCallId(callSid)) return { kind: "invalid", reason: "CallSid is required" };
      return { kind: "incoming", carrierCallId: callSid, from: p.From ?? "", to: p.To ?? "" };
    }
    if (path === TWILIO_PATHS.status) {
      if (!callSid || !p.CallStatus) return { kind: "invalid", reason: "CallSid and CallStatus are required" };
      const status = twilioStatus(p.CallStatus);
      if (!status) return { kind: "invalid", reason: `unknown CallStatus ${JSON.stringify(p.CallStatus.slice(0, 32))}` };
      return {
        kind: "status",
        carrierCallId: callSid,
        callId: callSid,
        status,
        carrierStatus: p.CallStatus,
        ...(p.SequenceNumber !== undefined ? { sequence: p.SequenceNumber } : {}),
        ...(p.CallDuration !== undefined ? { durationS: p.CallDuration } : {}),
        ...(p.AnsweredBy !== undefined ? { answeredBy: p.AnsweredBy } : {}),
      };
    }
    if (path === TWILIO_PATHS.amd) {
      if (!callSid || !p.AnsweredBy) return { kind: "invalid", reason: "CallSid and AnsweredBy are required" };
      const ms = Number(p.MachineDetectionDuration);
      return { kind: "amd", carrierCallId: callSid, callId: callSid, answeredBy: p.AnsweredBy, ...(Number.isFinite(ms) ? { detectionMs: ms } : {}) };
    }
    if (path === TWILIO_PATHS.resume) {
      if (!callSid) return { kind: "invalid", reason: "CallSid is required" };
      return { kind: "stream-ended", carrierCallId: callSid, callId: callSid };
    }
    return { kind: "ignored", why: `no Twilio webhook at ${path}` };
  }

  answer(ticket: StreamTicket): CarrierReply {
    return twiml(this.streamTwiml(ticket, true));
  }

  reject(reason: "busy" | "rejected"): CarrierReply {
    return twiml(rejectTwiml(reason));
  }

  /** Twilio asked the <Connect action> URL: a new stream, or `<Hangup/>` when the call is over. */
  resume(ticket: StreamTicket | null): CarrierReply {
    return twiml(ticket ? this.streamTwiml(ticket, true) : HANGUP_TWIML);
  }

  private streamTwiml(ticket: StreamTicket, withCallSid: boolean): string {
    return connectStreamTwiml({
      streamUrl: new URL(TWILIO_PATHS.stream, ticket.streamOrigin).toString(),
      parameters: withCallSid && ticket.callId ? { token: ticket.token, callSid: ticket.callId } : { token: ticket.token },
      // Each <Connect> names its own action URL: Twilio's request to it after this stream ends must not look like a
      // replay of the request after the previous one (same body), or a call's second hand-over would be refused.
      connectAction: oneTimeActionUrl(new URL(TWILIO_PATHS.resume, ticket.webhookOrigin).toString()),
    });
  }
}

const isJson = (req: RawRequest) => (header(req, "content-type") ?? "").includes("application/json");
