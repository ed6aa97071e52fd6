/**
 * What the MCP tools need from Parley: one method per control API endpoint, nothing more. The tools are written
 * against this interface, so the stdio server (a separate process, over the network) and the `/mcp` route (inside
 * the service) drive calls through exactly the same API, with its validation, auth, and error messages.
 */
import type { CallRecord } from "../store/call-record.ts";
import type { Outcome } from "../outcome/outcome.ts";
import type { CallSummary } from "../call/call-manager.ts";

export type Agent = "llm" | "assistant" | { relay: string };

/** `POST /api/calls`: fields left undefined are not sent, so the API's own defaults apply. */
export interface PlaceCallRequest {
  to: string;
  from?: string;
  message?: string;
  mode?: "conversation" | "notify";
  instructions?: string;
  agent?: Agent;
  outcomeSchema?: Record<string, unknown>;
  outcomeWebhook?: string;
  voice?: string;
  language?: string;
  tools?: string[];
  metadata?: Record<string, unknown>;
  filler?: string;
  record?: boolean;
  recordingNotice?: string;
  voicemail?: "leave" | "hangup" | "continue";
  voicemailMessage?: string;
}

/** A call as `GET /api/calls/:callSid` serves it. `session` and `outcome` come with the outcome-aware API. */
export type CallView = CallRecord & {
  live: boolean;
  session?: Record<string, unknown> | null;
  /** Null until the call has ended and its outcome is written. */
  outcome?: Outcome | null;
};

/** One row of `GET /api/calls`: the service's own summary type (a type only; nothing of the service is loaded). */
export type CallListItem = CallSummary;

export interface ListCallsQuery {
  state?: string;
  direction?: string;
  since?: number;
  limit?: number;
}

export interface TransferCallRequest {
  to?: string;
  mode?: "cold" | "warm";
  announcement?: string;
  briefing?: string;
}

export type AskStatus = "answered" | "silence" | "ended" | "interrupted";
export interface AskResult {
  reply: string | null;
  status: AskStatus;
}

/** One Server-Sent Event of a call's stream; `data` is the parsed JSON (or the raw text if it is not JSON). */
export interface CallEvent {
  event: string;
  data: unknown;
}

export interface ParleyApi {
  placeCall(req: PlaceCallRequest): Promise<CallView>;
  getCall(callSid: string): Promise<CallView>;
  listCalls(query: ListCallsQuery): Promise<CallListItem[]>;
  ask(callSid: string, req: { text: string; timeoutMs?: number }): Promise<AskResult>;
  speak(callSid: string, req: { text: string; interrupt?: boolean }): Promise<void>;
  dtmf(callSid: string, digits: string): Promise<void>;
  /** `POST /api/calls/:callSid/transfer`. */
  transfer(callSid: string, req: TransferCallRequest): Promise<{ mode: string; to: string }>;
  hangup(callSid: string, message?: string): Promise<void>;
  /** The call's events until the server ends the stream (after `end`) or `signal` aborts. */
  events(callSid: string, signal: AbortSignal): AsyncIterable<CallEvent>;
}

/** The API answered with an error: `message` is its own `{ error }` text, which the tools pass on verbatim. */
export class ParleyApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "ParleyApiError";
  }
}

/** Nothing answered (refused, unknown host, reset before a response). */
export class ParleyUnreachableError extends Error {
  constructor(
    readonly url: string,
    options?: { cause?: unknown },
  ) {
    super(`cannot reach Parley at ${url}`, options);
    this.name = "ParleyUnreachableError";
  }
}
