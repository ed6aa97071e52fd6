import alawmulaw from "alawmulaw";

const { mulaw } = alawmulaw;

/** mu-law byte -> 16-bit sample, built once from the reference codec so the per-frame path is a table lookup. */
export const MULAW_TO_PCM16: Int16Array = (() => {
  const table = new Int16Array(256);
  for (let b = 0; b < 256; b++) table[b] = mulaw.decodeSample(b);
  return table;
})();

/** mu-law byte -> float sample in [-1, 1), the form the VAD and recogniser take. */
export const MULAW_TO_FLOAT: Float32Array = Float32Array.from(MULAW_TO_PCM16, (s) => s / 32768);

/** Digital silence in mu-law. */
export const MULAW_SILENCE = 0xff;

/** Decode mu-law into a caller-provided buffer (no allocation). Returns the number of samples written. */
export function decodeMulawInto(src: Uint8Array, dst: Int16Array, dstOffset = 0): number {
  const n = src.length;
  for (let i = 0; i < n; i++) dst[dstOffset + i] = MULAW_TO_PCM16[src[i]!]!;
  return n;
}

export function decodeMulaw(src: Uint8Array): Int16Array {
  const out = new Int16Array(src.length);
  decodeMulawInto(src, out);
  return out;
}

/** Encode 16-bit PCM to mu-law with the reference codec. */
export function encodeMulaw(pcm: Int16Array): Uint8Array {
  return mulaw.encode(pcm);
}

/** Encode float samples in [-1, 1] to mu-law, clamping. */
export function encodeMulawFloat(samples: Float32Array): Uint8Array {
  const out = new Uint8Array(samples.length);
  for (let i = 0; i < samples.length; i++) {
    const v = samples[i]!;
    const s = v >= 1 ? 32767 : v <= -1 ? -32768 : Math.round(v * 32767);
    out[i] = mulaw.encodeSample(s) & 0xff;
  }
  return out;
}
