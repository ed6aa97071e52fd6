import type { Logger } from "pino";
import type { Session } from "../session/session.ts";
import type { CallRecord } from "../store/call-record.ts";
import { errorMessage } from "../util/errors.ts";
import { TranscriptExtractor, type Extraction, type OutcomeExtractor } from "./extract.ts";
import { durationOf, transcriptOf, type Outcome } from "./outcome.ts";
import { deliverOutcome, type DeliveryAttempt } from "./webhook.ts";

export interface OutcomeDeps {
  extractor: OutcomeExtractor;
  now: () => number;
  log: Logger;
  /** Secret for the webhook's signature (OUTCOME_WEBHOOK_SECRET). */
  secret?: string;
  /** Append an event to the ended call's record (and tell its live observers). */
  append(type: string, data: Record<string, unknown>): Promise<void>;
  /** Overrides for the webhook's retries (tests). */
  delivery?: { attempts?: number; backoffMs?: number; sleep?: (ms: number) => Promise<void> };
}

/**
 * The outcome of an ended call: extracted (by the model where there is one, else from the transcript, labelled so),
 * recorded as an `outcome` event, then POSTed to the session's webhook with every try recorded. A model that fails
 * leaves the transcript's summary and says why `data` is missing; it never loses the outcome.
 */
export async function writeOutcome(rec: CallRecord, deps: OutcomeDeps): Promise<Outcome> {
  const session: Session = rec.session ?? {};
  const transcript = transcriptOf(rec);
  const input = { transcript, endReason: rec.endReason, ...(session.instructions ? { instructions: session.instructions } : {}), ...(session.outcomeSchema ? { schema: session.outcomeSchema } : {}) };
  let ex: Extraction;
  try {
    ex = await deps.extractor.extract(input);
  } catch (err) {
    deps.log.warn({ callSid: rec.callSid, err: errorMessage(err) }, "the model could not write the call's outcome; using the transcript");
    const fallback = await new TranscriptExtractor().extract(input);
    ex = { ...fallback, dataError: session.outcomeSchema ? `the model could not fill the outcome: ${errorMessage(err)}` : null };
  }
  const outcome: Outcome = {
    callSid: rec.callSid,
    summary: ex.summary,
    summarySource: ex.summarySource,
    data: ex.data,
    dataError: ex.dataError,
    endReason: rec.endReason,
    durationS: durationOf(rec),
    answeredBy: rec.answeredBy,
    voicemail: rec.voicemail,
    transcript,
    ...(rec.handoffData !== null && rec.handoffData !== undefined ? { handoffData: rec.handoffData } : {}),
    ...(session.metadata ? { metadata: session.metadata } : {}),
    ...(rec.recording ? { recording: { url: rec.recording.url, status: rec.recording.status, durationS: rec.recording.durationS } } : {}),
    createdAt: deps.now(),
  };
  await deps.append("outcome", { outcome });
  return outcome;
}

/** POST the outcome to the session's webhook, recording each try; resolves when done (delivered or given up). */
export async function sendOutcome(url: string, outcome: Outcome, deps: OutcomeDeps): Promise<boolean> {
  const res = await deliverOutcome({
    url,
    body: outcome,
    ...(deps.secret ? { secret: deps.secret } : {}),
    now: deps.now,
    ...(deps.delivery ?? {}),
    onAttempt: (a: DeliveryAttempt) => {
      deps.append("outcome.delivery", { attempt: a }).catch((err) => deps.log.error({ err, callSid: outcome.callSid }, "could not record an outcome delivery"));
      if (!a.ok) deps.log.warn({ callSid: outcome.callSid, attempt: a.attempt, status: a.status, error: a.error, retryInMs: a.retryInMs }, "outcome webhook failed");
    },
  });
  if (res.delivered) deps.log.info({ callSid: outcome.callSid, attempts: res.attempts.length }, "outcome delivered");
  return res.delivered;
}
