import { encodeMulaw } from "./mulaw.ts";

/** DTMF (ITU-T Q.23) row and column frequencies per key. */
const KEYS: Record<string, [number, number]> = {
  "1": [697, 1209], "2": [697, 1336], "3": [697, 1477], A: [697, 1633],
  "4": [770, 1209], "5": [770, 1336], "6": [770, 1477], B: [770, 1633],
  "7": [852, 1209], "8": [852, 1336], "9": [852, 1477], C: [852, 1633],
  "*": [941, 1209], "0": [941, 1336], "#": [941, 1477], D: [941, 1633],
};

export const DTMF_DIGITS = /^[0-9*#A-D]+$/;

/**
 * Touch tones as 8 kHz mu-law, to play over the media stream (bidirectional streams cannot send DTMF events).
 * 100 ms per tone and 100 ms between tones: well inside Q.24's 40 ms minimums, and what IVRs reliably detect.
 */
export function dtmfMulaw(digits: string, toneMs = 100, gapMs = 100): Uint8Array {
  if (!DTMF_DIGITS.test(digits)) throw new Error(`not DTMF digits: ${JSON.stringify(digits)}`);
  const tone = (toneMs * 8) | 0;
  const gap = (gapMs * 8) | 0;
  const pcm = new Int16Array(digits.length * (tone + gap));
  // Each component about -7 dBm0, the usual level for generated DTMF.
  const amp = 0.2 * 32767;
  for (let d = 0; d < digits.length; d++) {
    const [lo, hi] = KEYS[digits[d]!]!;
    const off = d * (tone + gap);
    for (let i = 0; i < tone; i++) {
      const t = i / 8000;
      pcm[off + i] = Math.round(amp * (Math.sin(2 * Math.PI * lo * t) + Math.sin(2 * Math.PI * hi * t)));
    }
  }
  return encodeMulaw(pcm);
}
