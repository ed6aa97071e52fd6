/**
 * What the load generator (bench/load/generator.ts) tells its parent over IPC (`process.send`), or prints to stdout
 * when it runs on its own.
 *
 *   node --import tsx bench/load/generator.ts --url http://127.0.0.1:3334 --calls 100 --seconds 20 --ramp-ms 2000 \
 *     [--auth-token <twilio auth token>]
 *
 * Times are milliseconds unless the name says otherwise. Counters are totals over all calls since the run started.
 */

/** Sent once a second while the run lasts. */
export interface ProgressMessage {
  type: "progress";
  /** Seconds since the first call was started. */
  elapsedS: number;
  /** Calls whose webhook/upgrade has been started so far (ramping up to `--calls`). */
  callsStarted: number;
  /** Streams open (after `start`, before hang-up). */
  callsLive: number;
  /** Calls finished: hung up by the caller at the end, closed by the server, or failed to connect. */
  callsDone: number;
  framesSent: number;
  framesReceived: number;
  /** Underrun heard by all callers so far (20 ms per empty playout tick mid-utterance). */
  underrunMs: number;
  /** The generator's own event-loop delay p99 over the last second (a busy generator distorts every figure). */
  eventLoopP99Ms: number;
  /** The generator's CPU use over the last second, in cores (1 = one core busy). */
  cpuCores: number;
}

export interface CallSummary {
  callSid: string;
  connected: boolean;
  /**
   * How the call ended: "caller" (hung up by the caller: at the end of its talk time, or at once on SIGTERM), "server"
   * (Parley closed it first), "connect-failed", "unfinished" (never started or still connecting when the run was cut short).
   */
  end: "caller" | "server" | "connect-failed" | "unfinished";
  greetingMs: number | null;
  turns: number;
  turnLatencies: number;
  bargeInAttempts: number;
  bargeIns: number;
  clears: number;
  underrunMs: number;
  lateFrames: number;
  lateAfterClear: number;
  framesSent: number;
  framesReceived: number;
  error: string | null;
}

/** Sent once, after every call has hung up; then the generator exits 0. */
export interface ResultMessage {
  type: "result";
  /** `--calls`, `--seconds`, `--ramp-ms` as run. */
  calls: number;
  secondsPerCall: number;
  rampMs: number;
  callsConnected: number;
  /** Calls that ran to their planned hang-up with the stream open throughout. */
  callsCompleted: number;
  callsFailed: number;

  /** Raw samples, one per event, all calls together. */
  /** End of the caller's speech (energy end of the clip, on the caller's send schedule) -> first reply frame received. */
  turnLatencyMs: number[];
  /** Onset of the caller's speech over a reply -> `clear` received. */
  bargeInMs: number[];
  /** `start` sent -> first greeting frame received. */
  greetingMs: number[];

  underrunMs: number;
  /** Frames that arrived while the caller's playout queue had run dry mid-utterance (each one arrived too late). */
  lateFrames: number;
  /** Media frames received after a `clear` while the caller was still speaking over it (must be 0). */
  lateAfterClear: number;
  framesSent: number;
  framesReceived: number;
  /** Caller turns started (clips spoken). */
  turns: number;
  /** Clips started while a reply was playing (barge-ins tried) and those that got no `clear` within 1 s of speech end. */
  bargeInAttempts: number;
  bargeInsWithoutClear: number;
  clears: number;
  /** Caller turns with no reply within 10 s of the end of speech. */
  repliesMissed: number;
  /** Underrun heard (ms, all calls) per wall-clock second since the run started; index = second. */
  underrunTimeline: number[];

  errors: {
    /** Webhook refused or failed, TwiML without a stream (e.g. `<Reject reason="busy"/>`), upgrade refused. */
    connect: number;
    /** Sockets Parley closed before the caller hung up. */
    closedByServer: number;
    /** Malformed or unexpected messages from Parley (bad JSON, wrong streamSid, payload not 160 bytes, ...). */
    protocol: number;
    /** The run overran its deadline (ramp + talk time + 60 s) and the calls still up were hung up. */
    timeout: number;
    total: number;
    /** The first few error messages, prefixed with the call's index. */
    messages: string[];
  };

  /** The generator itself: if these are high, the generator (not Parley) may be the bottleneck. */
  eventLoopP99Ms: number;
  eventLoopMaxMs: number;
  /** How late caller frames left against their 20 ms schedule (tick granularity is 5 ms). */
  sendLagP99Ms: number;
  sendLagMaxMs: number;
  cpuMs: number;
  cpuUserMs: number;
  cpuSystemMs: number;
  /** Wall time of the run (first call started -> result). */
  wallMs: number;

  perCall: CallSummary[];
}

/** Bad arguments or a crash before the run (then the generator exits 2 or 1). */
export interface ErrorMessage {
  type: "error";
  message: string;
}

export type GeneratorMessage = ProgressMessage | ResultMessage | ErrorMessage;
