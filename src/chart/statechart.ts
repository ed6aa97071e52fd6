import elkBundled from "elkjs/lib/elk.bundled.js";
import type { ElkExtendedEdge, ElkNode } from "elkjs/lib/elk-api.js";
import type { AnyStateMachine, AnyStateNode } from "xstate";

/**
 * The call machine's chart, drawn from the machine definition itself so it can never drift from the code: every
 * state (compound and final ones too), the initial arrows, and every transition labelled with its event (delays as
 * "after <delay>", eventless ones as "always", guards in brackets). Laid out by ELK (layered), rendered as plain SVG.
 */

export interface ChartState {
  id: string;
  key: string;
  type: string;
  parent: string | null;
  invokes: string[];
}

export interface ChartEdge {
  id: string;
  from: string;
  to: string;
  label: string;
}

export function machineGraph(machine: AnyStateMachine): { states: ChartState[]; edges: ChartEdge[]; initials: [string, string][] } {
  const states: ChartState[] = [];
  const edges: ChartEdge[] = [];
  const initials: [string, string][] = [];
  const visit = (node: AnyStateNode, parent: string | null) => {
    states.push({ id: node.id, key: node.key, type: node.type, parent, invokes: node.invoke.map((i: { src: unknown }) => String(i.src)) });
    const initial = node.initial?.target?.[0] as AnyStateNode | undefined;
    if (initial) initials.push([node.id, initial.id]);
    const add = (event: string, defs: { target?: readonly AnyStateNode[]; guard?: unknown }[] | undefined) => {
      for (const d of defs ?? []) {
        const guard = guardName(d.guard);
        const label = `${eventLabel(event, node.id)}${guard ? ` [${guard}]` : ""}`;
        // A transition without a target acts in place: drawn as a loop on its state.
        const targets = d.target?.length ? d.target : [node];
        for (const t of targets) edges.push({ id: `e${edges.length}`, from: node.id, to: t.id, label });
      }
    };
    for (const [event, defs] of node.transitions as Map<string, { target?: AnyStateNode[]; guard?: unknown }[]>) add(event, defs);
    add("", node.always as { target?: AnyStateNode[]; guard?: unknown }[] | undefined);
    for (const child of Object.values(node.states) as AnyStateNode[]) visit(child, node.id);
  };
  visit(machine.root, null);
  return { states, edges, initials };
}

function eventLabel(event: string, ownerId: string): string {
  if (!event) return "always";
  if (event.startsWith("xstate.after.")) return `after ${event.slice("xstate.after.".length).replace(`.${ownerId}`, "")}`;
  if (event.startsWith("xstate.done.actor")) return "done";
  if (event.startsWith("xstate.error.actor")) return "error";
  return event;
}

function guardName(guard: unknown): string {
  if (!guard) return "";
  if (typeof guard === "string") return guard;
  if (typeof guard === "object" && guard && "type" in guard) return String((guard as { type: unknown }).type);
  return "guard";
}

// A CommonJS bundle: its constructor is the default export under Node's ESM interop.
const ELK = ((elkBundled as unknown as { default?: unknown }).default ?? elkBundled) as new () => { layout(g: ElkNode): Promise<ElkNode> };

const CHAR_W = 6.2; // ~11 px sans-serif
const esc = (s: string) => s.replace(/[<>&"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;" })[c]!);

