import { randomBytes } from "node:crypto";
import type { CallMode, ChatTurn } from "../../machines/call.machine.ts";
import { foldLines, isSafeCallId } from "../store/call-store.ts";
import type { CallRecord } from "../store/call-record.ts";
import type { Carrier, CarrierReply, StreamStart, StreamTicket } from "../carriers/carrier.ts";
import { CallRuntime, type CallDirection, type StatusUpdate } from "./call-runtime.ts";
import { EarlyStatuses } from "./early-statuses.ts";
// Its home was here; importers keep working.
export { EarlyStatuses } from "./early-statuses.ts";
import type { Services } from "./services.ts";
import { completeOutcome } from "./outcome-completion.ts";
import { createResponder } from "../responders/create.ts";
import { withRecordingNotice } from "../recording/call-recording.ts";
import { checkSession, sessionProblems, sessionSchema, voiceOf, type Session } from "../session/session.ts";
import { errorMessage } from "../util/errors.ts";
import { isBusy, type Admission, type AdmissionKind, type Ticket } from "../state/admission.ts";
import { StateUnavailableError } from "../state/redis-client.ts";
import { createSharedState, type SharedState } from "../state/shared-state.ts";
import { InstanceDirectory, locateOwner, type OwnerLocation } from "../state/instances.ts";
import type { CallCommands, CommandBus, Op } from "../state/call-commands.ts";
import { publishEvents, runCommand } from "./remote-commands.ts";
import { listCalls, type CallFilter } from "./call-list.ts";
import { TransferError, TransferService, type TransferRequest } from "./transfer.ts";

const TOKEN_TTL_MS = 60_000;
const newToken = () => randomBytes(18).toString("base64url");
/** Parley's own call id, for carriers whose ids are not safe as file names (see Carrier.callIds). */
const newCallId = (prefix: string) => `${prefix}${randomBytes(16).toString("hex")}`;
/** A Parley-minted id's prefix per carrier: which carrier a record came through, at a glance. */
const ID_PREFIX: Record<string, string> = { browser: "BR", telnyx: "TX", plivo: "PV" };

export { CapacityError, RequestError } from "./manager-types.ts";
export type { CallSummary, OutboundRequest, PublicUrls } from "./manager-types.ts";
import { CapacityError, RequestError, type CallSummary, type OutboundRequest, type PublicUrls } from "./manager-types.ts";

/**
 * The live calls of this process, and the single-use tokens that bind a media stream to its call (see
 * src/state/tokens.ts). Tokens, slots and call ownership live in the shared state: this process's memory, or Redis.
 */
export class CallManager {
  private readonly calls = new Map<string, CallRuntime>();
  /** Ended calls stay readable from memory for a while (the journal on disk is the durable copy). */
  private readonly recent = new Map<string, CallRecord>();
  /**
   * Status callbacks that beat the REST response announcing their call (carriers send them concurrently). Keyed by
   * remote input, so bounded: only the fields a call reads are kept, per call and in all.
   */
  private readonly early = new EarlyStatuses();
  /** The slot each live call holds under MAX_CONCURRENT_CALLS. */
  private readonly tickets = new Map<string, Ticket>();
  /** Outcomes being written for calls that just ended. */
  private readonly writingOutcomes = new Map<string, Promise<void>>();
  /** Restorations under way: two action requests for one call share one. */
  private readonly restoring = new Map<string, Promise<CallRuntime | undefined>>();
  /** Calls another instance took over (this one's lease was refused): their slot is the new owner's now. */
  private readonly lost = new Set<string>();
  /** SIGTERM: no new calls here (see drain). */
  private draining = false;
  /** Ended calls whose shared record is being flushed and whose lease is being given back. */
  private readonly leaving = new Set<Promise<unknown>>();
  /** Where the fleet's instances are (INSTANCE_URL), to hand a call back to its owner. */
  readonly directory: InstanceDirectory;
  /** Control-API commands for calls another instance runs (Redis pub/sub); null in memory. */
  commands: CommandBus | null = null;
  /** Calls whose events this instance publishes for SSE streams on other instances. */
  private readonly watched = new Set<string>();

