import { APOLOGY_TEXT, CLIP_PREFIX, TONES_PREFIX, type BargeIn, type CallActor } from "../../machines/call.machine.ts";
import type { ClipStore } from "./clips.ts";
import { AskError, AssistantResponder, type AskResult } from "../responders/assistant.ts";
import type { Responder } from "../responders/responder.ts";
import type { RelayHost } from "../responders/relay/host.ts";
import type { InterruptMode } from "../responders/relay/protocol.ts";
import type { Clock } from "../util/clock.ts";

/** What may cut an utterance, for a relay app's `interruptible` mode (undefined: the machine's default, anything). */
function bargeInOf(mode: InterruptMode | undefined): BargeIn | undefined {
  return mode === undefined ? undefined : { speech: mode === "any" || mode === "speech", dtmf: mode === "any" || mode === "dtmf" };
}

/**
 * Between a call and its responder: the host the responder acts through (speak, end, play audio, record), opened when
 * the call's first stream starts and closed when the call is over. The machine keeps the floor: everything here goes
 * in as the same events the control API sends.
 */
export class ResponderBridge {
  private opened = false;
  private closed = false;
  /** How much of each turn's audio the caller heard, from the marks (for a relay app's `interrupt`). */
  private readonly heardMs = new Map<number, number>();

  constructor(
    readonly responder: Responder,
    private readonly facts: { callSid: string; from: string | null; to: string | null; direction: string },
    private readonly actor: () => CallActor,
    private readonly deps: {
      clock: Clock;
      clips: ClipStore;
      record(type: string, data?: Record<string, unknown>): void;
      fail(err: unknown): void;
      /** Switch the call's speech language; returns why not. */
      setTtsLanguage?(language: string): string | undefined;
    },
  ) {}

  /** The call's media is up (first stream): connect the responder. Later streams of the same call change nothing. */
  open(): void {
    if (this.opened || this.closed) return;
    this.opened = true;
    const host: RelayHost = {
      ...this.facts,
      say: (text, o) => this.actor().send({ type: "SAY", text, interrupt: !!o?.interrupt, bargeIn: bargeInOf(o?.interruptible) }),
      end: (reason, handoffData) => {
        if (handoffData !== undefined) this.deps.record("handoff", { data: handoffData });
        // A brain that failed (a relay app that cannot be reached) leaves the caller an apology, never dead air.
        if ((this.responder as { failed?: boolean }).failed) this.actor().send({ type: "SAY", text: APOLOGY_TEXT, interrupt: false });
        this.actor().send({ type: "END", reason });
      },
      sendDigits: (digits: string) => this.actor().send({ type: "SAY", text: `${TONES_PREFIX}${digits}`, interrupt: false }),
      playAudio: (mulaw, o) => {
        const id = this.deps.clips.add(mulaw);
        if (id === null) this.deps.record("play.error", { message: "too many recordings waiting to be played; this one is dropped" });
        else this.actor().send({ type: "SAY", text: `${CLIP_PREFIX}${id}`, interrupt: !!o?.interrupt, bargeIn: bargeInOf(o?.interruptible) });
      },
      // The machine owns the floor: it keeps the reply playing through input that may not cut it.
      replyInterruptible: (turnId, mode) => this.actor().send({ type: "REPLY.INTERRUPTIBLE", turnId, ...bargeInOf(mode)! }),
      ...(this.deps.setTtsLanguage ? { setTtsLanguage: (language: string) => this.deps.setTtsLanguage!(language) } : {}),
      record: (type, data) => this.deps.record(type, data),
      now: () => this.deps.clock.now(),
    };
    try {
      const r = this.responder.open?.(host);
      if (r instanceof Promise) r.catch((err) => this.deps.fail(err));
    } catch (err) {
      this.deps.fail(err);
    }
  }

  /** A mark told how much of a turn was heard. */
  heard(turnId: number, ms: number): void {
    this.heardMs.set(turnId, ms);
    if (this.heardMs.size > 8) this.heardMs.delete(this.heardMs.keys().next().value!);
  }

  bargeIn(turnId: number, heardText: string): void {
    this.responder.interrupted?.({ turnId, heardText, durationMs: this.heardMs.get(turnId) ?? 0 });
  }

  dtmf(digit: string): void {
    this.responder.dtmf?.(digit);
  }

  /** Control-plane speech: an assistant's waiting turn takes it as its reply; otherwise it is an announcement. */
  say(text: string, interrupt: boolean): void {
    if (this.responder instanceof AssistantResponder && this.opened) this.responder.say(text, interrupt);
    else this.actor().send({ type: "SAY", text, interrupt });
  }

  ask(text: string, timeoutMs: number): Promise<AskResult> {
    if (!(this.responder instanceof AssistantResponder)) return Promise.reject(new AskError('ask needs a call whose session has agent "assistant"', 409));
    if (!this.opened) return Promise.reject(new AskError("the call's media stream has not started yet", 409));
    return this.responder.ask(text, timeoutMs);
  }

  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.responder.close(reason);
    } catch {
      // Closing a brain must not stop the call's teardown.
    }
  }
}
