/** How an utterance ends up in the call's history: only what the caller heard. Pure. */
import { clipOf, tonesOf, type CallContext, type CallEmitted, type ChatTurn } from "./call.types.ts";

/** The part of `enqueueActions`' enqueue that finishUtterance uses. */
export type UtteranceEnd = "done" | "interrupted" | "failed";

export interface Enqueue {
  assign(values: Partial<CallContext>): void;
  emit(event: CallEmitted): void;
}

/**
 * Record the utterance being spoken as a turn, and keep in history only what the caller heard. It ends played out,
 * interrupted (someone else took the floor or the stream went), or failed (speech synthesis broke off).
 */
export function finishUtterance(context: CallContext, enqueue: Enqueue, end: UtteranceEnd): void {
  const s = context.speaking;
  if (!s) return;
  const cut = end !== "done";
  const failed = end === "failed";
  if (cut && !s.started) {
    // A failure is on the record even when nothing was heard; the turn, like a discarded reply, leaves the
    // caller's words pending for the next turn.
    if (failed) enqueue.emit({ type: "turn.assistant", turnId: context.turnId, kind: s.kind, text: s.text.trim(), heardText: "", interrupted: false, failed });
    enqueue.assign({ speaking: null });
    return;
  }
  const tones = tonesOf(s.text);
  const clip = clipOf(s.text);
  const text = tones !== null ? `(pressed ${tones})` : clip !== null ? "(played audio)" : s.text.trim();
  const heardText = tones !== null || clip !== null ? text : (cut ? s.heardText : s.text).trim();
  enqueue.emit({ type: "turn.assistant", turnId: context.turnId, kind: s.kind, text, heardText, interrupted: end === "interrupted", failed });
  const added: ChatTurn[] = [];
  if (s.kind === "reply" && context.pendingUserText) added.push({ role: "user", content: context.pendingUserText });
  if (heardText) added.push({ role: "assistant", content: heardText });
  enqueue.assign({ history: [...context.history, ...added], speaking: null, ...(s.kind === "reply" ? { pendingUserText: "" } : {}) });
}

