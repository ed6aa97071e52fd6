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

export function rejectTwiml(reason: "busy" | "rejected" = "rejected"): string {
  const vr = new twilio.twiml.VoiceResponse();
  vr.reject({ reason });
  return vr.toString();
}

/** The answer to a <Connect action> for a call that is over: end it. */
export const HANGUP_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response><Hangup/></Response>';
