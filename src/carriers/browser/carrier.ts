import type { Carrier, CarrierEvent, CarrierReply, RawRequest, Refused, StreamAdmitted, StreamTicket, Verified } from "../carrier.ts";
import { twilioCodec } from "../twilio/codec.ts";

export const BROWSER_PATHS = { stream: "/phone/stream" } as const;

/**
 * The browser softphone as a carrier. There is no telephone network behind it: `POST /api/phone/calls` creates the
 * call and a single-use, 60-second token; the page opens `/phone/stream?token=…`, where that token stands in for a
 * carrier's signature, and sends it again in `start`. The page speaks Twilio's Media Streams protocol (its worklets
 * keep Twilio's playout semantics: marks echoed once played, `clear` echoing the pending ones), so its codec is
 * Twilio's. It has no webhooks, no REST and no resume: hang-up closes the socket, and a dropped socket ends the call.
 */
export class BrowserCarrier implements Carrier {
  readonly name = "browser" as const;
  /** Parley mints the id (`BR` + 32 hex) when the page asks for a call. */
  readonly callIds = "parley" as const;
  readonly codec = twilioCodec;
  readonly paths = BROWSER_PATHS;

  verifyWebhook(): Verified | Refused {
    return { ok: false, status: 403, reason: "the softphone has no webhooks" };
  }

  verifyStream(req: RawRequest): StreamAdmitted | Refused {
    const token = new URL(req.url).searchParams.get("token");
    if (!token) return { ok: false, status: 403, reason: "missing softphone token" };
    return { ok: true, token, checkToken: true };
  }

  event(): CarrierEvent {
    return { kind: "ignored", why: "the softphone has no webhooks" };
  }

  /** What the page needs to open its stream (the control API answers `POST /api/phone/calls` with it). */
  answer(ticket: StreamTicket): CarrierReply {
    return { contentType: "application/json", body: JSON.stringify({ callSid: ticket.callId, token: ticket.token, streamPath: BROWSER_PATHS.stream }), via: "response" };
  }

  reject(reason: "busy" | "rejected"): CarrierReply {
    return { contentType: "application/json", body: JSON.stringify({ error: reason }), via: "response" };
  }
}
