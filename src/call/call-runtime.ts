import { createActor, type Subscription } from "xstate";
import { callMachine, TONES_PREFIX, type AgentAction, type CallActor, type CallEmitted } from "../../machines/call.machine.ts";
import { END_STATUSES, type Carrier, type EndStatus as CarrierEnd, type Inbound, type StreamStart } from "../carriers/carrier.ts";
import { applyEvent, emptyRecord, type CallRecord, type RecordEvent } from "../store/call-record.ts";
import type { Journal } from "../store/call-store.ts";
import { CallScreening, screeningInput } from "./call-screening.ts";
import { agentTurnLogic, endCarrierCallLogic, speakerLogic, sttSessionLogic, type CallIo } from "./actors.ts";
import type { InboundAudio } from "./inbound.ts";
import type { Playout } from "./playout.ts";
import type { Services } from "./services.ts";
import { PreemptiveReply } from "./preemptive.ts";
import { warmProviders } from "../providers/warm.ts";
import { TurnTimeline } from "./turn-timeline.ts";
import { errorMessage } from "../util/errors.ts";
import { voiceOf, type Session } from "../session/session.ts";
import { createResponder } from "../responders/create.ts";
import type { AskResult } from "../responders/assistant.ts";
import { ResponderBridge } from "./responder-bridge.ts";
import { ClipStore } from "./clips.ts";
import { CallRecording, isRecorded, withRecordingNotice } from "../recording/call-recording.ts";
import { openStreamPipeline, ProtocolErrorLog, WATCHDOG_CLOSE_CODE, type StreamWatch, type WatchdogKind } from "./stream-binding.ts";

// The runtime's types live beside it; importers keep working.
export { REPLACED_CLOSE_CODE, type CallDirection, type CallInit, type StatusUpdate, type StreamSocket } from "./runtime-types.ts";
import { REPLACED_CLOSE_CODE, type CallDirection, type CallInit, type StatusUpdate, type StreamSocket } from "./runtime-types.ts";

const EMITTED: CallEmitted["type"][] = [
  "turn.user",
  "turn.assistant",
  "barge-in",
  "greeting.delivered",
  "greeting.failed",
  "agent.error",
  "stream.resumed",
  "call.error",
  "hangup",
  "screening.decided",
  "screening.transcript",
  "voicemail.ready",
];

/**
 * One call: its root actor plus the pipeline that feeds it. The runtime turns socket messages into pipeline work and
 * semantic events, records every moment that matters, and contains faults: an error in this call ends this call,
 * cleanly recorded, and nothing else.
 */
export class CallRuntime {
  readonly callSid: string;
  readonly actor: CallActor;
  readonly record: CallRecord;
  private readonly journal: Journal;
  private readonly timeline = new TurnTimeline();
  private readonly preemptive: PreemptiveReply;
  private readonly io: CallIo;
  private socket: StreamSocket | null = null;
  private streamSid: string | null = null;
  /** The carrier said `stop`: the caller hung up, so the socket's close is not a drop. */
  private stopped = false;
  private readonly statusesSeen = new Set<string>();
  private inbound: InboundAudio | null = null;
  private playout: Playout | null = null;
  private watch: StreamWatch | null = null;
  private readonly protocolErrors = new ProtocolErrorLog((counts) => this.reportProtocolErrors(counts));
  private lastState = "";
  private finished = false;
  private readonly subscription: Subscription;
  private readonly listeners = new Set<(e: RecordEvent) => void>();
  private readonly bridge: ResponderBridge;
  private readonly clips = new ClipStore();
  /** An outbound call being screened for who answered; null when it is not (inbound, SCREENING_MAX_MS=0, restored). */
  private readonly screening: CallScreening | null;
  /** Null when the call is not recorded (session `record`, else RECORD_CALLS). */
  private readonly recording: CallRecording | null;

