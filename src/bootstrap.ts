import pino, { type Logger } from "pino";
import prettyStream from "pino-pretty";
import { SpeechCache } from "./call/speech-cache.ts";
import type { Services } from "./call/services.ts";
import { PlayoutTicker } from "./call/ticker.ts";
import { chosenProviders, type Config } from "./config.ts";
import { ModelExtractor, TranscriptExtractor } from "./outcome/extract.ts";
import { RoutingTable } from "./session/session.ts";
import { createCarriers } from "./carriers/registry.ts";
import { Metrics } from "./metrics.ts";
import { PipelineStats } from "./call/pipeline-stats.ts";
import { APOLOGY_TEXT, GOODBYE_MAX_DURATION_TEXT, GOODBYE_SILENCE_TEXT, GOODBYE_TEXT, SILENCE_PROMPT_TEXT } from "../machines/call.machine.ts";
import { createProviders } from "./providers/select.ts";
import { CallStore } from "./store/call-store.ts";
import { RecordingStore } from "./recording/recordings.ts";
import { withRecordingNotice } from "./recording/call-recording.ts";
import { systemClock, type Clock } from "./util/clock.ts";
import { SileroVadPool } from "./vad/silero-pool.ts";
import { RedisConnection } from "./state/redis-client.ts";

/** Log fields that can carry a secret (bearer headers, stream and API tokens): written as "[Redacted]". */
export const REDACTED_PATHS = ["req.headers.authorization", "headers.authorization", "*.authorization", "token", "*.token", "apiToken", "*.apiToken", "access_token", "*.access_token"];

/**
 * JSON lines (one object per line, for files and log collectors), or, when `out` is a terminal, pino-pretty's one
 * line per entry (time, level, message, fields), so `npm start` in a terminal is readable and logs piped or redirected
 * to a file stay JSON.
 */
export function createLogger(config: Pick<Config, "logLevel">, out: NodeJS.WritableStream & { isTTY?: boolean } = process.stdout): Logger {
  const options = { level: config.logLevel, base: { service: "parley" }, redact: REDACTED_PATHS };
  if (out.isTTY) {
    // Synchronous, so the last lines before process.exit (the shutdown, a start-up failure) are not lost.
    // Colours only on the real terminal, where pino-pretty's default honours NO_COLOR.
    const stdout = out === process.stdout;
    const pretty = prettyStream({ destination: stdout ? 1 : out, sync: true, ...(stdout ? {} : { colorize: false }), singleLine: true, translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname,service" });
    return pino(options, pretty);
  }
  return out === process.stdout ? pino(options) : pino(options, out);
}

/**
 * Build the process-wide services on the embedded offline providers and warm them up: models loaded, workers running,
 * fixed phrases synthesized, so the first call pays no start-up cost. Logs each step, since model loading takes seconds.
 */
export async function createServices(config: Config, log: Logger, clock: Clock = systemClock): Promise<Services> {
  const step = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    try {
      const v = await fn();
      log.info({ ms: Math.round(performance.now() - t0) }, `${what}: ready`);
      return v;
    } catch (err) {
      throw new Error(`${what} failed to start: ${(err as Error).message}`, { cause: err });
    }
  };

  const store = new CallStore(config.dataDir);
  await step(`call records in ${config.dataDir}`, () => store.init());
  // With REDIS_URL set, an instance that cannot reach Redis would run as an island, breaking the fleet's cap and
  // tokens: it does not start (its supervisor restarts it), and the error names the URL.
  const redis = config.redisUrl
    ? await step("shared state in Redis", () => RedisConnection.connect(config.redisUrl!, { prefix: config.redisKeyPrefix }))
    : null;

  const { stt, tts, agent } = await step("providers", () => createProviders(config, log));
  const [vad] = await Promise.all([
    step("Silero VAD (ONNX, worker pool)", () => SileroVadPool.create({ workers: config.vadWorkers, maxBatch: config.vadMaxBatch, batchesInFlight: config.vadBatchesInFlight, onError: (err) => log.error({ err }, "VAD worker error") })),
    step(`speech recognition (${stt.name}${stt.name === "sphinx" ? `, ${config.sttMode} mode` : ""})`, () => stt.ready()),
    step(`speech synthesis (${tts.name})`, () => tts.ready()),
  ]);

  const speechCache = new SpeechCache(tts);
  const warmed = await step("greeting and prompts synthesized", () =>
    speechCache.warm([config.greeting, ...(config.recordCalls && config.recordingNotice ? [withRecordingNotice(config.greeting, {}, config)] : []), SILENCE_PROMPT_TEXT, APOLOGY_TEXT, GOODBYE_SILENCE_TEXT, GOODBYE_MAX_DURATION_TEXT, GOODBYE_TEXT]),
  );
  for (const w of warmed) if (w.error) log.warn({ text: w.text, error: w.error }, "could not pre-synthesize; will retry on first use");

  const carriers = createCarriers(config);
  if (carriers.outbound) log.info({ carrier: carriers.outbound.name }, `${carriers.outbound.name} REST API configured: outbound calls enabled`);
  const routes = config.routesFile ? RoutingTable.load(config.routesFile) : RoutingTable.empty();
  if (config.routesFile) {
    // Checked against the providers as started: a route naming a voice or tool this process lacks fails the start.
    const problems = routes.problems({ agent, tts, stt }, `ROUTES_FILE ${config.routesFile}`);
    if (problems.length) throw new Error(problems.join("\n"));
    log.info({ file: config.routesFile, routes: routes.size }, "inbound routing table loaded");
  }
  const recordings = new RecordingStore(config.dataDir, { retentionDays: config.recordingsRetentionDays, log });
  await recordings.startSweeping();
  const outcomes =
    chosenProviders(config).agent === "openai"
      ? new ModelExtractor({ apiKey: config.openaiApiKey ?? "", baseURL: config.openaiBaseUrl, model: config.openaiModel })
      : new TranscriptExtractor();
  return { config, log, clock, store, vad, stt, tts, agent, speechCache, ticker: new PlayoutTicker(clock), carriers, metrics: new Metrics(), stats: new PipelineStats(), routes, outcomes, redis, recordings };
}

export async function closeServices(s: Services): Promise<void> {
  s.ticker.stop();
  s.recordings.stop();
  s.stats.close();
  await Promise.allSettled([s.vad.close(), s.stt.close(), s.tts.close(), s.store.close(), s.redis?.close()]);
}
