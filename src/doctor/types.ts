import type { LookupFunction } from "node:net";

/** One line of the checklist. */
export interface CheckResult {
  id: string;
  title: string;
  status: "pass" | "fail" | "skip";
  /** What was found, in a few words ("answered 200 text/xml naming wss://…"). */
  detail: string;
  /** For a failure or a skip: what to do about it. */
  fix?: string;
  ms: number;
}

/** An answer from the wire, kept small: what the checks look at. */
export interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** How the doctor reaches the deployment and the carrier. The defaults are the real network; tests inject stand-ins. */
export interface Transport {
  /** Resolve a host name to all its addresses (default: node:dns lookup, all families). */
  resolve: (host: string) => Promise<string[]>;
  /** Extra trusted CA certificates for https/wss (default: the system's). */
  ca?: string | Buffer;
  /** Where connections to a host actually go (default: the system resolver); like curl's --resolve. */
  connectLookup?: LookupFunction;
  /** Milliseconds since the epoch (default Date.now): the clock check compares it with the carrier's. */
  now: () => number;
  /** Per-check limit, ms. */
  timeoutMs: number;
}

/** The probe the doctor sends as the carrier would: an inbound call's webhook, and its end. */
export interface SignedRequest {
  method: "POST" | "GET";
  url: string;
  headers: Record<string, string>;
  body: string;
}

/**
 * What the doctor needs to know about one carrier. Everything carrier-specific lives here: how the carrier signs, what
 * its answer document looks like, and its REST reads. The checks themselves (src/doctor/checks.ts) are the same for all.
 */
export interface DoctorCarrier {
  name: string;
  /** Settings the doctor needs and lacks (env var names); checks that need them are skipped with this list. */
  missing: string[];
  /** Parley's webhook for this carrier's inbound calls, and the stream path, under PUBLIC_URL. */
  webhookPath: string;
  streamPath: string;
  /** A fresh call id of the carrier's shape for a probe, recognisable in Parley's records (it holds "d0c"). */
  probeCallId(): string;
  /**
   * An inbound-call webhook as the carrier would send it, with a probe call id: "signed" as the carrier signs (null when
   * the doctor cannot: Telnyx signs with its own private key), "unsigned" with no signature, "forged" with a signature
   * made with the wrong key.
   */
  webhook(publicUrl: URL, callId: string, mode: "signed" | "unsigned" | "forged"): SignedRequest | null;
  /** Why the doctor cannot sign a webhook as this carrier (shown when `webhook(…, "signed")` is null). */
  cannotSign?: string;
  /** After the probe: the carrier's "the caller hung up", so Parley ends the probe call cleanly. Null if none. */
  hangupWebhook(publicUrl: URL, callId: string): SignedRequest | null;
  /** The stream URL the answer names, or why none could be read. */
  streamUrlOf(answer: HttpAnswer): { url: string } | { error: string; fix?: string };
  /**
   * A stream upgrade: "signed" as the carrier would open it (null when only Parley can mint what admits it: Telnyx's
   * per-call token), "unsigned" with nothing that admits it. `named`: the stream URL the webhook's answer named, when
   * it is the right one (Plivo's carries the probe call's token).
   */
  streamUpgrade(publicUrl: URL, mode: "signed" | "unsigned", named?: string): { url: string; headers: Record<string, string> } | null;
  /** Why the doctor cannot open a stream as the carrier does (shown when `streamUpgrade(…, "signed")` is null). */
  cannotOpenStream?: string;
  /** How to turn Parley's signature checks on for this carrier (the fix when they are off). */
  signatureFix: string;
  /** A harmless authenticated read: the account. */
  readAccount(): Promise<HttpAnswer>;
  /** How to explain a failed account read. */
  credentialsFix: string;
  /** The number's configured voice URL, read through the REST API. */
  readNumberVoiceUrl(): Promise<{ voiceUrl: string | null; detail: string } | { error: string; fix: string }>;
  /** What the number's voice URL must be. */
  expectedVoiceUrl(publicUrl: URL): string;
  /** How far the local clock may be from the carrier's before signatures or their checks go wrong, ms. */
  maxClockSkewMs: number;
  /** Why that bound (shown with the clock check). */
  clockSkewBasis: string;
}