  readonly direction: CallDirection;
  readonly session: Session;
  readonly carrier: Carrier;
  /** The carrier's id for the call (Twilio: the CallSid, the same as `callSid`; Telnyx: `call_control_id`). */
  readonly carrierCallId: string | null;
  /** Set while the carrier hands the call over (src/call/transfer.ts): the stream's end is the transfer, not a hang-up. */
  handingOver: string | null = null;
  /** The agent asked to hand the call to a human (its `transfer_call` tool); the call manager starts the transfer. */
  onAgentTransfer: ((action: Extract<AgentAction, { type: "transfer_call" }>) => void) | null = null;

  constructor(
    private readonly services: Services,
    init: CallInit,
    private readonly onFinished: (call: CallRuntime) => void,
  ) {
    const { config, clock } = services;
    this.callSid = init.callSid;
    this.direction = init.direction ?? "inbound";
    this.carrier = init.carrier;
    this.carrierCallId = init.carrierCallId ?? init.restored?.record.carrierCallId ?? (init.carrier.callIds === "carrier" ? init.callSid : null);
    this.record = init.restored?.record ?? emptyRecord(init.callSid, clock.now());
    this.journal = services.store.journal(init.callSid);
    this.session = init.session ?? init.restored?.record.session ?? {};
    // A relay app speaks first itself if it wants to (Twilio's welcomeGreeting is optional): no greeting of ours.
    const relay = typeof this.session.agent === "object" || (!this.session.agent && !!services.config.agentRelayUrl);
    const greetingText = this.session.message ?? init.greetingText ?? (relay ? "" : undefined);
    const recorded = isRecorded(this.session, config);
    if (init.restored) this.record_("call.restored", { turns: init.restored.history.length });
    else
      this.record_("call.created", {
        from: init.from ?? null,
        to: init.to ?? null,
        direction: this.direction,
        carrier: this.carrier.name,
        carrierCallId: this.carrierCallId,
        mode: init.mode ?? "conversation",
        message: greetingText ?? null,
        session: this.session,
      });
    this.recording = recorded
      ? new CallRecording(services, init.callSid, (this.record.recording?.part ?? 0) + 1, {
          record: (type, data) => this.record_(type, data),
          afterEnd: (type, data) => this.appendAfterEnd(type, data),
        })
      : null;
    // Provider connections open while the phone rings (or the stream starts), so the first turn is not the slow one.
    const voice = voiceOf(this.session);
    warmProviders(services, init.callSid, voice);
    const self = this;
    this.bridge = new ResponderBridge(
      createResponder(this.session, services),
      { callSid: init.callSid, from: this.record.from, to: this.record.to, direction: this.direction },
      () => this.actor,
      {
        clock,
        clips: this.clips,
        record: (type, data) => this.record_(type, data),
        fail: (err) => this.fail(err),
        setTtsLanguage: (language) => this.setTtsLanguage(language),
      },
    );
    const responder = this.bridge.responder;
    // Speculation runs the responder on a guess; only a responder without side effects before confirmation may.
    this.preemptive = new PreemptiveReply({ name: "speculation", respond: (i) => responder.respond({ ...i, turnId: -1 }) });

    // Filled in when the stream attaches; the actors that use them only run once it has.
    this.io = {
      callSid: init.callSid,
      clock,
      timeline: this.timeline,
      stt: services.stt,
      tts: services.tts,
      voice,
      responder,
      preemptive: this.preemptive,
      speechCache: services.speechCache,
      clips: this.clips,
      stable: (text) => this.onStableTranscript(text),
      ticker: services.ticker,
      record: (type, data) => {
        this.record_(type, data);
        const action = type === "agent.action" ? (data?.action as AgentAction | undefined) : undefined;
        if (action?.type === "transfer_call") this.onAgentTransfer?.(action);
      },
      live: (type, data) => this.emitLive(type, data),
      endCarrierCall: (reason) => this.endCarrierCall(reason),
      get inbound(): InboundAudio {
        if (!self.inbound) throw new Error("no media stream attached");
        return self.inbound;
      },
      get playout(): Playout {
        if (!self.playout) throw new Error("no media stream attached");
        return self.playout;
      },
    };

    const machine = callMachine.provide({
      actors: {
        sttSession: sttSessionLogic(this.io),
        agentTurn: agentTurnLogic(this.io),
        speaker: speakerLogic(this.io),
        hangup: endCarrierCallLogic(this.io),
      },
      delays: {
        silenceTimeout: config.silenceTimeoutMs,
        // A restored call keeps its deadline, counted from its first stream on whichever instance that was.
        maxDuration: remainingMs(config.maxDurationSeconds * 1000, init.restored?.record.startedAt ?? null, clock.now()),
        transcriptTimeout: config.transcriptTimeoutMs,
        // Carriers give up ringing after the ring timeout (Twilio: +5 s); if the final status never comes, we stop too.
        ringTimeout: (config.ringTimeoutSeconds + 30) * 1000,
        streamTimeout: config.streamTimeoutMs,
        resumeTimeout: config.resumeTimeoutMs,
        digitTimeout: config.dtmfTimeoutMs,
        screeningMax: config.screeningMaxMs,
        voicemailWait: config.voicemailMaxWaitMs,
      },
    });
    const screening = init.restored ? undefined : screeningInput(config, this.session, this.direction === "outbound", greetingText);
    this.screening = screening ? new CallScreening(config.vadThreshold, { send: (ev) => this.actor.send(ev), record: (type, data) => this.record_(type, data) }) : null;
    this.actor = createActor(machine, {
      // XState's inspection API reports each snapshot with the event that produced it. Only the root actor's, and
      // only when the active states change, become a "state" event: never per audio frame, never per child actor.
      inspect: (ev) => {
        if (ev.type !== "@xstate.snapshot" || ev.actorRef.sessionId !== ev.rootId) return;
        const value = (ev.snapshot as { value?: unknown }).value;
        const key = JSON.stringify(value);
        if (key === this.lastState) return;
        this.lastState = key;
        this.record_("state", { value, event: ev.event.type });
      },
      input: {
        callSid: init.callSid,
        mode: init.mode ?? "conversation",
        // A recorded call's consent notice comes first, in the same utterance as the first words.
        greetingText: withRecordingNotice(greetingText ?? config.greeting, this.session, config),
        limits: { silencePrompts: config.silencePrompts },
        answered: init.answered ?? true,
        restored: init.restored,
        ...(screening ? { screening } : {}),
      },
    });
    for (const type of EMITTED) this.actor.on(type, (e) => this.onEmitted(e as CallEmitted));
    this.subscription = this.actor.subscribe({
      next: (snap) => {
        if (snap.status === "done") this.finish(snap.context.hangupReason ?? "ended");
      },
      error: (err) => this.fail(err),
    });
    this.actor.start();
  }

