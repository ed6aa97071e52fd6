import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";
import libsamplerate from "@alexanderolsen/libsamplerate-js";
import { encodeMulaw } from "../../src/audio/mulaw.ts";
import type { SttSession } from "../../src/providers/types.ts";

/** The shared recordings of real speech (tests may read them; the product never does). */
export const SHARED_AUDIO = path.resolve(fileURLToPath(new URL("../../../shared/audio/", import.meta.url)));

const { create, ConverterType } = libsamplerate; // CommonJS package: no named ESM exports

export interface Clip {
  name: string;
  transcript: string;
}

/** Clips with transcripts, from ../shared/audio/README.md. */
export const CLIPS: Clip[] = [
  { name: "jfk", transcript: "and so my fellow americans ask not what your country can do for you ask what you can do for your country" },
  { name: "austen-0870", transcript: "and mister john dashwood had then leisure to consider how much there might be prudently in his power to do for them" },
  { name: "austen-0880", transcript: "he was not an ill disposed young man" },
  { name: "austen-0890", transcript: "unless to be rather cold hearted and rather selfish is to be ill disposed" },
  { name: "vosk-digits", transcript: "one zero zero zero one nine oh two one oh zero one eight zero three" },
  { name: "new-home-in-the-stars", transcript: "we must find a new home in the stars" },
  { name: "whats-the-weather-like", transcript: "what's the weather like" },
  { name: "harvard-osr-0034-8k", transcript: "a gold ring will please most any girl the long journey home took a year she saw a cat in the neighbor's house a pink shell was found on the sandy beach small children came to see him the grass and bushes were wet with dew the blind man counted his old coins a severe storm tore down the barn she called his name many times when you hear the bell come quickly" },
];

export interface Pcm {
  sampleRate: number;
  samples: Int16Array;
}

/** Read a mono 16-bit PCM WAV file. */
export function readWav(file: string): Pcm {
  const buf = readFileSync(file);
  if (buf.toString("ascii", 0, 4) !== "RIFF" || buf.toString("ascii", 8, 12) !== "WAVE") throw new Error(`${file}: not a WAV file`);
  let off = 12;
  let sampleRate = 0;
  let channels = 0;
  let bits = 0;
  while (off + 8 <= buf.length) {
    const id = buf.toString("ascii", off, off + 4);
    const size = buf.readUInt32LE(off + 4);
    const body = off + 8;
    if (id === "fmt ") {
      channels = buf.readUInt16LE(body + 2);
      sampleRate = buf.readUInt32LE(body + 4);
      bits = buf.readUInt16LE(body + 14);
    } else if (id === "data") {
      if (channels !== 1 || bits !== 16) throw new Error(`${file}: need mono 16-bit PCM, got ${channels} ch ${bits} bit`);
      const bytes = buf.subarray(body, body + Math.min(size, buf.length - body));
      const samples = new Int16Array(bytes.length >> 1);
      for (let i = 0; i < samples.length; i++) samples[i] = bytes.readInt16LE(i * 2);
      return { sampleRate, samples };
    }
    off = body + size + (size & 1);
  }
  throw new Error(`${file}: no data chunk`);
}

/** Write a mono 16-bit PCM WAV file. */
export function writeWav(file: string, pcm: Pcm): void {
  const data = Buffer.from(pcm.samples.buffer, pcm.samples.byteOffset, pcm.samples.byteLength);
  const h = Buffer.alloc(44);
  h.write("RIFF", 0, "ascii");
  h.writeUInt32LE(36 + data.length, 4);
  h.write("WAVEfmt ", 8, "ascii");
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20); // PCM
  h.writeUInt16LE(1, 22); // mono
  h.writeUInt32LE(pcm.sampleRate, 24);
  h.writeUInt32LE(pcm.sampleRate * 2, 28);
  h.writeUInt16LE(2, 32);
  h.writeUInt16LE(16, 34);
  h.write("data", 36, "ascii");
  h.writeUInt32LE(data.length, 40);
  writeFileSync(file, Buffer.concat([h, data]));
}

/**
 * A caller for Chromium's fake microphone: `leadS` of silence (while the greeting plays), then each shared clip
 * followed by `gapS` of silence (while the reply plays). The clips must share one sample rate.
 */
export function writeCallerWav(file: string, clips: string[], o: { leadS: number; gapS: number }): void {
  const pcm = clips.map((name) => readWav(path.join(SHARED_AUDIO, `${name}.wav`)));
  const rate = pcm[0]!.sampleRate;
  if (pcm.some((p) => p.sampleRate !== rate)) throw new Error(`${clips.join(", ")}: clips differ in sample rate`);
  const samples = new Int16Array(Math.round(rate * (o.leadS + o.gapS * clips.length)) + pcm.reduce((n, p) => n + p.samples.length, 0));
  let at = Math.round(rate * o.leadS);
  for (const p of pcm) {
    samples.set(p.samples, at);
    at += p.samples.length + Math.round(rate * o.gapS);
  }
  writeWav(file, { sampleRate: rate, samples });
}

/** Resample to 8 kHz with a band-limited (sinc) converter, as a phone network would. */
export async function to8k(pcm: Pcm): Promise<Int16Array> {
  if (pcm.sampleRate === 8000) return pcm.samples;
  const src = await create(1, pcm.sampleRate, 8000, { converterType: ConverterType.SRC_SINC_MEDIUM_QUALITY });
  const f = Float32Array.from(pcm.samples, (s) => s / 32768);
  const out = src.simple(f);
  src.destroy();
  return Int16Array.from(out, (v) => Math.max(-32768, Math.min(32767, Math.round(v * 32767))));
}

/** A shared clip as 8 kHz mu-law bytes, the way Twilio delivers a caller's voice. */
export async function clipMulaw(name: string): Promise<Uint8Array> {
  const pcm = readWav(path.join(SHARED_AUDIO, `${name}.wav`));
  return encodeMulaw(await to8k(pcm));
}

/** A shared clip as 8 kHz 16-bit PCM that went through mu-law (what Parley's decoder sees). */
export async function clipPcm8kViaMulaw(name: string): Promise<Int16Array> {
  const { decodeMulaw } = await import("../../src/audio/mulaw.ts");
  return decodeMulaw(await clipMulaw(name));
}

/**
 * Push samples [from, to) of `pcm` into a recogniser session as a media-stream handler does: 20 ms at a time, through
 * one reused buffer that is scribbled over after each push (the recogniser must copy what it keeps).
 */
export function pushInFrames(session: Pick<SttSession, "push">, pcm: Int16Array, from = 0, to = pcm.length): void {
  const buf = new Int16Array(160);
  for (let i = from; i < to; i += 160) {
    const n = Math.min(160, to - i);
    buf.set(pcm.subarray(i, i + n));
    session.push(buf.subarray(0, n));
    buf.fill(12345);
  }
}

/** One whole utterance through a recogniser session: start, every frame, finish; its text. */
export async function recognise(session: SttSession, pcm: Int16Array): Promise<string> {
  session.start();
  pushInFrames(session, pcm);
  return (await session.finish()).text;
}
