import type { AgentAction, AgentProvider, ChatMessage } from "../providers/types.ts";

type Item = string | AgentAction;

/**
 * A reply started before the caller's turn is confirmed over. A stable final transcript arrives while the VAD still
 * waits out its silence window; the agent starts on it at once, buffering what it says. When the turn ends with
 * exactly that text and history, the reply is taken over (already some tokens in); if the caller kept talking, it
 * is discarded and cancelled.
 */
export class PreemptiveReply {
  private current: { key: string; ac: AbortController; items: Item[]; done: boolean; error: unknown; wake: (() => void) | null } | null = null;

  constructor(private readonly agent: AgentProvider) {}

  start(userText: string, history: ChatMessage[]): void {
    const key = keyOf(userText, history);
    if (this.current?.key === key) return;
    this.discard();
    const ac = new AbortController();
    const spec = { key, ac, items: [] as Item[], done: false, error: undefined as unknown, wake: null as (() => void) | null };
    this.current = spec;
    (async () => {
      try {
        for await (const item of this.agent.respond({ history, userText, signal: ac.signal })) {
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
