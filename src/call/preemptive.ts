import type { AgentAction, AgentProvider, ChatMessage } from "../providers/types.ts";

type Item = string | AgentAction;

interface Speculation {
  key: string;
  ac: AbortController;
  items: Item[];
  done: boolean;
  error: unknown;
  wake: (() => void) | null;
  /** Settles the agent's `confirm()`: true when the reply is taken over, false when it is discarded. */
  settle: (confirmed: boolean) => void;
  /** The agent is waiting for confirmation before something with side effects (a tool call). */
  holding: boolean;
}

/**
 * A reply started before the caller's turn is confirmed over. A stable final transcript arrives while the VAD still
 * waits out its silence window; the agent starts on it at once, buffering what it says. When the turn ends with
 * exactly that text and history, the reply is taken over (already some tokens in); if the caller kept talking, it
 * is discarded and cancelled.
 *
 * A speculation has no side effects: the agent gets a `confirm()` to await before any (a tool call), which resolves
 * only when the reply is taken over. Until then the speculation holds what it has said; a discarded one has run no
 * tool. Actions (end_call, send_dtmf) are only buffered here and take effect when the reply is taken.
 */
export class PreemptiveReply {
  private current: Speculation | null = null;

  constructor(private readonly agent: AgentProvider) {}

  /** Whether the current speculation stopped at a tool call, waiting for the turn to be confirmed. */
  get holding(): boolean {
    return this.current?.holding ?? false;
  }

  start(userText: string, history: ChatMessage[]): void {
    const key = keyOf(userText, history);
    if (this.current?.key === key) return;
    this.discard();
    const ac = new AbortController();
    let settle!: (confirmed: boolean) => void;
    const confirmed = new Promise<boolean>((r) => (settle = r));
    const spec: Speculation = { key, ac, items: [], done: false, error: undefined, wake: null, settle, holding: false };
    this.current = spec;
    // Aborted (discarded, or the taken reply was stopped): never confirmed.
    ac.signal.addEventListener("abort", () => settle(false), { once: true });
    const confirm = () => {
      spec.holding = true;
      return confirmed.finally(() => (spec.holding = false));
    };
    (async () => {
      try {
        for await (const item of this.agent.respond({ history, userText, signal: ac.signal, confirm })) {
          if (ac.signal.aborted) return;
          spec.items.push(item);
          spec.wake?.();
        }
      } catch (err) {
        spec.error = err;
      } finally {
        spec.done = true;
        spec.wake?.();
      }
    })();
  }

  /** The speculative reply, if it was made for exactly this turn; any other speculation is cancelled. */
  take(userText: string, history: ChatMessage[]): (AsyncIterable<Item> & { abort(): void }) | null {
    const spec = this.current;
    this.current = null;
    if (!spec) return null;
    if (spec.key !== keyOf(userText, history)) {
      spec.ac.abort();
      return null;
    }
    // The turn is confirmed: a speculation holding at a tool call goes on and runs it, as part of this turn.
    spec.settle(true);
    return {
      abort: () => spec.ac.abort(),
      async *[Symbol.asyncIterator]() {
        let i = 0;
        for (;;) {
          if (i < spec.items.length) yield spec.items[i++]!;
          else if (spec.done) {
            if (spec.error) throw spec.error;
            return;
          } else await new Promise<void>((r) => (spec.wake = r));
        }
      },
    };
  }

  /** The caller kept talking, or the call ended: cancel the speculation. */
  discard(): void {
    this.current?.ac.abort();
    this.current = null;
  }
}

function keyOf(userText: string, history: ChatMessage[]): string {
  return JSON.stringify([userText.trim(), history]);
}
