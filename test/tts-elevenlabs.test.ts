import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ElevenLabsTts, ElevenLabsTtsError, type ElevenLabsTtsOptions } from "../src/providers/tts/elevenlabs.ts";
import type { ElevenLabsStream } from "../src/providers/tts/elevenlabs/stream.ts";
import { WordTracker } from "../src/providers/tts/elevenlabs/words.ts";
import type { TtsChunk, TtsStream, WordTiming } from "../src/providers/types.ts";
import { ElevenLabsMock, type ElevenLabsMockOptions } from "./helpers/elevenlabs-mock.ts";

let mock: ElevenLabsMock;
const providers: ElevenLabsTts[] = [];

async function startMock(opts: ElevenLabsMockOptions = {}): Promise<void> {
  await mock?.close();
  mock = await ElevenLabsMock.start(opts);
}

function provider(opts: Partial<ElevenLabsTtsOptions> = {}): ElevenLabsTts {
  const p = new ElevenLabsTts({ apiKey: mock.apiKey, url: mock.url, preconnect: false, wsRetryBackoffMs: 0, ...opts });
  providers.push(p);
  return p;
}

const idOf = (s: TtsStream) => (s as ElevenLabsStream).contextId;

interface Collected {
  chunks: TtsChunk[];
  audio: Uint8Array;
  words: WordTiming[];
}

async function collect(s: AsyncIterable<TtsChunk>): Promise<Collected> {
  const chunks: TtsChunk[] = [];
  for await (const c of s) chunks.push(c);
  return summarize(chunks);
}

function summarize(chunks: TtsChunk[]): Collected {
  return { chunks, audio: Buffer.concat(chunks.map((c) => c.mulaw)), words: chunks.flatMap((c) => c.words) };
}

/** Expected word timings for text voiced back to back by the mock (word k starts at k * msPerWord). */
function expectedWords(text: string, fromWord = 0): WordTiming[] {
  return text
    .split(/\s+/)
    .filter(Boolean)
    .map((w, i) => ({ text: w, startMs: (fromWord + i) * mock.msPerWord }));
}

const audioOf = (...texts: string[]) => Buffer.concat(texts.map((t) => mock.audioFor(t)));

beforeEach(async () => {
  await startMock();
});

afterEach(async () => {
  await Promise.all(providers.splice(0).map((p) => p.close()));
  await mock.close();
});

