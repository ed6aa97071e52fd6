import { describe, expect, it } from "vitest";
import alawmulaw from "alawmulaw";
import { decodeMulaw, encodeMulaw, MULAW_TO_FLOAT, MULAW_TO_PCM16 } from "../src/audio/mulaw.ts";
import { decodePayloadInto, OutboundSerializer, parseInbound } from "../src/carriers/twilio/codec.ts";
import { isValidStreamUpgrade, isValidWebhook, signWebhook } from "../src/carriers/twilio/verify.ts";
import { connectStreamTwiml } from "../src/carriers/twilio/answer.ts";

describe("mu-law codec", () => {
  it("decode table matches the reference codec for every byte", () => {
    for (let b = 0; b < 256; b++) {
      expect(MULAW_TO_PCM16[b]).toBe(alawmulaw.mulaw.decodeSample(b) | 0); // -0 (0x7f) is 0 in an Int16Array
      expect(MULAW_TO_FLOAT[b]).toBeCloseTo(alawmulaw.mulaw.decodeSample(b) / 32768, 6);
    }
    expect(MULAW_TO_PCM16[0xff]).toBe(0);
  });

  it("round-trips a sine within mu-law quantisation error", () => {
    const pcm = Int16Array.from({ length: 800 }, (_, i) => Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / 8000)));
    const back = decodeMulaw(encodeMulaw(pcm));
    let maxErr = 0;
    for (let i = 0; i < pcm.length; i++) maxErr = Math.max(maxErr, Math.abs(back[i]! - pcm[i]!));
    expect(maxErr).toBeLessThanOrEqual(256);
  });
});

describe("Media Streams codec", () => {
  it("parses Twilio's documented messages, numeric strings included", () => {
    const start = parseInbound(
      JSON.stringify({
        event: "start",
        sequenceNumber: "1",
        start: {
          accountSid: "AC1",
          streamSid: "MZ1",
          callSid: "CA1",
          tracks: ["inbound"],
          customParameters: { token: "t" },
          mediaFormat: { encoding: "audio/x-mulaw", sampleRate: 8000, channels: 1 },
        },
        streamSid: "MZ1",
      }),
    );
    expect(start).toEqual({
      ok: true,
      msg: {
        event: "start",
        streamSid: "MZ1",
        callSid: "CA1",
        accountSid: "AC1",
        tracks: ["inbound"],
        customParameters: { token: "t" },
        mediaFormat: { encoding: "audio/x-mulaw", sampleRate: 8000, channels: 1 },
      },
    });
    // Twilio's exact shape takes the fast path; the same message in another field order takes the full parser.
    const media = parseInbound('{"event":"media","sequenceNumber":"4","media":{"track":"inbound","chunk":"2","timestamp":"5","payload":"/w=="},"streamSid":"MZ1"}');
    expect(media).toMatchObject({ ok: true, msg: { event: "media", streamSid: "MZ1", payload: "/w==" } });
    const reordered = parseInbound('{"streamSid":"MZ1","event":"media","media":{"payload":"/w==","track":"inbound","chunk":"2","timestamp":"5"}}');
    expect(reordered).toEqual({ ok: true, msg: { event: "media", streamSid: "MZ1", track: "inbound", chunk: 2, timestamp: 5, payload: "/w==" } });
    // Escapes and missing fields never fool the fast path.
    // An escaped quote inside the streamSid: the fast path stands aside and the full parser decides.
    expect(parseInbound(String.raw`{"event":"media","media":{"payload":"/w=="},"streamSid":"MZ\"x"}`)).toMatchObject({ ok: true, msg: { streamSid: 'MZ"x' } });
    expect(parseInbound('{"event":"media","media":{"payload":"/w=="}}')).toMatchObject({ ok: false, kind: "bad_shape" });
    expect(parseInbound('{"event":"media","media":{"payload":"/w=="},"streamSid":"MZ1"')).toMatchObject({ ok: false, kind: "bad_json" });
    expect(parseInbound('{"event":"mark","sequenceNumber":"4","streamSid":"MZ1","mark":{"name":"a"}}')).toMatchObject({ ok: true, msg: { name: "a" } });
    expect(parseInbound('{"event":"dtmf","streamSid":"MZ1","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"1"}}')).toMatchObject({ ok: true, msg: { digit: "1" } });
    expect(parseInbound('{"event":"stop","sequenceNumber":"5","stop":{"accountSid":"AC1","callSid":"CA1"},"streamSid":"MZ1"}')).toMatchObject({ ok: true, msg: { event: "stop", callSid: "CA1" } });
  });

  it("rejects malformed messages with a reason instead of throwing", () => {
    expect(parseInbound("{not json")).toMatchObject({ ok: false, kind: "bad_json" });
    expect(parseInbound("[1,2]")).toMatchObject({ ok: false, kind: "unknown_event" });
    expect(parseInbound("null")).toMatchObject({ ok: false, kind: "bad_shape" });
    expect(parseInbound('{"event":"media","streamSid":"MZ1"}')).toMatchObject({ ok: false, kind: "bad_shape" });
    expect(parseInbound('{"event":"launch"}')).toMatchObject({ ok: false, kind: "unknown_event" });
    expect(parseInbound("x".repeat(70_000))).toMatchObject({ ok: false, kind: "oversized" });
  });

  it("decodes payloads strictly and into a fixed buffer", () => {
    const out = Buffer.alloc(8);
    expect(decodePayloadInto(Buffer.from([1, 2, 3, 4]).toString("base64"), out)).toBe(4);
    expect([...out.subarray(0, 4)]).toEqual([1, 2, 3, 4]);
    expect(decodePayloadInto("!!!!", out)).toBe(-1);
    expect(decodePayloadInto("abc", out)).toBe(-1);
    expect(decodePayloadInto("", out)).toBe(-1);
    expect(decodePayloadInto(Buffer.alloc(9).toString("base64"), out)).toBe(-1); // larger than the buffer
  });

  it("serializes outbound messages exactly as documented", () => {
    const s = new OutboundSerializer("MZ1");
    expect(JSON.parse(s.media(Uint8Array.from([0xff, 0x7f])))).toEqual({ event: "media", streamSid: "MZ1", media: { payload: "/38=" } });
    expect(JSON.parse(s.mark('t"1'))).toEqual({ event: "mark", streamSid: "MZ1", mark: { name: 't"1' } });
    expect(JSON.parse(s.clearMessage)).toEqual({ event: "clear", streamSid: "MZ1" });
  });
});

