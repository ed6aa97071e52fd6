import { randomBytes, randomUUID } from "node:crypto";
import { PLIVO_PATHS } from "../carriers/plivo/carrier.ts";
import { signPlivoV3 } from "../carriers/plivo/signature.ts";
import { send } from "./http.ts";
import type { DoctorCarrier, HttpAnswer, SignedRequest, Transport } from "./types.ts";
import { streamUrlFor } from "./urls.ts";

export interface PlivoDoctorSettings {
  authId?: string | undefined;
  authToken?: string | undefined;
  /** The number whose Application must answer here (E.164). */
  number?: string | undefined;
  /** PLIVO_API_URL, https://api.plivo.com by default. */
  apiUrl: string;
}

const { webhook: WEBHOOK_PATH, status: STATUS_PATH, stream: STREAM_PATH } = PLIVO_PATHS;

/**
 * Plivo for the doctor: signature V3 (HMAC-SHA256 over the URL, the sorted POST parameters and a nonce, keyed by the
 * auth token; `signPlivoV3`, which Parley's own tests check against the official helper), Plivo XML
 * `<Stream>wss://…</Stream>`, and the REST reads `GET /v1/Account/{auth_id}/`, `GET …/Number/{number}/` and the
 * number's `Application` (its `answer_url`). The stream upgrade is signed as a GET over the stream URL with `https://`,
 * as Plivo's stream SDK does behind TLS (Parley accepts the `http://` form too: which one Plivo uses is not documented).
 */