describe("ElevenLabs TTS: multi-context WebSocket contract", () => {
  it("opens the socket with ulaw_8000, the model and the key header; one context per utterance", async () => {
    const tts = provider({ modelId: "eleven_turbo_v2_5", voiceId: "voice-abc" });
    const s = tts.openStream(new AbortController().signal, { callId: "CA0001" });
    s.write("Hello there, how are you?");
    s.write("I can help with that.");
    s.end();
    await collect(s);

    expect(mock.connections).toHaveLength(1);
    const conn = mock.connections[0]!;
    expect(conn.voiceId).toBe("voice-abc");
    expect(conn.query).toMatchObject({ model_id: "eleven_turbo_v2_5", output_format: "ulaw_8000", inactivity_timeout: "60", sync_alignment: "true" });
    expect(conn.headers["xi-api-key"]).toBe(mock.apiKey);
    expect(conn.contexts).toEqual([idOf(s)]);
    expect(idOf(s)).toMatch(/^CA0001-/);

    // Exactly: init (" " + voice settings), one flushed text per clause, close_context at the end.
    expect(mock.contextMessages(idOf(s))).toEqual([
      { text: " ", voice_settings: { stability: 0.5, similarity_boost: 0.75, speed: 1 }, context_id: idOf(s) },
      { text: "Hello there, how are you? ", context_id: idOf(s), flush: true },
      { text: "I can help with that. ", context_id: idOf(s), flush: true },
      { context_id: idOf(s), close_context: true },
    ]);
    expect(conn.messages.every((m) => m.json)).toBe(true);
  });

  it("a call's voice and language get a socket of their own (voice id in the path, language_code); the default keeps its", async () => {
    const tts = provider({ voiceId: "DefaultVoice000000001" });
    const german = tts.openStream(new AbortController().signal, { callId: "CA1", voice: { voice: "GermanVoice0000000001", language: "de-AT" } });
    const usual = tts.openStream(new AbortController().signal, { callId: "CA2" });
    for (const s of [german, usual]) {
      s.write("Guten Tag.");
      s.end();
    }
    await Promise.all([collect(german), collect(usual)]);
    expect(mock.connections.map((c) => [c.voiceId, c.query.language_code ?? null]).sort()).toEqual([
      ["DefaultVoice000000001", null],
      ["GermanVoice0000000001", "de"],
    ]);
    expect(mock.connectionOf(idOf(german))!.voiceId).toBe("GermanVoice0000000001");
    // A later utterance in the same voice shares that socket.
    const again = tts.synthesize("Noch etwas.", new AbortController().signal, { voice: "GermanVoice0000000001", language: "de-AT" });
    await collect(again);
    expect(mock.connections).toHaveLength(2);

    expect(tts.voiceProblem({ voice: "../../v1/user" })).toMatch(/not an ElevenLabs voice id/);
    expect(tts.voiceProblem({ voice: "GermanVoice0000000001", language: "de" })).toBeUndefined();
    await expect(collect(tts.synthesize("Hi.", new AbortController().signal, { voice: "bad voice" }))).rejects.toThrow(/not an ElevenLabs voice id/);
    expect(mock.connections).toHaveLength(2);
  });

  it("yields exactly the server's mu-law bytes, with whole-word timings offset across chunks", async () => {
    const tts = provider();
    const clauses = ["Sure, I can help with that.", "What date works for you?", "Monday or Tuesday?"];
    const s = tts.openStream(new AbortController().signal);
    for (const c of clauses) s.write(c);
    s.end();
    const got = await collect(s);

    expect(got.audio).toEqual(mock.sentAudio(idOf(s)));
    expect(got.audio).toEqual(audioOf(...clauses)); // no resampling, nothing added or lost
    expect(got.chunks.length).toBeGreaterThan(5); // alignment really was chunk-relative, many times over
    expect(got.words).toEqual(expectedWords(clauses.join(" ")));
    expect(got.words.map((w) => w.text).join(" ")).toBe(clauses.join(" "));
    for (let i = 1; i < got.words.length; i++) expect(got.words[i]!.startMs).toBeGreaterThan(got.words[i - 1]!.startMs);
    // Each word is reported in the chunk where its audio starts.
    let offset = 0;
    for (const c of got.chunks) {
      for (const w of c.words) expect(w.startMs).toBeGreaterThanOrEqual(offset), expect(w.startMs).toBeLessThan(offset + c.mulaw.length / 8);
      offset += c.mulaw.length / 8;
    }
  });

  it("chunks that cut through words, the older `charsDurationsMs`, and only normalizedAlignment", async () => {
    const variants: ElevenLabsMockOptions[] = [{ bytesPerChunk: 200 }, { durationsKey: "charsDurationsMs", wordsPerChunk: 3 }, { omitAlignment: true }];
    for (const opts of variants) {
      await startMock(opts);
      const tts = provider();
      const got = await collect(tts.synthesize("One two three four five six seven.", new AbortController().signal));
      expect(got.words).toEqual(expectedWords("One two three four five six seven."));
      await tts.close();
    }
  });

  it("synthesize() is one context with one flushed text", async () => {
    const tts = provider();
    const got = await collect(tts.synthesize("  Good morning!  ", new AbortController().signal));
    const id = mock.contextIds[0]!;
    expect(mock.contextMessages(id).map((m) => m.text ?? (m.close_context ? "<close>" : "?"))).toEqual([" ", "Good morning! ", "<close>"]);
    expect(got.audio).toEqual(audioOf("Good morning!"));
    expect(got.words).toEqual(expectedWords("Good morning!"));
  });

  it("two concurrent utterances share one socket, each with its own context and audio", async () => {
    const tts = provider();
    const a = tts.openStream(new AbortController().signal, { callId: "CAaaaa" });
    const b = tts.openStream(new AbortController().signal, { callId: "CAbbbb" });
    a.write("Alpha bravo charlie.");
    b.write("One two three four.");
    a.write("Delta echo.");
    b.write("Five six.");
    a.end();
    b.end();
    const [ga, gb] = await Promise.all([collect(a), collect(b)]);

    expect(mock.connections).toHaveLength(1);
    expect(idOf(a)).not.toBe(idOf(b));
    expect(mock.connections[0]!.contexts).toEqual([idOf(a), idOf(b)]);
    expect(ga.audio).toEqual(audioOf("Alpha bravo charlie.", "Delta echo."));
    expect(gb.audio).toEqual(audioOf("One two three four.", "Five six."));
    expect(ga.words).toEqual(expectedWords("Alpha bravo charlie. Delta echo."));
    expect(gb.words).toEqual(expectedWords("One two three four. Five six."));
  });

  it("the sixth concurrent utterance opens a second socket (5 contexts per connection)", async () => {
    const tts = provider();
    const streams = Array.from({ length: 6 }, (_, i) => {
      const s = tts.openStream(new AbortController().signal, { callId: `CA${i}` });
      s.write(`Utterance number ${i}.`);
      s.end();
      return s;
    });
    const got = await Promise.all(streams.map(collect));
    expect(mock.connections).toHaveLength(2);
    expect(mock.connections[0]!.contexts).toEqual(streams.slice(0, 5).map(idOf));
    expect(mock.connections[1]!.contexts).toEqual([idOf(streams[5]!)]);
    got.forEach((g, i) => expect(g.audio).toEqual(audioOf(`Utterance number ${i}.`)));

    // Finished contexts free their slots: the next utterance reuses an open socket.
    await collect(tts.synthesize("Again.", new AbortController().signal));
    expect(mock.connections).toHaveLength(2);
  });

  it("honours maxContextsPerConnection", async () => {
    const tts = provider({ maxContextsPerConnection: 2 });
    const streams = [0, 1, 2].map(() => tts.openStream(new AbortController().signal));
    streams.forEach((s) => (s.write("Hi."), s.end()));
    await Promise.all(streams.map(collect));
    expect(mock.connections.map((c) => c.contexts.length)).toEqual([2, 1]);
  });

  it("barge-in: abort sends close_context at once and the stream yields nothing more", async () => {
    const tts = provider();
    const ac = new AbortController();
    const text = "This is a long answer that the caller will interrupt before it is over.";
    const s = tts.openStream(ac.signal);
    s.write(text);
    const it = s[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.done).toBe(false);
    ac.abort();
    expect(await it.next()).toEqual({ value: undefined, done: true });

    const id = idOf(s);
    await vi.waitFor(() => expect(mock.contextMessages(id).at(-1)).toEqual({ context_id: id, close_context: true }));
    expect(mock.contextMessages(id).filter((m) => m.close_context)).toHaveLength(1);
    // The server kept flushing what it had (as documented); none of that late audio came out.
    await vi.waitFor(() => expect(mock.sentAudio(id).length).toBe(mock.audioFor(text).length));
    expect(await it.next()).toEqual({ value: undefined, done: true });
    expect(first.value!.mulaw.length).toBeLessThan(mock.sentAudio(id).length);
    s.end(); // harmless after abort
    s.write("more");
    // A whole synthesis over the same socket afterwards: anything the write had sent would have arrived before it.
    await collect(tts.synthesize("Flush.", new AbortController().signal));
    expect(mock.contextMessages(id).filter((m) => m.text === "more ")).toHaveLength(0);
  });

  it("a consumer that stops iterating closes the context too", async () => {
    const tts = provider();
    const s = tts.openStream(new AbortController().signal);
    s.write("One two three four five six seven eight nine ten.");
    for await (const _ of s) break;
    const id = idOf(s);
    await vi.waitFor(() => expect(mock.contextMessages(id).some((m) => m.close_context)).toBe(true));
  });

  it("an utterance aborted before the socket opens never reaches the server", async () => {
    const tts = provider();
    const ac = new AbortController();
    const s = tts.openStream(ac.signal);
    s.write("Never spoken.");
    ac.abort();
    expect(await collect(s)).toMatchObject({ chunks: [] });
    const t = tts.openStream(new AbortController().signal);
    t.write("Spoken.");
    t.end();
    expect((await collect(t)).audio).toEqual(audioOf("Spoken."));
    expect(mock.contextMessages(idOf(s))).toEqual([]);
  });

  it("an already-aborted signal yields nothing and opens nothing; end() without text ends at once", async () => {
    const tts = provider();
    const ac = new AbortController();
    ac.abort();
    expect((await collect(tts.synthesize("Hello.", ac.signal))).chunks).toEqual([]);
    expect(mock.connections).toHaveLength(0);
    const s = tts.openStream(new AbortController().signal);
    s.end();
    expect((await collect(s)).chunks).toEqual([]);
  });

  it("ready() opens one socket that the first utterance then uses", async () => {
    const tts = provider({ preconnect: true });
    await tts.ready();
    expect(mock.connections).toHaveLength(1);
    expect(tts.connectionCount).toBe(1);
    await collect(tts.synthesize("Hello.", new AbortController().signal));
    expect(mock.connections).toHaveLength(1);
    expect(mock.connections[0]!.contexts).toHaveLength(1);
  });

  it("ready() rejects invalid options, listing them", async () => {
    const tts = provider({ apiKey: "", maxContextsPerConnection: 9, inactivityTimeoutSeconds: 500, modelId: "eleven_v3" });
    await expect(tts.ready()).rejects.toThrow(/apiKey is required.*eleven_v3.*inactivityTimeoutSeconds.*maxContextsPerConnection/);
    await expect(collect(tts.synthesize("x", new AbortController().signal))).rejects.toThrow(ElevenLabsTtsError);
  });

  it("closes a socket left without contexts (close_socket), and opens a new one on demand", async () => {
    const tts = provider({ idleConnectionSeconds: 0.2 });
    await collect(tts.synthesize("Hello.", new AbortController().signal));
    await vi.waitFor(() => expect(mock.connections[0]!.closed).toBe(true));
    expect(mock.connections[0]!.messages.at(-1)!.json).toEqual({ close_socket: true });
    expect(tts.connectionCount).toBe(0);
    expect((await collect(tts.synthesize("Again.", new AbortController().signal))).audio).toEqual(audioOf("Again."));
    expect(mock.connections).toHaveLength(2);
  });

  it("keeps a waiting context alive with an empty text message", async () => {
    const tts = provider({ inactivityTimeoutSeconds: 3 }); // keepalive after 1 s without sending
    const s = tts.openStream(new AbortController().signal);
    s.write("First clause,");
    const id = idOf(s);
    await vi.waitFor(() => expect(mock.contextMessages(id)).toContainEqual({ context_id: id, text: "" }), { timeout: 5000 });
    s.write("and the rest.");
    s.end();
    const got = await collect(s);
    expect(got.words.map((w) => w.text).join(" ")).toBe("First clause, and the rest.");
    expect(mock.connections[0]!.query.inactivity_timeout).toBe("3");
  });
});

