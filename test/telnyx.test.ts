import { generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config.ts";
import { createCarriers } from "../src/carriers/registry.ts";
import { TelnyxCarrier } from "../src/carriers/telnyx/carrier.ts";
import { callIdOfClientState, clientStateOf } from "../src/carriers/telnyx/client-state.ts";
import { fastTelnyxMedia, parseTelnyx, telnyxCodec } from "../src/carriers/telnyx/codec.ts";
import { TelnyxRest } from "../src/carriers/telnyx/rest.ts";
import { telnyxEndStatus } from "../src/carriers/telnyx/status.ts";
import type { RawRequest } from "../src/carriers/carrier.ts";

/** Telnyx's wire format and signatures, piece by piece (the whole call is in telnyx-e2e.test.ts). */
const keys = generateKeyPairSync("ed25519");
const PUBLIC_KEY = Buffer.from(keys.publicKey.export({ format: "jwk" }).x!, "base64url").toString("base64");
const carrier = new TelnyxCarrier({ rest: new TelnyxRest({ apiKey: "KEY0", apiUrl: "http://127.0.0.1:9/v2" }), publicKey: PUBLIC_KEY });

const webhook = (body: string, at: number, key = keys.privateKey): RawRequest => ({
  method: "POST",
  url: "https://parley.example/telnyx/webhook",
  headers: { "content-type": "application/json", "telnyx-signature-ed25519": sign(null, Buffer.from(`${at}|${body}`), key).toString("base64"), "telnyx-timestamp": String(at) },
  body,
});
const now = () => Math.floor(Date.now() / 1000);
const event = (type: string, payload: Record<string, unknown>) => JSON.stringify({ data: { event_type: type, id: "ev-1", payload: { call_control_id: "v3:abc", ...payload } } });

describe("Telnyx webhooks", () => {
  it("accepts Ed25519 over timestamp|body; refuses another key, a changed body, a stale or malformed timestamp, no headers", async () => {
    const body = event("call.answered", {});
    expect(await carrier.verifyWebhook(webhook(body, now()))).toEqual({ ok: true, replayKey: "telnyx:ev-1" });
    expect((await carrier.verifyWebhook(webhook(body, now(), generateKeyPairSync("ed25519").privateKey))).ok).toBe(false);
    expect((await carrier.verifyWebhook({ ...webhook(body, now()), body: `${body} ` })).ok).toBe(false);
    // Outside the SDK's 300 s window both ways, far enough from its edge that a second ticking over cannot matter.
    expect((await carrier.verifyWebhook(webhook(body, now() - 400))).ok).toBe(false);
    expect((await carrier.verifyWebhook(webhook(body, now() + 400))).ok).toBe(false);
    const bad = webhook(body, now());
    expect((await carrier.verifyWebhook({ ...bad, headers: { ...bad.headers, "telnyx-timestamp": `${now()}abc` } })).ok).toBe(false);
    expect(await carrier.verifyWebhook({ ...bad, headers: {} })).toMatchObject({ ok: false, status: 403, reason: expect.stringMatching(/Missing required header/) });
  });

  it("says what each event means, with Parley's id from client_state", () => {
    const raw = (body: string) => ({ method: "POST", url: "https://p/telnyx/webhook", headers: {}, body });
    const mine = clientStateOf("TX0123456789abcdef0123456789abcdef");
    expect(carrier.event(raw(event("call.initiated", { direction: "incoming", from: "+1", to: "+2" })))).toEqual({ kind: "incoming", carrierCallId: "v3:abc", from: "+1", to: "+2" });
    expect(carrier.event(raw(event("call.answered", { client_state: mine })))).toMatchObject({ kind: "status", status: "answered", callId: "TX0123456789abcdef0123456789abcdef" });
    expect(carrier.event(raw(event("call.hangup", { client_state: mine, hangup_cause: "user_busy" })))).toMatchObject({ kind: "status", status: "busy", carrierStatus: "call.hangup:user_busy" });
    expect(carrier.event(raw(event("streaming.stopped", { client_state: mine })))).toMatchObject({ kind: "stream-ended", callId: "TX0123456789abcdef0123456789abcdef" });
    expect(carrier.event(raw(event("call.dtmf.received", { digit: "1" })))).toMatchObject({ kind: "ignored" });
    expect(carrier.event(raw("{}"))).toMatchObject({ kind: "invalid" });
    expect([telnyxEndStatus("normal_clearing"), telnyxEndStatus("timeout"), telnyxEndStatus("originator_cancel"), telnyxEndStatus("something_new")]).toEqual(["completed", "unanswered", "cancelled", "failed"]);
  });

  it("client_state carries only a safe id: a Telnyx id or anything else never becomes one", () => {
    expect(callIdOfClientState(clientStateOf("TXabc"))).toBe("TXabc");
    expect(callIdOfClientState(Buffer.from(JSON.stringify({ parley: "v3:../../etc" })).toString("base64"))).toBeUndefined();
    expect(callIdOfClientState("not base64 json")).toBeUndefined();
    expect(callIdOfClientState(null)).toBeUndefined();
  });
});

describe("Telnyx media frames", () => {
  const start = { event: "start", sequence_number: "1", stream_id: "S1", start: { call_control_id: "v3:abc", client_state: clientStateOf("TXabc"), media_format: { encoding: "PCMU", sample_rate: 8000, channels: 1 } } };

  it("parses start (stream_id at the top level), media, mark, dtmf, stop and error frames", () => {
    expect(telnyxCodec.parse(JSON.stringify(start), false)).toMatchObject({ kind: "start", streamId: "S1", carrierCallId: "v3:abc", callId: "TXabc" });
    expect(telnyxCodec.parse('{"event":"media","stream_id":"S1","media":{"track":"inbound","payload":"/w=="}}', false)).toEqual({ kind: "media", streamId: "S1", payload: "/w==" });
    expect(telnyxCodec.parse('{"event":"mark","stream_id":"S1","mark":{"name":"3:200"}}', false)).toEqual({ kind: "mark", streamId: "S1", name: "3:200" });
    expect(telnyxCodec.parse('{"event":"dtmf","stream_id":"S1","dtmf":{"digit":"#"}}', false)).toEqual({ kind: "dtmf", streamId: "S1", digit: "#" });
    expect(telnyxCodec.parse('{"event":"stop","stream_id":"S1"}', false)).toEqual({ kind: "stop", streamId: "S1" });
    expect(telnyxCodec.parse('{"event":"error","stream_id":"S1","payload":{"code":100002,"title":"Bad"}}', false)).toMatchObject({ kind: "carrier-error", detail: expect.stringContaining("100002 Bad") });
    expect(telnyxCodec.parse('{"event":"connected","version":"1.0.0"}', false)).toEqual({ kind: "handshake" });
  });

  it("refuses with a reason: binary, bad JSON, a start with its stream id inside, PCMA, our own track, unknown events", () => {
    const err = (f: string | Buffer, bin = false) => telnyxCodec.parse(f, bin) as { kind: string; error?: string };
    expect(err(Buffer.from([1, 2]), true)).toMatchObject({ kind: "malformed", error: "binary_frame" });
    expect(err("{")).toMatchObject({ kind: "malformed", error: "bad_json" });
    expect(err(JSON.stringify({ ...start, stream_id: undefined, start: { ...start.start, stream_id: "S1" } }))).toMatchObject({ kind: "malformed", error: "bad_shape" });
    expect(err(JSON.stringify({ ...start, start: { ...start.start, media_format: { encoding: "PCMA", sample_rate: 8000 } } }))).toMatchObject({ kind: "malformed", error: "bad_shape" });
    expect(err('{"event":"media","stream_id":"S1","media":{"track":"outbound","payload":"/w=="}}')).toMatchObject({ kind: "malformed", error: "bad_shape" });
    expect(err('{"event":"nope"}')).toMatchObject({ kind: "malformed", error: "unknown_event" });
  });

  it("the media fast path agrees with the full parser, and declines what it cannot read exactly", () => {
    const id = "32DE0DEA-53CB-4B21-89A4-9E1819C043BC";
    for (let i = 0; i < 200; i++) {
      const payload = randomBytes(i % 7 === 0 ? 0 : 160).toString("base64");
      const track = i % 2 ? "inbound" : "inbound_track";
      const frame = `{"event":"media","sequence_number":"${i}","stream_id":"${id}","media":{"track":"${track}","chunk":"${i}","timestamp":"${i * 20}","payload":"${payload}"}}`;
      const fast = fastTelnyxMedia(frame);
      expect(fast, frame.slice(0, 90)).not.toBeNull();
      expect(fast).toEqual(parseTelnyx(frame.replace('"event":"media",', '"event":"media", '), false)); // the full parser's reading
    }
    // Declined, and read (or refused, with its reason) by the full parser: an escape, another track, an extra field.
    const escaped = `{"event":"media","sequence_number":"1","stream_id":"${id}","media":{"track":"inbound","chunk":"1","timestamp":"20","payload":"\\u002f"}}`;
    expect(fastTelnyxMedia(escaped)).toBeNull();
    expect(parseTelnyx(escaped, false)).toEqual({ kind: "media", streamId: id, payload: "/" });
    const outbound = `{"event":"media","sequence_number":"1","stream_id":"${id}","media":{"track":"outbound","chunk":"1","timestamp":"20","payload":"AA=="}}`;
    expect(fastTelnyxMedia(outbound)).toBeNull();
    expect(parseTelnyx(outbound, false)).toMatchObject({ kind: "malformed", error: "bad_shape" });
    expect(fastTelnyxMedia(`{"event":"media","sequence_number":"1","stream_id":"${id}","media":{"track":"inbound","chunk":"1","timestamp":"20","payload":"AA=="},"x":1}`)).toBeNull();
  });

  it("sends media, marks and clear as Telnyx defines them, naming no stream", () => {
    const w = telnyxCodec.writer({ kind: "start", streamId: "S1", carrierCallId: "v3:abc", params: {}, tracks: ["inbound"], format: { encoding: "audio/x-mulaw", sampleRate: 8000, channels: 1 } });
    expect(JSON.parse(w.media(new Uint8Array([0xff, 0x7f])) as string)).toEqual({ event: "media", media: { payload: "/38=" } });
    expect(JSON.parse(w.mark('1:20:"end"') as string)).toEqual({ event: "mark", mark: { name: '1:20:"end"' } });
    expect(JSON.parse(w.clear() as string)).toEqual({ event: "clear" });
  });
});

describe("Telnyx settings", () => {
  const load = (env: Record<string, string>) => () => loadConfig({ env: { LOG_LEVEL: "silent", API_TOKEN: "0123456789abcdef0123", ...env } });
  it("need both keys, a 32-byte public key, and say which is missing", () => {
    expect(load({ TELNYX_API_KEY: "KEY1" })).toThrow(/TELNYX_PUBLIC_KEY is missing/);
    expect(load({ TELNYX_PUBLIC_KEY: PUBLIC_KEY })).toThrow(/TELNYX_API_KEY is missing/);
    expect(load({ TELNYX_API_KEY: "KEY1", TELNYX_PUBLIC_KEY: "c2hvcnQ=" })).toThrow(ConfigError);
    expect(load({ TELNYX_API_KEY: "KEY1", TELNYX_PUBLIC_KEY: "c2hvcnQ=" })).toThrow(/TELNYX_PUBLIC_KEY \(telnyxPublicKey\): must be the account's Ed25519 public key/);
    expect(load({ OUTBOUND_CARRIER: "telnyx", TELNYX_API_KEY: "KEY1", TELNYX_PUBLIC_KEY: PUBLIC_KEY })).toThrow(/OUTBOUND_CARRIER=telnyx needs .*TELNYX_CONNECTION_ID/);
  });

  it("serve Telnyx (and Twilio only if it is configured too); Telnyx places calls with a connection id", () => {
    const only = createCarriers(load({ TELNYX_API_KEY: "KEY1", TELNYX_PUBLIC_KEY: PUBLIC_KEY, TELNYX_CONNECTION_ID: "123" })());
    expect(only.all.map((c) => c.name)).toEqual(["telnyx", "browser"]);
    expect(only.outbound?.name).toBe("telnyx");
    const both = createCarriers(load({ TELNYX_API_KEY: "KEY1", TELNYX_PUBLIC_KEY: PUBLIC_KEY, TWILIO_AUTH_TOKEN: "t" })());
    expect(both.all.map((c) => c.name)).toEqual(["twilio", "telnyx", "browser"]);
    expect(both.outbound).toBeNull();
  });
});
