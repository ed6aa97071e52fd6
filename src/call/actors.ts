import { fromCallback, fromPromise } from "xstate";
import type { AgentInput, CallEvent, SpeakerCommand, SpeakerInput } from "../../machines/call.machine.ts";
import { ClauseChunker } from "../providers/agent/clauses.ts";
import type { AgentProvider, SttProvider, TtsChunk, TtsProvider } from "../providers/types.ts";
import type { Clock } from "../util/clock.ts";
import type { InboundAudio } from "./inbound.ts";
import type { Playout } from "./playout.ts";
import type { SpeechCache } from "./speech-cache.ts";
import type { PlayoutTicker } from "./ticker.ts";
import type { TurnTimeline } from "./turn-timeline.ts";

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
  agent: AgentProvider;
  speechCache: SpeechCache;
  record(type: string, data?: Record<string, unknown>): void;
  /** For live observers only (not the record). */
  live(type: string, data?: Record<string, unknown>): void;
  hangup(reason: string): Promise<void>;
}

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

/**
 * The recogniser session, open while the call is active. Audio goes from the pipeline straight to the session; only
 * the transcript comes back to the machine. Every utterance gets a TRANSCRIPT (empty on failure), so the machine never
 * waits for one that will not come.
 */
export function sttSessionLogic(io: CallIo) {
  return fromCallback<{ type: string }, { callSid: string }>(({ sendBack }) => {
    const session = io.stt.openSession({ callId: io.callSid, onPartial: (text) => io.live("transcript.partial", { text }) });
    let open = true;
    // Bound to the stream of this activation: after a drop, a new activation binds to the new stream.
    const inbound = io.inbound;
    inbound.setSink({
      start: () => session.start(),
      push: (pcm) => session.push(pcm),
      end: () => {
        session.finish().then(
          (t) => {
            if (!open) return;
            io.timeline.transcript(io.clock.now());
            io.record("transcript", { text: t.text, final: true });
            sendBack({ type: "TRANSCRIPT", text: t.text } satisfies CallEvent);
          },
          (err) => {
            if (!open) return;
            io.record("stt.error", { message: message(err) });
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

/** One agent turn: streams the reply to the machine in speakable clauses. Stopping the actor aborts the request. */
export function agentTurnLogic(io: CallIo) {
  return fromCallback<{ type: string }, AgentInput>(({ input, sendBack }) => {
    const ac = new AbortController();
    const { turnId } = input;
    io.timeline.mark(turnId, "agentRequestAt", io.clock.now());
    (async () => {
      const chunker = new ClauseChunker();
      const emit = (text: string) => {
        if (!ac.signal.aborted) sendBack({ type: "AGENT.TEXT", turnId, text: `${text} ` } satisfies CallEvent);
      };
      for await (const delta of io.agent.respond({ history: input.history, userText: input.userText, signal: ac.signal })) {
        if (ac.signal.aborted) return;
        if (io.timeline.mark(turnId, "agentFirstTextAt", io.clock.now())) io.record("agent.first_text", { turnId });
        chunker.push(delta).forEach(emit);
      }
      chunker.flush().forEach(emit);
      if (!ac.signal.aborted) sendBack({ type: "AGENT.DONE", turnId } satisfies CallEvent);
    })().catch((err) => {
      if (!ac.signal.aborted) sendBack({ type: "AGENT.ERROR", turnId, error: message(err) } satisfies CallEvent);
    });
    return () => ac.abort();
  });
}

/**
 * Speaks one utterance: text (fixed, or streamed in from the agent) -> TTS -> the call's playout. Fixed phrases come
 * from the speech cache, so they start without waiting for synthesis. Stopping the actor (barge-in, hang-up) aborts
 * synthesis and interrupts playout at once, which sends `clear` if the caller may still be hearing it.
 */
export function speakerLogic(io: CallIo) {
  return fromCallback<SpeakerCommand, SpeakerInput>(({ input, sendBack, receive }) => {
    const { turnId } = input;
    const ac = new AbortController();
    const playout = io.playout; // this utterance plays on the stream that is open now
    const texts: string[] = [];
    let ended = false;
    let endApplied = false;
    let running = false;

    playout.begin(
      turnId,
      {
        started: () => sendBack({ type: "PLAYBACK.STARTED", turnId } satisfies CallEvent),
        progress: (heardText) => sendBack({ type: "PLAYBACK.PROGRESS", turnId, heardText } satisfies CallEvent),
        done: (heardText) => sendBack({ type: "PLAYBACK.DONE", turnId, heardText } satisfies CallEvent),
      },
      io.clock.now(),
    );

    const source = (text: string): AsyncIterable<TtsChunk> | Promise<TtsChunk[]> =>
      input.kind === "reply" ? io.tts.synthesize(text, ac.signal) : io.speechCache.get(text);

    const pump = async (): Promise<void> => {
      if (running) return;
      running = true;
      try {
        while (texts.length && !ac.signal.aborted) {
          const text = texts.shift()!;
          const base = playout.queuedMs(turnId);
          const chunks = source(text);
          for await (const chunk of chunks instanceof Promise ? await chunks : chunks) {
            if (ac.signal.aborted) return;
            if (io.timeline.mark(turnId, "ttsFirstByteAt", io.clock.now())) io.record("tts.first_byte", { turnId });
            const words = base ? chunk.words.map((w) => ({ text: w.text, startMs: w.startMs + base })) : chunk.words;
            playout.append(turnId, chunk.mulaw, words);
            io.ticker.add(playout);
          }
        }
        if (ended && !ac.signal.aborted && !texts.length) {
          endApplied = true;
          playout.end(turnId);
          io.ticker.add(playout);
        }
      } catch (err) {
        if (!ac.signal.aborted) {
          io.record("tts.error", { turnId, message: message(err) });
          sendBack({ type: "PLAYBACK.ERROR", turnId, error: message(err) } satisfies CallEvent);
        }
        texts.length = 0;
        endApplied = true;
      } finally {
        running = false;
      }
      // Text or the end may have arrived while this pass was finishing.
      if (!ac.signal.aborted && (texts.length || (ended && !endApplied))) void pump();
    };

    const say = (text: string) => {
      if (text.trim()) texts.push(text.trim());
      void pump();
    };
    receive((cmd) => {
      if (cmd.type === "SPEAKER.TEXT") say(cmd.text);
      else {
        ended = true;
        void pump();
      }
    });
    if (input.text !== undefined) {
      ended = true;
      say(input.text);
    }

    return () => {
      ac.abort();
      playout.interrupt(turnId, io.clock.now());
    };
  });
}

export function hangupLogic(io: CallIo) {
  return fromPromise<void, { reason: string }>(({ input }) => io.hangup(input.reason));
}
