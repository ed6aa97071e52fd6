/**
 * A small client for Parley's control API: JSON requests and the Server-Sent Events stream of a call. Failures become
 * two error types the CLI turns into its documented messages, so no command has to inspect fetch's errors itself.
 */

/** The API answered with an error status (its body is `{ error }` when it is ours). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Nothing answered at the base URL (refused, unknown host, reset before a response). */
export class UnreachableError extends Error {
  constructor(readonly url: string, options?: { cause?: unknown }) {
    super(`cannot reach Parley at ${url}`, options);
  }
}

export interface SseEvent {
  event: string;
  data: string;
}

export class ApiClient {
  private readonly base: string;

  constructor(
    baseUrl: string,
    private readonly token?: string,
  ) {
    // Join by string, not `new URL(path, base)`, so a base behind a path prefix (https://host/parley) keeps its prefix.
    this.base = baseUrl.replace(/\/+$/, "");
  }

  get url(): string {
    return this.base;
  }

  /** Send a request; resolves with the parsed JSON body (or null for an empty one), throws ApiError on 4xx/5xx. */
  async request<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.send(path, { method, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    if (!res.ok) throw new ApiError(res.status, errorMessage(text, res.statusText));
    if (!text) return null as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new ApiError(res.status, `unexpected response (not JSON): ${text.slice(0, 120)}`);
    }
  }

  /** The events of an SSE stream, in order, until the server closes it or `signal` aborts. */
  async *events(path: string, signal?: AbortSignal): AsyncGenerator<SseEvent> {
    const res = await this.send(path, { method: "GET", headers: { accept: "text/event-stream" }, signal });
    if (!res.ok) throw new ApiError(res.status, errorMessage(await res.text(), res.statusText));
    if (!res.body) return;
    const parser = new SseParser();
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body) {
        // stream: true keeps a multi-byte character split across chunks intact.
        yield* parser.push(decoder.decode(chunk as Uint8Array, { stream: true }));
      }
    } catch (err) {
      if (signal?.aborted) return;
      throw new UnreachableError(this.base, { cause: err });
    }
    yield* parser.push(decoder.decode() + "\n\n"); // a last event without its blank line still counts
  }

  private async send(path: string, init: RequestInit): Promise<Response> {
    const headers = new Headers(init.headers);
    if (init.body !== undefined) headers.set("content-type", "application/json");
    if (this.token) headers.set("authorization", `Bearer ${this.token}`);
    try {
      return await fetch(this.base + path, { ...init, headers });
    } catch (err) {
      if (init.signal?.aborted) throw err;
      throw new UnreachableError(this.base, { cause: err });
    }
  }
}

/** The API's `{ error }` message when the body is ours, else whatever the body or status line says. */
function errorMessage(text: string, statusText: string): string {
  try {
    const parsed = JSON.parse(text) as { error?: unknown; message?: unknown };
    if (typeof parsed.error === "string") return parsed.error;
    if (typeof parsed.message === "string") return parsed.message;
  } catch {
    // not JSON: fall through
  }
  return text.trim().split("\n")[0]?.slice(0, 200) || statusText || "request failed";
}

/**
 * Incremental SSE parser (the WHATWG event-stream rules the CLI needs): chunks may split anywhere, lines end in
 * LF, CRLF or CR, `data:` lines join with LF, `:` lines are comments, a blank line dispatches.
 */
export class SseParser {
  private buf = "";
  private event = "";
  private data: string[] = [];

  *push(text: string): Generator<SseEvent> {
    this.buf += text;
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buf);
      // A CR at the very end may be the first half of a CRLF split across chunks: wait for the next chunk.
      if (!m || (m[0] === "\r" && m.index === this.buf.length - 1)) return;
      const line = this.buf.slice(0, m.index);
      this.buf = this.buf.slice(m.index + m[0].length);
      const ev = this.line(line);
      if (ev) yield ev;
    }
  }

  private line(line: string): SseEvent | undefined {
    if (line === "") {
      // Unlike a browser, keep a named event with no data: the API's closing `event: end` may carry none.
      if (this.data.length === 0 && !this.event) return undefined;
      const ev = { event: this.event || "message", data: this.data.join("\n") };
      this.event = "";
      this.data = [];
      return ev;
    }
    if (line.startsWith(":")) return undefined;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.event = value;
    else if (field === "data") this.data.push(value);
    return undefined;
  }
}
