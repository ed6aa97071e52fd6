/**
 * Fuzz target: webhook bodies (the content-type parsers, the params the routes read, `verifyTwilioSignature`).
 * The first input byte picks form (even) or JSON (odd); the rest is the body. Invariants:
 *   - nothing throws (a malformed JSON body is a SyntaxError, answered 400); the params the routes read are strings;
 *   - a body signed as Twilio signs it (protocols.md §2.1/§2.2, implemented here independently of the twilio
 *     library) verifies; the same body with another signature, or a changed JSON body, does not.
 */
import { createHash, createHmac } from "node:crypto";
import { verifyTwilioSignature } from "../../src/server/security.ts";
import { parseFormBody, parseJsonBody, webhookParams } from "../../src/server/webhook-body.ts";
import type { FuzzTarget } from "./engine.ts";

const J = (x: unknown) => JSON.stringify(x, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v));

function fail(what: string, input: unknown): never {
  throw new Error(`${what}\n  input: ${J(input)}`);
}

const isStr = (v: unknown) => typeof v === "string";

const TOKEN = "12345";
const URL_FORM = "https://parley.example.com/voice/status";

/** Twilio's signature (protocols.md §2.1), written from the description rather than with the twilio library. */
export function twilioSignature(token: string, url: string, pairs: [string, string][]): string {
  const byName = new Map<string, string[]>();
  for (const [k, v] of pairs) byName.set(k, [...(byName.get(k) ?? []), v]);
  let data = url;
  for (const name of [...byName.keys()].sort()) for (const v of [...new Set(byName.get(name))].sort()) data += name + v;
  return createHmac("sha1", token).update(Buffer.from(data, "utf8")).digest("base64");
}

const flip = (sig: string) => (sig[0] === "A" ? "B" : "A") + sig.slice(1);

function webhookRun(input: Buffer): void {
  const mode = input[0] ?? 0;
  const raw = input.subarray(1).toString("utf8");
  if (mode % 2 === 0) {
    const params = parseFormBody(raw);
    for (const [k, v] of Object.entries(params)) if (!isStr(v)) fail(`form param ${k} is not a string`, raw);
    const sig = twilioSignature(TOKEN, URL_FORM, [...new URLSearchParams(raw)]);
    if (!verifyTwilioSignature(TOKEN, sig, URL_FORM, "application/x-www-form-urlencoded", raw)) fail("a form body signed as Twilio signs it was refused", raw);
    if (verifyTwilioSignature(TOKEN, flip(sig), URL_FORM, "application/x-www-form-urlencoded", raw)) fail("a wrong signature was accepted", raw);
    return;
  }
  let body: unknown;
  try {
    body = parseJsonBody(raw);
  } catch (e) {
    if (e instanceof SyntaxError) return; // answered 400
    throw e;
  }
  const params = webhookParams(body);
  for (const [k, v] of Object.entries(params)) if (!isStr(v)) fail(`JSON param ${k} reaches the routes as ${J(v)}, not a string`, raw);
  if (({} as Record<string, unknown>).polluted !== undefined) fail("Object.prototype was polluted", raw);
  const url = `${URL_FORM}?bodySHA256=${createHash("sha256").update(raw).digest("hex")}`;
  const sig = twilioSignature(TOKEN, url, []);
  if (!verifyTwilioSignature(TOKEN, sig, url, "application/json", raw)) fail("a JSON body signed as Twilio signs it was refused", raw);
  if (verifyTwilioSignature(TOKEN, sig, url, "application/json", `${raw} `)) fail("a changed JSON body was accepted", raw);
  if (verifyTwilioSignature(TOKEN, flip(sig), url, "application/json", raw)) fail("a wrong signature was accepted", raw);
}

export const webhookTarget: FuzzTarget = {
  name: "webhooks",
  files: ["src/server/security.ts", "src/server/webhook-body.ts", "twilio/lib/webhooks"],
  run: webhookRun,
  dictionary: [
    "&", "=", "%", "%00", "%zz", "%C3%A9", "%F0%9F%93%9E", "%ED%A0%80", "+", "CallSid=", "CallStatus=", "From=%2B1555", "To=", "Digits=",
    "__proto__", "constructor", "prototype", "polluted", '"', "\\", "{", "}", "[", "]", ":", ",", "null", "true", "1", '"CallSid"', '"__proto__"',
    '{"polluted":1}', "\\u0000", "é", "\u0000",
  ],
  maxLen: 2048,
  header: 1,
};
