import { endianness } from "node:os";
import { FRAME_BYTES } from "../audio/framer.ts";
import { MULAW_TO_PCM16 } from "../audio/mulaw.ts";
import { DATA_SIZE_OFFSET, FRAME_BYTES_STEREO, RECORDING_RATE, RIFF_SIZE_OFFSET, WAV_HEADER_BYTES, wavHeader } from "./wav.ts";

/** Where a recording's bytes go: a file by default, something that fails on purpose in tests (a full disk). */
export interface RecordingFile {
  /** Write all of `data` at byte `position`. */
  write(data: Uint8Array, position: number): Promise<void>;
  close(): Promise<void>;
}

export type RecordingOpener = (file: string) => Promise<RecordingFile>;

const SAMPLES_PER_MS = RECORDING_RATE / 1000;
/** One write: a second of stereo audio (32 KB). */
const CHUNK = RECORDING_RATE;
/**
 * Audio held in memory per channel. Parley's channel is written up to the playout lead (≤ 1 s) ahead of now and can
 * still be cut by `clear` until then; the caller's may lag the clock by a stalled network; a write may be in flight.
 */
const RING = RECORDING_RATE * 6;
/** The caller's channel may hold the file back this far behind the clock (a stalled stream) before silence is written. */
const MAX_CALLER_LAG = RECORDING_RATE * 2;
/** Start positions of Parley's recent frames (more than the longest lead holds), to cut at a frame edge. */
const FRAME_STARTS = 128;
const LITTLE_ENDIAN = endianness() === "LE";

export interface RecordingSummary {
  path: string;
  bytes: number;
  durationS: number;
  /** Audio that found no room in memory because the disk was too slow, or came too late to place (ms, both channels). */
  droppedMs: number;
}

/**
 * One call's dual-channel recording on one timeline: sample `n` is `n / 8` ms after the first stream started (`t0`).
 * The caller's channel (left) is the inbound stream as received, sample after sample. Parley's channel (right) holds
 * each frame at the position the playout clock gave it (when the caller heard it, not when it was sent), and a `clear`
 * removes every frame that had not begun playing. What is older than both the clock and the caller's channel can no
 * longer change: it is written to disk a second at a time from two preallocated buffers, the header's sizes patched
 * after each write, so a killed process leaves a playable file short of at most the last few seconds.
 *
 * The per-frame methods (`caller`, `played`, `cut`) allocate nothing and never wait on the disk.
 */
export class CallRecorder {
  private readonly left = new Int16Array(RING);
  private readonly right = new Int16Array(RING);
  private readonly outs = [Buffer.allocUnsafeSlow(CHUNK * FRAME_BYTES_STEREO), Buffer.allocUnsafeSlow(CHUNK * FRAME_BYTES_STEREO)];
  private readonly outViews = this.outs.map((b) => new Int16Array(b.buffer, b.byteOffset, CHUNK * 2));
  private readonly outBusy = [false, false];
  private readonly sizeBuf = Buffer.alloc(4);
  /** Timeline samples before this have left the ring (written, or being written). */
  private flushed = 0;
  private leftPos = 0;
  private rightEnd = 0;
  private readonly frameStarts = new Float64Array(FRAME_STARTS);
  private frames = 0;
  /** Frames before this index were cut or are older than any cut can reach. */
  private cutFrom = 0;
  private dropped = 0;
  /** Data bytes handed to the file, and those on disk with the header patched to cover them. */
  private queued = 0;
  private durable = 0;
  private file: RecordingFile | null = null;
  private chain: Promise<void>;
  private failed = false;
  private closed = false;
  /** The clock at the last caller frame (a finished write flushes what became due meanwhile). */
  private lastNowMs = 0;
  /** Settles once the file is complete and closed (or has failed). */
  done: Promise<void> = Promise.resolve();

  constructor(
    readonly path: string,
    private readonly t0: number,
    open: RecordingOpener,
    private readonly onError: (message: string, code: string | null) => void,
  ) {
    this.chain = open(path)
      .then(async (f) => {
        this.file = f;
        await f.write(wavHeader(0), 0);
      })
      .catch((err) => this.fail(err));
  }

