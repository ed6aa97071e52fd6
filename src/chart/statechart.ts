import elkBundled from "elkjs/lib/elk.bundled.js";
import type { ElkExtendedEdge, ElkLabel, ElkNode } from "elkjs/lib/elk-api.js";
import type { AnyStateMachine, AnyStateNode } from "xstate";

/**
 * The call machine's chart, drawn from the machine definition itself so it can never drift from the code: every
 * state (compound and final ones too), the initial arrows, and every transition labelled with its event (delays as
 * "after <delay>", eventless ones as "always", guards in brackets). A transition without a target changes no state:
 * it is listed inside its state's box (UML's internal transitions) rather than drawn as a loop, which kept the old
 * chart wide and its labels on top of each other. Laid out by ELK (layered), rendered as plain SVG.
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
  /** No target: actions only, the state stays. */
  internal: boolean;
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
        if (!d.target?.length) edges.push({ id: `e${edges.length}`, from: node.id, to: node.id, label, internal: true });
        for (const t of d.target ?? []) edges.push({ id: `e${edges.length}`, from: node.id, to: t.id, label, internal: false });
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

const FONT = 11;
const LINE = 14; // line height of listed transitions
// Advance widths (px at 11 px) of ASCII 32..126 in DejaVu Sans, what "system-ui, sans-serif" is on Debian and one of
// the widest sans faces: measured in Chromium. ELK places labels by these widths, so they must not be underestimated.
const WIDTHS = (
  "3.5 4.41 5.06 9.22 7 10.45 8.58 3.02 4.29 4.29 5.5 9.22 3.5 3.97 3.5 3.71 7 7 7 7 7 7 7 7 7 7 3.71 3.71 9.22 9.22 9.22 5.84 " +
  "11 7.52 7.55 7.68 8.47 6.95 6.33 8.52 8.27 3.24 3.24 7.21 6.13 9.49 8.23 8.66 6.63 8.66 7.64 6.98 6.72 8.05 7.52 10.88 7.54 " +
  "6.72 7.54 4.29 3.71 4.29 9.22 5.5 5.5 6.74 6.98 6.05 6.98 6.77 3.87 6.98 6.97 3.06 3.06 6.37 3.06 10.72 6.97 6.73 6.98 6.98 " +
  "4.52 5.73 4.31 6.97 6.51 9 6.51 6.51 5.77 7 3.71 7 9.22"
)
  .split(" ")
  .map(Number);
/** Text width in px at 11 px; semibold titles are about 10% wider. Anything beyond ASCII counts as a full em. */
export function textWidth(text: string, bold = false): number {
  let w = 0;
  for (const ch of text) {
    const c = ch.codePointAt(0)!;
    w += c >= 32 && c < 127 ? WIDTHS[c - 32]! : FONT;
  }
  return Math.ceil(w * (bold ? 1.1 : 1));
}

const esc = (s: string) => s.replace(/[<>&"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;" })[c]!);

