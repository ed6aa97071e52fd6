// The softphone's audio threads. They run in the browser's AudioWorkletGlobalScope, where `sampleRate` is the
// context's rate (often 48 kHz): the phone line is 8 kHz mu-law, so each side converts here, off the page's thread.

const FRAME = 160; // 20 ms at 8 kHz, what Twilio sends

// G.711 mu-law, as Twilio carries it.
const BIAS = 0x84;
const CLIP = 32635;
function encodeMulaw(sample) {
  let s = Math.max(-1, Math.min(1, sample)) * 32767;
  const sign = s < 0 ? 0x80 : 0;
  if (sign) s = -s;
  s = Math.min(CLIP, s | 0) + BIAS;
  let exponent = 7;
  for (let mask = 0x4000; (s & mask) === 0 && exponent > 0; mask >>= 1) exponent--;
  const mantissa = (s >> (exponent + 3)) & 0x0f;
  return ~(sign | (exponent << 4) | mantissa) & 0xff;
}
const DECODE = new Float32Array(256);
for (let i = 0; i < 256; i++) {
  const u = ~i & 0xff;
  const t = (((u & 0x0f) << 3) + BIAS) << ((u & 0x70) >> 4);
  DECODE[i] = (u & 0x80 ? BIAS - t : t - BIAS) / 32768;
}

/**
 * Microphone -> 8 kHz mu-law frames. Each output sample is the mean of the input samples since the previous one: a box
 * filter, which is enough anti-aliasing for speech going to a 4 kHz telephone band. Frames go to the page as they fill.
 */
class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / 8000;
    this.phase = 0;
    this.sum = 0;
    this.count = 0;
    this.frame = new Uint8Array(FRAME);
    this.filled = 0;
    this.peak = 0;
  }
  process(inputs) {
    const input = inputs[0] && inputs[0][0];
    if (!input) return true;
    for (let i = 0; i < input.length; i++) {
      this.sum += input[i];
      this.count++;
      if (++this.phase < this.step) continue;
      this.phase -= this.step;
      const v = this.sum / this.count;
      this.sum = 0;
      this.count = 0;
      this.peak = Math.max(this.peak, Math.abs(v));
      this.frame[this.filled++] = encodeMulaw(v);
      if (this.filled === FRAME) {
        this.port.postMessage({ frame: this.frame, peak: this.peak }, [this.frame.buffer]);
        this.frame = new Uint8Array(FRAME);
        this.filled = 0;
        this.peak = 0;
      }
    }
    return true;
  }
}

/**
 * Parley's audio -> speaker, with Twilio's playout semantics: media plays in order; a mark is echoed once the audio
 * before it has played; `clear` drops what is buffered and echoes the marks still pending. Samples are 8 kHz in a ring,
 * read at the context's rate by linear interpolation.
 */
class PlaybackProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ring = new Float32Array(8000 * 120);
    this.written = 0; // 8 kHz samples ever written
    this.read = 0; // fractional read position, same scale
    this.step = 8000 / sampleRate;
    this.marks = []; // { name, at }
    this.played = 0;
    this.quanta = 0;
    this.port.onmessage = (e) => {
      const m = e.data;
      if (m.media) {
        const bytes = m.media;
        // A reader that fell behind an empty buffer restarts at what arrives now, rather than skipping it.
        if (this.read > this.written) this.read = this.written;
        for (let i = 0; i < bytes.length; i++) this.ring[(this.written + i) % this.ring.length] = DECODE[bytes[i]];
        this.written += bytes.length;
      } else if (m.mark) {
        this.marks.push({ name: m.mark, at: this.written });
      } else if (m.clear) {
        this.read = this.written;
        for (const k of this.marks) this.port.postMessage({ mark: k.name });
        this.marks = [];
      }
    };
  }
  process(_inputs, outputs) {
    const out = outputs[0][0];
    const n = this.ring.length;
    let played = 0;
    for (let i = 0; i < out.length; i++) {
      if (this.read + 1 >= this.written) {
        out[i] = 0;
        continue;
      }
      const i0 = Math.floor(this.read);
      const f = this.read - i0;
      out[i] = this.ring[i0 % n] * (1 - f) + this.ring[(i0 + 1) % n] * f;
      this.read += this.step;
      played++;
    }
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    if (played) {
      this.played += played * this.step;
      while (this.marks.length && this.marks[0].at <= this.read) this.port.postMessage({ mark: this.marks.shift().name });
    } else {
      // Nothing left to play: what is pending has played (a mark at the very end of the audio waits for no more).
      while (this.marks.length && this.marks[0].at <= this.written) this.port.postMessage({ mark: this.marks.shift().name });
    }
    // The page's meters need a few updates a second, not one per 128-sample quantum.
    if (++this.quanta % 32 === 0) this.port.postMessage({ played: this.played, buffered: Math.max(0, this.written - this.read) });
    return true;
  }
}

registerProcessor("parley-capture", CaptureProcessor);
registerProcessor("parley-playback", PlaybackProcessor);
