import type { Worker } from "node:worker_threads";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeMulaw } from "../src/audio/mulaw.ts";
import { EspeakTts } from "../src/providers/tts/espeak.ts";
import type { TtsChunk } from "../src/providers/types.ts";

const SENTENCE = "Hello there, how are you today?";
const LONG = "The quick brown fox jumps over the lazy dog. ".repeat(20).trim();

async function collect(tts: EspeakTts, text: string, signal = new AbortController().signal): Promise<TtsChunk[]> {
  const chunks: TtsChunk[] = [];
  for await (const chunk of tts.synthesize(text, signal)) chunks.push(chunk);
  return chunks;
}

function pcmOf(chunks: TtsChunk[]): Int16Array {
  const bytes = new Uint8Array(chunks.reduce((n, c) => n + c.mulaw.length, 0));
  let off = 0;
  for (const c of chunks) {
    bytes.set(c.mulaw, off);
    off += c.mulaw.length;
  }
  return decodeMulaw(bytes);
}

function rms(pcm: Int16Array): number {
  let s = 0;
  for (const v of pcm) s += v * v;
  return Math.sqrt(s / pcm.length);
}

/** The provider's current worker (internal), to observe what it posts or to kill it. */
function workerOf(tts: EspeakTts): Worker {
  return (tts as unknown as { running: { worker: Worker } }).running.worker;
}

/** Count the chunk messages the worker posts, per request id. */
function countChunks(worker: Worker): Map<number, number> {
  const counts = new Map<number, number>();
  worker.on("message", (msg: { type: string; id: number }) => {
    if (msg.type === "chunk") counts.set(msg.id, (counts.get(msg.id) ?? 0) + 1);
  });
  return counts;
}

