import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MULAW_TO_PCM16 } from "../src/audio/mulaw.ts";
import { closeServices, createLogger, createServices } from "../src/bootstrap.ts";
import type { Services } from "../src/call/services.ts";
import { loadConfig } from "../src/config.ts";
import { wer } from "../src/providers/stt/wer.ts";
import { buildApp, type App } from "../src/server/app.ts";
import type { CallRecord } from "../src/store/call-record.ts";
import { clipMulaw } from "./helpers/audio.ts";
import { finishedUtterances, speechBounds, TwilioCall } from "./helpers/twilio-client.ts";
import { expectDuration } from "./helpers/expect.ts";

/**
 * A whole call over one Media Stream, on the embedded providers, with real speech in real time:
 * greeting -> caller speaks -> reply -> caller speaks -> reply interrupted by the caller (barge-in) -> reply -> hang-up.
 * Timing is asserted as order and causality, never as wall-clock limits (those are measured in bench/).
 */
describe("end to end: one unbroken stream per call", () => {
  let dataDir: string;
  let services: Services;
  let app: App;
  let baseUrl: string;

  beforeAll(async () => {
    dataDir = mkdtempSync(path.join(tmpdir(), "parley-e2e-"));
    const config = loadConfig({ env: { DATA_DIR: dataDir, LOG_LEVEL: "warn", PORT: "0", GREETING: "Hello! This is Parley." } });
    services = await createServices(config, createLogger(config));
    app = buildApp(services);
    const port = await app.listen();
    baseUrl = `http://127.0.0.1:${port}`;
  }, 120_000);

  afterAll(async () => {
    await app?.close();
    if (services) await closeServices(services);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("greets, replies, yields to barge-in, replies again, and records it all", async () => {
    const call = new TwilioCall({ baseUrl });
    const { twiml } = await call.connect();
    expect(twiml).toMatch(/<Connect[^>]*><Stream /);
    expect(twiml).not.toMatch(/<Gather|<Say|<Play/);

    // 1. The greeting arrives, plays, and its last mark comes back.
    await call.waitFor(() => finishedUtterances(call) >= 1, 15_000, "the greeting's final mark");
    const greetingFrames = call.frames.length;
    expect(greetingFrames).toBeGreaterThan(25); // "Hello! This is Parley." is well over half a second
    expect(call.frames[0]!.at).toBeGreaterThanOrEqual(call.startSentAt);

    // 2. The caller asks something; a reply starts only after they stop.
    const weather = await clipMulaw("whats-the-weather-like");
    const said1 = call.say(weather);
    call.silence(1500);
    await call.waitFor(() => call.frames.length > greetingFrames, 15_000, "the first reply");
    const reply1Start = call.frames[greetingFrames]!;
    expect(reply1Start.at).toBeGreaterThan(said1.startsAt + speechBounds(weather, (b) => MULAW_TO_PCM16[b]!).endMs);
    await call.waitFor(() => finishedUtterances(call) >= 2, 20_000, "the first reply's final mark");

    // 3. The caller speaks again; while the reply plays they talk over it.
    const austen = await clipMulaw("austen-0880");
    const before2 = call.frames.length;
    call.say(austen);
    call.silence(1000);
    await call.waitFor(() => call.frames.slice(before2).some((f) => f.playedAt !== null), 20_000, "the second reply to be heard");
    const stars = await clipMulaw("new-home-in-the-stars");
    const bargeIn = call.say(stars);
    const starsBounds = speechBounds(stars, (b) => MULAW_TO_PCM16[b]!);
    await call.waitFor(() => call.eventsOf("clear").length > 0, 10_000, "clear after barge-in");
    const clearAt = call.eventsOf("clear")[0]!.at;
    expect(clearAt).toBeGreaterThan(bargeIn.startsAt + starsBounds.onsetMs);
    // Nothing of the interrupted turn after the clear, and nothing at all while the caller still talks.
    const speechEndsAt = bargeIn.startsAt + starsBounds.endMs;
    call.silence(1500);
    await call.waitFor(() => call.now() > speechEndsAt + 200, 10_000, "the caller to finish");
    expect(call.eventsOf("media", clearAt).filter((e) => e.at < speechEndsAt)).toEqual([]);

    // 4. The reply to what they said over it.
    const before3 = call.frames.length;
    await call.waitFor(() => call.frames.length > before3, 15_000, "the reply after barge-in");
    expect(call.frames[before3]!.at).toBeGreaterThan(speechEndsAt);
    await call.waitFor(() => finishedUtterances(call) >= 3, 20_000, "the last reply's final mark");

    // 5. The stream stayed open throughout; the caller hangs up.
    expect(call.closedBy).toBeNull();
    await call.hangUp();

    // The record, live in memory and durable on disk.
    let rec: CallRecord & { live: boolean };
    const deadline = Date.now() + 5000;
    do {
      rec = (await (await fetch(`${baseUrl}/api/calls/${call.callSid}`)).json()) as CallRecord & { live: boolean };
      if (!rec.live) break;
      await new Promise((r) => setTimeout(r, 50));
    } while (Date.now() < deadline);
    expect(rec.live).toBe(false);
    expect(rec.endReason).toBe("caller hung up");
    expect(rec.greetingDelivered).toBe(true);
    expect(rec.bargeIns).toBe(1);
    const turns = rec.turns.map((t) => [t.role, t.kind ?? "", t.interrupted ?? false]);
    expect(turns).toEqual([
      ["assistant", "greeting", false],
      ["user", "", false],
      ["assistant", "reply", false],
      ["user", "", false],
      ["assistant", "reply", true],
      ["user", "", false],
      ["assistant", "reply", false],
    ]);
    const [, user1, reply1, , interrupted] = rec.turns;
    // Open-vocabulary recognition is rough (see README), but this question comes through mostly right.
    expect(wer("what's the weather like", user1!.text).wer).toBeLessThanOrEqual(0.5);
    expect(reply1!.text).toBe(`You said: ${user1!.text}.`);
    expect(interrupted!.text.startsWith(interrupted!.heardText!)).toBe(true);
    expect(interrupted!.heardText!.length).toBeLessThan(interrupted!.text.length);
    for (const t of rec.turns.filter((t) => t.kind === "reply")) {
      expectDuration(t.latency!.totalMs, "totalMs");
      expect(t.latency!.totalMs).toBeGreaterThan(0);
      expectDuration(t.latency!.sttMs, "sttMs");
      expectDuration(t.latency!.ttsMs, "ttsMs");
    }
    const states = rec.states.map((s) => JSON.stringify(s.value));
    expect(states[0]).toBe('{"connecting":"answered"}');
    expect(states).toContain('{"live":{"active":{"replying":"speaking"}}}');
    expect(states.at(-1)).toBe('"ended"');

    // The journal is fsync'd at hang-up, moments after the call is marked ended.
    const file = path.join(dataDir, "calls", `${call.callSid}.jsonl`);
    const readJournal = () => readFileSync(file, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    for (let i = 0; i < 100 && readJournal().at(-1).type !== "call.ended"; i++) await new Promise((r) => setTimeout(r, 20));
    const onDisk = readJournal();
    expect(onDisk.filter((e) => e.type === "turn")).toHaveLength(7);
    // The call ends the journal; only what is written about an ended call may follow (its outcome, recording).
    const endAt = onDisk.findIndex((e) => e.type === "call.ended");
    expect(endAt).toBeGreaterThan(-1);
    for (const e of onDisk.slice(endAt + 1)) expect(["outcome", "outcome.delivery", "recording.finished"]).toContain(e.type);

    // The call's VAD windows were timed from their frame's arrival to their decision (the count is the timings').
    const stats = (await (await fetch(`${baseUrl}/debug/stats`)).json()) as { inboundMs: { count: number; p50: number }; windows: number };
    expect(stats.windows).toBeGreaterThan(300);
    expect(stats.inboundMs.p50).toBeGreaterThan(0);
  }, 120_000);
});
