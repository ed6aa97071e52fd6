/**
 * ParleyApi over the control API's HTTP interface. The carrier is a fetch function: the global fetch for the stdio
 * server (Parley runs elsewhere), or `injectFetch` for the `/mcp` route (Parley is this process). Either way every
 * request goes through the API's own routes: its validation, its bearer check, its rate limit and its error messages.
 */
import { SseParser } from "../cli/api-client.ts";
import {
  ParleyApiError,
  ParleyUnreachableError,
  type AskResult,
  type CallEvent,
  type CallListItem,
  type CallView,
  type ListCallsQuery,
  type ParleyApi,
  type PlaceCallRequest,
  type TransferCallRequest,
} from "./api.ts";

export type FetchLike = (url: string, init: RequestInit) => Promise<Response>;

export interface HttpParleyApiOptions {
  /** Parley's base URL, e.g. http://127.0.0.1:3334 (a path prefix is kept). */
  url: string;
  /** API_TOKEN, sent as a bearer token. */
  token?: string;
  fetch?: FetchLike;
}

export class HttpParleyApi implements ParleyApi {
  private readonly base: string;
  private readonly fetch: FetchLike;

  constructor(private readonly opts: HttpParleyApiOptions) {
    // Joined by string, not `new URL(path, base)`, so a base behind a path prefix keeps it.
    this.base = opts.url.replace(/\/+$/, "");
    this.fetch = opts.fetch ?? ((url, init) => fetch(url, init));
  }

  placeCall(req: PlaceCallRequest): Promise<CallView> {
    return this.json("POST", "/api/calls", req);
  }

  getCall(callSid: string): Promise<CallView> {
    return this.json("GET", `/api/calls/${encodeURIComponent(callSid)}`);
  }

  async listCalls(query: ListCallsQuery): Promise<CallListItem[]> {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined) qs.set(k, String(v));
    const q = qs.toString();
    return (await this.json<{ calls: CallListItem[] }>("GET", `/api/calls${q ? `?${q}` : ""}`)).calls;
  }

  ask(callSid: string, req: { text: string; timeoutMs?: number }): Promise<AskResult> {
    return this.json("POST", `${this.callPath(callSid)}/ask`, req);
  }

  async speak(callSid: string, req: { text: string; interrupt?: boolean }): Promise<void> {
    await this.json("POST", `${this.callPath(callSid)}/speak`, req);
  }

  async dtmf(callSid: string, digits: string): Promise<void> {
    await this.json("POST", `${this.callPath(callSid)}/dtmf`, { digits });
  }

  async transfer(callSid: string, req: TransferCallRequest): Promise<{ mode: string; to: string }> {
    return this.json("POST", `${this.callPath(callSid)}/transfer`, req);
  }

  async hangup(callSid: string, message?: string): Promise<void> {
    await this.json("POST", `${this.callPath(callSid)}/hangup`, message === undefined ? {} : { message });
  }

  async *events(callSid: string, signal: AbortSignal): AsyncGenerator<CallEvent> {
    const res = await this.send(`${this.callPath(callSid)}/events`, { method: "GET", headers: { accept: "text/event-stream" }, signal });
    if (!res.ok) throw new ParleyApiError(res.status, errorText(await res.text(), res.status));
    if (!res.body) return;
    const parser = new SseParser();
    const decoder = new TextDecoder();
    const parsed = (e: { event: string; data: string }): CallEvent => ({ event: e.event, data: parseJson(e.data) });
    try {
      for await (const chunk of res.body) for (const e of parser.push(decoder.decode(chunk as Uint8Array, { stream: true }))) yield parsed(e);
    } catch (err) {
      if (signal.aborted) return;
      throw new ParleyUnreachableError(this.base, { cause: err });
    }
    for (const e of parser.push(decoder.decode() + "\n\n")) yield parsed(e);
  }

  private callPath(callSid: string): string {
    return `/api/calls/${encodeURIComponent(callSid)}`;
  }

  private async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.send(path, { method, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    const text = await res.text();
    if (!res.ok) throw new ParleyApiError(res.status, errorText(text, res.status));
    if (!text) return null as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new ParleyApiError(res.status, `unexpected response from Parley (not JSON): ${text.slice(0, 120)}`);
    }
  }

  private async send(path: string, init: RequestInit): Promise<Response> {
    const headers = new Headers(init.headers);
    if (init.body !== undefined) headers.set("content-type", "application/json");
    if (this.opts.token) headers.set("authorization", `Bearer ${this.opts.token}`);
    try {
      return await this.fetch(this.base + path, { ...init, headers });
    } catch (err) {
      if (init.signal?.aborted) throw err;
      throw new ParleyUnreachableError(this.base, { cause: err });
    }
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** The API's own `{ error }` message when the body is ours; else the body's first line, or the status. */
function errorText(text: string, status: number): string {
  const parsed = parseJson(text) as { error?: unknown; message?: unknown } | string | null;
  if (parsed && typeof parsed === "object") {
    if (typeof parsed.error === "string") return parsed.error;
    if (typeof parsed.message === "string") return parsed.message;
  }
  return text.trim().split("\n")[0]?.slice(0, 200) || `HTTP ${status}`;
}
