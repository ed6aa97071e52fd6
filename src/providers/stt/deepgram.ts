/**
 * Deepgram live streaming recognition (`/v1/listen` over a WebSocket) through the official `@deepgram/sdk` v5.
 *
 * One WebSocket per call session, opened when the session opens (so the first utterance does not pay the connect time)
 * and kept open between utterances with `KeepAlive`. Twilio's 8 kHz mu-law goes through untouched (`pushMulaw` ->
 * `sendMedia`). Parley's VAD delimits utterances: `start()`, audio, `finish()` -> `Finalize`, and the utterance's
 * transcript is the concatenation of the `is_final` results for its audio.
 *
 * Results are attributed to utterances by audio position, not by arrival order: every byte pushed has a position on
 * the session's timeline, and a result's `start + duration` (Deepgram's audio clock, restarted by each connection)
 * maps onto it. So a late result of an utterance that already timed out cannot leak into the next one.
 *
 * The SDK's own reconnection is off (`reconnectAttempts: 0`, `shouldReconnect: () => false`): a silent SDK reconnect
 * opens a new Deepgram stream whose clock restarts at 0 and loses the audio in flight. Parley reconnects itself, with
 * backoff, and re-sends the audio pushed since the last finalized result (bounded by `maxBufferMs`), so no words are
 * lost. Handshake refusals that a retry cannot fix (400, 401, 402, 403, 404) fail the utterance at once.
 *
 * Nothing here throws into the process: failures reject the `finish()` of the utterance they hit, with an error naming
 * Deepgram and the cause, and the session stays usable (the next utterance connects again).
 */
import { DeepgramClient } from "@deepgram/sdk";
import { encodeMulaw, MULAW_TO_PCM16 } from "../../audio/mulaw.ts";
import type { SttProvider, SttSession, SttSessionOptions, Transcript } from "../types.ts";

/** Minimal logger (pino-compatible). */
export interface DeepgramLogger {
  warn(obj: Record<string, unknown>, msg: string): void;
  info?(obj: Record<string, unknown>, msg: string): void;
}

export interface DeepgramReconnectOptions {
  /** Reconnection attempts after a failure before pending utterances fail (the next utterance tries again). */
  attempts?: number;
  /** Delay before the first attempt; doubles each attempt (with jitter), capped at 5 s. */
  baseDelayMs?: number;
}

export interface DeepgramOptions {
  /** Deepgram API key (sent as `Authorization: Token <key>`). */
  apiKey: string;
  /** Base URL of the API (the SDK appends `/v1/listen`): default `wss://api.deepgram.com`; tests: the mock's URL. */
  url?: string;
  model?: string;
  language?: string;
  /** Silence that makes Deepgram mark a result `speech_final` (query `endpointing`). */
  endpointingMs?: number;
  /** Query `utterance_end_ms` (Deepgram's UtteranceEnd messages are counted, not acted on: Parley's VAD ends turns). */
  utteranceEndMs?: number;
  /** A `KeepAlive` after this long without anything sent (between utterances). Under Deepgram's 10 s idle timeout. */
  keepAliveMs?: number;
  /**
   * After `Finalize`, resolve with the text so far (finals + latest interim) if no finalized result came by then. Only
   * waited for when audio after the last final result may hold words: when the finals already cover the speech and
   * only silence followed, the transcript is delivered at once (Deepgram "may" answer Finalize, not must).
   */
  finalizeTimeoutMs?: number;
  /** Audio under this level (mean absolute sample of each 20 ms, in dBFS) counts as silence after the last final. */
  silenceDbfs?: number;
  /** WebSocket handshake timeout (a server that never answers). */
  connectTimeoutMs?: number;
  /** Audio kept for re-sending after a reconnect (since the last finalized result), at most. */
  maxBufferMs?: number;
  /** After `CloseStream`, how long the server has to close before the socket is closed from this side. */
  closeTimeoutMs?: number;
  reconnect?: DeepgramReconnectOptions;
  /** A connection opened by `warm(callId)` waits this long for its call's session, then closes (a call never answered). */
  warmTtlMs?: number;
  logger?: DeepgramLogger;
}

export const DEEPGRAM_DEFAULTS = {
  url: "wss://api.deepgram.com",
  model: "nova-3",
  language: "en-US",
  endpointingMs: 300,
  utteranceEndMs: 1000,
  keepAliveMs: 5000,
  finalizeTimeoutMs: 1500,
  silenceDbfs: -40,
  connectTimeoutMs: 5000,
  maxBufferMs: 30_000,
  closeTimeoutMs: 2000,
  reconnect: { attempts: 5, baseDelayMs: 100 },
  warmTtlMs: 120_000,
} as const;

export type ResolvedDeepgramOptions = Required<Omit<DeepgramOptions, "reconnect" | "logger">> & {
  reconnect: Required<DeepgramReconnectOptions>;
};

