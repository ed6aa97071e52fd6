/**
 * Parley's capacity benchmark: Parley in its own process, a load generator in another, N concurrent calls on one
 * carrier's protocol (Twilio by default; --carrier telnyx|plivo: Parley configured for that carrier) speaking real recordings in real time (pauses and barge-ins included) and playing Parley's audio on their own
 * playout clocks.
 *
 *   npm run bench                                   # 100 calls, null providers, 20 s of talk each
 *   npm run bench -- --calls 300 --providers embedded
 *   npm run bench -- --capacity --providers both    # largest N with zero underruns and p99 inbound < 20 ms (all N live), per mode
 *   npm run bench -- --capacity --repeat 3          # ... in each of 3 runs per N
 *   npm run bench -- --calls 100 --carrier telnyx    # the same load on Telnyx's wire (or plivo)
 *   npm run bench -- --capacity --generator-nice 10 # the load generator at a lower CPU priority than Parley
 *   npm run bench -- --merge bench/out/a.json,bench/out/b.json   # one chart from capacity ladders run separately
 *   npm run bench -- --calls 300 --node-args="--cpu-prof --cpu-prof-dir=bench/out/prof"   # profile Parley under load
 *   npm run bench -- --soak --calls 50 --minutes 10   # 50 calls live for 10 min, replaced as they end: memory slopes (bench/soak.ts)
 *
 * Reports p50/p95/p99/max of inbound frame handling (frame received -> VAD decision, measured in Parley), event-loop
 * delay, turn latency, barge-in latency and greeting latency (measured by the generator), underruns the callers would
 * hear, and Parley's CPU and RSS per call. Writes bench/out/bench-<mode>-<N>.json and an SVG chart; with --capacity,
 * bench/out/capacity.json and capacity.svg. Also runs the VAD side-by-side (batched pool vs one session per call).
 */
