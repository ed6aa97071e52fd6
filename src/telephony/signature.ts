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
