import { createHmac, timingSafeEqual } from "node:crypto";
import { errorMessage } from "../util/errors.ts";

/**
 * Delivering a call's outcome to the session's `outcomeWebhook`. The body is signed with HMAC-SHA256 over
 * `<timestamp>.<body>` (secret OUTCOME_WEBHOOK_SECRET), so the receiver can check both who sent it and that it is not
 * an old one replayed; the scheme is Stripe's, which receivers already know how to check. Failures (network, 5xx,
 * 429, 408) are retried with exponential backoff; a 4xx other than those is the receiver saying no, and is final.
 * Every try is reported, so the record shows what happened.
 */

export const SIGNATURE_HEADER = "x-parley-signature";
export const TIMESTAMP_HEADER = "x-parley-timestamp";

export interface DeliveryAttempt {
  attempt: number;
  at: number;
  ok: boolean;
  status: number | null;
  error: string | null;
  /** Milliseconds until the next try, when there is one. */
  retryInMs: number | null;
}

export interface DeliveryOptions {
  url: string;
  body: unknown;
  secret?: string;
  /** Tries in all. Default 5. */
  attempts?: number;
  /** First wait between tries; doubled each time. Default 1000 ms. */
  backoffMs?: number;
  /** Each try's timeout. Default 10 s. */
  timeoutMs?: number;
  now: () => number;
  sleep?: (ms: number) => Promise<void>;
  onAttempt?: (a: DeliveryAttempt) => void;
  fetch?: typeof fetch;
}

/** `t=<seconds>,v1=<hex hmac of "<seconds>.<body>">`. */
export function signOutcome(secret: string, body: string, timestampS: number): string {
  const mac = createHmac("sha256", secret).update(`${timestampS}.${body}`).digest("hex");
  return `t=${timestampS},v1=${mac}`;
}

/** For receivers (and tests): is this signature valid for this body, and recent enough? */
export function verifyOutcomeSignature(secret: string, body: string, header: string | undefined, nowS: number, toleranceS = 300): boolean {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header ?? "");
  if (!m) return false;
  const t = Number(m[1]);
  if (Math.abs(nowS - t) > toleranceS) return false;
  const want = Buffer.from(signOutcome(secret, body, t).split("v1=")[1]!, "hex");
  return timingSafeEqual(want, Buffer.from(m[2]!, "hex"));
}

const retryable = (status: number) => status >= 500 || status === 429 || status === 408;

/** Deliver, retrying; resolves with whether it was delivered (never throws). */
export async function deliverOutcome(opts: DeliveryOptions): Promise<{ delivered: boolean; attempts: DeliveryAttempt[] }> {
  const attempts = opts.attempts ?? 5;
  const backoff = opts.backoffMs ?? 1000;
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref()));
  const doFetch = opts.fetch ?? fetch;
  const body = JSON.stringify(opts.body);
  const log: DeliveryAttempt[] = [];
  for (let i = 1; i <= attempts; i++) {
    const at = opts.now();
    const headers: Record<string, string> = { "content-type": "application/json", "user-agent": "parley-outcome/1" };
    const ts = Math.floor(at / 1000);
    headers[TIMESTAMP_HEADER] = String(ts);
    if (opts.secret) headers[SIGNATURE_HEADER] = signOutcome(opts.secret, body, ts);
    let status: number | null = null;
    let error: string | null = null;
    try {
      const res = await doFetch(opts.url, { method: "POST", headers, body, signal: AbortSignal.timeout(opts.timeoutMs ?? 10_000), redirect: "error" });
      status = res.status;
      await res.body?.cancel().catch(() => {});
      if (res.ok) {
        const a = { attempt: i, at, ok: true, status, error: null, retryInMs: null };
        log.push(a);
        opts.onAttempt?.(a);
        return { delivered: true, attempts: log };
      }
      error = `HTTP ${status}`;
    } catch (err) {
      error = errorMessage(err);
    }
    const again = i < attempts && (status === null || retryable(status));
    const a = { attempt: i, at, ok: false, status, error, retryInMs: again ? backoff * 2 ** (i - 1) : null };
    log.push(a);
    opts.onAttempt?.(a);
    if (!again) break;
    await sleep(a.retryInMs!);
  }
  return { delivered: false, attempts: log };
}
