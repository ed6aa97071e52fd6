/**
 * A local server speaking Deepgram's live streaming protocol (`/v1/listen`, protocols.md §4.2–4.4), for tests that drive
 * the real `@deepgram/sdk` against it. It cannot recognise speech: transcripts come from `script`, one line per
 * utterance, revealed word by word as audio arrives.
 *
 * Per connection it records the query parameters, the headers, every binary audio chunk, and every text control message
 * (KeepAlive, Finalize, CloseStream, anything else) with timestamps, in arrival order.
 *
 * Recognition model (per connection, with the script position shared by all connections, so a stream resumed on a new
 * connection carries on with the same line):
 * - audio after a pause starts a segment (and sends `SpeechStarted` when `vad_events=true`);
 * - every `interimEveryBytes` of a segment's audio, an interim `Results` (`is_final: false`) with the words so far
 *   (`ceil(bytes / bytesPerWord)` of the line's words not yet finalized) when `interim_results=true`;
 * - with `segmentWords`, once that many words are revealed (and more remain), an `is_final: true, speech_final: false`
 *   result finalizes them (as Deepgram does in long speech);
 * - `endpointing` ms without audio: `is_final: true, speech_final: true` with the rest of the line; then the next line,
 *   and `UtteranceEnd` after `utterance_end_ms` when `interim_results=true`;
 * - `Finalize`: `is_final: true, from_finalize: true` with the rest of the line (an empty result when no audio is
 *   pending, unless `answerEmptyFinalize` is false); then the next line;
 * - `CloseStream`: pending audio finalized as for Finalize, then `Metadata`, then close 1000.
 * Times (`start`, `duration`, word `start`/`end`) are audio time: bytes received on the connection / 8000.
 */
