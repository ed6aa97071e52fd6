import type { TtsChunk, TtsProvider, TtsStream, VoiceChoice } from "../types.ts";
import { ConnectionPool, silentLogger, type ElevenLabsLogger } from "./elevenlabs/connection.ts";
import { ElevenLabsTtsError } from "./elevenlabs/errors.ts";
import { HttpSynth } from "./elevenlabs/http.ts";
import { ElevenLabsStream } from "./elevenlabs/stream.ts";

export { ElevenLabsTtsError, type ElevenLabsErrorKind } from "./elevenlabs/errors.ts";
export type { ElevenLabsLogger } from "./elevenlabs/connection.ts";

/** Voice settings (camelCase here; snake_case on the wire). */
export interface ElevenLabsVoiceSettings {
  /** 0..1; lower is more expressive. */
  stability?: number;
  /** 0..1. */
  similarityBoost?: number;
  /** 0..1 (v2+ models). */
  style?: number;
  useSpeakerBoost?: boolean;
  /** 0.7..1.2. */
  speed?: number;
}

export interface ElevenLabsTtsOptions {
  /** Sent as the `xi-api-key` header (WebSocket upgrade and HTTP). Required. */
  apiKey: string;
  /** Base URL of the API: `https://api.elevenlabs.io` (default), a regional one, or `http://127.0.0.1:port` in tests. */
  url?: string;
  voiceId?: string;
  /** A model the WebSocket supports (not `eleven_v3`). */
  modelId?: string;
  /** Fixed: 8 kHz mu-law goes to Twilio as it is, without resampling. */
  outputFormat?: "ulaw_8000";
  /** HTTP only (the WebSocket has no such parameter): 0..4, unset = the server's default. */
  optimizeStreamingLatency?: 0 | 1 | 2 | 3 | 4;
  /** Sent in every context's first message and with every HTTP request. */
  voiceSettings?: ElevenLabsVoiceSettings;
  /** ISO 639-1, optional. */
  languageCode?: string;
  /** The socket's `inactivity_timeout` (the server's default is 20 s; at most 180). Live contexts also get keepalives. */
  inactivityTimeoutSeconds?: number;
  /** Live contexts per WebSocket (ElevenLabs allows 5). */
  maxContextsPerConnection?: number;
  /** A socket with no context for this long is closed (reopened on demand). */
  idleConnectionSeconds?: number;
  /** WebSocket opening handshake timeout. */
  connectTimeoutMs?: number;
  /** No audio this long after text was sent (or no end after close) counts as a stall. */
  stallTimeoutMs?: number;
  /** On a stall, how long a ping may take to tell a dead socket (fall back to HTTP) from a stalled server (fail). */
  probeTimeoutMs?: number;
  /** First back-off after the WebSocket fails to open (doubles up to 30 s); 0 = retry the socket every time. */
  wsRetryBackoffMs?: number;
  /** HTTP fallback: time allowed until the response starts. */
  httpTimeoutSeconds?: number;
  /** Open one WebSocket in ready(). */
  preconnect?: boolean;
  logger?: ElevenLabsLogger;
}

export const ELEVENLABS_TTS_DEFAULTS = {
  url: "https://api.elevenlabs.io",
  voiceId: "21m00Tcm4TlvDq8ikWAM",
  modelId: "eleven_flash_v2_5",
  outputFormat: "ulaw_8000",
  voiceSettings: { stability: 0.5, similarityBoost: 0.75, speed: 1 },
  inactivityTimeoutSeconds: 60,
  maxContextsPerConnection: 5,
  idleConnectionSeconds: 50,
  connectTimeoutMs: 5000,
  stallTimeoutMs: 10_000,
  probeTimeoutMs: 2000,
  wsRetryBackoffMs: 1000,
  httpTimeoutSeconds: 15,
  preconnect: true,
} as const satisfies Omit<ElevenLabsTtsOptions, "apiKey">;

type Resolved = Omit<Required<ElevenLabsTtsOptions>, "optimizeStreamingLatency" | "languageCode" | "logger" | "voiceSettings"> & {
  optimizeStreamingLatency: number | undefined;
  languageCode: string | undefined;
  voiceSettings: ElevenLabsVoiceSettings;
};

