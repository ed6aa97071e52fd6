import libsamplerate from "@alexanderolsen/libsamplerate-js";

const { create, ConverterType } = libsamplerate; // CommonJS package: no named ESM exports

type Src = Awaited<ReturnType<typeof create>>;

/** libsamplerate's band-limited (sinc) converters; the others alias, which is what a streaming resampler is for. */
export type ResamplerQuality = "best" | "medium" | "fastest";

/** 90% passband (3.6 kHz at 8 kHz out) at a third of "best"'s cost; "best" is ~3x slower in this JS build. */
export const DEFAULT_RESAMPLER_QUALITY: ResamplerQuality = "medium";

const CONVERTER = {
  best: ConverterType.SRC_SINC_BEST_QUALITY,
  medium: ConverterType.SRC_SINC_MEDIUM_QUALITY,
  fastest: ConverterType.SRC_SINC_FASTEST,
} as const;

/**
 * The wrapper copies through fixed 1,008,000-float buffers and silently switches to an allocating path that ignores
 * `dataOut` above that size, so larger inputs are fed in pieces.
 */
const MAX_PIECE = 1 << 16;

/**
 * One call yields at most ceil(ratio * input) frames in practice (the filter's hold-back is a constant lag), but the
 * wrapper silently drops whatever does not fit `dataOut`: keep a little room, and check.
 */
const SPARE_FRAMES = 16;

/**
 * A stateful mono resampler for audio that arrives in chunks (libsamplerate's `full` API). Chunk boundaries leave no
 * trace in the output: the result equals resampling the concatenation in one piece.
 *
 * The wrapped build never sets libsamplerate's `end_of_input`, so the filter's look-ahead (a few ms) stays inside
 * until {@link flush} pushes silence through and trims the output to the exact expected length.
 */
export class StreamingResampler {
  readonly ratio: number;
  private out = new Float32Array(0);
  private silence: Float32Array | undefined;
  private readonly frames = { frames: 0 };
  private samplesIn = 0;
  private samplesOut = 0;
  private destroyed = false;

  private constructor(
    private readonly src: Src,
    readonly inRate: number,
    readonly outRate: number,
    private readonly converter: (typeof CONVERTER)[ResamplerQuality],
  ) {
    this.ratio = outRate / inRate;
  }

  static async create(inRate: number, outRate: number, quality: ResamplerQuality = DEFAULT_RESAMPLER_QUALITY): Promise<StreamingResampler> {
    const converter = CONVERTER[quality];
    if (converter === undefined) throw new Error(`unknown resampler quality "${quality}"`);
    const src = await create(1, inRate, outRate, { converterType: converter });
    return new StreamingResampler(src, inRate, outRate, converter);
  }

  /**
   * Resample the next chunk of the stream. The result may be shorter or longer than `chunk * ratio`, or empty.
   * It is a view into a buffer reused by the next call: consume or copy it before calling again.
   */
  process(chunk: Float32Array): Float32Array {
    this.assertAlive();
    if (this.ratio === 1) return chunk; // the wrapper returns its input untouched then, without counting frames
    this.ensureCapacity(Math.ceil(chunk.length * this.ratio) + SPARE_FRAMES, 0);
    let written = 0;
    for (let off = 0; off < chunk.length; off += MAX_PIECE) {
      const piece = chunk.length <= MAX_PIECE ? chunk : chunk.subarray(off, off + MAX_PIECE);
      written += this.feed(piece, written);
    }
    this.samplesIn += chunk.length;
    this.samplesOut += written;
    return this.out.subarray(0, written);
  }

  /**
   * End the stream: return the rest of its output, then reset so the instance can start a new stream.
   * Like {@link process}, the result is a view valid until the next call.
   */
  flush(): Float32Array {
    this.assertAlive();
    const expected = Math.round(this.samplesIn * this.ratio);
    let missing = expected - this.samplesOut;
    if (this.ratio === 1 || missing <= 0) {
      this.reset();
      return this.out.subarray(0, 0);
    }
    // Silence after the end releases the held-back tail; what it produces beyond `expected` is dropped.
    const silence = (this.silence ??= new Float32Array(Math.max(256, Math.ceil(this.inRate / 50))));
    const perFeed = Math.ceil(silence.length * this.ratio) + SPARE_FRAMES;
    let written = 0;
    for (let i = 0; i < 1000 && written < missing; i++) {
      this.ensureCapacity(written + perFeed, written);
      written += this.feed(silence, written);
    }
    this.reset();
    return this.out.subarray(0, Math.min(written, missing));
  }

  /** Forget the stream in progress (e.g. after a cancelled synthesis), keeping the instance. */
  reset(): void {
    this.assertAlive();
    // No reset binding exists; re-running init is what the wrapper's own setters do to apply new settings.
    this.src.module.destroy();
    this.src.module.init(1, this.converter, this.inRate, this.outRate);
    this.samplesIn = 0;
    this.samplesOut = 0;
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.src.destroy();
  }

  /** Resample one piece into `this.out` at `at`; returns the frame count. */
  private feed(piece: Float32Array, at: number): number {
    const dst = at === 0 ? this.out : this.out.subarray(at);
    this.src.full(piece, dst, this.frames);
    const n = this.frames.frames;
    if (n > dst.length) throw new Error(`resampler produced ${n} frames into room for ${dst.length}`);
    return n;
  }

  private ensureCapacity(length: number, keep: number): void {
    if (this.out.length >= length) return;
    const bigger = new Float32Array(Math.max(length, this.out.length * 2));
    bigger.set(this.out.subarray(0, keep));
    this.out = bigger;
  }

  private assertAlive(): void {
    if (this.destroyed) throw new Error("resampler used after destroy()");
  }
}