/** Counters per session (for logs, metrics and tests). */
export interface DeepgramSessionStats {
  /** Connection attempts (the first one included). */
  connects: number;
  /** Connections that opened. */
  opens: number;
  /** Open connections lost without this side closing them. */
  drops: number;
  /** Audio bytes sent again on a new connection after a drop. */
  resentAudioBytes: number;
  /** Audio bytes dropped because the re-send buffer was full. */
  droppedAudioBytes: number;
  keepAlives: number;
  finalizes: number;
  interims: number;
  finals: number;
  /** Utterances resolved at `finalizeTimeoutMs` without a finalized result. */
  finalizeTimeouts: number;
  /** Utterances resolved without waiting for Finalize's answer: their finals covered the speech, then only silence. */
  settledOnSilence: number;
  /** Text messages that were not JSON. */
  garbage: number;
  /** JSON messages of an unknown type or with an unusable shape. */
  protocolErrors: number;
}

type ListenV1 = DeepgramClient["listen"]["v1"];
type ConnectArgs = Parameters<ListenV1["connect"]>[0];
type ListenSocket = Awaited<ReturnType<ListenV1["connect"]>>;

const BYTES_PER_SECOND = 8000; // 8 kHz mono mu-law
/** Slack when mapping a result's end time onto the timeline (Deepgram times are rounded to the millisecond). */
const POSITION_SLACK = 80; // 10 ms
const MAX_BACKOFF_MS = 5000;
/** A connection that lived this long, or delivered a finalized result, resets the reconnection budget. */
const HEALTHY_AFTER_MS = 10_000;
const EMPTY = new Uint8Array(0);
const noop = () => {};

export function resolveDeepgramOptions(o: DeepgramOptions): ResolvedDeepgramOptions {
  const d = DEEPGRAM_DEFAULTS;
  return {
    apiKey: o.apiKey,
    url: o.url ?? d.url,
    model: o.model ?? d.model,
    language: o.language ?? d.language,
    endpointingMs: o.endpointingMs ?? d.endpointingMs,
    utteranceEndMs: o.utteranceEndMs ?? d.utteranceEndMs,
    keepAliveMs: o.keepAliveMs ?? d.keepAliveMs,
    finalizeTimeoutMs: o.finalizeTimeoutMs ?? d.finalizeTimeoutMs,
    silenceDbfs: o.silenceDbfs ?? d.silenceDbfs,
    connectTimeoutMs: o.connectTimeoutMs ?? d.connectTimeoutMs,
    maxBufferMs: o.maxBufferMs ?? d.maxBufferMs,
    closeTimeoutMs: o.closeTimeoutMs ?? d.closeTimeoutMs,
    warmTtlMs: o.warmTtlMs ?? d.warmTtlMs,
    reconnect: {
      attempts: o.reconnect?.attempts ?? d.reconnect.attempts,
      baseDelayMs: o.reconnect?.baseDelayMs ?? d.reconnect.baseDelayMs,
    },
  };
}

