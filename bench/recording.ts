/**
 * What recording costs a call: the per-frame path (one inbound and one outbound 20 ms frame into the recorder) in time
 * and heap, and many calls recorded at once to a real disk, in real time order but as fast as the CPU allows.
 *
 *   node --expose-gc --import tsx bench/recording.ts [calls=100] [seconds=60]
 */
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { CallRecorder, type RecordingOpener } from "../src/recording/recorder.ts";
import { openRecordingFile } from "../src/recording/recordings.ts";

const calls = Number(process.argv[2] ?? 100);
const seconds = Number(process.argv[3] ?? 60);
const gc = (globalThis as { gc?: () => void }).gc;
const dir = mkdtempSync(path.join(tmpdir(), "parley-rec-bench-"));
const frame = new Uint8Array(160).map((_, i) => (i * 37) & 0xff);

// 1. The per-frame path, with its share of the once-a-second interleave into the write buffer, against a disk that
// takes every write at once (so the figure is the CPU's, and the writes' promises are once a second, not per frame).
{
  const instant: RecordingOpener = async () => ({ write: async () => {}, close: async () => {} });
  const r = new CallRecorder(path.join(dir, "frame.wav"), 0, instant, () => {});
  const n = 1_000_000;
  let t = 0;
  for (let i = 0; i < 10_000; i++) {
    t += 20;
    r.caller(frame, t); // warm up the JIT
    r.played(frame, t + 100);
    if (i % 50 === 49) await new Promise((res) => setImmediate(res));
  }
  gc?.();
  const heap0 = process.memoryUsage().heapUsed;
  let ms = 0;
  for (let i = 0; i < n; i += 50) {
    const a = performance.now();
    for (let k = 0; k < 50; k++) {
      t += 20;
      r.played(frame, t + 100);
      r.caller(frame, t);
    }
    ms += performance.now() - a;
    await new Promise((res) => setImmediate(res)); // each second's write completes before the next (timed apart)
  }
  const heap1 = process.memoryUsage().heapUsed;
  const dropped = r.finish()!.droppedMs;
  console.log(`per frame pair (caller + played): ${((ms * 1e6) / n).toFixed(0)} ns; heap after ${n} pairs (${n / 50} s of call): ${heap1 - heap0 >= 0 ? "+" : ""}${((heap1 - heap0) / 1024).toFixed(0)} KiB${gc ? "" : " (run with --expose-gc for a clean figure)"}; dropped ${dropped} ms`);
  await r.done;
}

// 2. Many calls at once to disk: each 20 ms step feeds every call one frame each way; the disk writes run meanwhile.
{
  const recs = Array.from({ length: calls }, (_, i) => new CallRecorder(path.join(dir, `c${i}.wav`), 0, openRecordingFile, (m) => console.error(`call ${i}: ${m}`)));
  const steps = seconds * 50;
  const t0 = performance.now();
  let maxStepMs = 0;
  for (let s = 1; s <= steps; s++) {
    const a = performance.now();
    for (const r of recs) {
      r.played(frame, s * 20 + 100);
      r.caller(frame, s * 20);
    }
    maxStepMs = Math.max(maxStepMs, performance.now() - a);
    if (s % 50 === 0) await new Promise((res) => setImmediate(res)); // let the writes of each call-second run
  }
  const feedMs = performance.now() - t0;
  for (const r of recs) r.finish();
  await Promise.all(recs.map((r) => r.done));
  const totalMs = performance.now() - t0;
  const bytes = recs.reduce((n, _, i) => n + statSync(path.join(dir, `c${i}.wav`)).size, 0);
  console.log(`${calls} calls x ${seconds} s: fed in ${feedMs.toFixed(0)} ms (${((feedMs / (calls * seconds)) * 1000).toFixed(0)} µs per call-second, slowest 20 ms step ${maxStepMs.toFixed(2)} ms), on disk in ${totalMs.toFixed(0)} ms: ${(bytes / 1e6).toFixed(1)} MB, ${((bytes / 1e6 / totalMs) * 1000).toFixed(0)} MB/s`);
}
rmSync(dir, { recursive: true, force: true });
