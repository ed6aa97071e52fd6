import { MULAW_SILENCE } from "./mulaw.ts";

export const FRAME_BYTES = 160; // 20 ms of 8 kHz mu-law
export const FRAME_MS = 20;

/**
 * Collects mu-law chunks of any size and hands out 20 ms frames. Chunks are kept by reference (TTS chunks are not
 * reused by their producer), so pushing is O(1); a frame straddling two chunks is assembled in a scratch buffer.
 */
export class MulawFramer {
  private chunks: Uint8Array[] = [];
  private head = 0; // offset into chunks[0]
  private bytes = 0;
  private readonly scratch = new Uint8Array(FRAME_BYTES);

  constructor(private readonly maxBytes = 8000 * 300) {}

  get bufferedBytes(): number {
    return this.bytes;
  }

  /** Whole frames ready. */
  get frames(): number {
    return Math.floor(this.bytes / FRAME_BYTES);
  }

  /** Returns false (and keeps nothing) when the chunk would exceed the bound. */
  push(chunk: Uint8Array): boolean {
    if (chunk.length === 0) return true;
    if (this.bytes + chunk.length > this.maxBytes) return false;
    this.chunks.push(chunk);
    this.bytes += chunk.length;
    return true;
  }

  /** Pad the tail to a whole frame with silence, so the last syllable is not cut. */
  padToFrame(): void {
    const rem = this.bytes % FRAME_BYTES;
    if (rem) this.push(new Uint8Array(FRAME_BYTES - rem).fill(MULAW_SILENCE));
  }

  /** Next 20 ms frame, or null. The returned view is valid until the next call. */
  shift(): Uint8Array | null {
    if (this.bytes < FRAME_BYTES) return null;
    const first = this.chunks[0]!;
    let frame: Uint8Array;
    if (first.length - this.head >= FRAME_BYTES) {
      frame = first.subarray(this.head, this.head + FRAME_BYTES);
      this.head += FRAME_BYTES;
    } else {
      let filled = 0;
      while (filled < FRAME_BYTES) {
        const c = this.chunks[0]!;
        const take = Math.min(c.length - this.head, FRAME_BYTES - filled);
        this.scratch.set(c.subarray(this.head, this.head + take), filled);
        filled += take;
        this.head += take;
        if (this.head === c.length) {
          this.chunks.shift();
          this.head = 0;
        }
      }
      frame = this.scratch;
    }
    if (this.chunks.length && this.head === this.chunks[0]!.length) {
      this.chunks.shift();
      this.head = 0;
    }
    this.bytes -= FRAME_BYTES;
    return frame;
  }

  clear(): void {
    this.chunks = [];
    this.head = 0;
    this.bytes = 0;
  }
}
