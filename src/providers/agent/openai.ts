/**
 * An agent backed by any OpenAI-compatible Chat Completions endpoint (OpenAI, Ollama, vLLM, a gateway), streamed
 * (protocols.md §6). Text deltas are yielded the moment they arrive; the built-in tools `end_call` and `send_dtmf`
 * become AgentActions; user tools run and their results go back to the model for the rest of the reply.
 *
 * Failures throw an Error that starts "OpenAI-compatible agent:" and ends "(model M at URL)": HTTP errors name the
 * status and the server's message; no first token in time, or a turn over its total time, abort the request first.
 * A data line that is not JSON ends the turn with an error (the SDK cannot skip it), as does a stream that ends
 * without any finish_reason (a truncated reply). Text already yielded stays yielded. Aborting `input.signal` ends the
 * iteration quietly, at once, whatever is in flight (the request, tool handlers). A speculative turn (`input.confirm`)
 * streams its text but runs no user tool before the turn is confirmed.
 */
import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError } from "openai";
import type {
  ChatCompletionChunk,
  ChatCompletionCreateParamsStreaming,
  ChatCompletionFunctionTool,
  ChatCompletionMessageFunctionToolCall,
  ChatCompletionMessageParam,
} from "openai/resources/chat/completions";
import type { AgentAction, AgentProvider, AgentTurnInput } from "../types.ts";
import {
  BUILTIN_TOOL_DEFS,
  BUILTIN_TOOL_NAMES,
  isRecord,
  parseDtmfDigits,
  parseTransfer,
  validateTools,
  type AgentTool,
  type BuiltinToolName,
} from "./openai/tools.ts";
import { errorMessage } from "../../util/errors.ts";
import { AgentConnection } from "./openai/connection.ts";

export { loadToolsModule, validateTools, BUILTIN_TOOL_NAMES, type AgentTool, type AgentToolContext, type BuiltinToolName, type JsonSchema } from "./openai/tools.ts";

export const DEFAULT_OPENAI_SYSTEM_PROMPT = [
  "You are a helpful voice assistant on a phone call. Everything you write is read aloud to the caller by a speech synthesizer.",
  "Reply in one to three short, natural spoken sentences. No markdown, no lists, no bullet points, no emojis, no URLs; say numbers the way people say them.",
  "If you did not understand the caller, ask them briefly to repeat. Ask one question at a time.",
  "When the conversation is over, or the caller says goodbye, say a short goodbye and call the end_call tool.",
].join(" ");

/** Sent as the caller's message when nothing they said could be recognised (`userText` empty). */
export const DEFAULT_EMPTY_USER_TEXT = "(The caller said something, but it could not be made out.)";

export const OPENAI_AGENT_DEFAULTS = {
  model: "gpt-4o-mini",
  systemPrompt: DEFAULT_OPENAI_SYSTEM_PROMPT,
  maxTokens: 300,
  firstTokenTimeoutMs: 4000,
  totalTimeoutMs: 20_000,
  maxToolRounds: 3,
  keepAliveMs: 30_000,
  builtinTools: ["end_call", "send_dtmf", "transfer_call"] as BuiltinToolName[],
  emptyUserText: DEFAULT_EMPTY_USER_TEXT,
} as const;

