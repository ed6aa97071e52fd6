/**
 * Screening an outbound call before its first words: who answered decides what the call does. A person (or nobody
 * known) hears the greeting; on a machine the session's policy leaves a message after the beep, hangs up, or talks as
 * to a person; a fax machine is hung up on. Pure functions of the context; the decision itself is made outside the
 * machine, from the audio (src/call/screening.ts) or the carrier's answering-machine detection.
 */
import type { AnsweredBy, CallContext, CallEmitted } from "./call.types.ts";
import { REASON_FAX, REASON_VOICEMAIL_HANGUP } from "./call.types.ts";

export type ScreeningAction = Extract<CallEmitted, { type: "screening.decided" }>["action"];

/** What the call does about who answered. */
export function screeningAction(c: CallContext, answeredBy: AnsweredBy): ScreeningAction {
  if (answeredBy === "fax") return "hangup";
  if (answeredBy !== "machine" || !c.screening) return "greet";
  if (c.screening.voicemail === "leave") return c.screening.message.trim() ? "leave" : "hangup";
  return c.screening.voicemail === "hangup" ? "hangup" : "greet";
}

/** The context once screening has decided. */
export function screened(c: CallContext, answeredBy: AnsweredBy): Partial<CallContext> {
  const action = screeningAction(c, answeredBy);
  return {
    screening: c.screening ? { ...c.screening, answeredBy } : null,
    ...(action === "hangup" ? { hangupReason: answeredBy === "fax" ? REASON_FAX : REASON_VOICEMAIL_HANGUP } : {}),
  };
}

export const screeningPending = (c: CallContext): boolean => c.screening !== null && c.screening.answeredBy === null;
