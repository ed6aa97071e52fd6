import { randomBytes } from "node:crypto";
import WebSocket from "ws";
import { startMessage, streamFromTwiml } from "../../test/helpers/twilio-client.ts";

/**
 * How one load-generator call speaks its carrier: the control plane that brings the call to an open media socket
 * (webhook and answer document, or webhook and REST command) and the media socket's frames both ways. The caller's
 * script, clocks and playout model (./call.ts) are the same on every carrier; only this part differs, as it does for
 * Parley (src/carriers/*). Per frame, a call asks its dialect for one string (`media`): a template filled by
 * concatenation, checked once against the JSON it stands for (`mediaObject`).
 */

/** What Parley sent, read by the dialect (media frames usually never get here: they are counted by prefix and length). */
export type Outgoing = { kind: "media"; payload: string } | { kind: "mark"; name: string } | { kind: "clear" } | { kind: "bad"; why: string };

export interface CallDialect {
  /** The id Parley's control API knows the call by (known once `connect` has resolved). */
  readonly callId: string;
  /** Webhook -> answer -> upgrade -> the carrier's first frames. Resolves with the open socket; throws with the reason. */
  connect(timeoutMs: number): Promise<WebSocket>;
  /** The caller's media frame: `seq` the message's sequence number, `chunk` the frame's number from 1. */
  media(seq: number, chunk: number, b64: string): string;
  /** The same frame as an object: `JSON.stringify` of it must equal `media(...)` (checked once per run). */
  mediaObject(seq: number, chunk: number, b64: string): unknown;
  /** The start of every media message Parley sends on this carrier. */
  readonly mediaPrefix: Buffer;
  parse(text: string): Outgoing;
  /** The echo of a mark (Twilio, Telnyx) or checkpoint (Plivo's `playedStream`) once the audio before it has played. */
  markEcho(seq: number, name: string): string;
  /** What the carrier answers a clear with: the pending marks echoed (Twilio, Telnyx) or `clearedAudio` (Plivo). */
  readonly clearEchoesMarks: boolean;
  clearReply(seq: number): string | null;
  /** The caller hangs up, as the carrier reports it (stop frame, close, webhooks). */
  hangUp(ws: WebSocket, seq: number): void;
}

export interface Wire {
  readonly name: "twilio" | "telnyx" | "plivo";
  dialect(index: number): CallDialect;
  close(): Promise<void>;
}

export const ACCOUNT_SID = "AC00000000000000000000000000000000";
export const callerNumber = (index: number) => `+1555${String(1_000_000 + index).slice(-7)}`;
export const CALLED_NUMBER = "+15550100002";

/** The upgrade: resolves when open, rejects with the HTTP status when refused. */
export function openSocket(url: string, headers: Record<string, string>, timeoutMs: number): Promise<WebSocket> {
  const ws = new WebSocket(url, { headers, perMessageDeflate: false, handshakeTimeout: timeoutMs });
  return new Promise<WebSocket>((resolve, reject) => {
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
    ws.once("unexpected-response", (_req, res) => reject(new Error(`stream upgrade answered ${res.statusCode}`)));
  }).catch((err) => {
    ws.terminate();
    throw err;
  });
}

export function sendText(ws: WebSocket, text: string): void {
  if (ws.readyState === WebSocket.OPEN) ws.send(text);
}

/** Twilio: webhook -> TwiML `<Connect><Stream>` -> upgrade (signed with X-Twilio-Signature) -> connected + start. */
export function twilioWire(o: { baseUrl: string; authToken?: string; sign?: (url: string, params: Record<string, string>) => string }): Wire {
  return {
    name: "twilio",
    dialect: (index) => new TwilioDialect(index, o),
    close: async () => {},
  };
}

const TW_A = '{"event":"media","sequenceNumber":"';
const TW_B = '","media":{"track":"inbound","chunk":"';
const TW_C = '","timestamp":"';
const TW_D = '","payload":"';

class TwilioDialect implements CallDialect {
  readonly callId = `CA${randomBytes(16).toString("hex")}`;
  readonly streamSid = `MZ${randomBytes(16).toString("hex")}`;
  readonly mediaPrefix = Buffer.from('{"event":"media"');
  readonly clearEchoesMarks = true;
  private readonly sidJson = JSON.stringify(this.streamSid);
  private readonly suffix = `"},"streamSid":${this.sidJson}}`;

