import { describe, expect, it } from "vitest";
import { MULAW_TO_PCM16 } from "../src/audio/mulaw.ts";
import type { RecordingOpener } from "../src/recording/recorder.ts";
import { openRecordingFile, RecordingStore } from "../src/recording/recordings.ts";
import { parseStereoWav } from "../src/recording/wav.ts";
import type { CallRecord } from "../src/store/call-record.ts";
import { clipMulaw } from "./helpers/audio.ts";
import { useParley } from "./helpers/harness.ts";
import { FRAME, finishedUtterances, TwilioCall } from "./helpers/twilio-client.ts";
import { TwilioStandIn } from "./helpers/twilio-standin.ts";

/**
 * A recorded call over a real stream, with real speech: greeting (after the consent notice), a question and its reply,
 * a long announcement the caller talks over (barge-in, `clear`), the reply to that, hang-up. The WAV must hold, on the
 * left, exactly the caller audio the stand-in sent, sample for sample at its place in the stream; on the right, exactly
 * the frames the stand-in played, at the slot it played them in, and none of those it dropped at `clear`.
 */

const NOTICE = "This call is recorded.";
/** A 300 ms lead: a `clear` drops about 15 frames the caller never hears, so a recording that kept them shows it. */
const LEAD_MS = 300;
/**
 * How far Parley's playout clock may place a run of frames from the slot the stand-in played it in. Parley cannot see
 * the carrier's 20 ms playout tick: a first frame it counts as playing when sent starts in the stand-in's next tick (up
 * to a frame later), and the stream's start reaches Parley a little after the stand-in's clocks start (the timeline's
 * zero). Measured here: Parley 10-32 ms early (the whole suite running). Three frames leave room for timer lateness on a loaded machine; a run
 * placed when sent instead of when played, or anywhere else, does not match at all.
 */
const ALIGN_TOLERANCE = 3 * FRAME;
/**
 * At a `clear`, frames Parley counts as begun that the stand-in had not started (the same unseen tick phase; 0-1
 * measured). The `clear` drops about 15 frames, so a recording that kept what the caller never heard fails.
 */
const CUT_TOLERANCE_FRAMES = 3;

const decode = (mulaw: Uint8Array): Int16Array => Int16Array.from(mulaw, (b) => MULAW_TO_PCM16[b]!);
/** Pad to whole frames with mu-law silence, so each clip starts a frame of its own in the stand-in's stream. */
const padded = (mulaw: Uint8Array): Uint8Array => {
  const out = new Uint8Array(Math.ceil(mulaw.length / FRAME) * FRAME).fill(0xff);
  out.set(mulaw);
  return out;
};

