import twilio from "twilio";
import WebSocket from "ws";

/**
 * Dialling out to a ConversationRelay app, as Twilio does: a WebSocket GET to the app's URL carrying
 * `X-Twilio-Signature`, Twilio's webhook signature over the full URL (scheme ws/wss, host, path and query) with no
 * parameters, keyed by the account's auth token. Apps check it with `twilio.validateRequest(token, sig, url, {})`.
 */

/**
 * The URL exactly as it goes on the wire: `ws` sends `new URL(url)`'s path and query, so this is what the app
 * rebuilds from its request, and what must be signed.
 */
export function relayWireUrl(url: string): string {
  const u = new URL(url);
  if (u.protocol !== "ws:" && u.protocol !== "wss:") throw new Error(`relay URL must be ws:// or wss://, got ${u.protocol}//`);
  u.hash = "";
  return u.toString();
}

export function signRelayUrl(authToken: string, url: string): string {
  return twilio.getExpectedTwilioSignature(authToken, relayWireUrl(url), {});
}

export interface ConnectOptions {
  authToken?: string;
  /** Time allowed for the TCP connect plus the upgrade. */
  timeoutMs: number;
}

/** Open the socket; rejects with a readable reason (refused, HTTP status of a refused upgrade, timeout). */
export function connectRelay(url: string, opts: ConnectOptions): Promise<WebSocket> {
  const wireUrl = relayWireUrl(url);
  const headers: Record<string, string> = {};
  if (opts.authToken) headers["X-Twilio-Signature"] = twilio.getExpectedTwilioSignature(opts.authToken, wireUrl, {});
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wireUrl, { headers, handshakeTimeout: opts.timeoutMs, perMessageDeflate: false });
    let settled = false;
    const fail = (why: string) => {
      if (settled) return;
      settled = true;
      ws.removeAllListeners();
      ws.on("error", () => {}); // a late error after we gave up must not crash the process
      ws.terminate();
      reject(new Error(why));
    };
    ws.once("open", () => {
      if (settled) return;
      settled = true;
      ws.removeAllListeners();
      resolve(ws);
    });
    ws.once("unexpected-response", (_req, res) => {
      res.resume();
      fail(`the app refused the WebSocket upgrade (HTTP ${res.statusCode})`);
    });
    ws.once("error", (err) => fail(err.message || String(err)));
    ws.once("close", (code) => fail(`closed before opening (code ${code})`));
  });
}
