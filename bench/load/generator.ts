/**
 * Load generator for Parley's capacity benchmark: plays the carrier's side of N concurrent calls (Twilio: webhook ->
 * TwiML -> Media Stream; Telnyx: signed webhook -> Parley's `answer` command on the generator's REST API -> stream;
 * Plivo: signed answer request -> XML -> signed upgrade), each caller speaking real recordings in real time with pauses
 * and barge-ins, and playing Parley's audio on its own playout clock. One shared 5 ms timer drives every call; frames
 * are pre-encoded once and media messages built by string concatenation; Parley's media messages are recognised by
 * prefix and counted, not parsed.
 *
 *   node --import tsx bench/load/generator.ts --url http://127.0.0.1:3334 --calls 100 --seconds 20 --ramp-ms 2000 \
 *     [--carrier twilio|telnyx|plivo] [--auth-token T] [--auth-id ID] [--telnyx-private-key K --telnyx-api-key K \
 *      --telnyx-rest-port P] [--soak-seconds T]
 *
 * Twilio: --auth-token signs the webhook and upgrade when Parley checks them. Plivo: --auth-id and --auth-token (V3
 * signatures). Telnyx: the Ed25519 private key (PKCS#8 DER, base64) whose public half Parley has as TELNYX_PUBLIC_KEY,
 * the API key Parley sends, and the port of the REST API Parley's TELNYX_API_URL points at.
 *
 * With --soak-seconds, `--calls` is the number kept live: each call that ends is replaced at once by a new one, until
 * T seconds have passed; then the live calls finish their talk time and the result is sent (`calls` = calls placed).
 *
 * Forked with IPC (`child_process.fork(path, args, { execArgv: ["--import", "tsx"] })`) it sends `progress` once a
 * second and one `result` at the end, then exits 0 (message shapes in ./protocol.ts). Without IPC it prints progress
 * lines and the result JSON to stdout. SIGTERM / SIGINT end every call at once and still report.
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { LoadCall, RunTotals } from "./call.ts";
import { twilioWire, type Wire } from "./wire.ts";
import { loadScript } from "./clips.ts";
import type { CallSummary, ErrorMessage, GeneratorMessage, ProgressMessage, ResultMessage } from "./protocol.ts";

const TICK_MS = 5;
const CLOSE_WAIT_MS = 2000;
/** Beyond ramp + talk time: greeting (at most 30 s), connect time-outs, slack. */
const DEADLINE_SLACK_MS = 60_000;

const ipc = typeof process.send === "function";

function emit(msg: GeneratorMessage): Promise<void> {
  if (ipc) return new Promise((resolve) => process.send!(msg, undefined, {}, () => resolve()));
  if (msg.type === "progress") {
    process.stdout.write(
      `[${msg.elapsedS.toFixed(1).padStart(6)} s] started ${msg.callsStarted} live ${msg.callsLive} done ${msg.callsDone}  sent ${msg.framesSent} recv ${msg.framesReceived}  underrun ${msg.underrunMs} ms  gen: loop p99 ${msg.eventLoopP99Ms.toFixed(1)} ms, ${msg.cpuCores.toFixed(2)} cores\n`,
    );
    return Promise.resolve();
  }
  // Wait for the write: the process exits right after the result.
  if (msg.type === "result") return new Promise((resolve) => process.stdout.write(`${JSON.stringify(msg, null, 2)}\n`, () => resolve()));
  return new Promise((resolve) => process.stderr.write(`load generator: ${msg.message}\n`, () => resolve()));
}

async function fail(message: string, code: number): Promise<never> {
  await emit({ type: "error", message } satisfies ErrorMessage);
  process.exit(code);
}