describe("ElevenLabs TTS: faults", () => {
  it("a bad key: ready() and the stream throw a clear 401 error, and nothing is retried over HTTP", async () => {
    const tts = provider({ apiKey: "wrong", preconnect: true });
    await expect(tts.ready()).rejects.toThrow("ElevenLabs: 401 Unauthorized — check ELEVENLABS_API_KEY");
    const s = tts.openStream(new AbortController().signal);
    s.write("Hello.");
    s.end();
    const err = await collect(s).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ElevenLabsTtsError);
    expect((err as ElevenLabsTtsError).message).toMatch(/^ElevenLabs: 401 Unauthorized — check ELEVENLABS_API_KEY/);
    expect((err as ElevenLabsTtsError).status).toBe(401);
    expect((err as ElevenLabsTtsError).kind).toBe("auth");
    expect(mock.httpRequests).toHaveLength(0);
  });

  it("ready() does not fail when the server cannot be reached", async () => {
    const url = mock.url;
    await mock.close();
    const tts = new ElevenLabsTts({ apiKey: "k", url, connectTimeoutMs: 2000, wsRetryBackoffMs: 0 });
    providers.push(tts);
    await expect(tts.ready()).resolves.toBeUndefined();
    const err = await collect(tts.synthesize("Hello.", new AbortController().signal)).catch((e: Error) => e);
    expect(String(err)).toMatch(/ElevenLabs: cannot reach 127\.0\.0\.1:\d+ \(ECONNREFUSED\)/);
    mock = await ElevenLabsMock.start(); // for afterEach
  });

  it("the socket cannot open (503): the utterance is spoken over HTTP streaming via the SDK", async () => {
    mock.failNextConnect(503);
    const tts = provider({ optimizeStreamingLatency: 3, voiceId: "v1" });
    const s = tts.openStream(new AbortController().signal);
    s.write("Sorry about the wait.");
    s.write("Your table is ready.");
    s.end();
    const got = await collect(s);

    expect(mock.refusedConnects).toEqual([503]);
    expect(got.audio).toEqual(audioOf("Sorry about the wait.", "Your table is ready."));
    expect(got.words).toEqual(expectedWords("Sorry about the wait. Your table is ready."));
    const req = mock.httpRequests[0]!;
    expect(req.path).toBe("/v1/text-to-speech/v1/stream/with-timestamps");
    expect(req.query).toEqual({ output_format: "ulaw_8000", optimize_streaming_latency: "3" });
    expect(req.headers["xi-api-key"]).toBe(mock.apiKey);
    expect(req.body).toMatchObject({ model_id: "eleven_flash_v2_5", voice_settings: { stability: 0.5, similarity_boost: 0.75, speed: 1 } });
    // Text written before the fallback started goes in one request; later text in the next, with previous_text.
    const texts = mock.httpRequests.map((r) => r.body?.text).join(" ");
    expect(texts).toBe("Sorry about the wait. Your table is ready.");
  });

  it("after the socket fails to open, new utterances use HTTP during the back-off", async () => {
    mock.failNextConnect(503);
    const tts = provider({ wsRetryBackoffMs: 60_000 });
    await collect(tts.synthesize("First.", new AbortController().signal));
    await collect(tts.synthesize("Second.", new AbortController().signal));
    expect(mock.refusedConnects).toEqual([503]);
    expect(mock.connections).toHaveLength(0);
    expect(mock.httpRequests.map((r) => r.body?.text)).toEqual(["First.", "Second."]);
  });

  it("a socket dropped mid-utterance: HTTP finishes the rest, with no word lost or repeated", async () => {
    const tts = provider();
    const s = tts.openStream(new AbortController().signal, { callId: "CAdrop" });
    const it = s[Symbol.asyncIterator]();
    const chunks: TtsChunk[] = [];
    const first = "Your order has shipped.";
    s.write(first);
    // Read until the first clause's audio is all here.
    while (Buffer.concat(chunks.map((c) => c.mulaw)).length < mock.audioFor(first).length) chunks.push((await it.next()).value!);
    // The server drops the socket as soon as the next text arrives (nothing of it is voiced).
    mock.dropSocketAfterMessages(mock.connections[0]!.messages.length + 1);
    const second = "It should arrive on Friday.";
    const third = "Anything else?";
    s.write(second);
    s.write(third);
    s.end();
    for (;;) {
      const r = await it.next();
      if (r.done) break;
      chunks.push(r.value);
    }
    const got = summarize(chunks);
    expect(mock.connections[0]!.closed).toBe(true);
    expect(mock.httpRequests.length).toBeGreaterThanOrEqual(1);
    expect(mock.httpRequests[0]!.body).toMatchObject({ previous_text: first });
    expect(mock.httpRequests.map((r) => r.body?.text).join(" ")).toBe(`${second} ${third}`);
    expect(got.audio).toEqual(audioOf(first, second, third));
    expect(got.words).toEqual(expectedWords(`${first} ${second} ${third}`));
  });

  it("a socket dropped in the middle of a word: HTTP starts again at that word; each word reported once", async () => {
    await startMock({ bytesPerChunk: 200 }); // 25 ms chunks, 60 ms words: chunks end mid-word
    const tts = provider();
    const s = tts.openStream(new AbortController().signal);
    const it = s[Symbol.asyncIterator]();
    const first = "Alpha bravo charlie delta echo foxtrot golf hotel india juliet.";
    const second = "Kilo lima.";
    s.write(first);
    const chunks: TtsChunk[] = [(await it.next()).value!, (await it.next()).value!, (await it.next()).value!];
    mock.dropSocketAfterMessages(mock.connections[0]!.messages.length + 1);
    s.write(second);
    s.end();
    for (let r = await it.next(); !r.done; r = await it.next()) chunks.push(r.value);
    const got = summarize(chunks);

    const all = `${first} ${second}`.split(" ");
    const bytesPerWord = mock.msPerWord * 8;
    const httpBytes = mock.httpRequests.reduce((n, r) => n + r.audio.length, 0);
    const wsBytes = got.audio.length - httpBytes;
    expect(wsBytes).toBeGreaterThanOrEqual(600);
    expect(wsBytes).toBeLessThan(mock.audioFor(first).length);
    const resume = Math.floor(wsBytes / bytesPerWord); // the first word not completely received
    // HTTP speaks from that word on (the cut word again, whole); nothing completely heard is repeated.
    expect(mock.httpRequests.map((r) => r.body?.text).join(" ")).toBe(all.slice(resume).join(" "));
    expect(got.audio).toEqual(Buffer.concat([audioOf(...all).subarray(0, wsBytes), audioOf(...all.slice(resume))]));
    // Every word once, in order; words after the cut are timed on the HTTP audio.
    expect(got.words.map((w) => w.text)).toEqual(all);
    got.words.forEach((w, k) => expect(w.startMs).toBe(k <= resume ? k * mock.msPerWord : wsBytes / 8 + (k - resume) * mock.msPerWord));
  });

  it("a socket dropped before any audio: HTTP speaks the whole utterance", async () => {
    const tts = provider({ preconnect: true });
    await tts.ready();
    mock.dropSocketAfterMessages(2); // init, then the text: dropped
    const got = await collect(tts.synthesize("Hello from the fallback.", new AbortController().signal));
    expect(got.audio).toEqual(audioOf("Hello from the fallback."));
    expect(got.words).toEqual(expectedWords("Hello from the fallback."));
    // The next utterance opens a fresh socket.
    const again = await collect(tts.synthesize("Back on the socket.", new AbortController().signal));
    expect(again.audio).toEqual(audioOf("Back on the socket."));
    expect(mock.connections).toHaveLength(2);
    expect(mock.httpRequests).toHaveLength(1);
  });

  it("HTTP: the last JSON line counts even without a newline after it", async () => {
    await startMock({ httpNoFinalNewline: true });
    mock.failNextConnect(502);
    const tts = provider();
    const text = "One two three four five.";
    const got = await collect(tts.synthesize(text, new AbortController().signal));
    expect(got.audio).toEqual(audioOf(text));
    expect(got.words).toEqual(expectedWords(text));
  });

  it("HTTP timestamps relative to each chunk are offset like the socket's", async () => {
    await startMock({ httpAlignment: "relative", bytesPerChunk: 300 });
    mock.failNextConnect(500);
    const tts = provider();
    const text = "One two three four five six seven eight nine ten eleven.";
    const got = await collect(tts.synthesize(text, new AbortController().signal));
    expect(got.words).toEqual(expectedWords(text));
  });

  it("garbage from the server is ignored", async () => {
    const tts = provider();
    mock.sendGarbage();
    const text = "Still perfectly fine.";
    const got = await collect(tts.synthesize(text, new AbortController().signal));
    expect(got.audio).toEqual(audioOf(text));
    expect(got.words).toEqual(expectedWords(text));
    expect(mock.connections).toHaveLength(1);
  });

  it("a stalled server: abort still works at once", async () => {
    const tts = provider();
    mock.stallContexts();
    const ac = new AbortController();
    const s = tts.openStream(ac.signal);
    s.write("Nothing will come back.");
    const it = s[Symbol.asyncIterator]();
    const pending = it.next();
    await vi.waitFor(() => expect(mock.contextIds).toHaveLength(1));
    ac.abort();
    expect(await pending).toEqual({ value: undefined, done: true });
    const id = idOf(s);
    await vi.waitFor(() => expect(mock.contextMessages(id).at(-1)).toEqual({ context_id: id, close_context: true }));
  });

  it("a stalled server: the stream throws a clear error; the socket and other utterances carry on", async () => {
    const tts = provider({ stallTimeoutMs: 300, probeTimeoutMs: 1000 });
    const other = tts.openStream(new AbortController().signal);
    mock.stallContexts();
    const s = tts.openStream(new AbortController().signal);
    s.write("Hello?");
    s.end();
    await expect(collect(s)).rejects.toThrow(/ElevenLabs: no end of audio for 300 ms after text was sent — the server stalled/);
    mock.stallContexts(false);
    other.write("I am still here.");
    other.end();
    expect((await collect(other)).audio).toEqual(audioOf("I am still here."));
    expect(mock.connections).toHaveLength(1);
    expect(mock.connections[0]!.closed).toBe(false);
    expect(mock.httpRequests).toHaveLength(0);
  });

  it("HTTP fallback errors are clear: 401, 429", async () => {
    for (const [status, message] of [
      [401, "ElevenLabs: 401 Unauthorized — check ELEVENLABS_API_KEY"],
      [429, "ElevenLabs: 429 Too Many Requests — rate or concurrency limit reached"],
    ] as const) {
      mock.failNextConnect(503);
      mock.httpStatus(status);
      const tts = provider();
      const err = await collect(tts.synthesize("Hello.", new AbortController().signal)).catch((e: ElevenLabsTtsError) => e);
      expect(err).toBeInstanceOf(ElevenLabsTtsError);
      expect((err as ElevenLabsTtsError).message).toContain(message);
      expect((err as ElevenLabsTtsError).status).toBe(status);
    }
  });

  it("a stalled HTTP fallback ends with a clear error", async () => {
    mock.failNextConnect(503);
    mock.stallHttp();
    const tts = provider({ stallTimeoutMs: 300 });
    await expect(collect(tts.synthesize("Hello.", new AbortController().signal))).rejects.toThrow(
      /ElevenLabs: no audio for 300 ms over HTTP — the server stalled/,
    );
  });

  it("close() ends live utterances with an error and later ones at once", async () => {
    const tts = provider();
    mock.stallContexts();
    const s = tts.openStream(new AbortController().signal);
    s.write("Hello.");
    const p = collect(s);
    await vi.waitFor(() => expect(mock.contextIds).toHaveLength(1));
    await tts.close();
    await expect(p).rejects.toThrow(/ElevenLabs TTS closed/);
    await expect(collect(tts.synthesize("x", new AbortController().signal))).rejects.toThrow(/closed/);
  });
});