/** Lay out and draw the chart. `data-state` attributes let a page highlight active states by id. */
export async function renderChart(machine: AnyStateMachine): Promise<string> {
  const { states, edges, initials } = machineGraph(machine);
  const byParent = new Map<string | null, ChartState[]>();
  for (const s of states) byParent.set(s.parent, [...(byParent.get(s.parent) ?? []), s]);
  const build = (s: ChartState): ElkNode => {
    const kids = byParent.get(s.id) ?? [];
    const title = s.invokes.length ? `${s.key}  ⟳ ${s.invokes.join(", ")}` : s.key;
    const base: ElkNode = { id: s.id, labels: [{ text: title }] };
    if (!kids.length) return { ...base, width: Math.max(90, title.length * CHAR_W + 24), height: 34 };
    return {
      ...base,
      layoutOptions: { "elk.padding": "[top=34,left=14,bottom=14,right=14]", "elk.direction": "DOWN" },
      children: kids.map(build),
    };
  };
  const root = states.find((s) => s.parent === null)!;
  const graph: ElkNode = {
    id: "__chart",
    layoutOptions: {
      "elk.algorithm": "layered",
      "elk.direction": "DOWN",
      "elk.hierarchyHandling": "INCLUDE_CHILDREN",
      "elk.layered.spacing.nodeNodeBetweenLayers": "40",
      "elk.spacing.nodeNode": "28",
      "elk.spacing.edgeLabel": "4",
      "elk.edgeLabels.inline": "false",
    },
    children: [build(root)],
    edges: edges.map(
      (e): ElkExtendedEdge => ({ id: e.id, sources: [e.from], targets: [e.to], labels: [{ text: e.label, width: e.label.length * CHAR_W, height: 12 }] }),
    ),
  };
  const laid = await new ELK().layout(graph);

  const abs = new Map<string, { x: number; y: number; w: number; h: number; node: ElkNode }>();
  const place = (n: ElkNode, ox: number, oy: number) => {
    const x = ox + (n.x ?? 0);
    const y = oy + (n.y ?? 0);
    abs.set(n.id, { x, y, w: n.width ?? 0, h: n.height ?? 0, node: n });
    for (const c of n.children ?? []) place(c, x, y);
  };
  place(laid, 0, 0);
  const W = (laid.width ?? 0) + 20;
  const H = (laid.height ?? 0) + 20;
  let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="-10 -10 ${W} ${H}" font-family="system-ui, sans-serif" font-size="11">`;
  svg += `<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs><rect x="-10" y="-10" width="${W}" height="${H}" fill="#fff"/>`;
  // States, outermost first so children paint on top.
  for (const s of states) {
    const b = abs.get(s.id)!;
    const compound = (byParent.get(s.id) ?? []).length > 0;
    const title = esc(b.node.labels?.[0]?.text ?? s.key);
    svg += `<g class="state ${s.type}" data-state="${esc(s.id)}">`;
    svg += `<rect x="${b.x}" y="${b.y}" width="${b.w}" height="${b.h}" rx="8" fill="${compound ? "#f7f9fc" : "#fff"}" stroke="#4e79a7" stroke-width="1.5"/>`;
    if (s.type === "final") svg += `<rect x="${b.x + 3}" y="${b.y + 3}" width="${b.w - 6}" height="${b.h - 6}" rx="6" fill="none" stroke="#4e79a7"/>`;
    svg += compound
      ? `<text x="${b.x + 10}" y="${b.y + 18}" font-weight="600">${title}</text>`
      : `<text x="${b.x + b.w / 2}" y="${b.y + b.h / 2 + 4}" text-anchor="middle">${title}</text>`;
    svg += `</g>`;
  }
  // Initial-state markers: a dot just above the initial child.
  for (const [, child] of initials) {
    const b = abs.get(child);
    if (b) svg += `<circle class="initial" cx="${b.x - 7}" cy="${b.y + 8}" r="4" fill="#333"/>`;
  }
  for (const e of (laid.edges ?? []) as (ElkExtendedEdge & { container?: string })[]) {
    const c = abs.get(e.container ?? "__chart") ?? { x: 0, y: 0 };
    for (const sec of e.sections ?? []) {
      const pts = [sec.startPoint, ...(sec.bendPoints ?? []), sec.endPoint].map((p) => `${c.x + p.x},${c.y + p.y}`).join(" ");
      svg += `<polyline class="transition" data-edge="${e.id}" points="${pts}" fill="none" stroke="#888" marker-end="url(#arrow)"/>`;
    }
    for (const l of e.labels ?? []) svg += `<text class="event" x="${c.x + (l.x ?? 0)}" y="${c.y + (l.y ?? 0) + 10}" fill="#333">${esc(l.text ?? "")}</text>`;
  }
  return svg + "</svg>\n";
}
