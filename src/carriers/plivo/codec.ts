import type { Inbound, Malformed, MediaCodec, MediaWriter, StreamStart } from "../carrier.ts";

/**
 * Plivo Audio Streams wire format (bidirectional `<Stream>`), carriers.md B.4: parsing of what Plivo sends, with a
 * reason for every rejection (never a throw), and serialization of what we send. Differences from Twilio that matter:
 * there is no `connected` frame and no documented `stop` (the socket just closes; a `stop` is accepted if one comes),
 * `sequenceNumber` is a number, the stream id is `start.streamId` then a top-level `streamId`, the mark is a
 * `checkpoint` echoed as `playedStream`, and `clearAudio` is answered by `clearedAudio` (pending checkpoints are not
 * echoed: see the README's carrier notes).
 */

export type PlivoInbound =
  | {
      event: "start";
      streamId: string;
      callId: string;
      accountId: string;
      tracks: string[];
      mediaFormat: { encoding: string; sampleRate: number };
      /** `extra_headers` of the `<Stream>`, split on `,` or `;` (both separators are seen in Plivo's docs). */
      extraHeaders: Record<string, string>;
    }
  | { event: "media"; streamId: string; track: string; chunk: number; timestamp: number; payload: string }
  | { event: "dtmf"; streamId: string; digit: string }
  /** A checkpoint was reached: every `playAudio` before it has played. */
  | { event: "playedStream"; streamId: string; name: string }
  /** Our `clearAudio` took effect: the buffered audio is gone. */
  | { event: "clearedAudio"; streamId: string }
  | { event: "stop"; streamId: string };

export type PlivoErrorKind = "bad_json" | "binary_frame" | "unknown_event" | "bad_shape" | "oversized";

export type PlivoParse = { ok: true; msg: PlivoInbound } | { ok: false; kind: PlivoErrorKind; detail: string };

/** Plivo's limit on one WebSocket message (carriers.md B.4.2); anything above is not Plivo. */
export const MAX_PLIVO_MESSAGE_BYTES = 64 * 1024;

/** The only format Parley asks for in its `<Stream contentType>`, and so the only one it accepts in `start`. */
export const PLIVO_ENCODING = "audio/x-mulaw";
export const PLIVO_SAMPLE_RATE = 8000;

