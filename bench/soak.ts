/**
 * Soak run (`npm run bench -- --soak --calls 50 --minutes 10`): Parley in its own process, the load generator keeping
 * `calls` calls live for `minutes` (each call talks `seconds`, hangs up, and a new call takes its place), and Parley's
 * memory sampled every few seconds from /debug/stats. Reports, by least squares over the samples after a warm-up:
 *   - RSS, heap used and external memory slopes in MiB per hour;
 *   - the same against calls served (KiB per call): nothing may grow with the number of calls served;
 *   - the live heap: every 15 s the bench forces a full garbage collection in Parley through the inspector (Parley
 *     runs with --inspect on a loopback port for the soak) and reads the heap left, which is what a leak shows in;
 *     the raw heap saw-tooths with every GC cycle;
 *   - the heap floor (the smallest heap-used sample in each 30 s), a rougher version of the same.
 * Writes bench/out/soak-<mode>-<N>.json and .svg.
 */
import { fork } from "node:child_process";
import WebSocket from "ws";
import { writeFileSync } from "node:fs";
import { setPriority } from "node:os";
import { lines, page } from "./chart.ts";
import type { GeneratorMessage, ResultMessage } from "./load/protocol.ts";
import { freePort, machine, startParley } from "./parley-process.ts";
import { num } from "./table.ts";

export interface SoakOptions {
  calls: number;
  secondsPerCall: number;
  minutes: number;
  sampleSeconds: number;
  mode: "null" | "embedded";
  nodeArgs: string[];
  generatorNice: number;
  out: string;
}

export interface MemorySample {
  /** Seconds since the load started. */
  t: number;
  /** Calls that have ended so far (served). */
  served: number;
  live: number;
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  /** Heap used right after a forced full GC (MiB), on the samples that forced one. */
  liveHeap?: number;
}

/** A CDP connection to Parley's inspector: force a full GC and read the heap left. */
async function inspector(port: number): Promise<{ liveHeapMiB(): Promise<number>; close(): void }> {
  const [target] = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as { webSocketDebuggerUrl: string }[];
  const ws = new WebSocket(target!.webSocketDebuggerUrl, { perMessageDeflate: false });
  await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
  let id = 0;
  const pending = new Map<number, (r: unknown) => void>();
  ws.on("message", (d) => {
    const m = JSON.parse(d.toString()) as { id?: number; result?: unknown };
    if (m.id !== undefined) pending.get(m.id)?.(m.result), pending.delete(m.id);
  });
  const call = (method: string) => new Promise<unknown>((resolve) => (pending.set(++id, resolve), ws.send(JSON.stringify({ id, method }))));
  return {
    async liveHeapMiB() {
      await call("HeapProfiler.collectGarbage");
      const { usedSize } = (await call("Runtime.getHeapUsage")) as { usedSize: number };
      return usedSize / 2 ** 20;
    },
    close: () => ws.close(),
  };
}

/** Least-squares line y = a + b x, with the standard error of the slope. */
export function regression(xs: number[], ys: number[]): { slope: number; intercept: number; slopeStdErr: number; n: number } {
  const n = xs.length;
  if (n < 3) return { slope: NaN, intercept: NaN, slopeStdErr: NaN, n };
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let sxx = 0;
  let sxy = 0;
  for (let i = 0; i < n; i++) {
    sxx += (xs[i]! - mx) ** 2;
    sxy += (xs[i]! - mx) * (ys[i]! - my);
  }
  if (sxx === 0) return { slope: NaN, intercept: NaN, slopeStdErr: NaN, n };
  const slope = sxy / sxx;
  const intercept = my - slope * mx;
  let sse = 0;
  for (let i = 0; i < n; i++) sse += (ys[i]! - intercept - slope * xs[i]!) ** 2;
  return { slope, intercept, slopeStdErr: Math.sqrt(sse / (n - 2) / sxx), n };
}

type Key = "rss" | "heapUsed" | "external" | "arrayBuffers" | "liveHeap";

/** The smallest sample of each window of `windowS` seconds: the heap after the collections in that window. */
export function floors(samples: MemorySample[], key: Key, windowS: number): MemorySample[] {
  const out = new Map<number, MemorySample>();
  for (const s of samples) {
    const v = s[key];
    if (v === undefined || !Number.isFinite(v)) continue;
    const w = Math.floor(s.t / windowS);
    const cur = out.get(w);
    if (!cur || v < cur[key]!) out.set(w, s);
  }
  return [...out.values()];
}


