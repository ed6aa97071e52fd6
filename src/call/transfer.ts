/**
 * Handing a call over to a human (README "Handing over to a human"), whatever the carrier:
 *
 * - cold: the caller hears the announcement, then the carrier connects them to the number; their stream ends, and
 *   the call ends here as transferred;
 * - warm: the caller hears the announcement (and can go on talking to the agent meanwhile) while Parley places a call
 *   of its own to the human and briefs them over its stream with a summary of the call so far; once the briefing has
 *   been heard, the carrier joins both calls in one room and both streams end here.
 *
 * If the human does not answer (busy, no answer, failed, or not within TRANSFER_ANSWER_TIMEOUT_S), or the carrier
 * refuses, the caller is told and the call goes on with the agent. Every step is on the call's record: `transfer.started`,
 * then `transfer` {mode, to, ok, ...} or `transfer.error` for a request refused up front.
 */
import type { RecordEvent } from "../store/call-record.ts";
import type { CallTransfer } from "../carriers/carrier.ts";
import { transcriptOf } from "../outcome/outcome.ts";
import { E164 } from "../util/e164.ts";
import { errorMessage } from "../util/errors.ts";

export type TransferMode = "cold" | "warm";

/** What a carrier must do for a transfer (its `transfer`, src/carriers/carrier.ts), named, with Parley's call ids. */
export interface TransferCarrier extends CallTransfer {
  readonly name: string;
}

export interface TransferRequest {
  /** E.164; default TRANSFER_NUMBER. */
  to?: string;
  /** Default TRANSFER_MODE. */
  mode?: TransferMode;
  /** Said to the caller first (default: "Connecting you now." cold, "Please hold while I connect you." warm). */
  announcement?: string;
  /** Warm only: said to the human before the calls are joined (default: who is calling and the call's summary). */
  briefing?: string;
  /** Who asked: the control API (and MCP through it) or the call's agent. */
  by: "api" | "agent";
}

/** The side of a call a transfer drives (CallRuntime). */
export interface TransferableCall {
  readonly callSid: string;
  readonly live: boolean;
  readonly direction: string;
  readonly record: { from: string | null; to: string | null; turns: Parameters<typeof transcriptOf>[0]["turns"]; greetingDelivered: boolean; statuses: string[] };
  /** While set, the end of the call's stream is this hand-over (the end reason), not a hang-up. */
  handingOver: string | null;
  say(text: string, interrupt: boolean): void;
  note(type: string, data: Record<string, unknown>): void;
  subscribe(fn: (e: RecordEvent) => void): () => void;
  sayGoodbyeAndHangUp(reason: string, farewell?: string): void;
}

export interface TransferHost {
  /** The carrier that can move this call, or why none can. */
  carrierFor(call: TransferableCall): TransferCarrier | string;
  /** Warm: place Parley's own call to the human, which says `briefing` first. */
  placeLeg(to: string, briefing: string, parent: TransferableCall): Promise<TransferableCall>;
  defaults: { to: string | undefined; mode: TransferMode; answerTimeoutMs: number };
  /** Timers (tests drive them by hand). Returns a cancel function. */
  schedule?: (fn: () => void, ms: number) => () => void;
}

/** A request refused before anything happened: `status` is the HTTP status the API answers with. */
export class TransferError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = "TransferError";
  }
}

export const COLD_ANNOUNCEMENT = "Connecting you now.";
export const WARM_ANNOUNCEMENT = "Please hold while I connect you.";
export const NO_ANSWER_TEXT = "Sorry, nobody answered. I'm still here: how else can I help?";
export const FAILED_TEXT = "Sorry, I couldn't transfer your call. I'm still here: how else can I help?";
/** The briefing is the human leg's first words, which a session caps at 1000 characters. */
const MAX_BRIEFING = 1000;

type Wait = "event" | "ended" | "timeout";

export class TransferService {
  /** One transfer at a time per call. */
  private readonly underway = new Map<string, Promise<void>>();
  private readonly schedule: (fn: () => void, ms: number) => () => void;

  constructor(private readonly host: TransferHost) {
    this.schedule =
      host.schedule ??
      ((fn, ms) => {
        const t = setTimeout(fn, ms);
        return () => clearTimeout(t);
      });
  }

  /** The transfer under way on a call, if any (resolves when it has succeeded or failed). */
  pending(callSid: string): Promise<void> | undefined {
    return this.underway.get(callSid);
  }

