/**
 * A call's record is the fold of its timestamped events: the store appends events, and the record (what the API
 * serves, what metrics and the visualizer read) is rebuilt from them, live or after a restart.
 */

import { REASON_VOICEMAIL_LEFT } from "../../machines/call.types.ts";
import type { Outcome } from "../outcome/outcome.ts";
import type { DeliveryAttempt } from "../outcome/webhook.ts";
import type { Session } from "../session/session.ts";

export type RecordEvent = { t: number; type: string } & Record<string, unknown>;

export interface TurnLatency {
  /** VAD end of speech -> final transcript. */
  sttMs: number | null;
  /** Final transcript -> agent's first text. */
  agentMs: number | null;
  /** Agent's first text -> first TTS audio. */
  ttsMs: number | null;
  /** First TTS audio -> first frame sent to Twilio. */
  sendMs: number | null;
  /** VAD end of speech -> first frame sent (the caller's wait, less network). */
  totalMs: number | null;
  /** Parley's own time at each hand-off between stages. */
  handoff?: {
    /** Final transcript -> agent request (0 or less when a preemptive reply was already running). */
    sttToAgentMs: number | null;
    /** Agent's first text -> text sent to TTS. */
    agentToTtsMs: number | null;
    /** First TTS audio -> first frame sent. */
    ttsToFrameMs: number | null;
  };
}

export interface TurnRecord {
  turnId: number;
  role: "user" | "assistant";
  kind?: string;
  text: string;
  heardText?: string;
  interrupted?: boolean;
  /** Speech synthesis failed part way (or before a word was heard); `heardText` is what the caller got. */
  failed?: boolean;
  at: number;
  latency?: TurnLatency;
}

export interface CallRecord {
  callSid: string;
  streamSid: string | null;
  from: string | null;
  to: string | null;
  direction: string | null;
  /** The carrier the call came through (`twilio`, `telnyx`, `browser`, ...); null in records from before carriers. */
  carrier: string | null;
  /**
   * The carrier's id for the call, beside Parley's `callSid` (which names the record and its files). The same as
   * `callSid` for Twilio; Telnyx's `v3:...` ids are kept here only, never in a file name.
   */
  carrierCallId: string | null;
  mode: string | null;
  /** An outbound call's message (spoken as its greeting). */
  message: string | null;
  /** Call statuses received, in order, in Parley's words (see src/carriers/carrier.ts `CallStatus`). */
  statuses: string[];
  /**
   * Who answered: screening's decision on an outbound call (human, machine, fax or unknown), else the carrier's
   * answering-machine detection where it said.
   */
  answeredBy: string | null;
  /** An outbound call that met a machine: the message was `left`, the call `hung-up`, or it `continued` as with a person. */
  voicemail: "left" | "hung-up" | "continued" | null;
  createdAt: number;
  startedAt: number | null;
  endedAt: number | null;
  endReason: string | null;
  state: unknown;
  /** Each change of the active states, with the event that caused it (from XState's inspection API). */
  states: { t: number; value: unknown; event?: string }[];
  turns: TurnRecord[];
  greetingDelivered: boolean;
  bargeIns: number;
  /** Replies that were already being generated, from a stable transcript, when the caller's turn was confirmed. */
  preemptiveReplies: number;
  errors: { t: number; type: string; message: string }[];
  protocolErrors: Record<string, number>;
  /** Streams given up for dead though their socket was open, by the watchdog that fired (media, mark, ping). */
  watchdogs: Record<string, number>;
  events: number;
  /** What the call is for (src/session/session.ts): from the API, MCP or the inbound routing table. */
  session: Session | null;
  /** What the brain handed over when it ended the call (a relay app's `end.handoffData`). */
  handoffData: unknown;
  /** Written once the call has ended (src/outcome/). */
  outcome: Outcome | null;
  /** Each try at POSTing the outcome to the session's outcomeWebhook. */
  outcomeDeliveries: DeliveryAttempt[];
  /** The call's recording, when it is recorded (README "Recordings"): served at `url`. */
  recording?: RecordingInfo | null;
  /** The last hand-over to a human (README "Handing over to a human"): `ok` null while under way. */
  transfer?: { mode: string | null; to: string | null; by?: string | null; ok: boolean | null; error?: string; room?: string; legCallSid?: string } | null;
}

export interface RecordingInfo {
  /** The file's name in `$DATA_DIR/calls/`. */
  file: string;
  /** Where the API serves it (bearer API_TOKEN). */
  url: string;
  /** `recording` while the call is live, `finished`, or `failed` (see `error`; the file holds what was written before). */
  status: "recording" | "finished" | "failed";
  bytes: number | null;
  durationS: number | null;
  /** The n-th recording of the call (a call restored after a restart starts a new file). */
  part: number;
  error?: string;
}

