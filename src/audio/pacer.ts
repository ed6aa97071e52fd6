import { FRAME_MS } from "./framer.ts";

/**
 * A model of the caller's playout buffer at the carrier. The carrier plays what we send in real time and buffers the
 * rest, so everything sent so far has played by `playheadAt`. We keep that no more than `leadMs` ahead of now: enough to ride
 * out timer jitter, small enough that `clear` has little to throw away. Scheduling against this absolute playhead
 * (not a `setTimeout(20)` per frame) cannot drift.
 */
export class Pacer {
  private playheadAt = 0;
  /** Total milliseconds the caller heard silence because audio was late (mid-utterance only). */
  underrunMs = 0;

  constructor(readonly leadMs: number) {}

  /** Frames that may be sent at `now`. */
  framesDue(now: number): number {
    const ahead = Math.max(0, this.playheadAt - now);
    return ahead >= this.leadMs ? 0 : Math.ceil((this.leadMs - ahead) / FRAME_MS);
  }

  /**
   * Account for one frame sent at `now`. `continuing` says the frame continues an utterance already playing, so a
   * playhead that fell behind `now` means the caller heard a gap.
   */
  sent(now: number, continuing: boolean): void {
    if (this.playheadAt < now) {
      if (continuing && this.playheadAt > 0) this.underrunMs += now - this.playheadAt;
      this.playheadAt = now;
    }
    this.playheadAt += FRAME_MS;
  }

  /** When everything sent so far will have played (the next frame's start on the caller's playout clock). */
  get playheadMs(): number {
    return this.playheadAt;
  }

  /** Audio sent but not yet played, in ms. */
  bufferedMs(now: number): number {
    return Math.max(0, this.playheadAt - now);
  }

  /** After `clear`: the carrier dropped its buffer. */
  reset(now: number): void {
    this.playheadAt = now;
  }
}
