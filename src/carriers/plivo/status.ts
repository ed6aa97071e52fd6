import type { CallStatus } from "../carrier.ts";

/**
 * Plivo's call statuses (answer, ring and hangup requests, carriers.md B.2/B.3) in Parley's own words (carrier.ts).
 * The answer request of an outbound call says `in-progress`: the callee picked up.
 */
const BY_CALL_STATUS: Record<string, CallStatus> = {
  ringing: "ringing",
  "early-media": "ringing",
  "in-progress": "answered",
  answered: "answered",
  completed: "completed",
  busy: "busy",
  failed: "failed",
  // Plivo says `timeout` when ring_timeout ran out, and `no-answer` when the callee declined.
  timeout: "unanswered",
  "no-answer": "unanswered",
  cancel: "cancelled",
  canceled: "cancelled",
  cancelled: "cancelled",
};

/** Parley's status for a Plivo request's form parameters, or null when it carries none Parley knows. */
export function plivoStatus(params: Record<string, string | undefined>): CallStatus | null {
  const s = params.CallStatus?.toLowerCase();
  if (s && s in BY_CALL_STATUS) return BY_CALL_STATUS[s]!;
  // A hangup request always means the call is over, even with a status Parley does not know.
  if (params.Event === "Hangup") return "completed";
  return null;
}

/** What Parley keeps of a status besides the status: the call's length in seconds, and a machine-detection verdict. */
export function plivoStatusDetails(params: Record<string, string | undefined>): { durationS?: string; answeredBy?: string } {
  return {
    ...(params.Duration ? { durationS: params.Duration } : {}),
    ...(params.Machine ? { answeredBy: params.Machine === "true" ? "machine" : "human" } : {}),
  };
}
