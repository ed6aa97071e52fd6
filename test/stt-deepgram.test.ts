/**
 * The Deepgram adapter with the real `@deepgram/sdk` as the client and a local Deepgram-protocol server
 * (test/helpers/deepgram-mock.ts) as the server. No wall-clock assertions: only order and causality.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { encodeMulaw } from "../src/audio/mulaw.ts";
import { DEEPGRAM_DEFAULTS, DeepgramStt, type DeepgramOptions, type DeepgramSession } from "../src/providers/stt/deepgram.ts";
import { DeepgramMock, type DeepgramMockOptions, type MockConnection } from "./helpers/deepgram-mock.ts";

const KEY = "test-key-0123456789";

let mock: DeepgramMock | undefined;
let stt: DeepgramStt | undefined;

afterEach(async () => {
  await stt?.close();
  await mock?.close();
  stt = undefined;
  mock = undefined;
});

async function setup(
  opts: Partial<DeepgramOptions> = {},
  mockOpts: DeepgramMockOptions = { apiKey: KEY },
): Promise<{ mock: DeepgramMock; stt: DeepgramStt; warnings: string[] }> {
  mock = await DeepgramMock.start(mockOpts);
  const warnings: string[] = [];
  stt = new DeepgramStt({
    apiKey: KEY,
    url: mock.url,
    reconnect: { attempts: 3, baseDelayMs: 5 },
    logger: { warn: (_o, msg) => warnings.push(msg) },
    ...opts,
  });
  await stt.ready();
  return { mock, stt, warnings };
}

/** Deterministic mu-law-like bytes (any byte value is valid mu-law). */
function audio(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed * 2654435761;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

/** Push like the media-stream handler: 20 ms frames through one reused buffer, scribbled over after each push. */
function pushFrames(session: DeepgramSession, bytes: Uint8Array, from = 0, to = bytes.length): void {
  const frame = new Uint8Array(160);
  for (let i = from; i < to; i += 160) {
    const n = Math.min(160, to - i);
    frame.set(bytes.subarray(i, i + n));
    session.pushMulaw(frame.subarray(0, n));
    frame.fill(0xa5); // the adapter must have copied what it sends and keeps
  }
}

const until = (pred: () => boolean, what: string, timeout = 3000) =>
  vi.waitFor(
    () => {
      if (!pred()) throw new Error(`timed out waiting for ${what}`);
    },
    { timeout, interval: 5 },
  );

const sha = DeepgramMock.sha256;
const conn = (n: number): MockConnection => {
  const c = mock!.connections[n];
  if (!c) throw new Error(`no connection #${n + 1}`);
  return c;
};

describe("DeepgramStt: contract with the server", () => {
  it("opens the stream when the session opens, with the required query, Token auth and path", async () => {
    const { mock, stt } = await setup();
    const s = stt.openSession({ callId: "CA1" });
    await until(() => s.connected, "the connection");
    expect(mock.connections).toHaveLength(1);
    const c = conn(0);
    expect(c.path).toBe("/v1/listen");
    expect(c.headers.authorization).toBe(`Token ${KEY}`);
    expect(c.query).toEqual({
      model: "nova-3",
      language: "en-US",
      encoding: "mulaw",
      sample_rate: "8000",
      channels: "1",
      interim_results: "true",
      endpointing: String(DEEPGRAM_DEFAULTS.endpointingMs),
      utterance_end_ms: String(DEEPGRAM_DEFAULTS.utteranceEndMs),
      vad_events: "true",
      smart_format: "true",
      punctuate: "true",
    });
  });

  it("passes mu-law through byte for byte; KeepAlive while idle, Finalize at finish(), CloseStream at close()", async () => {
    const { mock, stt } = await setup({ keepAliveMs: 20 });
    mock.script = ["what's the weather like"];
    const s = stt.openSession({ callId: "CA1" });
    await until(() => s.connected, "the connection");
    const c = conn(0);
    await until(() => mock.controlsOf(c, "KeepAlive").length >= 2, "KeepAlives while no audio flows");
    expect(c.audioBytes).toBe(0);

    const pcmu = audio(8000 + 80); // 1 s and a partial frame
    s.start();
    pushFrames(s, pcmu);
    const t = await s.finish();
    expect(t.text).toBe("what's the weather like");
    expect(t.confidence).toBeCloseTo(0.9);

    expect(sha(mock.audioOf(c))).toBe(sha(pcmu));
    // Exactly one Finalize, after the last audio byte.
    const kinds = c.events.map((e) => (e.kind === "audio" ? "audio" : e.type)).filter((k) => k !== "KeepAlive");
    expect(kinds.lastIndexOf("audio")).toBeLessThan(kinds.indexOf("Finalize"));
    expect(mock.controlsOf(c, "Finalize")).toHaveLength(1);

    // Idle again: KeepAlive resumes after the utterance.
    const finalizeAt = mock.controlsOf(c, "Finalize")[0]!.at;
    await until(() => c.controls.some((m) => m.type === "KeepAlive" && m.at > finalizeAt), "a KeepAlive after the utterance");

    s.close();
    await until(() => c.closedAt !== undefined, "the server to close the stream");
    expect(c.controls.at(-1)?.type).toBe("CloseStream");
    expect(c.sent.at(-1)?.type).toBe("Metadata");
    expect(c.closeCode).toBe(1000);
    // One connection for the whole session: neither the SDK nor the adapter reconnected.
    expect(mock.attempts).toHaveLength(1);
  });

  it("sends audio pushed before the socket opened as soon as it opens", async () => {
    const { mock, stt } = await setup();
    mock.script = ["hello there"];
    const s = stt.openSession({ callId: "CA1" });
    const pcmu = audio(4000, 2);
    s.start(); // the connection is still opening
    pushFrames(s, pcmu);
    expect(s.connected).toBe(false);
    const t = await s.finish();
    expect(t.text).toBe("hello there");
    expect(sha(mock.audioOf(conn(0)))).toBe(sha(pcmu));
    expect(mock.controlsOf(conn(0), "Finalize")).toHaveLength(1);
  });

  it("push(pcm) falls back to mu-law encoding", async () => {
    const { mock, stt } = await setup();
    mock.script = ["tone"];
    const s = stt.openSession({ callId: "CA1" });
    const pcm = Int16Array.from({ length: 1600 }, (_, i) => Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / 8000)));
    s.start();
    const frame = new Int16Array(160);
    for (let i = 0; i < pcm.length; i += 160) {
      frame.set(pcm.subarray(i, i + 160));
      s.push(frame);
      frame.fill(0);
    }
    expect((await s.finish()).text).toBe("tone");
    expect(sha(mock.audioOf(conn(0)))).toBe(sha(encodeMulaw(pcm)));
  });
});

