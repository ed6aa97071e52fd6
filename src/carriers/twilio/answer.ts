import { randomBytes } from "node:crypto";
import twilio from "twilio";

export interface StreamTwimlOptions {
  /** wss:// URL of the media stream endpoint. */
  streamUrl: string;
  /** Custom parameters; Twilio drops query strings on stream URLs, so per-call data travels here. */
  parameters: Record<string, string>;
  statusCallback?: string;
  /** <Connect action>: where Twilio asks for the next TwiML if the stream ends while the call is up. */
  connectAction?: string;
}

/**
 * The only TwiML Parley answers a live call with: one bidirectional stream, nothing after it. No <Gather>, <Say> or
 * <Play>: everything the caller hears goes over the stream, and closing the socket ends the call.
 */
export function connectStreamTwiml(opts: StreamTwimlOptions): string {
  const vr = new twilio.twiml.VoiceResponse();
  const connect = vr.connect(opts.connectAction ? { action: opts.connectAction, method: "POST" } : {});
  const stream = connect.stream({
    url: opts.streamUrl,
    ...(opts.statusCallback ? { statusCallback: opts.statusCallback, statusCallbackMethod: "POST" } : {}),
  });
  for (const [name, value] of Object.entries(opts.parameters)) stream.parameter({ name, value });
  return vr.toString();
}

/**
 * The `<Connect action>` URL for one `<Connect>`: `url` with a one-time `connect` query parameter. Twilio's request
 * after a stream ends may carry the same body for every stream of a call, and the replay guard keys on URL, signature
 * and body, so without it a call's second hand-over (a rolling restart moves a call twice) would be refused as a
 * replay of its first. A copy of one request is still a replay. Twilio keeps query strings on action URLs (it drops
 * them only on `<Stream url>`), and signs over them.
 */
export function oneTimeActionUrl(url: string): string {
  const u = new URL(url);
  u.searchParams.set("connect", randomBytes(9).toString("base64url"));
  return u.toString();
}

export function rejectTwiml(reason: "busy" | "rejected" = "rejected"): string {
  const vr = new twilio.twiml.VoiceResponse();
  vr.reject({ reason });
  return vr.toString();
}

/** The answer to a <Connect action> for a call that is over: end it. */
export const HANGUP_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response><Hangup/></Response>';
