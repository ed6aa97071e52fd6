import { fromCallback, fromPromise } from "xstate";
import { clipOf, tonesOf, type AgentInput, type CallEvent, type SpeakerCommand, type SpeakerInput } from "../../machines/call.machine.ts";
import { dtmfMulaw } from "../audio/dtmf.ts";
import { ClauseChunker } from "../providers/agent/clauses.ts";
import type { SttProvider, TtsChunk, TtsProvider, TtsStream, VoiceChoice } from "../providers/types.ts";
import type { Responder } from "../responders/responder.ts";
import type { Clock } from "../util/clock.ts";
import type { InboundAudio } from "./inbound.ts";
import type { Playout } from "./playout.ts";
import type { PreemptiveReply } from "./preemptive.ts";
import type { SpeechCache } from "./speech-cache.ts";
import type { ClipStore } from "./clips.ts";
import type { PlayoutTicker } from "./ticker.ts";
import type { TurnTimeline } from "./turn-timeline.ts";
import { errorMessage as message } from "../util/errors.ts";

/** What one call's actors need: its own pipeline halves plus the process-wide providers. */
export interface CallIo {
  callSid: string;
  clock: Clock;
  inbound: InboundAudio;
  playout: Playout;
  ticker: PlayoutTicker;
  timeline: TurnTimeline;
  stt: SttProvider;
  tts: TtsProvider;
  /** The call's voice and language (its session's): passed to the providers, which map them to their own. */
  voice: VoiceChoice;
  /** The call's brain: the cascade's agent, a relay app, or an assistant driving turns. */
  responder: Responder;
  preemptive: PreemptiveReply;
  speechCache: SpeechCache;
  /** Recordings waiting to be played as announcements (a relay app's `play`). */
  clips: ClipStore;
  record(type: string, data?: Record<string, unknown>): void;
  /** For live observers only (not the record). */
  live(type: string, data?: Record<string, unknown>): void;
  /** A stable transcript before the caller's turn is confirmed over (for a preemptive reply). */
  stable(text: string): void;
  /** End the call at the carrier now (REST hang-up, socket closed); saying goodbye is the machine's business. */
  endCarrierCall(reason: string): Promise<void>;
}


/**
 * The recogniser session, open while the call is active. Audio goes from the pipeline straight to the session; only
 * the transcript comes back to the machine. Every utterance gets a TRANSCRIPT (empty on failure), so the machine never
 * waits for one that will not come.
 */
export function sttSessionLogic(io: CallIo) {
  return fromCallback<{ type: string }, { callSid: string }>(({ sendBack }) => {
    const session = io.stt.openSession({
      callId: io.callSid,
      ...(io.voice.language ? { language: io.voice.language } : {}),
      onPartial: (text) => io.live("transcript.partial", { text }),
      onStable: (text) => io.stable(text),
    });
    let open = true;
    // Bound to the stream of this activation: after a drop, a new activation binds to the new stream.
    const inbound = io.inbound;
    inbound.setSink({
      start: () => session.start(),
      push: (pcm) => session.push(pcm),
      pushMulaw: session.pushMulaw ? (bytes) => session.pushMulaw!(bytes) : undefined,
      pause: session.pause ? () => session.pause!() : undefined,
      resume: session.resume ? () => session.resume!() : undefined,
      end: () => {
        session.finish().then(
          (t) => {
            if (!open) return;
            io.timeline.transcript(io.clock.now());
            io.record("transcript", { text: t.text, final: true, confidence: t.confidence ?? null });
            sendBack({ type: "TRANSCRIPT", text: t.text } satisfies CallEvent);
          },
          (err) => {
            if (!open) return;
            io.timeline.transcript(io.clock.now());
            io.record("stt.error", { provider: io.stt.name, message: message(err) });
            sendBack({ type: "TRANSCRIPT", text: "" } satisfies CallEvent);
          },
        );
      },
    });
    return () => {
      open = false;
      inbound.setSink(null);
      session.close();
    };
  });
}

/**
 * One agent turn: streams the reply to the machine in speakable clauses, and the agent's actions as they come.
 * A reply started preemptively on the same text is taken over. Stopping the actor aborts the request.
 */
export function agentTurnLogic(io: CallIo) {
  return fromCallback<{ type: string }, AgentInput>(({ input, sendBack }) => {
    const ac = new AbortController();
    const { turnId } = input;
    io.timeline.mark(turnId, "agentRequestAt", io.clock.now());
    const pre = io.preemptive.take(input.userText, input.history);
    if (pre) io.record("agent.preemptive_used", { turnId });
    (async () => {
      const chunker = new ClauseChunker();
      const emit = (text: string) => {
        if (!ac.signal.aborted) sendBack({ type: "AGENT.TEXT", turnId, text: `${text} ` } satisfies CallEvent);
      };
      for await (const item of pre ?? io.responder.respond({ turnId, history: input.history, userText: input.userText, signal: ac.signal })) {
        if (ac.signal.aborted) return;
        if (typeof item !== "string") {
          // What was said before the action is spoken first.
          chunker.flush().forEach(emit);
          io.record("agent.action", { turnId, action: item });
          sendBack({ type: "AGENT.ACTION", turnId, action: item } satisfies CallEvent);
          continue;
        }
        if (io.timeline.mark(turnId, "agentFirstTextAt", io.clock.now())) io.record("agent.first_text", { turnId });
        chunker.push(item).forEach(emit);
      }
      chunker.flush().forEach(emit);
      if (!ac.signal.aborted) sendBack({ type: "AGENT.DONE", turnId } satisfies CallEvent);
    })().catch((err) => {
      if (!ac.signal.aborted) sendBack({ type: "AGENT.ERROR", turnId, error: message(err) } satisfies CallEvent);
    });
    return () => {
      ac.abort();
      pre?.abort();
    };
  });
}

