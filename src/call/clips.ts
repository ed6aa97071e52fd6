/**
 * Audio a call will play as an announcement (a relay app's `play`). Audio never goes through the statechart: the
 * machine queues only `CLIP_PREFIX + id`, and the speaker takes the bytes from here. Bounded, so an app that asks
 * for plays faster than they can be heard cannot grow memory without limit.
 */
export class ClipStore {
  private readonly clips = new Map<string, Uint8Array>();
  private next = 0;
  private bytes = 0;

  constructor(
    private readonly maxClips = 16,
    private readonly maxBytes = 8 * 8000 * 60, // ten minutes of 8 kHz mu-law in all
  ) {}

  /** Keep `mulaw` for playing; its id, or null when the store is full. */
  add(mulaw: Uint8Array): string | null {
    if (this.clips.size >= this.maxClips || this.bytes + mulaw.length > this.maxBytes) return null;
    const id = String(++this.next);
    this.clips.set(id, mulaw);
    this.bytes += mulaw.length;
    return id;
  }

  /** The audio of a clip, forgetting it (each clip plays once). */
  take(id: string): Uint8Array | undefined {
    const audio = this.clips.get(id);
    if (audio) {
      this.clips.delete(id);
      this.bytes -= audio.length;
    }
    return audio;
  }
}
