/**
 * Fuzz target: the media-stream codec (`parseInbound` on whatever text arrives on the socket). Invariants (each
 * throws when violated):
 *   - never throws; returns ok with a well-formed message, or a reason of a known kind;
 *   - the fast path and the full JSON parser agree on every input (the fast path may only stand aside);
 *   - serialize -> parse round trips: what we send (media, mark, clear) for the stream parsed, and the same media
 *     message in Twilio's exact shape, parse back to the same stream, payload and name.
 */
import { isDeepStrictEqual } from "node:util";
import { decodePayloadInto, fastMedia, MAX_MESSAGE_BYTES, OutboundSerializer, parseInbound, parseInboundJson, type ParseResult } from "../../src/carriers/twilio/codec.ts";
import type { FuzzTarget } from "./engine.ts";

const J = (x: unknown) => JSON.stringify(x, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v));

function fail(what: string, input: unknown): never {
  throw new Error(`${what}\n  input: ${J(input)}`);
}

const KINDS = new Set(["bad_json", "binary_frame", "unknown_event", "bad_shape", "oversized"]);
const isStr = (v: unknown) => typeof v === "string";
const isNum = (v: unknown) => typeof v === "number";

function checkShape(r: ParseResult, s: string): void {
  if (!r || typeof r !== "object") fail("parseInbound returned no result", s);
  if (r.ok === false) {
    if (!KINDS.has(r.kind) || !isStr(r.detail)) fail(`bad rejection ${J(r)}`, s);
    return;
  }
  if (r.ok !== true) fail(`result neither ok nor a rejection: ${J(r)}`, s);
  const m = r.msg;
  const good =
    (m.event === "connected" && isStr(m.protocol) && isStr(m.version)) ||
    (m.event === "start" && isStr(m.streamSid) && isStr(m.callSid) && isStr(m.accountSid) && Array.isArray(m.tracks) && m.tracks.every(isStr) &&
      Object.values(m.customParameters).every(isStr) && isStr(m.mediaFormat.encoding) && isNum(m.mediaFormat.sampleRate) && isNum(m.mediaFormat.channels)) ||
    (m.event === "media" && isStr(m.streamSid) && isStr(m.track) && isNum(m.chunk) && isNum(m.timestamp) && isStr(m.payload)) ||
    (m.event === "dtmf" && isStr(m.streamSid) && isStr(m.digit)) ||
    (m.event === "mark" && isStr(m.streamSid) && isStr(m.name)) ||
    (m.event === "stop" && isStr(m.streamSid) && isStr(m.callSid));
  if (!good) fail(`malformed message ${J(m)}`, s);
}

const scratch = Buffer.alloc(MAX_MESSAGE_BYTES);

function codecRun(input: Buffer): void {
  const s = input.toString("utf8"); // as the server decodes a text frame
  const r = parseInbound(s);
  checkShape(r, s);
  if (s.length > MAX_MESSAGE_BYTES) return;
  const full = parseInboundJson(s);
  if (!isDeepStrictEqual(r, full)) fail(`fast path and full parser disagree:\n  fast path: ${J(r)}\n  full:      ${J(full)}`, s);
  if (fastMedia(s) && !full.ok) fail("fast path accepted what the full parser rejects", s);
  if (!r.ok) return;
  const m = r.msg;
  if (m.event === "media") {
    const n = decodePayloadInto(m.payload, scratch);
    if (n < 0) return;
    const bytes = Buffer.from(scratch.subarray(0, n));
    const b64 = bytes.toString("base64");
    // What Parley sends, parsed back.
    const ours = parseInbound(new OutboundSerializer(m.streamSid).media(bytes));
    if (!ours.ok || ours.msg.event !== "media" || ours.msg.streamSid !== m.streamSid || ours.msg.payload !== b64) fail(`outbound media did not round-trip: ${J(ours)}`, s);
    // The same frame as Twilio sends it (its exact shape, which the fast path takes when it can).
    const twilio = JSON.stringify({ event: "media", sequenceNumber: "7", media: { track: "inbound", chunk: "3", timestamp: "60", payload: b64 }, streamSid: m.streamSid });
    const back = parseInbound(twilio);
    const want = { ok: true, msg: { event: "media", streamSid: m.streamSid, track: "inbound", chunk: 3, timestamp: 60, payload: b64 } };
    if (!isDeepStrictEqual(back, want)) fail(`Twilio media did not round-trip:\n  sent ${twilio}\n  got  ${J(back)}`, s);
  } else if (m.event === "mark") {
    const ser = new OutboundSerializer(m.streamSid);
    const back = parseInbound(ser.mark(m.name));
    if (!back.ok || back.msg.event !== "mark" || back.msg.name !== m.name || back.msg.streamSid !== m.streamSid) fail(`outbound mark did not round-trip: ${J(back)}`, s);
    if (!isDeepStrictEqual(JSON.parse(ser.clearMessage), { event: "clear", streamSid: m.streamSid })) fail(`clear is not {event, streamSid}: ${ser.clearMessage}`, s);
  }
}

const CODEC_DICT = [
  '"event"', '"media"', '"start"', '"mark"', '"stop"', '"dtmf"', '"connected"', '"clear"', '"streamSid"', '"payload"', '"track"', '"chunk"',
  '"timestamp"', '"sequenceNumber"', '"name"', '"digit"', '"callSid"', '"customParameters"', '"mediaFormat"', '"tracks"', '"__proto__"',
  '"inbound"', '"outbound"', '\\"', "\\\\", "\\u0000", "\\ud800", "\\/", '":"', '","', '":{"', '"},"', "{}", "[]", "null", "true", "1e400",
  '{"event":"media",', '"payload":"', '","streamSid":"', "/w==", "=", "é", "\u2028",
];

export const codecTarget: FuzzTarget = {
  name: "media-stream-codec",
  files: ["src/carriers/twilio/codec.ts"],
  run: codecRun,
  dictionary: CODEC_DICT,
  maxLen: 4096,
};

