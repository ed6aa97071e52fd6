import type { AnsweredBy } from "../../machines/call.types.ts";
import { ToneDetector } from "../audio/tone-detector.ts";
import { SpeechDetector } from "../vad/hysteresis.ts";

/**
 * Who answered an outbound call, told from the audio as it arrives, for every carrier (the carrier's own detection,
 * where there is one, only adds evidence). The rules are the classic ones (Asterisk's AMD among others), on Silero's
 * speech decisions rather than raw energy:
 *   - a short first utterance followed by a short silence is a person's "hello?"            -> human
 *   - an utterance that goes on past GREETING_MAX_MS is a recorded greeting                    -> machine
 *   - a steady tone (a beep) is a machine; an 1100 Hz tone before any speech is a fax's CNG  -> machine / fax
 *   - words a voicemail greeting says ("leave a message", "after the tone", ...)             -> machine
 * A human decision stays under review for a short while (see `reviewMs`), so a listener may get a second decision:
 * "machine", overturning it. Once a machine is decided, the screen tells when its greeting is over and the message may start: the beep ends, the
 * carrier says the message ended, or (no beep) the line has been quiet for READY_SILENCE_MS after speech.
 *
 * It sits on the per-frame side, like the VAD's hysteresis: fed VAD probabilities and mu-law frames, positions in
 * samples of the stream's timeline (no clock), and it produces at most two semantic events. Allocation-free per frame.
 */
export interface ScreenListener {
  decided(answeredBy: AnsweredBy, cue: string, atSample: number): void;
  /** The machine's greeting is over: leave the message now. */
  ready(cue: string, atSample: number): void;
}

export interface ScreenOptions {
  /** VAD probability for speech (the call's VAD_THRESHOLD). */
  threshold?: number;
  /** A person's greeting is at most this long... */
  greetingMaxMs?: number;
  /** ...and this much silence ends it (kept short: the greeting should follow "hello?" within 400 ms). */
  endSilenceMs?: number;
  /** With no beep, a machine's greeting is taken as over after this much silence following speech. */
  readySilenceMs?: number;
  /**
   * A "human" is decided fast (a short first phrase, a short pause), so a recorded greeting whose first phrase is short
   * can pass for one. For this long after that decision the screen keeps listening, and a machine's evidence (speech
   * resuming and running past GREETING_MAX_MS, a beep, voicemail words) overturns it.
   */
  reviewMs?: number;
}

export const SCREEN_DEFAULTS = { threshold: 0.5, greetingMaxMs: 1500, endSilenceMs: 150, readySilenceMs: 1500, reviewMs: 4000 } as const;

