import { randomUUID } from "node:crypto";
import type { TtsChunk, TtsStream } from "../../types.ts";
import type { ConnectionPool, ContextHandler, ElevenLabsLogger, MultiContextConnection } from "./connection.ts";
import { ElevenLabsTtsError } from "./errors.ts";
import type { HttpSynth } from "./http.ts";
import { ChunkQueue } from "../chunk-queue.ts";
import { readAlignment, WordTracker } from "./words.ts";
import { errorMessage } from "../../../util/errors.ts";

export interface StreamDeps {
  pool: ConnectionPool;
  http: HttpSynth;
  log: ElevenLabsLogger;
  /** Sent in each context's first message (snake_case, as on the wire). */
  voiceSettings: Record<string, number | boolean>;
  stallTimeoutMs: number;
  probeTimeoutMs: number;
  /** Called once when the stream is over (finished, failed or cancelled). */
  onDone: (s: ElevenLabsStream) => void;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const EMPTY = new Uint8Array(0);
/** previous_text for an HTTP continuation: this many words before it. */
const PREVIOUS_WORDS = 40;
let nextUtterance = 1;

/**
 * One utterance: one context on a multi-context WebSocket, or, when the socket cannot be had or breaks, HTTP
 * streaming for the rest of the text.
 *
 * Messages on the socket, per utterance:
 *   `{"text":" ","voice_settings":{...},"context_id":ID}`            at open (before any text)
 *   `{"text":"<clause> ","context_id":ID,"flush":true}`              per write(), whitespace-trimmed, one trailing space
 *   `{"context_id":ID,"text":""}`                                    keepalive, when nothing was sent for a while
 *   `{"context_id":ID,"close_context":true}`                         at end() (audio keeps flushing, then `isFinal`),
 *                                                                    or at once on abort (barge-in)
 */
export class ElevenLabsStream implements TtsStream, ContextHandler {
  readonly contextId: string;
  private readonly queue = new ChunkQueue();
  private readonly words = new WordTracker();
  private mode: "ws" | "http" | "done" = "ws";
  private conn: MultiContextConnection | null = null;
  private ended = false;
  private closeSent = false;
  private wroteText = false;
  /** Audio bytes of this utterance so far (8 per ms): where the next chunk starts. */
  private bytes = 0;
  private stallTimer: NodeJS.Timeout | undefined;
  private lastHeardAt = 0;
  private httpNext = 0;
  private httpRunning = false;
  private httpAbort: AbortController | null = null;
  private readonly onAbort = () => this.cancel();

  constructor(
    private readonly d: StreamDeps,
    private readonly signal: AbortSignal,
    callId: string | undefined,
    failure?: ElevenLabsTtsError,
  ) {
    const tag = (callId ?? "parley").replace(/[^A-Za-z0-9_-]/g, "").slice(-24) || "parley";
    this.contextId = `${tag}-${nextUtterance++}-${randomUUID().slice(0, 8)}`;
    if (failure) {
      this.mode = "done";
      this.queue.fail(failure);
      return;
    }
    if (signal.aborted) {
      this.mode = "done";
      this.queue.end(true);
      return;
    }
    signal.addEventListener("abort", this.onAbort, { once: true });
    const conn = d.pool.acquire();
    if (!conn) {
      this.mode = "http";
      d.log.debug({ contextId: this.contextId }, "ElevenLabs: WebSocket in back-off, utterance over HTTP");
      return;
    }
    this.conn = conn;
    conn.attach(this);
    conn.send(this.contextId, { text: " ", voice_settings: d.voiceSettings, context_id: this.contextId });
  }

  get wantsKeepalive(): boolean {
    return this.mode === "ws" && !this.closeSent;
  }

  write(text: string): void {
    if (this.mode === "done") return;
    if (this.ended) {
      this.d.log.warn({ contextId: this.contextId }, "ElevenLabs: write() after end() ignored");
      return;
    }
    const t = text.trim();
    if (!t) return; // never send "" (a keepalive) or " " (an init) as text
    const piece = `${t} `; // "should always end with a single space"
    this.words.add(piece);
    this.wroteText = true;
    if (this.mode === "ws") {
      this.conn!.send(this.contextId, { text: piece, context_id: this.contextId, flush: true });
      this.armStall();
    } else this.pumpHttp();
  }

  end(): void {
    if (this.mode === "done" || this.ended) return;
    this.ended = true;
    if (this.mode === "http") return this.pumpHttp();
    if (!this.wroteText) {
      // Nothing to say: forget the context without waiting for the server.
      this.conn?.abortContext(this.contextId);
      this.conn = null;
      return this.finish();
    }
    this.conn!.send(this.contextId, { context_id: this.contextId, close_context: true });
    this.closeSent = true;
    this.armStall();
  }

