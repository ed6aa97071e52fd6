/**
 * A local OpenAI-compatible Chat Completions server for tests (protocols.md §6): `POST /v1/chat/completions` with
 * `stream: true` answers with SSE `data: {chat.completion.chunk}` events and `data: [DONE]`, exactly as OpenAI does.
 * Each reply comes from a script the test sets with `reply()`; every request body is recorded. Fault switches cover
 * HTTP errors, stalls, dropped connections and garbage on the stream.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface MockToolCall {
  name: string;
  /** An object is sent JSON-encoded; a string is sent as it is (for invalid JSON). Default `{}`. */
  arguments?: unknown;
  /** Default `call_<n>`. */
  id?: string;
}

export interface MockReply {
  /** A string is streamed word by word (spaces kept); an array is streamed as exactly those deltas. */
  text?: string | string[];
  /** Streamed after the text as `tool_calls` deltas: id, type and name first, then the arguments in several pieces. */
  toolCalls?: MockToolCall[];
  /** Delay before each chunk after the first. Default 0. */
  tokenDelayMs?: number;
  /** Default "tool_calls" when there are tool calls, else "stop". `null`: the last chunk carries no finish_reason. */
  finishReason?: string | null;
  /** Append the usage chunk (`choices: []`) OpenAI sends with `stream_options.include_usage`. */
  usage?: boolean;

  /** Answer with this HTTP status and an OpenAI-style error body instead of a stream. */
  status?: number;
  /** The error body's fields (with `status`). */
  error?: { message?: string; type?: string; code?: string | null };
  /** Wait this long before sending the response headers. */
  stallBeforeHeadersMs?: number;
  /** Send the headers and the role chunk (content ""), then wait this long before the first content. */
  stallBeforeFirstTokenMs?: number;
  /** After `afterChunks` chunks (role chunk included), send nothing more until `until` settles. */
  hold?: { afterChunks: number; until: Promise<unknown> };
  /** After `afterChunks` chunks: `destroy` the socket (default) or `end` the response cleanly without [DONE]. */
  dropMidStream?: { afterChunks: number; mode?: "destroy" | "end" };
  /** After `afterChunks` chunks (default 1), send a data line that is not JSON, then carry on. */
  garbage?: boolean | { afterChunks?: number; line?: string };
  /** After `afterChunks` chunks, send `data: {"error": {...}}` (how OpenAI reports a failure mid-stream) and end. */
  streamError?: { afterChunks: number; message: string };
}

export interface RecordedMessage {
  role: string;
  content?: string | null;
  tool_calls?: Array<{ id: string; type: string; function: { name: string; arguments: string } }>;
  tool_call_id?: string;
}

export interface RecordedRequest {
  model: string;
  stream?: boolean;
  messages: RecordedMessage[];
  tools?: Array<{ type: string; function: { name: string; description?: string; parameters?: Record<string, unknown> } }>;
  [key: string]: unknown;
}

/** One HTTP request as it arrived (any method and path), for connection reuse checks and timing. */
export interface RequestArrival {
  /** Epoch ms, sub-millisecond (performance.timeOrigin + performance.now(), as Parley's clock). */
  at: number;
  method: string;
  path: string;
  /** Which TCP connection carried it (1-based, in accept order). */
  connection: number;
  /** The first request on its connection: the client had to open a connection for it. */
  firstOnConnection: boolean;
  /** Chat completions: the content of the last message (the caller's words), once the body is parsed. */
  lastMessage?: string;
}

export type ReplyScript = MockReply | ((req: RecordedRequest, index: number) => MockReply | Promise<MockReply>);

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted || ms <= 0) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });

/** Splits "Sure, the weather" into "Sure,", " the", " weather". */
export function wordDeltas(text: string): string[] {
  return text.match(/\s*\S+\s*$|\s*\S+/g) ?? (text ? [text] : []);
}

export class OpenAiMock {
  /** Every chat completion request body, in arrival order. */
  readonly requests: RecordedRequest[] = [];
  /** Streams the client closed before the mock finished them. */
  disconnects = 0;
  /** TCP connections accepted so far. */
  connections = 0;
  /** Every HTTP request (chat completions, `GET /models`, anything), in arrival order. */
  readonly arrivals: RequestArrival[] = [];
  private script: ReplyScript = { text: "Hello." };
  private disconnectWaiters: Array<() => void> = [];
  private seq = 0;

  private constructor(
    private readonly server: http.Server,
    readonly url: string,
    private readonly apiKey: string,
  ) {}

