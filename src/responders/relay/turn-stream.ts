import type { ResponderItem } from "../responder.ts";
import type { InterruptMode } from "./protocol.ts";

/** Why a turn's stream stopped. */
export type TurnEnd = "last" | "aborted" | "timeout" | "superseded" | "ended" | "failed" | "closed" | "dropped";

/**
 * The app's reply to one caller turn, from the socket to `respond()`'s consumer: items are pushed as frames arrive
 * and pulled by the generator; `finish` wakes a waiting pull at once. A reply that goes `stallMs` without a frame
 * finishes as "timeout" (an app that never sends `last: true` must not hold the turn forever).
 */
export class TurnStream {
  readonly items: ResponderItem[] = [];
  private head = 0;
  private wake: (() => void) | null = null;
  ended: TurnEnd | null = null;
  /** Items pushed so far (a reply already under way is not asked for again after a reconnect). */
  pushed = 0;
  /** The `interruptible` last told to the host for this reply (undefined: the session default, untold). */
  interruptible: InterruptMode | undefined;

  private readonly stall: NodeJS.Timeout;

  constructor(
    readonly turnId: number,
    stallMs: number,
    onStall: (t: TurnStream) => void,
  ) {
    this.stall = setTimeout(() => {
      onStall(this);
      this.finish("timeout");
    }, stallMs);
    this.stall.unref();
  }

  /** The app sent something for this reply: it is alive. */
  touch(): void {
    if (!this.ended) this.stall.refresh();
  }

  push(item: ResponderItem): void {
    if (this.ended) return;
    this.items.push(item);
    this.pushed++;
    this.stall.refresh();
    this.wake?.();
  }

  finish(why: TurnEnd): void {
    if (this.ended) return;
    this.ended = why;
    clearTimeout(this.stall);
    this.wake?.();
  }

  /** The next item, or null once finished and drained (an aborted or closed stream delivers nothing more). */
  async next(): Promise<ResponderItem | null> {
    for (;;) {
      if (this.ended === "aborted" || this.ended === "closed") return null;
      if (this.head < this.items.length) {
        const item = this.items[this.head]!;
        this.items[this.head++] = "";
        return item;
      }
      if (this.ended) return null;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = null;
    }
  }
}
