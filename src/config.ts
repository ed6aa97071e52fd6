import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import path from "node:path";
import { z } from "zod";
import { E164 } from "./util/e164.ts";
import { PLIVO_ENV_KEYS, plivoConfigProblems, plivoConfigShape } from "./carriers/plivo/config.ts";

/**
 * Configuration comes from environment variables, optionally layered over a JSON config file (PARLEY_CONFIG or
 * --config). Environment wins over the file. Everything is validated at start; errors name the variable and the fix.
 */

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const num = (min: number, max: number) => z.coerce.number().min(min).max(max);
const bool = z.union([z.boolean(), z.enum(["true", "false", "1", "0", "yes", "no"]).transform((v) => ["true", "1", "yes"].includes(v))]);

export const configSchema = z.object({
  port: int(0, 65535).default(3334),
  host: z.string().min(1).default("127.0.0.1"),
  publicUrl: z
    .string()
    .url()
    .refine((u) => /^https?:\/\//.test(u), "must start with https:// (or http:// for local testing)")
    .optional(),
  twilioAuthToken: z.string().min(1).optional(),
  dataDir: z.string().min(1).default("./data"),
  greeting: z.string().max(1000).default("Hello! This is Parley. How can I help you today?"),
  logLevel: z.enum(LOG_LEVELS).default("info"),

  // Turn-taking
  vadThreshold: num(0.05, 0.95).default(0.5),
  vadMinSpeechMs: int(32, 2000).default(150),
  vadMinSilenceMs: int(100, 5000).default(550),
  sttEarlyDecodeMs: int(0, 5000).default(64),
  vadWorkers: int(1, 16).default(1),
  vadMaxBatch: int(1, 2048).default(256),
  vadBatchesInFlight: int(1, 4).default(1),
  vadWindowsPerStream: int(1, 32).default(8),
  silenceTimeoutMs: int(1000, 600_000).default(12_000),
  silencePrompts: int(0, 5).default(1),
  maxDurationSeconds: int(10, 86_400).default(1800),
  transcriptTimeoutMs: int(200, 30_000).default(4000),

  // Outbound audio
  playoutLeadMs: int(20, 1000).default(100),
  markEveryMs: int(40, 5000).default(200),
  playoutFramesPerMessage: int(1, 3).default(1),

  // Embedded providers
  sttMode: z.enum(["open", "phrases", "grammar"]).default("open"),
  sttPhrases: z.array(z.string().min(1)).optional(),
  sttGrammarFile: z.string().optional(),
  /** Debian's PocketSphinx (apt-get install libpocketsphinx3 pocketsphinx-en-us): the library as dlopen takes it, and the model. */
  pocketsphinxLibrary: z.string().min(1).default("libpocketsphinx.so.3"),
  pocketsphinxModelDir: z.string().min(1).default("/usr/share/pocketsphinx/model/en-us"),
  pocketsphinxMaxHmmPerFrame: int(500, 100_000).default(4000),
  ttsVoice: z.string().default("en-us"),
  ttsRate: int(80, 450).default(175),

  maxConcurrentCalls: int(1, 10_000).default(200),
  allowUnsignedWebhooks: bool.default(false),

  // Control plane
  apiToken: z.string().min(16, "must be at least 16 characters").optional(),
  twilioAccountSid: z.string().regex(/^AC[0-9a-fA-F]{32}$/, "must look like AC followed by 32 hex digits").optional(),
  twilioApiUrl: z.string().url().default("https://api.twilio.com"),
  twilioFromNumber: z.string().regex(E164, "must be an E.164 number like +15551234567").optional(),
  // Telnyx (Call Control v2): src/carriers/telnyx/.
  telnyxApiKey: z.string().min(1).optional(),
  telnyxPublicKey: z
    .string()
    .refine((k) => /^[A-Za-z0-9+/]{43}=$/.test(k.trim()), "must be the account's Ed25519 public key from the Telnyx portal: 44 characters of base64 (32 bytes)")
    .optional(),
  telnyxConnectionId: z.string().regex(/^\S+$/, "must be the Call Control (Voice API) application's id").optional(),
  telnyxFromNumber: z.string().regex(E164, "must be an E.164 number like +15551234567").optional(),
  telnyxApiUrl: z.string().url().default("https://api.telnyx.com/v2"),
  /** Which carrier places outbound calls when more than one could; default: Twilio if it can, else Telnyx. */
  outboundCarrier: z.enum(["twilio", "telnyx", "plivo"]).optional(),
  inboundPolicy: z.enum(["open", "allowlist", "disabled"]).default("open"),
  inboundAllowlist: z.array(z.string().regex(E164, "entries must be E.164 numbers like +15551234567")).default([]),
  ringTimeoutSeconds: int(5, 600).default(60),
  // Handing over to a human (src/call/transfer.ts)
  transferNumber: z.string().regex(E164, "must be an E.164 number like +15551234567").optional(),
  transferMode: z.enum(["cold", "warm"]).default("cold"),
  transferAnswerTimeoutS: int(5, 300).default(30),
  streamTimeoutMs: int(1000, 120_000).default(10_000),
  resumeTimeoutMs: int(1000, 300_000).default(15_000),
  dtmfTimeoutMs: int(200, 10_000).default(1500),
  rateLimitPerMinute: int(1, 1_000_000).default(600),
  /**
   * Proxies whose X-Forwarded-For is believed: IP addresses or CIDR ranges, or "loopback". Empty (the default): the
   * client is the socket's peer. Signatures are unaffected (they are checked over PUBLIC_URL).
   */
  trustProxy: z.array(z.string().refine(isAddressOrRange, 'must be an IP address, a CIDR range such as 10.0.0.0/8, or "loopback"')).default([]),
  // Media stream sockets: a socket must send `start` in time, few may wait for it, and every socket must stay alive.
  streamStartTimeoutMs: int(100, 60_000).default(5000),
  maxPendingStreams: int(1, 100_000).default(256),
  maxPendingStreamsPerClient: int(1, 100_000).default(64),
  streamPingIntervalMs: int(100, 600_000).default(10_000),
  // Watchdogs on a started stream: Twilio sends media every 20 ms and echoes every mark once its audio has played.
  mediaTimeoutMs: int(100, 120_000).default(3000),
  markGraceMs: int(100, 120_000).default(3000),
  /** The browser softphone at /phone: calls from a browser, over the same stream protocol, with a dev token. */
  softphone: bool.default(true),

  // Cloud providers (chosen automatically by which keys are present)
  // "null": instant providers for benchmarks of the pipeline itself.
  sttProvider: z.enum(["auto", "pocketsphinx", "sphinx", "deepgram", "null"]).default("auto"),
  ttsProvider: z.enum(["auto", "espeak", "elevenlabs", "null"]).default("auto"),
  agentProvider: z.enum(["auto", "demo", "echo", "openai"]).default("auto"),
  deepgramApiKey: z.string().min(1).optional(),
  deepgramUrl: z.string().url().optional(),
  deepgramModel: z.string().min(1).default("nova-3"),
  elevenlabsApiKey: z.string().min(1).optional(),
  elevenlabsUrl: z.string().url().optional(),
  elevenlabsVoiceId: z.string().min(1).default("21m00Tcm4TlvDq8ikWAM"),
  elevenlabsModel: z.string().min(1).default("eleven_flash_v2_5"),
  elevenlabsLatency: int(0, 4).optional(),
  openaiApiKey: z.string().min(1).optional(),
  openaiBaseUrl: z.string().url().optional(),
  openaiModel: z.string().min(1).default("gpt-4o-mini"),
  agentPrompt: z.string().min(1).optional(),
  agentToolsModule: z.string().min(1).optional(),
  agentTimeoutMs: int(500, 120_000).default(4000),

  // Assistants and applications as the brain of a call
  /** A ConversationRelay app for every call whose session names no agent. */
  agentRelayUrl: z
    .string()
    .url()
    .refine((u) => /^wss?:\/\//.test(u), "must be a ws:// or wss:// URL")
    .optional(),
  /** JSON file: dialled number (E.164) or "*" → the session inbound calls to it get. */
  routesFile: z.string().min(1).optional(),
  /** Secret for the HMAC-SHA256 signature on outcome webhooks. */
  outcomeWebhookSecret: z.string().min(16, "must be at least 16 characters").optional(),
  /** An assistant-driven call's filler ("One moment.") after the assistant has been silent this long in a turn. */
  assistantFillerMs: int(200, 60_000).default(1500),
  /** How long a caller's turn waits for the assistant in all before Parley listens again. */
  assistantMaxWaitMs: int(1000, 600_000).default(30_000),

  // A fleet: shared state in Redis (stream tokens, replay guard, rate limits, the cap, call ownership)
  /** Unset: this process keeps all of it in memory, as a single instance. */
  redisUrl: z
    .string()
    .url()
    .refine((u) => /^rediss?:\/\//.test(u), "must be a redis:// or rediss:// URL")
    .optional(),
  /** This instance's name in the fleet (the holder of its cap slots and call leases); hostname-pid when unset. */
  instanceId: z.string().regex(/^[A-Za-z0-9._:-]{1,100}$/, "must be 1-100 letters, digits, '.', '_', ':' or '-'").optional(),
  /** Prefix of every key Parley writes in Redis, so fleets can share one server. */
  redisKeyPrefix: z.string().max(100).default("parley:"),
  /** A crashed instance's cap slots and call leases are freed this long after its last renewal (renewed every third). */
  redisLeaseTtlMs: int(1000, 600_000).default(15_000),
  // Call recordings (README "Recordings")
  /** Record every call whose session does not say `record: false`. */
  recordCalls: bool.default(false),
  // Outbound calls: who answered (see src/call/screening.ts)
  screeningMaxMs: int(0, 30_000).default(3_500),
  voicemail: z.enum(["leave", "hangup", "continue"]).default("hangup"),
  voicemailMaxWaitMs: int(1_000, 120_000).default(30_000),
  carrierAmd: bool.default(false),
  /** Said before the first words of a recorded call whose session has no `recordingNotice`. */
  recordingNotice: z.string().min(1).max(500).optional(),
  /** Recordings older than this many days are deleted (at start and every 6 hours); 0 keeps them forever. */
  recordingsRetentionDays: int(0, 36_500).default(30),
  /** This instance's own URL (its stream host): streams go straight to the instance that runs the call. */
  instanceUrl: z
    .string()
    .url()
    .refine((u) => /^https?:\/\//.test(u), "must be an http:// or https:// URL")
    .optional(),
  /** Journal events wait at most this long before being appended to the shared record in Redis (also at each turn). */
  recordFlushMs: int(1, 60_000).default(500),
  /** Journal events kept for Redis while it is away, across all calls; past it the newest are dropped (disk keeps them). */
  recordBufferMax: int(100, 10_000_000).default(100_000),
  /** A call's owner counts as dead when its /healthz does not answer within this (a <Connect action> then takes it over). */
  ownerProbeTimeoutMs: int(50, 30_000).default(500),
  /** On SIGTERM, live calls get this long to finish before their sockets are closed (they resume on another instance). */
  drainTimeoutS: int(0, 86_400).default(30),
  ...plivoConfigShape,
});

export type Config = z.infer<typeof configSchema>;

/** Environment variable -> config key. */
export const ENV_KEYS: Record<string, keyof Config> = {
  ...PLIVO_ENV_KEYS,
  PORT: "port",
  HOST: "host",
  PUBLIC_URL: "publicUrl",
  TWILIO_AUTH_TOKEN: "twilioAuthToken",
  DATA_DIR: "dataDir",
  GREETING: "greeting",
  LOG_LEVEL: "logLevel",
  VAD_THRESHOLD: "vadThreshold",
  VAD_MIN_SPEECH_MS: "vadMinSpeechMs",
  VAD_MIN_SILENCE_MS: "vadMinSilenceMs",
  STT_EARLY_DECODE_MS: "sttEarlyDecodeMs",
  VAD_WORKERS: "vadWorkers",
  VAD_MAX_BATCH: "vadMaxBatch",
  VAD_BATCHES_IN_FLIGHT: "vadBatchesInFlight",
  VAD_WINDOWS_PER_STREAM: "vadWindowsPerStream",
  SILENCE_TIMEOUT_MS: "silenceTimeoutMs",
  SILENCE_PROMPTS: "silencePrompts",
  MAX_DURATION_SECONDS: "maxDurationSeconds",
  TRANSCRIPT_TIMEOUT_MS: "transcriptTimeoutMs",
  PLAYOUT_LEAD_MS: "playoutLeadMs",
  MARK_EVERY_MS: "markEveryMs",
  PLAYOUT_FRAMES_PER_MESSAGE: "playoutFramesPerMessage",
  STT_MODE: "sttMode",
  STT_PHRASES: "sttPhrases",
  STT_GRAMMAR_FILE: "sttGrammarFile",
  POCKETSPHINX_LIBRARY: "pocketsphinxLibrary",
  POCKETSPHINX_MODEL_DIR: "pocketsphinxModelDir",
  POCKETSPHINX_MAX_HMMPF: "pocketsphinxMaxHmmPerFrame",
  TTS_VOICE: "ttsVoice",
  TTS_RATE: "ttsRate",
  MAX_CONCURRENT_CALLS: "maxConcurrentCalls",
  ALLOW_UNSIGNED_WEBHOOKS: "allowUnsignedWebhooks",
  API_TOKEN: "apiToken",
  TWILIO_ACCOUNT_SID: "twilioAccountSid",
  TWILIO_API_URL: "twilioApiUrl",
  TWILIO_FROM_NUMBER: "twilioFromNumber",
  TELNYX_API_KEY: "telnyxApiKey",
  TELNYX_PUBLIC_KEY: "telnyxPublicKey",
  TELNYX_CONNECTION_ID: "telnyxConnectionId",
  TELNYX_FROM_NUMBER: "telnyxFromNumber",
  TELNYX_API_URL: "telnyxApiUrl",
  OUTBOUND_CARRIER: "outboundCarrier",
  INBOUND_POLICY: "inboundPolicy",
  INBOUND_ALLOWLIST: "inboundAllowlist",
  RING_TIMEOUT_SECONDS: "ringTimeoutSeconds",
  TRANSFER_NUMBER: "transferNumber",
  TRANSFER_MODE: "transferMode",
  TRANSFER_ANSWER_TIMEOUT_S: "transferAnswerTimeoutS",
  STREAM_TIMEOUT_MS: "streamTimeoutMs",
  RESUME_TIMEOUT_MS: "resumeTimeoutMs",
  DTMF_TIMEOUT_MS: "dtmfTimeoutMs",
  RATE_LIMIT_PER_MINUTE: "rateLimitPerMinute",
  TRUST_PROXY: "trustProxy",
  STREAM_START_TIMEOUT_MS: "streamStartTimeoutMs",
  MAX_PENDING_STREAMS: "maxPendingStreams",
  MAX_PENDING_STREAMS_PER_CLIENT: "maxPendingStreamsPerClient",
  STREAM_PING_INTERVAL_MS: "streamPingIntervalMs",
  MEDIA_TIMEOUT_MS: "mediaTimeoutMs",
  MARK_GRACE_MS: "markGraceMs",
  SOFTPHONE: "softphone",
  STT_PROVIDER: "sttProvider",
  TTS_PROVIDER: "ttsProvider",
  AGENT_PROVIDER: "agentProvider",
  DEEPGRAM_API_KEY: "deepgramApiKey",
  DEEPGRAM_URL: "deepgramUrl",
  DEEPGRAM_MODEL: "deepgramModel",
  ELEVENLABS_API_KEY: "elevenlabsApiKey",
  ELEVENLABS_URL: "elevenlabsUrl",
  ELEVENLABS_VOICE_ID: "elevenlabsVoiceId",
  ELEVENLABS_MODEL: "elevenlabsModel",
  ELEVENLABS_LATENCY: "elevenlabsLatency",
  OPENAI_API_KEY: "openaiApiKey",
  OPENAI_BASE_URL: "openaiBaseUrl",
  OPENAI_MODEL: "openaiModel",
  AGENT_PROMPT: "agentPrompt",
  AGENT_TOOLS_MODULE: "agentToolsModule",
  AGENT_TIMEOUT_MS: "agentTimeoutMs",
  AGENT_RELAY_URL: "agentRelayUrl",
  ROUTES_FILE: "routesFile",
  OUTCOME_WEBHOOK_SECRET: "outcomeWebhookSecret",
  ASSISTANT_FILLER_MS: "assistantFillerMs",
  ASSISTANT_MAX_WAIT_MS: "assistantMaxWaitMs",
  REDIS_URL: "redisUrl",
  INSTANCE_ID: "instanceId",
  REDIS_KEY_PREFIX: "redisKeyPrefix",
  REDIS_LEASE_TTL_MS: "redisLeaseTtlMs",
  RECORD_CALLS: "recordCalls",
  SCREENING_MAX_MS: "screeningMaxMs",
  VOICEMAIL: "voicemail",
  VOICEMAIL_MAX_WAIT_MS: "voicemailMaxWaitMs",
  CARRIER_AMD: "carrierAmd",
  RECORDING_NOTICE: "recordingNotice",
  RECORDINGS_RETENTION_DAYS: "recordingsRetentionDays",
  INSTANCE_URL: "instanceUrl",
  RECORD_FLUSH_MS: "recordFlushMs",
  RECORD_BUFFER_MAX: "recordBufferMax",
  OWNER_PROBE_TIMEOUT_MS: "ownerProbeTimeoutMs",
  DRAIN_TIMEOUT_S: "drainTimeoutS",
};

/** Keys whose environment value is a list. */
const LIST_KEYS: Partial<Record<keyof Config, RegExp>> = { sttPhrases: /\|/, inboundAllowlist: /[,\s]+/, trustProxy: /[,\s]+/ };

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

const keyToEnv = Object.fromEntries(Object.entries(ENV_KEYS).map(([env, key]) => [key, env])) as Record<string, string>;

/** Settings whose values are secrets (API_TOKEN, TWILIO_AUTH_TOKEN, *_API_KEY): an error names their length only. */
const isSecretKey = (key: string) => /(Token|ApiKey)$/.test(key);

/** A rejected value as the error shows it: JSON, or its length for a secret, which must not reach a log or terminal. */
function shownValue(key: string, value: unknown): string {
  if (!isSecretKey(key)) return JSON.stringify(value);
  if (typeof value === "string") return `${value.length} character${value.length === 1 ? "" : "s"}`;
  const kind = value === null ? "null" : Array.isArray(value) ? "list" : typeof value;
  return kind === "object" ? "an object" : kind === "null" ? "null" : `a ${kind}`;
}

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  /** Path of a JSON config file; defaults to env PARLEY_CONFIG. */
  file?: string;
  /** Values that win over both (used by tests and the CLI). */
  overrides?: Partial<Config>;
}

export function loadConfig(opts: LoadOptions = {}): Config {
  const env = opts.env ?? process.env;
  const problems: string[] = [];
  const raw: Record<string, unknown> = {};

  const file = opts.file ?? env.PARLEY_CONFIG;
  if (file) {
    try {
      const parsed: unknown = JSON.parse(readFileSync(file, "utf8"));
      if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("top level must be a JSON object");
      for (const [k, v] of Object.entries(parsed)) {
        if (!(k in configSchema.shape)) problems.push(`${file}: unknown key "${k}" (known: ${Object.keys(configSchema.shape).join(", ")})`);
        else raw[k] = v;
      }
    } catch (err) {
      // JSON.parse quotes the text around the error, which may be a token: name the position only.
      const message = err instanceof SyntaxError ? `not valid JSON${/position \d+/.exec(err.message) ? ` (at ${/position \d+/.exec(err.message)![0]})` : ""}` : (err as Error).message;
      problems.push(`config file ${path.resolve(file)}: ${message}`);
    }
  }

  for (const [name, key] of Object.entries(ENV_KEYS)) {
    const v = env[name];
    if (v === undefined || v === "") continue;
    const sep = LIST_KEYS[key];
    raw[key] = sep ? v.split(sep).map((s) => s.trim()).filter(Boolean) : v;
  }
  Object.assign(raw, opts.overrides ?? {});

  const result = configSchema.safeParse(raw);
  if (!result.success) {
    for (const issue of result.error.issues) {
      const key = String(issue.path[0] ?? "");
      const where = keyToEnv[key] ? `${keyToEnv[key]} (${key})` : key;
      problems.push(`${where}: ${issue.message}${raw[key] !== undefined ? ` (got ${shownValue(key, raw[key])})` : ""}`);
    }
  }
  if (problems.length) throw new ConfigError(problems);
  const config = result.data!;

  if (config.sttMode === "phrases" && !config.sttPhrases?.length)
    problems.push('STT_MODE=phrases needs STT_PHRASES (phrases separated by "|") or "sttPhrases" in the config file');
  if (config.sttMode === "grammar" && !config.sttGrammarFile) problems.push("STT_MODE=grammar needs STT_GRAMMAR_FILE (a JSGF file)");
  if (config.inboundPolicy === "allowlist" && !config.inboundAllowlist.length)
    problems.push("INBOUND_POLICY=allowlist needs INBOUND_ALLOWLIST (E.164 numbers separated by commas), or every call is rejected");
  problems.push(...plivoConfigProblems(config));
  const p = chosenProviders(config);
  if (p.stt === "pocketsphinx" && config.sttMode !== "open")
    problems.push(`STT_PROVIDER=pocketsphinx does dictation only; STT_MODE=${config.sttMode} runs on SoundSwallower (STT_PROVIDER=sphinx or auto)`);
  if (p.stt === "deepgram" && !config.deepgramApiKey) problems.push("STT_PROVIDER=deepgram needs DEEPGRAM_API_KEY");
  if (p.tts === "elevenlabs" && !config.elevenlabsApiKey) problems.push("TTS_PROVIDER=elevenlabs needs ELEVENLABS_API_KEY");
  if (p.agent === "openai" && !config.openaiApiKey && !config.openaiBaseUrl)
    problems.push("AGENT_PROVIDER=openai needs OPENAI_API_KEY, or OPENAI_BASE_URL for a local OpenAI-compatible server");
  // Telnyx answers calls by command and signs webhooks with its key: either alone is a deployment that cannot work.
  if (!!config.telnyxApiKey !== !!config.telnyxPublicKey)
    problems.push(
      `Telnyx needs both TELNYX_API_KEY (to answer and hang up calls through its API) and TELNYX_PUBLIC_KEY (to check webhook signatures: Account Settings > Keys & Credentials > Public Key); ${config.telnyxApiKey ? "TELNYX_PUBLIC_KEY" : "TELNYX_API_KEY"} is missing`,
    );
  if (config.telnyxConnectionId && !config.telnyxApiKey) problems.push("TELNYX_CONNECTION_ID places calls through Telnyx, which needs TELNYX_API_KEY and TELNYX_PUBLIC_KEY");
  if (config.outboundCarrier === "telnyx" && !(config.telnyxApiKey && config.telnyxConnectionId))
    problems.push("OUTBOUND_CARRIER=telnyx needs TELNYX_API_KEY, TELNYX_PUBLIC_KEY and TELNYX_CONNECTION_ID (the Call Control application's id)");
  if (config.outboundCarrier === "twilio" && !restCredentials(config)) problems.push("OUTBOUND_CARRIER=twilio needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN");
  // Reachable from other machines: forged webhooks and open control would be anyone's to send. Twilio's routes are
  // served unsigned without TWILIO_AUTH_TOKEN, unless only another carrier is configured (then they are not served).
  if (!isLoopback(config.host) && !config.twilioAuthToken && !config.telnyxPublicKey && !config.plivoAuthToken && !config.allowUnsignedWebhooks)
    problems.push(
      `HOST=${config.host} accepts connections from other machines, so a carrier's signing secret is required to check webhook and media stream signatures: TWILIO_AUTH_TOKEN, TELNYX_PUBLIC_KEY (with TELNYX_API_KEY) or PLIVO_AUTH_TOKEN (or set ALLOW_UNSIGNED_WEBHOOKS=true to run without them, which lets anyone forge calls)`,
    );
  // Binding to loopback is no proof that only local clients reach the API: a tunnel or proxy to the loopback port
  // (what PUBLIC_URL says exists) forwards anyone's requests, and carrier credentials make an open API a way to place
  // calls on the owner's account.
  const exposure = exposedBecause(config);
  if (exposure.length && !config.apiToken)
    problems.push(
      `API_TOKEN is required because ${exposure.join(", and ")}: without it the control API, the softphone and /metrics are open to anyone who reaches this service. Make one with: openssl rand -base64 32`,
    );
  if (problems.length) throw new ConfigError(problems);
  return config;
}

/**
 * Which provider serves each stage: explicit choice, else the cloud one whose key is present, else the embedded one.
 * An automatic "sphinx" becomes "pocketsphinx" in providers/select.ts when Debian's library and model are installed.
 */
export function chosenProviders(config: Config): { stt: "pocketsphinx" | "sphinx" | "deepgram" | "null"; tts: "espeak" | "elevenlabs" | "null"; agent: "demo" | "echo" | "openai" } {
  return {
    stt: config.sttProvider !== "auto" ? config.sttProvider : config.deepgramApiKey ? "deepgram" : "sphinx",
    tts: config.ttsProvider !== "auto" ? config.ttsProvider : config.elevenlabsApiKey ? "elevenlabs" : "espeak",
    agent: config.agentProvider !== "auto" ? config.agentProvider : config.openaiApiKey || config.openaiBaseUrl ? "openai" : "demo",
  };
}

export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Why this service is reachable by others or can act on a carrier account (each reason names its setting). */
export function exposedBecause(config: Config): string[] {
  const why: string[] = [];
  if (!isLoopback(config.host)) why.push(`HOST=${config.host} accepts connections from other machines`);
  if (config.publicUrl && !isLoopback(new URL(config.publicUrl).hostname)) why.push(`PUBLIC_URL=${config.publicUrl} is reachable from outside this machine`);
  const creds = [config.twilioAccountSid && "TWILIO_ACCOUNT_SID", config.twilioAuthToken && "TWILIO_AUTH_TOKEN", config.telnyxApiKey && "TELNYX_API_KEY"].filter(Boolean);
  if (config.plivoAuthId || config.plivoAuthToken) creds.push(config.plivoAuthId ? "PLIVO_AUTH_ID" : "PLIVO_AUTH_TOKEN");
  if (creds.length) why.push(`carrier credentials are set (${creds.join(", ")})`);
  return why;
}

function isAddressOrRange(v: string): boolean {
  if (v === "loopback") return true;
  const [addr, bits, ...rest] = v.split("/");
  if (rest.length || !addr || !isIP(addr)) return false;
  if (bits === undefined) return true;
  const n = Number(bits);
  return /^\d+$/.test(bits) && n <= (isIP(addr) === 4 ? 32 : 128);
}

/** Outbound calls need Twilio REST credentials. */
export function restCredentials(config: Config): { accountSid: string; authToken: string; apiUrl: string } | null {
  return config.twilioAccountSid && config.twilioAuthToken
    ? { accountSid: config.twilioAccountSid, authToken: config.twilioAuthToken, apiUrl: config.twilioApiUrl }
    : null;
}

/** The origin Twilio reaches us on; falls back to the bound address for local use. */
export function publicOrigin(config: Config, actualPort?: number): URL {
  if (config.publicUrl) return new URL(config.publicUrl);
  const host = config.host === "0.0.0.0" || config.host === "::" ? "127.0.0.1" : config.host;
  return new URL(`http://${host.includes(":") ? `[${host}]` : host}:${actualPort ?? config.port}`);
}