/** Slopes per hour and per call served, over the samples given. */
export function slopes(all: MemorySample[], key: Key) {
  const samples = all.filter((s) => Number.isFinite(s[key])) as (MemorySample & Record<Key, number>)[];
  const perSecond = regression(samples.map((s) => s.t), samples.map((s) => s[key]));
  const perCall = regression(samples.map((s) => s.served), samples.map((s) => s[key]));
  return {
    mibPerHour: perSecond.slope * 3600,
    mibPerHourStdErr: perSecond.slopeStdErr * 3600,
    kibPerCall: perCall.slope * 1024,
    kibPerCallStdErr: perCall.slopeStdErr * 1024,
    n: perSecond.n,
  };
}

export function analyse(samples: MemorySample[], warmupS: number) {
  const steady = samples.filter((s) => s.t >= warmupS);
  const half = steady.filter((s) => s.t >= (steady[0]?.t ?? 0) + ((steady.at(-1)?.t ?? 0) - (steady[0]?.t ?? 0)) / 2);
  const row = (set: MemorySample[]) => ({
    rss: slopes(set, "rss"),
    heapUsed: slopes(set, "heapUsed"),
    liveHeap: slopes(set, "liveHeap"),
    heapFloor: slopes(floors(set, "heapUsed", 30), "heapUsed"),
    external: slopes(set, "external"),
  });
  return { warmupS, afterWarmup: row(steady), lastHalf: row(half) };
}

export async function soak(o: SoakOptions): Promise<void> {
  const env: Record<string, string> = { MAX_CONCURRENT_CALLS: "10000", RATE_LIMIT_PER_MINUTE: "1000000", LOG_LEVEL: "error", GREETING: "Hello, this is Parley." };
  if (o.mode === "null") Object.assign(env, { STT_PROVIDER: "null", TTS_PROVIDER: "null" });
  const inspectPort = await freePort();
  const parley = await startParley(env, [...o.nodeArgs, `--inspect=127.0.0.1:${inspectPort}`]);
  const samples: MemorySample[] = [];
  const soakS = o.minutes * 60;
  const rampMs = Math.min(10_000, o.calls * 20);
  let served = 0;
  let live = 0;
  let sampler: NodeJS.Timeout | undefined;
  let gcSampler: NodeJS.Timeout | undefined;
  const cdp = await inspector(inspectPort);
  try {
    await fetch(`${parley.url}/debug/stats/reset`, { method: "POST" });
    const t0 = performance.now();
    const sample = async () => {
      const s = (await (await fetch(`${parley.url}/debug/stats`)).json()) as { memory: Omit<MemorySample, "t" | "served" | "live"> };
      samples.push({ t: (performance.now() - t0) / 1000, served, live, ...s.memory });
    };
    sampler = setInterval(() => void sample().catch(() => {}), o.sampleSeconds * 1000);
    gcSampler = setInterval(
      () =>
        void cdp
          .liveHeapMiB()
          .then((liveHeap) => samples.push({ t: (performance.now() - t0) / 1000, served, live, rss: NaN, heapUsed: NaN, heapTotal: NaN, external: NaN, arrayBuffers: NaN, liveHeap }))
          .catch(() => {}),
      15_000,
    );
    const gen = fork("bench/load/generator.ts", ["--url", parley.url, "--calls", String(o.calls), "--seconds", String(o.secondsPerCall), "--ramp-ms", String(rampMs), "--soak-seconds", String(soakS)], {
      execArgv: ["--import", "tsx"],
      stdio: ["ignore", "ignore", "inherit", "ipc"],
    });
    if (o.generatorNice) setPriority(gen.pid!, o.generatorNice);
    const result = await new Promise<ResultMessage>((resolve, reject) => {
      gen.on("message", (m: GeneratorMessage) => {
        if (m.type === "progress") {
          served = m.callsDone;
          live = m.callsLive;
          const last = samples.at(-1);
          process.stderr.write(
            `\rsoak ${o.mode} N=${o.calls} ${m.elapsedS.toFixed(0)}/${soakS.toFixed(0)} s  live ${m.callsLive}  served ${m.callsDone}  RSS ${num(last?.rss)} MiB  heap ${num(last?.heapUsed)} MiB   `,
          );
        } else if (m.type === "result") resolve(m);
        else reject(new Error(`load generator: ${m.message}`));
      });
      gen.on("exit", (code) => (code ? reject(new Error(`load generator exited with ${code}`)) : undefined));
    });
    clearInterval(sampler);
    clearInterval(gcSampler);
    process.stderr.write("\n");
    // Only the samples while the load was steady: the wind-down (calls ending, none replacing them) frees memory.
    const loaded = samples.filter((s) => s.t <= soakS);
    const warmupS = Math.min(120, soakS * 0.2);
    const a = analyse(loaded, warmupS);
    const summary = {
      machine: machine(),
      command: `npm run bench -- ${process.argv.slice(2).join(" ")}`,
      mode: o.mode,
      callsLive: o.calls,
      secondsPerCall: o.secondsPerCall,
      minutes: o.minutes,
      callsServed: result.calls,
      callsCompleted: result.callsCompleted,
      callsFailed: result.callsFailed,
      errors: result.errors,
      underrunMs: result.underrunMs,
      first: loaded.find((s) => Number.isFinite(s.rss)),
      last: loaded.findLast((s) => Number.isFinite(s.rss)),
      ...a,
      samples,
    };
    const name = `soak-${o.mode}-${o.calls}`;
    writeFileSync(`${o.out}/${name}.json`, JSON.stringify(summary, null, 2));
    writeFileSync(`${o.out}/${name}.svg`, chart(loaded, o, summary.command));
    printReport(summary);
    console.log(`written: ${o.out}/${name}.json, .svg`);
  } finally {
    clearInterval(sampler);
    clearInterval(gcSampler);
    cdp.close();
    parley.child.kill("SIGTERM");
  }
}

