/**
 * Accuracy and speed of the embedded recogniser on the shared recordings, after the phone path (8 kHz mu-law).
 *
 *   node --import tsx bench/stt-accuracy.ts [--paced]
 *
 * Two configurations:
 * - open: the frequency-weighted word loop, i.e. dictation; this is what SoundSwallower does badly.
 * - phrase list containing the sentence: phone-assistant commands plus every clip's transcript. It measures the
 *   constrained mode (the right use of this engine), NOT dictation: the answer is always one of the listed phrases.
 *
 * RTF = wall time from the first push to the transcript / audio duration, with audio pushed as fast as it is accepted
 * (20 ms chunks). With --paced, audio is pushed in real time instead and the delay from the last push to the
 * transcript is reported too (how long a caller waits after the VAD ends the utterance).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { CLIPS, clipPcm8kViaMulaw } from "../test/helpers/audio.ts";
import { SphinxStt, type SphinxOptions } from "../src/providers/stt/sphinx.ts";
import { wer } from "../src/providers/stt/wer.ts";
import { parseCli } from "./cli.ts";

/** What callers typically say to a phone assistant. */
export const ASSISTANT_COMMANDS = [
  "yes", "no", "yes please", "no thanks", "okay", "thank you", "goodbye", "hello", "help",
  "repeat that", "say that again", "speak slower", "go back", "start over", "cancel", "stop",
  "talk to a person", "i want to speak to an agent", "what time is it", "what's the date today",
  "what's the weather like today", "will it rain tomorrow", "set an alarm for seven", "set a timer for ten minutes",
  "remind me to call my mother", "call my office", "send a message", "read my messages", "check my voicemail",
  "book a table for two", "what are your opening hours", "where is the nearest pharmacy", "i need a taxi",
  "check my balance", "pay my bill", "track my order", "change my address", "make an appointment",
  "cancel my appointment", "play some music", "turn up the volume", "turn off the lights",
];

const SAMPLE_RATE = 8000;
const CHUNK = SAMPLE_RATE / 50; // 20 ms
const USAGE = `
npm run bench:stt -- [options]   accuracy (WER) and speed of the embedded recogniser on the shared recordings

  --paced        push audio in real time and report the wait after the last push instead of RTF
  -h, --help     this text
`;
const paced = parseCli("bench:stt", USAGE, { paced: { type: "boolean", default: false } }).values.paced;

interface ClipResult {
  clip: string;
  seconds: number;
  reference: string;
  hypothesis: string;
  errors: number;
  referenceWords: number;
  wer: number;
  rtf: number;
  finishMs?: number;
}

async function run(label: string, options: SphinxOptions, clips: Array<{ name: string; transcript: string; pcm: Int16Array }>): Promise<ClipResult[]> {
  const stt = new SphinxStt(options);
  await stt.ready();
  const session = stt.openSession({ callId: "bench" });
  const out: ClipResult[] = [];
  const chunk = new Int16Array(CHUNK); // reused, as a media-stream handler would
  for (const c of clips) {
    const seconds = c.pcm.length / SAMPLE_RATE;
    const t0 = performance.now();
    session.start();
    for (let i = 0; i < c.pcm.length; i += CHUNK) {
      const n = Math.min(CHUNK, c.pcm.length - i);
      chunk.set(c.pcm.subarray(i, i + n));
      session.push(chunk.subarray(0, n));
      if (paced) await sleepUntil(t0 + ((i + n) / SAMPLE_RATE) * 1000);
    }
    const tLast = performance.now();
    const { text } = await session.finish();
    const tEnd = performance.now();
    const w = wer(c.transcript, text);
    const r: ClipResult = { clip: c.name, seconds, reference: c.transcript, hypothesis: text, ...w, rtf: (tEnd - t0) / 1000 / seconds };
    if (paced) r.finishMs = tEnd - tLast;
    out.push(r);
    process.stderr.write(`[${label}] ${c.name} (${seconds.toFixed(1)} s): WER ${pct(w.wer)}  "${text}"\n`);
  }
  session.close();
  await stt.close();
  return out;
}

function sleepUntil(t: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, t - performance.now())));
}

function pct(x: number): string {
  return Number.isFinite(x) ? `${(x * 100).toFixed(1)}%` : "—";
}

function totals(rows: ClipResult[]) {
  const errors = rows.reduce((s, r) => s + r.errors, 0);
  const words = rows.reduce((s, r) => s + r.referenceWords, 0);
  const seconds = rows.reduce((s, r) => s + r.seconds, 0);
  const busy = rows.reduce((s, r) => s + r.rtf * r.seconds, 0);
  return { errors, referenceWords: words, wer: errors / words, wordAccuracy: 1 - errors / words, seconds, rtf: busy / seconds };
}

process.stderr.write("preparing clips (8 kHz mu-law round trip)...\n");
const clips = await Promise.all(CLIPS.map(async (c) => ({ ...c, pcm: await clipPcm8kViaMulaw(c.name) })));

const openLabel = "open vocabulary (2000-word loop)";
const phraseLabel = "phrase list containing the sentence";
const open = await run(openLabel, { mode: "open" }, clips);
const phrases = await run(phraseLabel, { mode: "phrases", phrases: [...ASSISTANT_COMMANDS, ...CLIPS.map((c) => c.transcript)] }, clips);
const openT = totals(open);
const phraseT = totals(phrases);

// Paced runs take wall-clock time by construction, so they report the wait after the last push instead of RTF.
const speed = (r: ClipResult) => (paced ? `${r.finishMs!.toFixed(0)} ms` : r.rtf.toFixed(2));
const speedHead = paced ? "finish() after last push" : "RTF";
const lines = [
  `| clip | seconds | WER open | WER phrase list containing the sentence | ${speedHead} open | ${speedHead} phrase list |`,
  "|---|---:|---:|---:|---:|---:|",
  ...open.map((o, i) => {
    const p = phrases[i]!;
    return `| ${o.clip} | ${o.seconds.toFixed(1)} | ${pct(o.wer)} | ${pct(p.wer)} | ${speed(o)} | ${speed(p)} |`;
  }),
  `| **total** (${openT.referenceWords} words) | ${openT.seconds.toFixed(1)} | **${pct(openT.wer)}** | **${pct(phraseT.wer)}** | ${paced ? "" : openT.rtf.toFixed(2)} | ${paced ? "" : phraseT.rtf.toFixed(2)} |`,
  "",
  `Word accuracy (1 - WER): open ${pct(openT.wordAccuracy)}, phrase list containing the sentence ${pct(phraseT.wordAccuracy)}.`,
  `The phrase-list column measures the constrained mode (${ASSISTANT_COMMANDS.length} commands + ${CLIPS.length} clip transcripts), not dictation.`,
];
console.log(lines.join("\n"));

mkdirSync(new URL("./out/", import.meta.url), { recursive: true });
const json = { date: new Date().toISOString(), paced, open: { label: openLabel, totals: openT, clips: open }, phrases: { label: phraseLabel, totals: phraseT, clips: phrases } };
writeFileSync(new URL("./out/stt-accuracy.json", import.meta.url), JSON.stringify(json, null, 2) + "\n");
process.stderr.write("wrote bench/out/stt-accuracy.json\n");
