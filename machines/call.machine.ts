import { assign, emit, enqueueActions, fromCallback, fromPromise, raise, sendTo, setup, type ActorRefFrom } from "xstate";
import {
  ANY_BARGE_IN,
  APOLOGY_TEXT,
  digitsText,
  goodbyeText,
  REASON_AGENT_ENDED,
  REASON_DELIVERED,
  REASON_MAX_DURATION,
  REASON_SILENT,
  SILENCE_PROMPT_TEXT,
  tonesOf,
  clipOf,
  type AgentInput,
  type BargeIn,
  type CallContext,
  type CallEmitted,
  type CallEvent,
  type CallInput,
  type ChatTurn,
  type SpeakerCommand,
  type SpeakerInput,
} from "./call.types.ts";
import { afterHeld, heldSpeechEnded, heldTranscript, NOTHING_HELD, releaseHeld } from "./call.held.ts";

export * from "./call.types.ts";

/**
 * One phone call: its lifecycle (connecting -> live -> ending -> ended; live is active, or reconnecting while the
 * carrier brings a dropped stream back) and, while active, who has the floor (greeting, listening, caller speaking, thinking,
 * speaking, ...). The machine is pure: it decides; the actors and delays it names are provided by the call runtime
 * (`machine.provide`), which owns every side effect. Audio never passes through here: the pipeline sends semantic
 * events (speech started/ended, transcript, playback progress).
 */

/** The part of `enqueueActions`' enqueue that finishUtterance uses. */
type UtteranceEnd = "done" | "interrupted" | "failed";

interface Enqueue {
  assign(values: Partial<CallContext>): void;
  emit(event: CallEmitted): void;
}

/**
 * Record the utterance being spoken as a turn, and keep in history only what the caller heard. It ends played out,
 * interrupted (someone else took the floor or the stream went), or failed (speech synthesis broke off).
 */
function finishUtterance(context: CallContext, enqueue: Enqueue, end: UtteranceEnd): void {
  const s = context.speaking;
  if (!s) return;
  const cut = end !== "done";
  const failed = end === "failed";
  if (cut && !s.started) {
    // A failure is on the record even when nothing was heard; the turn, like a discarded reply, leaves the
    // caller's words pending for the next turn.
    if (failed) enqueue.emit({ type: "turn.assistant", turnId: context.turnId, kind: s.kind, text: s.text.trim(), heardText: "", interrupted: false, failed });
    enqueue.assign({ speaking: null });
    return;
  }
  const tones = tonesOf(s.text);
  const clip = clipOf(s.text);
  const text = tones !== null ? `(pressed ${tones})` : clip !== null ? "(played audio)" : s.text.trim();
  const heardText = tones !== null || clip !== null ? text : (cut ? s.heardText : s.text).trim();
  enqueue.emit({ type: "turn.assistant", turnId: context.turnId, kind: s.kind, text, heardText, interrupted: end === "interrupted", failed });
  const added: ChatTurn[] = [];
  if (s.kind === "reply" && context.pendingUserText) added.push({ role: "user", content: context.pendingUserText });
  if (heardText) added.push({ role: "assistant", content: heardText });
  enqueue.assign({ history: [...context.history, ...added], speaking: null, ...(s.kind === "reply" ? { pendingUserText: "" } : {}) });
}