describe("signatures and TwiML", () => {
  it("matches Twilio's published test vector", () => {
    const params = { CallSid: "CA1234567890ABCDE", Caller: "+14158675310", Digits: "1234", From: "+14158675310", To: "+18005551212" };
    const url = "https://mycompany.com/myapp.php?foo=1&bar=2";
    expect(signWebhook("12345", url, params)).toBe("GvWf1cFY/Q7PnoempGyD5oXAezc=");
    expect(isValidWebhook("12345", "GvWf1cFY/Q7PnoempGyD5oXAezc=", url, params)).toBe(true);
    expect(isValidWebhook("12345", "GvWf1cFY/Q7PnoempGyD5oXAezc=", url, { ...params, Digits: "9" })).toBe(false);
    expect(isValidWebhook("12345", undefined, url, params)).toBe(false);
  });

  it("validates a stream upgrade over the wss:// URL", () => {
    expect(isValidStreamUpgrade("12345", "7PR3qMkpDyEJtMrVOY/LDyNq8J8=", new URL("https://example.com"), "/media")).toBe(true);
    expect(isValidStreamUpgrade("12345", "7PR3qMkpDyEJtMrVOY/LDyNq8J8=", new URL("https://example.com"), "/other")).toBe(false);
  });

  it("answers with one bidirectional stream and nothing after it", () => {
    const xml = connectStreamTwiml({ streamUrl: "wss://h/voice/stream", parameters: { token: "a&b" } });
    expect(xml).toBe(
      '<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://h/voice/stream"><Parameter name="token" value="a&amp;b"/></Stream></Connect></Response>',
    );
    expect(xml).not.toMatch(/Gather|Say|Play/);
  });
});
