import type { CallEvent, ScreeningInput } from "../../machines/call.types.ts";
import type { Config } from "../config.ts";
import type { Session } from "../session/session.ts";
import type { InboundAudio } from "./inbound.ts";
import { AnswerScreen } from "./screening.ts";

/**
 * One outbound call's screening, between the audio and the machine: the screen rides on the call's inbound pipeline
 * (per window and per frame, no allocation, no I/O) and its two decisions become SCREENING.DECIDED / SCREENING.READY.
 * Evidence from elsewhere (the recogniser's words, the carrier's AMD) comes in through here too.
 */
export class CallScreening {
  private readonly screen: AnswerScreen;
  private inbound: InboundAudio | null = null;

  constructor(
    threshold: number,
    private readonly sink: { send(ev: CallEvent): void; record(type: string, data: Record<string, unknown>): void },
  ) {
    this.screen = new AnswerScreen(
      {
        decided: (answeredBy, cue, at) => {
          this.sink.record("screening.heard", { answeredBy, cue, streamMs: at / 8 });
          this.sink.send({ type: "SCREENING.DECIDED", answeredBy, cue });
        },
        ready: (cue, at) => {
          this.sink.record("screening.ready", { cue, streamMs: at / 8 });
          this.sink.send({ type: "SCREENING.READY", cue });
        },
      },
      { threshold },
    );
  }

  /** A stream started: screen its audio (a new stream after a drop starts a new timeline; the screen goes on). */
  attach(inbound: InboundAudio): void {
    this.inbound = inbound;
    if (!this.screen.active) return;
    // Off the per-frame path as soon as it has nothing left to decide (checked per window, not per frame).
    const screen = this.screen;
    inbound.screen = {
      probability: (prob, end) => {
        screen.probability(prob, end);
        if (!screen.active && inbound.screen) inbound.screen = null;
      },
      audio: (mulaw) => screen.audio(mulaw),
    };
  }

  transcript(text: string): void {
    this.screen.transcript(text, this.inbound?.position ?? 0);
  }

  /** The carrier's answering-machine detection (Twilio's AnsweredBy). */
  carrier(answeredBy: string): void {
    this.screen.carrier(answeredBy, this.inbound?.position ?? 0);
  }
}

/** The machine's screening input for a call, or undefined when it is not screened (inbound, SCREENING_MAX_MS=0). */
export function screeningInput(config: Config, session: Session, outbound: boolean, firstWords: string | undefined): ScreeningInput | undefined {
  if (!outbound || config.screeningMaxMs === 0) return undefined;
  return { voicemail: session.voicemail ?? config.voicemail, message: session.voicemailMessage ?? firstWords ?? "" };
}
