import { afterEach, describe, expect, it } from "vitest";
import { StreamingResampler, type ResamplerQuality } from "../src/audio/resampler.ts";

const IN_RATE = 22050;
const OUT_RATE = 8000;

function sine(freq: number, rate: number, seconds: number, amplitude = 0.5): Float32Array {
  const n = Math.round(rate * seconds);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = amplitude * Math.sin((2 * Math.PI * freq * i) / rate);
  return out;
}

/** Feed `input` in irregular small chunks (1..300 samples, deterministic), concatenating the output and the flush. */
function resampleChunked(r: StreamingResampler, input: Float32Array): Float32Array {
  const parts: Float32Array[] = [];
  let seed = 12345;
  for (let off = 0; off < input.length; ) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    const size = 1 + (seed % 300);
    parts.push(r.process(input.subarray(off, off + size)).slice()); // slice: the result is a reused view
    off += size;
  }
  parts.push(r.flush().slice());
  return concat(parts);
}

function resampleWhole(r: StreamingResampler, input: Float32Array): Float32Array {
  return concat([r.process(input).slice(), r.flush().slice()]);
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function rms(x: Float32Array): number {
  let s = 0;
  for (const v of x) s += v * v;
  return Math.sqrt(s / x.length);
}

const created: StreamingResampler[] = [];
async function make(inRate = IN_RATE, outRate = OUT_RATE, quality?: ResamplerQuality): Promise<StreamingResampler> {
  const r = await StreamingResampler.create(inRate, outRate, quality);
  created.push(r);
  return r;
}

afterEach(() => {
  for (const r of created.splice(0)) r.destroy();
});

describe("StreamingResampler", () => {
  it("keeps a 1 kHz tone's frequency, amplitude and phase across many small chunks", async () => {
    const out = resampleChunked(await make(), sine(1000, IN_RATE, 1));
    const ideal = sine(1000, OUT_RATE, 1);
    expect(out.length).toBe(ideal.length);
    // Away from the edges (where the filter sees the signal start/stop), the output is the ideal 8 kHz sine.
    let worst = 0;
    for (let i = 100; i < out.length - 100; i++) worst = Math.max(worst, Math.abs(out[i]! - ideal[i]!));
    expect(worst).toBeLessThan(0.01);
    expect(rms(out.subarray(100, -100))).toBeCloseTo(0.5 / Math.SQRT2, 2);
  });

  it("leaves no trace of chunk boundaries: chunked output equals one-piece output", async () => {
    const input = sine(1000, IN_RATE, 1);
    const chunked = resampleChunked(await make(), input);
    const whole = resampleWhole(await make(), input);
    expect(chunked.length).toBe(whole.length);
    let worst = 0;
    for (let i = 0; i < whole.length; i++) worst = Math.max(worst, Math.abs(chunked[i]! - whole[i]!));
    expect(worst).toBeLessThan(1e-6);
    // No step anywhere: a 0.5-amplitude 1 kHz sine moves at most 2*pi*1000/8000*0.5 = 0.39 per 8 kHz sample.
    let step = 0;
    for (let i = 100; i < chunked.length - 100; i++) step = Math.max(step, Math.abs(chunked[i]! - chunked[i - 1]!));
    expect(step).toBeLessThan(0.4);
  });

  it.each<ResamplerQuality>(["fastest", "medium", "best"])("filters out a 5 kHz tone (above the 4 kHz output Nyquist) at %s quality", async (q) => {
    const out = resampleChunked(await make(IN_RATE, OUT_RATE, q), sine(5000, IN_RATE, 1));
    // Plain decimation would fold it to 3 kHz at full level; the anti-alias filter must remove it (> 50 dB).
    expect(rms(out.subarray(200, -200))).toBeLessThan((0.5 / Math.SQRT2) * 0.003);
  });

  it.each([1, 100, 2205, 11025])("holds back the filter's look-ahead until flush, then totals input * 8000/22050 (%i in)", async (n) => {
    const r = await make();
    const input = sine(440, IN_RATE, n / IN_RATE);
    const first = r.process(input).length;
    const expected = Math.round((n * OUT_RATE) / IN_RATE);
    expect(first).toBeLessThan(expected || 1);
    expect(first + r.flush().length).toBe(expected);
  });

  it("starts a fresh stream after flush() and after reset()", async () => {
    const r = await make();
    const input = sine(700, IN_RATE, 0.3);
    const a = resampleWhole(r, input);
    const b = resampleWhole(r, input);
    r.process(sine(3000, IN_RATE, 0.1)); // an abandoned stream
    r.reset();
    const c = resampleWhole(r, input);
    expect(Array.from(b)).toEqual(Array.from(a));
    expect(Array.from(c)).toEqual(Array.from(a));
  });

  it("feeds inputs larger than the library's transfer buffer without losing samples", async () => {
    const r = await make();
    const input = sine(1000, IN_RATE, 60); // 1.3 M samples
    const out = resampleWhole(r, input);
    expect(out.length).toBe(Math.round((input.length * OUT_RATE) / IN_RATE));
    expect(rms(out.subarray(1000, -1000))).toBeCloseTo(0.5 / Math.SQRT2, 2);
  });

  it("upsamples 8 kHz to 22.05 kHz", async () => {
    const out = resampleChunked(await make(OUT_RATE, IN_RATE), sine(1000, OUT_RATE, 0.5));
    const ideal = sine(1000, IN_RATE, 0.5);
    expect(out.length).toBe(ideal.length);
    let worst = 0;
    for (let i = 300; i < out.length - 300; i++) worst = Math.max(worst, Math.abs(out[i]! - ideal[i]!));
    expect(worst).toBeLessThan(0.01);
  });

  it("passes audio through when the rates are equal", async () => {
    const r = await make(8000, 8000);
    const input = sine(1000, 8000, 0.1);
    expect(Array.from(r.process(input))).toEqual(Array.from(input));
    expect(r.flush().length).toBe(0);
  });

  it("refuses use after destroy()", async () => {
    const r = await make();
    r.destroy();
    expect(() => r.process(new Float32Array(10))).toThrow(/destroy/);
  });
});
