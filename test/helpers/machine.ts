import { createActor, fromCallback, fromPromise, SimulatedClock, type AnyStateMachine, type SnapshotFrom } from "xstate";
import {
  callMachine,
  type AgentInput,
  type CallEmitted,
  type CallEvent,
  type ScreeningInput,
  type SpeakerCommand,
  type SpeakerInput,
} from "../../machines/call.machine.ts";

type Snap = SnapshotFrom<typeof callMachine>;

const input = { callSid: "CA1", greetingText: "Hello there", limits: { silencePrompts: 1 } };

/** The state a snapshot is in, as a dotted path ("live.active.listening"). */
export const flat = (s: Snap): string => {
  const walk = (v: unknown): string => (typeof v === "string" ? v : Object.entries(v as object).map(([k, c]) => `${k}.${walk(c)}`)[0]!);
  return walk(s.value);
};

/** Every state node id of a machine, read from its definition (independently of the chart's own graph walk). */
export function stateIds(machine: AnyStateMachine): string[] {
  const ids: string[] = [];
  const walk = (n: { id: string; states: Record<string, unknown> }) => {
    ids.push(n.id);
    for (const c of Object.values(n.states)) walk(c as typeof n);
  };
  walk(machine.root as never);
  return ids;
}

/** Stub side effects that record what the machine asked for. */
export function stubActors() {
  const speakers: { input: SpeakerInput; commands: SpeakerCommand[]; stopped: boolean }[] = [];
  const agentTurns: { input: unknown; stopped: boolean }[] = [];
  const hangups: string[] = [];
  return {
    speakers,
    agentTurns,
    hangups,
    actors: {
      speaker: fromCallback<SpeakerCommand, SpeakerInput>(({ input, receive }) => {
        const rec = { input, commands: [] as SpeakerCommand[], stopped: false };
        speakers.push(rec);
        receive((c) => rec.commands.push(c));
        return () => {
          rec.stopped = true;
        };
      }),
      agentTurn: fromCallback<{ type: string }, AgentInput>(({ input }) => {
        const rec = { input, stopped: false };
        agentTurns.push(rec);
        return () => {
          rec.stopped = true;
        };
      }),
      sttSession: fromCallback<{ type: string }, { callSid: string }>(() => {}),
      hangup: fromPromise<void, { reason: string }>(async ({ input }) => {
        hangups.push(input.reason);
      }),
    },
  };
}

export function start(
  greetingText = "Hello there",
  extra: Partial<typeof input & { answered: boolean; mode: "conversation" | "notify"; screening: ScreeningInput }> = {},
) {
  const stubs = stubActors();
  const clock = new SimulatedClock();
  const emitted: CallEmitted[] = [];
  const actor = createActor(
    callMachine.provide({ actors: stubs.actors, delays: { silenceTimeout: 10_000, maxDuration: 60_000, transcriptTimeout: 3_000, screeningMax: 3_500, voicemailWait: 30_000 } }),
    { input: { ...input, greetingText, ...extra }, clock },
  );
  for (const t of ["turn.user", "turn.assistant", "barge-in", "greeting.delivered", "greeting.failed", "agent.error", "stream.resumed", "call.error", "hangup", "screening.decided", "screening.transcript", "voicemail.ready"] as const)
    actor.on(t, (e) => emitted.push(e as CallEmitted));
  actor.start();
  const state = () => flat(actor.getSnapshot());
  const turn = () => actor.getSnapshot().context.turnId;
  return { actor, clock, stubs, emitted, state, turn, send: (e: CallEvent) => actor.send(e) };
}