/** Every problem with the options, as readable sentences (empty when valid). */
export function validateDeepgramOptions(o: ResolvedDeepgramOptions): string[] {
  const problems: string[] = [];
  const int = (name: string, v: number, min: number, max = Number.MAX_SAFE_INTEGER) => {
    if (!Number.isInteger(v) || v < min || v > max) {
      problems.push(`${name} must be an integer ${max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in [${min}, ${max}]`} (got ${v})`);
    }
  };
  if (typeof o.apiKey !== "string" || o.apiKey.trim() === "") problems.push("apiKey is required (DEEPGRAM_API_KEY)");
  else if (/\s/.test(o.apiKey)) problems.push("apiKey must not contain whitespace");
  try {
    const u = new URL(o.url);
    if (!["ws:", "wss:", "http:", "https:"].includes(u.protocol)) problems.push(`url must be ws://, wss://, http:// or https:// (got ${o.url})`);
    else if (u.hash) problems.push(`url must not have a #fragment (got ${o.url})`);
  } catch {
    problems.push(`url is not a URL (got ${JSON.stringify(o.url)})`);
  }
  if (typeof o.model !== "string" || !o.model) problems.push("model must be a non-empty string");
  if (typeof o.language !== "string" || !o.language) problems.push("language must be a non-empty string");
  int("endpointingMs", o.endpointingMs, 10);
  int("utteranceEndMs", o.utteranceEndMs, 1);
  int("keepAliveMs", o.keepAliveMs, 10, 9000);
  int("finalizeTimeoutMs", o.finalizeTimeoutMs, 1);
  if (!Number.isFinite(o.silenceDbfs) || o.silenceDbfs >= 0 || o.silenceDbfs < -90) problems.push(`silenceDbfs must be a number in [-90, 0) (got ${o.silenceDbfs})`);
  int("connectTimeoutMs", o.connectTimeoutMs, 1);
  int("maxBufferMs", o.maxBufferMs, 100);
  int("closeTimeoutMs", o.closeTimeoutMs, 0);
  int("warmTtlMs", o.warmTtlMs, 1);
  int("reconnect.attempts", o.reconnect.attempts, 0);
  int("reconnect.baseDelayMs", o.reconnect.baseDelayMs, 0);
  return problems;
}

export class DeepgramStt implements SttProvider {
  readonly name = "deepgram";
  readonly options: ResolvedDeepgramOptions;
  /** @internal */
  readonly log: DeepgramLogger;
  /** @internal */
  readonly connectArgs: ConnectArgs;
  private readonly invalid: Error | undefined;
  private client: DeepgramClient | undefined;
  private readonly sessions = new Set<DeepgramSession>();
  /** Sessions opened by warm(), by call, until the call's session takes them. */
  private readonly parked = new Map<string, { session: DeepgramSession; timer: NodeJS.Timeout }>();
  private closed = false;

  constructor(options: DeepgramOptions) {
    this.options = resolveDeepgramOptions(options);
    this.log = options.logger ?? { warn: noop };
    const problems = validateDeepgramOptions(this.options);
    this.invalid = problems.length ? new Error(`Deepgram: invalid options: ${problems.join("; ")}`) : undefined;
    const o = this.options;
    this.connectArgs = {
      model: o.model,
      language: o.language,
      encoding: "mulaw",
      sample_rate: 8000,
      channels: 1,
      interim_results: "true",
      endpointing: o.endpointingMs,
      utterance_end_ms: o.utteranceEndMs,
      vad_events: "true",
      smart_format: "true",
      punctuate: "true",
      // Parley reconnects itself (re-sending buffered audio); the SDK's silent reconnect would lose audio.
      reconnectAttempts: 0,
      shouldReconnect: () => false,
      connectionTimeoutInSeconds: o.connectTimeoutMs / 1000,
    };
  }

  /** Validates the options; no network (the first session opens the first connection). */
  ready(): Promise<void> {
    return this.invalid ? Promise.reject(this.invalid) : Promise.resolve();
  }

  /**
   * Opens the call's connection before its session (the phone is ringing): the session opened later for this call
   * takes it over, so the caller's first words do not wait for the handshake. Resolves once the connection is open or
   * has failed (then the session connects as usual); never rejects. Unclaimed after `warmTtlMs`, it is closed.
   */
  warm(callId: string, language?: string): Promise<void> {
    if (this.closed || this.invalid) return Promise.resolve();
    const parked = this.parked.get(callId);
    if (parked) return parked.session.whenConnected();
    const s = new DeepgramSession(this, { callId, ...(language ? { language } : {}) });
    this.sessions.add(s);
    s.init(undefined, false);
    const timer = setTimeout(() => {
      if (this.parked.get(callId)?.session !== s) return;
      this.parked.delete(callId);
      s.close();
    }, this.options.warmTtlMs);
    timer.unref();
    this.parked.set(callId, { session: s, timer });
    return s.whenConnected();
  }

  /** Deepgram takes BCP-47 tags; which ones depends on the model, and a refusal comes back as a 400 on connect. */
  languageProblem(language: string): string | undefined {
    return /^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$/.test(language) || language === "multi" ? undefined : `"${language}" is not a BCP-47 language tag`;
  }

  openSession(opts: SttSessionOptions): DeepgramSession {
    const warmed = this.parked.get(opts.callId);
    // A connection warmed in another language (the session changed since) is not this call's: open a new one.
    if (warmed && warmed.session.language !== (opts.language ?? this.options.language)) {
      this.parked.delete(opts.callId);
      clearTimeout(warmed.timer);
      warmed.session.close();
    } else if (warmed) {
      this.parked.delete(opts.callId);
      clearTimeout(warmed.timer);
      warmed.session.adopt(opts);
      return warmed.session;
    }
    const s = new DeepgramSession(this, opts);
    if (!this.closed) this.sessions.add(s);
    if (this.closed) s.init(new Error("Deepgram: provider closed"), true);
    else s.init(this.invalid, false);
    return s;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const p of this.parked.values()) clearTimeout(p.timer);
    this.parked.clear();
    for (const s of [...this.sessions]) s.close();
    this.sessions.clear();
  }

  /** @internal */
  get sdk(): DeepgramClient {
    // The client only holds configuration: connections are per session.
    this.client ??= new DeepgramClient({ apiKey: this.options.apiKey, baseUrl: this.options.url, reconnect: false });
    return this.client;
  }

  /** @internal */
  forget(s: DeepgramSession): void {
    this.sessions.delete(s);
    const p = this.parked.get(s.callId);
    if (p?.session === s) {
      clearTimeout(p.timer);
      this.parked.delete(s.callId);
    }
  }
}

interface Utterance {
  /** Timeline position of its first byte. */
  startPos: number;
  /** Timeline position after its last byte (set by finish()). */
  endPos: number;
  state: "open" | "finishing" | "done";
  finals: string[];
  confSum: number;
  confN: number;
  interim: string;
  interimConf: number;
  error: Error | undefined;
  resolve: (t: Transcript) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout | undefined;
}

type ConnState = "idle" | "connecting" | "open" | "backoff";

interface Loss {
  error?: Error;
  code?: number;
  reason?: string;
}

interface Cause {
  message: string;
  retryable: boolean;
}

