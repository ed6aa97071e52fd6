import { readdirSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ToneDetector, type Tone } from "../src/audio/tone-detector.ts";
import { clipMulaw, SHARED_AUDIO } from "./helpers/audio.ts";
import { beepMulaw, concatMulaw, faxCngMulaw, silenceMulaw, soxMulaw } from "./helpers/answering.ts";

/** Feed in 160-byte frames, as a media stream brings them; every tone reported, and the one still going at the end. */
function tonesIn(mu: Uint8Array, det = new ToneDetector()): Tone[] {
  const out: Tone[] = [];
  for (let o = 0; o < mu.length; o += 160) {
    const t = det.push(mu.subarray(o, o + 160));
    if (t) out.push(t);
  }
  const last = det.flush();
  if (last) out.push(last);
  return out;
}

describe("tone detector", () => {
  it("finds voicemail beeps of any common pitch, with their frequency and exact place on the timeline", () => {
    for (const hz of [440, 850, 1000, 1400, 2000]) {
      const tones = tonesIn(concatMulaw(silenceMulaw(300), beepMulaw(hz, 500), silenceMulaw(300)));
      expect(tones, `${hz} Hz`).toHaveLength(1);
      expect(Math.abs(tones[0]!.hz - hz), `${hz} Hz`).toBeLessThanOrEqual(10);
      expect(tones[0]!.startSample).toBe(2400); // 300 ms in
      expect(tones[0]!.endSample).toBe(6400); // 500 ms long
    }
  });

  it("finds a beep under line noise, and a two-tone beep as two tones", () => {
    // Fresh noise each time (sox seeds it anew): a burst that spoils a block mid-beep must not split the beep in two.
    for (let i = 0; i < 20; i++) {
      const noisy = concatMulaw(soxMulaw(["synth", "0.6", "sine", "950", "synth", "0.6", "whitenoise", "mix", "vol", "0.4"]));
      const tones = tonesIn(noisy);
      expect(tones, `noisy beep ${i}`).toHaveLength(1);
      expect(Math.abs(tones[0]!.hz - 950)).toBeLessThanOrEqual(15);
      expect(tones[0]!.endSample - tones[0]!.startSample).toBeGreaterThanOrEqual(3200); // most of its 4,800 samples
    }
    const two = tonesIn(concatMulaw(beepMulaw(850, 300), beepMulaw(1400, 300)));
    expect(two.map((t) => Math.round(t.hz / 50) * 50)).toEqual([850, 1400]);
  });

  it("finds a fax machine's calling tone (1100 Hz, half a second, every 3.5 s)", () => {
    const tones = tonesIn(faxCngMulaw(2));
    expect(tones).toHaveLength(2);
    for (const t of tones) {
      expect(Math.abs(t.hz - 1100)).toBeLessThanOrEqual(10);
      expect(t.endSample - t.startSample).toBe(4000);
    }
  });

  it("never takes speech for a tone: no recording in ../shared/audio holds one", async () => {
    const names = readdirSync(SHARED_AUDIO).filter((f) => f.endsWith(".wav"));
    expect(names.length).toBeGreaterThanOrEqual(8);
    for (const f of names) expect(tonesIn(await clipMulaw(f.replace(/\.wav$/, ""))), f).toEqual([]);
  });

  it("a tone shorter than the minimum, or too quiet, is not one", () => {
    expect(tonesIn(beepMulaw(1000, 140))).toEqual([]);
    expect(tonesIn(soxMulaw(["synth", "0.5", "sine", "1000", "vol", "0.005"]))).toEqual([]); // about -49 dBFS
  });
});