  [Symbol.asyncIterator](): AsyncIterator<TtsChunk> {
    return {
      next: async (): Promise<IteratorResult<TtsChunk>> => {
        const chunk = await this.queue.next();
        return chunk ? { value: chunk, done: false } : { value: undefined, done: true };
      },
      return: async (): Promise<IteratorResult<TtsChunk>> => {
        // The consumer stopped early: stop synthesis as on abort.
        this.cancel();
        return { value: undefined, done: true };
      },
    };
  }

  /** Abort (barge-in, hang-up, consumer gone): `close_context` now, and nothing more comes out. */
  cancel(): void {
    if (this.mode === "done") return;
    this.d.log.debug({ contextId: this.contextId, mode: this.mode }, "ElevenLabs: utterance cancelled");
    this.stop();
    this.queue.end(true);
  }

  /** End the utterance with an error (provider closed, stall, ...). */
  fail(err: ElevenLabsTtsError): void {
    if (this.mode === "done") return;
    this.d.log.warn({ contextId: this.contextId, error: err.message, kind: err.kind }, "ElevenLabs: utterance failed");
    this.stop();
    this.queue.fail(err);
  }

  // ---- WebSocket side ----

  onServerMessage(msg: Record<string, unknown>): void {
    if (this.mode !== "ws") return;
    this.lastHeardAt = performance.now();
    const audio = msg.audio;
    if (typeof audio === "string" && audio.length > 0) {
      if (audio.length % 4 !== 0 || !BASE64.test(audio)) {
        this.d.log.debug({ contextId: this.contextId }, "ElevenLabs: audio that is not base64 dropped");
      } else {
        const mulaw = new Uint8Array(Buffer.from(audio, "base64")); // own memory, not a slice of Buffer's shared pool
        const offsetMs = this.bytes / 8;
        const raw = readAlignment(msg.alignment);
        const norm = raw ? null : readAlignment(msg.normalizedAlignment ?? msg.normalized_alignment);
        const words = raw ? this.words.align(raw, offsetMs, true) : norm ? this.words.align(norm, offsetMs, false) : [];
        this.bytes += mulaw.length;
        if (this.closeSent) this.touchStall();
        else this.clearStall();
        this.queue.push({ mulaw, words });
      }
    } else if (typeof msg.error === "string" || (typeof msg.message === "string" && msg.isFinal !== true)) {
      const detail = String(msg.error ?? msg.message);
      if (/quota/i.test(detail))
        return this.fail(new ElevenLabsTtsError(`ElevenLabs: quota exceeded — the account has no characters left (${detail})`, "auth", { detail }));
      if (/api[ _-]?key|unauthori[sz]ed|authenticat/i.test(detail))
        return this.fail(new ElevenLabsTtsError(`ElevenLabs: 401 Unauthorized — check ELEVENLABS_API_KEY (${detail})`, "auth", { detail }));
      return this.toHttp(new ElevenLabsTtsError(`ElevenLabs: server error on the WebSocket (${detail})`, "server", { detail }));
    }
    if (msg.isFinal === true || msg.is_final === true) {
      if (!this.closeSent) {
        // The server ended the context by itself (e.g. its inactivity timeout): carry on over HTTP.
        return this.toHttp(new ElevenLabsTtsError("ElevenLabs: the server closed the context", "server"));
      }
      this.conn?.detach(this.contextId);
      this.conn = null;
      this.pushEstimates(this.words.count, this.bytes / 8);
      this.finish();
    } else if (this.stallTimer) this.touchStall();
  }

  onConnectionLost(err: ElevenLabsTtsError): void {
    if (this.mode !== "ws") return;
    this.conn = null;
    if (err.definitive) this.fail(err);
    else this.toHttp(err);
  }

  // ---- HTTP side ----

  /**
   * The socket failed mid-utterance: the rest goes over HTTP, from the first word whose audio did not arrive
   * completely (so a word cut in the middle is spoken again whole; nothing fully heard is repeated, nothing is lost).
   */
  private toHttp(reason: ElevenLabsTtsError): void {
    if (this.mode !== "ws") return;
    this.clearStall();
    if (this.conn) {
      this.conn.abortContext(this.contextId);
      this.conn = null;
    }
    this.mode = "http";
    this.httpNext = this.words.completeBefore(this.bytes / 8);
    this.d.log.warn(
      { contextId: this.contextId, error: reason.message, resumeAtWord: this.httpNext, words: this.words.count },
      "ElevenLabs: WebSocket failed for this utterance, finishing over HTTP",
    );
    this.pumpHttp();
  }

