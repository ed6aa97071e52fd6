import { describe, expect, it, vi } from "vitest";
import type { Services } from "../src/call/services.ts";
import { Playout } from "../src/call/playout.ts";
import { ProtocolErrorLog } from "../src/call/stream-binding.ts";
import { PlayoutTicker } from "../src/call/ticker.ts";
import type { RecordEvent } from "../src/store/call-record.ts";
import type { CallRecord } from "../src/store/call-record.ts";
import { OutboundSerializer } from "../src/carriers/twilio/codec.ts";
import { ManualClock } from "../src/util/clock.ts";
import { finishedUtterances, TwilioCall } from "./helpers/twilio-client.ts";
import { useParley } from "./helpers/harness.ts";

const WATCHDOG_CLOSE = 4000;

/** A stream that is gone though its socket is open: no media, or marks never echoed. */
describe("stream watchdogs", () => {
  const parley = useParley(() => ({ GREETING: "Hello, this is the watchdog test speaking." }));
  const start = async (config: Partial<Services["config"]> = {}) => parley.start({}, config);
  const record = async (base: string, sid: string) => (await (await fetch(`${base}/api/calls/${sid}`)).json()) as CallRecord & { live: boolean };

  it("no media for MEDIA_TIMEOUT_MS: the call goes to reconnecting, the socket is closed, the record names the watchdog", async () => {
    const { base, app } = await start({ mediaTimeoutMs: 500 });
    const call = new TwilioCall({ baseUrl: base });
    const bystander = new TwilioCall({ baseUrl: base });
    await Promise.all([call.connect(), bystander.connect()]);
    await call.waitFor(() => finishedUtterances(call) >= 1, 15_000, "greeting");
    const events: RecordEvent[] = [];
    app.manager.get(call.callSid)!.subscribe((e) => events.push(e));

    const lastMediaAt = call.stopMedia();
    const { code } = await call.closed;
    const closedAt = call.now();
    expect(code).toBe(WATCHDOG_CLOSE);
    const lost = events.find((e) => e.type === "stream.closed")!;
    expect(lost).toMatchObject({ watchdog: "media", code: WATCHDOG_CLOSE, stopped: false });
    // Detection time, for the report (same clock: both sides run in this process).
    console.log(`media watchdog (MEDIA_TIMEOUT_MS=500): fired ${Math.round(lost.t - lastMediaAt)} ms after the last media was sent; socket closed at the client after ${Math.round(closedAt - lastMediaAt)} ms`);
    const rec = await record(base, call.callSid);
    expect(rec.watchdogs).toEqual({ media: 1 });
    expect(JSON.stringify(rec.state)).toContain("reconnecting");
    expect(rec.live).toBe(true);
    // The other call keeps streaming and is not touched.
    expect(bystander.isOpen).toBe(true);
    expect((await record(base, bystander.callSid)).watchdogs).toEqual({});
    await bystander.hangUp();
  }, 30_000);

  it("a mark not echoed within the audio ahead of it plus MARK_GRACE_MS: the stream is lost the same way", async () => {
    const { base, app } = await start({ markGraceMs: 400 });
    const call = new TwilioCall({ baseUrl: base, echoMarks: false });
    await call.connect();
    const runtime = app.manager.get(call.callSid)!;
    const events: RecordEvent[] = [];
    runtime.subscribe((e) => events.push(e));
    const { code } = await call.closed;
    expect(code).toBe(WATCHDOG_CLOSE);
    const lost = events.find((e) => e.type === "stream.closed")!;
    expect(lost).toMatchObject({ watchdog: "mark", code: WATCHDOG_CLOSE });
    const firstMark = call.eventsOf("mark-sent")[0]!;
    console.log(`mark watchdog (MARK_GRACE_MS=400, PLAYOUT_LEAD_MS=100): fired ${Math.round(lost.t - firstMark.at)} ms after the first unechoed mark reached the client; waited ${String(lost.waitedMs)} ms by the server's count`);
    // Media kept flowing all along: it is the mark watchdog that fired, not the media one.
    expect(call.lastMediaSentAt).toBeGreaterThan(lost.t - 100);
    const rec = await record(base, call.callSid);
    expect(rec.watchdogs).toEqual({ mark: 1 });
    expect(JSON.stringify(rec.state)).toContain("reconnecting");
  }, 30_000);

  it("a softphone whose media stops: its call ends (a browser cannot come back on a new stream), saying why", async () => {
    const { base } = await start({ mediaTimeoutMs: 500 });
    const { callSid, token, streamPath } = (await (await fetch(`${base}/api/phone/calls`, { method: "POST" })).json()) as { callSid: string; token: string; streamPath: string };
    // The page speaks the same protocol as Twilio: TwilioCall plays it, on the softphone's path and token.
    const phone = await TwilioCall.openStream({ streamUrl: `${base.replace("http", "ws")}${streamPath}`, parameters: { token, callSid }, callSid });
    await phone.waitFor(() => phone.frames.length > 0, 10_000, "the greeting reaching the softphone");
    phone.stopMedia();
    expect((await phone.closed).code).toBe(WATCHDOG_CLOSE);
    const rec = await record(base, callSid);
    expect(rec.live).toBe(false);
    expect(rec.watchdogs).toEqual({ media: 1 });
    expect(rec.endReason).toMatch(/^media stream lost: no media for \d+ ms$/);
  }, 30_000);

  it("a caller that echoes every mark is never taken for lost, across a whole greeting and a long quiet", async () => {
    const { base, app } = await start({ mediaTimeoutMs: 300, markGraceMs: 200 });
    const call = new TwilioCall({ baseUrl: base });
    await call.connect();
    await call.waitFor(() => finishedUtterances(call) >= 1, 15_000, "greeting");
    await new Promise((r) => setTimeout(r, 1000));
    expect(call.isOpen).toBe(true);
    expect(app.manager.get(call.callSid)!.record.watchdogs).toEqual({});
    await call.hangUp();
  }, 30_000);
});