type SpeakItem = { kind: "text"; text: string } | { kind: "tones"; digits: string } | { kind: "end" };

/**
 * Speaks one utterance: text (fixed, or streamed in from the agent) -> TTS -> the call's playout. Fixed phrases come
 * from the speech cache, so they start without waiting for synthesis. A provider that streams a whole utterance
 * (one context per turn) gets every clause of a reply in one stream. Stopping the actor (barge-in, hang-up) aborts
 * synthesis and interrupts playout at once, which sends `clear` if the caller may still be hearing it.
 */
export function speakerLogic(io: CallIo) {
  return fromCallback<SpeakerCommand, SpeakerInput>(({ input, sendBack, receive }) => {
    const { turnId } = input;
    const ac = new AbortController();
    const playout = io.playout; // this utterance plays on the stream that is open now
    const queue: SpeakItem[] = [];
    let wake: (() => void) | null = null;
    const push = (item: SpeakItem) => {
      queue.push(item);
      wake?.();
    };

    // A mark echo comes every MARK_EVERY_MS while the caller listens, but the heard text moves only at word boundaries:
    // the machine hears of it only when it changed (an event costs a macrostep, the hottest work per call at scale).
    let heard = "";
    playout.begin(
      turnId,
      {
        started: () => sendBack({ type: "PLAYBACK.STARTED", turnId } satisfies CallEvent),
        progress: (heardText) => {
          if (heardText === heard) return;
          heard = heardText;
          sendBack({ type: "PLAYBACK.PROGRESS", turnId, heardText } satisfies CallEvent);
        },
        done: (heardText) => sendBack({ type: "PLAYBACK.DONE", turnId, heardText } satisfies CallEvent),
      },
      io.clock.now(),
    );

    /** Audio into the playout; word times shift by where this audio starts in the utterance. */
    const play = async (chunks: AsyncIterable<TtsChunk> | Iterable<TtsChunk>, base: number) => {
      for await (const chunk of chunks) {
        if (ac.signal.aborted) return;
        if (io.timeline.mark(turnId, "ttsFirstByteAt", io.clock.now())) io.record("tts.first_byte", { turnId });
        const words = base ? chunk.words.map((w) => ({ text: w.text, startMs: w.startMs + base })) : chunk.words;
        playout.append(turnId, chunk.mulaw, words);
        io.ticker.add(playout);
      }
    };
    const streaming = input.kind === "reply" && typeof io.tts.openStream === "function";

    const run = async () => {
      let stream: TtsStream | null = null;
      let drained: Promise<void> | null = null;
      const closeStream = async () => {
        if (!stream) return;
        stream.end();
        await drained;
        stream = null;
        drained = null;
      };
      for (;;) {
        if (!queue.length) await new Promise<void>((r) => (wake = r));
        wake = null;
        if (ac.signal.aborted) return;
        const item = queue.shift()!;
        if (item.kind === "text") {
          io.timeline.mark(turnId, "ttsRequestAt", io.clock.now());
          const digits = input.kind === "reply" ? null : tonesOf(item.text);
          const clip = input.kind === "reply" ? null : clipOf(item.text);
          if (clip !== null) {
            const audio = io.clips.take(clip);
            if (!audio) throw new Error(`no audio for clip ${clip}`);
            await play([{ mulaw: audio, words: [] }], playout.queuedMs(turnId));
          } else if (digits !== null) {
            playout.append(turnId, dtmfMulaw(digits), []);
            io.ticker.add(playout);
            io.record("dtmf.sent", { turnId, digits });
          } else if (input.kind !== "reply") await play(await io.speechCache.get(item.text, io.voice), playout.queuedMs(turnId));
          else if (streaming) {
            if (!stream) {
              stream = io.tts.openStream!(ac.signal, { callId: io.callSid, voice: io.voice });
              const s = stream;
              drained = play(s, playout.queuedMs(turnId));
              // A failing stream must surface now, not when the utterance ends.
              drained.catch((err) => fail(err));
            }
            stream.write(item.text);
          } else await play(io.tts.synthesize(item.text, ac.signal, io.voice), playout.queuedMs(turnId));
        } else if (item.kind === "tones") {
          await closeStream();
          playout.append(turnId, dtmfMulaw(item.digits), []);
          io.ticker.add(playout);
          io.record("dtmf.sent", { turnId, digits: item.digits });
        } else {
          await closeStream();
          if (ac.signal.aborted) return;
          playout.end(turnId);
          io.ticker.add(playout);
          return;
        }
      }
    };

    let failed = false;
    const fail = (err: unknown) => {
      if (failed || ac.signal.aborted) return;
      failed = true;
      io.record("tts.error", { turnId, provider: io.tts.name, message: message(err) });
      sendBack({ type: "PLAYBACK.ERROR", turnId, error: message(err) } satisfies CallEvent);
    };
    run().catch(fail);

    receive((cmd) => {
      if (cmd.type === "SPEAKER.TEXT") {
        if (cmd.text.trim()) push({ kind: "text", text: cmd.text.trim() });
      } else if (cmd.type === "SPEAKER.TONES") push({ kind: "tones", digits: cmd.digits });
      else push({ kind: "end" });
    });
    if (input.text !== undefined) {
      if (input.text.trim()) push({ kind: "text", text: input.text.trim() });
      push({ kind: "end" });
    }

    return () => {
      ac.abort();
      wake?.();
      playout.interrupt(turnId, io.clock.now());
    };
  });
}

export function endCarrierCallLogic(io: CallIo) {
  return fromPromise<void, { reason: string }>(({ input }) => io.endCarrierCall(input.reason));
}