export interface OpenAiAgentOptions {
  /** Required by OpenAI; any string for a local server that does not check it ("" is sent as "no-key"). */
  apiKey: string;
  /** An OpenAI-compatible endpoint, e.g. `http://127.0.0.1:11434/v1` (Ollama). Default: OpenAI's `https://api.openai.com/v1`. */
  baseURL?: string;
  /** Default "gpt-4o-mini". */
  model?: string;
  /** Default DEFAULT_OPENAI_SYSTEM_PROMPT (short spoken sentences, no markdown, goodbye + end_call at the end). */
  systemPrompt?: string;
  /** Omitted from the request when unset (some models accept only their default). */
  temperature?: number;
  /** Reply length bound. Default 300. */
  maxTokens?: number;
  /**
   * How `maxTokens` is sent: `max_completion_tokens` (what OpenAI wants, and the only one its reasoning models take) or
   * `max_tokens` (what older OpenAI-compatible servers know). Default: `max_completion_tokens` without `baseURL`,
   * `max_tokens` with one.
   */
  maxTokensParam?: "max_tokens" | "max_completion_tokens";
  /** From sending each request to its first text or tool-call token. Default 4000. */
  firstTokenTimeoutMs?: number;
  /** The whole turn: every request, tool handlers included. Default 20000. */
  totalTimeoutMs?: number;
  /** User tools the model may call. */
  tools?: AgentTool[];
  /** The built-in call-control tools offered to the model. Default both; `[]` for models that cannot call tools. */
  builtinTools?: BuiltinToolName[];
  /** How many times tool results may be sent back to the model in one turn. Default 3. */
  maxToolRounds?: number;
  /** The user message sent when `userText` is empty. Default DEFAULT_EMPTY_USER_TEXT. */
  emptyUserText?: string;
  /** How long an idle connection to the endpoint is kept for the next request (less if the server says so). Default 30000. */
  keepAliveMs?: number;
}

interface ToolCallAcc {
  id: string;
  name: string;
  args: string;
}

interface RoundResult {
  text: string;
  calls: ToolCallAcc[];
}

type StopReason = "caller" | "first-token" | "total";

/** Longest tool result sent back to the model, in characters. */
const MAX_TOOL_RESULT_CHARS = 16_000;

export class OpenAiAgent implements AgentProvider {
  readonly name = "openai";
  readonly model: string;
  readonly baseURL: string;
  private readonly client: OpenAI;
  private readonly opts: Required<Omit<OpenAiAgentOptions, "baseURL" | "temperature" | "tools">> & { temperature?: number };
  private readonly userTools: Map<string, AgentTool>;
  private readonly toolDefs: ChatCompletionFunctionTool[];
  private readonly connection: AgentConnection;

  constructor(options: OpenAiAgentOptions) {
    const d = OPENAI_AGENT_DEFAULTS;
    this.opts = {
      apiKey: options.apiKey || "no-key",
      model: options.model ?? d.model,
      systemPrompt: options.systemPrompt ?? d.systemPrompt,
      maxTokens: options.maxTokens ?? d.maxTokens,
      maxTokensParam: options.maxTokensParam ?? (options.baseURL ? "max_tokens" : "max_completion_tokens"),
      firstTokenTimeoutMs: options.firstTokenTimeoutMs ?? d.firstTokenTimeoutMs,
      totalTimeoutMs: options.totalTimeoutMs ?? d.totalTimeoutMs,
      builtinTools: options.builtinTools ?? [...d.builtinTools],
      maxToolRounds: options.maxToolRounds ?? d.maxToolRounds,
      emptyUserText: options.emptyUserText ?? d.emptyUserText,
      keepAliveMs: options.keepAliveMs ?? d.keepAliveMs,
      ...(options.temperature !== undefined ? { temperature: options.temperature } : {}),
    };
    for (const k of ["firstTokenTimeoutMs", "totalTimeoutMs", "maxTokens", "keepAliveMs"] as const) {
      if (!Number.isFinite(this.opts[k]) || this.opts[k] <= 0) throw new Error(`OpenAI-compatible agent: ${k} must be a positive number`);
    }
    for (const b of this.opts.builtinTools) {
      if (!BUILTIN_TOOL_NAMES.includes(b)) throw new Error(`OpenAI-compatible agent: unknown built-in tool "${b}" (known: ${BUILTIN_TOOL_NAMES.join(", ")})`);
    }
    const tools = validateTools(options.tools ?? [], "OpenAI-compatible agent");
    this.userTools = new Map(tools.map((t) => [t.name, t]));
    this.toolDefs = [
      ...this.opts.builtinTools.map((b) => ({ type: "function" as const, function: BUILTIN_TOOL_DEFS[b] })),
      ...tools.map((t) => ({ type: "function" as const, function: { name: t.name, description: t.description, parameters: t.parameters } })),
    ];
    this.connection = new AgentConnection({
      baseURL: options.baseURL ?? "https://api.openai.com/v1",
      apiKey: this.opts.apiKey,
      keepAliveMs: this.opts.keepAliveMs,
      timeoutMs: this.opts.firstTokenTimeoutMs,
    });
    this.client = new OpenAI({
      apiKey: this.opts.apiKey,
      baseURL: options.baseURL ?? null,
      // Through a keep-alive pool that warm() can open ahead of the first turn.
      fetch: this.connection.fetch,
      maxRetries: 0,
      // Only bounds the wait for response headers; the turn's own timers (shorter) bound everything.
      timeout: this.opts.totalTimeoutMs + 1000,
      // The SDK logs unparsable stream lines to the console; the error we throw says it instead. OPENAI_LOG still works.
      ...(process.env["OPENAI_LOG"] ? {} : { logLevel: "off" as const }),
    });
    this.model = this.opts.model;
    this.baseURL = this.client.baseURL;
  }

