import { StreamingResampler } from "../../audio/resampler.ts";
import { encodeMulawFloat, MULAW_TO_FLOAT } from "../../audio/mulaw.ts";
import { isWav, parseWav } from "./wav.ts";

/**
 * A relay app's `play`: fetch the URL and turn it into what the call plays, 8 kHz mono mu-law. Accepted: WAV (16-bit
 * PCM or mu-law, any rate, mono or stereo) and raw mu-law (`audio/basic`, `audio/x-mulaw`, with an optional `rate=`
 * parameter). MP3 and other compressed formats are refused: decoding them would need a codec Parley does not ship.
 */

export interface PlayFetchOptions {
  /** Largest download accepted, in bytes. */
  maxBytes: number;
  /** Time allowed for the whole download. */
  timeoutMs: number;
  signal?: AbortSignal;
}

/** 8 MB, 10 s, and 5 minutes of looped audio. */
export const DEFAULT_PLAY_FETCH = { maxBytes: 8 * 1024 * 1024, timeoutMs: 10_000, maxAudioBytes: 8000 * 300 };

/** Redirects followed per download; each hop must be http(s) too. */
export const MAX_PLAY_REDIRECTS = 3;

const MULAW_TYPES = new Set(["audio/basic", "audio/x-mulaw", "audio/mulaw", "audio/ulaw", "audio/x-ulaw", "audio/pcmu"]);
const OUT_RATE = 8000;

/** Why a `play` could not be played; the message goes to the app in an `error` frame. */
export class PlayError extends Error {}

/**
 * A `play` message's audio, ready for the call: fetched within the limits, decoded, looped. Rejects with a
 * {@link PlayError} whose message is meant for the app's `error` frame.
 */
export async function fetchForPlay(
  m: { source: string; loop?: number },
  limits: { maxBytes?: number; timeoutMs?: number; maxAudioBytes?: number } | undefined,
  signal: AbortSignal,
  host: { record(type: string, data?: Record<string, unknown>): void },
): Promise<Uint8Array> {
  const l = { ...DEFAULT_PLAY_FETCH, ...limits };
  const mulaw = await fetchPlayAudio(m.source, { maxBytes: l.maxBytes, timeoutMs: l.timeoutMs, signal });
  const { audio, truncated } = loopAudio(mulaw, m.loop ?? 1, l.maxAudioBytes);
  host.record("relay.play", { source: m.source, bytes: audio.length, loop: m.loop ?? 1, truncated });
  return audio;
}

/**
 * Download a `play` source within the limits: http(s) only (redirects too, at most {@link MAX_PLAY_REDIRECTS}), the
 * whole download (headers and body) within `timeoutMs`, and the body read as a stream that stops at `maxBytes`.
 */
