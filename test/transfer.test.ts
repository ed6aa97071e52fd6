import { describe, expect, it } from "vitest";
import type { RecordEvent } from "../src/store/call-record.ts";
import { FAILED_TEXT, NO_ANSWER_TEXT, TransferService, type TransferableCall, type TransferCarrier } from "../src/call/transfer.ts";

/**
 * The transfer orchestration's bounds and failures, with its timer driven by hand (no waiting on the wall clock).
 * The path through real sockets, the Twilio stand-in and real speech is test/transfer-e2e.test.ts.
 */
class FakeCall implements TransferableCall {
  live = true;
  handingOver: string | null = null;
  readonly said: string[] = [];
  readonly notes: { type: string; data: Record<string, unknown> }[] = [];
  readonly record = { from: "+15550100011", to: "+15550100001", turns: [], greetingDelivered: false, statuses: [] as string[] };
  hungUp: string | null = null;
  private readonly listeners = new Set<(e: RecordEvent) => void>();
  constructor(
    readonly callSid: string,
    readonly direction = "inbound",
  ) {}
  say(text: string): void {
    this.said.push(text);
  }
  note(type: string, data: Record<string, unknown>): void {
    this.notes.push({ type, data });
  }
  subscribe(fn: (e: RecordEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
  sayGoodbyeAndHangUp(reason: string): void {
    this.hungUp = reason;
  }
  emit(type: string, data: Record<string, unknown> = {}): void {
    for (const fn of [...this.listeners]) fn({ t: 0, type, ...data });
  }
  end(): void {
    this.live = false;
    this.emit("call.ended", { reason: "caller hung up" });
  }
  get result() {
    return this.notes.filter((n) => n.type === "transfer").at(-1)?.data;
  }
}

function setup(carrier: Partial<TransferCarrier> = {}) {
  const timers: { fn: () => void; ms: number; cancelled: boolean }[] = [];
  const caller = new FakeCall("CAcaller");
  const leg = new FakeCall("CAleg", "outbound");
  const moved: string[] = [];
  const service = new TransferService({
    carrierFor: () => ({
      name: "fake",
      connect: async (sid, to) => void moved.push(`connect ${sid} ${to}`),
      join: async (sids, room) => void moved.push(`join ${sids.join(",")} ${room}`),
      ...carrier,
    }),
    placeLeg: async () => leg,
    defaults: { to: "+15550100099", mode: "warm", answerTimeoutMs: 30_000 },
    schedule: (fn, ms) => {
      const t = { fn, ms, cancelled: false };
      timers.push(t);
      return () => void (t.cancelled = true);
    },
  });
  const fire = () => timers.filter((t) => !t.cancelled).forEach((t) => t.fn());
  return { service, caller, leg, moved, timers, fire };
}

const settle = () => new Promise((r) => setImmediate(r));

describe("TransferService", () => {
  it("warm: no answer within TRANSFER_ANSWER_TIMEOUT_S hangs the leg up, tells the caller, and records the failure", async () => {
    const { service, caller, leg, moved, timers, fire } = setup();
    service.start(caller, { by: "api" });
    await settle();
    expect(timers.map((t) => t.ms)).toEqual([30_000]);
    fire();
    await service.pending(caller.callSid);
    expect(leg.hungUp).toBe("transfer: no answer within 30 s");
    expect(caller.said.at(-1)).toBe(NO_ANSWER_TEXT);
    expect(caller.result).toMatchObject({ mode: "warm", to: "+15550100099", ok: false, error: "no answer within 30 s", legCallSid: "CAleg" });
    expect(moved).toEqual([]);
    expect(service.pending(caller.callSid)).toBeUndefined(); // another transfer may be tried
  });

  it("warm: once the briefing is heard both calls are joined; the timer is let go", async () => {
    const { service, caller, leg, moved, timers } = setup();
    service.start(caller, { to: "+15550100088", by: "agent" });
    await settle();
    leg.emit("greeting.delivered");
    await service.pending(caller.callSid);
    expect(moved).toEqual(["join CAcaller,CAleg parley-CAcaller"]);
    expect(timers.every((t) => t.cancelled)).toBe(true);
    expect([caller.handingOver, leg.handingOver]).toEqual(["transferred to +15550100088 (warm transfer)", "joined to transferred call CAcaller"]);
    expect(caller.result).toMatchObject({ mode: "warm", ok: true, room: "parley-CAcaller" });
  });

  it("warm: the carrier refusing the join leaves both calls as they were, and the caller is told", async () => {
    const { service, caller, leg } = setup({ join: async () => Promise.reject(new Error("HTTP 400")) });
    service.start(caller, { by: "api" });
    await settle();
    leg.emit("greeting.delivered");
    await service.pending(caller.callSid);
    expect([caller.handingOver, leg.handingOver]).toEqual([null, null]);
    expect(leg.hungUp).toBe("transfer failed");
    expect(caller.said.at(-1)).toBe(FAILED_TEXT);
    expect(caller.result).toMatchObject({ ok: false, error: "transfer failed: HTTP 400" });
  });

  it("warm: the caller hanging up while the human's phone rings hangs up the human's leg", async () => {
    const { service, caller, leg } = setup();
    service.start(caller, { by: "api" });
    await settle();
    caller.end();
    await service.pending(caller.callSid);
    expect(leg.hungUp).toBe("the transferred caller hung up");
    expect(caller.result).toMatchObject({ ok: false, error: "the caller hung up before the human was connected" });
  });

  it("cold: waits for the announcement to be heard; a refused <Dial> keeps the call with the agent", async () => {
    const { service, caller } = setup({ connect: async () => Promise.reject(new Error("HTTP 500")) });
    service.start(caller, { mode: "cold", by: "api" });
    expect(caller.said).toEqual(["Connecting you now."]);
    caller.emit("turn", { turn: { role: "assistant", kind: "announcement", text: "Connecting you now." } });
    await service.pending(caller.callSid);
    expect(caller.handingOver).toBeNull();
    expect(caller.said.at(-1)).toBe(FAILED_TEXT);
    expect(caller.result).toMatchObject({ mode: "cold", ok: false, error: "transfer failed: HTTP 500" });
  });

  it("refuses up front, on the record, without touching the carrier: a bad number, a second transfer, no carrier", async () => {
    const { service, caller, moved } = setup();
    expect(() => service.start(caller, { to: "555-0100", by: "api" })).toThrow(/E\.164/);
    service.start(caller, { by: "api" });
    expect(() => service.start(caller, { by: "api" })).toThrow(/already under way/);
    expect(caller.notes.filter((n) => n.type === "transfer.error").map((n) => n.data.to)).toEqual(["555-0100", "+15550100099"]);
    const none = new TransferService({ carrierFor: () => "no carrier here", placeLeg: async () => caller, defaults: { to: undefined, mode: "cold", answerTimeoutMs: 1 } });
    const other = new FakeCall("CAother");
    expect(() => none.start(other, { by: "api" })).toThrow(/no number to transfer to/);
    expect(() => none.start(other, { to: "+15550100077", by: "api" })).toThrow("no carrier here");
    expect(moved).toEqual([]);
  });
});
