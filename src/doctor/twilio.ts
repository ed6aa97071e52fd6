import { randomBytes } from "node:crypto";
import twilio from "twilio";
import { TWILIO_PATHS } from "../carriers/twilio/carrier.ts";
import { streamUrlFor } from "./urls.ts";
import { send } from "./http.ts";
import type { DoctorCarrier, HttpAnswer, SignedRequest, Transport } from "./types.ts";

export interface TwilioDoctorSettings {
  accountSid?: string | undefined;
  authToken?: string | undefined;
  /** The number whose voice URL must point here (E.164). */
  number?: string | undefined;
  /** REST origin (TWILIO_API_URL), https://api.twilio.com by default. */
  apiUrl: string;
}

const API = "/2010-04-01";

/**
 * Twilio for the doctor: X-Twilio-Signature (HMAC-SHA1 over URL + sorted form params, computed by the official
 * library), TwiML `<Connect><Stream url>`, and the REST reads Accounts/{sid}.json and IncomingPhoneNumbers.json.
 */
export function twilioDoctor(s: TwilioDoctorSettings, transport: Pick<Transport, "ca" | "connectLookup" | "timeoutMs">): DoctorCarrier {
  const missing = [!s.accountSid && "TWILIO_ACCOUNT_SID", !s.authToken && "TWILIO_AUTH_TOKEN"].filter((x): x is string => !!x);
  const auth = `Basic ${Buffer.from(`${s.accountSid}:${s.authToken}`).toString("base64")}`;
  const rest = (path: string) => send(transport, new URL(`${API}/Accounts/${s.accountSid}${path}`, s.apiUrl).toString(), { headers: { authorization: auth }, timeoutMs: transport.timeoutMs });

  const form = (publicUrl: URL, path: string, params: Record<string, string>, mode: "signed" | "unsigned" | "forged"): SignedRequest => {
    const url = new URL(path, publicUrl).toString();
    const headers: Record<string, string> = { "content-type": "application/x-www-form-urlencoded", "user-agent": "TwilioProxy/1.1 (parley doctor)" };
    const key = mode === "forged" ? randomBytes(16).toString("hex") : mode === "signed" ? s.authToken : undefined;
    if (key) headers["x-twilio-signature"] = twilio.getExpectedTwilioSignature(key, url, params);
    return { method: "POST", url, headers, body: new URLSearchParams(params).toString() };
  };
  const callParams = (callId: string, status: string): Record<string, string> => ({
    AccountSid: s.accountSid ?? "",
    ApiVersion: "2010-04-01",
    CallSid: callId,
    CallStatus: status,
    Direction: "inbound",
    From: s.number ?? "",
    To: s.number ?? "",
  });

  return {
    name: "twilio",
    missing,
    webhookPath: TWILIO_PATHS.webhook,
    streamPath: TWILIO_PATHS.stream,
    probeCallId: () => `CAd0c${randomBytes(16).toString("hex").slice(0, 29)}`,
    webhook: (publicUrl, callId, mode) => form(publicUrl, TWILIO_PATHS.webhook, callParams(callId, "ringing"), mode),
    hangupWebhook: (publicUrl, callId) => form(publicUrl, TWILIO_PATHS.status, { ...callParams(callId, "completed"), CallDuration: "0" }, "signed"),
    streamUrlOf(answer: HttpAnswer) {
      const type = String(answer.headers["content-type"] ?? "");
      if (!/xml/i.test(type)) return { error: `answered ${type || "no content type"}, not TwiML (text/xml)` };
      if (/<Reject\b/.test(answer.body))
        return {
          error: `answered <Reject>: Parley refused the probe call (from ${s.number ?? "no number"})`,
          fix: `INBOUND_POLICY refuses it, or Parley is at capacity: add ${s.number ?? "the number"} to INBOUND_ALLOWLIST to let the doctor through`,
        };
      const m = /<Stream\b[^>]*\burl="([^"]*)"/.exec(answer.body);
      if (!m) return { error: "the TwiML has no <Connect><Stream url>" };
      return { url: decodeXml(m[1]!) };
    },
    // Twilio signs the upgrade over the wss:// URL with no parameters (the token travels inside the stream).
    streamUpgrade(publicUrl, mode) {
      const url = streamUrlFor(publicUrl, TWILIO_PATHS.stream);
      const headers: Record<string, string> = mode === "signed" && s.authToken ? { "x-twilio-signature": twilio.getExpectedTwilioSignature(s.authToken, url, {}) } : {};
      return { url, headers };
    },
    signatureFix: "set TWILIO_AUTH_TOKEN on the running Parley to the account's Auth Token, drop ALLOW_UNSIGNED_WEBHOOKS=true, and restart it",
    readAccount: () => rest(".json"),
    credentialsFix: "set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN to the Account SID and Auth Token in the Twilio console (Account info)",
    async readNumberVoiceUrl() {
      if (!s.number) return { error: "no number to check", fix: "set TWILIO_FROM_NUMBER (or pass --number) to the Twilio number callers dial" };
      const answer = await rest(`/IncomingPhoneNumbers.json?PhoneNumber=${encodeURIComponent(s.number)}`);
      if (answer.status !== 200) return { error: `IncomingPhoneNumbers answered HTTP ${answer.status}`, fix: "check the credentials (above)" };
      const list = (JSON.parse(answer.body) as { incoming_phone_numbers?: Array<Record<string, string | null>> }).incoming_phone_numbers ?? [];
      const n = list[0];
      if (!n) return { error: `the account has no number ${s.number}`, fix: `set TWILIO_FROM_NUMBER (or --number) to a number this account owns` };
      if (n.voice_application_sid)
        return {
          error: `${s.number} hands calls to TwiML App ${n.voice_application_sid}, so its own voice URL is ignored`,
          fix: `in the Twilio console, set the number's "A call comes in" to Webhook, not a TwiML App`,
        };
      return { voiceUrl: n.voice_url ?? null, detail: `${n.voice_method ?? "POST"} ${n.voice_url ?? "(none)"}` };
    },
    expectedVoiceUrl: (publicUrl) => new URL(TWILIO_PATHS.webhook, publicUrl).toString(),
    // Twilio's own signatures carry no timestamp. 5 minutes is the skew Telnyx allows on its signed timestamps and
    // what Parley allows on its own (outcome webhooks): a clock further off than that is broken for any carrier.
    maxClockSkewMs: 5 * 60_000,
    clockSkewBasis: "Twilio's signatures carry no timestamp; 5 min is Parley's bound for signed timestamps",
  };
}

function decodeXml(s: string): string {
  return s.replace(/&(amp|lt|gt|quot|apos);/g, (_, e: string) => ({ amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" })[e]!);
}
