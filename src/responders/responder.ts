import type { AgentAction, ChatMessage } from "../providers/types.ts";

/**
 * The brain of a call, behind one interface. The statechart owns the floor (who speaks, barge-in, timers); the
 * responder only answers a caller's turn with a stream of things to say and do. Implementations:
 * - the cascade: an LLM agent (or the embedded demo agent), whose text Parley's TTS speaks;
 * - a ConversationRelay app: Parley plays Twilio's part of that WebSocket protocol, and the app's tokens are spoken;
 * - an assistant driving turns from outside (`POST /api/calls/:id/ask`, MCP `ask`).
 * Nothing in `machines/`, the per-frame path or the playout knows which one runs.
 */

export type ResponderItem = string | AgentAction;

export interface CallerTurn {
  turnId: number;
  /** What the caller said (or "the caller pressed 1 2 3"); may be empty when nothing was recognised. */
  userText: string;
  /** The conversation so far, oldest first; interrupted replies hold only what the caller heard. */
  history: ChatMessage[];
  signal: AbortSignal;
  /**
   * Present on a speculative turn (started before the caller's turn is confirmed over): await it before anything
   * with side effects; true once the turn is confirmed, false when the guess is discarded. See AgentTurnInput.
   */
  confirm?: () => Promise<boolean>;
}

export interface Interruption {
  turnId: number;
  /** The words of the reply the caller actually heard before talking over it. */
  heardText: string;
  /** How long the reply had played. */
  durationMs: number;
}

/** What a responder may do on its own, outside a turn (a relay app that speaks unprompted, or ends the call). */
export interface ResponderHost {
  callSid: string;
  from: string | null;
  to: string | null;
  direction: string;
  /** Say something at the next pause (or at once with `interrupt`), as the control API's `speak` does. */
  say(text: string, opts?: { interrupt?: boolean }): void;
  /** End the call once what was said has been heard; `handoffData` goes into the record and the outcome. */
  end(reason: string, handoffData?: unknown): void;
  /** Play 8 kHz mu-law audio (a relay app's `play`), as its own utterance. */
  playAudio?(mulaw: Uint8Array, opts?: { interrupt?: boolean }): void;
  /** Record an event in the call's record. */
  record(type: string, data?: Record<string, unknown>): void;
  now(): number;
}

export interface Responder {
  readonly kind: "cascade" | "relay" | "assistant";
  /** Whether a reply may start on a stable transcript before the turn is confirmed (it must have no side effects). */
  readonly speculates: boolean;
  /** The call's media is up: connect to whatever the responder needs (a relay app's socket), with the call's facts. */
  open?(host: ResponderHost): Promise<void> | void;
  /** Answer one caller turn. Stops promptly, delivering nothing more, once `turn.signal` aborts. */
  respond(turn: CallerTurn): AsyncIterable<ResponderItem>;
  /** The caller talked over a reply. */
  interrupted?(i: Interruption): void;
  /** Touch tones, as they arrive (a relay app wants each digit). */
  dtmf?(digit: string): void;
  /** The call is over (or moving to another instance). */
  close(reason: string): void;
}