export async function fetchPlayAudio(source: string, opts: PlayFetchOptions): Promise<Uint8Array> {
  const timeout = AbortSignal.timeout(opts.timeoutMs);
  const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
  let res: Response;
  let body: Uint8Array;
  try {
    res = await fetchFollowing(source, signal);
    if (!res.ok) {
      await res.body?.cancel();
      throw new PlayError(`play ${source}: HTTP ${res.status}`);
    }
    const length = Number(res.headers.get("content-length") ?? NaN);
    if (length > opts.maxBytes) {
      await res.body?.cancel();
      throw new PlayError(`play ${source}: ${length} bytes is over the ${opts.maxBytes}-byte limit`);
    }
    body = await readBounded(res, opts.maxBytes, source);
  } catch (err) {
    if (err instanceof PlayError) throw err;
    if (timeout.aborted) throw new PlayError(`play ${source}: download took longer than ${opts.timeoutMs} ms`);
    if (opts.signal?.aborted) throw new PlayError(`play ${source}: cancelled`);
    throw new PlayError(`play ${source}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const type = (res.headers.get("content-type") ?? "").toLowerCase();
  const sniffed = isWav(body) ? null : notAudio(body);
  if (sniffed) throw new PlayError(`play ${source}: the file is ${sniffed}, not WAV or raw mu-law`);
  try {
    return await toMulaw8k(body, type);
  } catch (err) {
    throw new PlayError(`play ${source}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** Decode a downloaded body by its content (WAV is recognised by its header) or else its content type. */
export async function toMulaw8k(body: Uint8Array, contentType: string): Promise<Uint8Array> {
  if (isWav(body)) {
    const wav = parseWav(body);
    if (wav.encoding === "mulaw") {
      return wav.sampleRate === OUT_RATE ? wav.bytes : resampleToMulaw(mulawToFloat(wav.bytes), wav.sampleRate);
    }
    return resampleToMulaw(pcm16ToFloat(wav.samples), wav.sampleRate);
  }
  const [mime = "", ...params] = contentType.split(";").map((s) => s.trim());
  if (MULAW_TYPES.has(mime)) {
    const rateParam = params.find((p) => p.startsWith("rate="));
    const rate = rateParam ? Number(rateParam.slice(5)) : OUT_RATE;
    if (!Number.isInteger(rate) || rate < 4000 || rate > 192_000) throw new Error(`unsupported mu-law rate "${rateParam}"`);
    return rate === OUT_RATE ? body : resampleToMulaw(mulawToFloat(body), rate);
  }
  throw new Error(
    `unsupported audio type "${mime || "unknown"}": Parley plays WAV (16-bit PCM or mu-law) and raw mu-law (audio/basic, audio/x-mulaw)`,
  );
}

/** Repeat a clip `loop` times (0 means 1000, as in Twilio), stopping at `maxBytes` so a loop cannot exhaust memory. */
export function loopAudio(mulaw: Uint8Array, loop: number, maxBytes: number): { audio: Uint8Array; truncated: boolean } {
  const times = loop === 0 ? 1000 : loop;
  if (times <= 1 || mulaw.length === 0) return { audio: mulaw, truncated: false };
  const wanted = mulaw.length * times;
  const total = Math.min(wanted, maxBytes);
  const out = new Uint8Array(total);
  for (let at = 0; at < total; at += mulaw.length) out.set(mulaw.subarray(0, Math.min(mulaw.length, total - at)), at);
  return { audio: out, truncated: total < wanted };
}

/** Only http(s) is fetched: `file:`, `data:` and the like could read what the app must not see. */
function httpUrl(url: string, source: string): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new PlayError(`play ${source}: "${url}" is not a URL`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new PlayError(`play ${source}: only http(s) URLs are fetched, not ${u.protocol}`);
  return u;
}

/** fetch, following redirects by hand so each hop is checked and their number bounded. */
async function fetchFollowing(source: string, signal: AbortSignal): Promise<Response> {
  let url = httpUrl(source, source);
  for (let hop = 0; ; hop++) {
    const res = await fetch(url, { signal, redirect: "manual" });
    const location = res.headers.get("location");
    if (res.status < 300 || res.status > 399 || location === null) return res;
    await res.body?.cancel();
    if (hop === MAX_PLAY_REDIRECTS) throw new PlayError(`play ${source}: more than ${MAX_PLAY_REDIRECTS} redirects`);
    url = httpUrl(new URL(location, url).href, source);
  }
}

/** Formats a server may label as mu-law (or not label at all) but that are not: refused rather than played as noise. */
const NOT_AUDIO: Array<[string, (b: Uint8Array) => boolean]> = [
  ["MP3", (b) => ascii(b, 0, 3) === "ID3"],
  ["Ogg", (b) => ascii(b, 0, 4) === "OggS"],
  ["FLAC", (b) => ascii(b, 0, 4) === "fLaC"],
  ["MP4/M4A", (b) => ascii(b, 4, 8) === "ftyp"],
  ["a RIFF file that is not WAVE", (b) => ascii(b, 0, 4) === "RIFF"],
  ["HTML or XML", (b) => /^\s*<(!doctype|html|\?xml|head|body)/i.test(ascii(b, 0, 64))],
  ["JSON", (b) => /^\s*[{[]\s*["{[\]}]/.test(ascii(b, 0, 16))],
];

function notAudio(body: Uint8Array): string | null {
  for (const [name, test] of NOT_AUDIO) if (test(body)) return name;
  return null;
}

function ascii(b: Uint8Array, start: number, end: number): string {
  return String.fromCharCode(...b.subarray(start, Math.min(end, b.length)));
}

async function readBounded(res: Response, maxBytes: number, source: string): Promise<Uint8Array> {
  if (!res.body) return new Uint8Array(0);
  const reader = res.body.getReader();
  const parts: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > maxBytes) {
      await reader.cancel();
      throw new PlayError(`play ${source}: more than the ${maxBytes}-byte limit`);
    }
    parts.push(value);
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function pcm16ToFloat(samples: Int16Array): Float32Array {
  const out = new Float32Array(samples.length);
  for (let i = 0; i < samples.length; i++) out[i] = samples[i]! / 32768;
  return out;
}

function mulawToFloat(bytes: Uint8Array): Float32Array {
  const out = new Float32Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = MULAW_TO_FLOAT[bytes[i]!]!;
  return out;
}

/** One-shot resample to 8 kHz with the project's band-limited resampler, then mu-law. */
async function resampleToMulaw(samples: Float32Array, inRate: number): Promise<Uint8Array> {
  const rs = await StreamingResampler.create(inRate, OUT_RATE);
  try {
    const head = rs.process(samples);
    const out = new Float32Array(head.length + Math.round(samples.length * rs.ratio));
    out.set(head);
    const tail = rs.flush();
    out.set(tail, head.length);
    return encodeMulawFloat(out.subarray(0, head.length + tail.length));
  } finally {
    rs.destroy();
  }
}
