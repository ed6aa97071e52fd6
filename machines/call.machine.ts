import { assign, emit, enqueueActions, fromCallback, fromPromise, sendTo, setup, type ActorRefFrom } from "xstate";

/**
 * One phone call: its lifecycle (connecting -> active -> ending -> ended) and, while active, who has the floor
 * (greeting, listening, caller speaking, thinking, speaking). The machine is pure: it decides; the actors and
 * delays it names are provided by the call runtime (`machine.provide`), which owns every side effect. Audio never
 * passes through here: the pipeline sends semantic events (speech started/ended, transcript, playback progress).
 */

export interface ChatTurn {
  role: "user" | "assistant";
  content: string;
}

/** What a speaker actor is asked to say. `fixed` text is known up front; `reply` text streams in from the agent. */
export type UtteranceKind = "greeting" | "reply" | "prompt" | "goodbye";

export interface SpeakerInput {
  turnId: number;
  kind: UtteranceKind;
  /** Known text for greeting / prompt / goodbye; replies arrive as SPEAKER.TEXT events. */
  text?: string;
}

export interface AgentInput {
  turnId: number;
  userText: string;
  history: ChatTurn[];
}

export type CallEvent =
  | { type: "STREAM.STARTED"; streamSid: string }
  | { type: "STREAM.CLOSED"; reason: string }
  | { type: "SPEECH.STARTED" }
  | { type: "SPEECH.ENDED" }
  | { type: "TRANSCRIPT"; text: string }
  | { type: "DTMF"; digit: string }
  | { type: "AGENT.TEXT"; turnId: number; text: string }
  | { type: "AGENT.DONE"; turnId: number }
  | { type: "AGENT.ERROR"; turnId: number; error: string }
  | { type: "PLAYBACK.STARTED"; turnId: number }
  | { type: "PLAYBACK.PROGRESS"; turnId: number; heardText: string }
  | { type: "PLAYBACK.DONE"; turnId: number; heardText: string }
  | { type: "PLAYBACK.ERROR"; turnId: number; error: string }
  | { type: "HANGUP"; reason: string };

/** Events the speaker actor accepts from the machine. */
export type SpeakerCommand = { type: "SPEAKER.TEXT"; text: string } | { type: "SPEAKER.END" };

/** What the machine tells the outside world (call record, metrics); the runtime timestamps these. */
export type CallEmitted =
  | { type: "turn.user"; turnId: number; text: string }
  | { type: "turn.assistant"; turnId: number; kind: UtteranceKind; text: string; heardText: string; interrupted: boolean }
  | { type: "barge-in"; turnId: number; heardText: string }
  | { type: "greeting.delivered"; attempts: number }
  | { type: "greeting.failed"; attempts: number; error: string }
  | { type: "agent.error"; turnId: number; error: string }
  | { type: "hangup"; reason: string };

export interface CallContext {
  callSid: string;
  greetingText: string;
  greetingDelivered: boolean;
  greetingAttempts: number;
  /** Caller words collected for the turn being built; several utterances join when the caller pauses and resumes. */
  pendingUserText: string;
  /** Utterances whose transcript is still on its way. */
  transcriptsPending: number;
  history: ChatTurn[];
  turnId: number;
  /** The turn being spoken: its kind, the text produced so far, and the part the caller has heard (from marks). */
  speaking: { kind: UtteranceKind; text: string; heardText: string; started: boolean } | null;
  agentFailed: boolean;
  silencePromptsUsed: number;
  silencePromptLimit: number;
  hangupReason: string | null;
}

export interface CallInput {
  callSid: string;
  greetingText: string;
  limits: { silencePrompts: number };
}

export const APOLOGY_TEXT = "Sorry, I'm having trouble answering right now.";
export const SILENCE_PROMPT_TEXT = "Are you still there?";
export const GOODBYE_SILENCE_TEXT = "I haven't heard anything, so I'll hang up now. Goodbye!";
export const GOODBYE_MAX_DURATION_TEXT = "We've reached the time limit for this call. Goodbye!";

const MAX_GREETING_ATTEMPTS = 3;

