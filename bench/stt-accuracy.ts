/**
 * Accuracy and speed of the embedded recogniser on the shared recordings, after the phone path (8 kHz mu-law).
 *
 *   node --import tsx bench/stt-accuracy.ts [--paced]
 *
 * Three configurations:
 * - pocketsphinx: Debian's PocketSphinx library with its trigram language model (dictation), when installed
 *   (apt-get install libpocketsphinx3 pocketsphinx-en-us); the column is left out otherwise.
 * - open: SoundSwallower's frequency-weighted word loop, i.e. dictation; this is what SoundSwallower does badly.
 * - phrase list containing the sentence: phone-assistant commands plus every clip's transcript. It measures the
 *   constrained mode (the right use of this engine), NOT dictation: the answer is always one of the listed phrases.
 *
 * RTF = wall time from the first push to the transcript / audio duration, with audio pushed as fast as it is accepted
 * (20 ms chunks). With --paced, audio is pushed in real time instead and the delay from the last push to the
 * transcript is reported too (how long a caller waits after the VAD ends the utterance).
 *
 * CPU RTF = CPU time of the whole process (all threads) over the run / audio duration: the cost on one core, which
 * wall-clock RTF only shows on an idle machine.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { CLIPS, clipPcm8kViaMulaw } from "../test/helpers/audio.ts";
import { SphinxStt } from "../src/providers/stt/sphinx.ts";
import { PocketSphinxStt, pocketsphinxProblem } from "../src/providers/stt/pocketsphinx.ts";
import type { SttProvider } from "../src/providers/types.ts";
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

/** CPU RTF of each run, by label. */
const cpuRtf = new Map<string, number>();

async function run(label: string, stt: SttProvider, clips: Array<{ name: string; transcript: string; pcm: Int16Array }>): Promise<ClipResult[]> {
  await stt.ready();
  const cpu0 = process.cpuUsage();
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
  const cpu = process.cpuUsage(cpu0);
  cpuRtf.set(label, (cpu.user + cpu.system) / 1e6 / out.reduce((s, r) => s + r.seconds, 0));
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

const psLabel = "pocketsphinx (Debian library, trigram LM)";
const openLabel = "open vocabulary (2000-word loop)";
const phraseLabel = "phrase list containing the sentence";
const psProblem = await pocketsphinxProblem();
if (psProblem) process.stderr.write(`pocketsphinx column left out: ${psProblem}\n`);
const ps = psProblem ? undefined : await run(psLabel, new PocketSphinxStt(), clips);
const open = await run(openLabel, new SphinxStt({ mode: "open" }), clips);
const phrases = await run(phraseLabel, new SphinxStt({ mode: "phrases", phrases: [...ASSISTANT_COMMANDS, ...CLIPS.map((c) => c.transcript)] }), clips);
const psT = ps && totals(ps);
const openT = totals(open);
const phraseT = totals(phrases);

// Paced runs take wall-clock time by construction, so they report the wait after the last push instead of RTF.
const speed = (r: ClipResult) => (paced ? `${r.finishMs!.toFixed(0)} ms` : r.rtf.toFixed(2));
const speedHead = paced ? "finish() after last push" : "RTF";
// The pocketsphinx columns come first when that engine is installed.
const psHead = ps ? ["WER pocketsphinx", `${speedHead} pocketsphinx`] : [];
const lines = [
  `| clip | seconds | ${ps ? `${psHead[0]} | ` : ""}WER open | WER phrase list containing the sentence | ${ps ? `${psHead[1]} | ` : ""}${speedHead} open | ${speedHead} phrase list |`,
  `|---|---:|${ps ? "---:|---:|" : ""}---:|---:|---:|---:|`,
  ...open.map((o, i) => {
    const p = phrases[i]!;
    const q = ps?.[i];
    return `| ${o.clip} | ${o.seconds.toFixed(1)} | ${q ? `${pct(q.wer)} | ` : ""}${pct(o.wer)} | ${pct(p.wer)} | ${q ? `${speed(q)} | ` : ""}${speed(o)} | ${speed(p)} |`;
  }),
  `| **total** (${openT.referenceWords} words) | ${openT.seconds.toFixed(1)} | ${psT ? `**${pct(psT.wer)}** | ` : ""}**${pct(openT.wer)}** | **${pct(phraseT.wer)}** | ${psT ? `${paced ? "" : psT.rtf.toFixed(2)} | ` : ""}${paced ? "" : openT.rtf.toFixed(2)} | ${paced ? "" : phraseT.rtf.toFixed(2)} |`,
  "",
  `CPU RTF (CPU time of all threads / audio): ${[...cpuRtf].map(([l, r]) => `${l} ${r.toFixed(2)}`).join(", ")}.`,
  `Word accuracy (1 - WER): ${psT ? `pocketsphinx ${pct(psT.wordAccuracy)}, ` : ""}open ${pct(openT.wordAccuracy)}, phrase list containing the sentence ${pct(phraseT.wordAccuracy)}.`,
  `The phrase-list column measures the constrained mode (${ASSISTANT_COMMANDS.length} commands + ${CLIPS.length} clip transcripts), not dictation.`,
];
console.log(lines.join("\n"));

mkdirSync(new URL("./out/", import.meta.url), { recursive: true });
const json = { date: new Date().toISOString(), paced, cpuRtf: Object.fromEntries(cpuRtf), ...(ps && { pocketsphinx: { label: psLabel, totals: psT, clips: ps } }), open: { label: openLabel, totals: openT, clips: open }, phrases: { label: phraseLabel, totals: phraseT, clips: phrases } };
writeFileSync(new URL("./out/stt-accuracy.json", import.meta.url), JSON.stringify(json, null, 2) + "\n");
process.stderr.write("wrote bench/out/stt-accuracy.json\n");
