import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AnsweredBy } from "../machines/call.types.ts";
import { AnswerScreen } from "../src/call/screening.ts";
import { SileroVadPool } from "../src/vad/silero-pool.ts";
import { answeringSet, concatMulaw, silenceMulaw, voicemailGreeting, type AnsweringAudio } from "./helpers/answering.ts";

interface Screened {
  answeredBy: AnsweredBy | null;
  cue: string;
  decidedMs: number;
  ready: { cue: string; atMs: number } | null;
}

let pool: SileroVadPool;
beforeAll(async () => {
  pool = await SileroVadPool.create({ maxQueueWindows: 4096 });
});
afterAll(() => pool.close());

/**
 * Screen an answer as a call does: 20 ms frames to the real Silero VAD and to the screen. Pushed faster than real time,
 * so frames reach the screen in step with the VAD: each frame once the window it ends in has its probability, as on
 * a live call where a window's decision comes right after its last frame.
 */
async function screen(audio: Uint8Array, feed?: (s: AnswerScreen) => void): Promise<Screened> {
  const out: Screened = { answeredBy: null, cue: "", decidedMs: -1, ready: null };
  const s = new AnswerScreen({
    decided: (answeredBy, cue, at) => Object.assign(out, { answeredBy, cue, decidedMs: at / 8 }),
    ready: (cue, at) => (out.ready = { cue, atMs: at / 8 }),
  });
  const windows = Math.floor(audio.length / 256);
  let seen = 0;
  let fed = 0; // bytes given to the screen's tone detector
  await new Promise<void>((resolve) => {
    const vad = pool.openStream((p, end) => {
      for (; fed + 160 <= end; fed += 160) s.audio(audio.subarray(fed, fed + 160));
      s.probability(p, end);
      if (++seen === windows) resolve();
    });
    for (let o = 0; o < audio.length; o += 160) vad.pushMulaw(audio.subarray(o, o + 160));
  });
  for (; fed < audio.length; fed += 160) s.audio(audio.subarray(fed, fed + 160));
  // Evidence from elsewhere (the carrier, the recogniser) arrives after the audio has had its say.
  feed?.(s);
  return out;
}

describe("screening who answered, on real speech and synthesized beeps", () => {
  it("classifies every person, machine and fax in the test set (the confusion table is all on the diagonal)", async () => {
    const set = await answeringSet();
    const table: Record<string, Record<string, number>> = {};
    for (const a of set) {
      const r = await screen(a.audio.mulaw);
      table[a.truth] ??= {};
      table[a.truth]![r.answeredBy ?? "none"] = (table[a.truth]![r.answeredBy ?? "none"] ?? 0) + 1;
      expect(r.answeredBy, `${a.name}: ${r.cue}`).toBe(a.truth);
      if (a.truth === "human") {
        // Decided from the hello's end: its end plus the short silence and a window or two of the VAD, well within the
        // 400 ms the greeting has.
        expect(r.decidedMs - a.audio.cueEndMs, a.name).toBeGreaterThan(0);
        expect(r.decidedMs - a.audio.cueEndMs, a.name).toBeLessThan(400);
      }
      if (a.beep) {
        // The message may start where the beep ends, to the 20 ms block.
        expect(r.ready?.cue, a.name).toMatch(/^beep/);
        expect(Math.abs(r.ready!.atMs - a.audio.cueEndMs), a.name).toBeLessThanOrEqual(20);
      }
    }
    expect(table).toEqual({ human: { human: 5 }, machine: { machine: 5 }, fax: { fax: 1 } });
  });

  it("a machine without a beep: its greeting is over after a silence, and the message may start", async () => {
    const vm = await voicemailGreeting(["austen-0880"]);
    const noBeep = concatMulaw(vm.mulaw.subarray(0, 300 * 8 + (vm.cueEndMs - 300 - 400 - 500) * 8), silenceMulaw(3000));
    const r = await screen(noBeep);
    expect(r.answeredBy).toBe("machine");
    expect(r.ready?.cue).toBe("silence after the greeting");
  });

  it("the carrier's detection decides what the audio has not, and its message-end starts the message", async () => {
    const silent = silenceMulaw(2000);
    const r = await screen(silent, (s) => {
      s.carrier("machine_start", 8000);
      s.carrier("machine_end_beep", 12000);
    });
    expect(r).toMatchObject({ answeredBy: "machine", cue: "carrier: machine_start", ready: { cue: "carrier: machine_end_beep", atMs: 1500 } });
    const person: AnsweringAudio = (await answeringSet())[0]!.audio;
    const h = await screen(person.mulaw, (s) => s.carrier("machine_start", 99_999));
    expect(h.answeredBy).toBe("human"); // the audio had decided first
  });

  it("a recorded greeting whose first phrase is short passes for a person at first, then is overturned when it goes on", async () => {
    const decisions: string[] = [];
    const s = new AnswerScreen({ decided: (a, cue) => decisions.push(`${a}: ${cue}`), ready: (cue) => decisions.push(`ready: ${cue}`) });
    // Synthetic probabilities, 32 ms windows: 0.8 s of speech, a 0.3 s pause, then 2 s more, then the beep's silence.
    const probs = [...Array(5).fill(0), ...Array(25).fill(0.95), ...Array(10).fill(0.02), ...Array(62).fill(0.95), ...Array(60).fill(0.02)];
    probs.forEach((p, i) => s.probability(p, (i + 1) * 256));
    expect(decisions[0]).toBe("human: short greeting");
    expect(decisions[1]).toBe("machine: greeting went on after a pause");
    expect(decisions[2]).toBe("ready: silence after the greeting");
    // A person who pauses and then answers in a few words stays a person.
    const person: string[] = [];
    const p = new AnswerScreen({ decided: (a, cue) => person.push(`${a}: ${cue}`), ready: () => person.push("ready") });
    [...Array(5).fill(0), ...Array(20).fill(0.95), ...Array(20).fill(0.02), ...Array(15).fill(0.95), ...Array(100).fill(0.02)].forEach((x, i) => p.probability(x, (i + 1) * 256));
    expect(person).toEqual(["human: short greeting"]);
  });

  it("a voicemail's words decide a machine when the speech alone could not", async () => {
    const r = await screen(silenceMulaw(500), (s) => s.transcript("Hi, I can't take your call, please leave a message after the tone", 4000));
    expect(r).toMatchObject({ answeredBy: "machine", cue: "voicemail words" });
    const p = await screen(silenceMulaw(500), (s) => s.transcript("hello who is this", 4000));
    expect(p.answeredBy).toBeNull();
  });
});
