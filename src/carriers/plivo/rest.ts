import { errorMessage } from "../../util/errors.ts";

/**
 * Parley's client for Plivo's Voice API (carriers.md B.3): place a call, hang it up. Plain `fetch` with Basic auth
 * and JSON, because the official `plivo` SDK always sends to https://api.plivo.com whatever its options say, and
 * Parley must be pointed at a local stand-in in tests (PLIVO_API_URL).
 */

export interface PlivoRestOptions {
  authId: string;
  authToken: string;
  /** Origin of the REST API. Default https://api.plivo.com. */
  apiUrl?: string;
  /** Per-request timeout. Default 10 s. */
  timeoutMs?: number;
}

export interface PlivoCallParams {
  /** E.164 (`+` kept; Plivo accepts it). */
  to: string;
  from: string;
  /** Asked for the `<Stream>` XML when the callee answers (POST, signed). */
  answerUrl: string;
  /** Told when the call ends, whatever the outcome (busy, no answer, completed). */
  hangupUrl: string;
  /** Told when the callee's phone rings. */
  ringUrl?: string;
  /** How long it may ring (Plivo's `ring_timeout`, default 120 s there). */
  ringTimeoutSeconds?: number;
  /** Longest call after answer (`time_limit`). */
  timeLimitSeconds?: number;
}

/** A failed REST operation; `status` is absent when Plivo never answered (network error, timeout). */
export class PlivoRestError extends Error {
  constructor(
    message: string,
    readonly operation: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = "PlivoRestError";
  }
}

export class PlivoRest {
  private readonly origin: string;
  private readonly base: string;
  private readonly auth: string;
  private readonly timeoutMs: number;

  constructor(opts: PlivoRestOptions) {
    this.origin = new URL(opts.apiUrl ?? "https://api.plivo.com").origin;
    this.base = `${this.origin}/v1/Account/${encodeURIComponent(opts.authId)}`;
    this.auth = `Basic ${Buffer.from(`${opts.authId}:${opts.authToken}`).toString("base64")}`;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
  }

  /**
   * Place a call. Resolves with Plivo's `request_uuid`: the call's id until it is answered, when the answer request
   * brings its `CallUUID`. Not retried: a retried create could place a second call.
   */
  async placeCall(p: PlivoCallParams): Promise<{ requestUuid: string; message: string }> {
    const body = {
      from: p.from,
      to: p.to,
      answer_url: p.answerUrl,
      answer_method: "POST",
      hangup_url: p.hangupUrl,
      hangup_method: "POST",
      ...(p.ringUrl ? { ring_url: p.ringUrl, ring_method: "POST" } : {}),
      ...(p.ringTimeoutSeconds !== undefined ? { ring_timeout: p.ringTimeoutSeconds } : {}),
      ...(p.timeLimitSeconds !== undefined ? { time_limit: p.timeLimitSeconds } : {}),
    };
    const res = await this.request("place call", "POST", "/Call/", body);
    const json = res.json as { request_uuid?: unknown; message?: unknown } | null;
    const id = Array.isArray(json?.request_uuid) ? json.request_uuid[0] : json?.request_uuid;
    if (typeof id !== "string" || id === "") throw new PlivoRestError(`Plivo REST place call failed: HTTP ${res.status} without a request_uuid`, "place call", res.status);
    return { requestUuid: id, message: typeof json?.message === "string" ? json.message : "" };
  }

  /**
   * End a call whatever its state: an answered call by its CallUUID, one still ringing or queued by its request_uuid
   * (Plivo keeps the two apart). A 404 means it had already ended, which is what was wanted.
   */
  async hangUp(ids: { callUuid?: string; requestUuid?: string }): Promise<"hung up" | "already ended"> {
    const tries = [ids.callUuid && `/Call/${encodeURIComponent(ids.callUuid)}/`, ids.requestUuid && `/Request/${encodeURIComponent(ids.requestUuid)}/`].filter(
      (p): p is string => !!p,
    );
    if (!tries.length) throw new PlivoRestError("Plivo REST hang up: no CallUUID or request_uuid to hang up", "hang up");
    for (const path of tries) {
      const res = await this.request(`hang up ${path}`, "DELETE", path, undefined, [404]);
      if (res.status !== 404) return "hung up";
    }
    return "already ended";
  }

  /** A harmless authenticated read (the account), to check the credentials. */
  async account(): Promise<{ authId: string; name: string }> {
    const res = await this.request("read account", "GET", "/");
    const j = (res.json ?? {}) as { auth_id?: unknown; name?: unknown };
    return { authId: String(j.auth_id ?? ""), name: String(j.name ?? "") };
  }

  /**
   * The answer URL Plivo requests when `number` is called: the number's Application's `answer_url` (null when the
   * account has no such number, or the number is linked to no application).
   */
  async voiceUrlOf(number: string): Promise<string | null> {
    const digits = number.replace(/^\+/, "");
    const num = await this.request(`read number ${number}`, "GET", `/Number/${encodeURIComponent(digits)}/`, undefined, [404]);
    if (num.status === 404) return null;
    const app = (num.json as { application?: unknown } | null)?.application;
    // `application` is the Application's resource URI, e.g. /v1/Account/MA…/Application/2998…/
    if (typeof app !== "string" || !/^\/v1\/Account\/[^/]+\/Application\/[^/]+\/$/.test(app)) return null;
    const res = await this.request(`read application of ${number}`, "GET", app, undefined, [404], true);
    const url = (res.json as { answer_url?: unknown } | null)?.answer_url;
    return res.status === 404 || typeof url !== "string" ? null : url;
  }

  private async request(operation: string, method: string, path: string, body?: unknown, accept: number[] = [], fromOrigin = false): Promise<{ status: number; json: unknown }> {
    let res: Response;
    try {
      res = await fetch(`${fromOrigin ? this.origin : this.base}${path}`, {
        method,
        headers: { authorization: this.auth, accept: "application/json", ...(body !== undefined ? { "content-type": "application/json" } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw new PlivoRestError(`Plivo REST ${operation} failed: ${errorMessage(err)}`, operation);
    }
    const text = await res.text().catch(() => "");
    let json: unknown = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      // Plivo answers JSON; a proxy's HTML error page is reported by status below.
    }
    if (res.ok || accept.includes(res.status)) return { status: res.status, json };
    const said = json && typeof json === "object" && typeof (json as { error?: unknown }).error === "string" ? `: ${(json as { error: string }).error}` : "";
    const hint = res.status === 401 ? " (check PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN)" : "";
    throw new PlivoRestError(`Plivo REST ${operation} failed: HTTP ${res.status}${said}${hint}`, operation, res.status);
  }
}
