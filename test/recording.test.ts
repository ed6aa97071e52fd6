import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MULAW_TO_PCM16 } from "../src/audio/mulaw.ts";
import { ConfigError, loadConfig } from "../src/config.ts";
import { CallRecorder, type RecordingOpener } from "../src/recording/recorder.ts";
import { openRecordingFile, RecordingStore } from "../src/recording/recordings.ts";
import { parseStereoWav } from "../src/recording/wav.ts";
import { parseRange } from "../src/server/recording-route.ts";
import { sessionSchema } from "../src/session/session.ts";
import { CallStore } from "../src/store/call-store.ts";
import { clipMulaw } from "./helpers/audio.ts";

/**
 * The recorder on its own, on a manual clock: the timeline, the cut at `clear`, bounded memory when the disk stalls,
 * a file that stays readable if the process dies, and the retention sweep. The real call is in recording-e2e.test.ts.
 */

const T0 = 1_700_000_000_000;
const decode = (m: Uint8Array) => Int16Array.from(m, (b) => MULAW_TO_PCM16[b]!);
const settle = () => new Promise((r) => setTimeout(r, 20));

let dir: string;
beforeEach(() => void (dir = mkdtempSync(path.join(tmpdir(), "parley-rec-"))));
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** Feed the caller's stream frame by frame on the clock, as the media path does; returns the time after. */
function feedCaller(r: CallRecorder, mulaw: Uint8Array, fromMs: number): number {
  let t = fromMs;
  for (let off = 0; off < mulaw.length; off += 160) {
    t += 20;
    r.caller(mulaw.subarray(off, off + 160), t);
  }
  return t;
}

describe("CallRecorder", () => {
  it("puts Parley's frames where they play and cuts at clear the frames not begun; the caller's by sample count", async () => {
    const file = path.join(dir, "a.wav");
    const errors: string[] = [];
    const r = new CallRecorder(file, T0, openRecordingFile, (m) => errors.push(m));
    const speech = await clipMulaw("austen-0880"); // real speech: every frame differs
    const frames = Math.floor(speech.length / 160);
    // Ten frames sent at once at 500 ms (a 200 ms lead): the first plays at 500 ms, the tenth at 680 ms.
    for (let k = 0; k < 10; k++) r.played(speech.subarray(k * 160, k * 160 + 160), T0 + 500 + k * 20);
    // `clear` at 565 ms: frames starting at 500, 520, 540 and 560 had begun; 580 onwards had not.
    expect(r.cut(T0 + 565)).toBe(6 * 160);
    // A new reply starts at 900 ms.
    r.played(speech.subarray(10 * 160, 12 * 160), T0 + 900);
    feedCaller(r, speech.subarray(0, frames * 160), T0); // the caller's stream, 20 ms per frame
    const summary = r.finish()!;
    await r.done;
    expect(errors).toEqual([]);
    const wav = parseStereoWav(readFileSync(file));
    expect(summary.bytes).toBe(readFileSync(file).length);
    expect(wav.left.length).toBe(frames * 160);
    expect(Array.from(wav.left)).toEqual(Array.from(decode(speech.subarray(0, frames * 160))));
    const right = new Int16Array(wav.right.length);
    right.set(decode(speech.subarray(0, 4 * 160)), 500 * 8);
    right.set(decode(speech.subarray(10 * 160, 12 * 160)), 900 * 8);
    expect(Array.from(wav.right)).toEqual(Array.from(right));
  });

  it("a killed process leaves a playable file: the header is patched after every second written", async () => {
    const file = path.join(dir, "b.wav");
    const r = new CallRecorder(file, T0, openRecordingFile, () => {});
    const speech = await clipMulaw("jfk");
    feedCaller(r, speech.subarray(0, 8000 * 3 + 800), T0); // 3.1 s, never finished
    for (let i = 0; i < 50 && r.durableBytes < 44 + 3 * 32000; i++) await settle();
    const wav = parseStereoWav(readFileSync(file));
    expect(readFileSync(file).readUInt32LE(40)).toBe(3 * 32000);
    expect(Array.from(wav.left)).toEqual(Array.from(decode(speech.subarray(0, 3 * 8000))));
    r.finish();
    await r.done;
  });

  it("a stream that comes back after a gap continues the same timeline; the gap is silence", async () => {
    const file = path.join(dir, "e.wav");
    const r = new CallRecorder(file, T0, openRecordingFile, () => {});
    const a = await clipMulaw("austen-0880");
    const b = await clipMulaw("whats-the-weather-like");
    const aLen = Math.floor(a.length / 160) * 160;
    const bLen = Math.floor(b.length / 160) * 160;
    r.played(a.subarray(0, 1600), T0 + 100); // sent at the start, played from 100 ms
    feedCaller(r, a.subarray(0, aLen), T0);
    r.streamStarted(T0 + 20_000); // the socket dropped; Twilio opened a new stream 20 s in
    feedCaller(r, b.subarray(0, bLen), T0 + 20_000);
    const summary = r.finish()!;
    await r.done;
    const wav = parseStereoWav(readFileSync(file));
    expect(summary.durationS).toBe(20 + bLen / 8000);
    const left = new Int16Array(20 * 8000 + bLen);
    left.set(decode(a.subarray(0, aLen)), 0);
    left.set(decode(b.subarray(0, bLen)), 20 * 8000);
    expect(Array.from(wav.left)).toEqual(Array.from(left));
    const right = new Int16Array(left.length);
    right.set(decode(a.subarray(0, 1600)), 800);
    expect(Array.from(wav.right)).toEqual(Array.from(right));
  });

  it("holds a bounded amount when the disk stalls: what finds no room is dropped and counted", async () => {
    const never: RecordingOpener = async () => ({ write: () => new Promise(() => {}), close: async () => {} });
    const r = new CallRecorder(path.join(dir, "c.wav"), T0, never, () => {});
    feedCaller(r, new Uint8Array(8000 * 20).fill(0x11), T0); // 20 s against a disk that never answers
    // Two seconds in the two write buffers, six in the ring; the other twelve seconds are dropped, not queued.
    expect(r.finish()!.droppedMs).toBe(12_000);
  });

  it("a write that fails (a full disk) is reported once; the recorder then takes frames and does nothing", async () => {
    let writes = 0;
    const full: RecordingOpener = async (f) => {
      const real = await openRecordingFile(f);
      return {
        write: async (d, p) => {
          if (++writes > 4) throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
          await real.write(d, p);
        },
        close: () => real.close(),
      };
    };
    const errors: [string, string | null][] = [];
    const file = path.join(dir, "d.wav");
    const r = new CallRecorder(file, T0, full, (m, c) => errors.push([m, c]));
    let t = feedCaller(r, new Uint8Array(8000 * 2).fill(0x22), T0);
    for (let i = 0; i < 50 && !r.failedWriting; i++) await settle();
    t = feedCaller(r, new Uint8Array(8000 * 10).fill(0x22), t);
    expect(r.finish()).toBeNull();
    await r.done;
    expect(errors).toEqual([["ENOSPC: no space left on device, write", "ENOSPC"]]);
    // Header, first second, its two size patches: then the disk was full. The file says so and plays.
    expect(parseStereoWav(readFileSync(file)).left.length).toBe(8000);
  });
});

