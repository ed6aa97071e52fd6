/**
 * The carrier seam: everything a telephone carrier (Twilio, Telnyx, Plivo) or the browser softphone says in its own
 * dialect, behind one interface, and nothing else. The call runtime (`src/call/`), the audio path (`src/audio/`) and
 * the statechart (`machines/`) import this file only, never `src/carriers/<name>/`: a test (test/carrier-seam.test.ts)
 * fails if they do. So adding a carrier is a new folder here and a line in the registry, not an edit of the core.
 *
 * Shape, following Pipecat: each carrier's frame serializer (`MediaCodec`) is apart from the transport (the WebSocket
 * server in `src/server/media-stream.ts` is shared by all), and apart from its control plane (webhooks, REST).
 */

export type CarrierName = "twilio" | "telnyx" | "plivo" | "browser";

// ---------------------------------------------------------------------------------------------------------------
// Parley's own call statuses. Carriers name them differently (Twilio `in-progress`/`no-answer`/`canceled`, Telnyx
// `call.answered`/`call.hangup` + `hangup_cause`, Plivo `CallStatus=in-progress`...); each carrier maps its own onto
// these, and only these reach the runtime, the record and the machine.
// ---------------------------------------------------------------------------------------------------------------

/** How a call ended, as far as the carrier tells us. */
export type EndStatus =
  /** Answered, then hung up by either side (or ended normally). */
  | "completed"
  /** The callee's line was busy. */
  | "busy"
  /** Rang out: nobody answered. */
  | "unanswered"
  /** The carrier could not place or keep the call (bad number, network, rejected). */
  | "failed"
  /** We (or the caller) gave up before it was answered. */
  | "cancelled";

export type CallStatus = "initiated" | "ringing" | "answered" | EndStatus;

export const END_STATUSES: ReadonlySet<CallStatus> = new Set<EndStatus>(["completed", "busy", "unanswered", "failed", "cancelled"]);

// ---------------------------------------------------------------------------------------------------------------
// The media socket: frames in, in Parley's own union; frames out, serialized per stream.
// ---------------------------------------------------------------------------------------------------------------

/** The audio format a stream carries (all carriers are asked for G.711 mu-law at 8 kHz; a start that says otherwise is refused). */
export interface MediaFormat {
  encoding: string;
  sampleRate: number;
  channels: number;
}

/**
 * A stream's first real frame: which call it belongs to and how to check that it may. `streamId` is optional on later
 * frames; when a frame carries one, the runtime refuses it if it is not this stream's (a stale or crossed stream).
 */
export interface StreamStart {
  kind: "start";
  /** The carrier's id of this stream (Twilio `streamSid`, Telnyx `stream_id`, Plivo `streamId`). */
  streamId: string;
  /** The carrier's id of the call (Twilio `CallSid`, Telnyx `call_control_id`, Plivo `callId`). */
  carrierCallId: string;
  /** Parley's id of the call, when the carrier hands back what we gave it (a Twilio `<Parameter>`, Telnyx `client_state`). */
  callId?: string;
  /** The single-use stream token, when it travels inside the stream (Twilio `<Parameter name="token">`). */
  token?: string;
  /** Per-call parameters the answer document attached (Twilio `customParameters`, Telnyx `custom_parameters`). */
  params: Record<string, string>;
  tracks: string[];
  format: MediaFormat;
}

/**
 * Everything a media socket can say, in Parley's words. `media.payload` is the carrier's audio as it arrived: base64
 * text (all three carriers' JSON) or raw bytes (a binary frame), decoded by the inbound path into its fixed buffer, so
 * parsing a media frame copies no audio.
 */
export type Inbound =
  /** A handshake before `start` (Twilio and Telnyx `connected`); nothing to do. */
  | { kind: "handshake"; token?: string }
  | StreamStart
  | { kind: "media"; streamId?: string; payload: string | Uint8Array }
  /** The carrier played everything sent before the mark of this name (Twilio/Telnyx `mark`, Plivo `playedStream`). */
  | { kind: "mark"; streamId?: string; name: string }
  /** The carrier confirms a clear (Plivo `clearedAudio`); Twilio and Telnyx echo the pending marks instead. */
  | { kind: "cleared"; streamId?: string }
  | { kind: "dtmf"; streamId?: string; digit: string }
  /** The carrier ended the stream: the call is over (Twilio/Telnyx `stop`). */
  | { kind: "stop"; streamId?: string }
  /** The carrier reports a problem on the stream (Telnyx `error`): recorded as a protocol error, the call goes on. */
  | { kind: "carrier-error"; streamId?: string; detail: string };

export type ProtocolErrorKind = "bad_json" | "binary_frame" | "unknown_event" | "bad_shape" | "oversized";

/** A frame that could not be understood, with why: counted per call, never closing the socket. */
export interface Malformed {
  kind: "malformed";
  error: ProtocolErrorKind;
  detail: string;
}

