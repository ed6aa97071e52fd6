import { randomBytes, randomUUID } from "node:crypto";
import type WebSocket from "ws";
import { signPlivoV3 } from "../../src/carriers/plivo/signature.ts";
import { parsePlivoXml, postSigned } from "../../test/helpers/plivo-standin.ts";
import { callerNumber, CALLED_NUMBER, openSocket, parseJson, sendText, type CallDialect, type Outgoing, type Wire } from "./wire.ts";

/**
 * Plivo for the load generator (carriers.md part B; the wire of test/helpers/plivo-standin.ts and plivo-stream.ts,
 * built for hundreds of calls): the answer request (form POST, signed V3) -> Parley's XML `<Stream bidirectional
 * keepCallAlive>` -> the upgrade (GET, signed V3 over the stream URL) -> `start` (Plivo sends no `connected`). Parley
 * plays with `playAudio`, marks with `checkpoint` (echoed as `playedStream` once the audio before it has played) and
 * clears with `clearAudio` (answered by `clearedAudio`; the dropped checkpoints are never echoed). The caller hangs
 * up: the socket closes (Plivo sends no `stop`), then the hangup request.
 */
export interface PlivoWireOptions {
  baseUrl: string;
  authId: string;
  authToken: string;
}

export function plivoWire(o: PlivoWireOptions): Wire {
  return { name: "plivo", dialect: (index) => new PlivoDialect(index, o), close: async () => {} };
}

const PV_A = '{"event":"media","sequenceNumber":';
const PV_B = ',"streamId":"';
const PV_C = '","media":{"track":"inbound","timestamp":"';
const PV_D = '","chunk":';
const PV_E = ',"payload":"';

class PlivoDialect implements CallDialect {
  readonly callUuid = randomUUID();
  readonly streamId = randomUUID();
  readonly mediaPrefix = Buffer.from('{"event":"playAudio"');
  readonly clearEchoesMarks = false;
  callId: string = this.callUuid;
  private readonly from: string;
  private extraHeaders = "";
  private suffix = '"},"extra_headers":""}';
  private answeredAt = 0;
  /** Plivo's media timestamps are epoch milliseconds. */
  private readonly epoch = Date.now();

  constructor(
    index: number,
    private readonly o: PlivoWireOptions,
  ) {
    this.from = callerNumber(index);
  }

  private params(extra: Record<string, string>): Record<string, string> {
    return { CallUUID: this.callUuid, From: this.from, To: CALLED_NUMBER, Direction: "inbound", CallerName: "", BillRate: "0.0085", ...extra };
  }

  async connect(timeoutMs: number): Promise<WebSocket> {
    this.answeredAt = Date.now();
    const res = await postSigned(this.o.authToken, `${this.o.baseUrl}/plivo/answer`, this.params({ CallStatus: "ringing", Event: "StartApp" }));
    if (res.status !== 200) throw new Error(`answer URL answered ${res.status}: ${res.text.slice(0, 200)}`);
    const elements = parsePlivoXml(res.text);
    if (!elements) throw new Error(`answer XML is not Plivo XML: ${res.text.slice(0, 200)}`);
    const hangup = elements.find((e) => e.name === "Hangup");
    if (hangup) throw new Error(`call rejected (${hangup.attrs.reason ?? "no reason"})`);
    const stream = elements.find((e) => e.name === "Stream");
    if (!stream) throw new Error(`no <Stream> in the answer XML: ${res.text.slice(0, 200)}`);
    if (stream.attrs.bidirectional !== "true" || stream.attrs.keepCallAlive !== "true" || stream.attrs.contentType !== "audio/x-mulaw;rate=8000")
      throw new Error(`<Stream> Plivo would not run as a bidirectional mu-law stream: ${JSON.stringify(stream.attrs)}`);
    this.extraHeaders = stream.attrs.extraHeaders ?? "";
    this.suffix = `"},"extra_headers":${JSON.stringify(this.extraHeaders)}}`;
    // Parley's own id rides in extraHeaders (`parleyCallId=…`); its API knows the call by it.
    const id = /(?:^|[,;])parleyCallId=([^,;]+)/.exec(this.extraHeaders)?.[1];
    if (id) this.callId = id;
    // Plivo signs the upgrade over the stream URL with an http(s) scheme.
    const u = new URL(stream.text);
    const nonce = randomBytes(10).readBigUInt64BE().toString();
    const sig = signPlivoV3(this.o.authToken, "GET", `http://${u.host}${u.pathname}${u.search}`, nonce);
    const ws = await openSocket(stream.text, { "x-plivo-signature-v3": sig, "x-plivo-signature-ma-v3": sig, "x-plivo-signature-v3-nonce": nonce }, timeoutMs);
    const start = { callId: this.callUuid, streamId: this.streamId, accountId: this.o.authId, tracks: ["inbound"], mediaFormat: { encoding: "audio/x-mulaw", sampleRate: 8000 } };
    sendText(ws, JSON.stringify({ event: "start", sequenceNumber: 1, start, extra_headers: this.extraHeaders }));
    return ws;
  }

