import plivo from "plivo";

/** The `<Stream contentType>` Parley asks for; Plivo's documented default is L16, so it is always set. */
export const PLIVO_STREAM_CONTENT_TYPE = "audio/x-mulaw;rate=8000";

/** The part of plivo's XML builder used here (its typings declare `Response` as a function returning any). */
interface PlivoXmlResponse {
  addStream(url: string, attributes: Record<string, string | boolean>): unknown;
  addHangup(attributes: { reason?: string }): unknown;
  addRedirect(url: string, attributes: { method: string }): unknown;
  toXML(): string;
}
const PlivoResponse = plivo.Response as unknown as new () => PlivoXmlResponse;

export interface PlivoStreamXmlOptions {
  /**
   * ws(s):// URL of Parley's Plivo media endpoint, with the single-use stream token in its query: Plivo has no
   * `<Parameter>`, and the query is covered by the V3 signature on the upgrade. The token is bound to the CallUUID and
   * spent on `start`, so a copy in Plivo's logs admits nothing.
   */
  streamUrl: string;
  /** Where Plivo reports StartStream / StopStream / DroppedStream (its only push signal for a dropped stream). */
  statusCallbackUrl?: string;
  /** `k=v` pairs Plivo hands back in `start.extra_headers` (metadata, logged by Plivo: never a secret). */
  extraHeaders?: string;
  /**
   * Parley's resume URL, as a `<Redirect>` after the stream: with keepCallAlive it runs only once the stream has
   * ended, which makes it Plivo's equivalent of Twilio's `<Connect action>`.
   */
  redirectUrl?: string;
}

/**
 * The only Plivo XML Parley answers a call with: one bidirectional stream that holds the call (`keepCallAlive`), then
 * at most a `<Redirect>` to ask Parley what next once the stream has ended; with nothing after the stream, the call
 * ends with it (Plivo's 4010 "End Of XML Instructions"). Built with the official `plivo` package's XML builder (which
 * escapes the URLs, the elements' text).
 */
export function plivoStreamXml(opts: PlivoStreamXmlOptions): string {
  const response = new PlivoResponse();
  response.addStream(opts.streamUrl, {
    bidirectional: true,
    keepCallAlive: true,
    contentType: PLIVO_STREAM_CONTENT_TYPE,
    ...(opts.statusCallbackUrl ? { statusCallbackUrl: opts.statusCallbackUrl, statusCallbackMethod: "POST" } : {}),
    ...(opts.extraHeaders ? { extraHeaders: opts.extraHeaders } : {}),
  });
  if (opts.redirectUrl) response.addRedirect(opts.redirectUrl, { method: "POST" });
  return response.toXML();
}

/** Refuse a call before answering it (busy when Parley is full, rejected by the inbound policy), or end it (no reason). */
export function plivoHangupXml(reason?: "busy" | "rejected"): string {
  const response = new PlivoResponse();
  response.addHangup(reason ? { reason } : {});
  return response.toXML();
}
