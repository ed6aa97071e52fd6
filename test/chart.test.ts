import { describe, expect, it } from "vitest";
import { callMachine } from "../machines/call.machine.ts";
import { machineGraph, renderChart } from "../src/chart/statechart.ts";
import { stateIds } from "./helpers/machine.ts";

describe("state chart drawn from the machine definition", () => {
  it("draws every state and every transition of the call machine, labelled", async () => {
    const svg = await renderChart(callMachine);
    const { states, edges } = machineGraph(callMachine);
    // Every state node of the machine, from the definition itself.
    const ids = stateIds(callMachine);
    expect(states.map((s) => s.id).sort()).toEqual(ids.sort());
    for (const id of ids) expect(svg).toContain(`data-state="${id}"`);
    // Every event the machine handles appears on an edge (delays as "after ...").
    for (const event of callMachine.events.filter((e) => !e.startsWith("xstate."))) expect(edges.some((e) => e.label.startsWith(event))).toBe(true);
    expect(edges.some((e) => e.label === "after silenceTimeout [canPrompt]")).toBe(true);
    expect(svg.match(/<polyline class="transition"/g)!.length).toBeGreaterThanOrEqual(edges.length);
    expect(svg).toMatch(/^<svg [^>]+>[\s\S]*<\/svg>\n$/);
  });
});