const callSetup = setup({
  types: {
    context: {} as CallContext,
    events: {} as CallEvent,
    input: {} as CallInput,
    emitted: {} as CallEmitted,
  },
  actors: {
    // Placeholders: the runtime provides the real ones.
    sttSession: fromCallback<{ type: string }, { callSid: string }>(() => {}),
    speaker: fromCallback<SpeakerCommand, SpeakerInput>(() => {}),
    agentTurn: fromCallback<{ type: string }, AgentInput>(() => {}),
    hangup: fromPromise<void, { reason: string }>(async () => {}),
  },
  delays: {
    silenceTimeout: 12_000,
    maxDuration: 1_800_000,
    transcriptTimeout: 4_000,
    ringTimeout: 120_000,
    streamTimeout: 10_000,
    resumeTimeout: 15_000,
    digitTimeout: 1_500,
  },
  guards: {
    greetingPending: ({ context }) => !context.greetingDelivered && context.greetingText.trim().length > 0,
    canRetryGreeting: ({ context }) => context.greetingAttempts < 3,
    canPrompt: ({ context }) => context.silencePromptsUsed < context.silencePromptLimit,
    lastTranscript: ({ context }) => context.transcriptsPending <= 1,
    isCurrentTurn: ({ context, event }) => "turnId" in event && event.turnId === context.turnId,
    isNotify: ({ context }) => context.mode === "notify",
    answered: ({ context }) => context.answered,
    hasAnnouncement: ({ context }) => context.announcements.length > 0,
    sayInterrupts: ({ event }) => event.type === "SAY" && event.interrupt,
    endAfterReply: ({ context }) => context.endAfterReply,
    // The utterance playing may not be cut this way: the caller's input waits (see `held`).
    speechHeld: ({ context }) => context.speaking?.bargeIn.speech === false,
    dtmfHeld: ({ context }) => context.speaking?.bargeIn.dtmf === false,
    heldSpeaking: ({ context }) => context.held.speaking,
    heldTranscripts: ({ context }) => context.held.transcripts > 0,
    heldThen: ({ context }, to: string) => afterHeld(context) === to,
  },
  actions: {
    nextTurn: assign({ turnId: ({ context }) => context.turnId + 1 }),
    startSpeaking: assign({
      speaking: (_, p: { kind: NonNullable<CallContext["speaking"]>["kind"]; text: string; bargeIn?: BargeIn }) =>
        ({ ...p, bargeIn: p.bargeIn ?? ANY_BARGE_IN, heardText: "", started: false }),
    }),
    setBargeIn: assign({
      speaking: ({ context, event }) =>
        context.speaking && event.type === "REPLY.INTERRUPTIBLE" ? { ...context.speaking, bargeIn: { speech: event.speech, dtmf: event.dtmf } } : context.speaking,
    }),
    holdSpeech: assign({ held: ({ context }) => ({ ...context.held, speaking: true }) }),
    heldEnded: assign({ held: ({ context }) => heldSpeechEnded(context.held) }),
    heldTranscript: assign({ held: ({ context, event }) => (event.type === "TRANSCRIPT" ? heldTranscript(context.held, event.text) : context.held) }),
    releaseHeld: assign(({ context }) => releaseHeld(context)),
    noteHeard: assign({
      speaking: ({ context, event }) =>
        context.speaking && "heardText" in event ? { ...context.speaking, heardText: event.heardText } : context.speaking,
    }),
    noteStarted: assign({ speaking: ({ context }) => (context.speaking ? { ...context.speaking, started: true } : null) }),
    finishSpeaking: enqueueActions(({ context, enqueue }, params: { end: UtteranceEnd }) => finishUtterance(context, enqueue as unknown as Enqueue, params.end)),
    /** Someone else takes the floor (speech, a key press, the control API): stop the utterance, keep what was heard. */
    interruptSpeaking: enqueueActions(({ context, enqueue }, params: { by: "speech" | "dtmf" | "api" }) => {
      const s = context.speaking;
      if (s?.started) enqueue.emit({ type: "barge-in", turnId: context.turnId, heardText: s.heardText.trim(), by: params.by });
      finishUtterance(context, enqueue as unknown as Enqueue, "interrupted");
    }),
    addTranscript: assign({
      pendingUserText: ({ context, event }) =>
        event.type === "TRANSCRIPT" && event.text.trim() ? `${context.pendingUserText} ${event.text.trim()}`.trim() : context.pendingUserText,
      transcriptsPending: ({ context }) => Math.max(0, context.transcriptsPending - 1),
    }),
    appendDigit: assign({ digits: ({ context, event }) => (event.type === "DTMF" ? context.digits + event.digit : context.digits) }),
    foldDigits: assign({
      pendingUserText: ({ context }) => (context.digits ? `${context.pendingUserText} ${digitsText(context.digits)}`.trim() : context.pendingUserText),
      digits: "",
    }),
    queueAnnouncement: assign({
      announcements: ({ context, event }) =>
        event.type !== "SAY" ? context.announcements : event.interrupt ? [event, ...context.announcements] : [...context.announcements, event],
    }),
    countStream: assign({ streams: ({ context }) => context.streams + 1 }),
  },
});

/** The caller starts talking over an utterance their speech may not cut: it plays on, their words wait. */
const HOLD = { guard: "speechHeld", actions: "holdSpeech" } as const;