describe("DeepgramStt: transcripts", () => {
  it("partials grow, onStable fires on speech_final while the utterance is open, finish() resolves the script", async () => {
    const { mock, stt } = await setup({ endpointingMs: 40 }, { apiKey: KEY, bytesPerWord: 800, interimEveryBytes: 800 });
    mock.script = ["we must find a new home in the stars", "what's the weather like"];
    const partials: string[] = [];
    const stable: string[] = [];
    const s = stt.openSession({ callId: "CA1", onPartial: (t) => partials.push(t), onStable: (t) => stable.push(t) });

    s.start();
    pushFrames(s, audio(4000, 3));
    // The server endpoints (40 ms without audio) while Parley's VAD still holds the utterance open.
    await until(() => stable.length === 1, "onStable");
    expect(stable[0]).toBe("we must find a new home in the stars");
    expect(partials.length).toBeGreaterThanOrEqual(3);
    const counts = partials.map((p) => p.split(" ").length);
    expect(counts).toEqual([...counts].sort((a, b) => a - b));
    for (const p of partials) expect("we must find a new home in the stars".startsWith(p)).toBe(true);
    const t1 = await s.finish();
    expect(t1.text).toBe("we must find a new home in the stars");

    // The next utterance, ended by Parley before the server endpoints: Finalize answers it.
    s.start();
    pushFrames(s, audio(3200, 4));
    const t2 = await s.finish();
    expect(t2.text).toBe("what's the weather like");
    expect(stable).toHaveLength(1); // nothing stable once finish() has been called
  });

  it("cancel() drops the utterance and its words do not reach the next one", async () => {
    const { mock, stt } = await setup({ endpointingMs: 5000 });
    mock.script = ["never mind that", "book a table"];
    const s = stt.openSession({ callId: "CA1" });
    await until(() => s.connected, "the connection");
    s.start();
    pushFrames(s, audio(3200, 5));
    s.cancel();
    s.start();
    pushFrames(s, audio(3200, 6));
    const t = await s.finish();
    expect(t.text).toBe("book a table");
  });

  it("finish() without audio resolves empty without asking the server", async () => {
    const { mock, stt } = await setup();
    const s = stt.openSession({ callId: "CA1" });
    await until(() => s.connected, "the connection");
    s.start();
    expect(await s.finish()).toEqual({ text: "" });
    expect(mock.controlsOf(conn(0), "Finalize")).toHaveLength(0);
  });
});

