import type { CallerTurn, Interruption, Responder, ResponderHost, ResponderItem } from "./responder.ts";

export type AskStatus = "answered" | "silence" | "ended" | "interrupted";
export interface AskResult {
  reply: string;
  status: AskStatus;
}

export class AskError extends Error {
  constructor(
    message: string,
    readonly status = 409,
  ) {
    super(message);
  }
}

export interface AssistantOptions {
  /** Said when the assistant has not answered a caller's turn after `fillerAfterMs`. */
  filler: string;
  fillerAfterMs: number;
  /** A caller's turn waits this long for the assistant in all; then Parley listens again. */
  maxWaitMs: number;
}

/**
 * An assistant drives the call turn by turn from outside (the control API's `ask` and `speak`, or MCP). `ask` says
 * something and resolves with what the callee says next; the callee's turn then waits for the assistant's next words,
 * which become Parley's reply. The floor stays the statechart's: barge-in, silence prompts and DTMF work as in any
 * call. While the assistant thinks, the caller is never left in silence: after a bound, a short filler.
 */
export class AssistantResponder implements Responder {
  readonly kind = "assistant" as const;
  /** Nothing can be said before the assistant has seen the turn. */
  readonly speculates = false;

  private host: ResponderHost | null = null;
  private pending: { resolve: (r: AskResult) => void; timer: NodeJS.Timeout; interrupted: boolean; askedAt: number } | null = null;
  /** A caller's turn waiting for the assistant's words. */
  private waiting: ((text: string | null) => void) | null = null;
  private ended: string | null = null;

  constructor(private readonly opts: AssistantOptions) {}

  open(host: ResponderHost): void {
    this.host = host;
  }

  /** Say `text`, then resolve with what the callee says next (or why nothing came). */
  ask(text: string, timeoutMs: number): Promise<AskResult> {
    if (this.ended) return Promise.resolve({ reply: "", status: "ended" });
    if (this.pending) throw new AskError("an ask is already waiting for the callee's answer on this call");
    const host = this.requireHost();
    return new Promise<AskResult>((resolve) => {
      const timer = setTimeout(() => this.settle({ reply: "", status: "silence" }), timeoutMs);
      this.pending = { resolve, timer, interrupted: false, askedAt: host.now() };
      host.record("assistant.ask", { text, timeoutMs });
      this.speak(text);
    });
  }

  /** The assistant's words outside an ask: the reply a waiting turn is waiting for, else said at the next pause. */
  say(text: string, interrupt = false): void {
    if (!interrupt && this.waiting) this.deliver(text);
    else this.requireHost().say(text, { interrupt });
  }

  async *respond(turn: CallerTurn): AsyncIterable<ResponderItem> {
    const host = this.requireHost();
    if (this.pending) this.settle({ reply: turn.userText, status: this.pending.interrupted ? "interrupted" : "answered" });
    else host.record("assistant.unprompted", { turnId: turn.turnId, text: turn.userText });
    if (this.ended) return;
    let words: string | null = null;
    let filled = false;
    const wait = (ms: number) =>
      new Promise<string | null | "timeout">((resolve) => {
        const timer = setTimeout(() => {
          this.waiting = null;
          resolve("timeout");
        }, ms);
        const onAbort = () => {
          clearTimeout(timer);
          this.waiting = null;
          resolve(null);
        };
        turn.signal.addEventListener("abort", onAbort, { once: true });
        this.waiting = (text) => {
          clearTimeout(timer);
          turn.signal.removeEventListener("abort", onAbort);
          this.waiting = null;
          resolve(text);
        };
      });
    const started = host.now();
    for (;;) {
      if (turn.signal.aborted) return;
      const budget = filled ? this.opts.maxWaitMs - (host.now() - started) : this.opts.fillerAfterMs;
      if (budget <= 0) break;
      const got = await wait(budget);
      if (got === "timeout") {
        if (filled) break;
        filled = true;
        host.record("assistant.filler", { turnId: turn.turnId, text: this.opts.filler });
        // The trailing space ends the clause, so the filler is spoken now rather than held for what follows.
        yield `${this.opts.filler} `;
        continue;
      }
      words = got;
      break;
    }
    if (words === null) {
      if (!turn.signal.aborted && !this.ended) host.record("assistant.no_reply", { turnId: turn.turnId, waitedMs: host.now() - started });
      return;
    }
    yield words;
  }

  interrupted(i: Interruption): void {
    if (this.pending) this.pending.interrupted = true;
    this.host?.record("assistant.interrupted", { turnId: i.turnId, heardText: i.heardText });
  }

  close(reason: string): void {
    this.ended = reason;
    this.settle({ reply: "", status: "ended" });
    this.waiting?.(null);
  }

  /** Whether an ask is waiting for the callee. */
  get asking(): boolean {
    return this.pending !== null;
  }

  private speak(text: string): void {
    if (this.waiting) this.deliver(text);
    else this.requireHost().say(text);
  }

  private deliver(text: string): void {
    const w = this.waiting;
    this.waiting = null;
    w?.(text);
  }

  private settle(r: AskResult): void {
    const p = this.pending;
    if (!p) return;
    this.pending = null;
    clearTimeout(p.timer);
    this.host?.record("assistant.answer", { status: r.status, reply: r.reply, afterMs: this.host.now() - p.askedAt });
    p.resolve(r);
  }

  private requireHost(): ResponderHost {
    if (!this.host) throw new AskError("the call's media stream has not started yet", 409);
    return this.host;
  }
}
