/**
 * Two instances against one (issue #14's target: "two instances on this machine carry at least as many calls as one,
 * with no added p99 inbound latency"). The same load generator as the capacity bench (bench/load/generator.ts), N
 * calls speaking real recordings in real time, first at one Parley process as `npm run bench` runs it (no Redis), then
 * at a fleet: a real redis-server, two Parley processes (REDIS_URL, each its own DATA_DIR, INSTANCE_ID, INSTANCE_URL)
 * and a round-robin load balancer in front (test/helpers/fleet.ts), which gets the webhooks; each call's media stream
 * goes straight to the instance that answered it. Prints both side by side and writes bench/out/fleet-<mode>-<N>.json.
 */
import { fork } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { TestFleet } from "../test/helpers/fleet.ts";
import { parseCli } from "./cli.ts";
import type { GeneratorMessage, ResultMessage } from "./load/protocol.ts";
import { machine, procUsage, startParley, stats } from "./parley-process.ts";

const USAGE = `
npm run bench:fleet -- [options]     one Parley instance against a fleet of two on Redis, at the same N

  --calls N          concurrent calls (default 100)
  --seconds S        talk time per call (default 20)
  --providers MODE   null | embedded (default null, as npm run bench)
  --skip-single      run the fleet only
  -h, --help         this text

The measurement for README (on a quiet machine; each N takes about a minute and a half):
  for n in 150 200 250 300; do npm run bench:fleet -- --calls $n --seconds 20; done
Validate the set-up at small N first: npm run bench:fleet -- --calls 20 --seconds 10
`;
const { values, check } = parseCli("bench:fleet", USAGE, {
  calls: { type: "string", default: "100" },
  seconds: { type: "string", default: "20" },
  providers: { type: "string", default: "null" },
  "skip-single": { type: "boolean", default: false },
});
const CALLS = check.int("calls", 1);
const SECONDS = check.positive("seconds");
const MODE = check.oneOf("providers", ["null", "embedded"] as const);
const OUT = "bench/out";

/** Settings as the capacity bench runs Parley. */
const ENV: Record<string, string> = { MAX_CONCURRENT_CALLS: "10000", RATE_LIMIT_PER_MINUTE: "1000000", LOG_LEVEL: "error", GREETING: "Hello, this is Parley." };
if (MODE === "null") Object.assign(ENV, { STT_PROVIDER: "null", TTS_PROVIDER: "null" });

type Percentiles = { count: number; p50: number; p95: number; p99: number; max: number };
type Stats = { liveCalls: number; inboundMs: Percentiles; sinceMark: { inboundMs: Percentiles; eventLoopMs: Percentiles }; underrunMs: number; redis?: { ops: Record<string, number>; total: number } };
interface Instance {
  name: string;
  url: string;
  pid: number;
}

const getStats = async (i: Instance) => (await (await fetch(`${i.url}/debug/stats`)).json()) as Stats;
const post = (i: Instance, path: string) => fetch(`${i.url}${path}`, { method: "POST" }).then((r) => r.body?.cancel());