function printReport(s: { mode: string; callsLive: number; secondsPerCall: number; minutes: number; callsServed: number; callsFailed: number; errors: { total: number }; first?: MemorySample; last?: MemorySample } & ReturnType<typeof analyse>): void {
  const sl = (x: ReturnType<typeof slopes>) => `${num(x.mibPerHour, 1)} ± ${num(x.mibPerHourStdErr, 1)} | ${num(x.kibPerCall, 2)} ± ${num(x.kibPerCallStdErr, 2)}`;
  console.log(`\nsoak: ${s.mode} providers, ${s.callsLive} calls live for ${s.minutes} min (${s.secondsPerCall} s of talk each), ${s.callsServed} calls served, ${s.callsFailed} failed, ${s.errors.total} errors`);
  console.log(`memory at the start / end of the load: RSS ${num(s.first?.rss)} / ${num(s.last?.rss)} MiB, heap used ${num(s.first?.heapUsed)} / ${num(s.last?.heapUsed)} MiB`);
  console.log(`\nslopes (least squares, ± standard error), after ${num(s.warmupS, 0)} s of warm-up | in the last half\n`);
  console.log("| memory | MiB per hour | KiB per call served | MiB per hour (last half) | KiB per call (last half) |\n|---|---|---|---|---|");
  for (const [k, label] of [["rss", "RSS"], ["liveHeap", "live heap (after a forced full GC, every 15 s)"], ["heapUsed", "heap used (all samples)"], ["heapFloor", "heap floor (min per 30 s)"], ["external", "external (Buffers)"]] as const)
    console.log(`| ${label} | ${sl(s.afterWarmup[k])} | ${sl(s.lastHalf[k])} |`);
}

function chart(samples: MemorySample[], o: SoakOptions, command: string): string {
  const m = machine();
  const has = (k: Key) => samples.filter((s) => Number.isFinite(s[k]));
  const pts = (k: Key) => has(k).map((s) => [s.t / 60, s[k]!] as [number, number]);
  const byCall = (k: Key) => has(k).map((s) => [s.served, s[k]!] as [number, number]);
  return page(
    `Parley soak: ${o.calls} calls live for ${o.minutes} min, ${o.mode} providers`,
    `${m.cpu}, ${m.cores} cores, ${m.memGiB} GiB, Node ${m.node} · ${command}`,
    [
      lines("Memory over time", "minutes", "MiB", [
        { name: "RSS", points: pts("rss"), color: "#4e79a7" },
        { name: "heap used", points: pts("heapUsed"), color: "#f28e2b" },
        { name: "live heap (after full GC)", points: pts("liveHeap"), color: "#e15759" },
        { name: "external", points: pts("external"), color: "#59a14f" },
      ]),
      lines("Memory against calls served", "calls served", "MiB", [
        { name: "RSS", points: byCall("rss"), color: "#4e79a7" },
        { name: "heap used", points: byCall("heapUsed"), color: "#f28e2b" },
        { name: "live heap (after full GC)", points: byCall("liveHeap"), color: "#e15759" },
      ]),
    ],
  );
}
