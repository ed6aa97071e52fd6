import { generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { TELNYX_PATHS } from "../carriers/telnyx/carrier.ts";
import { send } from "./http.ts";
import type { DoctorCarrier, HttpAnswer, SignedRequest, Transport } from "./types.ts";
import { streamUrlFor } from "./urls.ts";

export interface TelnyxDoctorSettings {
  apiKey?: string | undefined;
  /** The number whose Voice API application must send its webhooks here (E.164). */
  number?: string | undefined;
  /** TELNYX_API_URL, https://api.telnyx.com/v2 by default. */
  apiUrl: string;
}

const WEBHOOK_PATH = TELNYX_PATHS.webhook;
const STREAM_PATH = TELNYX_PATHS.stream;

/**
 * Telnyx (Call Control v2) for the doctor. Telnyx signs webhooks with Ed25519 and its own private key, and admits a
 * stream by a per-call token Parley sends it in the answer command, so the doctor can neither make Parley answer nor
 * open a stream as Telnyx would: it checks that Parley serves both and refuses what is forged or tokenless. The REST
 * reads: `GET /balance` (credentials), `GET /phone_numbers?filter[phone_number]=` for the number's connection, and
 * `GET /call_control_applications/{id}` for that connection's `webhook_event_url`.
 */
export function telnyxDoctor(s: TelnyxDoctorSettings, transport: Pick<Transport, "ca" | "connectLookup" | "timeoutMs" | "now">): DoctorCarrier {
  const base = s.apiUrl.endsWith("/") ? s.apiUrl : `${s.apiUrl}/`;
  const rest = (path: string) => send(transport, new URL(path, base).toString(), { headers: { authorization: `Bearer ${s.apiKey}`, accept: "application/json" }, timeoutMs: transport.timeoutMs });
  // A key of our own: a signature Telnyx's public key cannot verify, with a fresh timestamp (only the key is wrong).
  const forger = generateKeyPairSync("ed25519").privateKey;

  const webhook = (publicUrl: URL, callId: string, mode: "signed" | "unsigned" | "forged"): SignedRequest | null => {
    if (mode === "signed") return null;
    const url = new URL(WEBHOOK_PATH, publicUrl).toString();
    const at = new Date(transport.now()).toISOString();
    const body = JSON.stringify({
      data: {
        record_type: "event",
        event_type: "call.initiated",
        id: `d0c${randomBytes(14).toString("hex")}`,
        occurred_at: at,
        payload: { call_control_id: `v3:doctor-${callId}`, direction: "incoming", from: s.number ?? "", to: s.number ?? "", state: "parked", client_state: null },
      },
      meta: { attempt: 1, delivered_to: url },
    });
    const headers: Record<string, string> = { "content-type": "application/json", "user-agent": "telnyx-webhooks (parley doctor)" };
    if (mode === "forged") {
      const ts = String(Math.floor(transport.now() / 1000));
      headers["telnyx-timestamp"] = ts;
      headers["telnyx-signature-ed25519"] = sign(null, Buffer.from(`${ts}|${body}`), forger).toString("base64");
    }
    return { method: "POST", url, headers, body };
  };

  return {
    name: "telnyx",
    missing: s.apiKey ? [] : ["TELNYX_API_KEY"],
    webhookPath: WEBHOOK_PATH,
    streamPath: STREAM_PATH,
    probeCallId: () => `d0c${randomBytes(13).toString("hex")}`,
    webhook,
    cannotSign: "Telnyx signs with its own private key, so its answer command (and the stream URL in it) is not checked",
    hangupWebhook: () => null,
    streamUrlOf: () => ({ error: "Telnyx takes the stream URL in a REST command, not in the webhook's answer" }),
    streamUpgrade(publicUrl, mode) {
      if (mode === "signed") return null;
      // A token Parley never issued, in the place a real one goes.
      return { url: `${streamUrlFor(publicUrl, STREAM_PATH)}/doctor-${randomBytes(12).toString("hex")}`, headers: {} };
    },
    cannotOpenStream: "101 not checked: only Telnyx gets the per-call token that admits a stream",
    signatureFix: "set TELNYX_PUBLIC_KEY on the running Parley (Telnyx portal: Account Settings > Keys & Credentials > Public Key) and restart it",
    readAccount: () => rest("balance"),
    credentialsFix: "set TELNYX_API_KEY to an API key from the Telnyx portal (Account Settings > Keys & Credentials > API Keys)",
    async readNumberVoiceUrl() {
      if (!s.number) return { error: "no number to check", fix: "set TELNYX_FROM_NUMBER (or pass --number) to the Telnyx number callers dial" };
      const found = await rest(`phone_numbers?filter[phone_number]=${encodeURIComponent(s.number)}`);
      if (found.status !== 200) return { error: `phone_numbers answered HTTP ${found.status}`, fix: "check the credentials (above)" };
      const n = (json(found) as { data?: Array<{ phone_number?: string; connection_id?: string | null; connection_name?: string | null }> }).data?.[0];
      if (!n) return { error: `the account has no number ${s.number}`, fix: "set TELNYX_FROM_NUMBER (or --number) to a number this account owns" };
      if (!n.connection_id)
        return { error: `${s.number} is not assigned to any connection`, fix: "in the Telnyx portal, assign the number to the Voice API (Call Control) application whose webhook is Parley's" };
      const app = await rest(`call_control_applications/${encodeURIComponent(n.connection_id)}`);
      if (app.status === 404)
        return {
          error: `${s.number} is on connection ${n.connection_id}, which is not a Voice API (Call Control) application`,
          fix: "media streaming needs a Voice API application: assign the number to one whose webhook is Parley's",
        };
      if (app.status !== 200) return { error: `call_control_applications answered HTTP ${app.status}`, fix: "check the credentials (above)" };
      const url = (json(app) as { data?: { webhook_event_url?: string } }).data?.webhook_event_url ?? null;
      return { voiceUrl: url, detail: `connection ${n.connection_id}${n.connection_name ? ` (${n.connection_name})` : ""} sends webhooks to ${url ?? "(none)"}` };
    },
    expectedVoiceUrl: (publicUrl) => new URL(WEBHOOK_PATH, publicUrl).toString(),
    maxClockSkewMs: 300_000,
    clockSkewBasis: "Telnyx's signed timestamps are refused beyond 300 s (the telnyx package's TelnyxWebhook)",
  };
}

function json(a: HttpAnswer): unknown {
  try {
    return JSON.parse(a.body);
  } catch {
    return {};
  }
}
