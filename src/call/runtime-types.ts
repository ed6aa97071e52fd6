import type { CallMode, ChatTurn } from "../../machines/call.machine.ts";
import type { CallStatus, Carrier } from "../carriers/carrier.ts";
import type { CallRecord } from "../store/call-record.ts";
import type { Session } from "../session/session.ts";

/** The socket side of a media stream, as the runtime needs it. */
export interface StreamSocket {
  /** A text or binary frame, as the carrier's codec serialized it. */
  send(data: string | Buffer): void;
  /** Close with a code and reason; a peer that does not answer the close handshake is cut off. */
  close(code?: number, reason?: string): void;
}

/** Close code for a stream replaced by a newer one of the same call. */
export const REPLACED_CLOSE_CODE = 4001;

export type CallDirection = "inbound" | "outbound" | "browser";

export interface CallInit {
  /** Parley's id for the call (it names the record and its files). */
  callSid: string;
  /** The carrier the call comes through. */
  carrier: Carrier;
  /** The carrier's id for the call, when it differs from Parley's or is known (see Carrier.callIds). */
  carrierCallId?: string;
  from?: string;
  to?: string;
  /** "browser": the softphone; there is no carrier call behind it, so hang-up and a dropped socket just end it. */
  direction?: CallDirection;
  mode?: CallMode;
  /** The greeting (inbound) or the message (outbound); defaults to the configured greeting. */
  greetingText?: string;
  /** False for an outbound call that is still ringing. */
  answered?: boolean;
  /** A call brought back from its record after a process restart. */
  restored?: { history: ChatTurn[]; greetingDelivered: boolean; turnId: number; record: CallRecord };
  /** What the call is for; a restored call keeps the one in its record. */
  session?: Session;
}

/** A call status, as `CallRuntime.onStatus` takes it. */
export interface StatusUpdate {
  status: CallStatus;
  carrierStatus: string;
  sequence?: string;
  durationS?: string;
  answeredBy?: string;
}