export class DeepgramSession implements SttSession {
  readonly callId: string;
  readonly stats: DeepgramSessionStats = {
    connects: 0,
    opens: 0,
    drops: 0,
    resentAudioBytes: 0,
    droppedAudioBytes: 0,
    keepAlives: 0,
    finalizes: 0,
    interims: 0,
    finals: 0,
    finalizeTimeouts: 0,
    settledOnSilence: 0,
    garbage: 0,
    protocolErrors: 0,
  };
  /** The last connection failure (cleared when a connection opens). */
  lastError: Error | undefined;

  private readonly o: ResolvedDeepgramOptions;
  private onPartial: ((text: string) => void) | undefined;
  private onStable: ((text: string) => void) | undefined;
  /** whenConnected() callers, told when a connection opens or an attempt fails. */
  private connectWaiters: Array<() => void> = [];
  private fatal: Error | undefined;
  private closed = false;

  // Connection.
  private conn: ListenSocket | undefined;
  private state: ConnState = "idle";
  /** Bumped whenever the current connection is abandoned: events of older ones are ignored. */
  private gen = 0;
  private attempts = 0;
  private backoffTimer: NodeJS.Timeout | undefined;
  private keepAliveTimer: NodeJS.Timeout | undefined;
  private lastSendAt = 0;
  private openedAt = 0;
  private finalSinceOpen = false;
  private loss: Loss | undefined;

  // Audio timeline: bytes pushed so far; the buffer holds [bufStart, pushedPos) for re-sending.
  private pushedPos = 0;
  private chunks: Uint8Array[] = [];
  private head = 0;
  private bufStart = 0;
  private bufBytes = 0;
  private readonly maxBufBytes: number;
  /** Timeline position of the current connection's audio clock 0. */
  private connBase = 0;
  /** Timeline position up to which audio was sent on the current (or last) connection. */
  private sentPos = 0;
  /** Timeline position up to which Deepgram has finalized results. */
  private finalizedPos = 0;

  private current: Utterance | undefined;
  /** Finished utterances waiting for their finalized results, oldest first. */
  private finishing: Utterance[] = [];

  /** The language this session listens in (the call's, else the provider's). */
  readonly language: string;
  private readonly connectArgs: ConnectArgs;

  constructor(
    private readonly provider: DeepgramStt,
    opts: SttSessionOptions,
  ) {
    this.o = provider.options;
    this.callId = opts.callId;
    this.language = opts.language ?? this.o.language;
    this.connectArgs = this.language === provider.connectArgs.language ? provider.connectArgs : { ...provider.connectArgs, language: this.language };
    this.onPartial = opts.onPartial;
    this.onStable = opts.onStable;
    this.maxBufBytes = Math.round((this.o.maxBufferMs * BYTES_PER_SECOND) / 1000);
  }

  /** @internal Opens the connection now, so the first utterance does not wait for it. */
  init(fatal: Error | undefined, closed: boolean): void {
    this.fatal = fatal;
    this.closed = closed;
    if (!fatal) this.connect();
  }

  /** @internal A session opened by warm() becomes the call's session: its listeners are the caller's. */
  adopt(opts: { onPartial?: (text: string) => void; onStable?: (text: string) => void }): void {
    this.onPartial = opts.onPartial;
    this.onStable = opts.onStable;
  }

  /** Resolves once a connection is open, or the attempt under way has failed (or there is none). */
  whenConnected(): Promise<void> {
    if (this.state === "open" || this.closed || this.fatal || this.state === "idle") return Promise.resolve();
    return new Promise((resolve) => this.connectWaiters.push(resolve));
  }

  private wakeConnectWaiters(): void {
    for (const w of this.connectWaiters.splice(0)) w();
  }

  /** Whether a connection is open right now. */
  get connected(): boolean {
    return this.state === "open";
  }

  // ---- SttSession ----------------------------------------------------------------------------------------------

  start(): void {
    if (this.closed) return;
    if (this.current) this.cancel();
    const u: Utterance = {
      startPos: this.pushedPos,
      endPos: this.pushedPos,
      state: "open",
      finals: [],
      confSum: 0,
      confN: 0,
      interim: "",
      interimConf: 0,
      error: this.fatal,
      resolve: noop,
      reject: noop,
      timer: undefined,
    };
    this.current = u;
    this.trim();
    if (!u.error && this.state === "idle") {
      this.attempts = 0;
      this.connect();
    }
  }

  /** Twilio's mu-law, passed through. The bytes are copied once (the copy is both sent and kept for re-sending). */
  pushMulaw(mulaw: Uint8Array): void {
    const u = this.current;
    if (!u || u.error || mulaw.length === 0) return;
    this.enqueue(Buffer.from(mulaw));
  }

  /** Fallback for 16-bit PCM at 8 kHz: encoded to mu-law (Parley uses pushMulaw with this provider). */
  push(pcm: Int16Array): void {
    const u = this.current;
    if (!u || u.error || pcm.length === 0) return;
    this.enqueue(encodeMulaw(pcm));
  }

