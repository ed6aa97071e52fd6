import type { ResponderHost } from "../responder.ts";
import type { InterruptibleSetting, SetupMessage } from "./protocol.ts";

export interface RelayResponderOptions {
  /** The app's WebSocket URL, ws:// or wss://; signed and sent as given (query included). */
  url: string;
  /** The secret that plays the account's AuthToken: when set, the upgrade carries `X-Twilio-Signature`. */
  authToken?: string;
  /** `<Parameter>`s of the session, sent in `setup.customParameters`. */
  customParameters?: Record<string, string>;
  /** `setup` fields Parley has no value of its own for. */
  accountSid?: string;
  sessionId?: string;
  parentCallSid?: string;
  forwardedFrom?: string;
  callerName?: string;
  callType?: string;
  /** `prompt.lang`: the language Parley's recogniser listens in. Default "en-US". */
  lang?: string;
  /** Session defaults of the TwiML attributes, overridden per message. Defaults: "any", false, true. */
  interruptible?: InterruptibleSetting;
  preemptible?: boolean;
  dtmfDetection?: boolean;
  /** Default 5000 ms per connect attempt; 200 ms before the one retry. */
  connectTimeoutMs?: number;
  retryDelayMs?: number;
  /** A reply that stalls this long without a token ends (its late tokens are dropped). Default 30 s. */
  replyTimeoutMs?: number;
  /** Out-of-turn text without a clause end or `last` is said after this long without a token. Default 1000 ms. */
  flushAfterMs?: number;
  /** Bounds on a `play` download and on the audio a `loop` may build (8 kHz mu-law bytes, default 5 minutes). */
  play?: { maxBytes?: number; timeoutMs?: number; maxAudioBytes?: number };
}

/** The `setup` frame: the call's facts from the host, the rest from the options, every value a string. */
export function setupMessage(o: RelayResponderOptions, sessionId: string, h: ResponderHost): SetupMessage {
  return {
    type: "setup",
    sessionId,
    accountSid: o.accountSid ?? "AC00000000000000000000000000000000",
    parentCallSid: o.parentCallSid ?? "",
    callSid: h.callSid,
    from: h.from ?? "",
    to: h.to ?? "",
    forwardedFrom: o.forwardedFrom ?? "",
    callType: o.callType ?? "PSTN",
    callerName: o.callerName ?? "",
    direction: h.direction,
    callStatus: "in-progress",
    customParameters: { ...o.customParameters },
  };
}
