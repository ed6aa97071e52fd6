/**
 * A local server speaking ElevenLabs' documented TTS protocols (reference §5a' multi-context `multi-stream-input`
 * WebSocket, §5b HTTP streaming, plus `/stream/with-timestamps`), with deterministic fake audio and fault switches.
 *
 * Fake audio: every word is `msPerWord` ms (default 60) of a mu-law tone whose pitch depends on the word, 8 bytes per
 * ms. A flushed text is answered in chunks of `wordsPerChunk` words, each with `alignment` (and the same
 * `normalizedAlignment`) for its characters, times relative to the chunk as ElevenLabs documents. So within one
 * context, word k of everything voiced starts at k * msPerWord ms.
 */
import { createServer, STATUS_CODES, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { setImmediate as nextTurn } from "node:timers/promises";
import { WebSocketServer, type WebSocket } from "ws";
import { encodeMulaw } from "../../src/audio/mulaw.ts";

export interface MockMessage {
  /** performance.now() when it arrived. */
  at: number;
  raw: string;
  /** Parsed JSON object, or null if the frame was not one. */
  json: Record<string, unknown> | null;
}

export interface MockConnection {
  id: number;
  voiceId: string;
  query: Record<string, string>;
  headers: IncomingHttpHeaders;
  messages: MockMessage[];
  /** Context ids in the order they were initialized. */
  contexts: string[];
  closed: boolean;
  /** performance.now() when the WebSocket handshake completed. */
  openedAt: number;
  /** The WebSocket close code the server saw (or 1006 for a dropped socket). */
  closeCode?: number;
}

export interface MockHttpRequest {
  at: number;
  path: string;
  voiceId: string;
  withTimestamps: boolean;
  query: Record<string, string>;
  headers: IncomingHttpHeaders;
  body: Record<string, unknown> | null;
  status: number;
  /** Audio bytes sent in the response. */
  audio: Uint8Array;
}

export interface ElevenLabsMockOptions {
  /** Accepted `xi-api-key` (default "test-key"). */
  apiKey?: string;
  msPerWord?: number;
  wordsPerChunk?: number;
  /** HTTP with-timestamps alignment: times from the start of the response (default) or of each chunk. */
  httpAlignment?: "absolute" | "relative";
  /** Name of the durations field on the WebSocket (the SDK's `charDurationsMs`, or the older docs' `charsDurationsMs`). */
  durationsKey?: "charDurationsMs" | "charsDurationsMs";
  /** Leave `alignment` out (keep `normalizedAlignment`) on WebSocket chunks. */
  omitAlignment?: boolean;
  /** Cut audio into chunks of this many bytes (through the middle of words) instead of `wordsPerChunk` words. */
  bytesPerChunk?: number;
  /** End the with-timestamps body without a newline after the last JSON line. */
  httpNoFinalNewline?: boolean;
}

interface MockContext {
  id: string;
  buffer: string;
  closed: boolean;
  /** Jobs run one after another, so a context's audio keeps its order. */
  chain: Promise<void>;
}

interface Live {
  info: MockConnection;
  ws: WebSocket;
  contexts: Map<string, MockContext>;
}

const MAX_CONTEXTS = 5;

export class ElevenLabsMock {
  readonly connections: MockConnection[] = [];
  readonly httpRequests: MockHttpRequest[] = [];
  /** Refused upgrades (status), in order. */
  readonly refusedConnects: number[] = [];
  private readonly live = new Set<Live>();
  private readonly audioByContext = new Map<string, Uint8Array[]>();
  private failConnect: number[] = [];
  private dropAfter: number | null = null;
  private garbageNext = false;
  private stalled = false;
  private httpStalled = false;
  private httpCode: number | null = null;
  private nextId = 1;
  private readonly sockets = new Set<Socket>();
  private readonly o: Required<Omit<ElevenLabsMockOptions, "omitAlignment" | "bytesPerChunk" | "httpNoFinalNewline">> & {
    httpNoFinalNewline: boolean;
    omitAlignment: boolean;
    bytesPerChunk: number | undefined;
  };

  private constructor(
    private readonly server: Server,
    private readonly wss: WebSocketServer,
    opts: ElevenLabsMockOptions,
  ) {
    this.o = {
      apiKey: opts.apiKey ?? "test-key",
      msPerWord: opts.msPerWord ?? 60,
      wordsPerChunk: opts.wordsPerChunk ?? 2,
      httpAlignment: opts.httpAlignment ?? "absolute",
      durationsKey: opts.durationsKey ?? "charDurationsMs",
      omitAlignment: opts.omitAlignment ?? false,
      bytesPerChunk: opts.bytesPerChunk,
      httpNoFinalNewline: opts.httpNoFinalNewline ?? false,
    };
  }

  static async start(opts: ElevenLabsMockOptions = {}): Promise<ElevenLabsMock> {
    const server = createServer();
    const wss = new WebSocketServer({ noServer: true });
    const mock = new ElevenLabsMock(server, wss, opts);
    server.on("connection", (s) => {
      mock.sockets.add(s);
      s.on("close", () => mock.sockets.delete(s));
    });
    server.on("request", (req, res) => void mock.onHttp(req, res));
    server.on("upgrade", (req, socket, head) => mock.onUpgrade(req, socket as Socket, head));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return mock;
  }

  get url(): string {
    const { port } = this.server.address() as AddressInfo;
    return `http://127.0.0.1:${port}`;
  }

  get apiKey(): string {
    return this.o.apiKey;
  }

  get msPerWord(): number {
    return this.o.msPerWord;
  }

  // ---- fault switches ----

  /** Refuse the next WebSocket upgrade with this HTTP status (calls stack: one status per upgrade). */
  failNextConnect(status: number): void {
    this.failConnect.push(status);
  }

  /** The first socket that has received `n` messages is dropped (no close frame) right after the n-th. Once. */
  dropSocketAfterMessages(n: number): void {
    this.dropAfter = n;
  }

  /** Before the next audio it sends, the server sends junk: not JSON, binary, wrong shapes, unknown contexts. Once. */
  sendGarbage(): void {
    this.garbageNext = true;
  }

  /** Contexts receive messages but nothing is sent back (until turned off). */
  stallContexts(on = true): void {
    this.stalled = on;
  }

  /** HTTP responses start (status 200) but no body ever comes (until turned off). */
  stallHttp(on = true): void {
    this.httpStalled = on;
  }

  /** Every HTTP request gets this status (null: back to normal). */
  httpStatus(code: number | null): void {
    this.httpCode = code;
  }

  // ---- inspection ----

  /** All audio the server sent for a context (in flight or not), concatenated. */
  sentAudio(contextId: string): Uint8Array {
    return Buffer.concat(this.audioByContext.get(contextId) ?? []);
  }

  /** Every message (JSON) that named this context, in arrival order. */
  contextMessages(contextId: string): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    for (const c of this.connections)
      for (const m of c.messages) if (m.json && (m.json.context_id ?? m.json.contextId) === contextId) out.push(m.json);
    return out;
  }

  /** The connection a context was opened on. */
  connectionOf(contextId: string): MockConnection | undefined {
    return this.connections.find((c) => c.contexts.includes(contextId));
  }

  /** All context ids, in the order they were opened. */
  get contextIds(): string[] {
    return this.connections.flatMap((c) => c.contexts);
  }

  /** The audio the mock makes for a text (both protocols). */
  audioFor(text: string): Uint8Array {
    return Buffer.concat(words(text).map((w) => this.tone(w)));
  }

  /** Closes every open socket normally (1000), as the server does with idle ones. Resolves once they are closed. */
  async closeSockets(): Promise<void> {
    const closing = [...this.live].map(
      (l) =>
        new Promise<void>((resolve) => {
          if (l.ws.readyState === l.ws.CLOSED) return resolve();
          l.ws.once("close", () => resolve());
          l.ws.close(1000);
        }),
    );
    await Promise.all(closing);
  }

  async close(): Promise<void> {
    for (const l of this.live) l.ws.terminate();
    this.wss.close();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ---- WebSocket ----

  private onUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const url = new URL(req.url ?? "/", "http://x");
    const m = /^\/v1\/text-to-speech\/([^/]+)\/multi-stream-input$/.exec(url.pathname);
    if (!m) return refuse(socket, 404, { detail: "Not Found" });
    if (req.headers["xi-api-key"] !== this.o.apiKey) {
      this.refusedConnects.push(401);
      return refuse(socket, 401, { detail: { status: "invalid_api_key", message: "Invalid API key" } });
    }
    const fail = this.failConnect.shift();
    if (fail !== undefined) {
      this.refusedConnects.push(fail);
      return refuse(socket, fail, { detail: { status: "mock_failure", message: `refused with ${fail}` } });
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const info: MockConnection = {
        id: this.nextId++,
        voiceId: decodeURIComponent(m[1]!),
        query: Object.fromEntries(url.searchParams),
        headers: req.headers,
        messages: [],
        contexts: [],
        closed: false,
        openedAt: performance.now(),
      };
      this.connections.push(info);
      const l: Live = { info, ws, contexts: new Map() };
      this.live.add(l);
      ws.on("message", (data, isBinary) => this.onMessage(l, String(data), isBinary));
      ws.on("close", (code) => {
        info.closed = true;
        info.closeCode = code;
        this.live.delete(l);
      });
      ws.on("error", () => {});
    });
  }

  private onMessage(l: Live, raw: string, isBinary: boolean): void {
    let json: Record<string, unknown> | null = null;
    if (!isBinary) {
      try {
        const v = JSON.parse(raw);
        if (v && typeof v === "object" && !Array.isArray(v)) json = v as Record<string, unknown>;
      } catch {}
    }
    l.info.messages.push({ at: performance.now(), raw, json });
    if (this.dropAfter !== null && l.info.messages.length >= this.dropAfter) {
      this.dropAfter = null;
      l.ws.terminate();
      return;
    }
    if (!json) return;
    if (json.close_socket === true) {
      const all = [...l.contexts.values()];
      void Promise.all(all.map((c) => this.closeContext(l, c))).then(() => l.ws.close(1000));
      return;
    }
    const id = typeof json.context_id === "string" ? json.context_id : "default";
    let ctx = l.contexts.get(id);
    if (!ctx || ctx.closed) {
      if (json.close_context === true) return;
      const open = [...l.contexts.values()].filter((c) => !c.closed).length;
      if (open >= MAX_CONTEXTS) {
        l.ws.send(
          JSON.stringify({ message: `Maximum simultaneous contexts per WebSocket connection exceeded (${MAX_CONTEXTS})`, error: "max_active_conversations" }),
        );
        l.ws.close(1008, "max_active_conversations");
        return;
      }
      ctx = { id, buffer: "", closed: false, chain: Promise.resolve() };
      l.contexts.set(id, ctx);
      l.info.contexts.push(id);
      if (json.text === " ") return; // initialization
    }
    if (json.close_context === true) {
      void this.closeContext(l, ctx);
      return;
    }
    const text = typeof json.text === "string" ? json.text : "";
    if (text === "") return; // keepalive
    ctx.buffer += text;
    if (json.flush === true) {
      const t = ctx.buffer;
      ctx.buffer = "";
      this.enqueue(l, ctx, t);
    }
  }

  private closeContext(l: Live, ctx: MockContext): Promise<void> {
    if (ctx.closed) return ctx.chain;
    // "If it has already been set to flush it will continue flushing": what was flushed still plays out, then isFinal.
    if (ctx.buffer.trim()) this.enqueue(l, ctx, ctx.buffer);
    ctx.buffer = "";
    ctx.closed = true;
    ctx.chain = ctx.chain.then(async () => {
      await nextTurn();
      if (this.stalled) return;
      this.send(l, { isFinal: true, contextId: ctx.id });
      l.contexts.delete(ctx.id);
    });
    return ctx.chain;
  }

  private enqueue(l: Live, ctx: MockContext, text: string): void {
    ctx.chain = ctx.chain.then(async () => {
      if (this.garbageNext) {
        this.garbageNext = false;
        this.sendGarbageFrames(l, ctx.id);
      }
      for (const chunk of this.chunks(text)) {
        await nextTurn();
        if (this.stalled || l.ws.readyState !== l.ws.OPEN) return;
        const al = { chars: chunk.chars, charStartTimesMs: chunk.starts, [this.o.durationsKey]: chunk.durs };
        const audio = Buffer.from(chunk.audio).toString("base64");
        this.record(ctx.id, chunk.audio);
        this.send(l, {
          audio,
          isFinal: null,
          normalizedAlignment: al,
          ...(this.o.omitAlignment ? {} : { alignment: al }),
          contextId: ctx.id,
        });
      }
    });
  }

  private sendGarbageFrames(l: Live, contextId: string): void {
    const ws = l.ws;
    ws.send("this is not json {");
    ws.send(Buffer.from([1, 2, 3, 4]), { binary: true });
    ws.send("[1,2,3]");
    ws.send("null");
    ws.send(JSON.stringify({ foo: "bar" }));
    ws.send(JSON.stringify({ audio: "AAAA", contextId: "no-such-context" }));
    ws.send(JSON.stringify({ audio: "!!! not base64 !!!", contextId }));
    ws.send(JSON.stringify({ audio: 12345, contextId }));
    ws.send(JSON.stringify({ contextId, alignment: "garbage" }));
    ws.send(JSON.stringify({ contextId, audio: null, alignment: { chars: 5 } }));
  }

  private send(l: Live, msg: object): void {
    if (l.ws.readyState === l.ws.OPEN) l.ws.send(JSON.stringify(msg));
  }

  private record(contextId: string, audio: Uint8Array): void {
    let list = this.audioByContext.get(contextId);
    if (!list) this.audioByContext.set(contextId, (list = []));
    list.push(audio);
  }

  // ---- HTTP ----

  private async onHttp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://x");
    const m = /^\/v1\/text-to-speech\/([^/]+)\/stream(\/with-timestamps)?$/.exec(url.pathname);
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    let body: Record<string, unknown> | null = null;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>;
    } catch {}
    const rec: MockHttpRequest = {
      at: performance.now(),
      path: url.pathname,
      voiceId: m ? decodeURIComponent(m[1]!) : "",
      withTimestamps: !!m?.[2],
      query: Object.fromEntries(url.searchParams),
      headers: req.headers,
      body,
      status: 200,
      audio: new Uint8Array(0),
    };
    this.httpRequests.push(rec);
    const reply = (status: number, json: unknown) => {
      rec.status = status;
      res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(json));
    };
    if (req.method !== "POST" || !m) return reply(404, { detail: "Not Found" });
    if (req.headers["xi-api-key"] !== this.o.apiKey) return reply(401, { detail: { status: "invalid_api_key", message: "Invalid API key" } });
    if (this.httpCode !== null && this.httpCode !== 200)
      return reply(this.httpCode, { detail: { status: "mock_status", message: `mock answered ${this.httpCode}` } });
    const text = typeof body?.text === "string" ? body.text : "";
    if (!text.trim()) return reply(422, { detail: [{ loc: ["body", "text"], msg: "text is required" }] });
    res.writeHead(200, { "content-type": rec.withTimestamps ? "application/json" : "audio/basic" });
    if (this.httpStalled) {
      res.flushHeaders();
      return; // never a body; the client gives up (or close() ends it)
    }
    const sent: Uint8Array[] = [];
    let posMs = 0;
    const all = this.chunks(text);
    for (const [n, chunk] of all.entries()) {
      await nextTurn();
      if (res.destroyed) break;
      sent.push(chunk.audio);
      if (!rec.withTimestamps) res.write(chunk.audio);
      else {
        const base = this.o.httpAlignment === "absolute" ? posMs : 0;
        const alignment = {
          characters: chunk.chars,
          character_start_times_seconds: chunk.starts.map((s) => (s + base) / 1000),
          character_end_times_seconds: chunk.starts.map((s, i) => (s + base + chunk.durs[i]!) / 1000),
        };
        const last = n === all.length - 1;
        res.write(
          JSON.stringify({ audio_base64: Buffer.from(chunk.audio).toString("base64"), alignment, normalized_alignment: alignment }) +
            (last && this.o.httpNoFinalNewline ? "" : "\n"),
        );
      }
      posMs += chunk.audio.length / 8;
    }
    rec.audio = Buffer.concat(sent);
    res.end();
  }

  // ---- fake speech ----

  /**
   * The text in chunks (of `wordsPerChunk` words, or of `bytesPerChunk` bytes cutting through words): audio plus the
   * alignment of the characters whose audio starts in the chunk, times relative to the chunk.
   */
  private chunks(text: string): { audio: Uint8Array; chars: string[]; starts: number[]; durs: number[] }[] {
    // Segments: a word with the whitespace after it (leading whitespace joins the first segment).
    const segs = text.match(/^\s*\S+\s*|\S+\s*/g) ?? [];
    const ms = this.o.msPerWord;
    const chars: string[] = [];
    const starts: number[] = [];
    const durs: number[] = [];
    segs.forEach((seg, k) => {
      const cs = [...seg];
      cs.forEach((c, j) => {
        const a = Math.round(k * ms + (j * ms) / cs.length);
        const b = Math.round(k * ms + ((j + 1) * ms) / cs.length);
        chars.push(c);
        starts.push(a);
        durs.push(b - a);
      });
    });
    const audio = Buffer.concat(segs.map((seg) => this.tone(seg.trim())));
    const step = this.o.bytesPerChunk ?? this.o.wordsPerChunk * ms * 8;
    const out: { audio: Uint8Array; chars: string[]; starts: number[]; durs: number[] }[] = [];
    for (let b0 = 0; b0 < audio.length; b0 += step) {
      const b1 = Math.min(audio.length, b0 + step);
      const t0 = b0 / 8;
      const t1 = b1 === audio.length ? Infinity : b1 / 8;
      const idx = starts.flatMap((t, i) => (t >= t0 && t < t1 ? [i] : []));
      out.push({
        audio: audio.subarray(b0, b1),
        chars: idx.map((i) => chars[i]!),
        starts: idx.map((i) => starts[i]! - t0),
        durs: idx.map((i) => durs[i]!),
      });
    }
    return out;
  }

  /** `msPerWord` ms of a tone whose pitch depends on the word. */
  private tone(word: string): Uint8Array {
    let h = 0;
    for (const c of word) h = (h * 31 + c.charCodeAt(0)) >>> 0;
    const hz = 200 + (h % 24) * 25;
    const n = this.o.msPerWord * 8;
    const pcm = new Int16Array(n);
    for (let i = 0; i < n; i++) pcm[i] = Math.round(6000 * Math.sin((2 * Math.PI * hz * i) / 8000));
    return encodeMulaw(pcm);
  }
}

function words(text: string): string[] {
  return text.split(/\s+/).filter(Boolean);
}

function refuse(socket: Socket, status: number, body: unknown): void {
  const json = JSON.stringify(body);
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Error"}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(json)}\r\nConnection: close\r\n\r\n${json}`,
  );
}