describe("DeepgramStt: faults", () => {
  it("a connection dropped mid-utterance: reconnects, re-sends the audio since the last final, transcript complete", async () => {
    const { mock, stt } = await setup(
      { endpointingMs: 10_000 },
      { apiKey: KEY, bytesPerWord: 800, interimEveryBytes: 800, segmentWords: 2 },
    );
    mock.script = ["one two three four five six"];
    const s = stt.openSession({ callId: "CA1" });
    const pcmu = audio(6400, 7);
    s.start();
    pushFrames(s, pcmu, 0, 2400); // the server finalizes "one two" at 1600 bytes (0.2 s)
    await until(() => s.stats.finals === 1, "the first finalized segment");

    mock.dropConnectionAfterBytes(2800); // cut before the next segment is finalized
    pushFrames(s, pcmu, 2400, 6400);
    const t = await s.finish();
    expect(t.text).toBe("one two three four five six");

    expect(mock.connections).toHaveLength(2);
    const [c1, c2] = [conn(0), conn(1)];
    expect(c1.dropped).toBe(true);
    expect(sha(mock.audioOf(c1))).toBe(sha(pcmu.subarray(0, c1.audioBytes)));
    // The new connection got exactly the audio after the last finalized result, then Finalize.
    expect(sha(mock.audioOf(c2))).toBe(sha(pcmu.subarray(1600)));
    const kinds = c2.events.map((e) => (e.kind === "audio" ? "audio" : e.type)).filter((k) => k !== "KeepAlive");
    expect(kinds.at(-1)).toBe("Finalize");
    expect(s.stats.drops).toBe(1);
    expect(s.stats.resentAudioBytes).toBeGreaterThan(0);
  });

  it("a server close (1011 NET-0001) between utterances: exactly one reconnection (the SDK's is off), then work goes on", async () => {
    const { mock, stt } = await setup({ keepAliveMs: 20 });
    mock.script = ["still here"];
    const s = stt.openSession({ callId: "CA1" });
    await until(() => s.connected, "the connection");
    mock.closeConnections(1011, "NET-0001");
    await until(() => mock.connections.length === 2 && s.connected, "the reconnection");
    // Long enough for an SDK-level reconnect to show up (it would open a third connection).
    await until(() => mock.controlsOf(conn(1), "KeepAlive").length >= 3, "KeepAlives on the new connection");
    expect(conn(0).closeCode).toBe(1011);
    expect(mock.connections).toHaveLength(2);
    s.start();
    pushFrames(s, audio(3200, 8));
    expect((await s.finish()).text).toBe("still here");
    expect(mock.connections).toHaveLength(2);
  });

  it("401 (wrong key): finish() rejects with a clear error, no retries; the same provider works once the key is accepted", async () => {
    const { mock, stt } = await setup({ apiKey: "wrong-key" });
    mock.script = ["it works now"];
    const s = stt.openSession({ callId: "CA1" });
    await until(() => s.lastError !== undefined, "the refused connection");
    expect(s.lastError?.message).toBe("Deepgram: 401 Unauthorized — check DEEPGRAM_API_KEY");

    s.start();
    pushFrames(s, audio(1600, 9));
    await expect(s.finish()).rejects.toThrow("Deepgram: 401 Unauthorized — check DEEPGRAM_API_KEY");
    expect(mock.attempts.map((a) => a.status)).toEqual([401, 401]); // one per utterance, never retried
    expect(mock.connections).toHaveLength(0);

    mock.apiKey = "wrong-key"; // the server accepts the key now
    s.start();
    pushFrames(s, audio(1600, 10));
    expect((await s.finish()).text).toBe("it works now");
  });

  it("429: retried with backoff; when the attempts run out finish() rejects naming the cause; later utterances reconnect", async () => {
    const { mock, stt } = await setup({ reconnect: { attempts: 2, baseDelayMs: 5 } });
    mock.script = ["first", "third"];
    mock.failNextConnect(429);
    const s = stt.openSession({ callId: "CA1" });
    await until(() => s.connected, "the connection after one 429");
    expect(mock.attempts.map((a) => a.status)).toEqual([429, 101]);
    s.start();
    pushFrames(s, audio(1600, 11));
    expect((await s.finish()).text).toBe("first");

    mock.failNextConnect(429, 1000);
    mock.closeConnections(1011, "NET-0001");
    s.start();
    pushFrames(s, audio(1600, 12));
    const err = await s.finish().then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.message).toMatch(/^Deepgram: 429 Too Many Requests .*gave up after 2 reconnection attempts/);
    expect(mock.attempts.slice(2).map((a) => a.status)).toEqual([429, 429]);

    mock.clearFaults();
    s.start();
    pushFrames(s, audio(1600, 13));
    expect((await s.finish()).text).toBe("third");
  });

  it("a server that never answers the handshake: finish() rejects after the connect timeout; recovers", async () => {
    const { mock, stt } = await setup({ connectTimeoutMs: 60, reconnect: { attempts: 1, baseDelayMs: 5 } });
    mock.script = ["recovered"];
    mock.failNextConnect("hang", 1000);
    const s = stt.openSession({ callId: "CA1" });
    s.start();
    pushFrames(s, audio(1600, 14));
    await expect(s.finish()).rejects.toThrow(/^Deepgram: no answer from 127\.0\.0\.1:\d+ within 60 ms/);
    mock.clearFaults();
    s.start();
    pushFrames(s, audio(1600, 15));
    expect((await s.finish()).text).toBe("recovered");
  });

  it("garbage and malformed messages are counted, logged and ignored; the utterance completes", async () => {
    const { mock, stt, warnings } = await setup({ endpointingMs: 10_000 }, { apiKey: KEY, bytesPerWord: 800, interimEveryBytes: 800 });
    mock.script = ["despite the noise"];
    const partials: string[] = [];
    const s = stt.openSession({ callId: "CA1", onPartial: (t) => partials.push(t) });
    const pcmu = audio(3200, 16);
    s.start();
    pushFrames(s, pcmu, 0, 1600);
    await until(() => partials.length > 0, "a partial");
    expect(mock.sendGarbage()).toBe(1);
    mock.sendJson({ type: "Results", is_final: true }); // no channel
    mock.sendJson({ type: "SomethingNew" });
    await until(() => s.stats.garbage === 1 && s.stats.protocolErrors === 2, "the bad messages");
    expect(warnings).toContain("Deepgram: ignored a message that is not JSON");
    pushFrames(s, pcmu, 1600);
    expect((await s.finish()).text).toBe("despite the noise");
    expect(mock.connections).toHaveLength(1);
  });

  it("a slow server: finish() resolves at finalizeTimeoutMs with the partial text; the late final does not leak", async () => {
    const { mock, stt } = await setup(
      { endpointingMs: 10_000, finalizeTimeoutMs: 50 },
      { apiKey: KEY, bytesPerWord: 800, interimEveryBytes: 800 },
    );
    mock.script = ["alpha beta gamma delta", "second line here"];
    const partials: string[] = [];
    const s = stt.openSession({ callId: "CA1", onPartial: (t) => partials.push(t) });
    s.start();
    pushFrames(s, audio(1600, 17));
    await until(() => partials.includes("alpha beta"), "the partial");
    mock.delayResultsMs = 300;
    const t1 = await s.finish();
    expect(t1.text).toBe("alpha beta");
    expect(s.stats.finalizeTimeouts).toBe(1);
    expect(mock.controlsOf(conn(0), "Finalize")).toHaveLength(1);

    // The late from_finalize result ("alpha beta gamma delta") arrives during the next utterance.
    mock.delayResultsMs = 0;
    s.start();
    pushFrames(s, audio(1600, 18));
    await until(() => s.stats.finals === 1, "the late final");
    const t2 = await s.finish();
    expect(t2.text).toBe("second line here");
  });

  it("close() rejects a pending transcript and stops all activity; provider.close() closes its sessions", async () => {
    const { mock, stt } = await setup({ endpointingMs: 10_000 });
    mock.ignoreFinalize = true;
    const s = stt.openSession({ callId: "CA1" });
    const s2 = stt.openSession({ callId: "CA2" });
    await until(() => s.connected && s2.connected, "both connections");
    s.start();
    pushFrames(s, audio(1600, 19));
    const pending = s.finish();
    s.close();
    await expect(pending).rejects.toThrow("Deepgram: session closed");
    await stt.close();
    await until(() => mock.connections.every((c) => c.closedAt !== undefined), "every stream closed");
    expect(mock.connections.every((c) => c.controls.at(-1)?.type === "CloseStream")).toBe(true);
    s2.start();
    expect(s2.connected).toBe(false);
  });

  it("closing during a handshake that never completes leaves nothing behind", async () => {
    const { mock, stt } = await setup({ connectTimeoutMs: 5000 });
    mock.failNextConnect("hang", 1000);
    const s = stt.openSession({ callId: "CA1" });
    await until(() => mock.attempts.length === 1, "the handshake to start");
    s.start();
    pushFrames(s, audio(800, 20));
    const pending = s.finish();
    s.close();
    await expect(pending).rejects.toThrow("Deepgram: session closed");
    mock.clearFaults(); // destroys the hanging sockets: the abandoned handshake fails, silently
    await new Promise((r) => setTimeout(r, 20));
    expect(mock.attempts).toHaveLength(1);
  });

  it("a server that is gone: finish() rejects with 'cannot connect', naming the host", async () => {
    const { mock, stt } = await setup({ reconnect: { attempts: 1, baseDelayMs: 5 } });
    const s = stt.openSession({ callId: "CA1" });
    await until(() => s.connected, "the connection");
    await mock.close();
    await until(() => !s.connected, "the loss");
    s.start();
    pushFrames(s, audio(800, 21));
    await expect(s.finish()).rejects.toThrow(/^Deepgram: cannot connect to 127\.0\.0\.1:\d+: .*ECONNREFUSED/);
  });

  it("invalid options: ready() rejects listing every problem; sessions fail without connecting", async () => {
    mock = await DeepgramMock.start();
    stt = new DeepgramStt({ apiKey: "", url: mock.url, keepAliveMs: 20_000, finalizeTimeoutMs: 0 });
    await expect(stt.ready()).rejects.toThrow(/apiKey is required.*keepAliveMs.*finalizeTimeoutMs/);
    const s = stt.openSession({ callId: "CA1" });
    s.start();
    s.pushMulaw(audio(160));
    await expect(s.finish()).rejects.toThrow(/^Deepgram: invalid options/);
    expect(mock.attempts).toHaveLength(0);
  });
});