/** Say a fixed line (the silence prompt, the apology), then listen; the caller may talk over it. */
const cannedLine = (text: string) =>
  callSetup.createStateConfig({
    entry: ["nextTurn", { type: "startSpeaking", params: { kind: "prompt" as const, text } }],
    invoke: { id: "speaker", src: "speaker", input: ({ context }) => ({ turnId: context.turnId, kind: "prompt" as const, text }) },
    on: {
      "PLAYBACK.STARTED": { guard: "isCurrentTurn", actions: "noteStarted" },
      "PLAYBACK.PROGRESS": { guard: "isCurrentTurn", actions: "noteHeard" },
      "PLAYBACK.DONE": { guard: "isCurrentTurn", target: "listening", actions: ["noteHeard", { type: "finishSpeaking", params: { end: "done" as const } }] },
      "PLAYBACK.ERROR": { guard: "isCurrentTurn", target: "listening" },
      "SPEECH.STARTED": { target: "callerSpeaking", actions: { type: "interruptSpeaking", params: { by: "speech" } } },
    },
  });

export const callMachine = callSetup.createMachine({
  id: "call",
  context: ({ input }) => ({
    callSid: input.callSid,
    mode: input.mode ?? "conversation",
    greetingText: input.greetingText,
    greetingDelivered: input.restored?.greetingDelivered ?? false,
    greetingAttempts: 0,
    pendingUserText: "",
    transcriptsPending: 0,
    digits: "",
    announcements: [],
    history: input.restored?.history ?? [],
    turnId: input.restored?.turnId ?? 0,
    speaking: null,
    silencePromptsUsed: 0,
    silencePromptLimit: input.limits.silencePrompts,
    hangupReason: null,
    answered: input.answered ?? true,
    endAfterReply: false,
    farewell: null,
    held: NOTHING_HELD,
    streams: 0,
  }),
  initial: "connecting",
  on: {
    "STREAM.CLOSED": { target: ".ended", actions: assign({ hangupReason: ({ context, event }) => context.hangupReason ?? event.reason }) },
    "CALL.ENDED": { target: ".ended", actions: assign({ hangupReason: ({ context, event }) => context.hangupReason ?? `call ${event.status}` }) },
  },
  states: {
    connecting: {
      initial: "pending",
      on: {
        "STREAM.STARTED": { target: "live", actions: "countStream" },
        HANGUP: { target: "ending", actions: assign({ hangupReason: ({ event }) => event.reason }) },
      },
      states: {
        pending: { always: [{ guard: "answered", target: "answered" }, { target: "ringing" }] },
        ringing: {
          on: { "CALL.ANSWERED": { target: "answered", actions: assign({ answered: true }) } },
          after: { ringTimeout: { target: "#call.ended", actions: assign({ hangupReason: "no answer" }) } },
        },
        // Answered, but the carrier has not opened the stream: do not leave the callee listening to nothing.
        answered: {
          after: {
            streamTimeout: {
              target: "#call.ending",
              actions: [
                assign({ hangupReason: "answered but no media stream connected" }),
                emit({ type: "call.error" as const, message: "answered but no media stream connected in time" }),
              ],
            },
          },
        },
      },
    },
    live: {
      // Counted from the first stream, across reconnections.
      after: { maxDuration: { actions: raise({ type: "HANGUP" as const, reason: REASON_MAX_DURATION }) } },
      initial: "active",
      states: {
        active: {
          invoke: { id: "stt", src: "sttSession", input: ({ context }) => ({ callSid: context.callSid }) },
          on: {
            "STREAM.DROPPED": { target: "reconnecting", actions: { type: "finishSpeaking", params: { end: "interrupted" as const } } },
            "SPEECH.ENDED": [
              { guard: "heldSpeaking", actions: "heldEnded" },
              { actions: assign({ transcriptsPending: ({ context }) => context.transcriptsPending + 1 }) },
            ],
            TRANSCRIPT: [{ guard: "heldTranscripts", actions: "heldTranscript" }, { actions: "addTranscript" }],
            DTMF: [
              { guard: "dtmfHeld", actions: "appendDigit" },
              { target: ".collectingDigits", actions: [{ type: "interruptSpeaking", params: { by: "dtmf" } }, "appendDigit"] },
            ],
            SAY: [
              { guard: "sayInterrupts", target: ".announcing", actions: [{ type: "interruptSpeaking", params: { by: "api" } }, "queueAnnouncement"] },
              { actions: "queueAnnouncement" },
            ],
            HANGUP: { target: ".goodbye", actions: assign({ hangupReason: ({ event }) => event.reason, farewell: ({ event }) => event.farewell ?? null }) },
            // The brain ended the call (a relay app's `end`): whatever is being said is finished first.
            END: { actions: assign({ endAfterReply: true, hangupReason: ({ context, event }) => context.hangupReason ?? event.reason }) },
          },
          initial: "opening",
          states: {
            opening: {
              always: [
                { guard: "greetingPending", target: "greeting" },
                { guard: "isNotify", target: "#call.ending", actions: assign({ hangupReason: REASON_DELIVERED }) },
                { target: "listening" },
              ],
            },
            greeting: {
              entry: [
                "nextTurn",
                assign({ greetingAttempts: ({ context }) => context.greetingAttempts + 1 }),
                { type: "startSpeaking", params: ({ context }) => ({ kind: "greeting" as const, text: context.greetingText }) },
              ],
              invoke: {
                id: "speaker",
                src: "speaker",
                input: ({ context }) => ({ turnId: context.turnId, kind: "greeting" as const, text: context.greetingText }),
              },
              on: {
                "PLAYBACK.STARTED": { guard: "isCurrentTurn", actions: "noteStarted" },
                "PLAYBACK.PROGRESS": { guard: "isCurrentTurn", actions: "noteHeard" },
                "PLAYBACK.DONE": {
                  guard: "isCurrentTurn",
                  target: "opening",
                  actions: [
                    "noteHeard",
                    assign({ greetingDelivered: true }),
                    emit(({ context }) => ({ type: "greeting.delivered" as const, attempts: context.greetingAttempts })),
                    { type: "finishSpeaking", params: { end: "done" as const } },
                  ],
                },
                "PLAYBACK.ERROR": [
                  {
                    guard: "canRetryGreeting",
                    target: "greeting",
                    reenter: true,
                    actions: emit(({ context, event }) => ({ type: "greeting.failed" as const, attempts: context.greetingAttempts, error: event.error })),
                  },
                  {
                    target: "listening",
                    actions: emit(({ context, event }) => ({ type: "greeting.failed" as const, attempts: context.greetingAttempts, error: event.error })),
                  },
                ],
                // A notification is delivered whole: talking or keys do not stop it.
                "SPEECH.STARTED": [
                  { guard: "isNotify", actions: [] },
                  {
                    target: "callerSpeaking",
                    actions: [assign({ greetingDelivered: true }), { type: "interruptSpeaking", params: { by: "speech" } }],
                  },
                ],
                DTMF: { guard: "isNotify", actions: [] },
              },
            },
            listening: {
              always: [
                // The caller talked over an utterance they could not cut: that is their turn now.
                ...(["callerSpeaking", "awaitingTranscript", "replying", "collectingDigits"] as const).map((to) => ({
                  guard: { type: "heldThen" as const, params: to },
                  target: to,
                  actions: "releaseHeld" as const,
                })),
                { guard: "hasAnnouncement", target: "announcing" },
                { guard: "endAfterReply", target: "#call.ending" },
              ],
              on: { "SPEECH.STARTED": "callerSpeaking" },
              after: {
                silenceTimeout: [
                  { guard: "canPrompt", target: "prompting", actions: assign({ silencePromptsUsed: ({ context }) => context.silencePromptsUsed + 1 }) },
                  { target: "goodbye", actions: assign({ hangupReason: REASON_SILENT }) },
                ],
              },
            },
            callerSpeaking: {
              on: { "SPEECH.ENDED": { target: "awaitingTranscript", actions: assign({ transcriptsPending: ({ context }) => context.transcriptsPending + 1 }) } },
            },
            awaitingTranscript: {
              on: {
                "SPEECH.STARTED": "callerSpeaking",
                TRANSCRIPT: [{ guard: "lastTranscript", target: "replying", actions: "addTranscript" }, { actions: "addTranscript" }],
              },
              after: { transcriptTimeout: { target: "replying", actions: assign({ transcriptsPending: 0 }) } },
            },
            // Touch-tone digits: collected until the caller pauses, then they reach the agent as words.
            collectingDigits: {
              on: {
                DTMF: { target: "collectingDigits", reenter: true, actions: "appendDigit" },
                "SPEECH.STARTED": { target: "callerSpeaking", actions: "foldDigits" },
              },
              after: { digitTimeout: { target: "replying", actions: "foldDigits" } },
            },
            replying: {
              entry: [
                "nextTurn",
                assign({ silencePromptsUsed: 0 }),
                { type: "startSpeaking", params: { kind: "reply" as const, text: "" } },
                emit(({ context }) => ({ type: "turn.user" as const, turnId: context.turnId, text: context.pendingUserText })),
              ],
              invoke: [
                {
                  id: "agent",
                  src: "agentTurn",
                  input: ({ context }) => ({ turnId: context.turnId, userText: context.pendingUserText, history: context.history }),
                },
                { id: "speaker", src: "speaker", input: ({ context }) => ({ turnId: context.turnId, kind: "reply" as const }) },
              ],
              on: {
                "AGENT.TEXT": {
                  guard: "isCurrentTurn",
                  actions: [
                    assign({ speaking: ({ context, event }) => (context.speaking ? { ...context.speaking, text: context.speaking.text + event.text } : null) }),
                    sendTo("speaker", ({ event }) => ({ type: "SPEAKER.TEXT" as const, text: event.text })),
                  ],
                },
                "AGENT.DONE": { guard: "isCurrentTurn", actions: sendTo("speaker", { type: "SPEAKER.END" as const }) },
                "REPLY.INTERRUPTIBLE": { guard: "isCurrentTurn", actions: "setBargeIn" },
                "AGENT.ACTION": [
                  {
                    guard: ({ context, event }) => event.turnId === context.turnId && event.action.type === "end_call",
                    actions: assign({ endAfterReply: true, hangupReason: REASON_AGENT_ENDED }),
                  },
                  {
                    guard: ({ context, event }) => event.turnId === context.turnId && event.action.type === "send_dtmf",
                    actions: sendTo("speaker", ({ event }) => ({ type: "SPEAKER.TONES" as const, digits: event.action.type === "send_dtmf" ? event.action.digits : "" })),
                  },
                ],
                // Never dead air: a failed agent turn still gets a short spoken apology.
                "AGENT.ERROR": {
                  guard: "isCurrentTurn",
                  actions: [
                    emit(({ event }) => ({ type: "agent.error" as const, turnId: event.turnId, error: event.error })),
                    assign({ speaking: ({ context }) => (context.speaking ? { ...context.speaking, text: `${context.speaking.text} ${APOLOGY_TEXT}` } : null) }),
                    sendTo("speaker", { type: "SPEAKER.TEXT" as const, text: APOLOGY_TEXT }),
                    sendTo("speaker", { type: "SPEAKER.END" as const }),
                  ],
                },
                "PLAYBACK.STARTED": { guard: "isCurrentTurn", target: ".speaking", actions: "noteStarted" },
                "PLAYBACK.PROGRESS": { guard: "isCurrentTurn", actions: "noteHeard" },
                "PLAYBACK.DONE": [
                  {
                    guard: ({ context, event }) => event.turnId === context.turnId && context.endAfterReply,
                    target: "#call.ending",
                    actions: ["noteHeard", { type: "finishSpeaking", params: { end: "done" as const } }],
                  },
                  { guard: "isCurrentTurn", target: "listening", actions: ["noteHeard", { type: "finishSpeaking", params: { end: "done" as const } }] },
                ],
                // Speech synthesis failed mid-reply: say sorry from the pre-synthesized phrase, never leave dead air.
                "PLAYBACK.ERROR": { guard: "isCurrentTurn", target: "apologizing", actions: { type: "finishSpeaking", params: { end: "failed" as const } } },
              },
              initial: "thinking",
              states: {
                // Nothing audible yet: if the caller keeps talking, the reply is discarded and their words carry over.
                // Unless the reply may not be cut: then it stands, and the caller's words wait for it (see `held`).
                thinking: { on: { "SPEECH.STARTED": [HOLD, { target: "#call.live.active.callerSpeaking", actions: assign({ speaking: null }) }] } },
                // Barge-in: leaving this state stops the agent and speaker actors, which cancels everything upstream.
                speaking: {
                  on: { "SPEECH.STARTED": [HOLD, { target: "#call.live.active.callerSpeaking", actions: { type: "interruptSpeaking", params: { by: "speech" } } }] },
                },
              },
            },
            prompting: cannedLine(SILENCE_PROMPT_TEXT),
            apologizing: cannedLine(APOLOGY_TEXT),
            // Text the control API asked to say.
            announcing: {
              entry: [
                "nextTurn",
                {
                  type: "startSpeaking",
                  params: ({ context }) => ({ kind: "announcement" as const, text: context.announcements[0]?.text ?? "", bargeIn: context.announcements[0]?.bargeIn }),
                },
                assign({ announcements: ({ context }) => context.announcements.slice(1) }),
              ],
              invoke: {
                id: "speaker",
                src: "speaker",
                input: ({ context }) => ({ turnId: context.turnId, kind: "announcement" as const, text: context.speaking?.text ?? "" }),
              },
              on: {
                "PLAYBACK.STARTED": { guard: "isCurrentTurn", actions: "noteStarted" },
                "PLAYBACK.PROGRESS": { guard: "isCurrentTurn", actions: "noteHeard" },
                "PLAYBACK.DONE": { guard: "isCurrentTurn", target: "listening", actions: ["noteHeard", { type: "finishSpeaking", params: { end: "done" as const } }] },
                "PLAYBACK.ERROR": { guard: "isCurrentTurn", target: "listening", actions: { type: "finishSpeaking", params: { end: "failed" as const } } },
                "SPEECH.STARTED": [HOLD, { target: "callerSpeaking", actions: { type: "interruptSpeaking", params: { by: "speech" } } }],
                SAY: [
                  {
                    guard: "sayInterrupts",
                    target: "announcing",
                    reenter: true,
                    actions: [{ type: "interruptSpeaking", params: { by: "api" } }, "queueAnnouncement"],
                  },
                  { actions: "queueAnnouncement" },
                ],
              },
            },
            goodbye: {
              entry: ["nextTurn", { type: "startSpeaking", params: ({ context }) => ({ kind: "goodbye" as const, text: context.farewell ?? goodbyeText(context.hangupReason) }) }],
              invoke: {
                id: "speaker",
                src: "speaker",
                input: ({ context }) => ({ turnId: context.turnId, kind: "goodbye" as const, text: context.farewell ?? goodbyeText(context.hangupReason) }),
              },
              on: {
                "PLAYBACK.STARTED": { guard: "isCurrentTurn", actions: "noteStarted" },
                "PLAYBACK.PROGRESS": { guard: "isCurrentTurn", actions: "noteHeard" },
                "PLAYBACK.DONE": { guard: "isCurrentTurn", target: "#call.ending", actions: ["noteHeard", { type: "finishSpeaking", params: { end: "done" as const } }] },
                "PLAYBACK.ERROR": { guard: "isCurrentTurn", target: "#call.ending" },
                // Once we are saying goodbye the call ends whatever happens.
                HANGUP: { actions: [] },
                DTMF: { actions: [] },
                SAY: { actions: [] },
              },
            },
          },
        },
        // The socket dropped while the call is up: the carrier asks for a new stream (Twilio: <Connect action>) and
        // we hand it one.
        reconnecting: {
          after: { resumeTimeout: { target: "#call.ended", actions: assign({ hangupReason: "media stream lost and not resumed" }) } },
          on: {
            "STREAM.STARTED": {
              target: "active",
              actions: ["countStream", emit(({ context }) => ({ type: "stream.resumed" as const, greetingPending: !context.greetingDelivered }))],
            },
            HANGUP: { target: "#call.ending", actions: assign({ hangupReason: ({ event }) => event.reason }) },
          },
        },
      },
    },
    ending: {
      entry: emit(({ context }) => ({ type: "hangup" as const, reason: context.hangupReason ?? "hangup" })),
      invoke: {
        src: "hangup",
        input: ({ context }) => ({ reason: context.hangupReason ?? "hangup" }),
        onDone: "ended",
        onError: "ended",
      },
      on: { "STREAM.DROPPED": "ended" },
    },
    ended: { type: "final" },
  },
});

export type CallMachine = typeof callMachine;
export type CallActor = ActorRefFrom<CallMachine>;