const DTMF_DIGIT = /^[0-9*#A-D]$/;

const str = (v: unknown): v is string => typeof v === "string";
const numeric = (v: unknown): number => (typeof v === "number" ? v : typeof v === "string" && v !== "" ? Number(v) : NaN);
const fail = (kind: PlivoErrorKind, detail: string): PlivoParse => ({ ok: false, kind, detail });

/**
 * The per-frame fast path: Plivo's media frame in its documented field order (carriers.md B.4.1), read with one
 * anchored regular expression instead of JSON.parse. It accepts only characters that need no JSON unescaping, so
 * what it accepts the full parser reads the same way (checked in test/plivo-codec.test.ts); anything else (other
 * order, spaces, escapes, extra fields) returns null and takes the full parser.
 */
const PLIVO_MEDIA =
  /^\{"event":"media","sequenceNumber":"?\d+"?,"streamId":"([A-Za-z0-9-]+)","media":\{"track":"([a-z_]+)","timestamp":"(\d+)","chunk":(\d+),"payload":"([A-Za-z0-9+/=]*)"\}(?:,"extra_headers":"[A-Za-z0-9=;,_-]*")?\}$/;

export function fastPlivoMedia(data: string): PlivoParse | null {
  const m = PLIVO_MEDIA.exec(data);
  if (!m) return null;
  return { ok: true, msg: { event: "media", streamId: m[1]!, track: m[2]!, timestamp: Number(m[3]), chunk: Number(m[4]), payload: m[5]! } };
}

/** Parse one frame from Plivo. Plivo sends JSON text frames only; a binary frame is refused with a reason. */
export function parsePlivo(data: string | Buffer, isBinary = false): PlivoParse {
  if (isBinary) return fail("binary_frame", "Plivo sends JSON text frames only");
  const text = typeof data === "string" ? data : data.toString("utf8");
  if (text.length > MAX_PLIVO_MESSAGE_BYTES) return fail("oversized", `${text.length} bytes > ${MAX_PLIVO_MESSAGE_BYTES}`);
  return fastPlivoMedia(text) ?? parsePlivoJson(text);
}

/** The general parser (any field order), which the fast path must agree with. */
export function parsePlivoJson(text: string): PlivoParse {
  let m: any;
  try {
    m = JSON.parse(text);
  } catch (err) {
    return fail("bad_json", (err as Error).message);
  }
  if (!m || typeof m !== "object" || Array.isArray(m)) return fail("bad_shape", "not a JSON object");
  switch (m.event) {
    case "media": {
      const media = m.media;
      if (!str(m.streamId) || !media || typeof media !== "object" || !str(media.payload))
        return fail("bad_shape", "media needs streamId and media.payload");
      return {
        ok: true,
        msg: {
          event: "media",
          streamId: m.streamId,
          track: str(media.track) ? media.track : "inbound",
          chunk: numeric(media.chunk),
          timestamp: numeric(media.timestamp),
          payload: media.payload,
        },
      };
    }
    case "start": {
      const s = m.start;
      if (!s || typeof s !== "object") return fail("bad_shape", "start needs a start object");
      const streamId = str(s.streamId) ? s.streamId : m.streamId;
      if (!str(streamId) || !str(s.callId)) return fail("bad_shape", "start needs start.streamId and start.callId");
      const fmt = s.mediaFormat && typeof s.mediaFormat === "object" ? s.mediaFormat : {};
      return {
        ok: true,
        msg: {
          event: "start",
          streamId,
          callId: s.callId,
          accountId: str(s.accountId) ? s.accountId : "",
          tracks: Array.isArray(s.tracks) ? s.tracks.map(String) : ["inbound"],
          // Plivo's documented default is L16, not mu-law: a missing format is reported as missing, not assumed.
          mediaFormat: { encoding: str(fmt.encoding) ? fmt.encoding : "", sampleRate: numeric(fmt.sampleRate) },
          extraHeaders: parseExtraHeaders(m.extra_headers ?? s.extra_headers),
        },
      };
    }
    case "dtmf": {
      const digit = m.dtmf?.digit;
      if (!str(m.streamId) || !str(digit)) return fail("bad_shape", "dtmf needs streamId and dtmf.digit");
      if (!DTMF_DIGIT.test(digit)) return fail("bad_shape", `dtmf digit ${JSON.stringify(digit.slice(0, 8))} is not one of 0-9 * # A-D`);
      return { ok: true, msg: { event: "dtmf", streamId: m.streamId, digit } };
    }
    // An older support article calls the echo `played`; the protocol reference and Plivo's SDK say `playedStream`.
    case "playedStream":
    case "played":
      if (!str(m.streamId) || !str(m.name)) return fail("bad_shape", "playedStream needs streamId and name");
      return { ok: true, msg: { event: "playedStream", streamId: m.streamId, name: m.name } };
    case "clearedAudio":
      if (!str(m.streamId)) return fail("bad_shape", "clearedAudio needs streamId");
      return { ok: true, msg: { event: "clearedAudio", streamId: m.streamId } };
    case "stop":
      if (!str(m.streamId)) return fail("bad_shape", "stop needs streamId");
      return { ok: true, msg: { event: "stop", streamId: m.streamId } };
    default:
      return fail("unknown_event", `event ${JSON.stringify(m.event)?.slice(0, 40)}`);
  }
}

/** `k1=v1,k2=v2` or `k1=v1;k2=v2` into an object; anything else is ignored (extra headers are metadata, never auth). */
export function parseExtraHeaders(raw: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!str(raw)) return out;
  for (const pair of raw.split(/[;,]/)) {
    const eq = pair.indexOf("=");
    if (eq > 0) out[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
  }
  return out;
}

/** Why a `start` cannot be served (Parley plays and hears 8 kHz mu-law only), or null. */
export function unsupportedFormat(start: Extract<PlivoInbound, { event: "start" }>): string | null {
  const { encoding, sampleRate } = start.mediaFormat;
  if (encoding === PLIVO_ENCODING && sampleRate === PLIVO_SAMPLE_RATE) return null;
  return `stream format ${encoding || "(none)"} at ${Number.isNaN(sampleRate) ? "(no rate)" : sampleRate} Hz; Parley needs ${PLIVO_ENCODING} at ${PLIVO_SAMPLE_RATE} Hz (contentType="audio/x-mulaw;rate=8000" on <Stream>)`;
}

/**
 * What we send: `playAudio` per 20 ms frame (a string template around a fixed prefix: no object per frame),
 * `checkpoint` for a mark and `clearAudio` for a clear. `playAudio` carries no streamId (Plivo's own SDK omits it);
 * `contentType` has no `;rate=` there, the rate is `sampleRate`, a number.
 */
export class PlivoSerializer {
  private readonly checkpointPrefix: string;
  readonly clearMessage: string;

  constructor(streamId: string) {
    const id = JSON.stringify(streamId);
    this.checkpointPrefix = `{"event":"checkpoint","streamId":${id},"name":`;
    this.clearMessage = `{"event":"clearAudio","streamId":${id}}`;
  }

  media(mulaw: Uint8Array): string {
    return MEDIA_PREFIX + Buffer.from(mulaw.buffer, mulaw.byteOffset, mulaw.byteLength).toString("base64") + '"}}';
  }

  mark(name: string): string {
    return this.checkpointPrefix + JSON.stringify(name) + "}";
  }

  clear(): string {
    return this.clearMessage;
  }
}

const MEDIA_PREFIX = `{"event":"playAudio","media":{"contentType":"${PLIVO_ENCODING}","sampleRate":${PLIVO_SAMPLE_RATE},"payload":"`;

// ---------------------------------------------------------------------------------------------------------------
// The seam's MediaCodec (src/carriers/carrier.ts): the same frames in Parley's own union.
// ---------------------------------------------------------------------------------------------------------------


/** The fast path straight into Parley's union: one regex, one small object per frame, no JSON.parse. */
function fastMediaInbound(text: string): Inbound | null {
  const m = PLIVO_MEDIA.exec(text);
  return m ? { kind: "media", streamId: m[1]!, payload: m[5]! } : null;
}

function toInbound(r: PlivoParse, carrierIdOf: (callUuid: string) => string): Inbound | Malformed {
  if (!r.ok) return { kind: "malformed", error: r.kind, detail: r.detail };
  const m = r.msg;
  switch (m.event) {
    case "media":
      return { kind: "media", streamId: m.streamId, payload: m.payload };
    case "start": {
      // Parley asks for mu-law at 8 kHz in <Stream contentType>; anything else would be heard as noise.
      const unsupported = unsupportedFormat(m);
      if (unsupported) return { kind: "malformed", error: "bad_shape", detail: unsupported };
      return {
        kind: "start",
        streamId: m.streamId,
        carrierCallId: carrierIdOf(m.callId),
        // Parley's id comes back from the <Stream extraHeaders>; the token rides in the stream URL's query (Plivo
        // has no <Parameter>), and the upgrade hands it over.
        ...(m.extraHeaders.parleyCallId ? { callId: m.extraHeaders.parleyCallId } : {}),
        params: m.extraHeaders,
        tracks: m.tracks,
        format: { encoding: m.mediaFormat.encoding, sampleRate: m.mediaFormat.sampleRate, channels: 1 },
      };
    }
    case "playedStream":
      return { kind: "mark", streamId: m.streamId, name: m.name };
    case "clearedAudio":
      return { kind: "cleared", streamId: m.streamId };
    case "dtmf":
      return { kind: "dtmf", streamId: m.streamId, digit: m.digit };
    case "stop":
      return { kind: "stop", streamId: m.streamId };
  }
}

/**
 * The codec of a Plivo carrier. `carrierIdOf` maps the CallUUID in `start` to the id Parley knows the call by (a
 * placed call's request_uuid, see PlivoCarrier).
 */
export const plivoCodecWith = (carrierIdOf: (callUuid: string) => string): MediaCodec => ({
  parse(frame: string | Buffer, isBinary: boolean): Inbound | Malformed {
    if (isBinary) return { kind: "malformed", error: "binary_frame", detail: "Plivo sends JSON text frames only" };
    const text = typeof frame === "string" ? frame : frame.toString("utf8");
    if (text.length > MAX_PLIVO_MESSAGE_BYTES) return { kind: "malformed", error: "oversized", detail: `${text.length} bytes > ${MAX_PLIVO_MESSAGE_BYTES}` };
    return fastMediaInbound(text) ?? toInbound(parsePlivoJson(text), carrierIdOf);
  },
  writer(start: StreamStart): MediaWriter {
    return new PlivoSerializer(start.streamId);
  },
  // A checkpoint's playedStream comes once the audio before it has played.
  markSemantics: "played",
  // clearAudio is answered by clearedAudio; the checkpoints it dropped are never echoed.
  clearEchoesMarks: false,
});

export const plivoCodec = plivoCodecWith((id) => id);