export function emptyRecord(callSid: string, t: number): CallRecord {
  return {
    callSid,
    streamSid: null,
    from: null,
    to: null,
    direction: null,
    carrier: null,
    carrierCallId: null,
    mode: null,
    message: null,
    statuses: [],
    answeredBy: null,
    voicemail: null,
    createdAt: t,
    startedAt: null,
    endedAt: null,
    endReason: null,
    state: null,
    states: [],
    turns: [],
    greetingDelivered: false,
    bargeIns: 0,
    preemptiveReplies: 0,
    errors: [],
    protocolErrors: {},
    watchdogs: {},
    events: 0,
    session: null,
    handoffData: null,
    outcome: null,
    outcomeDeliveries: [],
    recording: null,
  };
}

const str = (v: unknown): string | null => (typeof v === "string" ? v : null);
const baseName = (p: string): string => p.slice(Math.max(p.lastIndexOf("/"), p.lastIndexOf("\\")) + 1);

/** Apply one event to a record (mutates and returns it). Unknown event types only count. */
export function applyEvent(r: CallRecord, e: RecordEvent): CallRecord {
  r.events++;
  switch (e.type) {
    case "call.created":
      r.from = str(e.from);
      r.to = str(e.to);
      r.direction = str(e.direction);
      r.carrier = str(e.carrier);
      r.carrierCallId = str(e.carrierCallId);
      r.mode = str(e.mode);
      r.message = str(e.message);
      r.createdAt = e.t;
      r.session = e.session && typeof e.session === "object" ? (e.session as Session) : null;
      break;
    case "handoff":
      r.handoffData = e.data ?? null;
      break;
    case "outcome":
      r.outcome = e.outcome as Outcome;
      break;
    case "outcome.delivery":
      r.outcomeDeliveries.push(e.attempt as DeliveryAttempt);
      break;
    case "call.status":
      if (typeof e.status === "string" && !r.statuses.includes(e.status)) r.statuses.push(e.status);
      // Screening's decision stands over the carrier's raw AnsweredBy (machine_end_beep and the like).
      if (typeof e.answeredBy === "string" && e.answeredBy) r.answeredBy ??= e.answeredBy;
      break;
    case "screening.decided":
      r.answeredBy = str(e.answeredBy);
      if (e.answeredBy === "machine") r.voicemail = e.action === "hangup" ? "hung-up" : e.action === "greet" ? "continued" : null;
      break;
    case "stream.started":
      r.streamSid = str(e.streamSid);
      r.startedAt ??= e.t;
      break;
    case "state":
      r.state = e.value;
      r.states.push(typeof e.event === "string" ? { t: e.t, value: e.value, event: e.event } : { t: e.t, value: e.value });
      break;
    case "turn":
      r.turns.push(e.turn as TurnRecord);
      break;
    case "greeting.delivered":
      r.greetingDelivered = true;
      break;
    case "barge-in":
      r.bargeIns++;
      break;
    case "agent.preemptive_used":
      r.preemptiveReplies++;
      break;
    case "protocol.error": {
      const kind = str(e.kind) ?? "unknown";
      // One event may stand for several errors of a kind (they are reported at most once a second).
      r.protocolErrors[kind] = (r.protocolErrors[kind] ?? 0) + (typeof e.count === "number" ? e.count : 1);
      break;
    }
    case "stream.closed":
      if (typeof e.watchdog === "string") {
        r.watchdogs ??= {}; // records written before watchdogs existed
        r.watchdogs[e.watchdog] = (r.watchdogs[e.watchdog] ?? 0) + 1;
      }
      break;
    case "recording.started":
      r.recording = {
        file: baseName(str(e.path) ?? ""),
        url: `/api/calls/${r.callSid}/recording`,
        status: "recording",
        bytes: null,
        durationS: null,
        part: typeof e.part === "number" ? e.part : (r.recording?.part ?? 0) + 1,
      };
      break;
    case "recording.finished":
      if (r.recording) Object.assign(r.recording, { status: "finished", bytes: e.bytes ?? null, durationS: e.durationS ?? null });
      break;
    case "recording.error":
      if (r.recording) Object.assign(r.recording, { status: "failed", error: String(e.message ?? ""), bytes: e.bytes ?? null });
      r.errors.push({ t: e.t, type: e.type, message: String(e.message ?? "") });
      break;
    case "hangup":
      if (e.reason === REASON_VOICEMAIL_LEFT) r.voicemail = "left";
      break;
    case "transfer.started":
      r.transfer = { mode: str(e.mode), to: str(e.to), by: str(e.by), ok: null };
      break;
    case "transfer": {
      const { t: _t, type: _type, ...result } = e;
      r.transfer = { ...(r.transfer ?? {}), ...result } as CallRecord["transfer"];
      break;
    }
    case "call.ended":
      r.endedAt = e.t;
      r.endReason = str(e.reason);
      break;
    default:
      if (e.type.endsWith(".error") || e.type === "error") r.errors.push({ t: e.t, type: e.type, message: String(e.message ?? e.error ?? "") });
  }
  return r;
}
