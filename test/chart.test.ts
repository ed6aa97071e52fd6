import { describe, expect, it } from "vitest";
import { callMachine } from "../machines/call.machine.ts";
import { machineGraph, renderChart } from "../src/chart/statechart.ts";
import { stateIds } from "./helpers/machine.ts";

const unescape = (s: string) => s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&amp;/g, "&");

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

    // Every transition is drawn with its own label: one that changes state on an arrow (transitions between the same
    // two states share one), one that does not listed inside its state's box.
    const arrows = [...svg.matchAll(/<polyline class="transition" data-edge="([^"]+)"/g)].map((m) => m[1]!.split(" "));
    const labels = new Map([...svg.matchAll(/<text class="event( internal)?" data-edge="(e\d+)"[^>]*>([^<]*)<\/text>/g)].map((m) => [m[2]!, { internal: !!m[1], text: unescape(m[3]!) }]));
    for (const e of edges) {
      expect(labels.get(e.id), `${e.id} ${e.from} -> ${e.to}: ${e.label}`).toEqual({ internal: e.internal, text: e.label });
      expect(arrows.some((group) => group.includes(e.id)), `${e.id} arrow`).toBe(!e.internal);
    }
    // Internal transitions have no target, and sit inside their own state's group.
    for (const e of edges.filter((x) => x.internal)) {
      expect(e.to).toBe(e.from);
      const group = svg.slice(svg.indexOf(`data-state="${e.from}"`), svg.indexOf("</g>", svg.indexOf(`data-state="${e.from}"`)));
      expect(group).toContain(`data-edge="${e.id}"`);
    }
    expect(edges.filter((e) => e.internal).length).toBeGreaterThan(10);
    expect(svg).toMatch(/^<svg [^>]+>[\s\S]*<\/svg>\n$/);
  });
});
