import { createActor, type Subscription } from "xstate";
import { callMachine, type CallActor, type CallEmitted } from "../../machines/call.machine.ts";
import type { InboundMessage } from "../telephony/media-stream-codec.ts";
import { OutboundSerializer } from "../telephony/media-stream-codec.ts";
import { applyEvent, emptyRecord, type CallRecord, type RecordEvent } from "../store/call-record.ts";
import type { Journal } from "../store/call-store.ts";
import { agentTurnLogic, hangupLogic, speakerLogic, sttSessionLogic, type CallIo } from "./actors.ts";
import { InboundAudio } from "./inbound.ts";
import { Playout } from "./playout.ts";
import type { Services } from "./services.ts";
import { TurnTimeline } from "./turn-timeline.ts";

/** The socket side of a media stream, as the runtime needs it. */
export interface StreamSocket {
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export interface CallInit {
  callSid: string;
  from?: string;
  to?: string;
  direction?: string;
}

type StartMessage = Extract<InboundMessage, { event: "start" }>;

const EMITTED: CallEmitted["type"][] = ["turn.user", "turn.assistant", "barge-in", "greeting.delivered", "greeting.failed", "agent.error", "hangup"];

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
  private readonly io: CallIo;
  private socket: StreamSocket | null = null;
  private streamSid: string | null = null;
  private inbound: InboundAudio | null = null;
  private playout: Playout | null = null;
  private lastState = "";
  private finished = false;
  private readonly subscription: Subscription;
  private readonly listeners = new Set<(e: RecordEvent) => void>();

