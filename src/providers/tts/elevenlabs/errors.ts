import { errorMessage } from "../../../util/errors.ts";
/** What went wrong, for callers that react differently (e.g. apologise vs. alert an operator). */
export type ElevenLabsErrorKind =
  | "auth" // 401/403: a bad key, a key without permission, or no characters left; retrying will not help
  | "rate_limit" // 429
  | "bad_request" // 400/404/422: a wrong voice id, model, or request
  | "server" // 5xx or another unexpected status
  | "network" // could not connect, or the connection broke
  | "stall" // the server stopped answering
  | "protocol" // the server said something we cannot use
  | "closed"; // the provider was closed

/** Every error an ElevenLabs stream throws. `message` is meant to be read by a person. */
export class ElevenLabsTtsError extends Error {
  override readonly name = "ElevenLabsTtsError";
  readonly kind: ElevenLabsErrorKind;
  readonly status: number | undefined;
  /** The server's own words (ElevenLabs' `detail.status` / `detail.message`), when it sent any. */
  readonly detail: string | undefined;

  constructor(message: string, kind: ElevenLabsErrorKind, opts: { status?: number; detail?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.kind = kind;
    this.status = opts.status;
    this.detail = opts.detail;
  }

  /** An error the HTTP fallback would only repeat: fail the utterance instead of falling back. */
  get definitive(): boolean {
    return this.kind === "auth" || this.kind === "closed";
  }
}

/**
 * ElevenLabs error bodies look like `{"detail":{"status":"invalid_api_key","message":"..."}}`, `{"detail":"..."}` or
 * (validation) `{"detail":[{"loc":[...],"msg":"..."}]}`. Returns the `status` code word and a short readable text.
 */
export function parseErrorBody(body: unknown): { code?: string; text?: string } {
  let b = body;
  if (typeof body === "string") {
    try {
      b = JSON.parse(body);
    } catch {
      return { text: body.slice(0, 200) || undefined };
    }
  }
  if (!b || typeof b !== "object") return {};
  const detail = (b as { detail?: unknown }).detail ?? b;
  if (typeof detail === "string") return { text: detail.slice(0, 200) };
  if (Array.isArray(detail)) {
    const msgs = detail.map((d) => (d && typeof d === "object" && typeof (d as { msg?: unknown }).msg === "string" ? (d as { msg: string }).msg : ""));
    return { text: msgs.filter(Boolean).join("; ").slice(0, 200) || undefined };
  }
  if (typeof detail === "object" && detail) {
    const d = detail as { status?: unknown; message?: unknown; code?: unknown };
    const code = typeof d.status === "string" ? d.status : typeof d.code === "string" ? d.code : undefined;
    const text = typeof d.message === "string" ? d.message.slice(0, 200) : undefined;
    return { code, text };
  }
  return {};
}

/** The error for an HTTP status from ElevenLabs (REST or the WebSocket upgrade). */
export function statusError(status: number, body: unknown, ctx: { voiceId: string; modelId: string }): ElevenLabsTtsError {
  const { code, text } = parseErrorBody(body);
  const detail = [code, text].filter(Boolean).join(": ") || undefined;
  const suffix = detail ? ` (${detail})` : "";
  const opts = { status, detail };
  if (status === 401) {
    if (code === "quota_exceeded")
      return new ElevenLabsTtsError(`ElevenLabs: 401 quota exceeded — the account has no characters left${suffix}`, "auth", opts);
    return new ElevenLabsTtsError(`ElevenLabs: 401 Unauthorized — check ELEVENLABS_API_KEY${suffix}`, "auth", opts);
  }
  if (status === 403)
    return new ElevenLabsTtsError(`ElevenLabs: 403 Forbidden — the API key may not use text-to-speech or this voice${suffix}`, "auth", opts);
  if (status === 404)
    return new ElevenLabsTtsError(`ElevenLabs: 404 Not Found — check the voice id "${ctx.voiceId}"${suffix}`, "bad_request", opts);
  if (status === 400 || status === 422)
    return new ElevenLabsTtsError(
      `ElevenLabs: ${status} request rejected — check the model "${ctx.modelId}" and voice settings${suffix}`,
      "bad_request",
      opts,
    );
  if (status === 429)
    return new ElevenLabsTtsError(`ElevenLabs: 429 Too Many Requests — rate or concurrency limit reached${suffix}`, "rate_limit", opts);
  if (status >= 500) return new ElevenLabsTtsError(`ElevenLabs: ${status} server error — try again later${suffix}`, "server", opts);
  return new ElevenLabsTtsError(`ElevenLabs: unexpected HTTP ${status}${suffix}`, "server", opts);
}

/** A connection-level failure (refused, reset, DNS, TLS, timeout), with the system error code when there is one. */
export function networkError(what: string, cause: unknown): ElevenLabsTtsError {
  return new ElevenLabsTtsError(`ElevenLabs: ${what} (${describeCause(cause)})`, "network", { cause });
}

function describeCause(err: unknown): string {
  // undici wraps the system error: TypeError("fetch failed", { cause: Error { code: "ECONNREFUSED" } })
  let e: unknown = err;
  for (let i = 0; i < 4 && e; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && /^E[A-Z_]+$/.test(code)) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return errorMessage(err);
}