describe("EspeakTts", () => {
  const tts = new EspeakTts();
  beforeAll(() => tts.ready());
  afterAll(() => tts.close());

  it("streams non-silent 8 kHz mu-law speech of plausible duration, in several chunks", async () => {
    const chunks = await collect(tts, SENTENCE);
    const pcm = pcmOf(chunks);
    const seconds = pcm.length / 8000;
    expect(seconds).toBeGreaterThan(1.2); // at 175 wpm, six words take about 1.7 s
    expect(seconds).toBeLessThan(2.5);
    expect(rms(pcm)).toBeGreaterThan(1000);
    expect(chunks.length).toBeGreaterThan(5); // streamed as produced, not delivered at the end
  });

  it("times every word, in order, in the chunk where its audio starts", async () => {
    const chunks = await collect(tts, SENTENCE);
    const words = chunks.flatMap((c) => c.words);
    expect(words.map((w) => w.text)).toEqual(SENTENCE.split(" "));
    expect(words[0]!.startMs).toBeLessThan(50);
    for (let i = 1; i < words.length; i++) expect(words[i]!.startMs).toBeGreaterThan(words[i - 1]!.startMs);

    let startMs = 0;
    for (const chunk of chunks) {
      const endMs = startMs + chunk.mulaw.length / 8;
      for (const w of chunk.words) {
        expect(w.startMs).toBeGreaterThanOrEqual(startMs);
        expect(w.startMs).toBeLessThan(endMs);
      }
      startMs = endMs;
    }
  });

  it("reports each source word once, even when eSpeak splits it (numbers, emoji, CJK)", async () => {
    const text = "Pay 1,234 dollars 😀 on 3/4/2024 中文 ok.";
    const words = (await collect(tts, text)).flatMap((c) => c.words);
    expect(words.map((w) => w.text)).toEqual(text.split(" "));
    for (let i = 1; i < words.length; i++) expect(words[i]!.startMs).toBeGreaterThan(words[i - 1]!.startMs);
  });

  it("stops synthesis mid-sentence on abort and yields nothing afterwards", async () => {
    const counts = countChunks(workerOf(tts));
    const ac = new AbortController();
    let afterAbort = 0;
    let received = 0;
    for await (const chunk of tts.synthesize(LONG, ac.signal)) {
      expect(chunk.mulaw.length).toBeGreaterThan(0);
      if (ac.signal.aborted) afterAbort++;
      if (++received === 2) ac.abort();
    }
    expect(afterAbort).toBe(0);
    expect(received).toBe(2);

    // The worker serves requests in order, so once the next one completes the aborted one has posted all it ever will.
    await collect(tts, "Next.");
    const posted = [...counts.values()][0]!;
    expect(posted).toBeLessThan(50); // the whole text is ~580 chunks
  });

  it("ends promptly when aborted while the consumer waits for the next chunk", async () => {
    const ac = new AbortController();
    const it = tts.synthesize(LONG, ac.signal)[Symbol.asyncIterator]();
    expect((await it.next()).done).toBe(false);
    const pending = it.next();
    ac.abort();
    expect((await pending).done).toBe(true);
    expect((await it.next()).done).toBe(true);
  });

  it("yields nothing for an already aborted signal", async () => {
    expect(await collect(tts, SENTENCE, AbortSignal.abort())).toEqual([]);
  });

  it("cancels the worker's synthesis when the consumer stops iterating", async () => {
    const counts = countChunks(workerOf(tts));
    for await (const chunk of tts.synthesize(LONG, new AbortController().signal)) {
      expect(chunk.mulaw.length).toBeGreaterThan(0);
      break;
    }
    await collect(tts, "Next.");
    expect([...counts.values()][0]!).toBeLessThan(50);
  });

  it("completes concurrent requests, each with its own words", async () => {
    const a = "First concurrent sentence here.";
    const b = "Second concurrent sentence, a bit longer than the first one.";
    const [ca, cb] = await Promise.all([collect(tts, a), collect(tts, b)]);
    expect(ca.flatMap((c) => c.words).map((w) => w.text)).toEqual(a.split(" "));
    expect(cb.flatMap((c) => c.words).map((w) => w.text)).toEqual(b.split(" "));
    expect(pcmOf(cb).length).toBeGreaterThan(pcmOf(ca).length);
  });

  it("fails only the request whose synthesis throws", async () => {
    const bad = collect(tts, undefined as unknown as string); // makes the worker throw for this request alone
    const [good, other] = await Promise.all([collect(tts, SENTENCE), collect(tts, "Still here."), expect(bad).rejects.toThrow(/eSpeak failed/)]);
    expect(good.flatMap((c) => c.words)).toHaveLength(6);
    expect(other.flatMap((c) => c.words).map((w) => w.text)).toEqual(["Still", "here."]);
  });

  it("rejects in-flight requests when the worker dies, then respawns on next use", async () => {
    const failed = (async () => {
      let killed = false;
      for await (const chunk of tts.synthesize(LONG, new AbortController().signal)) {
        expect(chunk.mulaw.length).toBeGreaterThan(0);
        if (!killed) void workerOf(tts).terminate();
        killed = true;
      }
    })();
    await expect(failed).rejects.toThrow(/worker stopped/);
    const pcm = pcmOf(await collect(tts, SENTENCE));
    expect(pcm.length / 8000).toBeGreaterThan(1.2);
  });
});

describe("EspeakTts options and lifecycle", () => {
  it("speaks faster at a higher rate", async () => {
    const slow = new EspeakTts({ rate: 140 });
    const fast = new EspeakTts({ rate: 280 });
    try {
      const [s, f] = await Promise.all([collect(slow, SENTENCE), collect(fast, SENTENCE)]);
      expect(pcmOf(f).length).toBeLessThan(pcmOf(s).length * 0.7);
    } finally {
      await Promise.all([slow.close(), fast.close()]);
    }
  });

  it("rejects ready() for an unknown voice", async () => {
    const tts = new EspeakTts({ voice: "xx-nonexistent" });
    await expect(tts.ready()).rejects.toThrow(/no voice "xx-nonexistent"/);
    await tts.close();
  });

  it("tells the user to install the package when it is missing", async () => {
    const tts = new EspeakTts({ module: "@echogarden/espeak-ng-emscripten-not-installed" });
    await expect(tts.ready()).rejects.toThrow(/npm install @echogarden\/espeak-ng-emscripten-not-installed.*another TTS provider/);
    await expect(collect(tts, SENTENCE)).rejects.toThrow(/npm install/);
    await tts.close();
  });

  it("close() ends the worker and fails what is in flight", async () => {
    const tts = new EspeakTts();
    await tts.ready();
    const worker = workerOf(tts);
    const exited = new Promise((resolve) => worker.once("exit", resolve));
    const inFlight = collect(tts, LONG);
    await tts.close();
    await exited;
    await expect(inFlight).rejects.toThrow(/closed/);
    await expect(tts.ready()).rejects.toThrow(/closed/);
  });
});
