import { MULAW_TO_PCM16 } from "../../src/audio/mulaw.ts";
import { clipMulaw } from "../../test/helpers/audio.ts";
import { FRAME, speechBounds } from "../../test/helpers/twilio-client.ts";

/**
 * The caller's script: real speech from ../shared/audio, in this order, round and round. Odd turns (1, 3, ...) are the
 * barge-ins, so they get the clips whose energy onset is clean: austen-0880 has a click 20 ms in, 240 ms before its
 * speech, which would add 240 ms to every barge-in time measured from `speechBounds`' onset.
 */
export const SCRIPT = ["whats-the-weather-like", "new-home-in-the-stars", "austen-0880", "austen-0890"];

/** One clip, pre-encoded once for every call: the base64 payload of each 160-byte frame (last one padded with silence). */
export interface ScriptClip {
  name: string;
  b64: string[];
  /** Speech onset / end within the clip (energy), ms from its first frame. */
  onsetMs: number;
  endMs: number;
}

export const SILENCE_BYTE = 0xff;
export const SILENCE_B64 = Buffer.alloc(FRAME, SILENCE_BYTE).toString("base64");

export async function loadScript(names: readonly string[] = SCRIPT): Promise<ScriptClip[]> {
  const out: ScriptClip[] = [];
  for (const name of names) {
    const mulaw = await clipMulaw(name);
    const frames = Math.ceil(mulaw.length / FRAME);
    const padded = Buffer.alloc(frames * FRAME, SILENCE_BYTE);
    padded.set(mulaw);
    const b64: string[] = [];
    for (let f = 0; f < frames; f++) b64.push(padded.toString("base64", f * FRAME, (f + 1) * FRAME));
    const { onsetMs, endMs } = speechBounds(padded, (b) => MULAW_TO_PCM16[b]!);
    out.push({ name, b64, onsetMs, endMs });
  }
  return out;
}
