/**
 * Plivo's call statuses (answer, ring and hangup requests, carriers.md B.2/B.3) in Parley's own words, which are the
 * statuses the call runtime already knows: `ringing`, `in-progress`, and the end statuses `completed`, `busy`,
 * `no-answer`, `failed`, `canceled`.
 */
export type ParleyCallStatus = "ringing" | "in-progress" | "completed" | "busy" | "no-answer" | "failed" | "canceled";

const BY_CALL_STATUS: Record<string, ParleyCallStatus> = {
  ringing: "ringing",
  "early-media": "ringing",
  "in-progress": "in-progress",
  answered: "in-progress",
  completed: "completed",
  busy: "busy",
  failed: "failed",
  // Plivo says `timeout` when ring_timeout ran out, and `no-answer` when the callee declined to answer.
  timeout: "no-answer",
  "no-answer": "no-answer",
  cancel: "canceled",
  canceled: "canceled",
  cancelled: "canceled",
};

/** Parley's status for a Plivo request's form parameters, or null when it carries none Parley knows. */
export function plivoStatus(params: Record<string, string | undefined>): ParleyCallStatus | null {
  const s = params.CallStatus?.toLowerCase();
  if (s && s in BY_CALL_STATUS) return BY_CALL_STATUS[s]!;
  // A hangup request always means the call is over, even with a status Parley does not know.
  if (params.Event === "Hangup") return "completed";
  return null;
}

/** What the runtime reads of a status besides the status: the call's length in seconds, under Twilio's name. */
export function plivoStatusDetails(params: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  if (params.Duration) out.CallDuration = params.Duration;
  if (params.HangupCause) out.HangupCause = params.HangupCause;
  if (params.Machine) out.AnsweredBy = params.Machine === "true" ? "machine" : "human";
  return out;
}
