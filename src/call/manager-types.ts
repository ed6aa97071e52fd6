import type { CallMode } from "../../machines/call.machine.ts";

export interface CallSummary {
  callSid: string;
  direction: string | null;
  from: string | null;
  to: string | null;
  state: unknown;
  createdAt: number;
  endedAt: number | null;
  endReason: string | null;
  live: boolean;
}

export interface OutboundRequest {
  to: string;
  from?: string;
  mode?: CallMode;
  /** The first words; the session's `message` when omitted there. */
  message?: string;
  /** What the call is for (validated here: see src/session/session.ts). */
  session?: unknown;
}

/** Where carriers reach us, from the configured public origin. */
export interface PublicUrls {
  /** https:// origin of webhooks (PUBLIC_URL). */
  webhookOrigin: string;
  /** wss:// origin of media streams (INSTANCE_URL in a fleet, else PUBLIC_URL). */
  streamOrigin: string;
}

/** No slot under MAX_CONCURRENT_CALLS: the caller should try again later (503 with Retry-After, or a busy signal). */
export class CapacityError extends Error {
  constructor(
    message: string,
    readonly retryAfterS: number,
  ) {
    super(message);
  }
}

/** A request the caller must fix (4xx). */
export class RequestError extends Error {
  constructor(
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}