  finish(): Promise<Transcript> {
    const u = this.current;
    if (!u) return Promise.resolve({ text: "" });
    this.current = undefined;
    if (u.error) {
      u.state = "done";
      this.trim();
      return Promise.reject(u.error);
    }
    u.state = "finishing";
    u.endPos = this.pushedPos;
    const result = new Promise<Transcript>((resolve, reject) => {
      u.resolve = resolve;
      u.reject = reject;
    });
    this.finishing.push(u);
    if (u.endPos === u.startPos) {
      this.settle(u, false); // no audio: nothing to ask
      return result;
    }
    if (this.state === "open") {
      this.sendFinalize();
      this.armFinalizeTimer(u);
    } else if (this.state === "idle") {
      this.connect(); // defensive: an utterance without an error always has a connection on its way
    }
    // Everything already finalized (e.g. speech_final came during the VAD's silence tail): no need to wait.
    if (this.finalizedPos >= u.endPos) this.settle(u, false);
    else this.settleIfOnlySilenceLeft();
    return result;
  }

  cancel(): void {
    const u = this.current;
    if (!u) return;
    this.current = undefined;
    u.state = "done";
    // Flush its audio at Deepgram so its words cannot open the next utterance's first segment.
    if (this.state === "open" && this.pushedPos > u.startPos && this.finalizedPos < this.pushedPos) this.sendFinalize();
    this.trim();
  }

  /** Sends `CloseStream` and lets the server close (closes from this side after `closeTimeoutMs`). */
  close(): void {
    if (this.closed) {
      this.provider.forget(this);
      return;
    }
    this.closed = true;
    this.provider.forget(this);
    this.wakeConnectWaiters();
    if (this.current) {
      this.current.state = "done";
      this.current = undefined;
    }
    const err = new Error("Deepgram: session closed before the transcript arrived");
    for (const u of this.finishing.splice(0)) {
      clearTimeout(u.timer);
      u.state = "done";
      u.reject(err);
    }
    this.trim();
    this.clearTimers();
    const conn = this.conn;
    const wasOpen = this.state === "open";
    this.abandon();
    if (!conn) return;
    if (wasOpen) {
      try {
        conn.sendCloseStream({ type: "CloseStream" });
        const t = setTimeout(() => safeClose(conn), this.o.closeTimeoutMs);
        t.unref();
        return;
      } catch {
        // not open after all: close now
      }
    }
    safeClose(conn);
  }

  // ---- audio ---------------------------------------------------------------------------------------------------

  private enqueue(chunk: Uint8Array): void {
    this.chunks.push(chunk);
    this.bufBytes += chunk.length;
    this.pushedPos += chunk.length;
    if (this.bufBytes > this.maxBufBytes) this.dropOldest();
    if (this.state !== "open") return; // sent when the connection opens
    try {
      this.conn!.sendMedia(chunk);
      this.sentPos = this.pushedPos;
      this.lastSendAt = performance.now();
    } catch {
      // The socket closed under us; the loss handler reconnects and re-sends from the buffer.
    }
  }

  private dropOldest(): void {
    let dropped = 0;
    while (this.bufBytes > this.maxBufBytes && this.head < this.chunks.length) {
      const c = this.chunks[this.head]!;
      this.chunks[this.head++] = EMPTY;
      this.bufStart += c.length;
      this.bufBytes -= c.length;
      dropped += c.length;
    }
    this.compact();
    // Bytes never sent are lost for good; bytes already sent only lose their re-send safety net.
    this.stats.droppedAudioBytes += dropped;
  }

  /** Drops buffered audio no live utterance needs: finalized already, or before the oldest live utterance. */
  private trim(): void {
    const oldestLive = this.finishing[0]?.startPos ?? this.current?.startPos ?? this.pushedPos;
    const keepFrom = Math.min(this.pushedPos, Math.max(this.finalizedPos, oldestLive));
    while (this.head < this.chunks.length && this.bufStart + this.chunks[this.head]!.length <= keepFrom) {
      const c = this.chunks[this.head]!;
      this.chunks[this.head++] = EMPTY;
      this.bufStart += c.length;
      this.bufBytes -= c.length;
    }
    if (this.head < this.chunks.length && this.bufStart < keepFrom) {
      const cut = keepFrom - this.bufStart;
      this.chunks[this.head] = this.chunks[this.head]!.subarray(cut);
      this.bufStart = keepFrom;
      this.bufBytes -= cut;
    }
    this.compact();
  }

  private compact(): void {
    if (this.head === this.chunks.length) {
      this.chunks = [];
      this.head = 0;
    } else if (this.head > 256 && this.head * 2 > this.chunks.length) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
  }

  // ---- connection ----------------------------------------------------------------------------------------------