  /**
   * Check the request and start the transfer. Throws TransferError (recorded as `transfer.error`) for a request that
   * cannot be carried out; the call goes on untouched. Otherwise resolves at once: the rest is on the record.
   */
  start(call: TransferableCall, req: TransferRequest): { mode: TransferMode; to: string } {
    const mode = req.mode ?? this.host.defaults.mode;
    const to = (req.to ?? this.host.defaults.to ?? "").trim();
    const refuse = (message: string, status: number): never => {
      call.note("transfer.error", { mode, to: to || null, by: req.by, message });
      throw new TransferError(message, status);
    };
    if (!call.live) throw new TransferError(`call ${call.callSid} is not live`, 409);
    if (!to) refuse("no number to transfer to: pass \"to\" (E.164) or set TRANSFER_NUMBER", 400);
    if (!E164.test(to)) refuse(`"to" must be an E.164 number such as +15551234567, got ${JSON.stringify(to.slice(0, 40))}`, 400);
    if (mode !== "cold" && mode !== "warm") refuse(`"mode" must be "cold" or "warm", got ${JSON.stringify(mode)}`, 400);
    if (this.underway.has(call.callSid)) refuse(`a transfer of call ${call.callSid} is already under way`, 409);
    const carrier = this.host.carrierFor(call);
    if (typeof carrier === "string") refuse(carrier, 409);
    call.note("transfer.started", { mode, to, by: req.by });
    const run = (mode === "cold" ? this.cold(call, carrier as TransferCarrier, to, req) : this.warm(call, carrier as TransferCarrier, to, req))
      .catch((err) => this.failed(call, { mode, to }, `transfer failed: ${errorMessage(err)}`, FAILED_TEXT))
      .finally(() => this.underway.delete(call.callSid));
    this.underway.set(call.callSid, run);
    return { mode, to };
  }

  private async cold(call: TransferableCall, carrier: TransferCarrier, to: string, req: TransferRequest): Promise<void> {
    const announcement = req.announcement?.trim() || COLD_ANNOUNCEMENT;
    call.say(announcement, false);
    // The caller hears the whole announcement before the carrier takes the call away.
    const heard = await this.waitFor(call, (e) => isTurn(e, "announcement", announcement), this.host.defaults.answerTimeoutMs);
    if (heard === "ended") return this.failed(call, { mode: "cold", to }, "the call ended before the transfer", null);
    await this.handOver([call], `transferred to ${to} (cold transfer)`, () => carrier.connect(call.callSid, to));
    call.note("transfer", { mode: "cold", to, ok: true, carrier: carrier.name });
  }

  private async warm(call: TransferableCall, carrier: TransferCarrier, to: string, req: TransferRequest): Promise<void> {
    call.say(req.announcement?.trim() || WARM_ANNOUNCEMENT, false);
    const briefing = (req.briefing?.trim() || briefingFor(call)).slice(0, MAX_BRIEFING);
    let leg: TransferableCall;
    try {
      leg = await this.host.placeLeg(to, briefing, call);
    } catch (err) {
      return this.failed(call, { mode: "warm", to }, `could not call ${to}: ${errorMessage(err)}`, FAILED_TEXT);
    }
    call.note("transfer.leg", { callSid: leg.callSid, to });
    // The human must answer and hear the whole briefing; the caller may hang up meanwhile.
    const briefed = await this.waitForBriefing(call, leg, this.host.defaults.answerTimeoutMs);
    const base = { mode: "warm" as const, to, legCallSid: leg.callSid };
    if (briefed === "caller gone") {
      if (leg.live) leg.sayGoodbyeAndHangUp("the transferred caller hung up", "Sorry, the caller has hung up. Goodbye!");
      return this.failed(call, base, "the caller hung up before the human was connected", null);
    }
    if (briefed !== "event") {
      const why = briefed === "timeout" ? `no answer within ${Math.round(this.host.defaults.answerTimeoutMs / 1000)} s` : `no answer (${leg.record.statuses.at(-1) ?? "call ended"})`;
      if (leg.live) leg.sayGoodbyeAndHangUp(`transfer: ${why}`);
      return this.failed(call, base, why, NO_ANSWER_TEXT);
    }
    const room = `parley-${call.callSid}`;
    try {
      leg.handingOver = `joined to transferred call ${call.callSid}`;
      await this.handOver([call], `transferred to ${to} (warm transfer)`, () => carrier.join([call.callSid, leg.callSid], room));
    } catch (err) {
      leg.handingOver = null;
      if (leg.live) leg.sayGoodbyeAndHangUp("transfer failed", "Sorry, the call could not be connected. Goodbye!");
      throw err;
    }
    call.note("transfer", { ...base, ok: true, room, carrier: carrier.name });
    leg.note("transfer", { ...base, ok: true, room, carrier: carrier.name, parentCallSid: call.callSid });
  }

