/** Types and fixed phrases of the call statechart (see call.machine.ts). */

import type { AgentAction } from "../src/providers/types.ts";

export type { AgentAction };

export interface ChatTurn {
  role: "user" | "assistant";
  content: string;
}

/** What a speaker actor is asked to say. Fixed kinds have their text up front; a reply streams in from the agent. */
export type UtteranceKind = "greeting" | "reply" | "prompt" | "goodbye" | "announcement";

/** `conversation` speaks the greeting (or outbound message) and converses; `notify` speaks it and hangs up. */
export type CallMode = "conversation" | "notify";

export interface SpeakerInput {
  turnId: number;
  kind: UtteranceKind;
  /** Known text for every kind but `reply`, whose text arrives as SPEAKER.TEXT events. */
  text?: string;
}

export interface AgentInput {
  turnId: number;
  userText: string;
  history: ChatTurn[];
}

/** What may cut an utterance while it plays: the caller's speech, their touch tones. */
export interface BargeIn {
  speech: boolean;
  dtmf: boolean;
}

export const ANY_BARGE_IN: BargeIn = { speech: true, dtmf: true };

/** How a call ended, in Parley's words: each carrier maps its own statuses onto these (src/carriers/carrier.ts). */
export type { EndStatus } from "../src/carriers/carrier.ts";
import type { EndStatus } from "../src/carriers/carrier.ts";

export type CallEvent =
  | { type: "CALL.ANSWERED" }
  | { type: "CALL.ENDED"; status: EndStatus }
  | { type: "STREAM.STARTED"; streamSid: string }
  /** The caller hung up (the carrier's `stop`, or a browser's socket closing). */
  | { type: "STREAM.CLOSED"; reason: string }
  /** The socket went away without `stop`: the carrier may open a new stream (Twilio's <Connect action>, Telnyx's `streaming_start`). */
  | { type: "STREAM.DROPPED"; reason: string }
  | { type: "SPEECH.STARTED" }
  | { type: "SPEECH.ENDED" }
  | { type: "TRANSCRIPT"; text: string }
  | { type: "DTMF"; digit: string }
  /** `bargeIn`: what may cut this utterance once it plays (default: speech and touch tones). */
  | { type: "SAY"; text: string; interrupt: boolean; bargeIn?: BargeIn }
  /** What may cut this turn's reply from now on (a relay app's `interruptible`). */
  | ({ type: "REPLY.INTERRUPTIBLE"; turnId: number } & BargeIn)
  | { type: "AGENT.TEXT"; turnId: number; text: string }
  | { type: "AGENT.DONE"; turnId: number }
  | { type: "AGENT.ACTION"; turnId: number; action: AgentAction }
  | { type: "AGENT.ERROR"; turnId: number; error: string }
  | { type: "PLAYBACK.STARTED"; turnId: number }
  | { type: "PLAYBACK.PROGRESS"; turnId: number; heardText: string }
  | { type: "PLAYBACK.DONE"; turnId: number; heardText: string }
  | { type: "PLAYBACK.ERROR"; turnId: number; error: string }
  /** Say goodbye (`farewell`, else the goodbye for the reason), then hang up. */
  | { type: "HANGUP"; reason: string; farewell?: string }
  /** End once what is being said, and what is queued to be said, has been heard; no goodbye of Parley's own. */
  | { type: "END"; reason: string };

/** Events the speaker actor accepts from the machine. */
export type SpeakerCommand = { type: "SPEAKER.TEXT"; text: string } | { type: "SPEAKER.TONES"; digits: string } | { type: "SPEAKER.END" };

/** What the machine tells the outside world (call record, metrics); the runtime timestamps these. */
export type CallEmitted =
  | { type: "turn.user"; turnId: number; text: string }
  | { type: "turn.assistant"; turnId: number; kind: UtteranceKind; text: string; heardText: string; interrupted: boolean; failed: boolean }
  | { type: "barge-in"; turnId: number; heardText: string; by: "speech" | "dtmf" | "api" }
  | { type: "greeting.delivered"; attempts: number }
  | { type: "greeting.failed"; attempts: number; error: string }
  | { type: "agent.error"; turnId: number; error: string }
  | { type: "stream.resumed"; greetingPending: boolean }
  | { type: "call.error"; message: string }
  | { type: "hangup"; reason: string };

