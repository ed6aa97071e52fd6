import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Worker } from "node:worker_threads";
import { SphinxStt } from "../src/providers/stt/sphinx.ts";
import { normalizeWords } from "../src/providers/stt/wer.ts";
import type { SttSession } from "../src/providers/types.ts";
import { CLIPS, clipPcm8kViaMulaw, pushInFrames, recognise } from "./helpers/audio.ts";

const COMMANDS = [
  "what's the weather like",
  "what's the weather like today",
  "what time is it",
  "call my office",
  "yes please",
  "no thanks",
  "talk to a person",
];
const JFK = CLIPS.find((c) => c.name === "jfk")!.transcript;
const WEATHER = "what's the weather like";

let weather: Int16Array;
let jfk: Int16Array;

beforeAll(async () => {
  weather = await clipPcm8kViaMulaw("whats-the-weather-like");
  jfk = await clipPcm8kViaMulaw("jfk");
});



describe("SphinxStt, phrase mode", () => {
  const stt = new SphinxStt({ mode: "phrases", phrases: [...COMMANDS, JFK] });
  beforeAll(() => stt.ready());
  afterAll(() => stt.close());

  it("recognises a phrase from 8 kHz mu-law speech", async () => {
    const session = stt.openSession({ callId: "a" });
    const t = await session.finish(); // nothing started: empty, no error
    expect(t.text).toBe("");
    const result = await (async () => {
      session.start();
      pushInFrames(session, weather);
      return session.finish();
    })();
    expect(result.text).toBe(WEATHER);
    expect(result.confidence).toBeGreaterThan(0);
    expect(result.confidence).toBeLessThanOrEqual(1);
    session.close();
  });

  it("decodes while audio arrives: partial hypotheses come before finish()", async () => {
    const partials: string[] = [];
    let heard!: () => void;
    const heardLike = new Promise<void>((resolve) => (heard = resolve));
    const session = stt.openSession({
      callId: "p",
      onPartial: (text) => {
        partials.push(text);
        if (text.endsWith("like")) heard();
      },
    });
    session.start();
    pushInFrames(session, weather);
    await heardLike; // never resolves (test times out) if decoding waits for finish()
    expect((await session.finish()).text).toBe(WEATHER);
    expect(partials[0]!.length).toBeGreaterThan(0);
    session.close();
  });

  it("cancel drops the utterance, and the next one is unaffected by it", async () => {
    const session = stt.openSession({ callId: "c" });
    session.start();
    pushInFrames(session, jfk, 0, jfk.length / 2);
    session.cancel();
    expect(await recognise(session, weather)).toBe(WEATHER);
    // start() without finish() also abandons the previous utterance
    session.start();
    pushInFrames(session, jfk, 0, jfk.length / 2);
    expect(await recognise(session, weather)).toBe(WEATHER);
    session.close();
  });

  it("runs two sessions at once, with audio interleaved", async () => {
    const a = stt.openSession({ callId: "a" });
    const b = stt.openSession({ callId: "b" });
    a.start();
    b.start();
    const bufA = new Int16Array(160);
    const bufB = new Int16Array(160);
    for (let i = 0; i < jfk.length; i += 160) {
      bufA.set(jfk.subarray(i, i + 160));
      a.push(bufA.subarray(0, Math.min(160, jfk.length - i)));
      if (i < weather.length) {
        bufB.set(weather.subarray(i, i + 160));
        b.push(bufB.subarray(0, Math.min(160, weather.length - i)));
      }
    }
    const [ta, tb] = await Promise.all([a.finish(), b.finish()]);
    expect(normalizeWords(ta.text)).toEqual(normalizeWords(JFK));
    expect(tb.text).toBe(WEATHER);
    a.close();
    b.close();
  });

  it("ignores audio after close", async () => {
    const session = stt.openSession({ callId: "z" });
    session.start();
    pushInFrames(session, weather);
    session.close();
    expect(() => pushInFrames(session, weather)).not.toThrow();
    session.start();
    pushInFrames(session, weather);
    expect(await session.finish()).toEqual({ text: "" });
  });
});

