import { createHmac, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { plivoHangupXml, plivoStreamXml } from "../src/carriers/plivo/answer-xml.ts";
import { PlivoCarrier } from "../src/carriers/plivo/carrier.ts";
import { fastPlivoMedia, parsePlivo, parsePlivoJson, plivoCodec, PlivoSerializer, unsupportedFormat } from "../src/carriers/plivo/codec.ts";
import { formParams, isValidPlivoSignature, isValidPlivoUpgrade, plivoV3Message, signPlivoV3 } from "../src/carriers/plivo/signature.ts";

const STREAM = "20170ada-f610-433b-8758-c02a2aab3662";
const hmac = (key: string, msg: string) => createHmac("sha256", key).update(msg).digest("base64");

describe("Plivo media codec", () => {
  it("reads start, media, dtmf, playedStream, clearedAudio and stop as documented", () => {
    const start = parsePlivo(
      JSON.stringify({
        event: "start",
        sequenceNumber: 1,
        start: { callId: "c-1", streamId: STREAM, accountId: "MA1", tracks: ["inbound"], mediaFormat: { encoding: "audio/x-mulaw", sampleRate: 8000 } },
        extra_headers: "userId=12345;sessionId=abc-xyz",
      }),
    );
    expect(start).toEqual({
      ok: true,
      msg: { event: "start", streamId: STREAM, callId: "c-1", accountId: "MA1", tracks: ["inbound"], mediaFormat: { encoding: "audio/x-mulaw", sampleRate: 8000 }, extraHeaders: { userId: "12345", sessionId: "abc-xyz" } },
    });
    expect(start.ok && start.msg.event === "start" && unsupportedFormat(start.msg)).toBeNull();
    const media = { event: "media", sequenceNumber: 2, streamId: STREAM, media: { track: "inbound", timestamp: "1706000000123", chunk: 1, payload: "//8A" } };
    expect(parsePlivo(JSON.stringify(media))).toEqual({ ok: true, msg: { event: "media", streamId: STREAM, track: "inbound", timestamp: 1706000000123, chunk: 1, payload: "//8A" } });
    expect(parsePlivo(JSON.stringify({ event: "dtmf", sequenceNumber: 3, streamId: STREAM, dtmf: { track: "inbound", digit: "#", timestamp: "1" } }))).toEqual({ ok: true, msg: { event: "dtmf", streamId: STREAM, digit: "#" } });
    expect(parsePlivo(JSON.stringify({ event: "playedStream", sequenceNumber: 4, streamId: STREAM, name: "u1:end" }))).toEqual({ ok: true, msg: { event: "playedStream", streamId: STREAM, name: "u1:end" } });
    expect(parsePlivo(JSON.stringify({ event: "played", streamId: STREAM, name: "u1" }))).toEqual({ ok: true, msg: { event: "playedStream", streamId: STREAM, name: "u1" } });
    expect(parsePlivo(JSON.stringify({ event: "clearedAudio", sequenceNumber: 5, streamId: STREAM }))).toEqual({ ok: true, msg: { event: "clearedAudio", streamId: STREAM } });
    expect(parsePlivo(JSON.stringify({ event: "stop", streamId: STREAM }))).toEqual({ ok: true, msg: { event: "stop", streamId: STREAM } });
  });

  it("gives a reason for every malformed frame and never throws", () => {
    const cases: [string | Buffer, boolean, string][] = [
      ["not json", false, "bad_json"],
      ["[1,2]", false, "bad_shape"],
      ["null", false, "bad_shape"],
      ['{"event":"connected"}', false, "unknown_event"],
      ['{"event":"media","streamId":"s"}', false, "bad_shape"],
      ['{"event":"media","streamId":"s","media":{"payload":5}}', false, "bad_shape"],
      ['{"event":"start","start":{"streamId":"s"}}', false, "bad_shape"],
      ['{"event":"dtmf","streamId":"s","dtmf":{"digit":"12"}}', false, "bad_shape"],
      ['{"event":"dtmf","streamId":"s","dtmf":{"digit":"x"}}', false, "bad_shape"],
      ['{"event":"playedStream","streamId":"s"}', false, "bad_shape"],
      ['{"event":"clearedAudio"}', false, "bad_shape"],
      [Buffer.from('{"event":"stop","streamId":"s"}'), true, "binary_frame"],
      [`{"event":"media","pad":"${"a".repeat(70_000)}"}`, false, "oversized"],
    ];
    for (const [frame, binary, kind] of cases) {
      const r = parsePlivo(frame, binary);
      expect(r.ok, String(frame).slice(0, 60)).toBe(false);
      if (!r.ok) {
        expect(r.kind, String(frame).slice(0, 60)).toBe(kind);
        expect(r.detail.length).toBeGreaterThan(0);
      }
    }
  });

  it("reports a stream that is not 8 kHz mu-law, naming the setting that fixes it", () => {
    const r = parsePlivoJson(JSON.stringify({ event: "start", start: { callId: "c", streamId: "s", mediaFormat: { encoding: "audio/x-l16", sampleRate: 16000 } } }));
    expect(r.ok && r.msg.event === "start" && unsupportedFormat(r.msg)).toMatch(/audio\/x-l16 at 16000 Hz.*contentType="audio\/x-mulaw;rate=8000"/);
    const none = parsePlivoJson(JSON.stringify({ event: "start", start: { callId: "c", streamId: "s" } }));
    expect(none.ok && none.msg.event === "start" && unsupportedFormat(none.msg)).toMatch(/\(none\)/);
  });

  it("the media fast path agrees with the full parser, and declines what it cannot read exactly", () => {
    for (let i = 0; i < 200; i++) {
      const payload = randomBytes(i % 7 === 0 ? 0 : 160).toString("base64");
      const headers = i % 2 ? `,"extra_headers":"callId=${i};x-y=z_1"` : "";
      const seq = i % 3 ? String(i) : `"${i}"`;
      const frame = `{"event":"media","sequenceNumber":${seq},"streamId":"${STREAM}","media":{"track":"inbound","timestamp":"${1706000000000 + i * 20}","chunk":${i},"payload":"${payload}"}${headers}}`;
      const fast = fastPlivoMedia(frame);
      expect(fast, frame.slice(0, 80)).not.toBeNull();
      expect(fast).toEqual(parsePlivoJson(frame));
    }
    const escaped = `{"event":"media","sequenceNumber":1,"streamId":"${STREAM}","media":{"track":"inbound","timestamp":"1","chunk":1,"payload":"\\u002f"}}`;
    expect(fastPlivoMedia(escaped)).toBeNull();
    expect(parsePlivo(escaped)).toEqual({ ok: true, msg: expect.objectContaining({ payload: "/" }) });
    expect(fastPlivoMedia(`{"event":"media","sequenceNumber":1,"streamId":"${STREAM}","media":{"track":"inbound","timestamp":"1","chunk":1,"payload":"AA=="},"other":1}`)).toBeNull();
  });

  it("serializes playAudio (mu-law 8000, base64), checkpoint and clearAudio exactly as Plivo documents them", () => {
    const s = new PlivoSerializer(STREAM);
    const bytes = new Uint8Array(320).map((_, i) => i & 0xff);
    const frame = bytes.subarray(160, 320);
    expect(JSON.parse(s.media(frame))).toEqual({ event: "playAudio", media: { contentType: "audio/x-mulaw", sampleRate: 8000, payload: Buffer.from(frame).toString("base64") } });
    expect(JSON.parse(s.mark('u"1:end'))).toEqual({ event: "checkpoint", streamId: STREAM, name: 'u"1:end' });
    expect(JSON.parse(s.clear())).toEqual({ event: "clearAudio", streamId: STREAM });
  });
});

describe("Plivo answer XML", () => {
  it("one bidirectional mu-law stream that keeps the call alive, URL as escaped element text, nothing after it", () => {
    const xml = plivoStreamXml({ streamUrl: "wss://parley.example/plivo/stream?token=a-b_c&x=1", statusCallbackUrl: "https://parley.example/plivo/stream-status" });
    expect(xml).toBe(
      '<Response><Stream bidirectional="true" keepCallAlive="true" contentType="audio/x-mulaw;rate=8000" statusCallbackUrl="https://parley.example/plivo/stream-status" statusCallbackMethod="POST">wss://parley.example/plivo/stream?token=a-b_c&amp;x=1</Stream></Response>',
    );
    expect(plivoStreamXml({ streamUrl: "wss://h/s" })).toBe('<Response><Stream bidirectional="true" keepCallAlive="true" contentType="audio/x-mulaw;rate=8000">wss://h/s</Stream></Response>');
    expect(plivoHangupXml("busy")).toBe('<Response><Hangup reason="busy"/></Response>');
  });
});

describe("Plivo signature V3 (the official helper)", () => {
  const TOKEN = "MTIzNDU2Nzg5MGFiY2RlZg";
  const NONCE = "05429567804466091622";

  it("accepts vectors computed the documented way (carriers.md B.5.2) and our signer agrees with them", () => {
    // POST with a body: URL + "?" + sorted key-value pairs without separators + "." + nonce.
    const url = "https://api.example.com/plivo/answer";
    const params = formParams("From=%2B1555&CallUUID=abc");
    const post = hmac(TOKEN, `https://api.example.com/plivo/answer?CallUUIDabcFrom+1555.${NONCE}`);
    expect(plivoV3Message("POST", url, NONCE, params)).toBe(`https://api.example.com/plivo/answer?CallUUIDabcFrom+1555.${NONCE}`);
    expect(signPlivoV3(TOKEN, "POST", url, NONCE, params)).toBe(post);
    expect(isValidPlivoSignature({ authToken: TOKEN, method: "POST", url, signature: post, nonce: NONCE, params })).toBe(true);
    // POST with a query too: sorted query, ".", then the body pairs.
    const qUrl = "https://api.example.com/plivo/answer?b=2&a=1";
    const both = hmac(TOKEN, `https://api.example.com/plivo/answer?a=1&b=2.CallUUIDabc.${NONCE}`);
    expect(isValidPlivoSignature({ authToken: TOKEN, method: "POST", url: qUrl, signature: both, nonce: NONCE, params: { CallUUID: "abc" } })).toBe(true);
    expect(signPlivoV3(TOKEN, "POST", qUrl, NONCE, { CallUUID: "abc" })).toBe(both);
    // GET (the media socket's upgrade): the URL with its sorted query, then "." + nonce.
    const get = hmac(TOKEN, `http://media.example.com/plivo/ws/abc?token=t&x=1.${NONCE}`);
    expect(isValidPlivoSignature({ authToken: TOKEN, method: "GET", url: "http://media.example.com/plivo/ws/abc?x=1&token=t", signature: get, nonce: NONCE })).toBe(true);
    expect(signPlivoV3(TOKEN, "GET", "http://media.example.com/plivo/ws/abc?x=1&token=t", NONCE)).toBe(get);
    // Repeated keys: every value, sorted.
    const multi = formParams("Digits=2&Digits=1&A=x");
    expect(plivoV3Message("POST", url, NONCE, multi)).toBe(`https://api.example.com/plivo/answer?AxDigits1Digits2.${NONCE}`);
    expect(isValidPlivoSignature({ authToken: TOKEN, method: "POST", url, signature: signPlivoV3(TOKEN, "POST", url, NONCE, multi), nonce: NONCE, params: multi })).toBe(true);
  });

  it("refuses forgeries: another token, nonce, parameter or URL; no header; accepts any one of several signatures", () => {
    const url = "https://parley.example/plivo/answer";
    const params = { CallUUID: "abc", From: "+15550100" };
    const good = signPlivoV3(TOKEN, "POST", url, NONCE, params);
    const check = (o: Partial<Parameters<typeof isValidPlivoSignature>[0]>) =>
      isValidPlivoSignature({ authToken: TOKEN, method: "POST", url, signature: good, nonce: NONCE, params, ...o });
    expect(check({})).toBe(true);
    expect(check({ authToken: "another-token" })).toBe(false);
    expect(check({ nonce: "1" })).toBe(false);
    expect(check({ params: { ...params, From: "+15550199" } })).toBe(false);
    expect(check({ url: "https://parley.example/plivo/answer?x=1" })).toBe(false);
    expect(check({ url: "https://evil.example/plivo/answer" })).toBe(false);
    expect(check({ signature: undefined })).toBe(false);
    expect(check({ nonce: undefined })).toBe(false);
    expect(check({ signature: "" })).toBe(false);
    expect(check({ signature: `${signPlivoV3("old-token", "POST", url, NONCE, params)}, ${good}` })).toBe(true);
    expect(isValidPlivoSignature({ authToken: TOKEN, method: "PUT" as "GET", url, signature: good, nonce: NONCE })).toBe(false);
  });

  it("the media upgrade is checked as a GET over the stream URL with http:// or https://, never ws(s)://", () => {
    const origin = new URL("https://parley.example");
    const path = "/plivo/stream?token=abc";
    for (const scheme of ["http", "https"]) {
      const sig = signPlivoV3(TOKEN, "GET", `${scheme}://parley.example${path}`, NONCE);
      expect(isValidPlivoUpgrade(TOKEN, origin, path, sig, NONCE), scheme).toBe(true);
    }
    expect(isValidPlivoUpgrade(TOKEN, origin, path, signPlivoV3(TOKEN, "GET", `https://parley.example${path}`, NONCE), NONCE)).toBe(true);
    const wss = hmac(TOKEN, `wss://parley.example${path}.${NONCE}`);
    expect(isValidPlivoUpgrade(TOKEN, origin, path, wss, NONCE)).toBe(false);
    expect(isValidPlivoUpgrade(TOKEN, origin, "/plivo/stream?token=other", signPlivoV3(TOKEN, "GET", `http://parley.example${path}`, NONCE), NONCE)).toBe(false);
    expect(isValidPlivoUpgrade(TOKEN, origin, path, undefined, NONCE)).toBe(false);
  });
});

describe("PlivoCarrier (the seam)", () => {
  const TOKEN = "carrier-unit-token";
  const ORIGIN = "https://parley.example";
  const req = (path: string, params: Record<string, string>, headers: Record<string, string> = {}) => ({
    method: "POST",
    url: `${ORIGIN}${path}`,
    headers,
    body: new URLSearchParams(params).toString(),
  });
  const signed = (path: string, params: Record<string, string>, nonce = "42") =>
    req(path, params, { "x-plivo-signature-v3": signPlivoV3(TOKEN, "POST", `${ORIGIN}${path}`, nonce, params), "x-plivo-signature-v3-nonce": nonce });

  it("verifies webhooks (replay key from the nonce) and stream upgrades (token from the query)", () => {
    const c = new PlivoCarrier({ authToken: TOKEN, rest: null });
    const p = { CallUUID: "u-1", From: "+15550100001", To: "+15550100002" };
    expect(c.verifyWebhook(signed("/plivo/answer", p))).toEqual({ ok: true, replayKey: `plivo:42:${ORIGIN}/plivo/answer` });
    expect(c.verifyWebhook(req("/plivo/answer", p))).toMatchObject({ ok: false, status: 403 });
    // The signature of one body on another (a parameter dropped on the way) is refused.
    expect(c.verifyWebhook({ ...signed("/plivo/answer", p), body: "CallUUID=u-1" })).toMatchObject({ ok: false, status: 403 });
    const path = "/plivo/stream?token=tok-1";
    const sig = signPlivoV3(TOKEN, "GET", `http://parley.example${path}`, "7");
    expect(c.verifyStream({ method: "GET", url: `${ORIGIN}${path}`, headers: { "x-plivo-signature-v3": sig, "x-plivo-signature-v3-nonce": "7" }, body: "" })).toEqual({ ok: true, token: "tok-1" });
    expect(c.verifyStream({ method: "GET", url: `${ORIGIN}${path}`, headers: {}, body: "" })).toMatchObject({ ok: false, status: 403 });
    // Unsigned (no PLIVO_AUTH_TOKEN): the token must be live before the socket is accepted.
    expect(new PlivoCarrier({ rest: null }).verifyStream({ method: "GET", url: `${ORIGIN}${path}`, headers: {}, body: "" })).toEqual({ ok: true, token: "tok-1", checkToken: true });
  });

  it("says what Plivo's requests mean in Parley's words, with the placed call's request_uuid as its carrier id", () => {
    const c = new PlivoCarrier({ authToken: TOKEN, rest: null });
    expect(c.event(req("/plivo/answer", { CallUUID: "in-1", From: "+1555", To: "+1666" }))).toEqual({ kind: "incoming", carrierCallId: "in-1", from: "+1555", to: "+1666" });
    // A placed call's answer request: Parley's id in the query, Plivo's request_uuid beside a new CallUUID.
    expect(c.event(req("/plivo/answer?callId=PV1", { CallUUID: "call-2", RequestUUID: "req-2", ALegRequestUUID: "req-2", From: "+1", To: "+2" }))).toEqual({
      kind: "incoming",
      carrierCallId: "req-2",
      callId: "PV1",
      from: "+1",
      to: "+2",
    });
    expect(c.codec.parse(JSON.stringify({ event: "start", start: { callId: "call-2", streamId: "s", mediaFormat: { encoding: "audio/x-mulaw", sampleRate: 8000 } }, extra_headers: "parleyCallId=PV1" }), false)).toMatchObject({
      kind: "start",
      carrierCallId: "req-2",
      callId: "PV1",
    });
    expect(c.event(req("/plivo/status?callId=PV1", { CallUUID: "call-2", CallStatus: "completed", Duration: "12", Event: "Hangup" }))).toEqual({
      kind: "status",
      carrierCallId: "req-2",
      callId: "PV1",
      status: "completed",
      carrierStatus: "completed",
      durationS: "12",
    });
    expect(c.event(req("/plivo/status?callId=PV3", { CallUUID: "c3", CallStatus: "timeout" }))).toMatchObject({ status: "unanswered", carrierStatus: "timeout" });
    expect(c.event(req("/plivo/status?callId=PV3", { CallUUID: "c3", CallStatus: "busy" }))).toMatchObject({ status: "busy" });
    expect(c.event(req("/plivo/resume?callId=PV1", { CallUUID: "call-2" }))).toEqual({ kind: "stream-ended", carrierCallId: "req-2", callId: "PV1" });
    expect(c.event(req("/plivo/status", { CallStatus: "completed" }))).toEqual({ kind: "invalid", reason: "CallUUID is required" });
    expect(c.event(req("/plivo/status", { CallUUID: "x", CallStatus: "weird" }))).toMatchObject({ kind: "ignored" });
  });

  it("an inbound call answered here is found again by its hangup request, which carries no Parley id", () => {
    const c = new PlivoCarrier({ authToken: TOKEN, rest: null });
    const doc = c.answer({ callId: "PV9", carrierCallId: "in-9", streamOrigin: "wss://parley.example", webhookOrigin: ORIGIN, token: "t9" });
    expect(doc).toEqual({
      contentType: "application/xml",
      via: "response",
      body: '<Response><Stream bidirectional="true" keepCallAlive="true" contentType="audio/x-mulaw;rate=8000" extraHeaders="parleyCallId=PV9">wss://parley.example/plivo/stream?token=t9</Stream><Redirect method="POST">https://parley.example/plivo/resume?callId=PV9</Redirect></Response>',
    });
    expect(c.event(req("/plivo/status", { CallUUID: "in-9", CallStatus: "completed", Event: "Hangup" }))).toMatchObject({ kind: "status", callId: "PV9", carrierCallId: "in-9" });
    expect(c.resume(null).body).toBe("<Response><Hangup/></Response>");
    expect(c.reject("busy").body).toBe('<Response><Hangup reason="busy"/></Response>');
  });

  it("refuses a stream that is not 8 kHz mu-law at start, and binary frames, with reasons", () => {
    const l16 = JSON.stringify({ event: "start", start: { callId: "c", streamId: "s", mediaFormat: { encoding: "audio/x-l16", sampleRate: 8000 } } });
    expect(plivoCodec.parse(l16, false)).toMatchObject({ kind: "malformed", error: "bad_shape", detail: expect.stringMatching(/audio\/x-l16/) });
    expect(plivoCodec.parse(Buffer.from("{}"), true)).toMatchObject({ kind: "malformed", error: "binary_frame" });
    expect(plivoCodec.parse(JSON.stringify({ event: "clearedAudio", streamId: "s" }), false)).toEqual({ kind: "cleared", streamId: "s" });
    expect(plivoCodec.parse(JSON.stringify({ event: "playedStream", streamId: "s", name: "t:1:end" }), false)).toEqual({ kind: "mark", streamId: "s", name: "t:1:end" });
    expect(plivoCodec).toMatchObject({ markSemantics: "played", clearEchoesMarks: false });
  });
});