import { fork, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { setPriority } from "node:os";
import { histogram, lines, page, type Panel } from "./chart.ts";
import type { GeneratorMessage, ResultMessage } from "./load/protocol.ts";
import { parseCli, usageError } from "./cli.ts";
import { machine, procUsage, startParley, stats } from "./parley-process.ts";
import { report } from "./report.ts";
import { loadCarrier } from "./load/carrier-setup.ts";
import { soak } from "./soak.ts";

const USAGE = `
npm run bench -- [options]     Parley's capacity benchmark (Parley and a load generator in their own processes)

  --calls N              concurrent calls (default 100)
  --seconds S            talk time per call (default 20)
  --providers MODE       null | embedded | both (default null)
  --carrier NAME         twilio (default), telnyx or plivo: the wire the calls come in on, Parley configured for it
  --capacity             find the largest N with zero underruns and p99 inbound < 20 ms, per mode
  --ladder N,N,...       the N tried with --capacity, null providers (default 50,100,200,300,400,500,600)
  --ladder-embedded N,.. the same for embedded providers (default 10,25,50,100)
  --repeat K             with --capacity: runs per N; N counts only if every run passes (default 1)
  --skip-vad             with --capacity: skip the VAD side-by-side
  --generator-nice K     run the load generator at this nice value (default 0)
  --merge A.json,B.json  one capacity chart from ladders run separately
  --node-args "..."      extra Node options for Parley's process (e.g. --cpu-prof)
  --soak                 soak run: --calls kept live continuously for --minutes; reports RSS and heap slopes
  --minutes M            soak length in minutes (default 10)
  --sample-seconds S     soak: seconds between memory samples (default 2)
  -h, --help             this text
`;
const { values, check } = parseCli("bench", USAGE, {
  calls: { type: "string", default: "100" },
  seconds: { type: "string", default: "20" },
  providers: { type: "string", default: "null" },
  carrier: { type: "string", default: "twilio" },
  capacity: { type: "boolean", default: false },
  ladder: { type: "string", default: "50,100,200,300,400,500,600" },
  "ladder-embedded": { type: "string", default: "10,25,50,100" },
  "skip-vad": { type: "boolean", default: false },
  // With --capacity: run each N this many times; N counts only if every run passes (tails vary from run to run).
  repeat: { type: "string", default: "1" },
  "generator-nice": { type: "string", default: "0" },
  merge: { type: "string", default: "" },
  // Extra Node options for Parley's process, to profile it under load: --node-args="--cpu-prof --cpu-prof-dir=bench/out/prof"
  "node-args": { type: "string", default: "" },
  soak: { type: "boolean", default: false },
  minutes: { type: "string", default: "10" },
  "sample-seconds": { type: "string", default: "2" },
});
const CALLS = check.int("calls", 1);
const SECONDS = check.positive("seconds");
const PROVIDERS = check.oneOf("providers", ["null", "embedded", "both"] as const);
const CARRIER = check.oneOf("carrier", ["twilio", "telnyx", "plivo"] as const);
/** Output files keep their names on Twilio (earlier runs compare with them) and name any other carrier. */
const CARRIER_SUFFIX = CARRIER === "twilio" ? "" : `-${CARRIER}`;
const LADDER = check.intList("ladder");
const LADDER_EMBEDDED = check.intList("ladder-embedded");
const REPEAT = check.int("repeat", 1);
const SOAK_MINUTES = check.positive("minutes");
const SAMPLE_SECONDS = check.positive("sample-seconds");
// The generator stands in for Twilio, whose servers are not on Parley's machine. A positive nice value keeps it from
// taking CPU from Parley in a way Twilio could not (its own timing may suffer, which only counts against Parley).
const GEN_NICE = check.int("generator-nice", -20);
if (GEN_NICE > 19) usageError("bench", `--generator-nice must be between -20 and 19, got '${GEN_NICE}'`);
const OUT = "bench/out";
mkdirSync(OUT, { recursive: true });

type Mode = "null" | "embedded";
/** What Parley's /debug/stats says of the steady state (every call live): its own percentiles since the mark, the VAD
 *  decision's breakdown by step, and the main thread's GC pauses. */
type SteadyStats = { inboundMs: Percentiles; eventLoopMs: Percentiles; vadDecision?: VadDecision; gc?: GcSummary };
type VadDecision = { stagesMs: Record<string, { count: number; p50: number; p99: number; max: number }>; batchRows: { p50: number; p99: number; max: number } };
type GcSummary = { count: number; totalMs: number; maxMs: number; byKind: Record<string, { count: number; totalMs: number; maxMs: number }> };
interface Percentiles {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

const cores = machine().cores;
/** Busy and total jiffies of the whole machine, from /proc/stat: what every process together left idle. */
function machineJiffies(): { busy: number; total: number; steal: number } {
  const cpu = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = cpu.reduce((a, b) => a + b, 0);
  const idle = (cpu[3] ?? 0) + (cpu[4] ?? 0); // idle + iowait
  // Time the hypervisor gave our virtual CPUs to someone else: on a shared host, the cores are not all ours.
  const steal = cpu[7] ?? 0;
  return { busy: total - idle - steal, total, steal };
}

function bar(frac: number, width = 30): string {
  const n = Math.round(Math.max(0, Math.min(1, frac)) * width);
  return `[${"#".repeat(n)}${".".repeat(width - n)}]`;
}

async function runOnce(calls: number, mode: Mode) {
  const env: Record<string, string> = { MAX_CONCURRENT_CALLS: "10000", RATE_LIMIT_PER_MINUTE: "1000000", LOG_LEVEL: "error", GREETING: "Hello, this is Parley." };
  if (mode === "null") Object.assign(env, { STT_PROVIDER: "null", TTS_PROVIDER: "null" });
  const carrier = await loadCarrier(CARRIER);
  Object.assign(env, carrier.env);
  // Carrier credentials make Parley require an API token for its control API (and /debug): the bench holds one.
  const auth: Record<string, string> = carrier.env.API_TOKEN ? { authorization: `Bearer ${carrier.env.API_TOKEN}` } : {};
  const parley = await startParley(env, values["node-args"].split(" ").filter(Boolean));
  const pid = parley.child.pid!;
  try {
    await fetch(`${parley.url}/debug/stats/reset`, { method: "POST", headers: auth });
    const before = procUsage(pid);
    const machineBefore = machineJiffies();
    let lastJ = machineBefore;
    const machineBusy: number[] = []; // cores busy, per progress tick (~1 s)
    const machineSteal: number[] = []; // cores taken by the hypervisor, per tick
    let steady: "waiting" | "on" | "done" = "waiting";
    let steadyStats: Promise<SteadyStats> | null = null;
    let steadyFrom = -1;
    let steadyS = 0;
    // The figures since the mark, read when the first call ends (or at the end, if none ended early).
    const endSteady = (elapsedS: number) => {
      steady = "done";
      steadyStats = fetch(`${parley.url}/debug/stats`, { headers: auth }).then(async (r) => {
        const j = (await r.json()) as { sinceMark: SteadyStats; vad: { decision: VadDecision }; gcSinceMark: GcSummary };
        return { ...j.sinceMark, vadDecision: j.vad.decision, gc: j.gcSinceMark };
      });
      steadyS = elapsedS - steadyFrom;
    };
    let lastElapsedS = 0;
    let peakRss = before.rssMiB;
    const rampMs = Math.min(10_000, calls * 20);
    const gen = fork("bench/load/generator.ts", ["--url", parley.url, "--calls", String(calls), "--seconds", String(SECONDS), "--ramp-ms", String(rampMs), ...carrier.generatorArgs], {
      execArgv: ["--import", "tsx"],
      stdio: ["ignore", "ignore", "inherit", "ipc"],
    });
    if (GEN_NICE) setPriority(gen.pid!, GEN_NICE);
    const total = rampMs / 1000 + SECONDS + 8;
    const result = await new Promise<ResultMessage>((resolve, reject) => {
      gen.on("message", (m: GeneratorMessage) => {
        if (m.type === "progress") {
          peakRss = Math.max(peakRss, procUsage(pid).rssMiB);
          const j = machineJiffies();
          machineBusy.push(((j.busy - lastJ.busy) / Math.max(1, j.total - lastJ.total)) * cores);
          machineSteal.push(((j.steal - lastJ.steal) / Math.max(1, j.total - lastJ.total)) * cores);
          lastJ = j;
          // The steady state: from when every call is live until the first one ends.
          if (steady === "waiting" && m.callsLive >= calls) {
            steady = "on";
            void fetch(`${parley.url}/debug/stats/mark`, { method: "POST", headers: auth });
          } else if (steady === "on" && m.callsLive < calls) endSteady(m.elapsedS);
          if (steady === "on" && steadyFrom < 0) steadyFrom = m.elapsedS;
          lastElapsedS = m.elapsedS;
          process.stderr.write(
            `\r${mode} N=${calls} ${bar(m.elapsedS / total)} ${m.elapsedS.toFixed(0)}/${total.toFixed(0)} s  live ${m.callsLive}  underrun ${m.underrunMs.toFixed(0)} ms   `,
          );
        } else if (m.type === "result") {
          // Every call stayed live to the end (they all hung up within the last progress tick).
          if (steady === "on") endSteady(lastElapsedS);
          resolve(m);
        }
        else reject(new Error(`load generator: ${m.message}`));
      });
      gen.on("exit", (code) => (code ? reject(new Error(`load generator exited with ${code}`)) : undefined));
    });
    process.stderr.write("\n");
    // Set from the progress handler, which TypeScript's flow analysis does not see.
    const steadyResult = await (steadyStats as Promise<SteadyStats> | null);
    const after = procUsage(pid);
    const machineAfter = machineJiffies();
    const server = (await (await fetch(`${parley.url}/debug/stats`, { headers: auth })).json()) as {
      inboundMs: Percentiles;
      eventLoopMs: Percentiles;
      underrunMs: number;
      windows: number;
      vad: Record<string, number>;
      inboundPerSecond: { maxMs: number; over20: number; gcMs: number; gcMaxMs: number }[];
    };
    // Parley's own hand-off times under this load, from the call records (STT final -> agent, first token -> TTS,
    // first TTS byte -> first frame).
    const handoffs = { sttToAgentMs: [] as number[], agentToTtsMs: [] as number[], ttsToFrameMs: [] as number[] };
    for (const c of result.perCall) {
      const rec = (await (await fetch(`${parley.url}/api/calls/${c.callSid}`, { headers: auth })).json()) as { turns?: { latency?: { handoff?: Record<string, number | null> } }[] };
      for (const t of rec.turns ?? [])
        for (const k of Object.keys(handoffs) as (keyof typeof handoffs)[]) {
          const v = t.latency?.handoff?.[k];
          if (typeof v === "number") handoffs[k].push(v);
        }
    }
    const talkSeconds = calls * SECONDS;
    return {
      mode,
      carrier: CARRIER,
      calls,
      secondsPerCall: SECONDS,
      generatorNice: GEN_NICE,
      // The whole run, call set-up (a ramp of 50 calls a second) and teardown (calls ending together) included.
      inboundMs: server.inboundMs,
      eventLoopMs: server.eventLoopMs,
      // Every call live: what a machine carrying N calls sees between arrivals and departures.
      steady: steadyResult ? { seconds: steadyS, ...steadyResult } : null,
      vad: server.vad,
      serverUnderrunMs: server.underrunMs,
      callerUnderrunMs: result.underrunMs,
      lateFrames: result.lateFrames,
      lateAfterClear: result.lateAfterClear,
      turnLatencyMs: stats(result.turnLatencyMs),
      bargeInMs: stats(result.bargeInMs),
      greetingMs: stats(result.greetingMs),
      handoffMs: { sttToAgent: stats(handoffs.sttToAgentMs), agentToTts: stats(handoffs.agentToTtsMs), ttsToFrame: stats(handoffs.ttsToFrameMs) },
      cpuMsPerCallSecond: (after.cpuMs - before.cpuMs) / talkSeconds,
      cpuCoresUsed: (after.cpuMs - before.cpuMs) / 1000 / total,
      // Where the machine's CPU went over the run (all of it, ramp and wind-down included): Parley (of which VAD
      // inference), the load generator, and everything else. Cores = CPU seconds / wall seconds.
      cpuBudget: {
        wallS: total,
        machineBusyCores: ((machineAfter.busy - machineBefore.busy) / (machineAfter.total - machineBefore.total)) * cores,
        stealCores: ((machineAfter.steal - machineBefore.steal) / (machineAfter.total - machineBefore.total)) * cores,
        parleyCores: (after.cpuMs - before.cpuMs) / 1000 / total,
        vadInferenceCores: Number(server.vad.inferenceMs ?? 0) / 1000 / total,
        generatorCores: result.cpuMs / 1000 / total,
        // The busiest 3 s of the run, when every call is live.
        peakMachineBusyCores: Math.max(0, ...machineBusy.slice(2).map((_, i) => (machineBusy[i]! + machineBusy[i + 1]! + machineBusy[i + 2]!) / 3)),
        peakStealCores: Math.max(0, ...machineSteal),
      },
      rssMiBPerCall: (peakRss - before.rssMiB) / calls,
      rssPeakMiB: peakRss,
      generator: { eventLoopP99Ms: result.eventLoopP99Ms, cpuMs: result.cpuMs, framesSent: result.framesSent, framesReceived: result.framesReceived, errors: result.errors },
      pass: result.underrunMs === 0 && !!steadyResult && steadyResult.inboundMs.p99 < 20,
      stealTimeline: machineSteal,
      raw: { turnLatencyMs: result.turnLatencyMs, bargeInMs: result.bargeInMs, underrunTimeline: result.underrunTimeline, inboundPerSecond: server.inboundPerSecond },
    };
  } finally {
    parley.child.kill("SIGTERM");
  }
}

type Run = Awaited<ReturnType<typeof runOnce>>;


function runChart(r: Run): string {
  const panels: Panel[] = [
    histogram("Turn latency (end of speech -> first reply frame)", r.raw.turnLatencyMs),
    histogram("Barge-in latency (speech onset -> clear)", r.raw.bargeInMs),
    lines("Underrun heard by callers, per second", "s", "ms", [{ name: "underrun", points: r.raw.underrunTimeline.map((v, i) => [i, v]), color: "#e15759" }]),
    lines("Slowest inbound frame -> VAD decision, per second", "s", "ms", [{ name: "max", points: r.raw.inboundPerSecond.map((b, i) => [i, b.maxMs]), color: "#4e79a7" }], 20),
    lines("Inbound handling and event loop (p50/p95/p99/max)", "percentile", "ms", [
      { name: "frame -> VAD decision", points: [[50, r.inboundMs.p50], [95, r.inboundMs.p95], [99, r.inboundMs.p99], [100, r.inboundMs.max]], color: "#4e79a7" },
      { name: "event-loop delay", points: [[50, r.eventLoopMs.p50], [95, r.eventLoopMs.p95], [99, r.eventLoopMs.p99], [100, r.eventLoopMs.max]], color: "#f28e2b" },
    ], 20),
  ];
  const m = machine();
  return page(
    `Parley: ${r.calls} concurrent calls on ${r.carrier}, ${r.mode} providers — ${r.pass ? "PASS" : "FAIL"}`,
    `${m.cpu}, ${m.cores} cores, ${m.memGiB} GiB, Node ${m.node} · npm run bench -- --calls ${r.calls} --providers ${r.mode} --carrier ${r.carrier}`,
    panels,
  );
}

function vadSideBySide(): unknown {
  if (values["skip-vad"]) return null;
  process.stderr.write("VAD side by side: batched pool vs one ONNX session per call …\n");
  const res = spawnSync(process.execPath, ["--import", "tsx", "bench/vad-batching.ts", "--streams", "50,200", "--seconds", "10"], { stdio: ["ignore", "inherit", "inherit"] });
  if (res.status !== 0) return { error: `vad-batching exited with ${res.status}` };
  return JSON.parse(readFileSync(`${OUT}/vad-batching.json`, "utf8"));
}


type RunSummary = Omit<Run, "raw">;

/** The capacity chart: p99 inbound, underruns, CPU and RSS per call against N, per provider mode. */
function capacityChart(results: Record<string, RunSummary[]>, capacity: Record<string, number>, command: string): string {
  const colors = { null: "#4e79a7", embedded: "#f28e2b" } as Record<string, string>;
  const panels = [
      lines(
        "p99 inbound frame -> VAD decision vs calls",
        "concurrent calls",
        "ms",
        Object.entries(results).flatMap(([m, rs]) => [
          { name: `${m}, all calls live`, color: colors[m]!, points: rs.filter((r) => r.steady).map((r) => [r.calls, r.steady!.inboundMs.p99] as [number, number]) },
          { name: `${m}, whole run`, color: m === "null" ? "#9ecae9" : "#ffbf79", points: rs.map((r) => [r.calls, r.inboundMs.p99] as [number, number]) },
        ]),
        20,
      ),
      lines("Underrun heard vs calls", "concurrent calls", "ms", Object.entries(results).map(([m, rs]) => ({ name: m, color: colors[m]!, points: rs.map((r) => [r.calls, r.callerUnderrunMs] as [number, number]) }))),
      lines("CPU per call-second", "concurrent calls", "ms", Object.entries(results).map(([m, rs]) => ({ name: m, color: colors[m]!, points: rs.map((r) => [r.calls, r.cpuMsPerCallSecond] as [number, number]) }))),
      lines("RSS per call", "concurrent calls", "MiB", Object.entries(results).map(([m, rs]) => ({ name: m, color: colors[m]!, points: rs.map((r) => [r.calls, r.rssMiBPerCall] as [number, number]) })), 2),
  ];
  const m = machine();
  return page(`Parley capacity: ${Object.entries(capacity).map(([k, v]) => `${k} ${v} calls`).join(", ")}`, `${m.cpu}, ${m.cores} cores, ${m.memGiB} GiB, Node ${m.node} · ${command}`, panels);
}

/** --merge a.json,b.json: one capacity chart and summary from ladders run separately (e.g. one per provider mode). */
function merge(files: string[]): void {
  const results: Record<string, RunSummary[]> = {};
  const capacity: Record<string, number> = {};
  const commands: string[] = [];
  let vad: unknown = null;
  for (const f of files) {
    const summary = JSON.parse(readFileSync(f, "utf8")) as { capacity: Record<string, number>; runs: Record<string, RunSummary[]>; vad: unknown; command?: string };
    Object.assign(capacity, summary.capacity);
    Object.assign(results, summary.runs);
    vad ??= summary.vad;
    if (summary.command) commands.push(summary.command);
  }
  writeFileSync(`${OUT}/capacity-merged.json`, JSON.stringify({ machine: machine(), capacity, runs: results, vad, commands }, null, 2));
  writeFileSync(`${OUT}/capacity-merged.svg`, capacityChart(results, capacity, commands.join(" + ") || files.join(" + ")));
  console.log(`capacity ${JSON.stringify(capacity)}\nwritten: ${OUT}/capacity-merged.json, capacity-merged.svg`);
}

async function main() {
  if (values.merge) return merge(values.merge.split(","));
  if (values.soak) {
    if (PROVIDERS === "both") usageError("bench", "--soak runs one provider mode: --providers null or embedded");
    return soak({ calls: CALLS, secondsPerCall: SECONDS, minutes: SOAK_MINUTES, sampleSeconds: SAMPLE_SECONDS, mode: PROVIDERS, nodeArgs: values["node-args"].split(" ").filter(Boolean), generatorNice: GEN_NICE, out: OUT });
  }
  const modes: Mode[] = PROVIDERS === "both" ? ["null", "embedded"] : [PROVIDERS];
  if (!values.capacity) {
    for (const mode of modes) {
      const r = await runOnce(CALLS, mode);
      report(r, cores);
      const file = `${OUT}/bench-${mode}-${r.calls}${CARRIER_SUFFIX}`;
      writeFileSync(`${file}.json`, JSON.stringify({ machine: machine(), ...r }, null, 2));
      writeFileSync(`${file}.svg`, runChart(r));
      console.log(`written: ${file}.json, .svg`);
    }
  } else {
    const ladders: Record<Mode, number[]> = { null: LADDER, embedded: LADDER_EMBEDDED };
    const results: Record<string, Run[]> = {};
    const capacity: Record<string, number> = {};
    for (const mode of modes) {
      results[mode] = [];
      capacity[mode] = 0;
      ladder: for (const n of ladders[mode]) {
        for (let i = 0; i < REPEAT; i++) {
          const r = await runOnce(n, mode);
          report(r, cores);
          results[mode]!.push(r);
          if (!r.pass) break ladder;
        }
        capacity[mode] = n;
      }
    }
    const vad = vadSideBySide();
    const summary = {
      machine: machine(),
      capacity,
      runs: Object.fromEntries(Object.entries(results).map(([m, rs]) => [m, rs.map(({ raw: _raw, ...r }) => r)])),
      vad,
      command: `npm run bench -- ${process.argv.slice(2).join(" ")}`,
    };
    const name = `capacity${CARRIER_SUFFIX}${GEN_NICE ? `-nice${GEN_NICE}` : ""}`;
    writeFileSync(`${OUT}/${name}.json`, JSON.stringify(summary, null, 2));
    writeFileSync(`${OUT}/${name}.svg`, capacityChart(results, capacity, `npm run bench -- ${process.argv.slice(2).join(" ")}`));
    console.log(`\ncapacity (zero underruns, p99 inbound < 20 ms with every call live): ${JSON.stringify(capacity)}\nwritten: ${OUT}/${name}.json, ${name}.svg`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
