import type { TtsChunk } from "../types.ts";

/** Chunks of one utterance, handed from a worker, a socket or an HTTP body to its single consumer's async iterator. */
export class ChunkQueue {
  private items: TtsChunk[] = [];
  private waiter: { resolve: (chunk: TtsChunk | null) => void; reject: (error: Error) => void } | undefined;
  private error: Error | undefined;
  done = false;

  push(chunk: TtsChunk): void {
    if (this.done) return;
    const w = this.take();
    if (w) w.resolve(chunk);
    else this.items.push(chunk);
  }

  /** End the stream; `discard` drops what was not consumed yet (used on abort). */
  end(discard = false): void {
    if (this.done) return;
    this.done = true;
    if (discard) this.items = [];
    this.take()?.resolve(null);
  }

  /** End the stream with an error; the consumer gets what was queued before it, then the error. */
  fail(error: Error): void {
    if (this.done) return;
    this.done = true;
    this.error = error;
    const w = this.take();
    if (w) w.reject(error);
  }

  /** The next chunk, or null at the end. */
  next(): Promise<TtsChunk | null> {
    const item = this.items.shift();
    if (item) return Promise.resolve(item);
    if (this.error) {
      const e = this.error;
      this.error = undefined; // thrown once; afterwards the iterator is simply done
      return Promise.reject(e);
    }
    if (this.done) return Promise.resolve(null);
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  private take(): typeof this.waiter {
    const w = this.waiter;
    this.waiter = undefined;
    return w;
  }
}
