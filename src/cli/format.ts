/** Pure formatting for the CLI: tables, durations, relative times and one line per call event. */

import type { CallSummary } from "../call/call-manager.ts";

export type { CallSummary };

/** An XState value as a dotted path: `{ active: { replying: "speaking" } }` -> `active.replying.speaking`. */
export function flattenState(value: unknown): string {
  if (value === null || value === undefined) return "-";
  if (typeof value !== "object") return String(value);
  // Parallel regions have several keys: show each region's path.
  return Object.entries(value as Record<string, unknown>)
    .map(([k, v]) => (v === null || v === undefined || (typeof v === "object" && Object.keys(v).length === 0) ? k : `${k}.${flattenState(v)}`))
    .join(", ");
}

const pad2 = (n: number) => String(n).padStart(2, "0");

/** Local wall-clock time with milliseconds, the resolution event timing needs. */
export function clockTime(t: number): string {
  const d = new Date(t);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, "0")}`;
}

/** Local date and time to the second, for the calls table. */
export function dateTime(t: number): string {
  const d = new Date(t);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

export function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad2(s % 60)}s`;
  return `${Math.floor(s / 3600)}h ${pad2(Math.floor(s / 60) % 60)}m`;
}

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `--since`: an ISO time, or a span back from `now` such as `10m`, `2h`, `1d`. Epoch ms, or undefined if invalid. */
export function parseSince(text: string, now = Date.now()): number | undefined {
  const rel = /^(\d+(?:\.\d+)?)\s*([smhd])$/i.exec(text.trim());
  if (rel) return Math.round(now - Number(rel[1]) * UNITS[rel[2]!.toLowerCase()]!);
  // Date.parse also accepts loose forms ("10"): require something that looks like a date.
  if (!/^\d{4}-\d{2}-\d{2}/.test(text.trim())) return undefined;
  const t = Date.parse(text);
  return Number.isNaN(t) ? undefined : t;
}

/** Columns padded to their widest cell; the last column is not padded, so lines carry no trailing spaces. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

export function callsTable(calls: CallSummary[]): string {
  const rows = calls.map((c) => [
    c.callSid,
    c.direction ?? "-",
    c.from ?? "-",
    c.to ?? "-",
    flattenState(c.state),
    dateTime(c.createdAt),
    c.live ? "live" : c.endedAt != null ? duration(c.endedAt - c.createdAt) : "-",
  ]);
  return table(["ID", "DIRECTION", "FROM", "TO", "STATE", "STARTED", "DURATION"], rows);
}

const quote = (s: unknown) => JSON.stringify(String(s ?? ""));

interface TurnLike {
  turnId?: number;
  role?: string;
  text?: string;
  heardText?: string;
  interrupted?: boolean;
  latency?: { totalMs?: number | null } | null;
}

function turnDetail(turn: TurnLike): string {
  const parts = [`${turn.role ?? "?"} ${quote(turn.text)}`];
  if (turn.interrupted) parts.push(turn.heardText !== undefined ? `interrupted, heard ${quote(turn.heardText)}` : "interrupted");
  if (typeof turn.latency?.totalMs === "number") parts.push(`total ${Math.round(turn.latency.totalMs)} ms`);
  return parts.join("  ");
}

/** The fields not already shown, as `key=value`, so unfamiliar event types still say something. */
function restDetail(ev: Record<string, unknown>, shown: string[]): string {
  return Object.entries(ev)
    .filter(([k]) => k !== "t" && k !== "type" && !shown.includes(k))
    .map(([k, v]) => `${k}=${typeof v === "string" ? (/[\s"=]/.test(v) || v === "" ? quote(v) : v) : JSON.stringify(v)}`)
    .join(" ");
}

