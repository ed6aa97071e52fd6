/** The commands that talk to the control API. Each returns its exit status; usage problems throw UsageError. */
import type { ApiClient } from "./api-client.ts";
import { callsTable, endLine, eventLine, flattenState, parseSince, recordTimeline, type CallRecordLike, type CallSummary } from "./format.ts";

/** Bad command line: the CLI prints the message on one line, with where the usage is, and exits 2. */
export class UsageError extends Error {}

export interface Context {
  client: ApiClient;
  positionals: string[];
  values: Record<string, string | boolean | undefined>;
  out: (line: string) => void;
}

const str = (v: string | boolean | undefined): string | undefined => (typeof v === "string" ? v : undefined);
const callPath = (callSid: string) => `/api/calls/${encodeURIComponent(callSid)}`;

/** Exactly `names.length` positionals, named in the error when one is missing. */
function positionals(ctx: Context, names: string[], rest = false): string[] {
  const p = ctx.positionals;
  const missing = names.find((_, i) => p[i] === undefined || p[i] === "");
  if (missing) throw new UsageError(`missing ${missing}`);
  if (!rest && p.length > names.length) throw new UsageError(`unexpected argument '${p[names.length]}'`);
  return p;
}

/**
 * What `--state` accepts, as the API matches it: `live`, `ended`, or the name of any state of the call machine (read
 * from the machine itself, so a renamed state cannot leave the CLI with a stale list).
 */
export async function stateNames(): Promise<string[]> {
  // Loaded only for `--state`: the machine (and XState) would add to every other command's start-up.
  const { callMachine } = await import("../../machines/call.machine.ts");
  const names = new Set(["live", "ended"]);
  const walk = (node: { states: Record<string, unknown> }) => {
    for (const [key, child] of Object.entries(node.states)) {
      names.add(key);
      walk(child as typeof node);
    }
  };
  walk(callMachine.root);
  return [...names];
}

export async function calls(ctx: Context): Promise<number> {
  positionals(ctx, []);
  const query = new URLSearchParams();
  const state = str(ctx.values.state);
  const direction = str(ctx.values.direction);
  const since = str(ctx.values.since);
  if (state !== undefined) {
    // The API filters by any string and would answer an unknown state with an empty list: say the name is wrong.
    const valid = await stateNames();
    if (!valid.includes(state)) throw new UsageError(`--state must be one of ${valid.join(", ")}; got '${state}'`);
    query.set("state", state);
  }
  if (direction) {
    if (!["inbound", "outbound", "browser"].includes(direction)) throw new UsageError(`--direction must be inbound, outbound or browser, not '${direction}'`);
    query.set("direction", direction);
  }
  if (since !== undefined) {
    const t = parseSince(since);
    if (t === undefined) throw new UsageError(`--since must be an ISO time (2025-01-31T09:00:00Z) or a span like 10m, 2h, 1d; got '${since}'`);
    query.set("since", String(t));
  }
  const qs = query.toString();
  const body = await ctx.client.request<{ calls?: CallSummary[] }>("GET", `/api/calls${qs ? `?${qs}` : ""}`);
  const list = body?.calls ?? [];
  if (ctx.values.json) ctx.out(JSON.stringify(list, null, 2));
  else ctx.out(list.length ? callsTable(list) : "No calls.");
  return 0;
}

export async function call(ctx: Context): Promise<number> {
  const [to] = positionals(ctx, ["<number>"]);
  const message = str(ctx.values.message);
  if (!message) throw new UsageError("missing --message <text>");
  const mode = str(ctx.values.mode) ?? "conversation";
  if (mode !== "conversation" && mode !== "notify") throw new UsageError(`--mode must be conversation or notify, not '${mode}'`);
  const from = str(ctx.values.from);
  const created = await ctx.client.request<{ callSid?: string; state?: unknown }>("POST", "/api/calls", { to, from, mode, message });
  if (ctx.values.json) ctx.out(JSON.stringify(created, null, 2));
  else ctx.out(`${created?.callSid ?? "?"}  ${flattenState(created?.state)}`);
  if (!ctx.values.follow) return 0;
  if (!created?.callSid) throw new Error("the API did not return the new call's id, so it cannot be followed");
  return tailEvents(ctx, created.callSid);
}

export async function tail(ctx: Context): Promise<number> {
  const [callSid] = positionals(ctx, ["<callSid>"]);
  return tailEvents(ctx, callSid!);
}

async function tailEvents(ctx: Context, callSid: string): Promise<number> {
  // Ctrl-C ends the stream, not the process mid-write: the loop below sees the abort and returns 0.
  const ac = new AbortController();
  const onSigint = () => ac.abort();
  process.once("SIGINT", onSigint);
  const print = (ev: Record<string, unknown>) => ctx.out(ctx.values.json ? JSON.stringify(ev) : eventLine(ev));
  try {
    for await (const ev of ctx.client.events(`${callPath(callSid)}/events`, ac.signal)) {
      const obj = eventObject(ev.event, ev.data);
      if (ev.event === "end") {
        ctx.out(ctx.values.json ? JSON.stringify(obj) : endLine(obj));
        return 0;
      }
      // A call that is over has no live events: its story is in the record, so print that before the end.
      if (ev.event === "snapshot" && obj.live === false) {
        const rec = await ctx.client.request<CallRecordLike>("GET", callPath(callSid));
        for (const e of recordTimeline(rec)) print(e);
        continue;
      }
      print(obj);
    }
    if (ac.signal.aborted) return 0;
    throw new Error("the event stream closed before the call ended");
  } catch (err) {
    if (ac.signal.aborted) return 0;
    throw err;
  } finally {
    process.off("SIGINT", onSigint);
  }
}

/** An SSE event's JSON data as an object carrying its type (data that is not a JSON object is kept under `data`). */
function eventObject(event: string, text: string): Record<string, unknown> {
  let data: unknown;
  try {
    data = text === "" ? {} : JSON.parse(text);
  } catch {
    data = { data: text };
  }
  const obj: Record<string, unknown> = data && typeof data === "object" && !Array.isArray(data) ? (data as Record<string, unknown>) : { data };
  obj.type ??= event;
  return obj;
}

export async function hangup(ctx: Context): Promise<number> {
  const [callSid] = positionals(ctx, ["<callSid>"]);
  await ctx.client.request("POST", `${callPath(callSid!)}/hangup`);
  ctx.out(`Hanging up ${callSid}`);
  return 0;
}

export async function speak(ctx: Context): Promise<number> {
  // The text may arrive unquoted as several words: join them rather than reject the extras.
  const [callSid, ...words] = positionals(ctx, ["<callSid>", "<text>"], true);
  const interrupt = !!ctx.values.interrupt;
  await ctx.client.request("POST", `${callPath(callSid!)}/speak`, { text: words.join(" "), interrupt });
  ctx.out(`${interrupt ? "Speaking now" : "Queued speech"} on ${callSid}`);
  return 0;
}