/**
 * ElevenLabs streaming text-to-speech, 8 kHz mu-law straight from the server.
 *
 * - `openStream()` is one utterance (an agent turn) = one context on a `multi-stream-input` WebSocket, so prosody
 *   carries across the clauses. Each `write()` is sent with `flush: true` (the caller writes whole clauses; flushing
 *   makes audio start without waiting for the server's chunk schedule); `end()` sends `close_context` (the server
 *   finishes flushing, then sends `isFinal`); aborting the signal sends `close_context` at once and drops whatever
 *   audio is still in flight for that context.
 * - Sockets: a small pool, each with at most `maxContextsPerConnection` live contexts, opened lazily and closed after
 *   `idleConnectionSeconds` without contexts. The server closes a context after `inactivity_timeout` seconds without
 *   input (default 20); Parley asks for `inactivityTimeoutSeconds` (60) and sends `{"context_id","text":""}` to a live
 *   context that has been sent nothing for a third of that (an agent thinking mid-reply), so contexts never time out.
 * - `synthesize()` is an utterance of one write, on the same path: it shares the warm socket and the fallback.
 * - Fallback: when the socket cannot be opened, or breaks mid-utterance (dropped, server error, a dead socket found
 *   by a ping after a stall), the rest of the utterance is spoken by HTTP streaming (`/stream/with-timestamps`, via
 *   the SDK), starting at the first word whose audio had not fully arrived. Auth failures are not retried over HTTP.
 * - Errors end only the affected utterance, whose iterator throws an `ElevenLabsTtsError` with a readable message.
 */
export class ElevenLabsTts implements TtsProvider {
  readonly name = "elevenlabs";
  readonly options: Readonly<Resolved>;
  private readonly log: ElevenLabsLogger;
  private readonly lanes = new Map<string, Lane>();
  private readonly defaultLane: Lane;
  private readonly streams = new Set<ElevenLabsStream>();
  private readonly problems: string[];
  private closed = false;

  constructor(options: ElevenLabsTtsOptions) {
    const o = { ...ELEVENLABS_TTS_DEFAULTS, ...withoutUndefined(options) } as Resolved & { logger?: ElevenLabsLogger };
    o.voiceSettings = { ...ELEVENLABS_TTS_DEFAULTS.voiceSettings, ...withoutUndefined(options.voiceSettings ?? {}) };
    o.url = String(o.url).replace(/\/+$/, "");
    this.log = options.logger ?? silentLogger;
    delete o.logger;
    this.options = o;
    this.problems = validate(o);

    this.defaultLane = this.lane({});
  }

  /**
   * The socket pool and HTTP client for one voice and language (both are in the WebSocket's URL): the configured one,
   * and one more per voice that calls' sessions ask for. A lane whose sockets have all idled out costs nothing.
   */
  private lane(choice: VoiceChoice): Lane {
    const o = this.options;
    const voiceId = choice.voice ?? o.voiceId;
    const languageCode = choice.language ? primaryLanguage(choice.language) : o.languageCode;
    const key = `${voiceId}|${languageCode ?? ""}`;
    const existing = this.lanes.get(key);
    if (existing) return existing;
    const query = new URLSearchParams({
      model_id: o.modelId,
      output_format: "ulaw_8000",
      inactivity_timeout: String(o.inactivityTimeoutSeconds),
      sync_alignment: "true",
    });
    if (languageCode) query.set("language_code", languageCode);
    const wsBase = o.url.replace(/^http/i, "ws");
    const lane: Lane = {
      pool: new ConnectionPool(
        {
          url: `${wsBase}/v1/text-to-speech/${encodeURIComponent(voiceId)}/multi-stream-input?${query}`,
          apiKey: o.apiKey,
          connectTimeoutMs: o.connectTimeoutMs,
          idleTimeoutMs: o.idleConnectionSeconds * 1000,
          keepaliveMs: Math.max(1000, (o.inactivityTimeoutSeconds * 1000) / 3),
          maxContexts: o.maxContextsPerConnection,
          voiceId,
          modelId: o.modelId,
          log: this.log,
        },
        { minMs: o.wsRetryBackoffMs, maxMs: 30_000 },
      ),
      http: new HttpSynth({
        apiKey: o.apiKey,
        baseUrl: o.url,
        voiceId,
        modelId: o.modelId,
        languageCode,
        optimizeStreamingLatency: o.optimizeStreamingLatency,
        voiceSettings: o.voiceSettings,
        timeoutSeconds: o.httpTimeoutSeconds,
      }),
    };
    if (this.closed) lane.pool.closeAll(new ElevenLabsTtsError("ElevenLabs TTS closed", "closed"));
    this.lanes.set(key, lane);
    return lane;
  }

