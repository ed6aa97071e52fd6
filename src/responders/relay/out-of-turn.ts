import { ClauseChunker } from "../../providers/agent/clauses.ts";
import type { RelayHost, UtteranceOptions } from "./host.ts";

type Item =
  | { kind: "say"; text: string; opts: UtteranceOptions }
  | { kind: "play"; audio: Promise<Uint8Array | null>; opts: UtteranceOptions };

/**
 * What the app says or plays outside a caller's turn (it speaks first, or again after its reply), handed to the host
 * in the order the app sent it. Tokens are gathered into speakable text: a clause or sentence is said as soon as it
 * is complete, the rest on the token with `last: true`, or after `flushAfterMs` without a token (an app that never
 * closes its talk cycle still gets heard). A `play` holds back whatever the app sent after it until its audio is
 * fetched (or has failed), so the order on the call is the order on the socket.
 */
export class OutOfTurnSpeech {
  private chunker = new ClauseChunker();
  private readonly queue: Item[] = [];
  private pumping = false;
  private idle: NodeJS.Timeout | null = null;
  /** Options of the talk cycle being gathered; `interrupt` is spent on its first piece. */
  private cycleOpts: UtteranceOptions | null = null;
  private drained: Array<() => void> = [];

  constructor(
    private readonly host: RelayHost,
    private readonly flushAfterMs: number,
  ) {}

  /** Whether a talk cycle has tokens gathered but not all said. */
  get open(): boolean {
    return this.cycleOpts !== null;
  }

  /** One `text` token. `opts` counts for the cycle when this token starts one. */
  token(token: string, last: boolean, opts: UtteranceOptions): void {
    this.cycleOpts ??= { ...opts };
    if (opts.interruptible !== undefined) this.cycleOpts.interruptible = opts.interruptible;
    for (const piece of this.chunker.push(token)) this.say(piece);
    if (last) this.endCycle();
    else this.armIdle();
  }

  /** Say what is gathered so far and close the talk cycle. */
  endCycle(): void {
    for (const piece of this.chunker.flush()) this.say(piece);
    this.cycleOpts = null;
    this.disarmIdle();
  }

  play(audio: Promise<Uint8Array | null>, opts: UtteranceOptions): void {
    this.endCycle();
    this.enqueue({ kind: "play", audio, opts });
  }

  /** The caller cut in: forget text not yet said and anything not yet handed over. */
  drop(): void {
    this.chunker = new ClauseChunker();
    this.cycleOpts = null;
    this.disarmIdle();
    this.queue.length = 0;
  }

  /** Resolves once everything queued has been handed to the host (or dropped). */
  whenDrained(): Promise<void> {
    if (!this.queue.length && !this.pumping) return Promise.resolve();
    return new Promise((resolve) => this.drained.push(resolve));
  }

  close(): void {
    this.drop();
    this.notifyDrained();
  }

  private say(text: string): void {
    const opts = this.cycleOpts ?? {};
    this.enqueue({ kind: "say", text, opts: { ...opts } });
    if (this.cycleOpts) this.cycleOpts.interrupt = false; // only the first piece of a cycle preempts
  }

  private enqueue(item: Item): void {
    // Nothing ahead of it: say at once, without waiting for a microtask (this is the latency path).
    if (item.kind === "say" && !this.queue.length && !this.pumping) {
      this.host.say(item.text, item.opts);
      return;
    }
    this.queue.push(item);
    if (!this.pumping) void this.pump();
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      while (this.queue.length) {
        const item = this.queue[0]!;
        if (item.kind === "say") this.host.say(item.text, item.opts);
        else {
          const audio = await item.audio;
          if (this.queue[0] !== item) continue; // dropped while fetching
          if (audio) this.host.playAudio?.(audio, item.opts);
        }
        this.queue.shift();
      }
    } finally {
      this.pumping = false;
      this.notifyDrained();
    }
  }

  private notifyDrained(): void {
    const waiting = this.drained;
    this.drained = [];
    for (const resolve of waiting) resolve();
  }

  private armIdle(): void {
    if (this.idle) this.idle.refresh();
    else {
      this.idle = setTimeout(() => {
        this.idle = null;
        for (const piece of this.chunker.flush()) this.say(piece);
      }, this.flushAfterMs);
      this.idle.unref();
    }
  }

  private disarmIdle(): void {
    if (this.idle) clearTimeout(this.idle);
    this.idle = null;
  }
}