  constructor(
    private readonly services: Services,
    init: CallInit,
    private readonly onFinished: (call: CallRuntime) => void,
  ) {
    const { config, clock } = services;
    this.callSid = init.callSid;
    this.record = emptyRecord(init.callSid, clock.now());
    this.journal = services.store.journal(init.callSid);
    this.record_("call.created", { from: init.from ?? null, to: init.to ?? null, direction: init.direction ?? null });

    // Filled in when the stream attaches; the actors that use them only run once it has.
    this.io = {
      callSid: init.callSid,
      clock,
      timeline: this.timeline,
      stt: services.stt,
      tts: services.tts,
      agent: services.agent,
      speechCache: services.speechCache,
      ticker: services.ticker,
      record: (type, data) => this.record_(type, data),
      hangup: (reason) => this.closeSocket(1000, reason),
      get inbound(): InboundAudio {
        throw new Error("no media stream attached");
      },
      get playout(): Playout {
        throw new Error("no media stream attached");
      },
    } as CallIo;

    const machine = callMachine.provide({
      actors: {
        sttSession: sttSessionLogic(this.io),
        agentTurn: agentTurnLogic(this.io),
        speaker: speakerLogic(this.io),
        hangup: hangupLogic(this.io),
      },
      delays: {
        silenceTimeout: config.silenceTimeoutMs,
        maxDuration: config.maxDurationSeconds * 1000,
        transcriptTimeout: config.transcriptTimeoutMs,
        connectTimeout: 30_000,
      },
    });
    this.actor = createActor(machine, {
      input: { callSid: init.callSid, greetingText: config.greeting, limits: { silencePrompts: config.silencePrompts } },
    });
    for (const type of EMITTED) this.actor.on(type, (e) => this.onEmitted(e as CallEmitted));
    this.subscription = this.actor.subscribe({
      next: (snap) => {
        const key = JSON.stringify(snap.value);
        if (key !== this.lastState) {
          this.lastState = key;
          this.record_("state", { value: snap.value });
        }
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

  /** Follow this call's events as they are recorded (for SSE and the visualizer). */
  subscribe(fn: (e: RecordEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  attach(socket: StreamSocket, start: StartMessage): void {
    const { config, vad, clock } = this.services;
    this.socket = socket;
    this.streamSid = start.streamSid;
    const inbound = new InboundAudio(
      vad,
      { threshold: config.vadThreshold, minSpeechMs: config.vadMinSpeechMs, minSilenceMs: config.vadMinSilenceMs },
      {
        speechStarted: (ev) => {
          this.record_("speech.started", { startSample: ev.startSample, confirmedSample: ev.confirmedSample });
          this.actor.send({ type: "SPEECH.STARTED" });
        },
        speechEnded: (ev) => {
          this.timeline.speechEnded(clock.now());
          this.record_("speech.ended", { startSample: ev.startSample, endSample: ev.endSample, confirmedSample: ev.confirmedSample });
          this.actor.send({ type: "SPEECH.ENDED" });
        },
      },
    );
    const playout = new Playout(
      (data) => this.socket?.send(data),
      new OutboundSerializer(start.streamSid),
      { leadMs: config.playoutLeadMs, markEveryMs: config.markEveryMs, maxQueuedMs: 300_000 },
      {
        firstFrame: (turnId) => {
          this.timeline.mark(turnId, "firstFrameAt", clock.now());
          this.record_("playout.first_frame", { turnId });
        },
        markEchoed: (turnId, heardMs, final) => this.record_("mark", { turnId, heardMs, final }),
        cleared: (turnId, unplayedMs) => this.record_("clear", { turnId, unplayedMs }),
        dropped: (turnId, bytes) => this.record_("playout.error", { turnId, message: `outbound queue full: dropped ${bytes} bytes` }),
      },
    );
    this.inbound = inbound;
    this.playout = playout;
    Object.defineProperty(this.io, "inbound", { value: inbound });
    Object.defineProperty(this.io, "playout", { value: playout });
    this.record_("stream.started", { streamSid: start.streamSid, tracks: start.tracks, mediaFormat: start.mediaFormat });
    this.actor.send({ type: "STREAM.STARTED", streamSid: start.streamSid });
  }

  /** A message after `start`. Never throws: a bad message is counted and logged, and the call goes on. */
  onMessage(msg: InboundMessage): void {
    try {
      if ("streamSid" in msg && msg.streamSid !== this.streamSid) {
        this.protocolError("wrong_stream", `streamSid ${msg.streamSid} on stream ${this.streamSid}`);
        return;
      }
      switch (msg.event) {
        case "media":
          if (!this.inbound!.pushPayload(msg.payload)) this.protocolError("bad_payload", `media chunk ${msg.chunk}: payload is not valid base64 audio`);
          break;
        case "mark":
          this.playout!.onMark(msg.name);
          break;
        case "dtmf":
          this.record_("dtmf", { digit: msg.digit });
          this.actor.send({ type: "DTMF", digit: msg.digit });
          break;
        case "stop":
          this.record_("stream.stopped", {});
          this.actor.send({ type: "STREAM.CLOSED", reason: "caller hung up" });
          break;
        case "start":
          this.protocolError("duplicate_start", "a second start on one stream");
          break;
        case "connected":
          break;
      }
    } catch (err) {
      this.fail(err);
    }
  }

  protocolError(kind: string, detail: string): void {
    this.services.log.warn({ callSid: this.callSid, kind, detail }, "media stream protocol error");
    this.record_("protocol.error", { kind, detail });
  }

  /** The socket closed (by Twilio, the network, or us). */
  socketClosed(code: number, reason: string): void {
    this.socket = null;
    if (!this.finished) {
      this.record_("stream.closed", { code, reason });
      this.actor.send({ type: "STREAM.CLOSED", reason: reason || `socket closed (${code})` });
    }
  }

  /** Control-plane hang-up: say goodbye, then end. */
  hangup(reason: string): void {
    this.actor.send({ type: "HANGUP", reason });
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
        const turn = { turnId: e.turnId, role: "assistant", kind: e.kind, text: e.text.trim(), heardText: e.heardText.trim(), interrupted: e.interrupted, at: t, latency };
        this.record_("turn", { turn });
        void this.flush();
        break;
      }
      case "barge-in":
        this.record_("barge-in", { turnId: e.turnId, heardText: e.heardText });
        break;
      case "greeting.failed":
        this.record_("greeting.error", { attempts: e.attempts, message: e.error });
        break;
      case "agent.error":
        this.record_("agent.error", { turnId: e.turnId, message: e.error });
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
    for (const fn of this.listeners) {
      try {
        fn(e);
      } catch {
        // A broken observer must not break the call.
      }
    }
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
    this.record_("call.error", { message: err instanceof Error ? err.message : String(err) });
    this.finish("internal error");
  }

  private finish(reason: string): void {
    if (this.finished) return;
    this.finished = true;
    this.record_("call.ended", { reason });
    if (this.playout?.activeTurn != null) this.playout.interrupt(this.playout.activeTurn, this.services.clock.now());
    if (this.playout) this.services.ticker.remove(this.playout);
    this.inbound?.close();
    void this.closeSocket(1000, reason);
    if (this.actor.getSnapshot().status === "active") this.actor.stop();
    this.subscription.unsubscribe();
    this.journal.close().catch((err) => this.services.log.error({ err, callSid: this.callSid }, "call record close failed"));
    this.services.log.info({ callSid: this.callSid, reason, turns: this.record.turns.length }, "call ended");
    this.onFinished(this);
  }
}
