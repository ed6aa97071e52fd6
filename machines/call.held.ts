/**
 * The caller's input while an utterance they may not cut plays (a relay app's `interruptible: false`): it does not
 * take the floor, but it is not lost either. Their speech is tracked, its transcripts collected apart from the turn
 * being answered, and all of it becomes their next turn once the utterance has played. Pure functions of the context.
 */
import type { CallContext } from "./call.types.ts";

type Held = CallContext["held"];

export const NOTHING_HELD: Held = { speaking: false, transcripts: 0, text: "" };

/** The held utterance ended: its transcript is now due. */
export const heldSpeechEnded = (h: Held): Held => ({ ...h, speaking: false, transcripts: h.transcripts + 1 });

export const heldTranscript = (h: Held, text: string): Held => ({
  speaking: h.speaking,
  transcripts: Math.max(0, h.transcripts - 1),
  text: `${h.text} ${text.trim()}`.trim(),
});

/** The utterance is over: what was held joins the turn being built (its words, and transcripts still due). */
export function releaseHeld(c: CallContext): Partial<CallContext> {
  return {
    pendingUserText: `${c.pendingUserText} ${c.held.text}`.trim(),
    transcriptsPending: c.transcriptsPending + c.held.transcripts,
    held: NOTHING_HELD,
  };
}

/** Where the floor goes once the utterance is over, if the caller said anything over it (null: nothing held). */
export function afterHeld(c: CallContext): "callerSpeaking" | "awaitingTranscript" | "replying" | "collectingDigits" | null {
  if (c.endAfterReply) return null; // the call ends after what is playing: no new turn
  if (c.held.speaking) return "callerSpeaking";
  if (c.held.transcripts > 0) return "awaitingTranscript";
  if (c.held.text) return "replying";
  if (c.digits) return "collectingDigits";
  return null;
}
