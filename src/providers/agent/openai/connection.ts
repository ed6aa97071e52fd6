/**
 * The agent's HTTP connection pool. The `openai` SDK fetches through its own keep-alive dispatcher, so a connection
 * opened ahead of time (by `warm()`, while the phone rings) is the one the turn's chat request reuses: the first turn
 * of a call does not pay for TCP and TLS set-up (100–300 ms over TLS to a real provider).
 *
 * Node's global fetch keeps an idle connection only 4 s, shorter than the gap between two turns of a call; this pool
 * keeps it `keepAliveMs` (or less, when the server says so in its `Keep-Alive` header).
 */
import { Agent, fetch as undiciFetch } from "undici";

export interface AgentConnectionOptions {
  baseURL: string;
  apiKey: string;
  /** How long an idle connection is kept (the server's Keep-Alive hint, when shorter, wins). */
  keepAliveMs: number;
  /** Bounds a warm-up request. */
  timeoutMs: number;
}

export class AgentConnection {
  readonly dispatcher: Agent;
  private warming: Promise<void> | null = null;

  constructor(private readonly o: AgentConnectionOptions) {
    this.dispatcher = new Agent({ keepAliveTimeout: o.keepAliveMs, keepAliveMaxTimeout: o.keepAliveMs });
  }

  /** A fetch for the SDK: the global fetch API, on this pool. */
  readonly fetch = ((url: string | URL | Request, init?: RequestInit) =>
    (undiciFetch as unknown as typeof fetch)(url, { ...init, dispatcher: this.dispatcher } as RequestInit)) as typeof fetch;

  /**
   * Opens a pooled connection to the endpoint now, with a cheap authenticated request (`GET <baseURL>/models`, the
   * OpenAI list-models endpoint; any answer, even an error status, leaves the connection open). One request per call:
   * whether an idle pooled connection is still open at the server cannot be known without using it. Never rejects:
   * a failure only means the first turn connects as it would have anyway.
   */
  warm(): Promise<void> {
    if (this.warming) return this.warming;
    const url = `${this.o.baseURL.replace(/\/+$/, "")}/models`;
    this.warming = this.fetch(url, { method: "GET", headers: { authorization: `Bearer ${this.o.apiKey}` }, signal: AbortSignal.timeout(this.o.timeoutMs) })
      .then((res) => res.arrayBuffer())
      // The socket goes back to the pool just after the body ends: resolve once a request can reuse it.
      .then(() => new Promise((resolve) => setImmediate(resolve)))
      .then(
        () => undefined,
        () => undefined,
      )
      .finally(() => (this.warming = null));
    return this.warming;
  }

  close(): Promise<void> {
    return this.dispatcher.close();
  }
}
