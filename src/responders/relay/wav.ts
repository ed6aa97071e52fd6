/**
 * The WAV files a relay app may `play`: mono or stereo, 16-bit PCM or 8-bit mu-law, at any rate. Anything else is
 * refused with a reason the app can act on.
 */

export type WavAudio =
  | { encoding: "pcm16"; sampleRate: number; /** mono (stereo is averaged) */ samples: Int16Array }
  | { encoding: "mulaw"; sampleRate: number; /** mono mu-law bytes (stereo keeps the left channel) */ bytes: Uint8Array };

const FORMAT_PCM = 1;
const FORMAT_MULAW = 7;
const FORMAT_EXTENSIBLE = 0xfffe;

export function isWav(buf: Uint8Array): boolean {
  return buf.length >= 12 && ascii(buf, 0, 4) === "RIFF" && ascii(buf, 8, 12) === "WAVE";
}

/** Parse a WAV file; throws an Error whose message says what is unsupported. */
export function parseWav(buf: Uint8Array): WavAudio {
  if (!isWav(buf)) throw new Error("not a WAV file (no RIFF/WAVE header)");
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let format = -1;
  let channels = 0;
  let sampleRate = 0;
  let bits = 0;
  let off = 12;
  while (off + 8 <= buf.length) {
    const id = ascii(buf, off, off + 4);
    const size = view.getUint32(off + 4, true);
    const body = off + 8;
    if (id === "fmt ") {
      if (size < 16 || body + 16 > buf.length) throw new Error("WAV fmt chunk is truncated");
      format = view.getUint16(body, true);
      channels = view.getUint16(body + 2, true);
      sampleRate = view.getUint32(body + 4, true);
      bits = view.getUint16(body + 14, true);
      // WAVE_FORMAT_EXTENSIBLE: the real format is the first two bytes of the sub-format GUID.
      if (format === FORMAT_EXTENSIBLE && size >= 40 && body + 26 <= buf.length) format = view.getUint16(body + 24, true);
    } else if (id === "data") {
      if (format < 0) throw new Error("WAV data chunk comes before its fmt chunk");
      // A streamed WAV may carry a placeholder size (0 or 0xFFFFFFFF): take what is there.
      const end = size === 0 || body + size > buf.length ? buf.length : body + size;
      return decode(buf.subarray(body, end), format, channels, sampleRate, bits);
    }
    off = body + size + (size & 1);
  }
  throw new Error("WAV file has no data chunk");
}

function decode(data: Uint8Array, format: number, channels: number, sampleRate: number, bits: number): WavAudio {
  if (channels < 1 || channels > 2) throw new Error(`WAV with ${channels} channels is not supported (mono or stereo only)`);
  if (sampleRate < 4000 || sampleRate > 192_000) throw new Error(`WAV sample rate ${sampleRate} Hz is not supported`);
  if (format === FORMAT_MULAW && bits === 8) {
    if (channels === 1) return { encoding: "mulaw", sampleRate, bytes: data };
    const bytes = new Uint8Array(data.length >> 1);
    for (let i = 0; i < bytes.length; i++) bytes[i] = data[i * 2]!;
    return { encoding: "mulaw", sampleRate, bytes };
  }
  if (format === FORMAT_PCM && bits === 16) {
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const frames = Math.floor(data.length / (2 * channels));
    const samples = new Int16Array(frames);
    for (let i = 0; i < frames; i++) {
      if (channels === 1) samples[i] = view.getInt16(i * 2, true);
      else samples[i] = (view.getInt16(i * 4, true) + view.getInt16(i * 4 + 2, true)) >> 1;
    }
    return { encoding: "pcm16", sampleRate, samples };
  }
  throw new Error(`WAV encoding (format ${format}, ${bits}-bit) is not supported: use 16-bit PCM or 8-bit mu-law`);
}

function ascii(buf: Uint8Array, start: number, end: number): string {
  return String.fromCharCode(...buf.subarray(start, end));
}
