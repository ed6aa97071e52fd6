/**
 * Where the app's talk cycle stands. A cycle is one assistant turn of `text` tokens, closed by `last: true`.
 * - A cycle the caller cut (or that stalled) is *discarded*: its late tokens are dropped until its `last` or the
 *   next prompt, whichever comes first (the protocol carries no cycle id, so that is all that can be known).
 * - A cycle or play marked `preemptible` is cut by the next cycle or play.
 */
export class TalkCycle {
  /** Tokens have started (or a prompt went out) and `last: true` has not come yet. */
  open = false;
  discarding = false;
  private dropped = 0;
  private preemptNext = false;

  constructor(private readonly onDropped: (count: number) => void) {}

  /** A prompt went out: whatever comes next answers it. */
  prompted(): void {
    this.stopDiscarding();
    this.open = true;
  }

  /** The caller cut in, or the reply stalled: drop the rest of this cycle. */
  cut(): void {
    if (this.open) this.discarding = true;
  }

  /** A late token of a discarded cycle. */
  drop(): void {
    this.dropped++;
  }

  /** `last: true` came; `preemptible` says whether the next cycle or play may cut this one. */
  close(preemptible: boolean): void {
    this.open = false;
    this.stopDiscarding();
    this.preemptNext = preemptible;
  }

  /** Something new starts playing (a cycle's first token, a play): whether it cuts what plays now. */
  takePreempt(): boolean {
    const p = this.preemptNext;
    this.preemptNext = false;
    return p;
  }

  /** A play is its own cycle as far as preemption goes. */
  played(preemptible: boolean): void {
    this.preemptNext = preemptible;
  }

  private stopDiscarding(): void {
    if (this.dropped) this.onDropped(this.dropped); // one record per cut cycle, not one per late token
    this.discarding = false;
    this.dropped = 0;
  }
}
