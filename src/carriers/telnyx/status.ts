import type { CallStatus, EndStatus } from "../carrier.ts";

/**
 * Telnyx's `call.hangup` causes in Parley's words. Documented: call_rejected, normal_clearing, originator_cancel,
 * timeout, time_limit, user_busy, not_found, unspecified; seen in the wild and read too: no_answer, no_user_response,
 * normal_unspecified, user_hangup. Anything else is a failure of the call.
 */
const HANGUP_CAUSE: Record<string, EndStatus> = {
  normal_clearing: "completed",
  normal_unspecified: "completed",
  user_hangup: "completed",
  time_limit: "completed",
  user_busy: "busy",
  timeout: "unanswered",
  no_answer: "unanswered",
  no_user_response: "unanswered",
  originator_cancel: "cancelled",
};

export function telnyxEndStatus(cause: unknown): EndStatus {
  return typeof cause === "string" && Object.hasOwn(HANGUP_CAUSE, cause) ? HANGUP_CAUSE[cause]! : "failed";
}

/** Parley's status for a Call Control event, or null for events that are not a status (streaming, DTMF, ...). */
export function telnyxStatus(eventType: string, payload: Record<string, unknown>): CallStatus | null {
  switch (eventType) {
    case "call.initiated":
      return "initiated";
    case "call.answered":
      return "answered";
    case "call.hangup":
      return telnyxEndStatus(payload.hangup_cause);
    default:
      return null;
  }
}
