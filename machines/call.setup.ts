/**
 * The call machine's vocabulary: its types, the actors and delays the runtime provides, guards and actions. The states
 * that use them are in call.machine.ts (and the voicemail states in call.voicemail.ts).
 */
import { assign, enqueueActions, fromCallback, fromPromise, setup } from "xstate";
import {
  ANY_BARGE_IN,
  digitsText,
  type AgentInput,
  type BargeIn,
  type CallContext,
  type CallEmitted,
  type CallEvent,
  type CallInput,
  type SpeakerCommand,
  type SpeakerInput,
} from "./call.types.ts";
import { afterHeld, heldSpeechEnded, heldTranscript, NOTHING_HELD, releaseHeld } from "./call.held.ts";
import { screened, screeningAction, screeningPending } from "./call.screening.ts";
import { finishUtterance, type Enqueue } from "./call.utterance.ts";


export const callSetup = setup({
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
    screeningMax: 3_500,
    voicemailWait: 30_000,
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
    screeningPending: ({ context }) => screeningPending(context),
    screenedTo: ({ context, event }, action: string) => event.type === "SCREENING.DECIDED" && screeningAction(context, event.answeredBy) === action,
    /** A "human" decision overturned: the screen heard a machine after all (its greeting went on, a beep). */
    overturnedTo: ({ context, event }, action: string) =>
      event.type === "SCREENING.DECIDED" && event.answeredBy === "machine" && context.screening?.answeredBy === "human" && screeningAction(context, "machine") === action,
  },
  actions: {
    nextTurn: assign({ turnId: ({ context }) => context.turnId + 1 }),
    screened: enqueueActions(({ context, event, enqueue }) => {
      const [answeredBy, cue] = event.type === "SCREENING.DECIDED" ? [event.answeredBy, event.cue] : (["unknown", "timeout"] as const);
      enqueue.emit({ type: "screening.decided", answeredBy, cue, action: screeningAction(context, answeredBy) });
      enqueue.assign(screened(context, answeredBy));
    }),
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
    finishSpeaking: enqueueActions(({ context, enqueue }, params: { end: "done" | "interrupted" | "failed" }) => finishUtterance(context, enqueue as unknown as Enqueue, params.end)),
    /** Someone else takes the floor (speech, a key press, the control API): stop the utterance, keep what was heard. */
    /** What a machine said was not a caller's turn, and what we said to it is cut: no barge-in, nothing pending. */
    cutForMachine: enqueueActions(({ context, enqueue }) => {
      finishUtterance(context, enqueue as unknown as Enqueue, "interrupted");
      enqueue.assign({ pendingUserText: "", transcriptsPending: 0, held: NOTHING_HELD });
    }),
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
export const HOLD = { guard: "speechHeld", actions: "holdSpeech" } as const;

/** Say a fixed line (the silence prompt, the apology), then listen; the caller may talk over it. */
export const cannedLine = (text: string) =>
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