function parse() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        url: { type: "string" },
        calls: { type: "string", default: "1" },
        seconds: { type: "string", default: "20" },
        "ramp-ms": { type: "string", default: "0" },
        carrier: { type: "string", default: "twilio" },
        "auth-token": { type: "string" },
        "auth-id": { type: "string" },
        "telnyx-private-key": { type: "string" },
        "telnyx-api-key": { type: "string" },
        "telnyx-rest-port": { type: "string" },
        "soak-seconds": { type: "string", default: "0" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    return fail(`${(e as Error).message}\nusage: generator.ts --url <parley base url> --calls N --seconds S [--ramp-ms R] [--carrier twilio|telnyx|plivo] [--auth-token T] [--auth-id ID] [--telnyx-private-key K --telnyx-api-key K --telnyx-rest-port P] [--soak-seconds T]`, 2);
  }
  const calls = Number(values.calls);
  const seconds = Number(values.seconds);
  const rampMs = Number(values["ramp-ms"]);
  const soakSeconds = Number(values["soak-seconds"]);
  if (!values.url || !/^https?:\/\//.test(values.url)) return fail("--url <http(s)://host:port> is required", 2);
  if (!Number.isInteger(calls) || calls < 1) return fail("--calls must be a whole number >= 1", 2);
  if (!Number.isFinite(seconds) || seconds <= 0) return fail("--seconds must be > 0", 2);
  if (!Number.isFinite(rampMs) || rampMs < 0) return fail("--ramp-ms must be >= 0", 2);
  if (!Number.isFinite(soakSeconds) || soakSeconds < 0) return fail("--soak-seconds must be >= 0", 2);
  const carrier = values.carrier;
  if (carrier !== "twilio" && carrier !== "telnyx" && carrier !== "plivo") return fail(`--carrier must be twilio, telnyx or plivo, got '${carrier}'`, 2);
  if (carrier === "plivo" && (!values["auth-id"] || !values["auth-token"])) return fail("--carrier plivo needs --auth-id and --auth-token (Plivo signs every request)", 2);
  const restPort = Number(values["telnyx-rest-port"]);
  if (carrier === "telnyx" && (!values["telnyx-private-key"] || !values["telnyx-api-key"] || !Number.isInteger(restPort) || restPort <= 0))
    return fail("--carrier telnyx needs --telnyx-private-key, --telnyx-api-key and --telnyx-rest-port (the REST API Parley's TELNYX_API_URL names)", 2);
  const url = values.url.replace(/\/+$/, "");
  return {
    url,
    calls,
    seconds,
    rampMs,
    soakSeconds,
    carrier,
    makeWire: async (): Promise<Wire> => {
      if (carrier === "telnyx") {
        const { telnyxWire } = await import("./wire-telnyx.ts");
        return telnyxWire({ baseUrl: url, privateKey: values["telnyx-private-key"]!, apiKey: values["telnyx-api-key"]!, restPort });
      }
      if (carrier === "plivo") {
        const { plivoWire } = await import("./wire-plivo.ts");
        return plivoWire({ baseUrl: url, authId: values["auth-id"]!, authToken: values["auth-token"]! });
      }
      const token = values["auth-token"];
      if (!token) return twilioWire({ baseUrl: url });
      // Loaded only when signing: the twilio library is heavy.
      const { signWebhook } = await import("../../src/carriers/twilio/verify.ts");
      return twilioWire({ baseUrl: url, authToken: token, sign: (u, params) => signWebhook(token, u, params) });
    },
  };
}

function percentileOfBuckets(buckets: Float64Array, p: number): { p: number; max: number } {
  let total = 0;
  let max = 0;
  for (let i = 0; i < buckets.length; i++) if (buckets[i]! > 0) {
    total += buckets[i]!;
    max = i;
  }
  if (total === 0) return { p: 0, max: 0 };
  const want = Math.ceil(total * p);
  let seen = 0;
  for (let i = 0; i < buckets.length; i++) {
    seen += buckets[i]!;
    if (seen >= want) return { p: i, max };
  }
  return { p: max, max };
}

/** monitorEventLoopDelay's samples include its own sampling interval (Node 20): subtract it to get the delay. */
const LOOP_RESOLUTION_MS = 10;
const loopDelayMs = (ns: number) => (Number.isFinite(ns) && ns > 0 ? Math.max(0, Math.round((ns / 1e6 - LOOP_RESOLUTION_MS) * 100) / 100) : 0);

