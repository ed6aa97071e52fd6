import twilio from "twilio";
import type RequestClient from "twilio/lib/base/RequestClient.js";
import { errorMessage } from "../../util/errors.ts";

/**
 * Parley's client for Twilio's REST API (create an outbound call, hang up), built on the official `twilio` library so
 * the wire format (form encoding, repeated array keys, Basic auth) is exactly what Twilio's SDK sends.
 */

/** Inline TwiML on a REST-created call is capped by Twilio (error 32018); we refuse before spending a request. */
export const MAX_INLINE_TWIML_CHARS = 4000;

export const DEFAULT_STATUS_CALLBACK_EVENTS = ["initiated", "ringing", "answered", "completed"] as const;

export interface TwilioRestOptions {
  accountSid: string;
  authToken: string;
  /** Origin of the REST API, e.g. http://127.0.0.1:4567 for a local stand-in. Default https://api.twilio.com. */
  apiUrl?: string;
  /** Per-request timeout. Default 10 s. */
  timeoutMs?: number;
}

export interface CreateCallParams {
  to: string;
  from: string;
  /** Inline TwiML executed when the callee answers (at most 4000 characters). */
  twiml: string;
  statusCallback: string;
  /** Default: initiated, ringing, answered, completed. */
  statusCallbackEvent?: string[];
  /** Ring timeout (Twilio's `Timeout`). */
  timeoutSeconds?: number;
  /** Maximum call duration (Twilio's `TimeLimit`). */
  timeLimitSeconds?: number;
  /** Ask for asynchronous answering-machine detection, reported to this URL (MachineDetection=DetectMessageEnd). */
  amdCallback?: string;
}

/** A failed REST operation. `status`/`code` are absent when Twilio never answered (network error, timeout). */
export class TwilioRestError extends Error {
  constructor(
    message: string,
    readonly operation: string,
    readonly status?: number,
    readonly code?: number,
  ) {
    super(message);
    this.name = "TwilioRestError";
  }
}

/**
 * twilio-node has no base-URL option, so the HTTP client rewrites every request's origin to `apiUrl` and keeps the
 * path (`/2010-04-01/Accounts/...`). Every request is rebased, the default origin included, so TWILIO_EDGE /
 * TWILIO_REGION in the environment (which the SDK reads on its own) cannot send Parley's requests elsewhere.
 */
class RebasingRequestClient extends twilio.RequestClient {
  constructor(
    private readonly origin: URL,
    timeoutMs: number,
  ) {
    // No auto-retry: a retried create could place a second call; the caller decides what to do with a 429.
    super({ timeout: timeoutMs, autoRetry: false });
  }

  override request<TData>(opts: RequestClient.RequestOptions<TData>) {
    const uri = new URL(opts.uri);
    const rebased = new URL(uri.pathname + uri.search, this.origin);
    return super.request<TData>({ ...opts, uri: rebased.toString() });
  }
}

export class TwilioRest {
  private readonly client: twilio.Twilio;

  constructor(opts: TwilioRestOptions) {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const origin = new URL(opts.apiUrl ?? "https://api.twilio.com");
    this.client = twilio(opts.accountSid, opts.authToken, {
      httpClient: new RebasingRequestClient(origin, timeoutMs),
      autoRetry: false,
      timeout: timeoutMs,
    });
  }

  /** Place an outbound call that runs `twiml` when answered. Resolves with Twilio's Call SID and initial status. */
  async createCall(p: CreateCallParams): Promise<{ sid: string; status: string }> {
    const length = [...p.twiml].length;
    if (length > MAX_INLINE_TWIML_CHARS) {
      throw new TwilioRestError(
        `Twilio REST create call refused locally: inline TwiML is ${length} characters, Twilio's limit is ${MAX_INLINE_TWIML_CHARS} (error 32018)`,
        "create call",
      );
    }
    const call = await this.run("create call", () =>
      this.client.calls.create({
        to: p.to,
        from: p.from,
        twiml: p.twiml,
        statusCallback: p.statusCallback,
        statusCallbackMethod: "POST",
        statusCallbackEvent: p.statusCallbackEvent ?? [...DEFAULT_STATUS_CALLBACK_EVENTS],
        ...(p.timeoutSeconds !== undefined ? { timeout: p.timeoutSeconds } : {}),
        ...(p.timeLimitSeconds !== undefined ? { timeLimit: p.timeLimitSeconds } : {}),
        ...(p.amdCallback
          ? { machineDetection: "DetectMessageEnd", asyncAmd: "true", asyncAmdStatusCallback: p.amdCallback, asyncAmdStatusCallbackMethod: "POST" }
          : {}),
      }),
    );
    return { sid: call.sid, status: call.status };
  }

  /** End a call whatever its state (`Status=completed`; Twilio sends `stop` on the stream and closes it). */
  async hangup(callSid: string): Promise<void> {
    await this.run(`hang up call ${callSid}`, () => this.client.calls(callSid).update({ status: "completed" }));
  }

  /**
   * Replace the TwiML a live call is running (Twilio's `Twiml` update): a transfer's `<Dial>` or `<Conference>`.
   * A call inside `<Connect><Stream>` leaves it, so its media stream ends (`stop`).
   */
  async updateTwiml(callSid: string, twiml: string): Promise<void> {
    const length = [...twiml].length;
    if (length > MAX_INLINE_TWIML_CHARS) throw new TwilioRestError(`Twilio REST update call refused locally: inline TwiML is ${length} characters (limit ${MAX_INLINE_TWIML_CHARS})`, "update call");
    await this.run(`update call ${callSid}`, () => this.client.calls(callSid).update({ twiml }));
  }

  private async run<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw toRestError(operation, err);
    }
  }
}

function toRestError(operation: string, err: unknown): TwilioRestError {
  if (err instanceof twilio.RestException || isRestExceptionLike(err)) {
    const e = err as { status: number; code?: number; message?: string; moreInfo?: string };
    // RestException's message is Twilio's message, or "[HTTP n] Failed to execute request" when the body had none.
    const message = e.message && !e.message.startsWith("[HTTP ") ? e.message : null;
    const detail = [e.code !== undefined ? `Twilio error ${e.code}${message ? `:` : ""}` : null, message, e.moreInfo ? `(${e.moreInfo})` : null]
      .filter(Boolean)
      .join(" ");
    return new TwilioRestError(`Twilio REST ${operation} failed: HTTP ${e.status}${detail ? `, ${detail}` : ""}`, operation, e.status, e.code);
  }
  // Network failures and timeouts (axios errors) never got an answer from Twilio.
  const message = errorMessage(err);
  return new TwilioRestError(`Twilio REST ${operation} failed: ${message}`, operation);
}

function isRestExceptionLike(err: unknown): boolean {
  return typeof err === "object" && err !== null && typeof (err as { status?: unknown }).status === "number" && "moreInfo" in err;
}