  /** A session's `voice` is an ElevenLabs voice id; its `language` is sent as `language_code` (ISO 639-1). */
  voiceProblem(choice: VoiceChoice): string | undefined {
    if (choice.voice !== undefined && !VOICE_ID.test(choice.voice))
      return `"${choice.voice}" is not an ElevenLabs voice id (letters and digits, as in ${ELEVENLABS_TTS_DEFAULTS.voiceId})`;
    return undefined;
  }

  /**
   * Checks the options (throws listing every problem), then opens one socket. A refused key (401/403) fails ready();
   * a network problem only logs a warning: the first utterance retries, and falls back to HTTP.
   */
  async ready(): Promise<void> {
    if (this.problems.length) throw this.optionsError();
    if (this.closed) throw new ElevenLabsTtsError("ElevenLabs TTS is closed", "closed");
    if (!this.options.preconnect) return;
    const conn = this.defaultLane.pool.warm();
    if (!conn) return;
    try {
      await conn.opened;
    } catch (err) {
      const e = err as ElevenLabsTtsError;
      if (e.kind === "auth") throw e;
      this.log.warn({ error: e.message }, "ElevenLabs: could not open the WebSocket now; will retry on first use (HTTP fallback)");
    }
  }

  /**
   * A call is starting: make sure a socket with room for its first reply is open (opening one if none has room, as
   * after `idleConnectionSeconds` without calls), so that reply does not wait for the handshake. Resolves once it is
   * open or has failed; never rejects.
   */
  async warm(_callId?: string, voice: VoiceChoice = {}): Promise<void> {
    if (this.closed || this.problems.length || this.voiceProblem(voice)) return;
    const conn = this.lane(voice).pool.acquire();
    await conn?.opened.catch(() => {});
  }

  openStream(signal: AbortSignal, opts: { callId?: string; voice?: VoiceChoice } = {}): TtsStream {
    const voice = opts.voice ?? {};
    const bad = this.voiceProblem(voice);
    const lane = this.closed || this.problems.length || bad ? this.defaultLane : this.lane(voice);
    const stream = new ElevenLabsStream(
      {
        pool: lane.pool,
        http: lane.http,
        log: this.log,
        voiceSettings: wireVoiceSettings(this.options.voiceSettings),
        stallTimeoutMs: this.options.stallTimeoutMs,
        probeTimeoutMs: this.options.probeTimeoutMs,
        onDone: (s) => this.streams.delete(s),
      },
      signal,
      opts.callId,
      this.closed
        ? new ElevenLabsTtsError("ElevenLabs TTS is closed", "closed")
        : this.problems.length
        ? this.optionsError()
        : bad
        ? new ElevenLabsTtsError(`ElevenLabs: ${bad}`, "bad_request")
        : undefined,
    );
    if (!this.closed && !this.problems.length && !bad && !signal.aborted) this.streams.add(stream);
    return stream;
  }

  async *synthesize(text: string, signal: AbortSignal, voice?: VoiceChoice): AsyncIterable<TtsChunk> {
    const stream = this.openStream(signal, voice ? { voice } : {});
    stream.write(text);
    stream.end();
    yield* stream;
  }

  private optionsError(): ElevenLabsTtsError {
    return new ElevenLabsTtsError(`ElevenLabs TTS options: ${this.problems.join("; ")}`, "bad_request");
  }

