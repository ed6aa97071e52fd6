/**
 * The bench scripts behave like tools: `--help` prints the usage and exits 0, an unknown flag or a bad value prints
 * one line and exits 2, and neither starts the benchmark. Each script runs as a real child process, as `npm run`
 * runs it. Also: a run report with no barge-in (or no turn) prints "—", never NaN.
 */
import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { stats } from "../bench/parley-process.ts";
import { reportLines, type RunFigures } from "../bench/report.ts";

const SCRIPTS: Record<string, string> = {
  bench: "bench/run.ts",
  "bench:call": "bench/call-latency.ts",
  "bench:stt": "bench/stt-accuracy.ts",
  "bench:telephony": "bench/telephony.ts",
  "bench:vad": "bench/vad-batching.ts",
  "bench:handoff": "bench/handoff.ts",
  "bench:relay": "bench/relay.ts",
  "bench:streams": "bench/stream-discipline.ts",
  "bench:assistant": "bench/assistant.ts",
  "bench:fleet": "bench/fleet.ts",
};

function run(script: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", script, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("bench scripts on the command line", () => {
  for (const [name, script] of Object.entries(SCRIPTS)) {
    it(`${name}: --help prints the usage and exits 0; an unknown flag is one line and exit 2`, async () => {
      const [help, bogus] = await Promise.all([run(script, ["--help"]), run(script, ["--bogus-flag"])]);
      expect(help.code).toBe(0);
      expect(help.stdout).toContain(`npm run ${name} --`);
      expect(help.stdout).toContain("--help");
      expect(help.stderr).toBe("");

      expect(bogus.code).toBe(2);
      expect(bogus.stdout).toBe("");
      expect(bogus.stderr.trim().split("\n")).toEqual([`${name}: Unknown option '--bogus-flag' (see --help)`]);
    });
  }

  it("bench: bad values are one line and exit 2 each", async () => {
    const cases: [string[], string][] = [
      [["--calls", "abc"], "bench: --calls must be a whole number >= 1, got 'abc' (see --help)"],
      [["--calls", "0"], "bench: --calls must be a whole number >= 1, got '0' (see --help)"],
      [["--providers", "cloud"], "bench: --providers must be one of null, embedded, both, got 'cloud' (see --help)"],
      [["--ladder", "50,x"], "bench: --ladder must be a comma-separated list of whole numbers >= 1, got '50,x' (see --help)"],
      [["--soak", "--minutes=-1"], "bench: --minutes must be a number > 0, got '-1' (see --help)"],
      [["--calls"], "bench: Option '--calls <value>' argument missing (see --help)"],
    ];
    const results = await Promise.all(cases.map(([args]) => run("bench/run.ts", args)));
    results.forEach((r, i) => {
      expect(r.code, cases[i]![0].join(" ")).toBe(2);
      expect(r.stderr.trim()).toBe(cases[i]![1]);
    });
  });

  it("bench:vad: a bad stream list is one line and exit 2", async () => {
    const r = await run("bench/vad-batching.ts", ["--streams", "1,,2"]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe("bench:vad: --streams must be a comma-separated list of whole numbers >= 1, got '1,,2' (see --help)");
  });
});

describe("bench report", () => {
  const q = { p50: 1, p95: 2, p99: 3, max: 4 };
  const run: RunFigures = {
    mode: "null",
    calls: 2,
    secondsPerCall: 5,
    pass: true,
    steady: null,
    inboundMs: q,
    eventLoopMs: q,
    turnLatencyMs: stats([120, 130]),
    bargeInMs: stats([]), // no barge-in happened
    greetingMs: stats([10]),
    handoffMs: { sttToAgent: stats([]), agentToTts: stats([]), ttsToFrame: stats([]) },
    callerUnderrunMs: 0,
    serverUnderrunMs: 0,
    lateFrames: 0,
    lateAfterClear: 0,
    cpuBudget: { machineBusyCores: 0.5, peakMachineBusyCores: 0.7, parleyCores: 0.2, vadInferenceCores: 0, generatorCores: 0.1, stealCores: 0, peakStealCores: 0 },
    cpuMsPerCallSecond: 3,
    cpuCoresUsed: 0.2,
    rssMiBPerCall: NaN,
    rssPeakMiB: 100,
  };

  it("prints — where there are no samples, and no NaN anywhere", () => {
    const text = reportLines(run, 2).join("\n");
    expect(text).not.toContain("NaN");
    expect(text).toContain("| barge-in: speech onset -> clear | — | — | — | — |");
    expect(text).toContain("| turn: end of speech -> first reply frame | 130.0 | 130.0 | 130.0 | 130.0 |");
    expect(text).toContain("RSS — MiB per call");
  });
});

describe("soak slopes", () => {
  it("recovers a known growth per hour and per call served", async () => {
    const { slopes, regression } = await import("../bench/soak.ts");
    expect(regression([0, 1, 2, 3], [1, 3, 5, 7])).toMatchObject({ slope: 2, intercept: 1, slopeStdErr: 0 });
    // 10 min, a sample every 2 s, 3 calls served a second: the live heap grows 36 MiB/h, i.e. 36 MiB per 10,800 calls.
    const samples = Array.from({ length: 300 }, (_, i) => {
      const t = i * 2;
      const sawtooth = (i % 10) * 3; // GC cycles: up 27 MiB, then back
      return { t, served: 3 * t, live: 50, rss: 300, heapUsed: 80 + sawtooth + (36 / 3600) * t, heapTotal: 150, external: 10, arrayBuffers: 1, liveHeap: 60 + (36 / 3600) * t };
    });
    const live = slopes(samples, "liveHeap");
    expect(live.mibPerHour).toBeCloseTo(36, 6);
    expect(live.kibPerCall).toBeCloseTo((36 * 1024) / 10_800, 6);
    expect(slopes(samples, "rss").mibPerHour).toBeCloseTo(0, 6);
  });
});
