/**
 * Twilio Media Streams wire format (bidirectional <Connect><Stream>): parsing of what Twilio sends, with a reason for
 * every rejection, and serialization of what we send. Numeric fields arrive as strings in Twilio's examples; both are
 * accepted.
 */

export type InboundMessage =
  | { event: "connected"; protocol: string; version: string }
  | {
      event: "start";
      streamSid: string;
      callSid: string;
      accountSid: string;
      tracks: string[];
      customParameters: Record<string, string>;
      mediaFormat: { encoding: string; sampleRate: number; channels: number };
    }
  | { event: "media"; streamSid: string; track: string; chunk: number; timestamp: number; payload: string }
  | { event: "dtmf"; streamSid: string; digit: string }
  | { event: "mark"; streamSid: string; name: string }
  | { event: "stop"; streamSid: string; callSid: string };

export type ProtocolErrorKind = "bad_json" | "binary_frame" | "unknown_event" | "bad_shape" | "oversized";

export type ParseResult = { ok: true; msg: InboundMessage } | { ok: false; kind: ProtocolErrorKind; detail: string };

/** Largest text message accepted: a 20 ms frame is ~300 bytes of JSON; a second of audio in one message ~11 kB. */
export const MAX_MESSAGE_BYTES = 64 * 1024;

const str = (v: unknown): v is string => typeof v === "string";
const numeric = (v: unknown): number => (typeof v === "number" ? v : typeof v === "string" && v !== "" ? Number(v) : NaN);

function fail(kind: ProtocolErrorKind, detail: string): ParseResult {
  return { ok: false, kind, detail };
}

/**
 * The per-frame fast path: Twilio's media messages have one fixed shape, so they are read with a few prefix checks and
 * character scans instead of a full JSON.parse (50 messages a second per call). It accepts only that exact shape,
 *   {"event":"media","sequenceNumber":"<digits>","media":{"track":"<a-z_>","chunk":"<digits>","timestamp":"<digits>",
 *    "payload":"<base64 chars>"},"streamSid":"<letters and digits>"}
 * and nothing after it, so whatever it accepts is valid JSON with no escapes and no repeated key, and the full parser
 * would return the same message (fuzzed in test/fuzz.test.ts). Anything else (other field order, escapes, spaces,
 * extra fields) returns null and takes the full parser.
 */
export function fastMedia(data: string): ParseResult | null {
  if (!data.startsWith(F_HEAD)) return null;
  let i = F_HEAD.length;
  let j = scan(data, i, DIGIT);
  if (j === i || !data.startsWith(F_TRACK, j)) return null;
  i = j + F_TRACK.length;
  j = scan(data, i, LOWER);
  if (j === i || !data.startsWith(F_CHUNK, j)) return null;
  const track = data.slice(i, j);
  i = j + F_CHUNK.length;
  j = scan(data, i, DIGIT);
  if (j === i || !data.startsWith(F_TIMESTAMP, j)) return null;
  const chunk = Number(data.slice(i, j));
  i = j + F_TIMESTAMP.length;
  j = scan(data, i, DIGIT);
  if (j === i || !data.startsWith(F_PAYLOAD, j)) return null;
  const timestamp = Number(data.slice(i, j));
  i = j + F_PAYLOAD.length;
  j = scan(data, i, BASE64);
  if (!data.startsWith(F_SID, j)) return null;
  const payload = data.slice(i, j);
  i = j + F_SID.length;
  j = scan(data, i, ALNUM);
  if (j === i || j + 2 !== data.length || data.charCodeAt(j) !== 34 /* " */ || data.charCodeAt(j + 1) !== 125 /* } */) return null;
  return { ok: true, msg: { event: "media", streamSid: data.slice(i, j), track, chunk, timestamp, payload } };
}

const F_HEAD = '{"event":"media","sequenceNumber":"';
const F_TRACK = '","media":{"track":"';
const F_CHUNK = '","chunk":"';
const F_TIMESTAMP = '","timestamp":"';
const F_PAYLOAD = '","payload":"';
const F_SID = '"},"streamSid":"';

/** ASCII character classes for the fast path: one bit each, looked up by char code (< 128). */
const DIGIT = 1;
const LOWER = 2;
const BASE64 = 4;
const ALNUM = 8;
const CLASSES = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c);
  if (/[0-9]/.test(ch)) CLASSES[c]! |= DIGIT;
  if (/[a-z_]/.test(ch)) CLASSES[c]! |= LOWER;
  if (/[A-Za-z0-9+/=]/.test(ch)) CLASSES[c]! |= BASE64;
  if (/[A-Za-z0-9]/.test(ch)) CLASSES[c]! |= ALNUM;
}

/** The index of the first character from `i` on that is not in `cls`. */
function scan(data: string, i: number, cls: number): number {
  const n = data.length;
  while (i < n) {
    const c = data.charCodeAt(i);
    if (c >= 128 || (CLASSES[c]! & cls) === 0) break;
    i++;
  }
  return i;
}