  /** The user tools a session may name. */
  get toolNames(): string[] {
    return [...this.userTools.keys()];
  }

  /**
   * Opens the connection the next turn will use (a call is ringing or starting): `GET <baseURL>/models` on the pool
   * the chat requests go through. Resolves when done; never rejects.
   */
  warm(): Promise<void> {
    return this.connection.warm();
  }

  /** Closes the pooled connections. */
  close(): Promise<void> {
    return this.connection.close();
  }

  async *respond(input: AgentTurnInput): AsyncIterable<string | AgentAction> {
    if (input.signal.aborted) return;
    const turn = new Turn(input.signal, this.opts.firstTokenTimeoutMs, this.opts.totalTimeoutMs);
    try {
      const messages = this.buildMessages(input);
      const toolDefs = this.toolDefsFor(input.tools);
      let lastChar = "";
      let endedCall = false;
      for (let round = 0; ; round++) {
        const result: RoundResult | null = yield* this.streamRound(messages, turn, lastChar, toolDefs);
        if (!result) return; // the caller aborted
        if (result.text) lastChar = result.text.at(-1) ?? lastChar;
        if (!result.calls.length) return;

        const results = new Map<string, string>();
        const userCalls: ToolCallAcc[] = [];
        let followUp = false;
        for (const call of result.calls) {
          const builtin = this.opts.builtinTools.includes(call.name as BuiltinToolName) ? (call.name as BuiltinToolName) : null;
          if (builtin === "end_call") {
            const args = parseArgs(call.args);
            const reason = isRecord(args.value) && typeof args.value["reason"] === "string" && args.value["reason"].trim() ? args.value["reason"].trim() : undefined;
            if (!endedCall) yield reason ? { type: "end_call", reason } : { type: "end_call" };
            endedCall = true;
            results.set(call.id, "The call will end once your reply has been heard.");
          } else if (builtin === "send_dtmf") {
            const digits = parseDtmfDigits(parseArgs(call.args).value);
            if (digits) {
              yield { type: "send_dtmf", digits };
              results.set(call.id, `Pressed ${digits.split("").join(" ")}.`);
            } else {
              followUp = true;
              results.set(call.id, `Error: digits must be 1 to 64 of the keys 0-9, * and #; got ${call.args.slice(0, 100) || "nothing"}. Nothing was pressed.`);
            }
          } else if (builtin === "transfer_call") {
            const t = parseTransfer(parseArgs(call.args).value);
            if ("error" in t) {
              // A bad number is passed on all the same, so the refusal is on the call's record (transfer.error); nobody is called.
              if (t.to !== undefined) yield { type: "transfer_call", to: t.to };
              followUp = true;
              results.set(call.id, `Error: ${t.error}`);
            } else {
              yield { type: "transfer_call", ...t };
              results.set(call.id, "The transfer has started: the caller hears that they are being connected. If nobody answers, they are told and stay with you.");
            }
          } else if (this.userTools.has(call.name) && (!input.tools || input.tools.includes(call.name))) {
            userCalls.push(call);
            followUp = true;
          } else {
            followUp = true;
            results.set(call.id, `Error: there is no tool named "${call.name}".`);
          }
        }
        if (!followUp || turn.reason() === "caller") return;
        if (round >= this.opts.maxToolRounds) {
          throw new Error(`OpenAI-compatible agent: the model still calls tools after ${this.opts.maxToolRounds} rounds (model ${this.model} at ${this.baseURL})`);
        }
        // A speculative turn stops here, holding what it said, until the caller's turn is confirmed: a guess that is
        // discarded must not have booked or charged anything. Once confirmed, this same turn runs the tools.
        if (userCalls.length && input.confirm) {
          const confirmed = await turn.race(input.confirm().catch(() => false));
          if (!confirmed || turn.reason() === "caller") return;
          if (turn.reason()) throw turn.timeoutError(this.model, this.baseURL);
        }

        const outputs = await turn.race(Promise.all(userCalls.map((c) => this.runTool(c, turn.signal))));
        if (turn.reason() === "caller") return;
        if (turn.reason()) throw turn.timeoutError(this.model, this.baseURL);
        userCalls.forEach((c, i) => results.set(c.id, outputs![i]!));

        messages.push({
          role: "assistant",
          content: result.text || null,
          tool_calls: result.calls.map((c): ChatCompletionMessageFunctionToolCall => ({ id: c.id, type: "function", function: { name: c.name, arguments: c.args || "{}" } })),
        });
        for (const c of result.calls) messages.push({ role: "tool", tool_call_id: c.id, content: results.get(c.id) ?? "OK" });
      }
    } finally {
      turn.dispose();
    }
  }