/** N calls at `target` (the instance, or the load balancer); Parley's own figures from each instance. */
async function measure(target: string, instances: Instance[], redisPid?: number) {
  await Promise.all(instances.map((i) => post(i, "/debug/stats/reset")));
  const cpu0 = instances.map((i) => procUsage(i.pid).cpuMs);
  const redisCpu0 = redisPid ? procUsage(redisPid).cpuMs : 0;
  const rampMs = Math.min(10_000, CALLS * 20);
  const gen = fork("bench/load/generator.ts", ["--url", target, "--calls", String(CALLS), "--seconds", String(SECONDS), "--ramp-ms", String(rampMs)], {
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "ignore", "inherit", "ipc"],
  });
  const t0 = performance.now();
  // The steady state, every call live: marked on each instance when it starts, read when the first call ends.
  let steady: "waiting" | "on" | "done" = "waiting";
  let atMark: { frames: number; live: number[]; redis: Stats["redis"][] } | null = null;
  let steadyRead: Promise<{ stats: Stats[]; frames: number }> | null = null;
  let frames = 0;
  const readSteady = () => {
    steady = "done";
    const f = frames;
    steadyRead = Promise.all(instances.map(getStats)).then((s) => ({ stats: s, frames: f - atMark!.frames }));
  };
  const result = await new Promise<ResultMessage>((resolve, reject) => {
    gen.on("message", (m: GeneratorMessage) => {
      if (m.type === "progress") {
        frames = m.framesSent + m.framesReceived;
        if (steady === "waiting" && m.callsLive >= CALLS) {
          steady = "on";
          const f = frames;
          void Promise.all(instances.map((i) => post(i, "/debug/stats/mark").then(() => getStats(i)))).then((s) => (atMark = { frames: f, live: s.map((x) => x.liveCalls), redis: s.map((x) => x.redis) }));
        } else if (steady === "on" && m.callsLive < CALLS && atMark) readSteady();
        process.stderr.write(`\r${instances.length} instance(s), N=${CALLS}: ${m.elapsedS.toFixed(0)} s, live ${m.callsLive}, underrun ${m.underrunMs.toFixed(0)} ms   `);
      } else if (m.type === "result") {
        if (steady === "on" && atMark) readSteady();
        resolve(m);
      } else reject(new Error(`load generator: ${m.message}`));
    });
    gen.on("exit", (code) => (code ? reject(new Error(`load generator exited with ${code}`)) : undefined));
  });
  process.stderr.write("\n");
  const wallS = (performance.now() - t0) / 1000;
  const steadyStats = await (steadyRead as Promise<{ stats: Stats[]; frames: number }> | null);
  const end = await Promise.all(instances.map(getStats));
  const perInstance = instances.map((inst, k) => {
    const s = steadyStats?.stats[k];
    return {
      name: inst.name,
      callsAtSteady: atMark?.live[k] ?? null,
      p99InboundSteadyMs: s?.sinceMark.inboundMs.p99 ?? null,
      p99InboundRunMs: end[k]!.inboundMs.p99,
      p99EventLoopSteadyMs: s?.sinceMark.eventLoopMs.p99 ?? null,
      serverUnderrunMs: end[k]!.underrunMs,
      cpuCores: (procUsage(inst.pid).cpuMs - cpu0[k]!) / 1000 / wallS,
    };
  });
  // Redis commands: over the run (per call), and while every call was live (per media frame, by kind).
  const redisTotal = end.reduce((a, s) => a + (s.redis?.total ?? 0), 0);
  const runOps: Record<string, number> = {};
  for (const s of end) for (const [kind, n] of Object.entries(s.redis?.ops ?? {})) runOps[kind] = (runOps[kind] ?? 0) + n;
  const steadyOps: Record<string, number> = {};
  if (steadyStats && atMark)
    steadyStats.stats.forEach((s, k) => {
      for (const [kind, n] of Object.entries(s.redis?.ops ?? {})) steadyOps[kind] = (steadyOps[kind] ?? 0) + n - (atMark!.redis[k]?.ops[kind] ?? 0);
    });
  const steadyOpsTotal = Object.values(steadyOps).reduce((a, b) => a + b, 0);
  const p99s = perInstance.map((p) => p.p99InboundSteadyMs).filter((x): x is number => x !== null);
  return {
    instances: instances.length,
    calls: CALLS,
    perInstance,
    // The p99 of the two instances' frames together lies between the two p99s (a mixture's quantile lies between its
    // parts'), so the larger is a bound on it, exact for one instance.
    p99InboundSteadyMs: p99s.length ? Math.max(...p99s) : null,
    callerUnderrunMs: result.underrunMs,
    lateFrames: result.lateFrames,
    callsFailed: result.perCall.filter((c) => c.end !== "caller").length,
    turnLatencyMs: stats(result.turnLatencyMs),
    cpuCoresParley: perInstance.reduce((a, p) => a + p.cpuCores, 0),
    cpuCoresRedis: redisPid ? (procUsage(redisPid).cpuMs - redisCpu0) / 1000 / wallS : 0,
    // While every call is live no command is sent per frame (test/fleet.test.ts counts zero over a second of media):
    // what runs is time-based (the load balancer's health checks, each a rate-limit take; slot and lease renewals) or
    // per turn (record appends). Spread over the frames of that time, for scale.
    redis: redisPid ? { commandsPerCall: redisTotal / CALLS, runByKind: runOps, steadyFrames: steadyStats?.frames ?? 0, steadyCommands: steadyOpsTotal, commandsPerFrame: steadyStats?.frames ? steadyOpsTotal / steadyStats.frames : null, steadyByKind: steadyOps } : null,
    pass: result.underrunMs === 0 && p99s.length === instances.length && Math.max(...p99s) < 20,
  };
}

