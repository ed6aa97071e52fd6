import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { clipMulaw } from "./audio.ts";

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
  return { mulaw: concatMulaw(lead, hello, silenceMulaw(tailMs)), cueEndMs: (lead.length + hello.length) / 8 };
}
