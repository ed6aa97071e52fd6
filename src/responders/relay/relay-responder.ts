import { randomBytes } from "node:crypto";
import type { CallerTurn, Interruption, Responder, ResponderHost, ResponderItem } from "../responder.ts";
import { isDigitsText } from "../../../machines/call.types.ts";
import { AppLink } from "./app-link.ts";
import { relayWireUrl } from "./connect.ts";
import type { RelayHost, UtteranceOptions } from "./host.ts";
import { OutOfTurnSpeech } from "./out-of-turn.ts";
import { fetchForPlay } from "./play-audio.ts";
import type { AppEnd, AppPlay, AppText, ParleyToApp } from "./protocol.ts";
import { handoffValue, interruptMode, parseAppMessage } from "./protocol.ts";
import { type RelayResponderOptions, setupMessage } from "./options.ts";
import { TalkCycle } from "./talk-cycle.ts";
import { type TurnEnd, TurnStream } from "./turn-stream.ts";

export type { RelayResponderOptions } from "./options.ts";

/** Ten invalid frames in a row and Twilio closes the socket with 1007; Parley does the same. */
const MAX_CONSECUTIVE_INVALID = 10;

/**
 * The brain of a call is a ConversationRelay app: Parley plays Twilio's side of the WebSocket protocol, so an app
 * written for Twilio runs unchanged. The caller's final transcript goes out as `prompt`; the app's `text` tokens come
 * back as the reply. What the app says outside a turn, its `play`, `sendDigits` and `end` go through the host.
 */
export class RelayResponder implements Responder {
  readonly kind = "relay" as const;
  readonly speculates = false;
  private host: RelayHost | null = null;
  private link: AppLink | null = null;
  private speech: OutOfTurnSpeech | null = null;
  private turn: TurnStream | null = null;
  private cycle = new TalkCycle((count) => this.host!.record("relay.late_tokens_dropped", { count }));
  private invalidStreak = 0;
  private abandon = new AbortController();
  private state: "new" | "live" | "ended" | "failed" | "closed" = "new";
  private pendingEnd: { handoffData: unknown } | null = null;
  private readonly sessionId: string;
  private languages: { tts?: string; transcription?: string } = {};
  /** Why the session failed, for the host's record and apology (null while it has not). */
  failureReason: string | null = null;
  /** Sent again if the socket it went out on drops before any of the reply came. */
  private prompt = { text: "", onSocket: false };
  private langNoted = false;

  constructor(private readonly opts: RelayResponderOptions) {
    relayWireUrl(opts.url); // a bad URL is a configuration error, thrown now rather than found on the first call
    this.sessionId = opts.sessionId ?? `VX${randomBytes(16).toString("hex")}`;
  }

  /** The app could not be reached (or misbehaved) and the call is being ended: the host may apologise first. */
  get failed(): boolean {
    return this.state === "failed";
  }

  /** Languages the app asked for with `language` (speech switches; the recogniser keeps the call's language). */
  get requestedLanguages(): { tts?: string; transcription?: string } {
    return { ...this.languages };
  }

  async open(host: ResponderHost): Promise<void> {
    if (this.state !== "new") return;
    this.state = "live";
    const h: RelayHost = (this.host = host);
    this.speech = new OutOfTurnSpeech(h, this.opts.flushAfterMs ?? 1000);
    this.link = new AppLink(
      this.opts.url,
      { authToken: this.opts.authToken, connectTimeoutMs: this.opts.connectTimeoutMs ?? 5000, retryDelayMs: this.opts.retryDelayMs ?? 200 },
      () => setupMessage(this.opts, this.sessionId, h),
      {
        message: (raw) => this.onFrame(raw),
        connected: (attempt) => this.onConnected(attempt),
        unreachable: (why) => this.fail("relay app unreachable", why, 39001),
        record: (type, data) => h.record(type, data),
      },
    );
    await this.link.connect();
  }

