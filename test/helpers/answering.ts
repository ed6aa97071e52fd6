import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { MULAW_TO_PCM16 } from "../../src/audio/mulaw.ts";
import { clipMulaw } from "./audio.ts";
import { speechBounds } from "./twilio-client.ts";

/**
 * What an outbound call meets when it is answered: a person's short "hello", a voicemail greeting that ends in a beep,
 * a fax machine's calling tone. Speech is the shared recordings; tones are synthesized by sox (Debian's `sox`, which
 * .ci/run installs), as 8 kHz mu-law.
 */

/** `sox -n` synthesis straight to raw 8 kHz mu-law, e.g. `["synth", "0.5", "sine", "1000", "vol", "0.5"]`. */
export function soxMulaw(effects: string[]): Uint8Array {
  const dir = mkdtempSync(path.join(tmpdir(), "parley-sox-"));
  try {
    const out = path.join(dir, "tone.ul");
    execFileSync("sox", ["-n", "-r", "8000", "-c", "1", "-e", "u-law", "-t", "ul", out, ...effects], { stdio: ["ignore", "ignore", "pipe"] });
    return new Uint8Array(readFileSync(out));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const silenceMulaw = (ms: number): Uint8Array => new Uint8Array(Math.round(ms * 8)).fill(0xff);

export function concatMulaw(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A voicemail beep: a sine of `hz` for `ms`, at half scale (about -9 dBFS). */
export const beepMulaw = (hz = 1000, ms = 500): Uint8Array => soxMulaw(["synth", String(ms / 1000), "sine", String(hz), "vol", "0.5"]);

/** A fax machine's calling tone (CNG): 1100 Hz for 0.5 s, then 3 s of silence, `cycles` times. */
export const faxCngMulaw = (cycles = 2): Uint8Array => {
  const tone = soxMulaw(["synth", "0.5", "sine", "1100", "vol", "0.5"]);
  return concatMulaw(...Array.from({ length: cycles }, () => concatMulaw(tone, silenceMulaw(3000))));
};

export interface AnsweringAudio {
  /** What the callee's side sends, from the moment the stream starts. */
  mulaw: Uint8Array;
  /** Where the speech (for a person) or the beep (for a machine) ends, in ms from the start. */
  cueEndMs: number;
}

/** A machine: the greeting's speech (long, as voicemail greetings are), a short pause, the beep, then silence. */
export async function voicemailGreeting(speech: string[] = ["austen-0880"], beepHz = 1000, tailMs = 8000): Promise<AnsweringAudio> {
  const clips = await Promise.all(speech.map((n) => clipMulaw(n)));
  const lead = silenceMulaw(300);
  const speechPart = concatMulaw(...clips);
  const pause = silenceMulaw(400);
  const beep = beepMulaw(beepHz, 500);
  const mulaw = concatMulaw(lead, speechPart, pause, beep, silenceMulaw(tailMs));
  return { mulaw, cueEndMs: (lead.length + speechPart.length + pause.length + beep.length) / 8 };
}

/** A person: a short greeting (one short recording), then silence while they listen. */
export async function personAnswers(clip = "whats-the-weather-like", tailMs = 8000): Promise<AnsweringAudio> {
  const lead = silenceMulaw(300);
  const hello = await clipMulaw(clip);
  // The cue is where their words end (by energy), not where the recording does.
  const { endMs } = speechBounds(hello, (b) => MULAW_TO_PCM16[b]!);
  return { mulaw: concatMulaw(lead, hello, silenceMulaw(tailMs)), cueEndMs: lead.length / 8 + endMs };
}

/** The first `ms` of speech in a recording (from where its energy first rises), faded out: a short "hello"-length answer. */
export async function speechFragment(name: string, ms: number, tailMs = 8000): Promise<AnsweringAudio> {
  const mu = await clipMulaw(name);
  const { encodeMulaw } = await import("../../src/audio/mulaw.ts");
  let onset = 0;
  for (let i = 0; i + 160 <= mu.length; i += 160) {
    let e = 0;
    for (let j = i; j < i + 160; j++) e += Math.abs(MULAW_TO_PCM16[mu[j]!]!);
    if (e / 160 > 500) {
      onset = Math.max(0, i - 800);
      break;
    }
  }
  const n = Math.round(ms * 8);
  const pcm = new Int16Array(n);
  for (let i = 0; i < n; i++) {
    const fade = Math.min(1, (n - i) / 160); // 20 ms fade-out: a cut without a click
    pcm[i] = Math.round(MULAW_TO_PCM16[mu[onset + i] ?? 0xff]! * fade);
  }
  const lead = silenceMulaw(300);
  return { mulaw: concatMulaw(lead, encodeMulaw(pcm), silenceMulaw(tailMs)), cueEndMs: (lead.length + n) / 8 };
}

/** The answers the screening tests and bench use, each with what it is. */
export async function answeringSet(): Promise<{ name: string; truth: "human" | "machine" | "fax"; audio: AnsweringAudio; beep: boolean }[]> {
  return [
    { name: "person: what's the weather like", truth: "human", audio: await personAnswers("whats-the-weather-like"), beep: false },
    { name: "person: jfk, 0.7 s", truth: "human", audio: await speechFragment("jfk", 700), beep: false },
    { name: "person: digits, 0.6 s", truth: "human", audio: await speechFragment("vosk-digits", 600), beep: false },
    { name: "person: harvard, 0.8 s", truth: "human", audio: await speechFragment("harvard-osr-0034-8k", 800), beep: false },
    { name: "person: austen, 0.9 s", truth: "human", audio: await speechFragment("austen-0870", 900), beep: false },
    { name: "machine: austen-0880 + 1000 Hz beep", truth: "machine", audio: await voicemailGreeting(["austen-0880"], 1000), beep: true },
    { name: "machine: austen-0870 + 850 Hz beep", truth: "machine", audio: await voicemailGreeting(["austen-0870"], 850), beep: true },
    { name: "machine: jfk + 1400 Hz beep", truth: "machine", audio: await voicemailGreeting(["jfk"], 1400), beep: true },
    { name: "machine: new home + 440 Hz beep", truth: "machine", audio: await voicemailGreeting(["new-home-in-the-stars"], 440), beep: true },
    { name: "machine: weather + austen-0890 + 2000 Hz beep", truth: "machine", audio: await voicemailGreeting(["whats-the-weather-like", "austen-0890"], 2000), beep: true },
    { name: "fax: calling tone", truth: "fax", audio: { mulaw: faxCngMulaw(3), cueEndMs: 500 }, beep: false },
  ];
}
