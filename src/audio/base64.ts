/**
 * Base64 audio payloads, as every carrier's JSON media frames carry them (Twilio, Telnyx, Plivo), decoded into a
 * caller's fixed buffer so the per-frame path allocates nothing.
 */

/** Decode a base64 payload into `out`; returns the byte count, or -1 when the payload is not valid base64 or too big. */
export function decodePayloadInto(payload: string, out: Buffer): number {
  // Node's base64 decoder silently skips invalid characters; a strict check keeps corrupt frames out of the VAD.
  if (payload.length === 0 || payload.length % 4 !== 0 || !BASE64_RE.test(payload)) return -1;
  const expected = (payload.length / 4) * 3 - (payload.endsWith("==") ? 2 : payload.endsWith("=") ? 1 : 0);
  if (expected > out.length) return -1;
  return out.write(payload, 0, "base64");
}

const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;
