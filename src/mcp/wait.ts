/**
 * `wait_for_call`: follow a call's event stream until it ends and its outcome is written, telling the waiting client
 * what happens meanwhile (progress notifications), and giving up at a deadline with the call as it stands.
 */
import type { CallEvent, CallView, ParleyApi } from "./api.ts";
import { stateName } from "./views.ts";

export interface WaitOptions {
  timeoutMs: number;
  /** The client cancelled, or went away. */
  signal: AbortSignal;
  /** Something happened: one short line. */
  progress: (message: string) => void | Promise<void>;
  /** How long to keep saying "still waiting" when nothing happens (so clients that reset their timeout on progress keep waiting). */
  heartbeatMs?: number;
  /** The first pause before looking for the outcome again once the call has ended (then doubling, up to 2 s). */
  outcomePollMs?: number;
  /** How long after the end an outcome may take to be written (a model may be summarising). */
  outcomeGraceMs?: number;
}

export interface WaitResult {
  ended: boolean;
  call: CallView;
  /** Why there is no outcome although the call ended (the API has none, or it was not written in time). */
  note?: string;
}

/** One line for an event worth telling a waiting client about; undefined for the rest (audio marks, partials...). */
export function describeEvent(e: CallEvent): string | undefined {
  const d = (e.data && typeof e.data === "object" ? e.data : {}) as Record<string, unknown>;
  switch (e.event) {
    case "state":
      return `state: ${stateName(d.value)}`;
    case "call.status":
      return `carrier status: ${String(d.status)}`;
    case "turn": {
      const t = (d.turn ?? {}) as { role?: string; text?: string; heardText?: string };
      const text = t.role === "assistant" ? (t.heardText ?? t.text) : t.text;
      return text ? `${t.role === "user" ? "caller" : "parley"}: ${text}` : undefined;
    }
    case "barge-in":
      return "the caller talked over Parley";
    case "end":
      return `call ended${typeof d.reason === "string" ? `: ${d.reason}` : ""}`;
    case "outcome":
      return "outcome written";
    default:
      return undefined;
  }
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });

export async function waitForCall(api: ParleyApi, callSid: string, o: WaitOptions): Promise<WaitResult> {
  // One signal for "stop now": the deadline or the client.
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(), o.timeoutMs);
  const stop = AbortSignal.any([deadline.signal, o.signal]);
  const heartbeat = setInterval(() => void Promise.resolve(o.progress("still waiting")).catch(() => {}), o.heartbeatMs ?? 15_000);
  try {
    let call = await api.getCall(callSid);
    const graceMs = o.outcomeGraceMs ?? 30_000;
    while (call.live && !stop.aborted) {
      // After `end` the stream stays open for the outcome, which may take a while (a model summarising); not forever.
      const afterEnd = new AbortController();
      let grace: NodeJS.Timeout | undefined;
      try {
        for await (const e of api.events(callSid, AbortSignal.any([stop, afterEnd.signal]))) {
          const line = describeEvent(e);
          if (line) await o.progress(line);
          if (e.event === "end") grace ??= setTimeout(() => afterEnd.abort(), graceMs);
          if (e.event === "outcome") break;
        }
      } catch (err) {
        if (!stop.aborted && !afterEnd.signal.aborted) throw err;
      } finally {
        clearTimeout(grace);
      }
      if (stop.aborted) break;
      call = await api.getCall(callSid);
      // The stream closed although the call still runs (a proxy cut it): look again shortly, not in a tight loop.
      if (call.live) await sleep(500, stop);
    }
    o.signal.throwIfAborted();
    // At the deadline, the call as it stands now (it may have ended just then).
    if (stop.aborted) call = await api.getCall(callSid);
    if (call.live) return { ended: false, call };
    if (!("outcome" in call)) return { ended: true, call, note: "this Parley does not write outcomes" };
    // Ended without an outcome yet (the stream was cut, or the call had ended before we looked and the outcome is
    // still being written): look again, less and less often (each look is a request to the API).
    const grace = AbortSignal.any([stop, AbortSignal.timeout(graceMs)]);
    for (let pause = o.outcomePollMs ?? 250; call.outcome == null && !grace.aborted; pause = Math.min(pause * 2, 2_000)) {
      await sleep(pause, grace);
      call = await api.getCall(callSid);
    }
    o.signal.throwIfAborted();
    return call.outcome == null ? { ended: true, call, note: "the call ended, but its outcome is not written yet: call get_call later" } : { ended: true, call };
  } finally {
    clearTimeout(timer);
    clearInterval(heartbeat);
  }
}
