/** The text report of one capacity-benchmark run (bench/run.ts), kept apart so it can be tested without a run. */
import { num, quantileRow as row, type Quantiles } from "./table.ts";

/** What the report reads from a run (bench/run.ts `runOnce`). */
export interface RunFigures {
  mode: string;
  /** The wire the calls came in on (absent in runs from before carriers: Twilio). */
  carrier?: string;
  calls: number;
  secondsPerCall: number;
  pass: boolean;
  steady: {
    seconds: number;
    inboundMs: Quantiles;
    eventLoopMs: Quantiles;
    /** The VAD decision, step by step (src/vad/decision-timing.ts), per window. */
    vadDecision?: { stagesMs: Record<string, { p50: number; p99: number; max: number }>; batchRows: { p50: number; p99: number; max: number } };
    gc?: { count: number; totalMs: number; maxMs: number; byKind: Record<string, { count: number; totalMs: number; maxMs: number }> };
  } | null;
  inboundMs: Quantiles;
  eventLoopMs: Quantiles;
  turnLatencyMs: Quantiles;
  bargeInMs: Quantiles;
  greetingMs: Quantiles;
  handoffMs: { sttToAgent: Quantiles; agentToTts: Quantiles; ttsToFrame: Quantiles };
  callerUnderrunMs: number;
  serverUnderrunMs: number;
  lateFrames: number;
  lateAfterClear: number;
  cpuBudget: { machineBusyCores: number; peakMachineBusyCores: number; parleyCores: number; vadInferenceCores: number; generatorCores: number; stealCores: number; peakStealCores: number };
  cpuMsPerCallSecond: number;
  cpuCoresUsed: number;
  rssMiBPerCall: number;
  rssPeakMiB: number;
}

export function reportLines(r: RunFigures, cores: number): string[] {
  const out = [
    `\n${r.mode} providers, ${r.calls} concurrent calls on ${r.carrier ?? "twilio"}, ${r.secondsPerCall} s of talk each: ${r.pass ? "PASS" : "FAIL"} (zero underruns over the whole run, p99 inbound < 20 ms with every call live)\n`,
    "| measure (ms) | p50 | p95 | p99 | max |\n|---|---|---|---|---|",
  ];
  if (r.steady) {
    out.push(row(`inbound frame -> VAD decision, all ${r.calls} calls live (${num(r.steady.seconds, 0)} s)`, r.steady.inboundMs));
    out.push(row(`event-loop delay, all ${r.calls} calls live`, r.steady.eventLoopMs));
  }
  const d = r.steady?.vadDecision;
  const breakdown: string[] = [];
  if (d) {
    breakdown.push(
      `
VAD decision step by step, all calls live (per window; batches of ${num(d.batchRows.p50, 0)} rows p50, ${num(d.batchRows.max, 0)} max):
`,
      "| step (ms) | p50 | p99 | max |\n|---|---|---|---|",
      ...Object.entries(d.stagesMs).map(([k, v]) => `| ${STAGE_NAMES[k] ?? k} | ${num(v.p50)} | ${num(v.p99)} | ${num(v.max)} |`),
    );
  }
  const gc = r.steady?.gc;
  if (gc)
    breakdown.push(
      `
main-thread GC, all calls live: ${gc.count} pauses, ${num(gc.totalMs)} ms in all, longest ${num(gc.maxMs)} ms (` +
        Object.entries(gc.byKind).map(([k, v]) => `${k} ${v.count}× ${num(v.totalMs)} ms, max ${num(v.maxMs)}`).join("; ") +
        ")",
    );
  out.push(
    row("inbound frame -> VAD decision, whole run (set-up and teardown included)", r.inboundMs),
    row("event-loop delay, whole run", r.eventLoopMs),
    row("turn: end of speech -> first reply frame", r.turnLatencyMs),
    row("barge-in: speech onset -> clear", r.bargeInMs),
    row("greeting: start -> first frame", r.greetingMs),
    row("hand-off: STT final -> agent request", r.handoffMs.sttToAgent),
    row("hand-off: first token -> TTS text", r.handoffMs.agentToTts),
    row("hand-off: first TTS byte -> first frame", r.handoffMs.ttsToFrame),
    ...breakdown,
    `\nunderruns heard: ${num(r.callerUnderrunMs)} ms (caller side), ${num(r.serverUnderrunMs)} ms (Parley's pacer); late frames ${r.lateFrames}; audio after clear ${r.lateAfterClear}`,
  );
  const b = r.cpuBudget;
  out.push(
    `machine: ${num(b.machineBusyCores, 2)} of ${cores} cores busy on average, ${num(b.peakMachineBusyCores, 2)} at the busiest 3 s — Parley ${num(b.parleyCores, 2)} (VAD inference ${num(b.vadInferenceCores, 2)}), load generator ${num(b.generatorCores, 2)}; stolen by the hypervisor ${num(b.stealCores, 2)} on average, ${num(b.peakStealCores, 2)} at most in one second`,
    `CPU ${num(r.cpuMsPerCallSecond)} ms per call-second (${num(r.cpuCoresUsed, 2)} cores), RSS ${num(r.rssMiBPerCall, 2)} MiB per call (peak ${num(r.rssPeakMiB)} MiB)`,
  );
  return out;
}

const STAGE_NAMES: Record<string, string> = {
  queued: "window complete -> batch posted",
  toWorker: "posted -> worker receives",
  workerWait: "worker receives -> inference starts",
  inference: "inference",
  fromWorker: "inference ends -> main thread receives",
  delivery: "main thread receives -> this window's listener",
  total: "window complete -> decision",
};

export function report(r: RunFigures, cores: number): void {
  console.log(reportLines(r, cores).join("\n"));
}