async function single() {
  const parley = await startParley(ENV);
  try {
    return await measure(parley.url, [{ name: "single", url: parley.url, pid: parley.child.pid! }]);
  } finally {
    parley.child.kill("SIGTERM");
  }
}

async function fleet() {
  // Health checks every second, as deploy/haproxy.cfg does (each is a request, and so a rate-limit take in Redis).
  const f = await TestFleet.start({ roundRobin: true, env: () => ENV, checkMs: 1000 });
  try {
    return await measure(
      f.lb.url,
      f.names.map((n) => ({ name: n, url: f.url(n), pid: f.proc[n]!.pid! })),
      f.redis.pid,
    );
  } finally {
    await f.close();
  }
}

type Result = Awaited<ReturnType<typeof measure>>;

function table(runs: Result[]): string {
  const fmt = (x: number | null | undefined, d = 1) => (x === null || x === undefined || Number.isNaN(x) ? "—" : x.toFixed(d));
  const rows: [string, (r: Result) => string][] = [
    ["calls per instance (all live)", (r) => r.perInstance.map((p) => p.callsAtSteady ?? "—").join(" + ")],
    ["p99 inbound, all live (ms), per instance", (r) => r.perInstance.map((p) => fmt(p.p99InboundSteadyMs, 2)).join(" / ")],
    ["p99 inbound, all live (ms), combined (≤)", (r) => fmt(r.p99InboundSteadyMs, 2)],
    ["p99 inbound, whole run (ms), per instance", (r) => r.perInstance.map((p) => fmt(p.p99InboundRunMs, 2)).join(" / ")],
    ["p99 event-loop delay, all live (ms)", (r) => r.perInstance.map((p) => fmt(p.p99EventLoopSteadyMs, 1)).join(" / ")],
    ["underrun heard by callers (ms)", (r) => fmt(r.callerUnderrunMs, 0)],
    ["late frames", (r) => String(r.lateFrames)],
    ["calls not ended by the caller", (r) => String(r.callsFailed)],
    ["turn latency p50 / p99 (ms)", (r) => `${fmt(r.turnLatencyMs.p50, 0)} / ${fmt(r.turnLatencyMs.p99, 0)}`],
    ["CPU per instance (cores)", (r) => r.perInstance.map((p) => fmt(p.cpuCores, 2)).join(" / ")],
    ["CPU, Parley total + Redis (cores)", (r) => `${fmt(r.cpuCoresParley, 2)} + ${fmt(r.cpuCoresRedis, 2)}`],
    ["Redis commands per call (all: health checks too)", (r) => (r.redis ? fmt(r.redis.commandsPerCall, 1) : "—")],
    ["Redis commands / frames, all live (none per frame)", (r) => (r.redis ? `${fmt(r.redis.commandsPerFrame, 4)} (${r.redis.steadyCommands} in ${r.redis.steadyFrames} frames)` : "—")],
    ["verdict (no underrun, p99 < 20 ms)", (r) => (r.pass ? "PASS" : "FAIL")],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  const cols = runs.map((r) => (r.instances === 1 ? "one instance" : `${r.instances} instances + Redis`));
  const cw = Math.max(24, ...rows.flatMap(([, f]) => runs.map((r) => f(r).length)));
  return [`${"".padEnd(w)}  ${cols.map((c) => c.padEnd(cw)).join("  ")}`, ...rows.map(([k, f]) => `${k.padEnd(w)}  ${runs.map((r) => f(r).padEnd(cw)).join("  ")}`)].join("\n");
}

async function main() {
  mkdirSync(OUT, { recursive: true });
  const runs: Result[] = [];
  if (!values["skip-single"]) runs.push(await single());
  runs.push(await fleet());
  const m = machine();
  console.log(`\nN=${CALLS}, ${SECONDS} s per call, ${MODE} providers; ${m.cpu}, ${m.cores} cores, Node ${m.node}\n${table(runs)}`);
  const last = runs.at(-1)!;
  if (last.redis) {
    console.log(`Redis commands over the run, by kind (rate-limit takes: one per request, health checks included): ${JSON.stringify(last.redis.runByKind)}`);
    console.log(`Redis commands while every call was live, by kind: ${JSON.stringify(last.redis.steadyByKind)}`);
  }
  const file = `${OUT}/fleet-${MODE}-${CALLS}.json`;
  writeFileSync(file, JSON.stringify({ machine: m, command: `npm run bench:fleet -- ${process.argv.slice(2).join(" ")}`, secondsPerCall: SECONDS, runs }, null, 2));
  console.log(`written: ${file}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
