/**
 * No needless wait after Finalize. Deepgram documents only that you "may" receive a `from_finalize` result after
 * `Finalize`; the stand-in here never sends one when nothing is pending (`answerEmptyFinalize: false`), as the docs
 * allow. Real speech from ../shared/audio, endpointed by the stand-in on the silence in the audio, as Deepgram does.
 * `finalizeTimeoutMs` is a minute: a transcript that waited for it could not arrive within the test's time, and the
 * counters say which way each utterance was settled. No wall-clock assertions.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { MULAW_TO_PCM16 } from "../src/audio/mulaw.ts";
import { DeepgramStt, type DeepgramOptions, type DeepgramSession } from "../src/providers/stt/deepgram.ts";
import { clipMulaw } from "./helpers/audio.ts";
import { DeepgramMock, type DeepgramMockOptions } from "./helpers/deepgram-mock.ts";

const KEY = "test-key-0123456789";
const SILENCE = (ms: number) => new Uint8Array(ms * 8).fill(0xff); // mu-law digital silence
const DOCS_ONLY: DeepgramMockOptions = { apiKey: KEY, endpointOnSilence: true, answerEmptyFinalize: false };

let mock: DeepgramMock | undefined;
let stt: DeepgramStt | undefined;
afterEach(async () => {
  await stt?.close();
  await mock?.close();
  stt = mock = undefined;
});

async function setup(opts: Partial<DeepgramOptions>, mockOpts: DeepgramMockOptions = DOCS_ONLY) {
  mock = await DeepgramMock.start(mockOpts);
  stt = new DeepgramStt({ apiKey: KEY, url: mock.url, finalizeTimeoutMs: 60_000, ...opts });
  await stt.ready();
  return { mock, stt };
}

/** 20 ms frames, as the media stream delivers them. */
function pushFrames(session: DeepgramSession, bytes: Uint8Array): void {
  for (let i = 0; i < bytes.length; i += 160) session.pushMulaw(bytes.subarray(i, Math.min(bytes.length, i + 160)));
}

/** The clip from its first loud 20 ms (over -30 dBFS), for speech that starts at once. */
function fromFirstWord(clip: Uint8Array): Uint8Array {
  for (let i = 0; i + 160 <= clip.length; i += 160) {
    let sum = 0;
    for (let j = i; j < i + 160; j++) sum += Math.abs(MULAW_TO_PCM16[clip[j]!]!);
    if (sum / 160 > 1036) return clip.subarray(i);
  }
  throw new Error("no speech in the clip");
}

const until = (pred: () => boolean, what: string) =>
  vi.waitFor(
    () => {
      if (!pred()) throw new Error(`timed out waiting for ${what}`);
    },
    { timeout: 5000, interval: 5 },
  );

const fromFinalize = (m: DeepgramMock) => m.connections.flatMap((c) => c.sent).filter((msg) => msg.from_finalize === true);

describe("DeepgramStt: Finalize that Deepgram does not answer", () => {
  it("speech_final covered the speech, then only silence: the transcript comes at finish(), not after the timeout", async () => {
    const { mock, stt } = await setup({});
    mock.script = ["what's the weather like"];
    const stable: string[] = [];
    const s = stt.openSession({ callId: "CA1", onStable: (t) => stable.push(t) });
    await until(() => s.connected, "the connection");
    s.start();
    pushFrames(s, await clipMulaw("whats-the-weather-like"));
    pushFrames(s, SILENCE(550)); // the VAD's silence window; Deepgram endpoints 300 ms into it
    await until(() => stable.length === 1, "speech_final");
    const t = await s.finish();
    expect(t.text).toBe("what's the weather like");
    expect(s.stats).toMatchObject({ settledOnSilence: 1, finalizeTimeouts: 0 });
    // Finalize still went out (it flushes anything pending), and was never answered.
    await until(() => mock.controlsOf(mock.connections[0]!, "Finalize").length === 1, "the Finalize at the server");
    expect(fromFinalize(mock)).toHaveLength(0);
  }, 15_000);

  it("speech_final arriving after finish() ends the wait at once when only silence follows it", async () => {
    const { mock, stt } = await setup({});
    mock.script = ["what's the weather like"];
    const s = stt.openSession({ callId: "CA1" });
    await until(() => s.connected, "the connection");
    mock.delayResultsMs = 150; // results come after the VAD has ended the utterance
    s.start();
    pushFrames(s, await clipMulaw("whats-the-weather-like"));
    pushFrames(s, SILENCE(400));
    const pending = s.finish();
    expect(s.stats.finals).toBe(0); // nothing finalized yet when the utterance ended
    const t = await pending;
    expect(t.text).toBe("what's the weather like");
    expect(s.stats).toMatchObject({ settledOnSilence: 1, finalizeTimeouts: 0 });
    expect(fromFinalize(mock)).toHaveLength(0);
  }, 15_000);

  it("speech after the last final is not covered: keeps waiting for Finalize's answer, bounded by finalizeTimeoutMs", async () => {
    const { mock, stt } = await setup({ finalizeTimeoutMs: 100 });
    mock.script = ["what's the weather like", "in paris"];
    const stable: string[] = [];
    const s = stt.openSession({ callId: "CA1", onStable: (t) => stable.push(t) });
    await until(() => s.connected, "the connection");
    mock.ignoreFinalize = true;
    const clip = await clipMulaw("whats-the-weather-like");
    s.start();
    pushFrames(s, clip);
    pushFrames(s, SILENCE(400));
    await until(() => stable.length === 1, "the first speech_final");
    // The caller goes on talking; the VAD ends the utterance before Deepgram finalizes the new words.
    pushFrames(s, fromFirstWord(clip).subarray(0, 4000));
    const t = await s.finish();
    expect(s.stats).toMatchObject({ settledOnSilence: 0, finalizeTimeouts: 1 });
    expect(t.text.startsWith("what's the weather like")).toBe(true);
  }, 15_000);

  it("a server that does answer Finalize is unaffected: the from_finalize result settles the utterance", async () => {
    const { mock, stt } = await setup({}, { apiKey: KEY, endpointOnSilence: true });
    mock.script = ["what's the weather like"];
    const s = stt.openSession({ callId: "CA1" });
    await until(() => s.connected, "the connection");
    s.start();
    pushFrames(s, fromFirstWord(await clipMulaw("whats-the-weather-like")).subarray(0, 4000)); // cut mid-speech
    const t = await s.finish();
    expect(t.text).toBe("what's the weather like");
    expect(s.stats).toMatchObject({ settledOnSilence: 0, finalizeTimeouts: 0 });
    expect(fromFinalize(mock)).toHaveLength(1);
  }, 15_000);
});