  private pumpHttp(): void {
    if (this.httpRunning || this.mode !== "http") return;
    this.httpRunning = true;
    void (async () => {
      try {
        for (;;) {
          if (this.mode !== "http") return;
          const end = this.words.count;
          if (this.httpNext < end) {
            const start = this.httpNext;
            this.httpNext = end;
            await this.httpSegment(start, end);
            continue;
          }
          if (this.ended) this.finish();
          return;
        }
      } catch (err) {
        this.fail(
          err instanceof ElevenLabsTtsError
            ? err
            : new ElevenLabsTtsError(`ElevenLabs: ${errorMessage(err)}`, "protocol", { cause: err }),
        );
      } finally {
        this.httpRunning = false;
      }
    })();
  }

  /** One HTTP request for written words [start, end). */
  private async httpSegment(start: number, end: number): Promise<void> {
    const text = this.words.textFrom(start, end);
    const previous = start > 0 ? this.words.textFrom(Math.max(0, start - PREVIOUS_WORDS), start) : undefined;
    this.words.rewind(start);
    const ac = new AbortController();
    this.httpAbort = ac;
    const reqStartMs = this.bytes / 8;
    let reqBytes = 0;
    let stalled = false;
    const onStall = () => {
      stalled = true;
      ac.abort();
    };
    let timer = setTimeout(onStall, this.d.stallTimeoutMs);
    timer.unref();
    try {
      for await (const piece of this.d.http.stream(text, previous, ac.signal)) {
        if (this.mode !== "http") return;
        clearTimeout(timer);
        timer = setTimeout(onStall, this.d.stallTimeoutMs);
        timer.unref();
        const raw = readAlignment(piece.alignment);
        const a = raw ?? readAlignment(piece.normalizedAlignment);
        let words: TtsChunk["words"] = [];
        if (a && a.chars.length) {
          // Whether these times count from the start of the response or of this chunk: a later chunk's first
          // character starts near the audio already received in the first case, near 0 in the second.
          const posMs = reqBytes / 8;
          const absolute = posMs > 0 && a.startMs[0]! >= posMs / 2;
          words = this.words.align(a, absolute ? reqStartMs : this.bytes / 8, raw !== null);
        }
        this.bytes += piece.mulaw.length;
        reqBytes += piece.mulaw.length;
        if (piece.mulaw.length || words.length) this.queue.push({ mulaw: piece.mulaw, words });
      }
    } finally {
      clearTimeout(timer);
      this.httpAbort = null;
    }
    if (stalled)
      throw new ElevenLabsTtsError(`ElevenLabs: no audio for ${this.d.stallTimeoutMs} ms over HTTP — the server stalled`, "stall");
    if (this.mode !== "http") return;
    // Words the response had no timestamps for: spread over the audio of this request.
    this.pushEstimates(end, this.bytes / 8, reqStartMs);
  }

  // ---- common ----

  private pushEstimates(end: number, toMs: number, fromMs = 0): void {
    const est = this.words.estimate(end, fromMs, toMs);
    if (est.length) this.queue.push({ mulaw: EMPTY, words: est });
  }

  /** No audio since the last text (or no final after close): probe the socket, then fall back or fail. */
  private armStall(): void {
    if (!this.stallTimer) this.touchStall();
  }

  private touchStall(): void {
    clearTimeout(this.stallTimer);
    this.stallTimer = setTimeout(() => void this.onStall(), this.d.stallTimeoutMs);
    this.stallTimer.unref();
  }

  private clearStall(): void {
    clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
  }

  private async onStall(): Promise<void> {
    this.stallTimer = undefined;
    const conn = this.conn;
    if (this.mode !== "ws" || !conn) return;
    const heardBefore = this.lastHeardAt;
    const alive = await conn.probe(this.d.probeTimeoutMs);
    if (this.mode !== "ws" || this.conn !== conn) return;
    if (this.lastHeardAt !== heardBefore) return this.armStall(); // it spoke up meanwhile
    if (!alive) {
      // A dead socket (no pong): drop it; every utterance on it carries on over HTTP.
      conn.terminate(new ElevenLabsTtsError("ElevenLabs: the WebSocket stopped responding (no pong)", "network"));
      return;
    }
    this.fail(
      new ElevenLabsTtsError(
        `ElevenLabs: no ${this.closeSent ? "end of audio" : "audio"} for ${this.d.stallTimeoutMs} ms after text was sent — the server stalled`,
        "stall",
      ),
    );
  }

  private stop(): void {
    this.mode = "done";
    this.clearStall();
    this.signal.removeEventListener("abort", this.onAbort);
    if (this.conn) {
      this.conn.abortContext(this.contextId);
      this.conn = null;
    }
    this.httpAbort?.abort();
    this.httpAbort = null;
    this.d.onDone(this);
  }

  private finish(): void {
    if (this.mode === "done") return;
    this.stop();
    this.queue.end();
  }
}