export const callMachine = setup({
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
    connectTimeout: 30_000,
  },
  guards: {
    greetingPending: ({ context }) => !context.greetingDelivered && context.greetingText.trim().length > 0,
    canRetryGreeting: ({ context }) => context.greetingAttempts < MAX_GREETING_ATTEMPTS,
    canPrompt: ({ context }) => context.silencePromptsUsed < context.silencePromptLimit,
    lastTranscript: ({ context }) => context.transcriptsPending <= 1,
    isCurrentTurn: ({ context, event }) => "turnId" in event && event.turnId === context.turnId,
  },
  actions: {
    nextTurn: assign({ turnId: ({ context }) => context.turnId + 1 }),
    startSpeaking: assign({
      speaking: (_, params: { kind: UtteranceKind; text: string }) => ({ kind: params.kind, text: params.text, heardText: "", started: false }),
    }),
    noteHeard: assign({
      speaking: ({ context, event }) =>
        context.speaking && "heardText" in event ? { ...context.speaking, heardText: event.heardText } : context.speaking,
    }),
    noteStarted: assign({ speaking: ({ context }) => (context.speaking ? { ...context.speaking, started: true } : null) }),
    /** A finished or interrupted utterance: record it, and keep in history only what the caller heard. */
    finishSpeaking: enqueueActions(({ context, enqueue }, params: { interrupted: boolean }) => {
      const s = context.speaking;
      if (!s) return;
      const heardText = params.interrupted ? s.heardText : s.text;
      enqueue.emit({ type: "turn.assistant", turnId: context.turnId, kind: s.kind, text: s.text, heardText, interrupted: params.interrupted });
      const added: ChatTurn[] = [];
      if (s.kind === "reply" && context.pendingUserText) added.push({ role: "user", content: context.pendingUserText });
      if (heardText.trim()) added.push({ role: "assistant", content: heardText.trim() });
      enqueue.assign({ history: [...context.history, ...added], speaking: null });
    }),
    addTranscript: assign({
      pendingUserText: ({ context, event }) =>
        event.type === "TRANSCRIPT" && event.text.trim() ? `${context.pendingUserText} ${event.text.trim()}`.trim() : context.pendingUserText,
      transcriptsPending: ({ context }) => Math.max(0, context.transcriptsPending - 1),
    }),
  },
}).createMachine({
  id: "call",
  context: ({ input }) => ({
    callSid: input.callSid,
    greetingText: input.greetingText,
    greetingDelivered: false,
    greetingAttempts: 0,
    pendingUserText: "",
    transcriptsPending: 0,
    history: [],
    turnId: 0,
    speaking: null,
    agentFailed: false,
    silencePromptsUsed: 0,
    hangupReason: null,
    silencePromptLimit: input.limits.silencePrompts,
  }),
  initial: "connecting",
  on: {
    "STREAM.CLOSED": { target: ".ended", actions: assign({ hangupReason: ({ event }) => event.reason }) },
  },
  states: {
    connecting: {
      on: { "STREAM.STARTED": "active" },
      after: { connectTimeout: { target: "ended", actions: assign({ hangupReason: "no media stream connected" }) } },
    },
    active: {
      invoke: { id: "stt", src: "sttSession", input: ({ context }) => ({ callSid: context.callSid }) },
      after: { maxDuration: { target: ".goodbye", actions: assign({ hangupReason: "maximum call duration reached" }) } },
      on: {
        "SPEECH.ENDED": { actions: assign({ transcriptsPending: ({ context }) => context.transcriptsPending + 1 }) },
        TRANSCRIPT: { actions: "addTranscript" },
        DTMF: { actions: assign({ pendingUserText: ({ context, event }) => `${context.pendingUserText} [the caller pressed ${event.digit}]`.trim() }) },
        HANGUP: { target: ".goodbye", actions: assign({ hangupReason: ({ event }) => event.reason }) },
      },
      initial: "opening",
      states: {
        opening: { always: [{ guard: "greetingPending", target: "greeting" }, { target: "listening" }] },
        greeting: {
          entry: [
            "nextTurn",
            assign({ greetingAttempts: ({ context }) => context.greetingAttempts + 1 }),
            { type: "startSpeaking", params: ({ context }) => ({ kind: "greeting" as const, text: context.greetingText }) },
          ],
          invoke: {
            id: "speaker",
            src: "speaker",
            input: ({ context }) => ({ turnId: context.turnId, kind: "greeting", text: context.greetingText }),
          },
          on: {
            "PLAYBACK.STARTED": { guard: "isCurrentTurn", actions: "noteStarted" },
            "PLAYBACK.PROGRESS": { guard: "isCurrentTurn", actions: "noteHeard" },
            "PLAYBACK.DONE": {
              guard: "isCurrentTurn",
              target: "listening",
              actions: [
                "noteHeard",
                assign({ greetingDelivered: true }),
                emit(({ context }) => ({ type: "greeting.delivered" as const, attempts: context.greetingAttempts })),
                { type: "finishSpeaking", params: { interrupted: false } },
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
            // The caller talking over the greeting has heard it start: treat it like any barge-in.
            "SPEECH.STARTED": {
              target: "callerSpeaking",
              actions: [assign({ greetingDelivered: true }), { type: "finishSpeaking", params: { interrupted: true } }],
            },
          },
        },
        listening: {
          on: { "SPEECH.STARTED": "callerSpeaking" },
          after: {
            silenceTimeout: [
              { guard: "canPrompt", target: "prompting", actions: assign({ silencePromptsUsed: ({ context }) => context.silencePromptsUsed + 1 }) },
              { target: "goodbye", actions: assign({ hangupReason: "caller silent" }) },
            ],
          },
        },
        callerSpeaking: {
          on: { "SPEECH.ENDED": { target: "awaitingTranscript", actions: assign({ transcriptsPending: ({ context }) => context.transcriptsPending + 1 }) } },
        },
        awaitingTranscript: {
          on: {
            "SPEECH.STARTED": "callerSpeaking",
            TRANSCRIPT: [
              { guard: "lastTranscript", target: "replying", actions: "addTranscript" },
              { actions: "addTranscript" },
            ],
          },
          after: { transcriptTimeout: { target: "replying", actions: assign({ transcriptsPending: 0 }) } },
        },
        replying: {
          entry: [
            "nextTurn",
            assign({ agentFailed: false, silencePromptsUsed: 0 }),
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
            // Never dead air: a failed agent turn still gets a short spoken apology.
            "AGENT.ERROR": {
              guard: "isCurrentTurn",
              actions: [
                assign({ agentFailed: true }),
                emit(({ event }) => ({ type: "agent.error" as const, turnId: event.turnId, error: event.error })),
                assign({ speaking: ({ context }) => (context.speaking ? { ...context.speaking, text: `${context.speaking.text} ${APOLOGY_TEXT}`.trim() } : null) }),
                sendTo("speaker", { type: "SPEAKER.TEXT" as const, text: ` ${APOLOGY_TEXT}` }),
                sendTo("speaker", { type: "SPEAKER.END" as const }),
              ],
            },
            "PLAYBACK.STARTED": { guard: "isCurrentTurn", target: ".speaking", actions: "noteStarted" },
            "PLAYBACK.PROGRESS": { guard: "isCurrentTurn", actions: "noteHeard" },
            "PLAYBACK.DONE": {
              guard: "isCurrentTurn",
              target: "listening",
              actions: ["noteHeard", { type: "finishSpeaking", params: { interrupted: false } }, assign({ pendingUserText: "" })],
            },
            "PLAYBACK.ERROR": {
              guard: "isCurrentTurn",
              target: "listening",
              actions: [{ type: "finishSpeaking", params: { interrupted: true } }, assign({ pendingUserText: "" })],
            },
          },
          initial: "thinking",
          states: {
            // Nothing audible yet: if the caller keeps talking, the reply is discarded and their words carry over.
            thinking: { on: { "SPEECH.STARTED": { target: "#call.active.callerSpeaking", actions: assign({ speaking: null }) } } },
            // Barge-in: leaving this state stops the agent and speaker actors, which cancels everything upstream.
            speaking: {
              on: {
                "SPEECH.STARTED": {
                  target: "#call.active.callerSpeaking",
                  actions: [
                    emit(({ context }) => ({ type: "barge-in" as const, turnId: context.turnId, heardText: context.speaking?.heardText ?? "" })),
                    { type: "finishSpeaking", params: { interrupted: true } },
                    assign({ pendingUserText: "" }),
                  ],
                },
              },
            },
          },
        },
        prompting: {
          entry: ["nextTurn", { type: "startSpeaking", params: { kind: "prompt" as const, text: SILENCE_PROMPT_TEXT } }],
          invoke: { id: "speaker", src: "speaker", input: ({ context }) => ({ turnId: context.turnId, kind: "prompt" as const, text: SILENCE_PROMPT_TEXT }) },
          on: {
            "PLAYBACK.PROGRESS": { guard: "isCurrentTurn", actions: "noteHeard" },
            "PLAYBACK.DONE": { guard: "isCurrentTurn", target: "listening", actions: ["noteHeard", { type: "finishSpeaking", params: { interrupted: false } }] },
            "PLAYBACK.ERROR": { guard: "isCurrentTurn", target: "listening" },
            "SPEECH.STARTED": { target: "callerSpeaking", actions: { type: "finishSpeaking", params: { interrupted: true } } },
          },
        },
        goodbye: {
          entry: [
            "nextTurn",
            {
              type: "startSpeaking",
              params: ({ context }) => ({ kind: "goodbye" as const, text: goodbyeText(context.hangupReason) }),
            },
          ],
          invoke: {
            id: "speaker",
            src: "speaker",
            input: ({ context }) => ({ turnId: context.turnId, kind: "goodbye" as const, text: goodbyeText(context.hangupReason) }),
          },
          on: {
            "PLAYBACK.PROGRESS": { guard: "isCurrentTurn", actions: "noteHeard" },
            "PLAYBACK.DONE": { guard: "isCurrentTurn", target: "#call.ending", actions: ["noteHeard", { type: "finishSpeaking", params: { interrupted: false } }] },
            "PLAYBACK.ERROR": { guard: "isCurrentTurn", target: "#call.ending" },
            // Once we are saying goodbye the call ends whatever the caller does; the maximum duration must hold.
            HANGUP: { actions: [] },
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
      on: { "STREAM.CLOSED": "ended" },
    },
    ended: { type: "final" },
  },
});

function goodbyeText(reason: string | null): string {
  if (reason === "maximum call duration reached") return GOODBYE_MAX_DURATION_TEXT;
  if (reason === "caller silent") return GOODBYE_SILENCE_TEXT;
  return "Goodbye!";
}

export type CallMachine = typeof callMachine;
export type CallActor = ActorRefFrom<CallMachine>;