  async *respond(turn: CallerTurn): AsyncGenerator<ResponderItem> {
    if (this.state !== "live" || turn.signal.aborted) return;
    if (!turn.userText.trim()) {
      this.host!.record("relay.prompt_skipped", { turnId: turn.turnId, why: "nothing recognised" }); // Twilio sends no empty prompts
      return;
    }
    if (isDigitsText(turn.userText)) {
      // Twilio sends the app touch tones only as `dtmf` frames (already sent, digit by digit), never as a prompt.
      this.host!.record("relay.prompt_skipped", { turnId: turn.turnId, why: "touch tones go to the app as dtmf messages" });
      return;
    }
    this.endTurn("superseded");
    this.speech!.endCycle(); // out-of-turn text still gathered is said before the reply
    const t = new TurnStream(turn.turnId, this.opts.replyTimeoutMs ?? 30_000, (stalled) => {
      this.host!.record("relay.reply_timeout", { turnId: stalled.turnId, tokens: stalled.pushed });
      if (this.turn === stalled) this.endTurn("timeout");
    });
    this.turn = t;
    this.cycle.prompted(); // late tokens of a cut cycle end here: what follows answers this prompt
    this.sendPrompt(turn.userText);
    const onAbort = () => (this.turn === t ? this.endTurn("aborted") : t.finish("aborted"));
    turn.signal.addEventListener("abort", onAbort, { once: true });
    try {
      for (;;) {
        const item = await t.next();
        if (item === null || turn.signal.aborted) return;
        yield item;
      }
    } finally {
      turn.signal.removeEventListener("abort", onAbort);
      if (this.turn === t) this.endTurn("aborted"); // the consumer stopped early
      if (this.pendingEnd) this.scheduleEnd(); // the app ended the session during this reply
    }
  }

  interrupted(i: Interruption): void {
    if (this.state !== "live") return;
    this.send({ type: "interrupt", utteranceUntilInterrupt: i.heardText, durationUntilInterruptMs: Math.max(0, Math.round(i.durationMs)) });
    this.cycle.cut();
    this.endTurn("aborted"); // nothing more of this reply, even if the runtime has not aborted the turn yet
    this.speech!.drop();
  }

  dtmf(digit: string): void {
    if (this.state !== "live" || this.opts.dtmfDetection === false) return;
    this.send({ type: "dtmf", digit });
  }

  close(reason: string): void {
    if (this.state === "closed") return;
    if (this.state === "live") this.host?.record("relay.closed", { reason });
    this.state = "closed";
    this.abandon.abort();
    this.endTurn("closed");
    this.speech?.close();
    this.link?.close(1000, "call ended");
  }

  private onConnected(attempt: number): void {
    if (attempt === 1) return;
    this.cycle.close(false); // the old socket's talk cycle died with it
    const t = this.turn;
    if (!t || !this.prompt.onSocket) return; // a prompt kept during the reconnect has just gone out
    // The app lost the prompt with the old socket: ask again if nothing of the reply came; else keep what came.
    if (t.pushed === 0) {
      this.host!.record("relay.prompt_resent", { turnId: t.turnId });
      this.cycle.prompted();
      this.sendPrompt(this.prompt.text);
    } else this.endTurn("dropped");
  }

  private sendPrompt(text: string): void {
    this.prompt = { text, onSocket: this.link?.isOpen ?? false }; // else it is kept and goes out after the next setup
    this.send({ type: "prompt", voicePrompt: text, lang: this.opts.lang ?? "en-US", last: true });
  }

  private send(msg: ParleyToApp): void {
    if (!this.link?.send(msg)) this.host?.record("relay.not_sent", { type: msg.type });
  }

  private onFrame(raw: string): void {
    if (this.state !== "live") return;
    const parsed = parseAppMessage(raw);
    if (!parsed.ok) return this.invalid(parsed.description);
    this.invalidStreak = 0;
    const m = parsed.message;
    switch (m.type) {
      case "text":
        return this.onText(m);
      case "play":
        return this.onPlay(m);
      case "sendDigits":
        if (this.turn) return this.turn.push({ type: "send_dtmf", digits: m.digits });
        if (this.host!.sendDigits) return this.host!.sendDigits(m.digits);
        return this.unsupported("sendDigits outside a reply is not supported by this Parley host");
      case "language":
        return this.onLanguage(m.ttsLanguage, m.transcriptionLanguage);
      case "end":
        return this.onEnd(m);
    }
  }

  private onText(m: AppText): void {
    const last = m.last === true;
    if (this.cycle.discarding) {
      this.cycle.drop();
      if (last) this.closeCycle(m);
      return;
    }
    if (m.lang && !this.langNoted) {
      this.langNoted = true; // once per session: Parley's TTS keeps its voice
      this.host!.record("relay.unhonoured", { what: "text.lang", lang: m.lang });
    }
    const interruptible = interruptMode(m.interruptible ?? this.opts.interruptible ?? "any");
    const t = this.turn;
    if (t) {
      this.cycle.open = true;
      t.touch();
      // The host assumes a reply may be cut (Parley's default); it is told when this reply's setting differs.
      if (interruptible !== (t.interruptible ?? "any")) {
        t.interruptible = interruptible;
        if (this.host!.replyInterruptible) this.host!.replyInterruptible(t.turnId, interruptible);
        else this.unsupported(`interruptible "${interruptible}" is not supported by this Parley host`);
      }
      if (m.token) t.push(m.token);
      if (last) {
        this.closeCycle(m);
        this.endTurn("last"); // what follows is a new cycle, said by the host
      }
      return;
    }
    const opts: UtteranceOptions = { interruptible };
    if (!this.cycle.open) opts.interrupt = this.cycle.takePreempt();
    this.cycle.open = true;
    this.speech!.token(m.token, last, opts);
    if (last) this.closeCycle(m);
  }

