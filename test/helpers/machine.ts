import type { AnyStateMachine } from "xstate";

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
