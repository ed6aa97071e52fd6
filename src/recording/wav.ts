/**
 * The WAV container of a call recording: RIFF/WAVE, PCM 16-bit little-endian, 8 kHz, two channels (caller left, Parley
 * right), a 44-byte header with the data chunk last, so the file grows by appending and only two sizes need patching.
 */

export const WAV_HEADER_BYTES = 44;
export const RECORDING_RATE = 8000;
export const RECORDING_CHANNELS = 2;
/** Bytes per stereo sample frame. */
export const FRAME_BYTES_STEREO = 4;

/** Offsets of the sizes to patch as the file grows. */
export const RIFF_SIZE_OFFSET = 4;
export const DATA_SIZE_OFFSET = 40;

/** The header for `dataBytes` of audio (0 while the size is not yet known). */
export function wavHeader(dataBytes: number): Buffer {
  const h = Buffer.alloc(WAV_HEADER_BYTES);
  h.write("RIFF", 0, "ascii");
  h.writeUInt32LE(36 + dataBytes, RIFF_SIZE_OFFSET);
  h.write("WAVEfmt ", 8, "ascii");
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20); // PCM
  h.writeUInt16LE(RECORDING_CHANNELS, 22);
  h.writeUInt32LE(RECORDING_RATE, 24);
  h.writeUInt32LE(RECORDING_RATE * FRAME_BYTES_STEREO, 28);
  h.writeUInt16LE(FRAME_BYTES_STEREO, 32);
  h.writeUInt16LE(16, 34);
  h.write("data", 36, "ascii");
  h.writeUInt32LE(dataBytes, DATA_SIZE_OFFSET);
  return h;
}

export interface StereoPcm {
  sampleRate: number;
  left: Int16Array;
  right: Int16Array;
}

/**
 * Read a stereo 16-bit WAV. The data size is taken from the file's length when the header says less (a file whose
 * sizes were last patched before the process was killed).
 */
export function parseStereoWav(buf: Buffer): StereoPcm {
  if (buf.length < WAV_HEADER_BYTES || buf.toString("ascii", 0, 4) !== "RIFF" || buf.toString("ascii", 8, 12) !== "WAVE") throw new Error("not a WAV file");
  const channels = buf.readUInt16LE(22);
  const bits = buf.readUInt16LE(34);
  if (channels !== 2 || bits !== 16 || buf.readUInt16LE(20) !== 1) throw new Error(`need 2-channel 16-bit PCM, got ${channels} channels of ${bits} bits`);
  const bytes = Math.max(buf.readUInt32LE(DATA_SIZE_OFFSET), 0);
  const end = Math.min(buf.length, WAV_HEADER_BYTES + bytes);
  const n = Math.floor((end - WAV_HEADER_BYTES) / FRAME_BYTES_STEREO);
  const left = new Int16Array(n);
  const right = new Int16Array(n);
  for (let i = 0; i < n; i++) {
    left[i] = buf.readInt16LE(WAV_HEADER_BYTES + i * 4);
    right[i] = buf.readInt16LE(WAV_HEADER_BYTES + i * 4 + 2);
  }
  return { sampleRate: buf.readUInt32LE(24), left, right };
}