  /** System prompt, the history (empty messages dropped), then the caller's words. */
  buildMessages({ history, userText, instructions }: Pick<AgentTurnInput, "history" | "userText" | "instructions">): ChatCompletionMessageParam[] {
    const messages: ChatCompletionMessageParam[] = [];
    // The standing prompt keeps replies speakable; the call's brief says what this call is for.
    const system = [this.opts.systemPrompt, instructions?.trim() ? `This call's brief:\n${instructions.trim()}` : ""].filter(Boolean).join("\n\n");
    if (system) messages.push({ role: "system", content: system });
    for (const m of history) if (m.content.trim()) messages.push({ role: m.role, content: m.content });
    messages.push({ role: "user", content: userText.trim() || this.opts.emptyUserText });
    return messages;
  }

  /** One streamed request: yields text as it comes, returns the text and the tool calls, or null if the caller aborted. */
  /** The built-in tools, and the user tools this call may use. */
  private toolDefsFor(allowed: string[] | undefined): ChatCompletionFunctionTool[] {
    if (!allowed) return this.toolDefs;
    return this.toolDefs.filter((d) => !this.userTools.has(d.function.name) || allowed.includes(d.function.name));
  }

  private async *streamRound(messages: ChatCompletionMessageParam[], turn: Turn, lastChar: string, toolDefs: ChatCompletionFunctionTool[]): AsyncGenerator<string, RoundResult | null> {
    const params: ChatCompletionCreateParamsStreaming = {
      model: this.model,
      messages,
      stream: true,
      [this.opts.maxTokensParam]: this.opts.maxTokens,
      ...(this.opts.temperature !== undefined ? { temperature: this.opts.temperature } : {}),
      ...(toolDefs.length ? { tools: toolDefs } : {}),
    };
    turn.armFirstToken();
    let text = "";
    const calls = new Map<number, ToolCallAcc>();
    let finish: string | null = null;
    try {
      const stream = await this.client.chat.completions.create(params, { signal: turn.signal });
      for await (const chunk of stream as AsyncIterable<ChatCompletionChunk | null>) {
        const choice = Array.isArray(chunk?.choices) ? chunk.choices[0] : undefined;
        if (!choice) continue;
        const delta = choice.delta ?? {};
        let piece = (typeof delta.content === "string" ? delta.content : "") + (typeof delta.refusal === "string" ? delta.refusal : "");
        if (piece) {
          turn.firstToken();
          // Replies of successive rounds follow one another: keep a space between them.
          if (!text && lastChar && !/\s/.test(lastChar) && !/^\s/.test(piece)) piece = ` ${piece}`;
          text += piece;
          yield piece;
        }
        if (Array.isArray(delta.tool_calls) && delta.tool_calls.length) {
          turn.firstToken();
          delta.tool_calls.forEach((tc, i) => {
            const index = typeof tc.index === "number" ? tc.index : i;
            let acc = calls.get(index);
            if (!acc) calls.set(index, (acc = { id: "", name: "", args: "" }));
            if (tc.id && !acc.id) acc.id = tc.id;
            if (tc.function?.name && !acc.name) acc.name = tc.function.name;
            const a: unknown = tc.function?.arguments;
            if (typeof a === "string") acc.args += a;
            else if (isRecord(a)) acc.args = JSON.stringify(a);
          });
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      }
    } catch (err) {
      if (turn.reason() === "caller") return null;
      if (turn.reason()) throw turn.timeoutError(this.model, this.baseURL);
      throw this.describeError(err);
    }
    // The SDK ends the iteration quietly when the request is aborted: find out why.
    if (turn.reason() === "caller") return null;
    if (turn.reason()) throw turn.timeoutError(this.model, this.baseURL);
    if (!finish && !calls.size) {
      throw new Error(`OpenAI-compatible agent: the stream ended before the reply was complete, with no finish_reason (model ${this.model} at ${this.baseURL})`);
    }
    const list = [...calls.entries()]
      .sort(([a], [b]) => a - b)
      .map(([index, c]) => ({ ...c, id: c.id || `call_${index}_${Date.now().toString(36)}` }))
      .filter((c) => c.name);
    return { text, calls: list };
  }

  /** Runs a user tool; never rejects: a failure becomes the result the model sees. */
  private async runTool(call: ToolCallAcc, signal: AbortSignal): Promise<string> {
    const tool = this.userTools.get(call.name)!;
    const args = parseArgs(call.args);
    if (args.error) return `Error: the arguments were not valid JSON (${args.error}); the tool was not run.`;
    try {
      const out: unknown = await tool.handler(args.value, { signal });
      const s = typeof out === "string" ? out : out === undefined ? "OK" : JSON.stringify(out);
      return s.length > MAX_TOOL_RESULT_CHARS ? `${s.slice(0, MAX_TOOL_RESULT_CHARS)}… (truncated)` : s;
    } catch (err) {
      return `Error: the tool "${call.name}" failed: ${errorMessage(err)}`;
    }
  }

  private describeError(err: unknown): Error {
    const where = `model ${this.model} at ${this.baseURL}`;
    let msg: string;
    if (err instanceof APIConnectionTimeoutError) {
      msg = "the request timed out";
    } else if (err instanceof APIConnectionError) {
      msg = `cannot connect: ${causeChain(err.cause) || err.message}`;
    } else if (err instanceof APIError) {
      const inner: unknown = err.error;
      const serverMsg = isRecord(inner) && typeof inner["message"] === "string" ? inner["message"] : err.message.replace(/^\d{3}\s+/, "");
      msg = err.status ? `HTTP ${err.status}: ${clip(serverMsg)}` : `error during the stream: ${clip(serverMsg)}`;
    } else if (err instanceof SyntaxError) {
      msg = `malformed stream, a data line is not JSON: ${clip(err.message)}`;
    } else {
      msg = `the stream broke off: ${causeChain(err) || "unknown error"}`;
    }
    return new Error(`OpenAI-compatible agent: ${msg} (${where})`, { cause: err });
  }
}

/**
 * One turn's cancellation: the caller's signal, the first-token timer (re-armed for each request) and the total
 * timer all abort one controller, whose signal goes to the SDK and to tool handlers. `reason()` says which fired.
 */
class Turn {
  private readonly ac = new AbortController();
  private stopped: StopReason | null = null;
  private firstTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly totalTimer: ReturnType<typeof setTimeout>;
  private readonly onCallerAbort = () => this.stop("caller");

