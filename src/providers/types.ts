/**
 * The three provider seams. Each is streaming and cancellable: every call takes an AbortSignal, and an aborted
 * operation must stop work promptly and must not deliver anything after the abort.
 */

/** One word of synthesized audio, positioned in milliseconds from the start of that synthesis. */
export interface WordTiming {
  text: string;
  startMs: number;
}

/** A piece of synthesized speech, already in Twilio's format: 8 kHz mono mu-law bytes. */
export interface TtsChunk {
  mulaw: Uint8Array;
  /** Words whose audio starts in this chunk (positions relative to the start of the synthesis). */
  words: WordTiming[];
}

/**
 * One utterance whose text arrives in pieces (an agent's reply, clause by clause). Audio streams out as it is made;
 * word timings are relative to the start of the utterance. Aborting the signal given to `openStream` cancels it.
 */
export interface TtsStream extends AsyncIterable<TtsChunk> {
  /** More text; each piece ends at a clause or sentence boundary, so the provider may speak what it has. */
  write(text: string): void;
  /** No more text: the iteration ends after the last audio. */
  end(): void;
}

/**
 * Who speaks, and in which language: a call's session picks them (`voice`, `language`), each provider maps them onto
 * its own voices. Both absent means the provider's configured default.
 */
export interface VoiceChoice {
  /** The provider's own voice name or id (an eSpeak voice like "en-gb", an ElevenLabs voice id). */
  voice?: string;
  /** BCP-47, e.g. "en-US", "de". */
  language?: string;
}

export interface TtsProvider {
  readonly name: string;
  /** Warm up (load models, spawn workers, open connections). Resolves when the provider can synthesize. */
  ready(): Promise<void>;
  /** Synthesize one piece of text, streaming 8 kHz mu-law as it is produced, in the given voice (default: configured). */
  synthesize(text: string, signal: AbortSignal, voice?: VoiceChoice): AsyncIterable<TtsChunk>;
  /** Providers that keep prosody across a streamed utterance (one context per turn) implement this. */
  openStream?(signal: AbortSignal, opts?: { callId?: string; voice?: VoiceChoice }): TtsStream;
  /**
   * Why this provider cannot speak in `choice` (an unknown voice, a language it lacks), or undefined when it can.
   * Asked when a call's session is set, so a bad voice is refused up front rather than failing mid-call.
   */
  voiceProblem?(choice: VoiceChoice): string | undefined;
  /**
   * A call is about to need this provider (its phone rings, or its stream starts): open the connection its first
   * turn will use now, so that turn is as fast as the rest. Resolves when done; never rejects (a failure only means
   * the first turn connects as it would have anyway).
   */
  warm?(callId: string, voice?: VoiceChoice): Promise<void>;
  close(): Promise<void>;
}

export interface Transcript {
  text: string;
  /** Provider confidence in [0, 1] when known. */
  confidence?: number;
}

/**
 * One caller's recognition session. Audio arrives as 16-bit PCM at 8 kHz, only while the caller speaks
 * (plus a short pre-roll): the VAD decides when an utterance starts and ends.
 */
export interface SttSession {
  /** Begin an utterance. */
  start(): void;
  /** Feed audio of the current utterance. The array may be reused by the caller after return: copy if kept. */
  push(pcm: Int16Array): void;
  /**
   * Providers that take Twilio's 8 kHz mu-law as it is (Deepgram) implement this, and then get only this: the bytes
   * pass through without decoding. The array may be reused by the caller after return: copy if kept.
   */
  pushMulaw?(mulaw: Uint8Array): void;
  /**
   * The caller has been silent for a while (STT_EARLY_DECODE_MS): the utterance may be over, though its end is not
   * confirmed until VAD_MIN_SILENCE_MS. A recogniser that decodes whole utterances may start on the audio it has, so
   * the transcript is ready when the end is confirmed; `resume()` says the caller went on (that work is discarded).
   */
  pause?(): void;
  resume?(): void;
  /** End the utterance and resolve its final transcript. */
  finish(): Promise<Transcript>;
  /** Drop the current utterance, if any, without a result. */
  cancel(): void;
  close(): void;
}

export interface SttProvider {
  readonly name: string;
  ready(): Promise<void>;
  /**
   * `onPartial` receives the hypothesis so far while the caller speaks; `onStable` a final, stable transcript of the
   * utterance so far before the utterance ends (where the provider knows one), for preemptive replies.
   */
  openSession(opts: SttSessionOptions): SttSession;
  /** Counters of the provider's own work, for /debug/stats (e.g. decodes and their CPU time). */
  stats?(): Record<string, number>;
  /** Why this provider cannot listen in `language` (BCP-47), or undefined when it can. Asked when a session is set. */
  languageProblem?(language: string): string | undefined;
  /**
   * A call is about to need this provider (its phone rings, or its stream starts): open the connection its first
   * turn will use now, so that turn is as fast as the rest. Resolves when done; never rejects (a failure only means
   * the first turn connects as it would have anyway).
   */
  warm?(callId: string, language?: string): Promise<void>;
  close(): Promise<void>;
}

export interface SttSessionOptions {
  callId: string;
  /** The call's language (BCP-47); the provider's configured one when absent. */
  language?: string;
  onPartial?: (text: string) => void;
  onStable?: (text: string) => void;
}

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

export interface AgentTurnInput {
  /** The conversation so far, oldest first; interrupted assistant turns hold only the text the caller heard. */
  history: ChatMessage[];
  /** What the caller just said (may be empty when nothing was recognised). */
  userText: string;
  signal: AbortSignal;
  /** This call's brief (its session's `instructions`), given to the model with its standing prompt. */
  instructions?: string;
  /** Names of the user tools this call may use; all of them when omitted. */
  tools?: string[];
  /**
   * Present on a speculative turn (a preemptive reply, started before the caller's turn is confirmed over). The agent
   * may stream text meanwhile, but must await this before anything with side effects (a user tool): it resolves true
   * once the turn is confirmed and the reply taken over, false when the speculation is discarded (then stop: nothing
   * may have run). An agent that has nothing but text and actions (which only take effect when the reply is taken)
   * may ignore it.
   */
  confirm?: () => Promise<boolean>;
}

/** Something the agent does besides talking. */
export type AgentAction =
  /** End the call once what was said so far has been heard. */
  | { type: "end_call"; reason?: string }
  /** Play touch tones into the call (e.g. to navigate a phone menu). */
  | { type: "send_dtmf"; digits: string }
  /** Hand the call to a human (src/call/transfer.ts); `to` defaults to TRANSFER_NUMBER, `mode` to TRANSFER_MODE. */
  | { type: "transfer_call"; to?: string; mode?: "cold" | "warm"; announcement?: string; briefing?: string };

export interface AgentProvider {
  readonly name: string;
  /** The user tools a call's session may name (none for agents without tools). */
  readonly toolNames?: string[];
  /** Stream the reply as text deltas, with actions where the agent takes them. */
  respond(input: AgentTurnInput): AsyncIterable<string | AgentAction>;
  /**
   * A call is about to need this provider (its phone rings, or its stream starts): open the connection its first
   * turn will use now, so that turn is as fast as the rest. Resolves when done; never rejects (a failure only means
   * the first turn connects as it would have anyway).
   */
  warm?(callId: string): Promise<void>;
}