import { createHash, randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { WebSocketServer, type RawData, type WebSocket } from "ws";
import { MULAW_TO_PCM16 } from "../../src/audio/mulaw.ts";
import { waitForChange } from "./wait.ts";

export interface DeepgramMockOptions {
  /** Key the server accepts (`Authorization: Token <key>` or the `token, <key>` subprotocol). Unset: any. */
  apiKey?: string;
  /** Audio bytes per revealed word in interim results (default 1600 = 200 ms of 8 kHz mu-law). */
  bytesPerWord?: number;
  /** An interim result every this many bytes of a segment's audio (default 1600). */
  interimEveryBytes?: number;
  /** Finalize (is_final, speech_final false) every this many revealed words, as Deepgram does in long speech. */
  segmentWords?: number;
  /** Answer a Finalize with nothing pending with an empty from_finalize result (default true). */
  answerEmptyFinalize?: boolean;
  /** Set speech_final on from_finalize results too (default false). */
  finalizeSpeechFinal?: boolean;
  /**
   * Endpoint on silence in the audio, as Deepgram does, not only on audio stopping: `endpointing` ms of quiet audio
   * (mean level under -40 dBFS) ends the segment with `speech_final`, and quiet audio does not start one.
   */
  endpointOnSilence?: boolean;
}

export type ConnectFault = number | "hang";

export interface MockControl {
  at: number;
  /** The message's `type`, or "(invalid)" when it was not JSON with a string type. */
  type: string;
  raw: string;
}

export type MockEvent = { at: number; kind: "audio"; bytes: number } | { at: number; kind: "control"; type: string };

export interface MockConnection {
  id: number;
  path: string;
  query: Record<string, string>;
  headers: IncomingHttpHeaders;
  /** Audio chunks as received (copies). */
  audio: Buffer[];
  audioBytes: number;
  controls: MockControl[];
  /** Audio and control messages in arrival order. */
  events: MockEvent[];
  /** JSON messages the server sent (after any delay). */
  sent: Array<Record<string, unknown>>;
  openedAt: number;
  closedAt?: number;
  closeCode?: number;
  /** Whether the server dropped it (fault injection). */
  dropped: boolean;
}

export interface ConnectAttempt {
  at: number;
  path: string;
  /** 101 when the upgrade went through, the HTTP status sent otherwise, 0 when left hanging. */
  status: number;
}

interface ConnState {
  /** Quiet audio received since the last loud chunk (bytes), for endpointOnSilence. */
  quietBytes?: number;
  rec: MockConnection;
  ws: WebSocket;
  endpointingMs: number | null;
  utteranceEndMs: number | null;
  interim: boolean;
  vadEvents: boolean;
  /** Audio bytes received (the connection's timeline). */
  pos: number;
  /** Where the unfinalized segment starts on the timeline. */
  segStart: number;
  /** Audio arrived since the last endpoint or Finalize (a segment is open). */
  inSpeech: boolean;
  nextInterimAt: number;
  endpointTimer?: NodeJS.Timeout;
  utteranceEndTimer?: NodeJS.Timeout;
  lastWordEnd: number;
  requestId: string;
  closing: boolean;
}

const nowMs = () => performance.now();
const STATUS_TEXT: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  402: "Payment Required",
  403: "Forbidden",
  404: "Not Found",
  429: "Too Many Requests",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

export class DeepgramMock extends EventEmitter {
  /** `ws://127.0.0.1:<port>`: pass it as the adapter's `url`. */
  readonly url: string;
  /** The key accepted; settable (undefined accepts any). */
  apiKey: string | undefined;
  /** One line per utterance, in order. */
  script: string[] = [];
  /** Index of the line the next words come from. */
  line = 0;
  /** Words of the current line already finalized (on any connection). */
  wordsFinalized = 0;
  /** Delay added before every message the server sends. */
  delayResultsMs = 0;
  /** Never answer Finalize (a server that goes quiet). */
  ignoreFinalize = false;
  readonly connections: MockConnection[] = [];
  readonly attempts: ConnectAttempt[] = [];

  private readonly opts: Required<Omit<DeepgramMockOptions, "apiKey" | "segmentWords">> & { segmentWords: number };
  private readonly states = new Set<ConnState>();
  private readonly hanging = new Set<Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private faults: Array<{ fault: ConnectFault; remaining: number }> = [];
  private dropAfter: number | undefined;

  private constructor(
    private readonly server: Server,
    private readonly wss: WebSocketServer,
    opts: DeepgramMockOptions,
  ) {
    super();
    this.setMaxListeners(0);
    this.apiKey = opts.apiKey;
    this.opts = {
      bytesPerWord: opts.bytesPerWord ?? 1600,
      interimEveryBytes: opts.interimEveryBytes ?? 1600,
      segmentWords: opts.segmentWords ?? 0,
      answerEmptyFinalize: opts.answerEmptyFinalize ?? true,
      finalizeSpeechFinal: opts.finalizeSpeechFinal ?? false,
      endpointOnSilence: opts.endpointOnSilence ?? false,
    };
    const addr = server.address() as AddressInfo;
    this.url = `ws://127.0.0.1:${addr.port}`;
  }

  static async start(opts: DeepgramMockOptions = {}): Promise<DeepgramMock> {
    const server = createServer((_req, res) => {
      res.writeHead(404, { "content-type": "application/json" }).end('{"err_code":"NOT_FOUND"}');
    });
    const wss = new WebSocketServer({ noServer: true, handleProtocols: (protocols) => (protocols.has("token") ? "token" : false) });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    const mock = new DeepgramMock(server, wss, opts);
    server.on("upgrade", (req, socket: Socket, head) => mock.onUpgrade(req, socket, head));
    return mock;
  }

  // ---- fault switches -------------------------------------------------------------------------------------------

  /** The next `times` connection attempts get this HTTP status (e.g. 401, 429, 503), or are left hanging ("hang"). */
  failNextConnect(fault: ConnectFault, times = 1): void {
    this.faults.push({ fault, remaining: times });
  }

  /** Forget pending connect faults, the drop switch and delays: the server accepts normally again. */
  clearFaults(): void {
    this.faults = [];
    this.dropAfter = undefined;
    this.delayResultsMs = 0;
    this.ignoreFinalize = false;
    for (const s of this.hanging) s.destroy();
    this.hanging.clear();
  }

  /** Once: the first connection whose audio reaches `n` bytes is cut abruptly (TCP destroyed, no close frame). */
  dropConnectionAfterBytes(n: number): void {
    this.dropAfter = n;
  }

  /** Send a text message that is not JSON on every open connection. Returns how many got it. */
  sendGarbage(text = "<html>502 Bad Gateway</html>"): number {
    let n = 0;
    for (const st of this.states) {
      if (st.ws.readyState === st.ws.OPEN) {
        st.ws.send(text);
        n++;
      }
    }
    return n;
  }

  /** Send any JSON message on every open connection (unknown types, malformed results...). */
  sendJson(msg: unknown): number {
    let n = 0;
    for (const st of this.states) {
      if (st.ws.readyState === st.ws.OPEN) {
        st.ws.send(JSON.stringify(msg));
        n++;
      }
    }
    return n;
  }

  /** Close every open connection from the server side with a close frame (e.g. 1011 "NET-0001"). */
  closeConnections(code = 1011, reason = "NET-0001"): void {
    for (const st of this.states) st.ws.close(code, reason);
  }

  // ---- queries ----------------------------------------------------------------------------------------------------

  get lastConnection(): MockConnection | undefined {
    return this.connections[this.connections.length - 1];
  }

  /** All audio a connection received, concatenated. */
  audioOf(conn: MockConnection): Buffer {
    return Buffer.concat(conn.audio);
  }

  static sha256(bytes: Uint8Array): string {
    return createHash("sha256").update(bytes).digest("hex");
  }

  controlsOf(conn: MockConnection, type: string): MockControl[] {
    return conn.controls.filter((c) => c.type === type);
  }

  /** Resolves once `pred` holds (checked now and after every recorded event); rejects after `timeoutMs`. */
  waitFor(pred: () => boolean, timeoutMs = 3000, what = "condition"): Promise<void> {
    return waitForChange(this, pred, timeoutMs, () => `DeepgramMock: timed out waiting for ${what}`);
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const st of this.states) this.clearConnTimers(st);
    for (const s of this.hanging) s.destroy();
    this.hanging.clear();
    for (const c of this.wss.clients) c.terminate();
    this.wss.close();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ---- server -----------------------------------------------------------------------------------------------------

  private onUpgrade(req: import("node:http").IncomingMessage, socket: Socket, head: Buffer): void {
    socket.on("error", () => {});
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const attempt: ConnectAttempt = { at: nowMs(), path: url.pathname, status: 101 };
    this.attempts.push(attempt);
    const fault = this.takeFault();
    if (fault === "hang") {
      attempt.status = 0;
      this.hanging.add(socket);
      socket.on("close", () => this.hanging.delete(socket));
      this.changed();
      return;
    }
    let status = typeof fault === "number" ? fault : 0;
    if (!status && url.pathname !== "/v1/listen") status = 404;
    if (!status && this.apiKey !== undefined && !this.authorized(req.headers)) status = 401;
    if (status) {
      attempt.status = status;
      const body = JSON.stringify(
        status === 401
          ? { err_code: "INVALID_AUTH", err_msg: "Invalid credentials.", request_id: randomUUID() }
          : { err_code: `HTTP_${status}`, err_msg: STATUS_TEXT[status] ?? "error", request_id: randomUUID() },
      );
      socket.end(
        `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? "Error"}\r\ncontent-type: application/json\r\n` +
          `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      );
      this.changed();
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, url, req.headers));
  }

  private takeFault(): ConnectFault | undefined {
    const f = this.faults[0];
    if (!f) return undefined;
    if (--f.remaining <= 0) this.faults.shift();
    return f.fault;
  }

  private authorized(headers: IncomingHttpHeaders): boolean {
    const auth = headers.authorization;
    if (auth === `Token ${this.apiKey}` || auth === `token ${this.apiKey}`) return true;
    const protos = (headers["sec-websocket-protocol"] ?? "").split(",").map((s) => s.trim());
    return protos[0] === "token" && protos[1] === this.apiKey;
  }

  private onConnection(ws: WebSocket, url: URL, headers: IncomingHttpHeaders): void {
    const query: Record<string, string> = {};
    for (const [k, v] of url.searchParams) query[k] = v;
    const rec: MockConnection = {
      id: this.connections.length + 1,
      path: url.pathname,
      query,
      headers,
      audio: [],
      audioBytes: 0,
      controls: [],
      events: [],
      sent: [],
      openedAt: nowMs(),
      dropped: false,
    };
    this.connections.push(rec);
    const num = (v: string | undefined): number | null => (v === undefined || v === "false" ? null : Number(v));
    const st: ConnState = {
      rec,
      ws,
      endpointingMs: query.endpointing === undefined ? 10 : num(query.endpointing),
      utteranceEndMs: num(query.utterance_end_ms),
      interim: query.interim_results === "true",
      vadEvents: query.vad_events === "true",
      pos: 0,
      segStart: 0,
      inSpeech: false,
      nextInterimAt: this.opts.interimEveryBytes,
      lastWordEnd: 0,
      requestId: randomUUID(),
      closing: false,
    };
    this.states.add(st);
    ws.on("message", (data, isBinary) => this.onMessage(st, data, isBinary));
    ws.on("close", (code) => {
      rec.closedAt = nowMs();
      rec.closeCode = code;
      this.clearConnTimers(st);
      this.states.delete(st);
      this.changed();
    });
    ws.on("error", () => {});
    this.changed();
  }

  private onMessage(st: ConnState, data: RawData, isBinary: boolean): void {
    // Frames the receiver had already buffered when the socket was cut, or that arrive after the server closed.
    if (st.rec.dropped || st.ws.readyState !== st.ws.OPEN) return;
    const at = nowMs();
    if (isBinary) {
      const buf = Buffer.isBuffer(data) ? Buffer.from(data) : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
      st.rec.audio.push(buf);
      st.rec.audioBytes += buf.length;
      st.rec.events.push({ at, kind: "audio", bytes: buf.length });
      if (this.opts.endpointOnSilence && this.quietChunk(st, buf)) {
        st.pos += buf.length;
        return;
      }
      this.onAudio(st, buf.length);
      if (this.dropAfter !== undefined && st.rec.audioBytes >= this.dropAfter) {
        this.dropAfter = undefined;
        st.rec.dropped = true;
        this.clearConnTimers(st);
        st.ws.terminate();
      }
      this.changed();
      return;
    }
    const raw = data.toString();
    let type = "(invalid)";
    try {
      const msg = JSON.parse(raw) as { type?: unknown };
      if (typeof msg.type === "string") type = msg.type;
    } catch {
      // recorded as invalid
    }
    st.rec.controls.push({ at, type, raw });
    st.rec.events.push({ at, kind: "control", type });
    if (type === "Finalize" && !this.ignoreFinalize) this.finalize(st, true);
    else if (type === "CloseStream") this.closeStream(st);
    this.changed();
  }

  private onAudio(st: ConnState, n: number): void {
    if (st.closing) return;
    if (!st.inSpeech) {
      st.inSpeech = true;
      st.segStart = st.pos;
      st.nextInterimAt = this.opts.interimEveryBytes;
      if (st.vadEvents) this.send(st, { type: "SpeechStarted", channel: [0], timestamp: round3(st.pos / 8000) });
    }
    st.pos += n;
    if (st.utteranceEndTimer) {
      clearTimeout(st.utteranceEndTimer);
      st.utteranceEndTimer = undefined;
    }
    const segBytes = st.pos - st.segStart;
    if (segBytes >= st.nextInterimAt) {
      while (st.nextInterimAt <= segBytes) st.nextInterimAt += this.opts.interimEveryBytes;
      const words = this.remainingWords();
      const revealed = Math.min(words.length, Math.ceil(segBytes / this.opts.bytesPerWord));
      const seg = this.opts.segmentWords;
      if (seg > 0 && revealed >= seg && words.length > seg) {
        this.sendResult(st, words.slice(0, seg), { isFinal: true, speechFinal: false, fromFinalize: false });
        this.wordsFinalized += seg;
        st.segStart = st.pos;
        st.nextInterimAt = this.opts.interimEveryBytes;
      } else if (st.interim && revealed > 0) {
        this.sendResult(st, words.slice(0, revealed), { isFinal: false, speechFinal: false, fromFinalize: false });
      }
    }
    if (st.endpointingMs !== null) {
      if (st.endpointTimer) clearTimeout(st.endpointTimer);
      st.endpointTimer = setTimeout(() => {
        st.endpointTimer = undefined;
        if (st.inSpeech && !st.closing) this.endSegment(st, { speechFinal: true, fromFinalize: false });
      }, st.endpointingMs);
    }
  }

  /** True when the chunk is quiet and so does not count as speech (ending the segment after `endpointing` of it). */
  private quietChunk(st: ConnState, buf: Buffer): boolean {
    let sum = 0;
    for (const b of buf) sum += Math.abs(MULAW_TO_PCM16[b]!);
    const quiet = buf.length > 0 && sum / buf.length < 328; // -40 dBFS
    if (!quiet) {
      st.quietBytes = 0;
      return false;
    }
    st.quietBytes = (st.quietBytes ?? 0) + buf.length;
    if (!st.inSpeech) return true;
    if (st.endpointingMs !== null && st.quietBytes >= st.endpointingMs * 8) {
      st.pos += buf.length;
      this.endSegment(st, { speechFinal: true, fromFinalize: false });
      st.pos -= buf.length; // the caller adds it back
      return true;
    }
    return false;
  }

  private finalize(st: ConnState, fromFinalize: boolean): void {
    if (st.inSpeech) this.endSegment(st, { speechFinal: this.opts.finalizeSpeechFinal, fromFinalize });
    else if (this.opts.answerEmptyFinalize) {
      this.sendResult(st, [], { isFinal: true, speechFinal: false, fromFinalize, start: st.pos, end: st.pos });
    }
  }

  /** The rest of the current line, finalized; the script moves to the next line. */
  private endSegment(st: ConnState, f: { speechFinal: boolean; fromFinalize: boolean }): void {
    if (st.endpointTimer) {
      clearTimeout(st.endpointTimer);
      st.endpointTimer = undefined;
    }
    const words = this.remainingWords();
    this.sendResult(st, words, { isFinal: true, speechFinal: f.speechFinal, fromFinalize: f.fromFinalize });
    this.line++;
    this.wordsFinalized = 0;
    st.inSpeech = false;
    st.segStart = st.pos;
    if (st.interim && st.utteranceEndMs !== null && words.length > 0) {
      if (st.utteranceEndTimer) clearTimeout(st.utteranceEndTimer);
      st.utteranceEndTimer = setTimeout(() => {
        st.utteranceEndTimer = undefined;
        this.send(st, { type: "UtteranceEnd", channel: [0, 1], last_word_end: st.lastWordEnd });
      }, st.utteranceEndMs);
    }
  }

  private closeStream(st: ConnState): void {
    if (st.inSpeech) this.endSegment(st, { speechFinal: false, fromFinalize: true });
    st.closing = true;
    this.clearConnTimers(st);
    this.send(st, {
      type: "Metadata",
      transaction_key: "deprecated",
      request_id: st.requestId,
      sha256: DeepgramMock.sha256(Buffer.concat(st.rec.audio)),
      created: new Date().toISOString(),
      duration: round3(st.pos / 8000),
      channels: 1,
    });
    this.later(() => {
      if (st.ws.readyState === st.ws.OPEN) st.ws.close(1000);
    }, this.delayResultsMs);
  }

  private remainingWords(): string[] {
    const line = this.script[this.line];
    if (line === undefined) return [];
    return line.split(/\s+/).filter(Boolean).slice(this.wordsFinalized);
  }

  private sendResult(
    st: ConnState,
    tokens: string[],
    f: { isFinal: boolean; speechFinal: boolean; fromFinalize: boolean; start?: number; end?: number },
  ): void {
    const startB = f.start ?? st.segStart;
    const endB = f.end ?? st.pos;
    const start = startB / 8000;
    const duration = (endB - startB) / 8000;
    const step = tokens.length > 0 ? duration / tokens.length : 0;
    const words = tokens.map((t, i) => ({
      word: t.toLowerCase().replace(/[^\p{L}\p{N}']/gu, ""),
      start: round3(start + i * step),
      end: round3(start + (i + 1) * step),
      confidence: 0.9,
      punctuated_word: t,
    }));
    if (words.length > 0) st.lastWordEnd = words[words.length - 1]!.end;
    this.send(st, {
      type: "Results",
      channel_index: [0, 1],
      duration: round3(duration),
      start: round3(start),
      is_final: f.isFinal,
      speech_final: f.speechFinal,
      from_finalize: f.fromFinalize,
      channel: {
        alternatives: [{ transcript: tokens.join(" "), confidence: tokens.length > 0 ? 0.9 : 0, words }],
      },
      metadata: {
        request_id: st.requestId,
        model_info: { name: "general-nova-3", version: "2024-01-01.0", arch: "nova-3" },
        model_uuid: "00000000-0000-0000-0000-000000000003",
      },
    });
  }

  private send(st: ConnState, msg: Record<string, unknown>): void {
    const go = () => {
      if (st.ws.readyState !== st.ws.OPEN) return;
      st.ws.send(JSON.stringify(msg));
      st.rec.sent.push(msg);
      this.changed();
    };
    if (this.delayResultsMs > 0) this.later(go, this.delayResultsMs);
    else go();
  }

  private later(fn: () => void, ms = 0): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  private clearConnTimers(st: ConnState): void {
    if (st.endpointTimer) clearTimeout(st.endpointTimer);
    if (st.utteranceEndTimer) clearTimeout(st.utteranceEndTimer);
    st.endpointTimer = st.utteranceEndTimer = undefined;
  }

  private changed(): void {
    this.emit("change");
  }
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;