  get state(): unknown {
    return this.actor.getSnapshot().value;
  }

  get live(): boolean {
    return !this.finished;
  }

  /** After the call has ended: an event for its record (the journal is closed, so appended on its own) and observers. */
  async appendAfterEnd(type: string, data: Record<string, unknown>): Promise<void> {
    const e: RecordEvent = { t: this.services.clock.now(), type, ...data };
    applyEvent(this.record, e);
    this.notify(e);
    await this.services.store.appendOnce(this.callSid, e);
  }

  /** Nothing more will be recorded: observers are let go (SSE streams close). */
  release(): void {
    this.emitLive("released", {});
    this.listeners.clear();
  }

  /** Follow this call's events as they are recorded (for SSE and the visualizer). */
  subscribe(fn: (e: RecordEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** A media stream for this call started: the first, or a new one after a drop. */
  attach(socket: StreamSocket, start: StreamStart): void {
    const { clock } = this.services;
    // The carrier opened a new stream before we noticed the old one die: it is gone all the same.
    if (this.actor.getSnapshot().matches({ live: "active" })) this.actor.send({ type: "STREAM.DROPPED", reason: "replaced by a new stream" });
    this.detachStream();
    const replaced = this.socket;
    this.socket = socket;
    if (replaced) {
      // Its close event is ignored from here on (it is no longer this call's socket): record it now.
      this.record_("stream.closed", { code: REPLACED_CLOSE_CODE, reason: "replaced by a new stream", stopped: false });
      replaced.close(REPLACED_CLOSE_CODE, "replaced by a new stream");
    }
    this.streamSid = start.streamId;
    this.stopped = false;
    const pipeline = openStreamPipeline(this.services, this.carrier.codec.writer(start), {
      send: (data) => this.socket?.send(data),
      record: (type, data) => {
        // How much of a turn was heard, for a relay app's `interrupt`.
        if (type === "mark" && data) this.bridge.heard(data.turnId as number, data.heardMs as number);
        this.record_(type, data);
      },
      speechStarted: (ev) => {
        this.preemptive.discard();
        this.record_("speech.started", { startSample: ev.startSample, confirmedSample: ev.confirmedSample });
        this.actor.send({ type: "SPEECH.STARTED" });
      },
      speechEnded: (ev) => {
        this.timeline.speechEnded(clock.now());
        this.record_("speech.ended", { startSample: ev.startSample, endSample: ev.endSample, confirmedSample: ev.confirmedSample });
        this.actor.send({ type: "SPEECH.ENDED" });
      },
      firstFrame: (turnId) => {
        this.timeline.mark(turnId, "firstFrameAt", clock.now());
        this.record_("playout.first_frame", { turnId });
      },
      lost: (watchdog, waitedMs) => this.watchdogFired(watchdog, waitedMs),
      check: (now) => this.protocolErrors.maybeReport(now),
      ...(this.recording ? { audioSent: this.recording.onSent, audioCut: this.recording.onCut } : {}),
    });
    this.inbound = pipeline.inbound;
    this.playout = pipeline.playout;
    this.watch = pipeline.watch;
    this.record_("stream.started", { streamSid: start.streamId, tracks: start.tracks, mediaFormat: start.format });
    this.recording?.streamStarted(pipeline.inbound);
    this.screening?.attach(pipeline.inbound);
    this.actor.send({ type: "STREAM.STARTED", streamSid: start.streamId });
    this.bridge.open();
  }

  /** A message after `start`. Never throws: a bad message is counted and logged, and the call goes on. */
  onMessage(msg: Inbound): void {
    try {
      if (msg.kind !== "start" && msg.kind !== "handshake" && msg.streamId !== undefined && msg.streamId !== this.streamSid) {
        this.protocolError("wrong_stream", `streamSid ${msg.streamId} on stream ${this.streamSid}`);
        return;
      }
      switch (msg.kind) {
        case "media":
          this.watch!.mediaAt = this.services.clock.now();
          if (!this.inbound!.pushPayload(msg.payload)) this.protocolError("bad_payload", `media payload of ${msg.payload.length} ${typeof msg.payload === "string" ? "characters is not valid base64 audio" : "bytes is not a usable audio frame"}`);
          break;
        case "mark":
          this.playout!.onMark(msg.name);
          break;
        case "cleared":
          break;
        case "carrier-error":
          this.protocolError("carrier_error", msg.detail);
          break;
        case "dtmf":
          this.record_("dtmf", { digit: msg.digit });
          this.bridge.dtmf(msg.digit);
          this.actor.send({ type: "DTMF", digit: msg.digit });
          break;
        case "stop":
          this.stopped = true;
          this.record_("stream.stopped", {});
          this.actor.send({ type: "STREAM.CLOSED", reason: this.handingOver ?? "caller hung up" });
          break;
        case "start":
          this.protocolError("duplicate_start", "a second start on one stream");
          break;
        case "handshake":
          break;
      }
    } catch (err) {
      this.fail(err);
    }
  }

  /** Counted per kind at once; logged and recorded at most once a second, with the count since (see ProtocolErrorLog). */
  protocolError(kind: string, detail: string): void {
    this.protocolErrors.add(kind, detail, this.services.clock.now());
  }

  private reportProtocolErrors(counts: { kind: string; count: number; detail: string }[]): void {
    const byKind: Record<string, number> = {};
    for (const c of counts) byKind[c.kind] = c.count;
    this.services.log.warn({ callSid: this.callSid, errors: byKind, detail: counts.at(-1)?.detail }, "media stream protocol errors");
    for (const c of counts) this.record_("protocol.error", { kind: c.kind, count: c.count, detail: c.detail });
  }

  /** A watchdog says the stream is gone though its socket is open: the same as a dropped socket, and it is closed. */
  private watchdogFired(watchdog: WatchdogKind, waitedMs: number): void {
    const s = this.socket;
    if (!s || this.finished) return;
    const reason = watchdog === "media" ? `no media for ${waitedMs} ms` : `mark not echoed after ${waitedMs} ms`;
    this.services.log.warn({ callSid: this.callSid, watchdog, waitedMs }, "media stream lost: watchdog fired");
    this.socketClosed(s, WATCHDOG_CLOSE_CODE, reason, { watchdog, waitedMs });
    s.close(WATCHDOG_CLOSE_CODE, reason);
  }

  /**
   * A socket of this call closed. After the carrier's `stop` the caller is gone; without it the socket dropped
   * (network, proxy, restart) while the call may still be up, and a carrier that can resume a stream will ask for a new
   * one (Twilio: the <Connect action> URL). A carrier that cannot (the browser) has hung up.
   */
  socketClosed(socket: StreamSocket, code: number, reason: string, watchdog?: { watchdog: string; waitedMs: number }): void {
    if (socket !== this.socket) return; // an old stream of this call, already replaced
    this.socket = null;
    if (this.finished) return;
    this.record_("stream.closed", { code, reason, stopped: this.stopped, ...watchdog });
    // The actor first, so its actors wind down against the stream they were using; then the stream goes.
    // A browser cannot come back on a new stream (its token was single use), so a dropped softphone has hung up.
    if (this.handingOver) this.actor.send({ type: "STREAM.CLOSED", reason: this.handingOver });
    else if (this.stopped || !this.carrier.resume) this.actor.send({ type: "STREAM.CLOSED", reason: watchdog ? `media stream lost: ${reason}` : "caller hung up" });
    else this.actor.send({ type: "STREAM.DROPPED", reason: reason || `socket closed (${code})` });
    this.detachStream();
  }

  /**
   * The process is shutting down. The call itself is not over: the carrier will ask whoever runs next for a new stream
   * (Twilio: the <Connect action> URL), which restores the call from its record. So the record is flushed without an end.
   */
  shutdown(): void {
    if (this.finished) return;
    // What was being said when the process went away is recorded, with what the caller heard of it.
    if (this.actor.getSnapshot().matches({ live: "active" })) this.actor.send({ type: "STREAM.DROPPED", reason: "server shutting down" });
    this.finish("server shutting down", "suspended");
  }

  /** End the call here at once, recorded as an error: its carrier would not let it go on (e.g. the answer failed). */
  abandon(reason: string): void {
    if (this.finished) return;
    this.record_("call.error", { message: reason });
    this.finish(reason);
  }

  /** Control-plane hang-up: the machine says goodbye (`farewell`, or the standard words), then ends the call (see endCarrierCall). */
  sayGoodbyeAndHangUp(reason: string, farewell?: string): void {
    this.actor.send(farewell ? { type: "HANGUP", reason, farewell } : { type: "HANGUP", reason });
  }

  /** Control-plane speech (for an assistant-driven call, the reply its waiting turn is waiting for). */
  say(text: string, interrupt: boolean): void {
    this.bridge.say(text, interrupt);
  }

  /** Say `text` and resolve with what the callee says next (assistant-driven calls). */
  ask(text: string, timeoutMs: number): Promise<AskResult> {
    return this.bridge.ask(text, timeoutMs);
  }

  /** An event for the call's record from outside the call (a transfer's steps). */
  note(type: string, data: Record<string, unknown>): void {
    if (!this.finished) this.record_(type, data);
    else void this.appendAfterEnd(type, data);
  }

  /** Control-plane touch tones into the call, as their own utterance. */
  sendDigits(digits: string): void {
    this.actor.send({ type: "SAY", text: `${TONES_PREFIX}${digits}`, interrupt: false });
  }

  /**
   * Whether the carrier gets a new stream when it asks for one (Twilio: the <Connect action> URL). It only asks once a
   * stream has ended, so any call not on its way out wants one, even if we have not yet seen the old socket close.
   */
  get wantsStream(): boolean {
    const snap = this.actor.getSnapshot();
    return !this.finished && (snap.matches("connecting") || snap.matches("live"));
  }

  /**
   * A call status from the carrier, in Parley's words (`carrierStatus` is the carrier's own, kept in the record);
   * duplicates and late ones are recorded once and change nothing.
   */
  onStatus(s: StatusUpdate): boolean {
    if (this.statusesSeen.has(s.status)) return false;
    this.statusesSeen.add(s.status);
    this.record_("call.status", { status: s.status, carrierStatus: s.carrierStatus, sequence: s.sequence ?? null, duration: s.durationS ?? null, answeredBy: s.answeredBy ?? null });
    if (s.answeredBy) this.screening?.carrier(s.answeredBy);
    if (s.status === "answered") this.actor.send({ type: "CALL.ANSWERED" });
    else if (END_STATUSES.has(s.status)) this.actor.send({ type: "CALL.ENDED", status: s.status as CarrierEnd });
    return true;
  }

  /** The carrier's asynchronous answering-machine detection (Twilio's AsyncAmdStatusCallback): evidence for screening. */
  onCarrierAmd(answeredBy: string, detectionMs: number | null): void {
    this.record_("screening.carrier", { answeredBy, detectionMs });
    this.screening?.carrier(answeredBy);
  }

  private onEmitted(e: CallEmitted): void {
    const t = this.services.clock.now();
    switch (e.type) {
      case "turn.user":
        this.timeline.beginTurn(e.turnId);
        this.record_("turn", { turn: { turnId: e.turnId, role: "user", text: e.text, at: t } });
        break;
      case "turn.assistant": {
        const latency = e.kind === "reply" ? this.timeline.latency(e.turnId) : undefined;
        this.timeline.end(e.turnId);
        const turn = { turnId: e.turnId, role: "assistant", kind: e.kind, text: e.text.trim(), heardText: e.heardText.trim(), interrupted: e.interrupted, ...(e.failed ? { failed: true } : {}), at: t, latency };
        this.record_("turn", { turn });
        void this.flush();
        break;
      }
      case "greeting.failed":
        this.record_("greeting.error", { attempts: e.attempts, message: e.error });
        break;
      case "barge-in":
        this.record_("barge-in", { turnId: e.turnId, heardText: e.heardText, by: e.by });
        this.bridge.bargeIn(e.turnId, e.heardText);
        break;
      case "agent.error":
        this.record_("agent.error", { turnId: e.turnId, message: e.error });
        break;
      case "screening.transcript":
        this.record_("screening.transcript", { text: e.text });
        this.screening?.transcript(e.text);
        break;
      default: {
        const { type, ...data } = e;
        this.record_(type, data);
      }
    }
  }

  private record_(type: string, data: Record<string, unknown> = {}): void {
    const e: RecordEvent = { t: this.services.clock.now(), type, ...data };
    applyEvent(this.record, e);
    this.journal.append(e);
    this.services.metrics.observe(e);
    this.notify(e);
  }

  /**
   * A stable transcript while the caller's turn is still open: start the reply now on what the turn will most likely
   * be, so its first words are ready when the turn is confirmed. Discarded if the caller keeps talking.
   */
  private onStableTranscript(text: string): void {
    if (!this.bridge.responder.speculates) return;
    const snap = this.actor.getSnapshot();
    if (!snap.matches({ live: { active: "callerSpeaking" } }) && !snap.matches({ live: { active: "awaitingTranscript" } })) return;
    const userText = `${snap.context.pendingUserText} ${text}`.trim();
    if (!userText) return;
    this.emitLive("agent.preemptive_started", { text: userText });
    this.preemptive.start(userText, snap.context.history);
  }

  /** A brain switched the speech language mid-call: the next utterance is in it, if the TTS can speak it. */
  private setTtsLanguage(language: string): string | undefined {
    const next = { ...this.io.voice, language };
    const problem = this.services.tts.voiceProblem?.(next);
    if (problem) return problem;
    this.io.voice = next;
    this.record_("voice.changed", { ...next });
    return undefined;
  }

  /** Events for live observers only (partial transcripts): too many and too fleeting for the record. */
  private emitLive(type: string, data: Record<string, unknown> = {}): void {
    if (!this.listeners.size) return;
    const e: RecordEvent = { t: this.services.clock.now(), type, ...data };
    this.notify(e);
  }

  private notify(e: RecordEvent): void {
    for (const fn of this.listeners) {
      try {
        fn(e);
      } catch {
        // A broken observer must not break the call.
      }
    }
  }

  private detachStream(): void {
    this.preemptive.discard();
    if (this.watch) this.services.ticker.unwatch(this.watch);
    this.watch = null;
    if (this.playout) {
      if (this.playout.activeTurn != null) this.playout.interrupt(this.playout.activeTurn, this.services.clock.now());
      this.services.ticker.remove(this.playout);
      this.services.stats.underrunMs += this.playout.underrunMs;
    }
    this.inbound?.close();
    this.inbound = null;
    this.playout = null;
  }

  /**
   * End the call at the carrier, now, with nothing said: through its REST API when we can (it ends the call whatever
   * state it is in), and close the socket. The machine's `ending` state runs this.
   */
  private async endCarrierCall(reason: string): Promise<void> {
    const id = this.carrierCallId;
    if (this.carrier.hangUp && id) {
      try {
        await this.carrier.hangUp(id);
        this.record_("call.hangup_requested", { via: "rest", reason });
      } catch (err) {
        this.record_("rest.error", { operation: "hangup", message: errorMessage(err) });
      }
    }
    await this.closeSocket(1000, reason);
  }

  private flush(): Promise<void> {
    return this.journal.flush().catch((err) => this.services.log.error({ err, callSid: this.callSid }, "call record write failed"));
  }

  private closeSocket(code: number, reason: string): Promise<void> {
    const s = this.socket;
    this.socket = null;
    try {
      s?.close(code, reason.slice(0, 120));
    } catch {
      // Already closed.
    }
    return Promise.resolve();
  }

  private fail(err: unknown): void {
    if (this.finished) return;
    this.services.log.error({ err, callSid: this.callSid }, "call failed");
    this.record_("call.error", { message: errorMessage(err) });
    this.finish("internal error");
  }

  /** Tear the call down here: `ended` when the call is over, `suspended` when only this process is going away. */
  private finish(reason: string, how: "ended" | "suspended" = "ended"): void {
    if (this.finished) return;
    this.protocolErrors.flush(this.services.clock.now());
    this.finished = true;
    this.record_(`call.${how}`, { reason });
    this.bridge.close(reason);
    this.detachStream();
    this.recording?.finish();
    void this.closeSocket(how === "ended" ? 1000 : 1001, reason);
    if (this.actor.getSnapshot().status === "active") this.actor.stop();
    this.subscription.unsubscribe();
    this.journal.close().catch((err) => this.services.log.error({ err, callSid: this.callSid }, "call record close failed"));
    this.services.log.info({ callSid: this.callSid, reason, turns: this.record.turns.length }, `call ${how}`);
    this.emitLive("end", { reason });
    // An ended call still has its outcome to come (the manager writes it, then releases the observers).
    if (how === "suspended") this.release();
    this.onFinished(this);
  }
}

/** What is left of a call's `maxMs` from `startedAt` (its first stream), or all of it when it has not started. */
export function remainingMs(maxMs: number, startedAt: number | null, now: number): number {
  return startedAt === null ? maxMs : Math.max(0, startedAt + maxMs - now);
}