  private connect(): void {
    if (this.closed || this.fatal || this.state === "connecting" || this.state === "open") return;
    clearTimeout(this.backoffTimer);
    this.backoffTimer = undefined;
    this.state = "connecting";
    const gen = ++this.gen;
    this.stats.connects++;
    let sdk: DeepgramClient;
    try {
      sdk = this.provider.sdk;
    } catch (err) {
      queueMicrotask(() => this.onLost(gen, { error: asError(err) }));
      return;
    }
    sdk.listen.v1
      .connect(this.connectArgs)
      .then((conn) => {
        if (gen !== this.gen) {
          safeClose(conn);
          return;
        }
        this.conn = conn;
        conn.on("open", () => this.onOpen(gen));
        conn.on("message", (m: unknown) => this.onMessage(gen, m));
        conn.on("close", (ev) => this.onLost(gen, { code: ev.code, reason: ev.reason }));
        conn.on("error", (err) => this.onLost(gen, { error: err }));
        conn.connect();
      })
      .catch((err: unknown) => this.onLost(gen, { error: asError(err) }));
  }

  private onOpen(gen: number): void {
    if (gen !== this.gen) return;
    const conn = this.conn!;
    this.state = "open";
    this.stats.opens++;
    this.lastError = undefined;
    this.openedAt = performance.now();
    this.finalSinceOpen = false;
    // The new stream's clock 0 is the first buffered byte; everything buffered goes (again) first.
    this.connBase = this.bufStart;
    const resent = Math.max(0, Math.min(this.sentPos, this.pushedPos) - this.bufStart);
    if (this.stats.opens > 1) this.stats.resentAudioBytes += resent;
    try {
      for (let i = this.head; i < this.chunks.length; i++) conn.sendMedia(this.chunks[i]!);
      this.sentPos = this.pushedPos;
      if (this.current) this.current.interim = "";
      if (this.finishing.length) {
        for (const u of this.finishing) u.interim = "";
        this.sendFinalize();
        for (const u of this.finishing) this.armFinalizeTimer(u);
      }
    } catch {
      // closed again already: the loss handler takes it from here
    }
    this.lastSendAt = performance.now();
    this.startKeepAlive();
    this.wakeConnectWaiters();
    if (resent > 0 || this.stats.opens > 1) {
      this.provider.log.info?.({ callId: this.callId, resentBytes: resent, opens: this.stats.opens }, "Deepgram: reconnected");
    }
  }

  /** Close and error events of one connection arrive together (close first, then the error with the HTTP status). */
  private onLost(gen: number, l: Loss): void {
    if (gen !== this.gen) return;
    if (!this.loss) {
      this.loss = {};
      queueMicrotask(() => this.handleLoss(gen));
    }
    if (l.error && !this.loss.error) this.loss.error = l.error;
    if (l.code !== undefined && this.loss.code === undefined) {
      this.loss.code = l.code;
      this.loss.reason = l.reason;
    }
  }

  private handleLoss(gen: number): void {
    const loss = this.loss ?? {};
    this.loss = undefined;
    if (gen !== this.gen || this.closed) return;
    const wasOpen = this.state === "open";
    const conn = this.conn;
    this.abandon();
    if (conn) safeClose(conn);
    for (const u of this.finishing) {
      clearTimeout(u.timer); // re-armed when the next connection re-sends and finalizes
      u.timer = undefined;
    }
    if (wasOpen) {
      this.stats.drops++;
      if (this.finalSinceOpen || performance.now() - this.openedAt >= HEALTHY_AFTER_MS) this.attempts = 0;
    }
    const cause = this.describe(loss, wasOpen);
    this.lastError = new Error(cause.message);
    this.wakeConnectWaiters();
    const live = this.current !== undefined || this.finishing.length > 0;
    this.provider.log.warn(
      { callId: this.callId, cause: cause.message, attempt: this.attempts, live, bufferedBytes: this.bufBytes },
      wasOpen ? "Deepgram: connection lost" : "Deepgram: connection failed",
    );
    if (!cause.retryable) {
      this.giveUp(this.lastError);
      return;
    }
    if (this.attempts >= this.o.reconnect.attempts) {
      const n = this.o.reconnect.attempts;
      this.giveUp(new Error(n > 0 ? `${cause.message} (gave up after ${n} reconnection attempt${n === 1 ? "" : "s"})` : cause.message));
      return;
    }
    this.attempts++;
    const base = this.o.reconnect.baseDelayMs * 2 ** (this.attempts - 1);
    const delay = Math.min(MAX_BACKOFF_MS, Math.round(base * (0.8 + Math.random() * 0.4)));
    this.state = "backoff";
    this.backoffTimer = setTimeout(() => {
      this.backoffTimer = undefined;
      this.state = "idle";
      this.connect();
    }, delay);
  }

  /** No more attempts: live utterances fail with the cause; the next start() connects again. */
  private giveUp(err: Error): void {
    this.state = "idle";
    for (const u of this.finishing.splice(0)) {
      clearTimeout(u.timer);
      u.state = "done";
      u.reject(err);
    }
    if (this.current) this.current.error = err;
    this.trim();
  }

  /** Forget the current connection (its late events are ignored). */
  private abandon(): void {
    this.gen++;
    this.conn = undefined;
    this.state = "idle";
    this.stopKeepAlive();
    clearTimeout(this.backoffTimer);
    this.backoffTimer = undefined;
  }

