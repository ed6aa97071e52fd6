import type { Logger } from "pino";
import type { Config } from "../config.ts";
import type { AgentProvider, SttProvider, TtsProvider } from "../providers/types.ts";
import type { CallStore } from "../store/call-store.ts";
import type { Clock } from "../util/clock.ts";
import type { SileroVadPool } from "../vad/silero-pool.ts";
import type { Carriers } from "../carriers/carrier.ts";
import type { Metrics } from "../metrics.ts";
import type { PipelineStats } from "./pipeline-stats.ts";
import type { SpeechCache } from "./speech-cache.ts";
import type { PlayoutTicker } from "./ticker.ts";
import type { OutcomeExtractor } from "../outcome/extract.ts";
import type { RoutingTable } from "../session/session.ts";
import type { RedisConnection } from "../state/redis-client.ts";
import type { RecordingStore } from "../recording/recordings.ts";

/** Process-wide parts every call shares. */
export interface Services {
  config: Config;
  log: Logger;
  clock: Clock;
  store: CallStore;
  vad: SileroVadPool;
  stt: SttProvider;
  tts: TtsProvider;
  agent: AgentProvider;
  speechCache: SpeechCache;
  ticker: PlayoutTicker;
  /** The carriers served (webhooks, media sockets), and the one that places outbound calls, if any. */
  carriers: Carriers;
  metrics: Metrics;
  stats: PipelineStats;
  /** Inbound calls' sessions, by dialled number (ROUTES_FILE). */
  routes: RoutingTable;
  /** Writes each ended call's outcome: the model where one is configured, else the transcript. */
  outcomes: OutcomeExtractor;
  /** The fleet's shared state (REDIS_URL), or null: each app then keeps its state in memory. */
  redis: RedisConnection | null;
  /** Call recordings beside the records (RECORD_CALLS, session `record`). */
  recordings: RecordingStore;
}
