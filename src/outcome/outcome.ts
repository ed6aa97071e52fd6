import type { CallRecord } from "../store/call-record.ts";

/**
 * What a call achieved, written when it ends: the thing an assistant that placed the call wants back. `data` is filled
 * from the transcript to the session's `outcomeSchema` and validated against it; without a language model, the summary
 * is made from the transcript itself and says so (`summarySource: "transcript"`), and `data` stays null.
 */
export interface Outcome {
  callSid: string;
  summary: string;
  summarySource: "model" | "transcript";
  /** Filled to `outcomeSchema` and valid against it; null when there is no schema, or it could not be filled. */
  data: unknown;
  /** Why `data` is null although a schema was given (no model, the model failed, or its answer did not validate). */
  dataError: string | null;
  endReason: string | null;
  durationS: number | null;
  /** `human`, `machine`, `fax` or `unknown`: screening's decision on an outbound call, else the carrier's AMD. */
  answeredBy: string | null;
  /** A machine answered: the message was `left`, the call `hung-up`, or it `continued` as with a person. */
  voicemail: "left" | "hung-up" | "continued" | null;
  transcript: TranscriptLine[];
  /** Set by the application that ran the call (a ConversationRelay app's `end.handoffData`). */
  handoffData?: unknown;
  metadata?: Record<string, unknown>;
  /** The call's recording, when it was recorded: where the API serves it, and whether it is complete. */
  recording?: { url: string; status: string; durationS: number | null };
  createdAt: number;
}

export interface TranscriptLine {
  role: "caller" | "parley";
  /** For Parley's lines, what the caller actually heard (an interrupted reply is cut where it was). */
  text: string;
  interrupted?: boolean;
  at: number;
}

/** The transcript as heard: the caller's words, and of Parley's replies only what reached the caller. */
export function transcriptOf(rec: CallRecord): TranscriptLine[] {
  const out: TranscriptLine[] = [];
  for (const t of rec.turns) {
    const text = (t.role === "assistant" ? (t.heardText ?? t.text) : t.text).trim();
    if (!text) continue;
    out.push({ role: t.role === "assistant" ? "parley" : "caller", text, ...(t.interrupted ? { interrupted: true } : {}), at: t.at });
  }
  return out;
}

/** Seconds from the stream's start (or the call's creation) to its end. */
export function durationOf(rec: CallRecord): number | null {
  if (rec.endedAt === null) return null;
  const from = rec.startedAt ?? rec.createdAt;
  return Math.max(0, Math.round((rec.endedAt - from) / 100) / 10);
}

/** The transcript as plain lines, for a model or a person. */
export function transcriptText(lines: TranscriptLine[]): string {
  return lines.map((l) => `${l.role === "caller" ? "Caller" : "Parley"}: ${l.text}${l.interrupted ? " [interrupted]" : ""}`).join("\n");
}

/**
 * A summary made without a model, and labelled as such: who spoke how much, and the caller's own words, which are
 * what a reader usually needs. Never invents anything the transcript does not hold.
 */
export function transcriptSummary(lines: TranscriptLine[], endReason: string | null): string {
  const caller = lines.filter((l) => l.role === "caller");
  const parley = lines.filter((l) => l.role === "parley");
  const head = `Summary made from the transcript (no language model configured): ${caller.length} caller turn${caller.length === 1 ? "" : "s"}, ${parley.length} from Parley`;
  const ended = endReason ? `; the call ended: ${endReason}` : "";
  if (!caller.length) return `${head}${ended}. The caller said nothing that was recognised.`;
  const quoted = caller.map((l) => `"${l.text}"`).join(" ");
  const words = quoted.length > 600 ? `${quoted.slice(0, 597)}...` : quoted;
  return `${head}${ended}. The caller said: ${words}`;
}