describe("ElevenLabs alignment -> words", () => {
  const al = (text: string, t0: number, step = 10) => ({
    chars: [...text],
    startMs: [...text].map((_, i) => t0 + i * step),
    durMs: [...text].map(() => step),
  });

  it("joins characters into whole written words, across chunk boundaries", () => {
    const w = new WordTracker();
    w.add("Hello there, world. ");
    expect(w.align(al("Hello th", 0), 0)).toEqual([
      { text: "Hello", startMs: 0 },
      { text: "there,", startMs: 60 },
    ]);
    expect(w.completeBefore(80)).toBe(1); // "there," is cut: its audio is not all here
    expect(w.align(al("ere, world. ", 0), 80)).toEqual([{ text: "world.", startMs: 80 + 50 }]);
    expect(w.completeBefore(190)).toBe(3);
    expect(w.completeBefore(185)).toBe(2); // "world." ends at 190 ms: not all received at 185
  });

  it("tolerates a missing space between flushes and estimates words the alignment never covered", () => {
    const w = new WordTracker();
    w.add("One two. ");
    w.add("Three four five. ");
    expect(w.align(al("One two.Three", 0), 0).map((x) => x.text)).toEqual(["One", "two.", "Three"]);
    const est = w.estimate(w.count, 0, 1000);
    expect(est.map((x) => x.text)).toEqual(["four", "five."]);
    expect(est[0]!.startMs).toBeGreaterThanOrEqual(130);
    expect(est[1]!.startMs).toBeGreaterThan(est[0]!.startMs);
    expect(est[1]!.startMs).toBeLessThan(1000);
  });
});