  get failedWriting(): boolean {
    return this.failed;
  }

  /**
   * A new stream of the call starts now (after a dropped one): the caller's channel continues from here. What the
   * ring holds goes to disk, and the silence between is a hole in the file (it reads as zeros), not seconds of zeros
   * through the ring.
   */
  streamStarted(nowMs: number): void {
    if (this.closed) return;
    const target = this.posOf(nowMs);
    if (target <= this.leftPos) return;
    this.leftPos = target;
    const end = this.pendingEnd();
    if (target <= end) return;
    this.writeOut(end);
    if (!this.failed) this.queued += (target - end) * FRAME_BYTES_STEREO;
    this.flushed = target;
  }

  /** Inbound mu-law as received; its place is the stream's sample count. */
  caller(mulaw: Uint8Array, nowMs: number): void {
    if (this.closed) return;
    this.put(this.left, mulaw, this.leftPos);
    this.leftPos += mulaw.length;
    this.maybeFlush(nowMs);
  }

  /** Outbound mu-law sent to the caller, whose first sample plays at `startMs` on the playout clock. */
  played(mulaw: Uint8Array, startMs: number): void {
    if (this.closed) return;
    const pos = this.posOf(startMs);
    for (let f = 0; f < mulaw.length; f += FRAME_BYTES) this.frameStarts[this.frames++ % FRAME_STARTS] = pos + f;
    this.put(this.right, mulaw, pos);
    if (pos + mulaw.length > this.rightEnd) this.rightEnd = pos + mulaw.length;
  }

  /**
   * `clear` went out at `nowMs`: the caller never hears the frames that had not begun playing, so they leave the
   * recording. (A frame already playing is kept whole: where in it the carrier stopped is unknowable.) Returns the
   * samples removed.
   */
  cut(nowMs: number): number {
    if (this.closed) return 0;
    const cutPos = this.posOf(nowMs);
    let first = -1;
    for (let k = this.frames - 1; k >= Math.max(this.cutFrom, this.frames - FRAME_STARTS); k--) {
      const s = this.frameStarts[k % FRAME_STARTS]!;
      if (s < cutPos) break;
      first = s;
    }
    this.cutFrom = this.frames;
    if (first < 0 || first >= this.rightEnd) return 0;
    const from = Math.max(first, this.flushed);
    const to = Math.min(this.rightEnd, this.flushed + RING);
    for (let p = from; p < to; p++) this.right[p % RING] = 0;
    const removed = this.rightEnd - first;
    this.rightEnd = first;
    return removed;
  }

  /**
   * Stop: the rest of the ring goes to disk, the header gets its final sizes, the file is closed (`done` settles then).
   * Returns what the file will hold, or null when writing had already failed.
   */
  finish(): RecordingSummary | null {
    if (this.closed) return null;
    this.closed = true;
    this.writeOut(this.pendingEnd());
    const file = this.file;
    this.done = this.chain.then(async () => {
      await (this.file ?? file)?.close().catch(() => {});
    });
    if (this.failed) return null;
    return { path: this.path, bytes: WAV_HEADER_BYTES + this.queued, durationS: this.queued / FRAME_BYTES_STEREO / RECORDING_RATE, droppedMs: Math.round(this.dropped / SAMPLES_PER_MS) };
  }

  /** Bytes on disk with a header that covers them (what a reader gets if the process dies now). */
  get durableBytes(): number {
    return WAV_HEADER_BYTES + this.durable;
  }

  /** Decode `mulaw` into `ring` from timeline position `pos`; what falls outside the ring's window is dropped. */
  private put(ring: Int16Array, mulaw: Uint8Array, pos: number): void {
    const n = mulaw.length;
    if (pos >= this.flushed && pos + n <= this.flushed + RING) {
      let r = pos % RING;
      for (let i = 0; i < n; i++) {
        ring[r] = MULAW_TO_PCM16[mulaw[i]!]!;
        if (++r === RING) r = 0;
      }
      return;
    }
    for (let i = 0, p = pos; i < n; i++, p++) {
      if (p < this.flushed || p >= this.flushed + RING) this.dropped++;
      else ring[p % RING] = MULAW_TO_PCM16[mulaw[i]!]!;
    }
  }