/** The salient part of one event, by type. */
export function eventDetail(ev: Record<string, unknown>): string {
  const type = String(ev.type ?? "");
  switch (type) {
    case "state":
      return [flattenState(ev.value), restDetail(ev, ["value"])].filter(Boolean).join("  ");
    case "transcript":
      return [quote(ev.text), restDetail(ev, ["text"])].filter(Boolean).join("  ");
    case "turn":
      return turnDetail((ev.turn ?? {}) as TurnLike);
    case "barge-in":
      return [ev.turnId !== undefined ? `turn ${String(ev.turnId)}` : "", ev.heardText !== undefined ? `heard ${quote(ev.heardText)}` : "", restDetail(ev, ["turnId", "heardText"])]
        .filter(Boolean)
        .join("  ");
    case "mark":
      return [String(ev.name ?? ""), restDetail(ev, ["name"])].filter(Boolean).join("  ");
    case "call.ended":
      return [String(ev.reason ?? ""), restDetail(ev, ["reason"])].filter(Boolean).join("  ");
    case "snapshot":
      return [flattenState(ev.state), ev.live === true ? "live" : ev.live === false ? "ended" : ""].filter(Boolean).join("  ");
    default:
      return restDetail(ev, []);
  }
}

/** `HH:MM:SS.mmm  type  detail`, the type padded so details line up across the common event names. */
export function eventLine(ev: Record<string, unknown>): string {
  const t = typeof ev.t === "number" ? clockTime(ev.t) : "--:--:--.---";
  return `${t}  ${String(ev.type ?? "?").padEnd(18)}  ${eventDetail(ev)}`.trimEnd();
}

/** The end of `parley tail`: the reason the call ended, from the stream's closing `end` event. */
export function endLine(ev: Record<string, unknown>): string {
  return `Call ended: ${typeof ev.reason === "string" && ev.reason ? ev.reason : "no reason given"}`;
}

/** The parts of a call record (GET /api/calls/:callSid) that `parley tail` replays for a call that is over. */
export interface CallRecordLike {
  direction?: string | null;
  from?: string | null;
  to?: string | null;
  mode?: string | null;
  createdAt?: number;
  startedAt?: number | null;
  endedAt?: number | null;
  endReason?: string | null;
  greetingDelivered?: boolean;
  states?: { t: number; value: unknown; event?: string }[];
  turns?: (TurnLike & { at?: number })[];
  errors?: { t: number; type: string; message: string }[];
}

/**
 * An ended call's events rebuilt from its record, in time order: created, stream started, every state change, every
 * turn, every error, ended. Shaped like the live events, so they print the same way.
 */
export function recordTimeline(rec: CallRecordLike | null): Record<string, unknown>[] {
  if (!rec) return [];
  const out: Record<string, unknown>[] = [];
  const created: Record<string, unknown> = { t: rec.createdAt, type: "call.created" };
  for (const k of ["direction", "from", "to", "mode"] as const) if (rec[k]) created[k] = rec[k];
  out.push(created);
  if (typeof rec.startedAt === "number") out.push({ t: rec.startedAt, type: "stream.started" });
  const states = rec.states ?? [];
  states.forEach((s, i) => {
    // The record keeps only a flag for greeting.delivered; the machine emits that event on one transition, greeting's
    // PLAYBACK.DONE (its last mark echoed), whose time the record does hold.
    if (rec.greetingDelivered && s.event === "PLAYBACK.DONE" && i > 0 && /(^|\.)greeting($|,)/.test(flattenState(states[i - 1]!.value)))
      out.push({ t: s.t, type: "greeting.delivered" });
    out.push(s.event ? { t: s.t, type: "state", value: s.value, event: s.event } : { t: s.t, type: "state", value: s.value });
  });
  for (const turn of rec.turns ?? []) out.push({ t: turn.at, type: "turn", turn });
  for (const e of rec.errors ?? []) out.push({ t: e.t, type: e.type, message: e.message });
  if (typeof rec.endedAt === "number") out.push({ t: rec.endedAt, type: "call.ended", reason: rec.endReason ?? "" });
  // Stable sort: events at the same millisecond keep the order above (a state change before the turn it starts).
  return out.sort((a, b) => (Number(a.t) || 0) - (Number(b.t) || 0));
}
