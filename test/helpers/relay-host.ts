import { EventEmitter } from "node:events";
import type { RelayHost, UtteranceOptions } from "../../src/responders/relay/host.ts";
import type { InterruptMode } from "../../src/responders/relay/protocol.ts";
import { waitForChange } from "./wait.ts";

/**
 * The call side of the Responder seam, recording what a responder asks of it. This is the seam itself (the lead's
 * runtime implements it for real calls), not a stand-in for a networked part.
 */
export class RecordingHost extends EventEmitter implements RelayHost {
  callSid = "CA0123456789abcdef0123456789abcdef";
  from: string | null = "+15550001111";
  to: string | null = "+15550002222";
  direction = "inbound";
  readonly says: Array<{ text: string; opts: UtteranceOptions | undefined }> = [];
  readonly ends: Array<{ reason: string; handoffData: unknown }> = [];
  readonly plays: Array<{ mulaw: Uint8Array; opts: UtteranceOptions | undefined }> = [];
  readonly digits: string[] = [];
  readonly interruptible: Array<{ turnId: number; interruptible: InterruptMode }> = [];
  /** Speech languages the responder switched to; "xx-XX" is one this host's TTS cannot speak. */
  readonly ttsLanguages: string[] = [];
  /** "say" / "play", in the order the host got them. */
  readonly order: string[] = [];
  readonly events: Array<{ type: string; data: Record<string, unknown> | undefined }> = [];
  /** Leave hooks out to act as a host without the relay extensions. */
  constructor(private readonly withExtensions = true) {
    super();
    if (!withExtensions) {
      this.playAudio = undefined;
      this.sendDigits = undefined;
      this.replyInterruptible = undefined;
      this.setTtsLanguage = undefined;
    }
  }

  say(text: string, opts?: UtteranceOptions): void {
    this.says.push({ text, opts });
    this.order.push("say");
    this.emit("change");
  }
  end(reason: string, handoffData?: unknown): void {
    this.ends.push({ reason, handoffData });
    this.emit("change");
  }
  playAudio? = (mulaw: Uint8Array, opts?: UtteranceOptions): void => {
    this.plays.push({ mulaw, opts });
    this.order.push("play");
    this.emit("change");
  };
  sendDigits? = (digits: string): void => {
    this.digits.push(digits);
    this.emit("change");
  };
  replyInterruptible? = (turnId: number, interruptible: InterruptMode): void => {
    this.interruptible.push({ turnId, interruptible });
    this.emit("change");
  };
  setTtsLanguage? = (language: string): string | undefined => {
    if (language === "xx-XX") return `cannot speak language "${language}"`;
    this.ttsLanguages.push(language);
    this.emit("change");
    return undefined;
  };
  record(type: string, data?: Record<string, unknown>): void {
    this.events.push({ type, data });
    this.emit("change");
  }
  now(): number {
    return performance.timeOrigin + performance.now();
  }

  eventsOf(type: string): Array<Record<string, unknown> | undefined> {
    return this.events.filter((e) => e.type === type).map((e) => e.data);
  }

  waitFor(pred: () => boolean, what = "condition", timeoutMs = 5000): Promise<void> {
    return waitForChange(this, pred, timeoutMs, () => `RecordingHost: timed out waiting for ${what}; events: ${this.events.map((e) => e.type).join(", ")}`);
  }
}