  constructor(
    private readonly caller: AbortSignal,
    private readonly firstTokenMs: number,
    private readonly totalMs: number,
  ) {
    caller.addEventListener("abort", this.onCallerAbort, { once: true });
    this.totalTimer = setTimeout(() => this.stop("total"), totalMs);
  }

  /** Why the turn stopped early (a method: TypeScript would keep a property's narrowing across awaits). */
  reason(): StopReason | null {
    return this.stopped;
  }

  get signal(): AbortSignal {
    return this.ac.signal;
  }

  armFirstToken(): void {
    clearTimeout(this.firstTimer);
    if (!this.stopped) this.firstTimer = setTimeout(() => this.stop("first-token"), this.firstTokenMs);
  }

  firstToken(): void {
    clearTimeout(this.firstTimer);
    this.firstTimer = undefined;
  }

  /** Settles with the promise, or with undefined as soon as the turn stops. The promise must not reject. */
  race<T>(p: Promise<T>): Promise<T | undefined> {
    if (this.stopped) return Promise.resolve(undefined);
    return new Promise<T | undefined>((resolve) => {
      const onStop = () => resolve(undefined);
      this.ac.signal.addEventListener("abort", onStop, { once: true });
      void p.then((v) => {
        this.ac.signal.removeEventListener("abort", onStop);
        resolve(v);
      });
    });
  }