export function parseInbound(data: string): ParseResult {
  if (data.length > MAX_MESSAGE_BYTES) return fail("oversized", `${data.length} bytes > ${MAX_MESSAGE_BYTES}`);
  return fastMedia(data) ?? parseInboundJson(data);
}

/** The general parser (every message, any field order), which the fast path must agree with. */
export function parseInboundJson(data: string): ParseResult {
  let m: any;
  try {
    m = JSON.parse(data);
  } catch (err) {
    return fail("bad_json", (err as Error).message);
  }
  if (!m || typeof m !== "object") return fail("bad_shape", "not a JSON object");
  switch (m.event) {
    case "media": {
      const media = m.media;
      if (!str(m.streamSid) || !media || !str(media.payload)) return fail("bad_shape", "media needs streamSid and media.payload");
      return {
        ok: true,
        msg: {
          event: "media",
          streamSid: m.streamSid,
          track: str(media.track) ? media.track : "inbound",
          chunk: numeric(media.chunk),
          timestamp: numeric(media.timestamp),
          payload: media.payload,
        },
      };
    }
    case "mark":
      if (!str(m.streamSid) || !m.mark || !str(m.mark.name)) return fail("bad_shape", "mark needs streamSid and mark.name");
      return { ok: true, msg: { event: "mark", streamSid: m.streamSid, name: m.mark.name } };
    case "connected":
      return { ok: true, msg: { event: "connected", protocol: String(m.protocol ?? ""), version: String(m.version ?? "") } };
    case "start": {
      const s = m.start;
      if (!s || typeof s !== "object") return fail("bad_shape", "start needs a start object");
      const streamSid = str(s.streamSid) ? s.streamSid : m.streamSid;
      if (!str(streamSid) || !str(s.callSid)) return fail("bad_shape", "start needs streamSid and callSid");
      const params: Record<string, string> = {};
      if (s.customParameters && typeof s.customParameters === "object")
        for (const [k, v] of Object.entries(s.customParameters)) params[k] = String(v);
      const fmt = s.mediaFormat ?? {};
      return {
        ok: true,
        msg: {
          event: "start",
          streamSid,
          callSid: s.callSid,
          accountSid: str(s.accountSid) ? s.accountSid : "",
          tracks: Array.isArray(s.tracks) ? s.tracks.map(String) : ["inbound"],
          customParameters: params,
          mediaFormat: {
            encoding: str(fmt.encoding) ? fmt.encoding : "audio/x-mulaw",
            sampleRate: numeric(fmt.sampleRate ?? 8000),
            channels: numeric(fmt.channels ?? 1),
          },
        },
      };
    }
    case "dtmf":
      if (!str(m.streamSid) || !m.dtmf || !str(m.dtmf.digit)) return fail("bad_shape", "dtmf needs streamSid and dtmf.digit");
      return { ok: true, msg: { event: "dtmf", streamSid: m.streamSid, digit: m.dtmf.digit } };
    case "stop":
      if (!str(m.streamSid)) return fail("bad_shape", "stop needs streamSid");
      return { ok: true, msg: { event: "stop", streamSid: m.streamSid, callSid: str(m.stop?.callSid) ? m.stop.callSid : "" } };
    default:
      return fail("unknown_event", `event ${JSON.stringify(m.event)}`);
  }
}

/**
 * Serializers for the three messages we send. The per-frame one is a string template around a fixed prefix, because
 * JSON.stringify of a fresh object per 20 ms frame per call is measurable at hundreds of calls.
 */
export class OutboundSerializer {
  private readonly mediaPrefix: string;
  private readonly markPrefix: string;
  readonly clearMessage: string;

  constructor(streamSid: string) {
    const sid = JSON.stringify(streamSid);
    this.mediaPrefix = `{"event":"media","streamSid":${sid},"media":{"payload":"`;
    this.markPrefix = `{"event":"mark","streamSid":${sid},"mark":{"name":`;
    this.clearMessage = `{"event":"clear","streamSid":${sid}}`;
  }

  media(mulaw: Uint8Array): string {
    return this.mediaPrefix + Buffer.from(mulaw.buffer, mulaw.byteOffset, mulaw.byteLength).toString("base64") + '"}}';
  }

  mark(name: string): string {
    return this.markPrefix + JSON.stringify(name) + "}}";
  }
}

/** Decode a base64 payload into `out`; returns the byte count, or -1 when the payload is not valid base64 or too big. */
export function decodePayloadInto(payload: string, out: Buffer): number {
  // Node's base64 decoder silently skips invalid characters; a strict check keeps corrupt frames out of the VAD.
  if (payload.length === 0 || payload.length % 4 !== 0 || !BASE64_RE.test(payload)) return -1;
  const expected = (payload.length / 4) * 3 - (payload.endsWith("==") ? 2 : payload.endsWith("=") ? 1 : 0);
  if (expected > out.length) return -1;
  return out.write(payload, 0, "base64");
}

const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;
