import { createHmac } from "node:crypto";
import plivo from "plivo";

/**
 * Plivo's request signature V3 (carriers.md B.5): `X-Plivo-Signature-V3` (one or more base64 HMAC-SHA256s, comma
 * separated, one per active auth token) over the URL, the POST parameters and `X-Plivo-Signature-V3-Nonce`. Checked
 * with the official `plivo` package's `validateV3Signature`; `signPlivoV3` computes a signature the documented way, for
 * the stand-in and the doctor. V3 has no timestamp, so replays are caught on the nonce (see the routes).
 */

export const PLIVO_SIGNATURE_HEADER = "x-plivo-signature-v3";
export const PLIVO_NONCE_HEADER = "x-plivo-signature-v3-nonce";

export type PlivoParams = Record<string, string | string[]>;

/** Form parameters as the helper wants them: one key, all its values (repeated keys kept). */
export function formParams(raw: string): PlivoParams {
  const out: Record<string, string[]> = {};
  for (const [k, v] of new URLSearchParams(raw)) (out[k] ??= []).push(v);
  return out;
}

/**
 * Whether a request carries a valid V3 signature. `url` is the public URL Plivo requested (rebuilt from PUBLIC_URL,
 * never the proxy's view of it). Never throws: a missing header or an odd method is simply not valid.
 */
export function isValidPlivoSignature(opts: {
  authToken: string;
  method: "GET" | "POST";
  url: string;
  signature: string | undefined;
  nonce: string | undefined;
  params?: PlivoParams;
}): boolean {
  if (!opts.signature || !opts.nonce) return false;
  // The helper sorts the arrays it is given in place, and splits the header on "," without trimming.
  const params = Object.fromEntries(Object.entries(opts.params ?? {}).map(([k, v]) => [k, Array.isArray(v) ? [...v] : v]));
  const signature = opts.signature.split(",").map((s) => s.trim()).join(",");
  try {
    return plivo.validateV3Signature(opts.method, opts.url, opts.nonce, opts.authToken, signature, params) === true;
  } catch {
    return false;
  }
}

/**
 * The media socket's upgrade is signed as a GET over the stream URL, but with which scheme is not documented: on a
 * live call `http://` matched (Plivo's field notes), and Plivo's stream SDK uses `https://` behind TLS. Both are tried;
 * `ws(s)://` never matches.
 */
export function isValidPlivoUpgrade(authToken: string, publicOrigin: URL, requestUrl: string, signature: string | undefined, nonce: string | undefined): boolean {
  for (const scheme of ["http:", "https:"]) {
    const url = new URL(requestUrl, publicOrigin);
    url.protocol = scheme;
    if (isValidPlivoSignature({ authToken, method: "GET", url: url.toString(), signature, nonce })) return true;
  }
  return false;
}

/** The message Plivo signs (carriers.md B.5.2), for `signPlivoV3` and the tests' documented vectors. */
export function plivoV3Message(method: "GET" | "POST", url: string, nonce: string, params: PlivoParams = {}): string {
  const u = new URL(url);
  const multi = (m: Record<string, string[]>, k: string, v: string | string[]) => (m[k] ??= []).push(...(Array.isArray(v) ? v : [v]));
  const query: Record<string, string[]> = {};
  for (const [k, v] of u.searchParams) multi(query, k, v);
  const post: Record<string, string[]> = {};
  if (method === "POST") for (const [k, v] of Object.entries(params)) multi(post, k, v);
  else for (const [k, v] of Object.entries(params)) multi(query, k, v);
  const sorted = (m: Record<string, string[]>, sep: string, join: string) =>
    Object.keys(m)
      .sort()
      .flatMap((k) => [...m[k]!].sort().map((v) => `${k}${sep}${v}`))
      .join(join);
  const q = sorted(query, "=", "&");
  const p = sorted(post, "", "");
  let base = `${u.protocol}//${u.host}${u.pathname}`;
  if (q !== "" || (method === "POST" && p !== "")) base += `?${q}`;
  if (q !== "" && method === "POST" && p !== "") base += ".";
  if (method === "POST") base += p;
  return `${base}.${nonce}`;
}

/** Sign as Plivo does: base64 HMAC-SHA256 of `plivoV3Message`, keyed by the auth token. */
export function signPlivoV3(authToken: string, method: "GET" | "POST", url: string, nonce: string, params: PlivoParams = {}): string {
  return createHmac("sha256", authToken).update(plivoV3Message(method, url, nonce, params)).digest("base64");
}
