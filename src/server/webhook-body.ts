/**
 * Webhook bodies, as pure functions (used by the content-type parsers in app.ts and the Twilio routes; fuzzed in
 * test/fuzz.test.ts). Twilio's voice webhooks are form-encoded; JSON bodies are accepted for the signed bodySHA256
 * variant and for tools that post JSON.
 */

/** A form body's parameters; a repeated name keeps its last value (as URLSearchParams -> Object.fromEntries did). */
export function parseFormBody(raw: string): Record<string, string> {
  return Object.fromEntries(new URLSearchParams(raw));
}

/** A JSON body; an empty body is `{}`. Throws SyntaxError on malformed JSON (the parser answers 400). */
export function parseJsonBody(raw: string): unknown {
  return raw ? JSON.parse(raw) : {};
}

/**
 * The parameters a Twilio route reads, from a parsed body of either kind: strings, with JSON numbers and booleans as
 * text; nested objects, arrays and nulls are dropped (a JSON body once handed them on as if they were strings, e.g. a
 * `CallStatus` object into the call record; found by test/fuzz.test.ts).
 */
export function webhookParams(body: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!body || typeof body !== "object" || Array.isArray(body)) return out;
  for (const [k, v] of Object.entries(body)) {
    if (k === "__proto__") continue;
    if (typeof v === "string") out[k] = v;
    else if ((typeof v === "number" && Number.isFinite(v)) || typeof v === "boolean") out[k] = String(v);
  }
  return out;
}