  /**
   * The reply stops taking frames at once (its generator still hands out what it holds, unless aborted or closed):
   * whatever the app sends next is not part of it. A reply cut before its `last` leaves its cycle to be discarded.
   */
  private endTurn(why: TurnEnd): void {
    const t = this.turn;
    if (!t) return;
    this.turn = null;
    t.finish(why);
    if (why !== "last" && why !== "dropped") this.cycle.cut();
  }

  /** A talk cycle ended with `last: true`; its `preemptible` decides whether the next one may cut it. */
  private closeCycle(m: AppText): void {
    this.cycle.close(m.preemptible ?? this.opts.preemptible ?? false);
  }

  private onPlay(m: AppPlay): void {
    const host = this.host!;
    if (!host.playAudio) return this.unsupported("play is not supported by this Parley host");
    const opts: UtteranceOptions = {
      interrupt: this.cycle.takePreempt(),
      interruptible: interruptMode(m.interruptible ?? this.opts.interruptible ?? "any"),
    };
    this.cycle.played(m.preemptible ?? this.opts.preemptible ?? false);
    const audio = fetchForPlay(m, this.opts.play, this.abandon.signal, host).catch((err: unknown) => {
      if (this.state !== "live") return null;
      const description = err instanceof Error ? err.message : String(err);
      host.record("relay.play_error", { source: m.source, message: description });
      this.send({ type: "error", description });
      return null;
    });
    this.speech!.play(audio, opts);
  }

  private onEnd(m: AppEnd): void {
    this.host!.record("relay.end", { handoffData: m.handoffData ?? null });
    this.state = "ended";
    this.pendingEnd = { handoffData: handoffValue(m.handoffData) };
    this.link!.close(1000, "session ended");
    if (this.turn) this.endTurn("ended"); // the reply's generator delivers the end once its tokens are out
    else {
      this.speech!.endCycle();
      this.scheduleEnd();
    }
  }

  /** `end` reaches the host after everything the app sent before it has been handed over (a `play` may be fetching). */
  private scheduleEnd(): void {
    void this.speech!.whenDrained().then(() => {
      const end = this.pendingEnd;
      if (!end || this.state !== "ended") return;
      this.pendingEnd = null;
      this.host!.end("relay app ended the session", end.handoffData);
    });
  }

  private invalid(description: string): void {
    this.invalidStreak++;
    this.host!.record("relay.invalid_message", { description, streak: this.invalidStreak });
    this.send({ type: "error", description });
    if (this.invalidStreak >= MAX_CONSECUTIVE_INVALID) {
      this.link!.close(1007, "Too many consecutive malformed messages.");
      this.fail("relay app sent too many malformed messages", description, 64105);
    }
  }

  /**
   * The app switches language. Speech switches from the next utterance (the call's TTS takes the language; an eSpeak
   * call without a voice of its own moves to that language's voice). The recogniser's stream was opened in the call's
   * language and is not reopened mid-call: a transcription language is recorded and the app told.
   */
  private onLanguage(tts: string | undefined, transcription: string | undefined): void {
    if (tts) {
      const problem = this.host!.setTtsLanguage ? this.host!.setTtsLanguage(tts) : "this Parley host cannot switch its speech language";
      if (problem) this.unsupported(`language: ttsLanguage ${JSON.stringify(tts)}: ${problem}`);
      else this.languages.tts = tts;
    }
    if (transcription) {
      this.languages.transcription = transcription;
      this.host!.record("relay.unhonoured", { what: "transcriptionLanguage", language: transcription });
    }
    this.host!.record("relay.language", { ...this.languages });
  }

  private unsupported(description: string): void {
    this.host!.record("relay.unsupported", { description });
    this.send({ type: "error", description });
  }

  /** The session cannot go on: record why, stop the reply, and have the host end the call (it may apologise first). */
  private fail(reason: string, why: string, errorCode: number): void {
    if (this.state !== "live") return;
    this.state = "failed";
    this.failureReason = `${reason}: ${why}`;
    this.host!.record("relay.error", { reason, message: why, errorCode });
    this.endTurn("failed");
    this.speech!.close();
    this.host!.end(reason, { sessionStatus: "failed", errorCode, errorMessage: why });
  }
}