  /** Plivo's field order (carriers.md B.4.1): the order Parley's fast path reads. */
  media(seq: number, chunk: number, b64: string): string {
    return PV_A + seq + PV_B + this.streamId + PV_C + (this.epoch + chunk * 20) + PV_D + chunk + PV_E + b64 + this.suffix;
  }

  mediaObject(seq: number, chunk: number, b64: string): unknown {
    return { event: "media", sequenceNumber: seq, streamId: this.streamId, media: { track: "inbound", timestamp: String(this.epoch + chunk * 20), chunk, payload: b64 }, extra_headers: this.extraHeaders };
  }

  parse(text: string): Outgoing {
    const msg = parseJson(text) as { event?: unknown; streamId?: unknown; name?: unknown; media?: { contentType?: unknown; sampleRate?: unknown; payload?: unknown } } | null;
    if (!msg) return { kind: "bad", why: `not JSON: ${text.slice(0, 80)}` };
    switch (msg.event) {
      case "playAudio": {
        const m = msg.media;
        if (m?.contentType !== "audio/x-mulaw" || m?.sampleRate !== 8000 || typeof m?.payload !== "string") return { kind: "bad", why: `playAudio Plivo would not play: ${text.slice(0, 120)}` };
        return { kind: "media", payload: m.payload };
      }
      case "checkpoint":
        if (msg.streamId !== this.streamId || typeof msg.name !== "string") return { kind: "bad", why: `checkpoint: ${text.slice(0, 120)}` };
        return { kind: "mark", name: msg.name };
      case "clearAudio":
        if (msg.streamId !== this.streamId) return { kind: "bad", why: `clearAudio: ${text.slice(0, 120)}` };
        return { kind: "clear" };
      default:
        return { kind: "bad", why: `unexpected event ${String(msg.event)}` };
    }
  }

  markEcho(seq: number, name: string): string {
    return `{"event":"playedStream","sequenceNumber":${seq},"streamId":"${this.streamId}","name":${JSON.stringify(name)}}`;
  }

  clearReply(seq: number): string {
    return `{"event":"clearedAudio","sequenceNumber":${seq},"streamId":"${this.streamId}"}`;
  }

  /** The caller hangs up: the socket just closes, then Plivo calls the hangup URL. */
  hangUp(ws: WebSocket): void {
    ws.close(1000);
    const duration = String(Math.round((Date.now() - this.answeredAt) / 1000));
    void postSigned(this.o.authToken, `${this.o.baseUrl}/plivo/status`, this.params({ CallStatus: "completed", Event: "Hangup", HangupCause: "Normal Hangup", HangupCauseName: "Normal Hangup", Duration: duration, BillDuration: duration })).catch(() => {});
  }
}