  constructor(
    private readonly services: Services,
    private readonly urls: () => PublicUrls,
    readonly state: SharedState = createSharedState(services.config, services.clock, null),
  ) {
    this.directory = new InstanceDirectory(services.redis);
    const { config } = services;
    this.transfers = new TransferService({
      carrierFor: (call) => {
        const runtime = this.calls.get(call.callSid);
        const carrier = runtime?.carrier;
        if (!carrier || call.direction === "browser") return "a softphone call has no carrier leg to transfer";
        const t = carrier.transfer;
        if (!t) return `${carrier.name} cannot transfer this call (Twilio with TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN can)`;
        // Parley's ids in, the carrier's out (the same for Twilio; not for carriers that mint their own).
        const idOf = (callSid: string) => this.calls.get(callSid)?.carrierCallId ?? callSid;
        return { name: carrier.name, connect: (callSid, to) => t.connect(idOf(callSid), to), join: (callSids, room) => t.join(callSids.map(idOf), room) };
      },
      placeLeg: (to, briefing, parent) =>
        this.placeOutbound({ to, mode: "conversation", message: briefing, session: { metadata: { transferOf: parent.callSid } } }),
      defaults: { to: config.transferNumber, mode: config.transferMode, answerTimeoutMs: config.transferAnswerTimeoutS * 1000 },
    });
  }

  /** Hand-overs to a human (README "Handing over to a human"). */
  readonly transfers: TransferService;

  /** Start handing a live call of this instance over to a human; RequestError when it cannot be (recorded on the call). */
  transfer(callSid: string, req: TransferRequest): { mode: string; to: string } {
    const call = this.calls.get(callSid);
    if (!call?.live) throw new RequestError(`call ${callSid} is not live on this instance`, 409);
    try {
      return this.transfers.start(call, req);
    } catch (err) {
      if (err instanceof TransferError) throw new RequestError(err.message, err.status);
      throw err;
    }
  }

  /** Another instance took the call over (this one's lease renewal was refused): let it go here, quietly. */
  lose(callSid: string): void {
    const call = this.calls.get(callSid);
    if (!call) return;
    this.lost.add(callSid);
    this.services.log.warn({ callSid }, "call taken over by another instance: suspending it here");
    call.shutdown();
  }

  /** A live call another instance owns, driven through that instance; null when no other instance holds it. */
  async remote(callSid: string): Promise<CallCommands | null> {
    if (!this.commands || !isSafeCallId(callSid)) return null;
    const owner = await this.state.leases.owner(callSid);
    return owner && owner.holder !== this.state.instanceId ? this.commands.remote(owner.holder, callSid) : null;
  }