function firstMismatch(a: Int16Array, b: Int16Array, from = 0, to = Math.max(a.length, b.length)): number {
  for (let i = from; i < to; i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return i;
  return -1;
}

async function untilRecord(base: string, sid: string, done: (r: CallRecord & { live: boolean }) => boolean): Promise<CallRecord & { live: boolean }> {
  for (let i = 0; ; i++) {
    const r = (await (await fetch(`${base}/api/calls/${sid}`)).json()) as CallRecord & { live: boolean };
    if (done(r)) return r;
    if (i > 200) throw new Error(`record of ${sid} never got there: ${JSON.stringify(r.recording)}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

describe("call recordings over a real call", () => {
  const parley = useParley(() => ({ GREETING: "Hello! This is Parley." }));

  it("records what the caller said (left) and what they heard (right), cut at the clear, on one timeline", async () => {
    const { base } = await parley.start({}, { recordCalls: true, recordingNotice: NOTICE, playoutLeadMs: LEAD_MS });
    const call = new TwilioCall({ baseUrl: base });
    await call.connect();
    const sent: { at: number; mulaw: Uint8Array }[] = [];
    const say = (mulaw: Uint8Array) => sent.push({ at: Math.round((call.say(mulaw).startsAt - call.sampleDueAt(0)) * 8), mulaw });

    await call.waitFor(() => finishedUtterances(call) >= 1, 20_000, "the notice and greeting");
    say(padded(await clipMulaw("whats-the-weather-like")));
    call.silence(1500);
    await call.waitFor(() => finishedUtterances(call) >= 2, 25_000, "the reply to the question");

    // A long announcement; the caller talks over it once a second of it has played.
    const before = call.frames.length;
    const spoke = await fetch(`${base}/api/calls/${call.callSid}/speak`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ text: "Here is a long announcement about the opening hours of every branch, the holiday schedule, the parking rules and the new phone menu, which nobody wants to hear to the end." }),
    });
    expect(spoke.status).toBe(202);
    await call.waitFor(() => call.frames.slice(before).filter((f) => f.playedAt !== null).length >= 50, 20_000, "a second of the announcement to play");
    say(padded(await clipMulaw("new-home-in-the-stars")));
    call.silence(2000);
    await call.waitFor(() => call.eventsOf("clear").length > 0, 15_000, "the clear after the barge-in");
    await call.waitFor(() => finishedUtterances(call) >= 3, 25_000, "the reply after the barge-in");
    await call.hangUp();

    const rec = await untilRecord(base, call.callSid, (r) => !r.live && r.recording?.status === "finished");
    expect(rec.turns[0]!.text.startsWith(`${NOTICE} Hello!`)).toBe(true);
    expect(rec.bargeIns).toBe(1);
    expect(rec.recording).toMatchObject({ file: `${call.callSid}.wav`, url: `/api/calls/${call.callSid}/recording`, status: "finished", part: 1 });
    expect(rec.outcome?.recording).toMatchObject({ url: `/api/calls/${call.callSid}/recording`, status: "finished" });

    const res = await fetch(`${base}${rec.recording!.url}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("audio/wav");
    expect(res.headers.get("accept-ranges")).toBe("bytes");
    const wavBytes = Buffer.from(await res.arrayBuffer());
    expect(wavBytes.length).toBe(rec.recording!.bytes);
    const wav = parseStereoWav(wavBytes);
    expect(wav.sampleRate).toBe(8000);
    expect(wav.left.length / 8000).toBeCloseTo(rec.recording!.durationS!, 3);

    // Left: the caller's stream as sent: silence, and each clip at its exact sample offset.
    const left = new Int16Array(wav.left.length);
    for (const s of sent) {
      expect(s.at + s.mulaw.length).toBeLessThanOrEqual(left.length);
      left.set(decode(s.mulaw), s.at);
    }
    expect(firstMismatch(wav.left, left)).toBe(-1);

    // Right: every run of frames the stand-in played back to back, sample for sample, where it played them.
    const payload = Buffer.concat(call.payloads);
    expect(payload.length).toBe(call.frames.length * FRAME);
    const frameAudio = (i: number) => decode(payload.subarray(i * FRAME, (i + 1) * FRAME));
    const slotOf = (i: number) => Math.round((call.frames[i]!.playSlotAt! - call.sampleDueAt(0)) * 8);
    const runs: { first: number; last: number }[] = [];
    call.frames.forEach((f, i) => {
      if (f.playedAt === null) return;
      const run = runs.at(-1);
      if (run && run.last === i - 1 && slotOf(i) === slotOf(i - 1) + FRAME) run.last = i;
      else runs.push({ first: i, last: i });
    });
    const right = new Int16Array(wav.right.length);
    const offsets = new Map<number, number>(); // run's first frame -> where the recording has it, relative to its slot
    for (const run of runs) {
      const audio = new Int16Array((run.last - run.first + 1) * FRAME);
      for (let i = run.first; i <= run.last; i++) audio.set(frameAudio(i), (i - run.first) * FRAME);
      if (audio.every((v) => v === 0)) continue; // silence is silence wherever it is
      const at = slotOf(run.first);
      let found: number | null = null;
      for (let d = 0; d <= ALIGN_TOLERANCE && found === null; d++) for (const off of d ? [-d, d] : [0]) if (found === null && matchesAt(wav.right, audio, at + off)) found = off;
      expect(found, `frames ${run.first}-${run.last} (slot at sample ${at}) are in the recording within ${ALIGN_TOLERANCE} samples of where they played`).not.toBeNull();
      offsets.set(run.first, found!);
      right.set(audio, at + found!);
    }
    expect(offsets.size).toBeGreaterThanOrEqual(4); // notice and greeting, reply, announcement, reply (at least)

    // The clear: the announcement's frames the stand-in received and never played.
    const dropped = call.frames.map((f, i) => (f.playedAt === null ? i : -1)).filter((i) => i >= 0);
    expect(dropped.length).toBeGreaterThanOrEqual(10);
    const cutRun = runs.find((r) => r.last === dropped[0]! - 1)!;
    const cutEnd = slotOf(cutRun.first) + offsets.get(cutRun.first)! + (cutRun.last - cutRun.first + 1) * FRAME;
    // At most a frame or two Parley counted as begun may follow, and they must be the very next frames it sent.
    let extra = 0;
    while (extra < CUT_TOLERANCE_FRAMES && matchesAt(wav.right, frameAudio(dropped[extra]!), cutEnd + extra * FRAME) && !frameAudio(dropped[extra]!).every((v) => v === 0)) {
      right.set(frameAudio(dropped[extra]!), cutEnd + extra * FRAME);
      extra++;
    }
    // Everything else on the right is what was placed above: nothing after the clear, silence where nothing played.
    expect(firstMismatch(wav.right, right)).toBe(-1);
    console.info(`recording: ${runs.length} played runs, offsets (samples) ${JSON.stringify([...offsets.values()])}, ${dropped.length} frames dropped at clear, ${extra} kept as begun`);

    // Range requests.
    const part = await fetch(`${base}${rec.recording!.url}`, { headers: { range: "bytes=0-43" } });
    expect(part.status).toBe(206);
    expect(part.headers.get("content-range")).toBe(`bytes 0-43/${wavBytes.length}`);
    expect(Buffer.from(await part.arrayBuffer()).equals(wavBytes.subarray(0, 44))).toBe(true);
    const tail = await fetch(`${base}${rec.recording!.url}`, { headers: { range: "bytes=-1000" } });
    expect(tail.status).toBe(206);
    expect(Buffer.from(await tail.arrayBuffer()).equals(wavBytes.subarray(wavBytes.length - 1000))).toBe(true);
    const beyond = await fetch(`${base}${rec.recording!.url}`, { headers: { range: `bytes=${wavBytes.length}-` } });
    expect(beyond.status).toBe(416);
    expect(beyond.headers.get("content-range")).toBe(`bytes */${wavBytes.length}`);
    expect(((await beyond.json()) as { error: string }).error).toMatch(/not satisfiable/);
  }, 120_000);

  it("a full disk stops only that call's recording: the call goes on, the error is recorded, other calls record", async () => {
    // The first recording opened gets a disk that fills after its first second; every other file is a real one.
    let opened = 0;
    const fullDisk: RecordingOpener = async (file) => {
      const f = await openRecordingFile(file);
      if (opened++ > 0) return f;
      let bytes = 0;
      return {
        async write(data, position) {
          bytes += data.length;
          if (bytes > 40_000) throw Object.assign(new Error(`ENOSPC: no space left on device, write`), { code: "ENOSPC", errno: -28 });
          await f.write(data, position);
        },
        close: () => f.close(),
      };
    };
    const recordings = new RecordingStore(parley.services.config.dataDir, { retentionDays: 0, open: fullDisk });
    const { base } = await parley.start({ recordings }, { recordCalls: true });
    const full = new TwilioCall({ baseUrl: base });
    await full.connect();
    await full.waitFor(() => finishedUtterances(full) >= 1, 20_000, "the greeting (first call)");
    const other = new TwilioCall({ baseUrl: base });
    await other.connect();
    // The full disk's call carries on through a question and its reply after the recording failed.
    await untilRecord(base, full.callSid, (r) => r.recording?.status === "failed");
    full.say(await clipMulaw("whats-the-weather-like"));
    full.silence(1500);
    await full.waitFor(() => finishedUtterances(full) >= 2, 25_000, "the reply after the recording failed");
    await other.waitFor(() => finishedUtterances(other) >= 1, 20_000, "the greeting (second call)");
    await full.hangUp();
    await other.hangUp();

    const failed = await untilRecord(base, full.callSid, (r) => !r.live);
    expect(failed.endReason).toBe("caller hung up");
    expect(failed.turns.filter((t) => t.kind === "reply")).toHaveLength(1);
    expect(failed.recording).toMatchObject({ status: "failed", error: expect.stringMatching(/^recording stopped: ENOSPC/) });
    expect(failed.errors).toContainEqual(expect.objectContaining({ type: "recording.error", message: expect.stringMatching(/ENOSPC/) }));
    // What reached the disk before it filled is a playable file: its header covers the second that was written.
    const partial = parseStereoWav(Buffer.from(await (await fetch(`${base}${failed.recording!.url}`)).arrayBuffer()));
    expect(partial.left.length).toBe(8000);

    const ok = await untilRecord(base, other.callSid, (r) => !r.live && r.recording?.status === "finished");
    expect(ok.errors).toEqual([]);
    const whole = parseStereoWav(Buffer.from(await (await fetch(`${base}${ok.recording!.url}`)).arrayBuffer()));
    expect(whole.left.length / 8000).toBeCloseTo(ok.recording!.durationS!, 3);
    expect(whole.right.some((v) => v !== 0)).toBe(true); // the greeting
  }, 120_000);

  it("an outbound call placed with record: true says its notice first and is recorded", async () => {
    const ACCOUNT = "AC0123456789abcdef0123456789abcdef";
    const AUTH = "standin-auth-token";
    const standIn = await TwilioStandIn.start({ accountSid: ACCOUNT, authToken: AUTH, ringMs: 200 });
    try {
      // The harness builds the Twilio carrier, with its REST client, from this configuration.
      const { base } = await parley.start({}, { twilioAccountSid: ACCOUNT, twilioAuthToken: AUTH, twilioApiUrl: standIn.url, twilioFromNumber: "+15550100001" });
      const placed = await fetch(`${base}/api/calls`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ to: "+15550100009", mode: "notify", message: "Your build on main is broken.", record: true, recordingNotice: NOTICE }),
      });
      expect(placed.status).toBe(201);
      const sid = ((await placed.json()) as { callSid: string }).callSid;
      const call = standIn.call(sid);
      const stream = await call.waitForStream(1);
      await call.ended;
      expect(finishedUtterances(stream)).toBe(1);
      const rec = await untilRecord(base, sid, (r) => !r.live && r.recording?.status === "finished" && !!r.outcome);
      expect(rec.turns.map((t) => t.text)).toEqual([`${NOTICE} Your build on main is broken.`]);
      expect(rec.session).toMatchObject({ record: true, recordingNotice: NOTICE });
      expect(rec.outcome!.recording).toMatchObject({ url: `/api/calls/${sid}/recording`, status: "finished" });
      const wav = parseStereoWav(Buffer.from(await (await fetch(`${base}/api/calls/${sid}/recording`)).arrayBuffer()));
      // The notice and message, every frame the callee heard, in order on the right.
      const heard = decode(Buffer.concat(stream.payloads));
      const start = wav.right.findIndex((v) => v !== 0);
      const firstHeard = heard.findIndex((v) => v !== 0);
      expect(matchesAt(wav.right, heard.subarray(firstHeard), start)).toBe(true);
      expect(stream.frames.every((f) => f.playedAt !== null)).toBe(true);
    } finally {
      await standIn.close();
    }
  }, 60_000);

  it("refuses a recording of an unknown call, of a call not recorded, and without the bearer token", async () => {
    const token = "recording-test-token-0123456789";
    const { base } = await parley.start({}, { apiToken: token });
    const auth = { authorization: `Bearer ${token}` };
    const unknown = await fetch(`${base}/api/calls/CAnope/recording`, { headers: auth });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toEqual({ error: "no call CAnope" });
    const badId = await fetch(`${base}/api/calls/..%2Fetc/recording`, { headers: auth });
    expect(badId.status).toBe(400);

    const call = new TwilioCall({ baseUrl: base });
    await call.connect();
    await call.waitFor(() => finishedUtterances(call) >= 1, 20_000, "the greeting");
    await call.hangUp();
    const none = await fetch(`${base}/api/calls/${call.callSid}/recording`, { headers: auth });
    expect(none.status).toBe(404);
    expect(((await none.json()) as { error: string }).error).toMatch(/has no recording .*"record": true.*RECORD_CALLS=true/);
    expect((await fetch(`${base}/api/calls/${call.callSid}/recording`)).status).toBe(401);
  }, 60_000);
});

function matchesAt(hay: Int16Array, needle: Int16Array, at: number): boolean {
  if (at < 0 || at + needle.length > hay.length) return false;
  for (let i = 0; i < needle.length; i++) if (hay[at + i] !== needle[i]) return false;
  return true;
}