  private describe(l: Loss, wasOpen: boolean): Cause {
    const host = hostOf(this.o.url);
    const msg = l.error?.message ?? "";
    const m = /Unexpected server response: (\d{3})/.exec(msg);
    if (m) {
      const status = Number(m[1]);
      switch (status) {
        case 401:
          return { message: "Deepgram: 401 Unauthorized — check DEEPGRAM_API_KEY", retryable: false };
        case 402:
          return { message: "Deepgram: 402 Payment Required — the project is out of credit", retryable: false };
        case 403:
          return {
            message: `Deepgram: 403 Forbidden — the key may not use model "${this.o.model}" (check DEEPGRAM_API_KEY and its project's permissions)`,
            retryable: false,
          };
        case 400:
          return {
            message: `Deepgram: 400 Bad Request — the server refused the stream options (model "${this.o.model}", language "${this.language}")`,
            retryable: false,
          };
        case 404:
          return { message: `Deepgram: 404 Not Found — check the URL (${this.o.url})`, retryable: false };
        case 429:
          return { message: "Deepgram: 429 Too Many Requests — rate or concurrency limit reached", retryable: true };
        default:
          return { message: `Deepgram: the server answered ${status} to the connection request`, retryable: true };
      }
    }
    if (msg === "TIMEOUT") return { message: `Deepgram: no answer from ${host} within ${this.o.connectTimeoutMs} ms`, retryable: true };
    if (!wasOpen && msg) return { message: `Deepgram: cannot connect to ${host}: ${msg}`, retryable: true };
    const code = l.code;
    const reason = l.reason ? ` ${l.reason}` : "";
    if (code === 1008) {
      // DATA-0000: the audio could not be decoded; sending it again would fail the same way.
      return { message: `Deepgram: connection closed (1008${reason}) — the server could not decode the audio`, retryable: false };
    }
    if (msg) return { message: `Deepgram: connection error: ${msg}`, retryable: true };
    if (code === 1006 || code === undefined) return { message: "Deepgram: connection lost (1006, no close frame)", retryable: true };
    return { message: `Deepgram: connection closed by the server (${code}${reason})`, retryable: true };
  }

  // ---- messages ------------------------------------------------------------------------------------------------

  private onMessage(gen: number, m: unknown): void {
    if (gen !== this.gen) return;
    try {
      if (typeof m !== "object" || m === null || m instanceof Blob) {
        this.stats.garbage++;
        if (this.stats.garbage === 1 || this.stats.garbage % 100 === 0) {
          const sample = typeof m === "string" ? m.slice(0, 80) : String(m);
          this.provider.log.warn({ callId: this.callId, count: this.stats.garbage, sample }, "Deepgram: ignored a message that is not JSON");
        }
        return;
      }
      const type = (m as { type?: unknown }).type;
      if (type === "Results") this.onResults(m as ResultsLike);
      else if (type !== "SpeechStarted" && type !== "UtteranceEnd" && type !== "Metadata") this.protocolError(`unknown message type ${String(type)}`);
    } catch (err) {
      this.protocolError(`message handling failed: ${asError(err).message}`);
    }
  }

  private protocolError(what: string): void {
    this.stats.protocolErrors++;
    if (this.stats.protocolErrors === 1 || this.stats.protocolErrors % 100 === 0) {
      this.provider.log.warn({ callId: this.callId, count: this.stats.protocolErrors }, `Deepgram: ${what}`);
    }
  }

  private onResults(r: ResultsLike): void {
    const alt = r.channel?.alternatives?.[0];
    if (!alt || typeof r.start !== "number" || typeof r.duration !== "number") {
      this.protocolError("Results without channel.alternatives[0], start or duration");
      return;
    }
    const text = typeof alt.transcript === "string" ? alt.transcript.trim() : "";
    const conf = typeof alt.confidence === "number" ? alt.confidence : undefined;
    const endPos = this.connBase + Math.round((r.start + r.duration) * BYTES_PER_SECOND);
    const u = this.ownerOf(endPos);
    if (r.is_final !== true) {
      this.stats.interims++;
      if (!u) return;
      u.interim = text;
      u.interimConf = conf ?? 0;
      if (u === this.current && text) this.emit(this.onPartial, joinText(u.finals, text));
      return;
    }
    this.stats.finals++;
    this.finalSinceOpen = true;
    if (endPos > this.finalizedPos) this.finalizedPos = Math.min(endPos, this.pushedPos);
    if (u) {
      if (text) {
        u.finals.push(text);
        if (conf !== undefined) {
          u.confSum += conf;
          u.confN++;
        }
      }
      u.interim = "";
      if (r.speech_final === true && u === this.current && u.finals.length > 0) this.emit(this.onStable, joinText(u.finals));
      if (u.state === "finishing" && r.from_finalize === true) this.settle(u, false);
    }
    // Every finished utterance whose audio is now all finalized is complete.
    while (this.finishing.length > 0 && this.finishing[0]!.endPos <= this.finalizedPos) this.settle(this.finishing[0]!, false);
    this.settleIfOnlySilenceLeft();
    this.trim();
  }

