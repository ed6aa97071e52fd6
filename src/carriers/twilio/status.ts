import type { CallStatus } from "../carrier.ts";

/** Twilio's `CallStatus` values in Parley's words (https://www.twilio.com/docs/voice/api/call-resource#call-status-values). */
const TWILIO_STATUS: Record<string, CallStatus> = {
  queued: "initiated",
  initiated: "initiated",
  ringing: "ringing",
  "in-progress": "answered",
  completed: "completed",
  busy: "busy",
  "no-answer": "unanswered",
  failed: "failed",
  canceled: "cancelled",
};

/** Parley's status for a Twilio `CallStatus`, or null for a value Twilio does not document. */
export function twilioStatus(status: string): CallStatus | null {
  return Object.hasOwn(TWILIO_STATUS, status) ? TWILIO_STATUS[status]! : null;
}