async function main(): Promise<void> {
  const args = await parse();
  let wire: Wire;
  try {
    wire = await args.makeWire();
  } catch (e) {
    return fail(`could not set up the ${args.carrier} side: ${(e as Error).message}`, 2);
  }
  const clips = await loadScript();

  const now = () => performance.now();
  const runLoop = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
  const secondLoop = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
  runLoop.enable();
  secondLoop.enable();
  const cpu0 = process.cpuUsage();
  let cpuLast = cpu0;
  const runStart = now();
  const totals = new RunTotals(runStart);
  const newCall = (index: number) => new LoadCall({ index, dialect: wire.dialect(index), talkSeconds: args.seconds, clips, totals, now });
  // One slot per concurrent call. A soak replaces a slot's call once it has ended; every call placed is in `placed`.
  const calls: LoadCall[] = [];
  for (let i = 0; i < args.calls; i++) calls.push(newCall(i));
  const placed: CallSummary[] = calls.map((c) => c.summary);
  // The hand-built messages must be exactly what JSON.stringify would give (checked once, not per frame).
  const probe = wire.dialect(-1);
  const sample = probe.media(7, 3, clips[0]!.b64[0]!);
  const expected = JSON.stringify(probe.mediaObject(7, 3, clips[0]!.b64[0]!));
  if (sample !== expected) return fail(`bad ${args.carrier} media message template:\n  ${sample}\nexpected\n  ${expected}`, 1);
  const startOffset = (i: number) => (args.calls > 1 ? (i * args.rampMs) / args.calls : 0);
  const soakEnd = runStart + args.soakSeconds * 1000;
  const deadline = Math.max(runStart + args.rampMs, soakEnd) + args.seconds * 1000 + DEADLINE_SLACK_MS;
  let launched = 0;
  let stopping = false;
  let finished = false;
  let nextProgressAt = runStart + 1000;
  let lastProgressAt = runStart;

  const progress = (t: number) => {
    const cpu = process.cpuUsage();
    const cpuCores = (cpu.user - cpuLast.user + cpu.system - cpuLast.system) / 1000 / Math.max(1, t - lastProgressAt);
    cpuLast = cpu;
    lastProgressAt = t;
    const msg: ProgressMessage = {
      type: "progress",
      elapsedS: Math.round((t - runStart) / 100) / 10,
      callsStarted: launched + placed.length - args.calls,
      callsLive: totals.callsLive,
      callsDone: totals.callsDone,
      framesSent: totals.framesSent,
      framesReceived: totals.framesReceived,
      underrunMs: totals.underrunMs,
      eventLoopP99Ms: loopDelayMs(secondLoop.percentile(99)),
      cpuCores: Math.round(cpuCores * 100) / 100,
    };
    secondLoop.reset();
    void emit(msg);
  };

  const stopAll = () => {
    stopping = true;
    for (const c of calls) c.stop();
  };

  const tick = () => {
    const t = now();
    if (!stopping) {
      while (launched < args.calls && t >= runStart + startOffset(launched)) void calls[launched++]!.connect();
      if (t < soakEnd)
        for (let i = 0; i < launched; i++)
          if (calls[i]!.state === "ended") {
            const c = newCall(placed.length);
            placed.push(c.summary);
            calls[i] = c;
            void c.connect();
          }
      if (t >= deadline) {
        totals.error("timeout", `run deadline passed (${Math.round((deadline - runStart) / 1000)} s): ending ${totals.callsLive} live calls`);
        stopAll();
      }
    }
    for (let i = 0; i < launched; i++) calls[i]!.tick(t);
    if (t >= nextProgressAt) {
      progress(t);
      nextProgressAt += 1000 * Math.max(1, Math.ceil((t - nextProgressAt + 1) / 1000));
    }
    if (!finished && (launched === args.calls || stopping) && t >= soakEnd && totals.callsDone === placed.length) {
      finished = true;
      void finish();
    }
  };
  const timer = setInterval(tick, TICK_MS);

  const onSignal = () => {
    if (!stopping) stopAll();
  };
  process.once("SIGTERM", onSignal);
  process.once("SIGINT", onSignal);
  if (ipc) process.once("disconnect", () => process.exit(0)); // the orchestrator is gone: nobody to report to

  const finish = async () => {
    // Let the close handshakes complete (Parley sees a clean hang-up), then report.
    const closeBy = now() + CLOSE_WAIT_MS;
    while (calls.some((c) => !c.closed) && now() < closeBy) await new Promise((r) => setTimeout(r, 20));
    clearInterval(timer);
    for (const c of calls) if (!c.closed) c.terminate();
    await wire.close();
    const end = now();
    runLoop.disable();
    secondLoop.disable();
    const cpu = process.cpuUsage(cpu0);
    const lag = percentileOfBuckets(totals.sendLag, 0.99);
    const perCall = placed;
    const result: ResultMessage = {
      type: "result",
      calls: placed.length,
      secondsPerCall: args.seconds,
      rampMs: args.rampMs,
      callsConnected: totals.callsConnected,
      callsCompleted: perCall.filter((s) => s.end === "caller" && s.connected).length,
      callsFailed: perCall.filter((s) => s.end !== "caller" || !s.connected).length,
      turnLatencyMs: totals.turnLatencyMs.map(round1),
      bargeInMs: totals.bargeInMs.map(round1),
      greetingMs: totals.greetingMs.map(round1),
      underrunMs: totals.underrunMs,
      lateFrames: totals.lateFrames,
      lateAfterClear: totals.lateAfterClear,
      framesSent: totals.framesSent,
      framesReceived: totals.framesReceived,
      turns: totals.turns,
      bargeInAttempts: totals.bargeInAttempts,
      bargeInsWithoutClear: totals.bargeInsWithoutClear,
      clears: totals.clears,
      repliesMissed: totals.repliesMissed,
      underrunTimeline: totals.timelineUpTo(end),
      errors: totals.errors,
      eventLoopP99Ms: loopDelayMs(runLoop.percentile(99)),
      eventLoopMaxMs: loopDelayMs(runLoop.max),
      sendLagP99Ms: lag.p,
      sendLagMaxMs: lag.max,
      cpuMs: Math.round((cpu.user + cpu.system) / 1000),
      cpuUserMs: Math.round(cpu.user / 1000),
      cpuSystemMs: Math.round(cpu.system / 1000),
      wallMs: Math.round(end - runStart),
      perCall: perCall.map((s) => ({ ...s, greetingMs: s.greetingMs === null ? null : round1(s.greetingMs) })),
    };
    await emit(result);
    process.exit(0);
  };
}

const round1 = (x: number) => Math.round(x * 10) / 10;

const crash = (e: unknown) => void fail(`crashed: ${(e as Error)?.stack ?? String(e)}`, 1);
process.on("uncaughtException", crash);
process.on("unhandledRejection", crash);
main().catch(crash);