/** Phrases voicemail greetings say and people answering a call do not. */
const MACHINE_WORDS = /\b(leave (me |us )?(a |your )?(message|name|number)|after the (tone|beep)|not available|can'?t (come to|take) (the|your) (phone|call)|voice ?mail|mailbox|record your message|at the tone)\b/i;

const FAX_HZ_MIN = 1050;
const FAX_HZ_MAX = 1150;
const SAMPLES_PER_MS = 8;

export class AnswerScreen {
  private readonly speech: SpeechDetector;
  private readonly tones = new ToneDetector();
  private readonly greetingMax: number;
  private readonly readySilence: number;
  private answeredBy: AnsweredBy | null = null;
  /** Until this sample a human decision may still be overturned (-1: no review). */
  private reviewUntil = -1;
  private readonly review: number;
  private isReady = false;
  private heardSpeech = false;
  private lastSpeechEnd = -1;

  constructor(
    private readonly listener: ScreenListener,
    opts: ScreenOptions = {},
  ) {
    const o = { ...SCREEN_DEFAULTS, ...opts };
    this.speech = new SpeechDetector({ threshold: o.threshold, minSpeechMs: 100, minSilenceMs: o.endSilenceMs });
    this.greetingMax = o.greetingMaxMs * SAMPLES_PER_MS;
    this.readySilence = o.readySilenceMs * SAMPLES_PER_MS;
    this.review = o.reviewMs * SAMPLES_PER_MS;
  }

  /** Still wants the audio: who answered is unknown, or a machine's greeting is not over yet. */
  get active(): boolean {
    return this.open || this.reviewUntil >= 0 || (this.answeredBy === "machine" && !this.isReady);
  }

  /** Nothing decided yet, or a human decision still under review: machine evidence decides (again). */
  private get open(): boolean {
    return this.answeredBy === null || this.reviewUntil >= 0;
  }

  get decision(): AnsweredBy | null {
    return this.answeredBy;
  }

  /** One VAD window's speech probability; `endSample` is where the window ends on the stream's timeline. */
  probability(prob: number, endSample: number): void {
    if (!this.active) return;
    if (this.reviewUntil >= 0 && endSample > this.reviewUntil) this.reviewUntil = -1;
    const ev = this.speech.push(prob, endSample);
    if (ev?.type === "speech-start") this.heardSpeech = true;
    if (ev?.type === "speech-end") {
      this.lastSpeechEnd = ev.endSample;
      if (this.answeredBy === null && ev.endSample - ev.startSample <= this.greetingMax) {
        this.decide("human", "short greeting", ev.confirmedSample);
        this.reviewUntil = ev.confirmedSample + this.review;
      }
      return;
    }
    // Under review the rule is the same: one utterance longer than a greeting. A person who says "hello?" again, or
    // a few words over our greeting, stays a person; a recording goes on regardless.
    if (this.open && this.speech.inSpeech && endSample - this.speech.speechStartSample > this.greetingMax) {
      this.decide("machine", this.reviewUntil >= 0 ? "greeting went on after a pause" : "long greeting", endSample);
      return;
    }
    if (this.answeredBy === "machine" && !this.isReady && this.lastSpeechEnd >= 0 && !this.speech.inSpeech && endSample - this.lastSpeechEnd >= this.readySilence)
      this.becomeReady("silence after the greeting", endSample);
  }

  /** The callee's audio as it arrives (any length; the view may be reused after the call). */
  audio(mulaw: Uint8Array): void {
    if (!this.active) return;
    const tone = this.tones.push(mulaw);
    if (!tone) return;
    if (this.answeredBy === null && !this.heardSpeech && tone.hz >= FAX_HZ_MIN && tone.hz <= FAX_HZ_MAX) {
      this.decide("fax", `fax tone (${tone.hz} Hz)`, tone.endSample);
      return;
    }
    if (this.open) this.decide("machine", `beep (${tone.hz} Hz)`, tone.endSample);
    if (this.answeredBy === "machine") this.becomeReady(`beep (${tone.hz} Hz)`, tone.endSample);
  }

  /** What the recogniser heard while screening. */
  transcript(text: string, atSample: number): void {
    if (this.open && MACHINE_WORDS.test(text)) this.decide("machine", "voicemail words", atSample);
  }

  /**
   * The carrier's answering-machine detection (Twilio's AnsweredBy: human, machine_start, machine_end_beep,
   * machine_end_silence, machine_end_other, fax, unknown). It decides what the audio has not decided yet, and
   * overturns a human decision still under review; its "message ended" always means the message may start.
   */
  carrier(answeredBy: string, atSample: number): void {
    const machineEnd = answeredBy.startsWith("machine_end");
    if (this.answeredBy === null) {
      if (answeredBy === "human") this.decide("human", "carrier: human", atSample);
      else if (answeredBy === "fax") this.decide("fax", "carrier: fax", atSample);
    }
    if (this.open && answeredBy.startsWith("machine")) this.decide("machine", `carrier: ${answeredBy}`, atSample);
    if (machineEnd && this.answeredBy === "machine") this.becomeReady(`carrier: ${answeredBy}`, atSample);
  }

  private decide(answeredBy: AnsweredBy, cue: string, atSample: number): void {
    this.answeredBy = answeredBy;
    if (answeredBy !== "human") this.reviewUntil = -1;
    this.listener.decided(answeredBy, cue, atSample);
  }

  private becomeReady(cue: string, atSample: number): void {
    if (this.isReady) return;
    this.isReady = true;
    this.listener.ready(cue, atSample);
  }
}