  timeoutError(model: string, baseURL: string): Error {
    const where = `(model ${model} at ${baseURL})`;
    return this.stopped === "first-token"
      ? new Error(`OpenAI-compatible agent: no response within ${this.firstTokenMs} ms ${where}`)
      : new Error(`OpenAI-compatible agent: reply not finished within ${this.totalMs} ms ${where}`);
  }

  private stop(reason: StopReason): void {
    if (this.stopped) return;
    this.stopped = reason;
    clearTimeout(this.firstTimer);
    clearTimeout(this.totalTimer);
    this.ac.abort();
  }

  dispose(): void {
    clearTimeout(this.firstTimer);
    clearTimeout(this.totalTimer);
    this.caller.removeEventListener("abort", this.onCallerAbort);
    // Ends whatever is still in flight (the consumer stopped early): the request, tool handlers.
    if (!this.ac.signal.aborted) this.ac.abort();
  }
}

function parseArgs(raw: string): { value: unknown; error?: string } {
  if (!raw.trim()) return { value: {} };
  try {
    return { value: JSON.parse(raw) as unknown };
  } catch (err) {
    return { value: undefined, error: errorMessage(err) };
  }
}

/** "terminated: other side closed", "fetch failed: connect ECONNREFUSED 127.0.0.1:9": the messages down the cause chain. */
function causeChain(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err, depth = 0; e && depth < 5; depth++) {
    if (e instanceof Error) {
      const code = (e as { code?: unknown }).code;
      const text = e.message || (typeof code === "string" ? code : "") || e.name;
      if (text && !parts.includes(text)) parts.push(text);
      if (!e.message && e instanceof AggregateError && e.errors[0]) {
        e = e.errors[0];
        continue;
      }
      e = e.cause;
    } else {
      parts.push(String(e));
      break;
    }
  }
  return parts.join(": ");
}

function clip(s: string, n = 300): string {
  return s.length > n ? `${s.slice(0, n)}…` : s;
}