describe("mark deadline (Playout, manual clock)", () => {
  const make = (clock: ManualClock) => {
    const sent: string[] = [];
    const p = new Playout((d) => sent.push(d as string), new OutboundSerializer("MZ1"), { leadMs: 100, markEveryMs: 200, maxQueuedMs: 10_000, markGraceMs: 1000 }, {
      firstFrame: () => {},
      markEchoed: () => {},
      cleared: () => {},
      dropped: () => {},
    });
    const listener = { started: () => {}, progress: () => {}, done: () => {} };
    const marks = () => sent.filter((s) => s.includes('"mark"')).map((s) => (JSON.parse(s) as { mark: { name: string } }).mark.name);
    /** Run the 20 ms playout for `ms` of time. */
    const run = (ms: number) => {
      for (let t = 0; t < ms; t += 10) {
        clock.advance(10);
        p.tick(clock.now());
      }
    };
    return { p, listener, marks, run };
  };

  it("is overdue once the audio ahead of the oldest unechoed mark plus the grace has passed, and not before", () => {
    const clock = new ManualClock();
    const { p, listener, marks, run } = make(clock);
    p.begin(1, listener, clock.now());
    p.append(1, new Uint8Array(8 * 1000), []); // 1 s of audio
    p.end(1);
    run(300); // first mark at 200 ms of audio
    expect(marks()[0]).toBe("1:200");
    expect(p.markOverdueMs(clock.now())).toBe(0);
    // Echoes keep coming: never overdue.
    for (let i = 0; i < 10; i++) {
      run(100);
      for (const m of marks()) p.onMark(m);
      expect(p.markOverdueMs(clock.now())).toBe(0);
    }
    // The utterance is done and its final mark echoed: nothing outstanding, however long we wait.
    expect(marks().at(-1)).toMatch(/:end$/);
    clock.advance(60_000);
    expect(p.markOverdueMs(clock.now())).toBe(0);
  });

  it("fires for a mark never echoed, re-arms after a partial echo, and forgets a cleared turn", () => {
    const clock = new ManualClock();
    const { p, listener, marks, run } = make(clock);
    p.begin(1, listener, clock.now());
    p.append(1, new Uint8Array(8 * 5000), []);
    const t0 = clock.now();
    run(250); // "1:200" went out 100 ms in, with the 100 ms lead of audio buffered ahead of it
    expect(marks()).toEqual(["1:200"]);
    clock.advance(850);
    expect(p.markOverdueMs(clock.now())).toBe(0); // 1100 ms in: before 100 + 100 buffered + 1000 grace
    clock.advance(200);
    expect(p.markOverdueMs(clock.now())).toBe(clock.now() - t0 - 100); // overdue, counted from when it was sent

    // A partial echo: the marks after it get a fresh bound from the next check.
    p.onMark("1:200");
    run(400);
    expect(marks().length).toBeGreaterThan(1);
    expect(p.markOverdueMs(clock.now())).toBe(0);
    clock.advance(1200);
    expect(p.markOverdueMs(clock.now())).toBeGreaterThan(0);

    // Cleared: Twilio's echoes of a cleared turn are not waited for.
    p.interrupt(1, clock.now());
    clock.advance(10_000);
    expect(p.markOverdueMs(clock.now())).toBe(0);
  });
});