export interface CallContext {
  callSid: string;
  mode: CallMode;
  greetingText: string;
  greetingDelivered: boolean;
  greetingAttempts: number;
  /** Caller words collected for the turn being built; several utterances join when the caller pauses and resumes. */
  pendingUserText: string;
  /** Utterances whose transcript is still on its way. */
  transcriptsPending: number;
  /** Touch-tone digits being collected. */
  digits: string;
  /** Text the control API asked to say, in order. */
  announcements: Array<{ text: string; bargeIn?: BargeIn }>;
  history: ChatTurn[];
  turnId: number;
  /** The utterance being spoken: its kind, the text produced so far, and the part the caller has heard (from marks). */
  speaking: { kind: UtteranceKind; text: string; heardText: string; started: boolean; bargeIn: BargeIn } | null;
  /**
   * What the caller said over an utterance they may not cut: `speaking` while they talk, transcripts still due, and
   * the words. It becomes their next turn once the utterance has played.
   */
  held: { speaking: boolean; transcripts: number; text: string };
  silencePromptsUsed: number;
  silencePromptLimit: number;
  hangupReason: string | null;
  /** False while an outbound call rings. */
  answered: boolean;
  /** The agent asked to end the call once its reply has been heard. */
  endAfterReply: boolean;
  /** Goodbye words the hang-up asked for, instead of the standard ones. */
  farewell: string | null;
  streams: number;
}

export interface CallInput {
  callSid: string;
  mode?: CallMode;
  /** The greeting, or an outbound call's message. */
  greetingText: string;
  limits: { silencePrompts: number };
  /** Already answered (inbound, or an outbound call whose answer preceded this actor). */
  answered?: boolean;
  /** A call restored after a process restart: what it had said and heard. */
  restored?: { history: ChatTurn[]; greetingDelivered: boolean; turnId: number };
}

export const APOLOGY_TEXT = "Sorry, I'm having trouble answering right now.";
export const SILENCE_PROMPT_TEXT = "Are you still there?";
export const GOODBYE_SILENCE_TEXT = "I haven't heard anything, so I'll hang up now. Goodbye!";
export const GOODBYE_MAX_DURATION_TEXT = "We've reached the time limit for this call. Goodbye!";
export const GOODBYE_TEXT = "Goodbye!";

export const REASON_SILENT = "caller silent";
export const REASON_MAX_DURATION = "maximum call duration reached";
export const REASON_DELIVERED = "message delivered";
export const REASON_AGENT_ENDED = "the agent ended the call";

export function goodbyeText(reason: string | null): string {
  if (reason === REASON_MAX_DURATION) return GOODBYE_MAX_DURATION_TEXT;
  if (reason === REASON_SILENT) return GOODBYE_SILENCE_TEXT;
  return GOODBYE_TEXT;
}

/** How touch-tone digits reach the agent. */
export function digitsText(digits: string): string {
  return `the caller pressed ${digits.split("").join(" ")}`;
}

/** A turn that is only touch tones (see digitsText). */
export function isDigitsText(text: string): boolean {
  return /^the caller pressed( [0-9*#A-D])+$/.test(text.trim());
}

/**
 * An announcement that is touch tones, not words (the control API's `dtmf`). Announcements are queued as text; this
 * prefix, which no spoken text starts with, marks the digits that follow. History and the record show the digits.
 */
export const TONES_PREFIX = "\u0001tones:";

export function tonesOf(text: string): string | null {
  return text.startsWith(TONES_PREFIX) ? text.slice(TONES_PREFIX.length) : null;
}

/** An announcement that is a recording (a relay app's `play`): the audio stays in the runtime, only its id is here. */
export const CLIP_PREFIX = "\u0001clip:";

export function clipOf(text: string): string | null {
  return text.startsWith(CLIP_PREFIX) ? text.slice(CLIP_PREFIX.length) : null;
}
