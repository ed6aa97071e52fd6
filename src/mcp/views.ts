/**
 * What the MCP tools hand back: the API's records reshaped for a language model. Flat snake_case fields (as the tool
 * inputs are), states as one dotted name, ISO times, the transcript as heard, and the outcome without its repeated
 * transcript. Each tool's `outputSchema` is declared next to the shape it describes, so the SDK checks one against
 * the other on every result.
 */
import { z } from "zod";
import { transcriptOf } from "../outcome/outcome.ts";
import type { CallListItem, CallView } from "./api.ts";

/** An XState value as one readable name: `{ connecting: "ringing" }` → `connecting.ringing`. */
export function stateName(value: unknown): string {
  if (typeof value === "string") return value;
  if (value && typeof value === "object") {
    return Object.entries(value)
      .map(([k, v]) => (v && (typeof v === "string" || typeof v === "object") ? `${k}.${stateName(v)}` : k))
      .join(", ");
  }
  return "unknown";
}

const iso = (ms: number | null | undefined): string | null => (typeof ms === "number" && Number.isFinite(ms) ? new Date(ms).toISOString() : null);

const transcriptLine = z.object({ role: z.enum(["caller", "parley"]), text: z.string(), interrupted: z.boolean().optional() });

export const outcomeShape = z
  .object({
    summary: z.string(),
    summary_source: z.string(),
    data: z.unknown(),
    data_error: z.string().nullable(),
    end_reason: z.string().nullable(),
    duration_s: z.number().nullable(),
    answered_by: z.string().nullable(),
    voicemail: z.enum(["left", "hung-up", "continued"]).nullable().optional(),
    handoff_data: z.unknown().optional(),
  })
  .nullable();

export const callShape = {
  call_id: z.string(),
  live: z.boolean().describe("true while the call is ringing or connected"),
  state: z.string().describe("where the call is, e.g. connecting.ringing, live.listening, live.speaking, ended"),
  direction: z.string().nullable(),
  from: z.string().nullable(),
  to: z.string().nullable(),
  mode: z.string().nullable(),
  created_at: z.string().nullable(),
  ended_at: z.string().nullable(),
  end_reason: z.string().nullable(),
  transcript: z.array(transcriptLine).describe("what was said, as the caller heard it"),
  outcome: outcomeShape.describe("null until the call has ended and its outcome is written"),
  session: z.record(z.string(), z.unknown()).nullable().optional(),
  transfer: z
    .object({ mode: z.string().nullable(), to: z.string().nullable(), ok: z.boolean().nullable().describe("null while under way"), error: z.string().optional() })
    .passthrough()
    .nullable()
    .optional()
    .describe("the last hand-over to a human (transfer_call), if any"),
};
export type CallOut = z.infer<z.ZodObject<typeof callShape>>;

export function callOut(c: CallView): CallOut {
  const o = c.outcome;
  return {
    call_id: c.callSid,
    live: c.live,
    state: c.live ? stateName(c.state) : "ended",
    direction: c.direction,
    from: c.from,
    to: c.to,
    mode: c.mode,
    created_at: iso(c.createdAt),
    ended_at: iso(c.endedAt),
    end_reason: c.endReason,
    ...(c.transfer ? { transfer: c.transfer } : {}),
    transcript: transcriptOf(c).map((l) => ({ role: l.role, text: l.text, ...(l.interrupted ? { interrupted: true } : {}) })),
    outcome: o
      ? {
          summary: o.summary,
          summary_source: o.summarySource,
          data: o.data ?? null,
          data_error: o.dataError ?? null,
          end_reason: o.endReason ?? null,
          duration_s: o.durationS ?? null,
          answered_by: o.answeredBy ?? null,
          voicemail: o.voicemail ?? null,
          ...(o.handoffData !== undefined ? { handoff_data: o.handoffData } : {}),
        }
      : null,
    ...(c.session !== undefined ? { session: c.session } : {}),
  };
}

/** A row of `list_calls`: the call's own fields, without its transcript, outcome and session. */
export const listItemShape = z.object(callShape).pick({
  call_id: true,
  live: true,
  state: true,
  direction: true,
  from: true,
  to: true,
  created_at: true,
  ended_at: true,
  end_reason: true,
});

export function listItemOut(c: CallListItem): z.infer<typeof listItemShape> {
  return {
    call_id: c.callSid,
    live: c.live,
    state: c.live ? stateName(c.state) : "ended",
    direction: c.direction,
    from: c.from,
    to: c.to,
    created_at: iso(c.createdAt),
    ended_at: iso(c.endedAt),
    end_reason: c.endReason,
  };
}

/** A call in a few lines of text, for clients that show only the text content. */
export function callText(c: CallOut): string {
  const head = `Call ${c.call_id} (${c.direction ?? "?"} ${c.from ?? "?"} → ${c.to ?? "?"}): ${c.live ? `live, ${c.state}` : `ended (${c.end_reason ?? "no reason recorded"})`}.`;
  const lines = c.transcript.map((l) => `${l.role === "caller" ? "Caller" : "Parley"}: ${l.text}${l.interrupted ? " [interrupted]" : ""}`);
  // A client that reads only the text must see why `data` is missing (e.g. the model's answer did not fit the schema).
  const outcome = c.outcome
    ? [
        `Outcome: ${c.outcome.summary}`,
        ...(c.outcome.data != null ? [`Data: ${JSON.stringify(c.outcome.data)}`] : []),
        ...(c.outcome.data_error ? [`Data not filled: ${c.outcome.data_error}`] : []),
      ]
    : [];
  return [head, ...lines, ...outcome].join("\n");
}
