import type { ResponderHost } from "../responder.ts";
import type { InterruptMode } from "./protocol.ts";

/** How an utterance the app starts on its own may be cut. */
export interface UtteranceOptions {
  /** Cut what is playing now and speak at once (the app's previous message was `preemptible`). */
  interrupt?: boolean;
  /** What of the caller's may cut it (the app's `interruptible`: "any", "speech", "dtmf" or "none"). */
  interruptible?: InterruptMode;
}

/**
 * What the relay responder can use beyond {@link ResponderHost}. Every addition is optional, so any ResponderHost is
 * a RelayHost; where a hook is missing the responder records that it could not honour the app, and tells the app.
 */
export interface RelayHost extends ResponderHost {
  say(text: string, opts?: UtteranceOptions): void;
  playAudio?(mulaw: Uint8Array, opts?: UtteranceOptions): void;
  /** Play touch tones outside a reply (an app's `sendDigits` between turns). In a reply they are a `send_dtmf` item. */
  sendDigits?(digits: string): void;
  /** What of the caller's may cut the reply of this turn, from now on (a reply starts as "any"). */
  replyInterruptible?(turnId: number, mode: InterruptMode): void;
  /** Speak this language (BCP-47) from the next utterance on; returns why not when the call's TTS cannot. */
  setTtsLanguage?(language: string): string | undefined;
}