  /**
   * `keepAliveTimeoutMs`: how long an idle client connection is kept (and announced in `Keep-Alive: timeout=`). Node's
   * default is 5 s; providers' edges keep idle connections longer, which is what lets a call's connection live from
   * one turn to the next.
   */
  static async start(opts: { apiKey?: string; keepAliveTimeoutMs?: number } = {}): Promise<OpenAiMock> {
    const server = http.createServer();
    if (opts.keepAliveTimeoutMs !== undefined) server.keepAliveTimeout = opts.keepAliveTimeoutMs;
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    const mock = new OpenAiMock(server, `http://127.0.0.1:${port}/v1`, opts.apiKey ?? "sk-test");
    const connIds = new WeakMap<object, { id: number; requests: number }>();
    server.on("connection", (socket) => connIds.set(socket, { id: ++mock.connections, requests: 0 }));
    server.on("request", (req, res) => {
      const conn = connIds.get(req.socket) ?? { id: 0, requests: 0 };
      conn.requests++;
      const arrival: RequestArrival = {
        at: performance.timeOrigin + performance.now(),
        method: req.method ?? "",
        path: new URL(req.url ?? "/", "http://x").pathname,
        connection: conn.id,
        firstOnConnection: conn.requests === 1,
      };
      mock.arrivals.push(arrival);
      mock.handle(req, res, arrival).catch((err) => {
        if (!res.headersSent) res.writeHead(500, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { message: `mock failed: ${String(err)}`, type: "server_error" } }));
      });
    });
    return mock;
  }

  /** The reply to every following request (a function sees the request and its 0-based index). */
  reply(script: ReplyScript): this {
    this.script = script;
    return this;
  }

  /** Resolves once the client has closed `n` unfinished streams in total. */
  waitForDisconnects(n = 1): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if (this.disconnects >= n) {
          resolve();
          return true;
        }
        return false;
      };
      if (!check()) this.disconnectWaiters.push(() => void check());
    });
  }

  /** Closes the connections no request is using (as a server does after its keep-alive timeout: calls far apart). */
  dropIdleConnections(): void {
    this.server.closeIdleConnections();
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse, arrival: RequestArrival): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const url = new URL(req.url ?? "/", "http://x");
    if ((req.method === "GET" || req.method === "HEAD") && url.pathname === "/v1/models") {
      // OpenAI's list-models endpoint (authenticated): what a client may call to open its connection ahead of time.
      if (req.headers.authorization !== `Bearer ${this.apiKey}`) return sendError(res, 401, { message: "Incorrect API key provided.", type: "invalid_request_error", code: "invalid_api_key" });
      res.writeHead(200, { "content-type": "application/json" });
      res.end(req.method === "HEAD" ? undefined : JSON.stringify({ object: "list", data: [{ id: "gpt-4o-mini", object: "model", created: 1721172741, owned_by: "system" }] }));
      return;
    }
    if (req.method !== "POST" || url.pathname !== "/v1/chat/completions") {
      return sendError(res, 404, { message: `Unknown request URL: ${req.method} ${url.pathname}`, type: "invalid_request_error", code: "unknown_url" });
    }
    if (req.headers.authorization !== `Bearer ${this.apiKey}`) {
      const given = (req.headers.authorization ?? "").replace(/^Bearer\s*/i, "");
      return sendError(res, 401, {
        message: `Incorrect API key provided: ${given.slice(0, 3)}***. You can find your API key at https://platform.openai.com/account/api-keys.`,
        type: "invalid_request_error",
        code: "invalid_api_key",
      });
    }
    let body: RecordedRequest;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as RecordedRequest;
    } catch {
      return sendError(res, 400, { message: "We could not parse the JSON body of your request.", type: "invalid_request_error", code: null });
    }
    const index = this.requests.length;
    this.requests.push(body);
    const last = Array.isArray(body.messages) ? body.messages.at(-1)?.content : undefined;
    if (typeof last === "string") arrival.lastMessage = last;
    const r = typeof this.script === "function" ? await this.script(body, index) : this.script;

    const closed = new AbortController();
    let finished = false;
    res.on("close", () => {
      closed.abort();
      if (!finished) {
        this.disconnects++;
        for (const w of this.disconnectWaiters.splice(0)) w();
      }
    });

    if (r.stallBeforeHeadersMs) await sleep(r.stallBeforeHeadersMs, closed.signal);
    if (closed.signal.aborted) return;
    if (r.status && r.status >= 400) {
      finished = true;
      return sendError(res, r.status, {
        message: r.error?.message ?? defaultErrorMessage(r.status),
        type: r.error?.type ?? (r.status === 429 ? "requests" : r.status >= 500 ? "server_error" : "invalid_request_error"),
        code: r.error?.code ?? null,
      });
    }
    if (body.stream !== true) {
      finished = true;
      return sendError(res, 400, { message: "This mock only streams: set stream to true.", type: "invalid_request_error", code: null });
    }

    res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", connection: "keep-alive" });
    const id = `chatcmpl-${++this.seq}`;
    const created = Math.floor(Date.now() / 1000);
    const model = body.model;
    const chunk = (delta: Record<string, unknown>, finish: string | null = null) => ({
      id,
      object: "chat.completion.chunk",
      created,
      model,
      system_fingerprint: "fp_mock",
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    });

    // The whole reply as chunks, then the stream is written with the faults applied.
    const events: object[] = [];
    const texts = typeof r.text === "string" ? wordDeltas(r.text) : (r.text ?? []);
    const calls = r.toolCalls ?? [];
    if (texts.length || !calls.length) events.push(chunk({ role: "assistant", content: "", refusal: null }));
    for (const t of texts) events.push(chunk({ content: t }));
    calls.forEach((call, i) => {
      const callId = call.id ?? `call_${this.seq}_${i}`;
      const args = call.arguments === undefined ? "{}" : typeof call.arguments === "string" ? call.arguments : JSON.stringify(call.arguments);
      const first = { index: i, id: callId, type: "function", function: { name: call.name, arguments: "" } };
      events.push(chunk(i === 0 && !texts.length ? { role: "assistant", content: null, tool_calls: [first] } : { tool_calls: [first] }));
      const n = Math.max(1, Math.min(3, args.length));
      const size = Math.ceil(args.length / n);
      for (let p = 0; p < args.length; p += size) events.push(chunk({ tool_calls: [{ index: i, function: { arguments: args.slice(p, p + size) } }] }));
    });
    const finish = r.finishReason === undefined ? (calls.length ? "tool_calls" : "stop") : r.finishReason;
    events.push(chunk({}, finish));
    if (r.usage) {
      events.push({ id, object: "chat.completion.chunk", created, model, choices: [], usage: { prompt_tokens: 20, completion_tokens: texts.length, total_tokens: 20 + texts.length } });
    }

    let flushed: Promise<void> = Promise.resolve();
    const write = (line: string) => {
      if (!closed.signal.aborted) flushed = new Promise((resolve) => res.write(`${line}\n\n`, () => resolve()));
    };
    const garbageAt = r.garbage ? (r.garbage === true ? 1 : (r.garbage.afterChunks ?? 1)) : -1;
    for (let i = 0; i <= events.length; i++) {
      if (closed.signal.aborted) return;
      if (r.hold && i === r.hold.afterChunks) {
        await Promise.race([r.hold.until.catch(() => {}), new Promise((resolve) => closed.signal.addEventListener("abort", resolve, { once: true }))]);
        if (closed.signal.aborted) return;
      }
      if (r.dropMidStream && i === r.dropMidStream.afterChunks) {
        finished = true;
        if (r.dropMidStream.mode === "end") return void res.end();
        // What was written reaches the client first; then the connection dies without the end of the response.
        await flushed;
        res.socket?.destroy();
        return;
      }
      if (r.streamError && i === r.streamError.afterChunks) {
        write(`data: ${JSON.stringify({ error: { message: r.streamError.message, type: "server_error", param: null, code: null } })}`);
        finished = true;
        res.end();
        return;
      }
      if (i === garbageAt) write(`data: ${typeof r.garbage === "object" && r.garbage.line ? r.garbage.line : "<html>502 Bad Gateway</html>"}`);
      if (i === events.length) break;
      if (i === 1 && r.stallBeforeFirstTokenMs) await sleep(r.stallBeforeFirstTokenMs, closed.signal);
      else if (i > 0 && r.tokenDelayMs) await sleep(r.tokenDelayMs, closed.signal);
      if (closed.signal.aborted) return;
      write(`data: ${JSON.stringify(events[i])}`);
    }
    write("data: [DONE]");
    finished = true;
    res.end();
  }
}

function defaultErrorMessage(status: number): string {
  if (status === 401) return "Incorrect API key provided.";
  if (status === 429) return "Rate limit reached for gpt-4o-mini in organization org-mock on requests per min (RPM): Limit 3, Used 3, Requested 1.";
  if (status >= 500) return "The server had an error while processing your request. Sorry about that!";
  return `Mock error ${status}.`;
}

function sendError(res: http.ServerResponse, status: number, error: { message: string; type: string; code: string | null }): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify({ error: { ...error, param: null } }));
}