describe("recording retention, ranges and settings", () => {
  it("deletes recordings older than RECORDINGS_RETENTION_DAYS and nothing else; 0 keeps them forever", async () => {
    const calls = path.join(dir, "calls");
    const now = Date.UTC(2026, 0, 31);
    rmSync(calls, { recursive: true, force: true });
    mkdirSync(calls, { recursive: true });
    const old = (name: string, days: number) => {
      writeFileSync(path.join(calls, name), "x");
      const t = (now - days * 86_400_000) / 1000;
      utimesSync(path.join(calls, name), t, t);
    };
    old("CAold.wav", 31);
    old("CAold-2.wav", 40);
    old("CAnew.wav", 29);
    old("CAold.jsonl", 400); // records are not recordings
    expect(await new RecordingStore(dir, { retentionDays: 0, now: () => now }).sweep()).toBe(0);
    expect(await new RecordingStore(dir, { retentionDays: 30, now: () => now }).sweep()).toBe(2);
    expect(readdirSync(calls).sort()).toEqual(["CAnew.wav", "CAold.jsonl"]);
  });

  it("keeps two events appended after a call's end at once (its outcome and its recording's last write)", async () => {
    const store = new CallStore(dir);
    await store.init();
    const j = store.journal("CAx");
    j.append({ t: 1, type: "call.ended", reason: "caller hung up" });
    await j.close();
    await Promise.all([store.appendOnce("CAx", { t: 2, type: "outcome", outcome: null }), store.appendOnce("CAx", { t: 3, type: "recording.error", message: "recording stopped: ENOSPC" })]);
    const lines = readFileSync(store.fileOf("CAx"), "utf8").trim().split("\n").map((l) => JSON.parse(l).type);
    expect(lines).toEqual(["call.ended", "outcome", "recording.error"]);
  });

  it("parses one byte range, refuses an unsatisfiable one, ignores what it does not support", () => {
    expect(parseRange(undefined, 100)).toBeNull();
    expect(parseRange("bytes=0-9", 100)).toEqual({ start: 0, end: 9 });
    expect(parseRange("bytes=90-", 100)).toEqual({ start: 90, end: 99 });
    expect(parseRange("bytes=90-500", 100)).toEqual({ start: 90, end: 99 });
    expect(parseRange("bytes=-10", 100)).toEqual({ start: 90, end: 99 });
    expect(parseRange("bytes=100-", 100)).toBe("unsatisfiable");
    expect(parseRange("bytes=5-2", 100)).toBe("unsatisfiable");
    expect(parseRange("bytes=-0", 100)).toBe("unsatisfiable");
    expect(parseRange("bytes=0-1,5-6", 100)).toBeNull(); // several ranges: the whole file
    expect(parseRange("items=0-1", 100)).toBeNull();
  });

  it("validates the settings and the session fields", () => {
    const env = { RECORD_CALLS: "true", RECORDINGS_RETENTION_DAYS: "0", RECORDING_NOTICE: "This call is recorded." };
    expect(loadConfig({ env })).toMatchObject({ recordCalls: true, recordingsRetentionDays: 0, recordingNotice: "This call is recorded." });
    expect(loadConfig({ env: {} })).toMatchObject({ recordCalls: false, recordingsRetentionDays: 30 });
    const bad = () => loadConfig({ env: { RECORD_CALLS: "sometimes", RECORDINGS_RETENTION_DAYS: "-1" } });
    expect(bad).toThrow(ConfigError);
    expect(bad).toThrow(/RECORD_CALLS \(recordCalls\)/);
    expect(bad).toThrow(/RECORDINGS_RETENTION_DAYS \(recordingsRetentionDays\)/);
    expect(sessionSchema.safeParse({ record: true, recordingNotice: "This call is recorded." }).success).toBe(true);
    expect(sessionSchema.safeParse({ record: "yes" }).success).toBe(false);
    expect(sessionSchema.safeParse({ recordingNotice: "" }).success).toBe(false);
  });
});