describe("SphinxStt, pool and failures", () => {
  it("queues utterances when every decoder is busy", async () => {
    const stt = new SphinxStt({ mode: "phrases", phrases: [...COMMANDS, JFK], maxDecoders: 1 });
    try {
      await stt.ready(); // so the first utterance holds the only decoder by the time the others queue
      // A cancelled utterance must give its decoder back, or everything after it waits forever.
      const cancelled = stt.openSession({ callId: "gone" });
      cancelled.start();
      pushInFrames(cancelled, jfk, 0, jfk.length / 2);
      const sessions = [0, 1, 2].map((i) => stt.openSession({ callId: `q${i}` }));
      const clips = [weather, jfk, weather];
      for (const s of sessions) s.start();
      sessions.forEach((s, i) => pushInFrames(s, clips[i]!));
      cancelled.cancel();
      const texts = (await Promise.all(sessions.map((s) => s.finish()))).map((t) => t.text);
      expect(texts).toEqual([WEATHER, normalizeWords(JFK).join(" "), WEATHER]);
    } finally {
      await stt.close();
    }
  });

  it("rejects work in progress when the worker dies, and restarts it on next use", async () => {
    const stt = new SphinxStt({ mode: "phrases", phrases: COMMANDS });
    try {
      await stt.ready();
      const session = stt.openSession({ callId: "crash" });
      session.start();
      pushInFrames(session, weather);
      const lost = session.finish();
      await (stt as unknown as { worker: Worker }).worker.terminate(); // as if it had crashed
      await expect(lost).rejects.toThrow(/sphinx: recognition worker exited/);
      expect(await recognise(session, weather)).toBe(WEATHER);
    } finally {
      await stt.close();
    }
  });

  it("names the words of a phrase list that are not in the dictionary", async () => {
    const stt = new SphinxStt({ mode: "phrases", phrases: ["call zorblax now", "yes", "frobnicate the widget"] });
    await expect(stt.ready()).rejects.toThrow(/not in the dictionary: zorblax, frobnicate/);
    // Sessions on a broken provider fail their utterances, they do not throw or hang.
    const session = stt.openSession({ callId: "x" });
    session.start();
    pushInFrames(session, weather);
    await expect(session.finish()).rejects.toThrow(/zorblax/);
    await stt.close();
  });

  it("accepts custom words with pronunciations", async () => {
    // Without its pronunciation the word is refused (see above); with it, the phrase list loads and still recognises.
    const stt = new SphinxStt({ mode: "phrases", phrases: ["call zorblax", WEATHER], words: [["zorblax", "Z AO R B L AE K S"]] });
    await expect(stt.ready()).resolves.toBeUndefined();
    expect(await recognise(stt.openSession({ callId: "w" }), weather)).toBe(WEATHER);
    await stt.close();
  });

  it("explains a grammar that does not parse or has unknown words", async () => {
    const syntax = new SphinxStt({ mode: "grammar", grammar: "#JSGF V1.0;\ngrammar g;\npublic <cmd> = ( call | ring mom ;" });
    await expect(syntax.ready()).rejects.toThrow(/sphinx: invalid grammar: .*syntax error/);
    await syntax.close();

    const missingRule = new SphinxStt({ mode: "grammar", grammar: "#JSGF V1.0;\ngrammar g;\npublic <cmd> = call <who>;" });
    await expect(missingRule.ready()).rejects.toThrow(/invalid grammar: .*Undefined rule.*who/);
    await missingRule.close();

    const unknown = new SphinxStt({ mode: "grammar", grammar: "#JSGF V1.0;\ngrammar g;\npublic <cmd> = call (mom | qwxzt);" });
    await expect(unknown.ready()).rejects.toThrow(/grammar are not in the dictionary: qwxzt \(/);
    await unknown.close();
  });

  it("recognises with a JSGF grammar", async () => {
    const grammar = `#JSGF V1.0;
grammar weather;
public <ask> = what's the <topic> like [today] | what time is it;
<topic> = weather | traffic;`;
    const stt = new SphinxStt({ mode: "grammar", grammar });
    try {
      expect(await recognise(stt.openSession({ callId: "g" }), weather)).toBe(WEATHER);
    } finally {
      await stt.close();
    }
  });
});

describe("SphinxStt, open vocabulary", () => {
  it("transcribes free speech, poorly but with some right words", async () => {
    const stt = new SphinxStt({ mode: "open" });
    try {
      await stt.ready();
      expect(stt.vocabularySize).toBe(2000);
      const text = await recognise(stt.openSession({ callId: "o" }), weather);
      const heard = new Set(normalizeWords(text));
      const right = normalizeWords(WEATHER).filter((w) => heard.has(w));
      expect(text.length).toBeGreaterThan(0);
      expect(right.length).toBeGreaterThanOrEqual(2);
    } finally {
      await stt.close();
    }
  });
});
