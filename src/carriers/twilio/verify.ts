import twilio from "twilio";

/**
 * X-Twilio-Signature checks. Twilio signs the exact public URL it requested: behind a TLS-terminating proxy we never
 * see that URL, so it is rebuilt from the configured public origin plus the request path.
 */
export function webhookUrl(publicOrigin: URL, requestUrl: string): string {
  return new URL(requestUrl, publicOrigin).toString();
}

/** Form-encoded webhook (voice, status callbacks). */
export function isValidWebhook(authToken: string, signature: string | undefined, url: string, params: Record<string, unknown>): boolean {
  if (!signature) return false;
  if (url.includes("bodySHA256=")) return false; // JSON bodies go through isValidJsonWebhook
  return twilio.validateRequest(authToken, signature, url, params);
}

/** Media Stream upgrade: signed over the wss:// URL with no parameters. */
export function isValidStreamUpgrade(authToken: string, signature: string | undefined, publicOrigin: URL, requestUrl: string): boolean {
  if (!signature) return false;
  const url = new URL(requestUrl, publicOrigin);
  url.protocol = url.protocol === "http:" ? "ws:" : "wss:";
  return twilio.validateRequest(authToken, signature, url.toString(), {});
}

/** For tests and the softphone: what Twilio would send. */
export function signWebhook(authToken: string, url: string, params: Record<string, string>): string {
  return twilio.getExpectedTwilioSignature(authToken, url, params);
}

/**
 * A Twilio webhook's signature: form bodies are signed over URL + sorted params; JSON bodies over the URL, which
 * carries the body's SHA-256 as `bodySHA256`, checked against the raw bytes received.
 */
export function verifyTwilioSignature(authToken: string, signature: string | undefined, url: string, contentType: string | undefined, rawBody: string): boolean {
  if (!signature) return false;
  if ((contentType ?? "").includes("application/json") || url.includes("bodySHA256=")) {
    if (!new URL(url).searchParams.get("bodySHA256")) return false;
    return twilio.validateRequestWithBody(authToken, signature, url, rawBody);
  }
  return twilio.validateRequest(authToken, signature, url, signedFormParams(rawBody));
}

/**
 * Every value of every name in a form body, as Twilio signs them: a repeated name signs all its values (the parsed
 * body keeps only the last one, so verifying over it refused genuine requests; found by test/fuzz.test.ts).
 */
export function signedFormParams(rawBody: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = Object.create(null);
  for (const [k, v] of new URLSearchParams(rawBody)) {
    const prev = out[k];
    out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return out;
}