/** Lay out and draw the chart. `data-state` attributes let a page highlight active states by id. */
export async function renderChart(machine: AnyStateMachine): Promise<string> {
  const { states, edges, initials } = machineGraph(machine);
  const byParent = new Map<string | null, ChartState[]>();
  for (const s of states) byParent.set(s.parent, [...(byParent.get(s.parent) ?? []), s]);
  const internals = new Map<string, ChartEdge[]>();
  for (const e of edges) if (e.internal) internals.set(e.from, [...(internals.get(e.from) ?? []), e]);
  const titleOf = (s: ChartState) => (s.invokes.length ? `${s.key}  ⟳ ${s.invokes.join(", ")}` : s.key);

  const build = (s: ChartState): ElkNode => {
    const kids = byParent.get(s.id) ?? [];
    const title = titleOf(s);
    const listed = internals.get(s.id) ?? [];
    const listW = Math.max(0, ...listed.map((e) => textWidth(e.label))) + 20;
    const base: ElkNode = { id: s.id, labels: [{ text: title }] };
    if (!kids.length) {
      return { ...base, width: Math.max(90, textWidth(title) + 24, listW), height: listed.length ? 30 + listed.length * LINE + 4 : 34 };
    }
    const top = 30 + (listed.length ? listed.length * LINE + 6 : 0);
    return {
      ...base,
      layoutOptions: {
        "elk.padding": `[top=${top},left=16,bottom=16,right=16]`,
        // A compound state is at least as wide as its title and listed transitions.
        "elk.nodeSize.constraints": "MINIMUM_SIZE",
        "elk.nodeSize.minimum": `(${Math.max(textWidth(title, true) + 30, listW)}, ${top + 20})`,
      },
      children: kids.map(build),
    };
  };

  // Transitions between the same two states share one arrow, with a label per transition.
  const arrows = new Map<string, ChartEdge[]>();
  for (const e of edges) if (!e.internal) arrows.set(`${e.from}→${e.to}`, [...(arrows.get(`${e.from}→${e.to}`) ?? []), e]);
  const root = states.find((s) => s.parent === null)!;
  const graph: ElkNode = {
    id: "__chart",
    layoutOptions: {
      "elk.algorithm": "layered",
      "elk.direction": "DOWN",
      "elk.hierarchyHandling": "INCLUDE_CHILDREN",
      "elk.edgeRouting": "ORTHOGONAL",
      "elk.layered.spacing.nodeNodeBetweenLayers": "36",
      "elk.layered.spacing.edgeNodeBetweenLayers": "14",
      "elk.layered.spacing.edgeEdgeBetweenLayers": "8",
      "elk.spacing.nodeNode": "24",
      "elk.spacing.edgeNode": "14",
      "elk.spacing.edgeEdge": "8",
      // Labels are placed as nodes of their own between layers, so they keep clear of each other and of states.
      "elk.edgeLabels.inline": "false",
      "elk.edgeLabels.placement": "CENTER",
      "elk.spacing.edgeLabel": "4",
      "elk.spacing.labelLabel": "3",
      "elk.layered.edgeLabels.sideSelection": "SMART_DOWN",
      "elk.layered.nodePlacement.strategy": "NETWORK_SIMPLEX",
    },
    children: [build(root)],
    edges: [...arrows.values()].map(
      (group): ElkExtendedEdge => ({
        id: group.map((e) => e.id).join(" "),
        sources: [group[0]!.from],
        targets: [group[0]!.to],
        labels: group.map((e): ElkLabel => ({ id: `${e.id}.label`, text: e.label, width: textWidth(e.label), height: LINE })),
      }),
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
  const W = Math.ceil(laid.width ?? 0) + 20;
  const H = Math.ceil(laid.height ?? 0) + 20;
  let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="-10 -10 ${W} ${H}" font-family="system-ui, sans-serif" font-size="${FONT}">`;
  svg += `<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs><rect x="-10" y="-10" width="${W}" height="${H}" fill="#fff"/>`;
  // States, outermost first so children paint on top.
  for (const s of states) {
    const b = abs.get(s.id)!;
    const compound = (byParent.get(s.id) ?? []).length > 0;
    const listed = internals.get(s.id) ?? [];
    const title = esc(titleOf(s));
    svg += `<g class="state ${s.type}" data-state="${esc(s.id)}">`;
    svg += `<rect x="${b.x}" y="${b.y}" width="${b.w}" height="${b.h}" rx="8" fill="${compound ? "#f7f9fc" : "#fff"}" stroke="#4e79a7" stroke-width="1.5"/>`;
    if (s.type === "final") svg += `<rect x="${b.x + 3}" y="${b.y + 3}" width="${b.w - 6}" height="${b.h - 6}" rx="6" fill="none" stroke="#4e79a7"/>`;
    if (compound) svg += `<text class="title" x="${b.x + 10}" y="${b.y + 19}" font-weight="600">${title}</text>`;
    else if (listed.length) svg += `<text class="title" x="${b.x + b.w / 2}" y="${b.y + 19}" text-anchor="middle">${title}</text>`;
    else svg += `<text class="title" x="${b.x + b.w / 2}" y="${b.y + b.h / 2 + 4}" text-anchor="middle">${title}</text>`;
    if (listed.length) {
      svg += `<line x1="${b.x + 6}" x2="${b.x + b.w - 6}" y1="${b.y + 27}" y2="${b.y + 27}" stroke="#c9d6e6"/>`;
      listed.forEach((e, i) => {
        svg += `<text class="event internal" data-edge="${e.id}" x="${b.x + 10}" y="${b.y + 27 + LINE * (i + 1) - 2}" fill="#555">${esc(e.label)}</text>`;
      });
    }
    svg += `</g>`;
  }
  // Initial-state markers: a dot just left of the initial child's top corner.
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
    for (const l of e.labels ?? []) {
      const id = (l.id ?? "").replace(/\.label$/, "");
      svg += `<text class="event" data-edge="${id}" x="${c.x + (l.x ?? 0)}" y="${c.y + (l.y ?? 0) + LINE - 3}" fill="#333">${esc(l.text ?? "")}</text>`;
    }
  }
  return svg + "</svg>\n";
}