  /**
   * The oldest finished utterance is complete when its finals cover its speech and only silence followed: Deepgram
   * has no words pending for it (no interim since the last final) and the audio after the last final is quiet. Then
   * Finalize's answer, which Deepgram may never send, is not waited for. Audio after the last final that is not
   * silence may hold words: keep waiting (bounded by `finalizeTimeoutMs`).
   */
  private settleIfOnlySilenceLeft(): void {
    for (let u = this.finishing[0]; u; u = this.finishing[0]) {
      if (u.finals.length === 0 || u.interim !== "") return;
      const from = Math.max(this.finalizedPos, u.startPos);
      if (from < this.bufStart || !this.quiet(from, u.endPos)) return;
      this.stats.settledOnSilence++;
      this.settle(u, false);
    }
  }

  /** Whether buffered audio [from, to) of the timeline is silence: every 20 ms under `silenceDbfs` (mean level). */
  private quiet(from: number, to: number): boolean {
    const limit = 32768 * 10 ** (this.o.silenceDbfs / 20);
    let pos = this.bufStart;
    let sum = 0;
    let n = 0;
    for (let i = this.head; i < this.chunks.length && pos < to; i++) {
      const c = this.chunks[i]!;
      const a = Math.max(0, from - pos);
      const b = Math.min(c.length, to - pos);
      for (let j = a; j < b; j++) {
        sum += Math.abs(MULAW_TO_PCM16[c[j]!]!);
        if (++n === 160) {
          if (sum / n >= limit) return false;
          sum = 0;
          n = 0;
        }
      }
      pos += c.length;
    }
    return n === 0 || sum / n < limit;
  }

  /** The live utterance a result belongs to, from where its audio ends on the timeline. */
  private ownerOf(endPos: number): Utterance | undefined {
    for (const u of this.finishing) if (endPos > u.startPos + POSITION_SLACK && endPos <= u.endPos + POSITION_SLACK) return u;
    const c = this.current;
    if (c && endPos > c.startPos + POSITION_SLACK) return c;
    return undefined;
  }

  private settle(u: Utterance, timedOut: boolean): void {
    const i = this.finishing.indexOf(u);
    if (i < 0) return;
    this.finishing.splice(i, 1);
    clearTimeout(u.timer);
    u.timer = undefined;
    u.state = "done";
    let confSum = u.confSum;
    let confN = u.confN;
    const parts = u.finals;
    if (timedOut && u.interim) {
      parts.push(u.interim);
      confSum += u.interimConf;
      confN++;
    }
    const t: Transcript = { text: joinText(parts) };
    if (confN > 0) t.confidence = confSum / confN;
    u.resolve(t);
    this.trim();
  }

  private armFinalizeTimer(u: Utterance): void {
    clearTimeout(u.timer);
    u.timer = setTimeout(() => {
      u.timer = undefined;
      if (u.state !== "finishing") return;
      this.stats.finalizeTimeouts++;
      this.provider.log.warn(
        { callId: this.callId, finalizeTimeoutMs: this.o.finalizeTimeoutMs, finals: u.finals.length },
        "Deepgram: no finalized result after Finalize; using the text so far",
      );
      this.settle(u, true);
    }, this.o.finalizeTimeoutMs);
  }

  private sendFinalize(): void {
    try {
      this.conn?.sendFinalize({ type: "Finalize" });
      this.stats.finalizes++;
      this.lastSendAt = performance.now();
    } catch {
      // closed: the loss handler re-sends and finalizes on the next connection
    }
  }

  private startKeepAlive(): void {
    this.stopKeepAlive();
    const every = this.o.keepAliveMs;
    this.keepAliveTimer = setInterval(() => {
      if (this.state !== "open" || performance.now() - this.lastSendAt < every) return;
      try {
        this.conn?.sendKeepAlive({ type: "KeepAlive" });
        this.stats.keepAlives++;
        this.lastSendAt = performance.now();
      } catch {
        // closed: handled by the loss handler
      }
    }, Math.max(5, Math.floor(every / 4)));
    this.keepAliveTimer.unref();
  }

  private stopKeepAlive(): void {
    clearInterval(this.keepAliveTimer);
    this.keepAliveTimer = undefined;
  }

  private clearTimers(): void {
    this.stopKeepAlive();
    clearTimeout(this.backoffTimer);
    this.backoffTimer = undefined;
  }

  private emit(cb: ((text: string) => void) | undefined, text: string): void {
    if (!cb) return;
    try {
      cb(text);
    } catch (err) {
      this.provider.log.warn({ callId: this.callId, err: asError(err).message }, "Deepgram: transcript listener threw");
    }
  }
}

/** The fields of a `Results` message this adapter reads (validated at runtime: the server is not trusted). */
interface ResultsLike {
  start?: unknown;
  duration?: unknown;
  is_final?: unknown;
  speech_final?: unknown;
  from_finalize?: unknown;
  channel?: { alternatives?: Array<{ transcript?: unknown; confidence?: unknown } | undefined> };
}

function joinText(parts: string[], extra?: string): string {
  let s = parts.join(" ");
  if (extra) s = s ? `${s} ${extra}` : extra;
  return s.trim();
}

function safeClose(conn: ListenSocket): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}
