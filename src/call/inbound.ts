import { decodeMulaw, decodeMulawInto } from "../audio/mulaw.ts";
import { decodePayloadInto } from "../audio/base64.ts";
import { SpeechDetector, type SpeechDetectorOptions, type SpeechEvent } from "../vad/hysteresis.ts";
import type { SileroVadPool, VadStream } from "../vad/silero-pool.ts";
import { VAD_WINDOW_SAMPLES } from "../vad/model.ts";
import type { PipelineStats } from "./pipeline-stats.ts";

/** Where a caller's utterance audio goes (the STT session, while one is open). */
export interface UtteranceSink {
  start(): void;
  push(pcm: Int16Array): void;
  /** When present, the sink takes the carrier's mu-law bytes as they are, instead of PCM. */
  pushMulaw?: (mulaw: Uint8Array) => void;
  /** The caller has been silent a while: the utterance may be over (its end is not confirmed yet). */
  pause?: () => void;
  /** ...but they went on talking after a pause. */
  resume?: () => void;
  end(): void;
}

export interface InboundListener {
  speechStarted(ev: Extract<SpeechEvent, { type: "speech-start" }>): void;
  speechEnded(ev: Extract<SpeechEvent, { type: "speech-end" }>): void;
}

/** Audio kept from before the VAD confirms speech, so the recogniser hears the first syllable. */
const PREROLL_SAMPLES = 8000; // 1 s ring
const PREROLL_PAD_SAMPLES = 1600; // 200 ms before the first speech window
const MAX_FRAME_BYTES = 8000; // one second of audio in one message is already unusual

/**
 * One call's inbound audio: base64 -> mu-law -> VAD (batched, off-thread) and -> the recogniser. Turns VAD
 * probabilities into speech start/end for the call actor. Per frame it allocates nothing: payloads decode into a fixed
 * buffer and mu-law goes into a ring. Only a recogniser that wants PCM gets it decoded, and only while the caller talks.
 */
export class InboundAudio {
  private readonly payload = Buffer.alloc(MAX_FRAME_BYTES);
  private readonly frameView = this.payload.subarray(0, 160);
  /** For recognisers that take PCM: one frame decoded (they copy what they keep). */
  private readonly pcm = new Int16Array(MAX_FRAME_BYTES);
  private readonly mulawRing = new Uint8Array(PREROLL_SAMPLES);
  private samples = 0; // total samples received (the stream's timeline)
  private readonly vad: VadStream;
  private readonly detector: SpeechDetector;
  private sink: UtteranceSink | null = null;
  private inUtterance = false;
  /** Samples of silence after which the sink hears `pause` (0: never). */
  private readonly pauseSamples: number;
  private paused = false;
  /** When the frame that completed each recent VAD window arrived (by window index), to time the VAD decision. */
  private readonly windowArrivals = new Float64Array(64);
  /** Sees every frame's mu-law as received (the call recording); the view is reused for the next frame: copy, do not keep. */
  tap: ((mulaw: Uint8Array) => void) | null = null;

  constructor(
    pool: SileroVadPool,
    detectorOpts: SpeechDetectorOptions,
    private readonly listener: InboundListener,
    private readonly stats?: PipelineStats,
    /** Tell the recogniser the caller may have finished after this much silence (see UtteranceSink.pause). */
    pauseMs = 0,
  ) {
    this.pauseSamples = Math.round(pauseMs * 8);
    this.detector = new SpeechDetector(detectorOpts);
    this.vad = pool.openStream(this.onProbability);
  }

  /**
   * One media frame's G.711 mu-law: base64 text (carriers' JSON frames) or raw bytes (a binary frame). Returns false
   * when the payload was rejected (not base64, empty, or over a second of audio).
   */
  pushPayload(payload: string | Uint8Array): boolean {
    let n: number;
    if (typeof payload === "string") n = decodePayloadInto(payload, this.payload);
    else if (payload.length > this.payload.length) n = -1;
    else {
      this.payload.set(payload);
      n = payload.length;
    }
    if (n <= 0) return false;
    const bytes = n === 160 ? this.frameView : this.payload.subarray(0, n);
    const windowsBefore = Math.floor(this.samples / VAD_WINDOW_SAMPLES);
    const windowsAfter = Math.floor((this.samples + n) / VAD_WINDOW_SAMPLES);
    if (this.stats && windowsAfter > windowsBefore) {
      const at = performance.now();
      for (let w = windowsBefore; w < windowsAfter; w++) this.windowArrivals[w & 63] = at;
    }
    this.vad.pushMulaw(bytes);
    this.tap?.(bytes);
    const start = this.samples % PREROLL_SAMPLES;
    const head = Math.min(n, PREROLL_SAMPLES - start);
    this.mulawRing.set(head === n ? bytes : bytes.subarray(0, head), start);
    if (head < n) this.mulawRing.set(bytes.subarray(head), 0);
    this.samples += n;
    const sink = this.sink;
    if (this.inUtterance && sink) {
      if (sink.pushMulaw) sink.pushMulaw(bytes);
      else sink.push(this.pcm.subarray(0, decodeMulawInto(bytes, this.pcm)));
    }
    return true;
  }

  setSink(sink: UtteranceSink | null): void {
    if (this.inUtterance && this.sink && sink !== this.sink) this.sink.end();
    this.sink = sink;
    this.inUtterance = false;
  }

  close(): void {
    this.vad.close();
    this.sink = null;
  }

  private readonly onProbability = (prob: number, windowEndSample: number): void => {
    if (this.stats) {
      const now = performance.now();
      this.stats.recordInbound(now - this.windowArrivals[(windowEndSample / VAD_WINDOW_SAMPLES - 1) & 63]!, now);
    }
    const ev = this.detector.push(prob, windowEndSample);
    if (this.inUtterance && this.pauseSamples > 0 && this.sink) {
      const silent = this.detector.silenceSamples;
      if (!this.paused && silent >= this.pauseSamples) {
        this.paused = true;
        this.sink.pause?.();
      } else if (this.paused && silent === 0 && this.detector.inSpeech) {
        this.paused = false;
        this.sink.resume?.();
      }
    }
    if (!ev) return;
    if (ev.type === "speech-start") {
      if (this.sink) {
        this.sink.start();
        const from = Math.max(ev.startSample - PREROLL_PAD_SAMPLES, this.samples - PREROLL_SAMPLES + 1, 0);
        if (this.samples > from) {
          const preroll = this.ringSlice(from, this.samples);
          if (this.sink.pushMulaw) this.sink.pushMulaw(preroll);
          else this.sink.push(decodeMulaw(preroll));
        }
        this.inUtterance = true;
        this.paused = false;
      }
      this.listener.speechStarted(ev);
    } else {
      this.listener.speechEnded(ev);
      if (this.inUtterance && this.sink) this.sink.end();
      this.inUtterance = false;
    }
  };

  /** Samples [from, to) of the timeline from the ring (a copy only when it wraps). */
  private ringSlice(from: number, to: number): Uint8Array {
    const ring = this.mulawRing;
    const a = from % PREROLL_SAMPLES;
    const len = to - from;
    if (a + len <= PREROLL_SAMPLES) return ring.subarray(a, a + len);
    const out = new Uint8Array(len);
    const first = PREROLL_SAMPLES - a;
    out.set(ring.subarray(a), 0);
    out.set(ring.subarray(0, len - first), first);
    return out;
  }
}