  private posOf(ms: number): number {
    return Math.round((ms - this.t0) * SAMPLES_PER_MS);
  }

  private maybeFlush(nowMs: number): void {
    this.lastNowMs = nowMs;
    const nowPos = this.posOf(nowMs);
    const stable = Math.max(Math.min(this.leftPos, nowPos), nowPos - MAX_CALLER_LAG);
    while (stable - this.flushed >= CHUNK) {
      if (this.failed) {
        this.discard(CHUNK);
        continue;
      }
      const b = !this.outBusy[0] ? 0 : !this.outBusy[1] ? 1 : -1;
      if (b < 0) return; // both writes still in flight: the ring holds on (and drops what finds no room)
      this.outBusy[b] = true;
      this.moveOut(this.outViews[b]!, CHUNK);
      this.enqueueWrite(this.outs[b]!, b);
    }
  }

  /** The end of what the ring holds. */
  private pendingEnd(): number {
    return Math.min(Math.max(this.leftPos, this.rightEnd, this.flushed), this.flushed + RING);
  }

  /**
   * Everything in the ring up to `end` to disk now, in a buffer of its own (at the end of a call or a stream: not per
   * frame), and the sizes patched, even when there is nothing more to write.
   */
  private writeOut(end: number): void {
    const n = end - this.flushed;
    if (this.failed) return this.discard(n);
    const buf = Buffer.allocUnsafeSlow(n * FRAME_BYTES_STEREO);
    this.moveOut(new Int16Array(buf.buffer, buf.byteOffset, n * 2), n);
    this.enqueueWrite(buf, -1);
  }

  /** Interleave `n` samples from the ring into `dst`, silence the ring behind them, and move past them. */
  private moveOut(dst: Int16Array, n: number): void {
    const start = this.flushed;
    let r = start % RING;
    for (let i = 0; i < n; i++) {
      dst[2 * i] = this.left[r]!;
      dst[2 * i + 1] = this.right[r]!;
      this.left[r] = 0;
      this.right[r] = 0;
      if (++r === RING) r = 0;
    }
    if (!LITTLE_ENDIAN) Buffer.from(dst.buffer, dst.byteOffset, n * FRAME_BYTES_STEREO).swap16();
    this.flushed = start + n;
  }

  private discard(n: number): void {
    for (let i = 0; i < n; i++) {
      const r = (this.flushed + i) % RING;
      this.left[r] = 0;
      this.right[r] = 0;
    }
    this.flushed += n;
  }

  /** Write `buf` after what is queued, then patch the sizes; `slot` is the buffer to free afterwards (-1: none). */
  private enqueueWrite(buf: Buffer, slot: number): void {
    const at = WAV_HEADER_BYTES + this.queued;
    this.queued += buf.length;
    const size = this.queued;
    this.chain = this.chain
      .then(async () => {
        if (this.failed || !this.file) return;
        await this.file.write(buf, at);
        await this.patchSizes(this.file, size);
        this.durable = size;
      })
      .catch((err) => this.fail(err))
      .finally(() => {
        if (slot < 0) return;
        this.outBusy[slot] = false;
        if (!this.closed) this.maybeFlush(this.lastNowMs);
      });
  }

  private async patchSizes(f: RecordingFile, dataBytes: number): Promise<void> {
    this.sizeBuf.writeUInt32LE(36 + dataBytes, 0);
    await f.write(this.sizeBuf, RIFF_SIZE_OFFSET);
    this.sizeBuf.writeUInt32LE(dataBytes, 0);
    await f.write(this.sizeBuf, DATA_SIZE_OFFSET);
  }

  private fail(err: unknown): void {
    if (this.failed) return;
    this.failed = true;
    const e = err as NodeJS.ErrnoException;
    this.onError(e?.message ?? String(err), typeof e?.code === "string" ? e.code : null);
  }
}