  /** Live WebSockets (for tests and diagnostics). */
  get connectionCount(): number {
    let n = 0;
    for (const lane of this.lanes.values()) n += lane.pool.connections.length;
    return n;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = new ElevenLabsTtsError("ElevenLabs TTS closed", "closed");
    for (const s of [...this.streams]) s.fail(err);
    this.streams.clear();
    for (const lane of this.lanes.values()) lane.pool.closeAll(err);
  }
}

interface Lane {
  pool: ConnectionPool;
  http: HttpSynth;
}

/** ElevenLabs voice ids: 20 letters and digits today; a little room either way, nothing that could bend a URL. */
const VOICE_ID = /^[A-Za-z0-9]{8,64}$/;

/** ElevenLabs takes ISO 639-1 codes: "en-US" -> "en". */
function primaryLanguage(tag: string): string {
  return tag.split("-")[0]!.toLowerCase();
}

function wireVoiceSettings(v: ElevenLabsVoiceSettings): Record<string, number | boolean> {
  const out: Record<string, number | boolean> = {};
  if (v.stability !== undefined) out.stability = v.stability;
  if (v.similarityBoost !== undefined) out.similarity_boost = v.similarityBoost;
  if (v.style !== undefined) out.style = v.style;
  if (v.useSpeakerBoost !== undefined) out.use_speaker_boost = v.useSpeakerBoost;
  if (v.speed !== undefined) out.speed = v.speed;
  return out;
}

function validate(o: Resolved): string[] {
  const p: string[] = [];
  if (typeof o.apiKey !== "string" || !o.apiKey.trim()) p.push("apiKey is required (ELEVENLABS_API_KEY)");
  if (!o.voiceId) p.push("voiceId is required");
  if (!o.modelId) p.push("modelId is required");
  if (o.modelId === "eleven_v3") p.push("eleven_v3 does not support WebSocket streaming; use eleven_flash_v2_5 or eleven_turbo_v2_5");
  if (o.outputFormat !== "ulaw_8000") p.push('outputFormat must be "ulaw_8000"');
  try {
    const u = new URL(o.url);
    if (u.protocol !== "http:" && u.protocol !== "https:") p.push(`url must be http(s): ${o.url}`);
  } catch {
    p.push(`url is not a URL: ${o.url}`);
  }
  const int = (name: string, v: number, min: number, max: number) => {
    if (!Number.isInteger(v) || v < min || v > max) p.push(`${name} must be an integer in ${min}..${max} (got ${v})`);
  };
  int("inactivityTimeoutSeconds", o.inactivityTimeoutSeconds, 1, 180);
  int("maxContextsPerConnection", o.maxContextsPerConnection, 1, 5);
  if (o.optimizeStreamingLatency !== undefined) int("optimizeStreamingLatency", o.optimizeStreamingLatency, 0, 4);
  const pos = (name: string, v: number) => {
    if (!(typeof v === "number" && v > 0 && Number.isFinite(v))) p.push(`${name} must be > 0 (got ${v})`);
  };
  pos("idleConnectionSeconds", o.idleConnectionSeconds);
  pos("connectTimeoutMs", o.connectTimeoutMs);
  pos("stallTimeoutMs", o.stallTimeoutMs);
  pos("probeTimeoutMs", o.probeTimeoutMs);
  pos("httpTimeoutSeconds", o.httpTimeoutSeconds);
  if (!(o.wsRetryBackoffMs >= 0)) p.push(`wsRetryBackoffMs must be >= 0 (got ${o.wsRetryBackoffMs})`);
  const v = o.voiceSettings;
  const unit = (name: string, x: number | undefined, min: number, max: number) => {
    if (x !== undefined && !(x >= min && x <= max)) p.push(`voiceSettings.${name} must be in ${min}..${max} (got ${x})`);
  };
  unit("stability", v.stability, 0, 1);
  unit("similarityBoost", v.similarityBoost, 0, 1);
  unit("style", v.style, 0, 1);
  unit("speed", v.speed, 0.7, 1.2);
  return p;
}

function withoutUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