export function plivoDoctor(s: PlivoDoctorSettings, transport: Pick<Transport, "ca" | "connectLookup" | "timeoutMs">): DoctorCarrier {
  const missing = [!s.authId && "PLIVO_AUTH_ID", !s.authToken && "PLIVO_AUTH_TOKEN"].filter((x): x is string => !!x);
  const auth = `Basic ${Buffer.from(`${s.authId}:${s.authToken}`).toString("base64")}`;
  const rest = (path: string) => send(transport, new URL(path, s.apiUrl).toString(), { headers: { authorization: auth, accept: "application/json" }, timeoutMs: transport.timeoutMs });
  const account = `/v1/Account/${s.authId}/`;

  const signed = (method: "GET" | "POST", url: string, params: Record<string, string>, key: string | undefined): Record<string, string> => {
    if (!key) return {};
    const nonce = randomBytes(10).toString("hex");
    return { "x-plivo-signature-v3": signPlivoV3(key, method, url, nonce, params), "x-plivo-signature-v3-nonce": nonce };
  };
  const form = (publicUrl: URL, path: string, params: Record<string, string>, mode: "signed" | "unsigned" | "forged"): SignedRequest => {
    const url = new URL(path, publicUrl).toString();
    const key = mode === "forged" ? randomBytes(16).toString("hex") : mode === "signed" ? s.authToken : undefined;
    return {
      method: "POST",
      url,
      headers: { "content-type": "application/x-www-form-urlencoded", "user-agent": "PlivoHTTP (parley doctor)", ...signed("POST", url, params, key) },
      body: new URLSearchParams(params).toString(),
    };
  };
  const digits = (s.number ?? "").replace(/^\+/, "");
  const callParams = (callId: string, status: string): Record<string, string> => ({
    CallUUID: callId,
    Direction: "inbound",
    From: digits,
    To: digits,
    CallStatus: status,
    Event: status === "completed" ? "Hangup" : "StartApp",
  });

  return {
    name: "plivo",
    missing,
    webhookPath: WEBHOOK_PATH,
    streamPath: STREAM_PATH,
    probeCallId: () => `d0c${randomUUID().slice(3)}`,
    webhook: (publicUrl, callId, mode) => form(publicUrl, WEBHOOK_PATH, callParams(callId, "ringing"), mode),
    hangupWebhook: (publicUrl, callId) => form(publicUrl, STATUS_PATH, { ...callParams(callId, "completed"), HangupCause: "NORMAL_CLEARING", Duration: "0" }, "signed"),
    streamUrlOf(answer: HttpAnswer) {
      const type = String(answer.headers["content-type"] ?? "");
      if (!/xml/i.test(type)) return { error: `answered ${type || "no content type"}, not Plivo XML` };
      if (/<Hangup\b/.test(answer.body) && !/<Stream\b/.test(answer.body))
        return { error: "answered <Hangup>: Parley refused the probe call", fix: `INBOUND_POLICY refuses it, or Parley is at capacity: add ${s.number ?? "the number"} to INBOUND_ALLOWLIST to let the doctor through` };
      const m = /<Stream\b[^>]*>([^<]*)<\/Stream>/.exec(answer.body);
      if (!m) return { error: "the XML has no <Stream>" };
      return { url: decodeXml(m[1]!.trim()) };
    },
    streamUpgrade(publicUrl, mode, named) {
      if (mode === "signed") {
        // Admitted by the signature and the probe call's token, both in the URL the answer named.
        if (!named || !s.authToken) return null;
        const https = new URL(named);
        https.protocol = "https:";
        return { url: named, headers: signed("GET", https.toString(), {}, s.authToken) };
      }
      return { url: named ?? `${streamUrlFor(publicUrl, STREAM_PATH)}?token=doctor-${randomBytes(12).toString("hex")}`, headers: {} };
    },
    cannotOpenStream: "101 not checked: the signed upgrade needs the stream URL (and its token) from the webhook's answer",
    signatureFix: "set PLIVO_AUTH_TOKEN on the running Parley to the account's Auth Token (Plivo console, Overview) and restart it",
    readAccount: () => rest(account),
    credentialsFix: "set PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN to the Auth ID and Auth Token on the Plivo console's Overview",
    async readNumberVoiceUrl() {
      if (!s.number) return { error: "no number to check", fix: "set PLIVO_FROM_NUMBER (or pass --number) to the Plivo number callers dial" };
      const n = await rest(`${account}Number/${encodeURIComponent(digits)}/`);
      if (n.status === 404) return { error: `the account has no number ${s.number}`, fix: "set PLIVO_FROM_NUMBER (or --number) to a number this account owns" };
      if (n.status !== 200) return { error: `Number answered HTTP ${n.status}`, fix: "check the credentials (above)" };
      const appUri = (json(n) as { application?: string | null }).application;
      if (!appUri) return { error: `${s.number} has no Application`, fix: `in the Plivo console, give the number an XML Application whose answer URL is Parley's` };
      const app = await rest(appUri);
      if (app.status !== 200) return { error: `the number's Application (${appUri}) answered HTTP ${app.status}`, fix: "check the credentials (above)" };
      const a = json(app) as { answer_url?: string; answer_method?: string; app_name?: string };
      const method = (a.answer_method ?? "POST").toUpperCase();
      // Parley's answer route takes POST only: a GET answer URL would fail every call, so it counts as wrong.
      const voiceUrl = method === "POST" ? (a.answer_url ?? null) : `${method} ${a.answer_url ?? ""}`;
      return { voiceUrl, detail: `Application ${a.app_name ?? appUri} answers with ${method} ${a.answer_url ?? "(none)"}` };
    },
    expectedVoiceUrl: (publicUrl) => new URL(WEBHOOK_PATH, publicUrl).toString(),
    // V3 signatures carry a nonce, no timestamp: as for Twilio, the bound is Parley's own for signed timestamps.
    maxClockSkewMs: 5 * 60_000,
    clockSkewBasis: "Plivo's V3 signatures carry no timestamp; 5 min is Parley's bound for signed timestamps",
  };
}

function json(a: HttpAnswer): unknown {
  try {
    return JSON.parse(a.body);
  } catch {
    return {};
  }
}

function decodeXml(s: string): string {
  return s.replace(/&(amp|lt|gt|quot|apos);/g, (_, e: string) => ({ amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" })[e]!);
}