  constructor(
    private readonly index: number,
    private readonly o: { baseUrl: string; authToken?: string; sign?: (url: string, params: Record<string, string>) => string },
  ) {}

  async connect(timeoutMs: number): Promise<WebSocket> {
    const { baseUrl, authToken, sign } = this.o;
    const url = `${baseUrl}/voice/webhook`;
    const params: Record<string, string> = { CallSid: this.callId, AccountSid: ACCOUNT_SID, From: callerNumber(this.index), To: CALLED_NUMBER, Direction: "inbound", CallStatus: "ringing" };
    const headers: Record<string, string> = { "content-type": "application/x-www-form-urlencoded" };
    if (authToken && sign) headers["x-twilio-signature"] = sign(url, params);
    const res = await fetch(url, { method: "POST", headers, body: new URLSearchParams(params).toString(), signal: AbortSignal.timeout(timeoutMs) });
    const twiml = await res.text();
    if (!res.ok) throw new Error(`webhook answered ${res.status}: ${twiml.slice(0, 200)}`);
    const reject = /<Reject(?:\s+reason="([^"]*)")?/.exec(twiml);
    if (reject) throw new Error(`call rejected (${reject[1] ?? "no reason"})`);
    const { streamUrl, parameters } = streamFromTwiml(twiml);
    const wsHeaders: Record<string, string> = {};
    if (authToken && sign) wsHeaders["x-twilio-signature"] = sign(streamUrl.replace(/^http/, "ws"), {});
    const ws = await openSocket(streamUrl, wsHeaders, timeoutMs);
    // Sent at once, in this tick: connected, then start (as Twilio does).
    sendText(ws, '{"event":"connected","protocol":"Call","version":"1.0.0"}');
    sendText(ws, JSON.stringify(startMessage({ streamSid: this.streamSid, callSid: this.callId, accountSid: ACCOUNT_SID, sequenceNumber: 1, parameters })));
    return ws;
  }

  /** Chunk numbers from 1, timestamps in ms of the stream. */
  media(seq: number, chunk: number, b64: string): string {
    return TW_A + seq + TW_B + chunk + TW_C + chunk * 20 + TW_D + b64 + this.suffix;
  }

  mediaObject(seq: number, chunk: number, b64: string): unknown {
    return { event: "media", sequenceNumber: String(seq), media: { track: "inbound", chunk: String(chunk), timestamp: String(chunk * 20), payload: b64 }, streamSid: this.streamSid };
  }

  parse(text: string): Outgoing {
    const msg = parseJson(text);
    if (!msg) return { kind: "bad", why: `not JSON: ${text.slice(0, 80)}` };
    if (msg.streamSid !== this.streamSid) return { kind: "bad", why: `${String(msg.event)} for stream ${String(msg.streamSid)}` };
    return twilioLike(msg);
  }

  markEcho(seq: number, name: string): string {
    return `{"event":"mark","sequenceNumber":"${seq}","streamSid":${this.sidJson},"mark":{"name":${JSON.stringify(name)}}}`;
  }

  clearReply(): null {
    return null;
  }

  /** Hang up as Twilio does when the caller ends the call: `stop`, then close. */
  hangUp(ws: WebSocket, seq: number): void {
    sendText(ws, `{"event":"stop","sequenceNumber":"${seq}","streamSid":${this.sidJson},"stop":{"accountSid":"${ACCOUNT_SID}","callSid":"${this.callId}"}}`);
    ws.close(1000);
  }
}

export type Json = { event?: unknown; streamSid?: unknown; media?: { payload?: unknown }; mark?: { name?: unknown }; name?: unknown; [k: string]: unknown };

export function parseJson(text: string): Json | null {
  try {
    const v = JSON.parse(text) as unknown;
    return v && typeof v === "object" ? (v as Json) : null;
  } catch {
    return null;
  }
}

/** Twilio's and Telnyx's outbound events: `media`, `mark`, `clear`. */
export function twilioLike(msg: Json): Outgoing {
  switch (msg.event) {
    case "media":
      return typeof msg.media?.payload === "string" ? { kind: "media", payload: msg.media.payload } : { kind: "bad", why: "media without payload" };
    case "mark":
      return typeof msg.mark?.name === "string" ? { kind: "mark", name: msg.mark.name } : { kind: "bad", why: "mark without name" };
    case "clear":
      return { kind: "clear" };
    default:
      return { kind: "bad", why: `unexpected event ${String(msg.event)}` };
  }
}