/** What we send on one stream. Built once per stream, because most carriers name the stream in every frame. */
export interface MediaWriter {
  /** One message of outbound audio (G.711 mu-law, 8 kHz; a multiple of 20 ms). Per frame: keep it cheap. */
  media(mulaw: Uint8Array): string | Buffer;
  /** Ask the carrier to echo `name` once everything sent before it has played. */
  mark(name: string): string | Buffer;
  /** Drop whatever the carrier has buffered and not yet played (barge-in). */
  clear(): string | Buffer;
}

export interface MediaCodec {
  /** Parse one WebSocket frame. Never throws: anything not understood is `malformed`, with the reason. */
  parse(frame: string | Buffer, isBinary: boolean): Inbound | Malformed;
  /** The serializer for the stream that `start` opened. */
  writer(start: StreamStart): MediaWriter;
  /**
   * What a mark echo means. "played": the audio before it was heard (Twilio, Telnyx, Plivo checkpoints). A carrier
   * whose echo only means "received" would make heard-text a guess; none of ours does, and the field says it out loud.
   */
  readonly markSemantics: "played";
  /** Whether a `clear` makes the carrier echo the marks it dropped (Twilio, Telnyx) or not (Plivo: `clearedAudio`). */
  readonly clearEchoesMarks: boolean;
}

// ---------------------------------------------------------------------------------------------------------------
// The control plane: webhooks in, answer documents and REST commands out.
// ---------------------------------------------------------------------------------------------------------------

/** An HTTP request as it arrived: the signature checks need the exact bytes and the public URL the carrier used. */
export interface RawRequest {
  method: string;
  /** The public URL the carrier requested (PUBLIC_URL origin + path and query), which is what carriers sign. */
  url: string;
  /** Header names in lower case. */
  headers: Record<string, string | string[] | undefined>;
  /** The body exactly as received ("" for none). */
  body: string;
}

/** A verified request; `replayKey` identifies it, so a copy replayed later is refused (409) by the replay guard. */
export interface Verified {
  ok: true;
  replayKey: string | null;
}

/** A refused request, with the reason for the log (never sent to the peer beyond the status). */
export interface Refused {
  ok: false;
  status: 401 | 403;
  reason: string;
}

/** A media-socket upgrade that may go on: the single-use token when it travels in the URL or a header (Telnyx, browser). */
export interface StreamAdmitted {
  ok: true;
  token?: string;
  /**
   * The upgrade carries no signature, only `token` (Telnyx, the browser): the server accepts the socket only if the
   * token is live for this carrier's path, so a forged stream is refused before it is accepted. It is spent at `start`.
   */
  checkToken?: boolean;
}

/** What a verified webhook says, in Parley's words. `callId` is Parley's id when the carrier echoes it back. */
export type CarrierEvent =
  /**
   * A call asks for its stream document. Without `callId`: a new inbound call, waiting to be answered. With it: an
   * outbound call we placed, now answered, whose carrier fetches the document then (Plivo's `answer_url`).
   */
  | { kind: "incoming"; carrierCallId: string; callId?: string; from: string; to: string }
  /** The call's status moved. `carrierStatus` is the carrier's own word, kept in the record beside ours. */
  | { kind: "status"; carrierCallId: string; callId?: string; status: CallStatus; carrierStatus: string; sequence?: string; durationS?: string; answeredBy?: string }
  /** The stream ended while the call may be up: the carrier asks for the next step (Twilio `<Connect action>`). */
  | { kind: "stream-ended"; carrierCallId: string; callId?: string }
  /** A request the carrier would never send (a required field missing): answered 400 with the reason. */
  | { kind: "invalid"; reason: string }
  /** The carrier's answering-machine detection says who answered (Twilio's AsyncAmd): evidence for screening. */
  | { kind: "amd"; carrierCallId: string; callId?: string; answeredBy: string; detectionMs?: number }
  /** Nothing to act on (e.g. Telnyx `call.dtmf.received`: the stream's copy of the digit is the one acted on). */
  | { kind: "ignored"; why: string };

/** A document for the carrier: the webhook's response body (TwiML, Plivo XML), or a command's JSON body (Telnyx). */
export interface CarrierReply {
  contentType: string;
  body: string;
  /**
   * "response": the carrier reads it from the webhook's HTTP response (Twilio, Plivo). "command": the webhook is
   * answered 200 with nothing, and the document is POSTed as a REST command (Telnyx `actions/answer`), with `command`
   * naming it.
   */
  via: "response" | "command";
  command?: string;
}

/** Where a new stream should connect and how it proves it may: what the answer document carries. */
export interface StreamTicket {
  /**
   * Parley's call id. Absent only when placing a call whose carrier's id becomes Parley's (Twilio): it is not known
   * until the carrier answers the request.
   */
  callId?: string;
  /** The carrier's call id, when known (inbound: from the webhook; outbound: after `place`). */
  carrierCallId?: string;
  /** Origin of the public wss:// URL (PUBLIC_URL, or a fleet owner's INSTANCE_URL), e.g. `wss://parley.example.com`. */
  streamOrigin: string;
  /** Origin of the public https:// URL carrier webhooks come to. */
  webhookOrigin: string;
  /** The single-use token that admits the stream (60 s, bound to `callId`). */
  token: string;
}

