import type { CallRecord } from "../store/call-record.ts";
import type { CallSummary } from "./manager-types.ts";

export interface CallFilter {
  state?: string;
  direction?: string;
  since?: number;
}

/** Where calls are found: this process's live ones, the fleet's shared records, recently ended ones, the disk. */
export interface CallSources {
  live: Iterable<CallRecord>;
  shared: { recent(limit: number): Promise<CallRecord[]> } | null;
  recent: Iterable<CallRecord>;
  store: { list(): Promise<string[]>; read(callSid: string): Promise<CallRecord | null> };
}

/** How many of the fleet's newest calls `GET /api/calls` folds from Redis. */
const SHARED_LIST_LIMIT = 500;

/** Live and recorded calls, newest first, each once (the first source that has it wins). */
export async function listCalls(src: CallSources, filter: CallFilter): Promise<CallSummary[]> {
  const seen = new Set<string>();
  const out: CallSummary[] = [];
  const add = (r: CallRecord, live: boolean) => {
    if (seen.has(r.callSid)) return;
    seen.add(r.callSid);
    out.push({ callSid: r.callSid, direction: r.direction, from: r.from, to: r.to, state: r.state, createdAt: r.createdAt, endedAt: r.endedAt, endReason: r.endReason, live });
  };
  for (const r of src.live) add(r, true);
  // The fleet's newest calls: a call with no end in its shared record is live on some instance.
  if (src.shared) for (const r of await src.shared.recent(SHARED_LIST_LIMIT)) add(r, r.endedAt === null);
  for (const r of src.recent) add(r, false);
  for (const sid of await src.store.list()) {
    if (seen.has(sid)) continue;
    const r = await src.store.read(sid);
    if (r) add(r, false);
  }
  return out
    .filter((c) => !filter.direction || c.direction === filter.direction)
    .filter((c) => filter.since === undefined || c.createdAt >= filter.since)
    .filter((c) => !filter.state || stateMatches(c, filter.state))
    .sort((a, b) => b.createdAt - a.createdAt);
}

/** `state=live|ended` or a state name anywhere in the call's state value (e.g. `reconnecting`, `speaking`). */
function stateMatches(c: CallSummary, state: string): boolean {
  if (state === "live") return c.live;
  if (state === "ended") return !c.live;
  return JSON.stringify(c.state ?? "").includes(`"${state}"`);
}