  /** A command routed here by another instance for a call this one runs. */
  async execute(callSid: string, op: Op, args: unknown[]): Promise<unknown> {
    const call = this.calls.get(callSid);
    if (!call?.live) throw new RequestError(`call ${callSid} is not live on instance ${this.state.instanceId}`, 409);
    if (op !== "watch") return runCommand(call, op, args);
    // Another instance follows this call (SSE): its events go out on the call's channel while anyone listens.
    if (this.watched.has(callSid) || !this.commands) return;
    this.watched.add(callSid);
    publishEvents(call, this.commands, () => this.watched.delete(callSid));
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /**
   * Stop admitting calls, let the live ones finish for up to `timeoutMs`, then suspend the rest: their sockets close,
   * their leases are given back, and Twilio's <Connect action> carries each to another instance, which takes it over.
   */
  async drain(timeoutMs: number): Promise<{ finished: number; handedOver: number }> {
    this.draining = true;
    const atStart = this.calls.size;
    const until = this.services.clock.now() + timeoutMs;
    while (this.calls.size && this.services.clock.now() < until) await new Promise((r) => setTimeout(r, 100));
    const handedOver = this.calls.size;
    for (const call of [...this.calls.values()]) call.shutdown();
    // The leases go back before the process exits, so another instance can take each call at once.
    await Promise.allSettled([...this.restoring.values()]);
    await this.settled();
    return { finished: atStart - handedOver, handedOver };
  }

  /** Calls that ended or were suspended have their last lines in the shared record and their leases given back. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.leaving]);
  }

  get admission(): Admission {
    return this.state.admission;
  }

  get liveCount(): number {
    return this.calls.size;
  }

  /** Take a slot for `id`, or throw CapacityError. Check and take are one step (see Admission). */
  private async admit(id: string, kind: AdmissionKind): Promise<Ticket> {
    if (this.draining) throw new CapacityError("draining: this instance is shutting down (SIGTERM); try another", 5);
    let t;
    try {
      t = await this.admission.admit(id, kind);
    } catch (err) {
      // Shared state away: no call can be admitted fleet-wide, so none is taken here (503, Twilio gets "busy").
      if (err instanceof StateUnavailableError) throw new CapacityError(err.message, 5);
      throw err;
    }
    if (isBusy(t)) throw new CapacityError(`at capacity (${t.inUse} calls, MAX_CONCURRENT_CALLS=${t.max})`, t.retryAfterS);
    return t;
  }

  /**
   * A session from the API or MCP, checked against what this process can do. Throws RequestError naming every
   * problem, so a bad brief is refused before a call is placed.
   */
  validateSession(raw: unknown): Session {
    const parsed = sessionSchema.safeParse(raw ?? {});
    const problems = parsed.success ? checkSession(parsed.data, this.services) : sessionProblems(parsed.error);
    if (parsed.success) {
      try {
        createResponder(parsed.data, this.services).close("validated");
      } catch (err) {
        problems.push(`agent: ${errorMessage(err)}`);
      }
    }
    if (problems.length) throw new RequestError(`invalid session: ${problems.join("; ")}`);
    return parsed.data!;
  }

  /**
   * An inbound call announced by its carrier's webhook: its actor, and the carrier's document that opens its stream
   * (TwiML, or Telnyx's `answer` command). Parley's id is the carrier's when that is safe (Twilio), else minted here.
   */
  async answerInbound(carrier: Carrier, init: { carrierCallId: string; from?: string; to?: string }): Promise<CarrierReply> {
    const callSid = carrier.callIds === "carrier" ? init.carrierCallId : newCallId(ID_PREFIX[carrier.name] ?? "CL");
    if (!isSafeCallId(callSid)) throw new RequestError(`invalid CallSid ${JSON.stringify(callSid)}`);
    if (this.calls.has(callSid) || this.tickets.has(callSid)) throw new RequestError(`call ${callSid} was already answered`, 409);
    const ticket = await this.admit(callSid, "inbound");
    if (this.calls.has(callSid)) throw new RequestError(`call ${callSid} was already answered`, 409);
    const session = this.services.routes.sessionFor(init.to);
    const call = new CallRuntime(this.services, { callSid, carrier, carrierCallId: init.carrierCallId, from: init.from, to: init.to, direction: "inbound", session }, (c) => this.finished(c));
    this.add(call, ticket);
    return carrier.answer(await this.streamTicket(call));
  }

  /** The stream document for an outbound call the carrier fetches once it is answered (Plivo's `answer_url`). */
  async answerPlaced(carrier: Carrier, callSid: string): Promise<CarrierReply | null> {
    const call = this.calls.get(callSid);
    if (!call || call.carrier !== carrier || !call.wantsStream) return null;
    return carrier.answer(await this.streamTicket(call));
  }

  /**
   * A call from the browser softphone. There is no Twilio behind it: the browser speaks the Media Streams protocol
   * itself, and the single-use token it is given here stands in for Twilio's signature on the stream upgrade.
   */
  async answerBrowser(init: { from?: string }): Promise<{ callSid: string; token: string }> {
    const carrier = this.services.carriers.get("browser");
    if (!carrier) throw new RequestError("the softphone is disabled (SOFTPHONE=false)", 404);
    const callSid = newCallId(ID_PREFIX.browser!);
    const ticket = await this.admit(callSid, "browser");
    this.add(new CallRuntime(this.services, { callSid, carrier, from: init.from ?? "browser", to: "parley", direction: "browser" }, (c) => this.finished(c)), ticket);
    return { callSid, token: await this.bindToken(newToken(), callSid, TOKEN_TTL_MS, true) };
  }

  /** Whether a token is live for this carrier's streams: it admits an upgrade that carries no signature (Telnyx, softphone). */
  async isStreamToken(token: string | undefined, carrier: Carrier): Promise<boolean> {
    return token ? this.state.tokens.isLive(token, carrier.name === "browser" ? "phone" : "twilio") : false;
  }

  /** A call its carrier would not let us answer (the answer command failed): ended here, recorded, its slot freed. */
  abandon(carrierCallId: string, carrier: Carrier, reason: string): void {
    for (const call of this.calls.values()) if (call.carrier === carrier && call.carrierCallId === carrierCallId) call.abandon(reason);
  }

  /**
   * Place a call through the outbound carrier's REST API, with the stream in the request where the carrier allows
   * (Twilio's inline TwiML, Telnyx's dial with stream settings: no webhook round trip). The message is synthesized
   * while the phone rings, so it plays the moment the stream opens.
   */
  async placeOutbound(req: OutboundRequest): Promise<CallRuntime> {
    const { config, carriers, speechCache, log } = this.services;
    const carrier = carriers.outbound;
    if (!carrier?.place) throw new RequestError("outbound calls need a carrier's REST credentials: TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN, TELNYX_API_KEY and TELNYX_CONNECTION_ID, or PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN", 503);
    const from = req.from ?? carrier.callerId?.number;
    if (!from) throw new RequestError(`no caller ID: pass "from" or set ${carrier.callerId?.setting ?? "the carrier's caller ID"}`);
    const session = this.validateSession(req.session);
    const message = req.message ?? session.message ?? (req.mode === "notify" ? undefined : config.greeting);
    if (!message) throw new RequestError('a notify call needs "message": the words to deliver');
    const mode = req.mode ?? "conversation";
    // The slot is taken before the REST request, under a provisional id, and given back if the request fails.
    let ticket = await this.admit(`pending-${randomBytes(9).toString("hex")}`, "outbound");
    speechCache.get(withRecordingNotice(message, session, config), voiceOf(session)).catch((err: Error) => log.warn({ err: err.message }, "could not pre-synthesize the outbound message"));
    const token = newToken();
    // A carrier that echoes our data back gets Parley's id now; one whose id becomes ours (Twilio) names it on return.
    const minted = carrier.callIds === "parley" ? newCallId(ID_PREFIX[carrier.name] ?? "CL") : undefined;
    const ringMs = Math.max(TOKEN_TTL_MS, (config.ringTimeoutSeconds + 30) * 1000);
    // The stream may open before `place` returns (Telnyx can connect it at answer): the token must be good by then.
    if (minted) await this.bindToken(token, minted, ringMs);
    let carrierCallId: string;
    try {
      // The carrier's own answering-machine detection only adds evidence to Parley's screening (and is billed per call).
      const amd = config.carrierAmd && config.screeningMaxMs > 0;
      ({ carrierCallId } = await carrier.place({ ...(minted ? { callId: minted } : {}), to: req.to, from, stream: this.ticketFor(minted, token), timeoutSeconds: config.ringTimeoutSeconds, ...(amd ? { amd } : {}) }));
      ticket = await this.admission.rename(ticket, minted ?? carrierCallId);
    } catch (err) {
      await this.admission.release(ticket);
      throw err;
    }
    const callSid = minted ?? carrierCallId;
    const call = new CallRuntime(
      this.services,
      { callSid, carrier, carrierCallId, from, to: req.to, direction: "outbound", mode, greetingText: message, answered: false, session },
      (c) => this.finished(c),
    );
    this.add(call, ticket);
    for (const status of this.early.take(callSid)) call.onStatus(status);
    if (!minted) await this.bindToken(token, callSid, ringMs);
    log.info({ callSid, carrier: carrier.name, carrierCallId, to: req.to, mode, agent: session.agent ?? "llm" }, "outbound call placed");
    return call;
  }

  /**
   * The carrier asks for the next step when a stream ends while the call may be up (Twilio's <Connect action>). A
   * call that wants its stream back gets a new one (restored from its record if this process restarted); anything
   * else is hung up.
   */
  async resume(carrier: Carrier, callSid: string, carrierCallId: string): Promise<{ reply: CarrierReply | null; resumed: boolean; owner?: string; takenOver?: boolean }> {
    if (!carrier.resume) return { reply: null, resumed: false };
    // A call that just ended here is over, whatever its journal on disk says yet: Telnyx reports `streaming.stopped`
    // after every hang-up, and restoring from a record whose last lines are still being written would bring it back.
    if (this.recent.get(callSid)?.endedAt != null) return { reply: carrier.resume(null, carrierCallId), resumed: false };
    let call = this.calls.get(callSid);
    let takenOver = false;
    if (!call && isSafeCallId(callSid)) {
      const where = await this.whereIs(callSid);
      // Its owner is alive and holds it: the new stream goes straight to the owner (the token works fleet-wide).
      if ("url" in where) return { reply: carrier.resume(await this.ticketAt(callSid, carrierCallId, where.url), carrierCallId), resumed: true, owner: where.holder };
      let restoring = this.restoring.get(callSid);
      if (!restoring) {
        restoring = this.restore(callSid, where.from).finally(() => this.restoring.delete(callSid));
        this.restoring.set(callSid, restoring);
      }
      call = await restoring;
      takenOver = !!where.from;
    }
    if (!call || !call.wantsStream || call.carrier !== carrier) return { reply: carrier.resume(null, carrierCallId), resumed: false };
    return { reply: carrier.resume(await this.streamTicket(call), carrierCallId), resumed: true, takenOver };
  }

  /** Who runs a call this instance does not have (see locateOwner). */
  private whereIs(callSid: string): Promise<OwnerLocation> {
    if (this.state.kind === "memory") return Promise.resolve({ from: null });
    return locateOwner(this.state, this.directory, callSid, this.services.config.ownerProbeTimeoutMs, this.services.log);
  }

  /**
   * Redeem a stream token: single use, unexpired, bound to the call the stream names, and of the stream path's kind (a
   * softphone token on a carrier's path, or the reverse, is refused unspent). The call must be this carrier's, and the
   * carrier's call id in `start` must be the one the call has.
   */
  async claim(token: string | undefined, start: StreamStart, carrier: Carrier): Promise<{ call: CallRuntime } | { error: string }> {
    if (!token) return { error: "missing token parameter" };
    const callSid = start.callId ?? start.carrierCallId;
    let spent;
    try {
      spent = await this.state.tokens.redeem(token, callSid, carrier.name === "browser" ? "phone" : "twilio");
    } catch (err) {
      if (err instanceof StateUnavailableError) return { error: err.message };
      throw err;
    }
    if ("error" in spent) return spent;
    const call = this.calls.get(callSid);
    if (!call || !call.live) return { error: "call is no longer live" };
    if (call.carrier.name !== carrier.name) return { error: `call ${callSid} is a ${call.carrier.name} call, not ${carrier.name}` };
    if (carrier.name !== "browser" && call.carrierCallId && start.carrierCallId !== call.carrierCallId) return { error: "start names another carrier call" };
    return { call };
  }

  /** A call status (Parley's words): applied to a live call, or appended to the record of an ended one. */
  async status(callSid: string, update: StatusUpdate): Promise<"applied" | "duplicate" | "unknown"> {
    const call = this.calls.get(callSid);
    if (call) return call.onStatus(update) ? "applied" : "duplicate";
    const rec = this.recent.get(callSid) ?? (isSafeCallId(callSid) ? await this.services.store.read(callSid) : null);
    if (!rec) {
      if (!isSafeCallId(callSid)) return "unknown";
      return this.early.hold(callSid, update, this.services.clock.now()) ? "applied" : "unknown";
    }
    const { status } = update;
    if (rec.statuses.includes(status)) return "duplicate";
    rec.statuses.push(status);
    await this.services.store.appendOnce(callSid, { t: this.services.clock.now(), type: "call.status", status, carrierStatus: update.carrierStatus, sequence: update.sequence ?? null, duration: update.durationS ?? null });
    return "applied";
  }

  get(callSid: string): CallRuntime | undefined {
    return this.calls.get(callSid);
  }

  /** The record of a live or ended call, or null. With shared records, a call run elsewhere is folded from Redis. */
  async recordOf(callSid: string): Promise<(CallRecord & { live: boolean; owner?: string }) | null> {
    const live = this.calls.get(callSid);
    if (live) return { ...live.record, live: live.live };
    if (!isSafeCallId(callSid)) return null;
    const shared = this.state.records ? await this.state.records.read(callSid) : null;
    if (shared) {
      const owner = shared.endedAt === null ? await this.state.leases.owner(callSid) : null;
      return owner ? { ...shared, live: true, owner: owner.holder } : { ...shared, live: false };
    }
    const rec = this.recent.get(callSid) ?? (await this.services.store.read(callSid));
    return rec ? { ...rec, live: false } : null;
  }

  /** Live and recorded calls, newest first. */
  list(filter: CallFilter): Promise<CallSummary[]> {
    return listCalls({ live: [...this.calls.values()].map((c) => c.record), shared: this.state.records, recent: this.recent.values(), store: this.services.store }, filter);
  }

  /** End every live call (process shutdown). */
  shutdown(): void {
    for (const call of [...this.calls.values()]) call.shutdown();
  }

  private add(call: CallRuntime, ticket: Ticket): void {
    this.calls.set(call.callSid, call);
    this.tickets.set(call.callSid, ticket);
    // Refusals are on the call's record (transfer.error); the agent's turn goes on either way.
    call.onAgentTransfer = (action) => {
      try {
        this.transfers.start(call, { ...action, by: "agent" });
      } catch {
        // recorded
      }
    };
    // Which instance runs the call (the live-call index). Not awaited: set-up does not wait for it; a failure is logged.
    // The shared record is written with this lease's fence (the ownership hands it over), so its lines wait for it.
    this.state.ownership.claim(call.callSid).then(
      (lease) => lease || this.state.records?.refuse(call.callSid),
      (err: Error) => this.services.log.warn({ callSid: call.callSid, err: err.message }, "could not register the call's owner"),
    );
  }

  /** A new stream for the call, on this instance: a fresh single-use token, and where to connect. */
  private async streamTicket(call: CallRuntime): Promise<StreamTicket> {
    const token = await this.bindToken(newToken(), call.callSid, TOKEN_TTL_MS);
    return { ...this.ticketFor(call.callSid, token), ...(call.carrierCallId ? { carrierCallId: call.carrierCallId } : {}) };
  }

  /** A new stream for a call another instance owns, on that instance (INSTANCE_URL): handing a call back. */
  private async ticketAt(callSid: string, carrierCallId: string, instanceUrl: string): Promise<StreamTicket> {
    const token = await this.bindToken(newToken(), callSid, TOKEN_TTL_MS);
    const u = new URL(instanceUrl);
    return { ...this.ticketFor(callSid, token), carrierCallId, streamOrigin: `${u.protocol === "https:" ? "wss:" : "ws:"}//${u.host}` };
  }

  private ticketFor(callSid: string | undefined, token: string): StreamTicket {
    const { webhookOrigin, streamOrigin } = this.urls();
    return { ...(callSid ? { callId: callSid } : {}), token, webhookOrigin, streamOrigin };
  }

  /**
   * Bring back a call this process does not have (it restarted, or the call's owner died) from its record, if the
   * record says it is not over. With Redis, the call's lease is taken first (from `from`, an owner found dead), so
   * exactly one instance carries the call on, and the record is the shared one: every turn, whoever recorded it.
   */
  private async restore(callSid: string, from: { holder: string; fence: number } | null = null): Promise<CallRuntime | undefined> {
    if (this.draining) return undefined;
    const { store, log } = this.services;
    const records = this.state.records;
    if (this.state.kind === "redis") {
      const lease = from ? await this.state.ownership.takeOver(callSid, from) : await this.state.leases.acquire(callSid, this.state.instanceId, this.state.leaseTtlMs).then((l) => l && this.state.ownership.adopt(l));
      if (!lease) {
        log.warn({ callSid, from: from?.holder }, "call not restored: another instance took its lease first");
        return undefined;
      }
    }
    const lines = records ? await records.lines(callSid) : [];
    const local = await store.read(callSid);
    const rec = lines.length ? foldLines(callSid, lines.join("\n")) : local;
    if (!rec || rec.endedAt !== null) {
      await this.state.ownership.drop(callSid);
      return undefined;
    }
    // This disk gets the whole record too (it is the durable copy of what this instance serves).
    if (lines.length && !local) store.journal(callSid).appendLocal(lines);
    // Two action requests for one call can race here: the first to come back from the disk wins.
    const raced = this.calls.get(callSid);
    if (raced) return raced;
    // A restored call takes a slot like any other; with none free it cannot be carried on here.
    const ticket = await this.admission.admit(callSid, "restored");
    if (isBusy(ticket)) {
      this.services.log.warn({ callSid, inUse: ticket.inUse, max: ticket.max }, "call not restored: at capacity (MAX_CONCURRENT_CALLS); hanging it up");
      await this.state.ownership.drop(callSid);
      return undefined;
    }
    if (this.calls.has(callSid)) {
      await this.admission.release(ticket);
      return this.calls.get(callSid);
    }
    const history: ChatTurn[] = [];
    for (const t of rec.turns) {
      const content = (t.role === "assistant" ? (t.heardText ?? t.text) : t.text).trim();
      if (content) history.push({ role: t.role, content });
    }
    const message = rec.message ?? undefined;
    // Records from before carriers are Twilio's (or the softphone's).
    const carrier = this.services.carriers.get(rec.carrier ?? (rec.direction === "browser" ? "browser" : "twilio"));
    if (!carrier) {
      this.services.log.warn({ callSid, carrier: rec.carrier }, "call not restored: its carrier is not configured here");
      await this.admission.release(ticket);
      await this.state.ownership.drop(callSid);
      return undefined;
    }
    const call = new CallRuntime(
      this.services,
      {
        callSid,
        carrier,
        ...(rec.carrierCallId ? { carrierCallId: rec.carrierCallId } : {}),
        direction: (rec.direction as CallDirection | null) ?? "inbound",
        mode: (rec.mode as CallMode | null) ?? "conversation",
        greetingText: message,
        restored: { history, greetingDelivered: rec.greetingDelivered, turnId: rec.turns.reduce((m, t) => Math.max(m, t.turnId), 0), record: rec },
      },
      (c) => this.finished(c),
    );
    this.add(call, ticket);
    this.services.log.info({ callSid, turns: history.length, from: from?.holder }, from ? "call taken over from a dead instance, from its shared record" : "call restored from its record to resume its stream");
    return call;
  }

  /** The outcome of a call that has just ended, while it is being written. */
  outcomePending(callSid: string): Promise<unknown> | undefined {
    return this.writingOutcomes.get(callSid);
  }

  private finished(call: CallRuntime): void {
    this.calls.delete(call.callSid);
    if (call.record.endedAt !== null) {
      const writing = completeOutcome(this.services, call).finally(() => this.writingOutcomes.delete(call.callSid));
      this.writingOutcomes.set(call.callSid, writing);
    }
    const ticket = this.tickets.get(call.callSid);
    this.tickets.delete(call.callSid);
    // A call taken over elsewhere keeps its slot (the same id) for its new owner.
    if (ticket && !this.lost.delete(call.callSid)) this.admission.release(ticket).catch((err) => this.services.log.error({ err, callSid: call.callSid }, "could not release the call's slot"));
    // The lease goes back once the call's last lines are in the shared record: the next owner reads them all.
    const flushed = this.state.records?.idle() ?? Promise.resolve();
    const leaving = flushed.then(() => this.state.ownership.drop(call.callSid)).catch((err: Error) => this.services.log.warn({ callSid: call.callSid, err: err.message }, "could not release the call's lease"));
    this.leaving.add(leaving);
    void leaving.finally(() => this.leaving.delete(leaving));
    this.recent.set(call.callSid, call.record);
    while (this.recent.size > 1000) this.recent.delete(this.recent.keys().next().value!);
  }

  /** Make `token` redeemable for `callSid` until `ttlMs` from now. */
  private async bindToken(token: string, callSid: string, ttlMs: number, browser = false): Promise<string> {
    await this.state.tokens.bind(token, callSid, ttlMs, browser);
    return token;
  }
}