describe("protocol errors, throttled", () => {
  it("reports the first at once, then at most once per interval with the count since", () => {
    const reports: { kind: string; count: number }[][] = [];
    const log = new ProtocolErrorLog((c) => reports.push(c.map(({ kind, count }) => ({ kind, count }))), 1000);
    let t = 0;
    for (let i = 0; i < 500; i++) log.add(i % 5 ? "bad_json" : "binary_frame", "x", (t += 1)); // 500 in 0.5 s
    expect(reports).toEqual([[{ kind: "binary_frame", count: 1 }]]);
    log.maybeReport(900);
    expect(reports).toHaveLength(1);
    log.maybeReport(1001); // a second after the first report
    expect(reports[1]).toEqual([
      { kind: "bad_json", count: 400 },
      { kind: "binary_frame", count: 99 },
    ]);
    log.flush(1001);
    expect(reports).toHaveLength(2); // nothing pending
  });

  const parley = useParley(() => ({ GREETING: "Hi." }));

  it("a call flooded with garbage: every error counted per kind in its record and the process metrics, a handful of records", async () => {
    const { base, app } = await parley.start();
    const call = new TwilioCall({ baseUrl: base });
    await call.connect();
    const runtime = app.manager.get(call.callSid)!;
    const recorded: RecordEvent[] = [];
    runtime.subscribe((e) => e.type === "protocol.error" && recorded.push(e));
    const metric = async () => Number(/parley_protocol_errors_total\{kind="bad_json"\} (\d+)/.exec(await (await fetch(`${base}/metrics`)).text())?.[1] ?? 0);
    const before = await metric();

    for (let i = 0; i < 2000; i++) call.sendRaw("{not json");
    await call.waitFor(() => runtime.record.protocolErrors.bad_json === 2000, 10_000, "all 2000 counted");
    expect(runtime.record.protocolErrors).toEqual({ bad_json: 2000 });
    // 2000 errors in well under a few seconds: a few records, not 2000.
    expect(recorded.length).toBeLessThanOrEqual(5);
    expect(recorded.reduce((n, e) => n + (e.count as number), 0)).toBe(2000);
    expect((await metric()) - before).toBe(2000);
    expect(call.isOpen).toBe(true);
    await call.hangUp();
  }, 30_000);
});

describe("watchdog sweep (ticker, manual clock and fake timers)", () => {
  it("checks every watched stream on one interval, and skips a round after the process stalled", () => {
    vi.useFakeTimers();
    try {
      const clock = new ManualClock();
      const ticker = new PlayoutTicker(clock, 10, 100);
      const checks: number[] = [];
      const w = { check: (now: number) => void checks.push(now) };
      ticker.watch(w);
      const t0 = clock.now();
      const step = (ms: number) => {
        clock.advance(ms);
        vi.advanceTimersByTime(100);
      };
      step(100);
      step(100);
      expect(checks.map((t) => t - t0)).toEqual([100, 200]);
      // The event loop was blocked for 5 s: the sweep that runs first after it must not judge the silence.
      step(5000);
      expect(checks).toHaveLength(2);
      step(100);
      expect(checks.map((t) => t - t0)).toEqual([100, 200, 5300]);
      ticker.unwatch(w);
      step(100);
      expect(checks).toHaveLength(3);
      ticker.stop();
    } finally {
      vi.useRealTimers();
    }
  });
});