  /** Mark the calls as handing over (their stream's end is the transfer), then let the carrier move them. */
  private async handOver(calls: TransferableCall[], reason: string, move: () => Promise<void>): Promise<void> {
    for (const c of calls) c.handingOver = reason;
    try {
      await move();
    } catch (err) {
      for (const c of calls) c.handingOver = null;
      throw err;
    }
  }

  /** Recorded as `transfer` {ok: false}; the caller hears `tell` and the call goes on with the agent. */
  private failed(call: TransferableCall, what: Record<string, unknown>, error: string, tell: string | null): void {
    call.note("transfer", { ...what, ok: false, error });
    if (tell && call.live) call.say(tell, false);
  }

  /** Until the human's leg has heard the briefing, it ends unanswered, the caller goes, or `ms` pass. */
  private waitForBriefing(call: TransferableCall, leg: TransferableCall, ms: number): Promise<Wait | "caller gone"> {
    if (!call.live) return Promise.resolve("caller gone");
    if (!leg.live) return Promise.resolve("ended");
    return this.until<Wait | "caller gone">(
      [
        [leg, (e) => (e.type === "greeting.delivered" ? "event" : isEnd(e) ? "ended" : null)],
        [call, (e) => (isEnd(e) ? "caller gone" : null)],
      ],
      ms,
    );
  }

  /** Until an event of `call` passes `check`, the call ends, or `ms` pass. */
  private waitFor(call: TransferableCall, check: (e: RecordEvent) => boolean, ms: number): Promise<Wait> {
    if (!call.live) return Promise.resolve("ended");
    return this.until<Wait>([[call, (e) => (check(e) ? "event" : isEnd(e) ? "ended" : null)]], ms);
  }

  /** The first outcome any watched call's events give (null: keep waiting), or "timeout" after `ms`; then let go. */
  private until<W extends string>(watch: [TransferableCall, (e: RecordEvent) => W | null][], ms: number): Promise<W | "timeout"> {
    return new Promise((resolve) => {
      let settled = false;
      const offs: (() => void)[] = [];
      let cancel = () => {};
      const done = (w: W | "timeout") => {
        if (settled) return;
        settled = true;
        for (const off of offs) off();
        cancel();
        resolve(w);
      };
      for (const [c, outcome] of watch)
        offs.push(
          c.subscribe((e) => {
            const w = outcome(e);
            if (w !== null) done(w);
          }),
        );
      // An outcome given while subscribing left the later subscriptions in place: let them go too.
      if (settled) for (const off of offs) off();
      else cancel = this.schedule(() => done("timeout"), ms);
    });
  }
}

function isEnd(e: RecordEvent): boolean {
  return e.type === "call.ended" || e.type === "call.suspended";
}

function isTurn(e: RecordEvent, kind: string, text: string): boolean {
  const turn = e.type === "turn" ? (e.turn as { role?: string; kind?: string; text?: string } | undefined) : undefined;
  return turn?.role === "assistant" && turn.kind === kind && turn.text === text;
}

/**
 * What the human hears first: that a call is being handed over, and what the caller has said so far, from the
 * transcript (no model), labelled so, and short enough to listen to: the caller's last words first when it is long.
 */
export function briefingFor(call: Pick<TransferableCall, "record">): string {
  const said = transcriptOf(call.record as Parameters<typeof transcriptOf>[0]).filter((l) => l.role === "caller");
  let quoted = said.map((l) => `"${l.text}"`).join(" ");
  if (quoted.length > MAX_QUOTED) quoted = `... ${quoted.slice(-MAX_QUOTED)}`;
  const summary = said.length ? `Summary from the transcript, made without a language model: the caller said ${quoted}.` : "The caller has not said anything yet.";
  return `Parley here, with a call to hand over. ${summary} Connecting you now.`;
}

const MAX_QUOTED = 400;