export interface PlaceRequest {
  /** Parley's id of the call about to be placed, when Parley mints it (`callIds: "parley"`): the carrier carries it back. */
  callId?: string;
  to: string;
  from: string;
  stream: StreamTicket;
  /** Ring timeout in seconds. */
  timeoutSeconds: number;
  /** Ask the carrier's answering-machine detection too, where it has one (CARRIER_AMD); it reports to `paths.amd`. */
  amd?: boolean;
}

/**
 * Handing a live call over to a person (src/call/transfer.ts), where the carrier can; ids are the carrier's. Either
 * way the call's media stream ends: Parley's part in the call is over once it has been handed on.
 */
export interface CallTransfer {
  /** Cold: connect the call to `to` (Twilio: a REST update with `<Dial>`). */
  connect(carrierCallId: string, to: string): Promise<void>;
  /** Warm: put the calls in one room named `room` (Twilio: `<Dial><Conference>` on each). */
  join(carrierCallIds: string[], room: string): Promise<void>;
}

/** The carriers this process serves, built from the configuration (src/carriers/registry.ts). */
export interface Carriers {
  /** The carrier of this name, when configured (the browser softphone always is, unless SOFTPHONE=false). */
  get(name: string): Carrier | undefined;
  /** Every configured carrier: each one's webhook and media-socket routes are served. */
  readonly all: readonly Carrier[];
  /** Who places outbound calls (OUTBOUND_CARRIER, else the first with REST credentials), or null when none can. */
  readonly outbound: Carrier | null;
}

export interface Carrier {
  readonly name: CarrierName;
  /**
   * Whose id names the call in Parley's records, API and file names. "carrier": the carrier's id is already safe
   * (Twilio's `CA` + 32 hex) and is used as is, so existing records and links keep working. "parley": Parley mints
   * one (`isSafeCallId`) and the carrier's id (Telnyx `v3:…`, with `:` and other characters no file name should
   * hold) rides beside it; the carrier hands ours back on every event (Telnyx `client_state`).
   */
  readonly callIds: "carrier" | "parley";
  readonly codec: MediaCodec;
  /** The caller ID outbound calls use when the request names none, and the setting that holds it (for the error). */
  readonly callerId?: { number?: string; setting: string };
  /** Paths this carrier's webhooks and media socket are served on (each carrier has its own). */
  readonly paths: { webhook?: string; status?: string; resume?: string; amd?: string; stream: string };
  /** Transfers to a person, where the carrier has them (Twilio, with REST credentials). */
  readonly transfer?: CallTransfer;

  /**
   * Check a webhook's signature (and its clock skew where the carrier signs a timestamp). Fails closed. May be async:
   * Telnyx's official helper verifies Ed25519 through WebCrypto, which is.
   */
  verifyWebhook(req: RawRequest): Verified | Refused | Promise<Verified | Refused>;
  /** Check a media-socket upgrade: a signature (Twilio), or the per-call token in its URL or headers (Telnyx, browser). */
  verifyStream(req: RawRequest): StreamAdmitted | Refused;
  /** What a verified webhook means; anything unknown is `ignored`, with why. */
  event(req: RawRequest): CarrierEvent;

  /** Answer an incoming call with one bidirectional stream of G.711 mu-law at 8 kHz, and nothing after it. */
  answer(ticket: StreamTicket): CarrierReply;
  /** Refuse an incoming call (policy, or no capacity). */
  reject(reason: "busy" | "rejected", carrierCallId: string): CarrierReply;
  /**
   * A new stream for a call whose stream ended while it is up, where the carrier has a way (Twilio `<Connect action>`
   * answered with a new stream; Telnyx `streaming_start`). `null`: the call is over, end it. Absent: the carrier cannot
   * resume, and a dropped stream ends the call.
   */
  resume?(ticket: StreamTicket | null, carrierCallId: string): CarrierReply;
  /** Place an outbound call that opens the stream on answer. Resolves with the carrier's id for it. */
  place?(req: PlaceRequest): Promise<{ carrierCallId: string }>;
  /** Send a `via: "command"` reply (Telnyx's answer and stream commands). */
  command?(carrierCallId: string, reply: CarrierReply): Promise<void>;
  /** End the call at the carrier whatever its state; a call already over is not an error. */
  hangUp?(carrierCallId: string): Promise<void>;

  /** For `parley doctor`: a harmless authenticated REST read; resolves, or rejects with the carrier's reason. */
  checkCredentials?(): Promise<void>;
  /** For `parley doctor`: the voice webhook URL the carrier has on file for `number` (null: no such number). */
  voiceUrlOf?(number: string): Promise<string | null>;
}
