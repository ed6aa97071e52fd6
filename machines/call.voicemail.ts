/**
 * The states of an outbound call before its first words: screening (who answered?) and, when a machine answered and
 * the session says so, leaving the voicemail message after its beep. Decisions come from outside (the runtime's
 * screen of the audio, the carrier's answering-machine detection); see call.screening.ts for what each one means.
 */
import { assign, emit } from "xstate";
import { callSetup } from "./call.setup.ts";
import { REASON_VOICEMAIL_FAILED, REASON_VOICEMAIL_LEFT } from "./call.types.ts";

// An outbound call's first words wait until we know who answered (or SCREENING_MAX_MS). What is said
// meanwhile is not a turn: a person's "hello?" is answered by the greeting; a machine's words are evidence.
export const screeningState = callSetup.createStateConfig({
  after: { screeningMax: { target: "opening", actions: "screened" } },
  on: {
    "SCREENING.DECIDED": [
      { guard: { type: "screenedTo", params: "leave" }, target: "voicemail", actions: "screened" },
      { guard: { type: "screenedTo", params: "hangup" }, target: "#call.ending", actions: "screened" },
      { target: "opening", actions: "screened" },
    ],
    "SPEECH.STARTED": {},
    "SPEECH.ENDED": {},
    TRANSCRIPT: { actions: emit(({ event }) => ({ type: "screening.transcript" as const, text: event.text })) },
    DTMF: {},
  },
});

// A machine answered and the message is to be left: after its greeting (the beep), never over it.
export const voicemailState = callSetup.createStateConfig({
  initial: "waiting",
  on: {
    "SPEECH.STARTED": {},
    "SPEECH.ENDED": {},
    TRANSCRIPT: { actions: emit(({ event }) => ({ type: "screening.transcript" as const, text: event.text })) },
    DTMF: {},
    "SCREENING.DECIDED": {},
  },
  states: {
    waiting: {
      on: { "SCREENING.READY": { target: "leaving", actions: emit(({ event }) => ({ type: "voicemail.ready" as const, cue: event.cue })) } },
      after: { voicemailWait: { target: "leaving", actions: emit({ type: "voicemail.ready" as const, cue: "timeout" }) } },
    },
    leaving: {
      entry: [
        "nextTurn",
        {
          type: "startSpeaking",
          params: ({ context }) => ({ kind: "voicemail" as const, text: context.screening?.message ?? "", bargeIn: { speech: false, dtmf: false } }),
        },
      ],
      invoke: {
        id: "speaker",
        src: "speaker",
        input: ({ context }) => ({ turnId: context.turnId, kind: "voicemail" as const, text: context.screening?.message ?? "" }),
      },
      on: {
        "PLAYBACK.STARTED": { guard: "isCurrentTurn", actions: "noteStarted" },
        "PLAYBACK.PROGRESS": { guard: "isCurrentTurn", actions: "noteHeard" },
        "PLAYBACK.DONE": {
          guard: "isCurrentTurn",
          target: "#call.ending",
          actions: ["noteHeard", { type: "finishSpeaking", params: { end: "done" as const } }, assign({ hangupReason: REASON_VOICEMAIL_LEFT })],
        },
        "PLAYBACK.ERROR": { guard: "isCurrentTurn", target: "#call.ending", actions: [{ type: "finishSpeaking", params: { end: "failed" as const } }, assign({ hangupReason: REASON_VOICEMAIL_FAILED })] },
      },
    },
  },
});
