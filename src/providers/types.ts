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

export interface TtsProvider {
  readonly name: string;
  /** Warm up (load models, spawn workers). Resolves when the provider can synthesize. */
  ready(): Promise<void>;
  /** Synthesize one piece of text, streaming 8 kHz mu-law as it is produced. */
  synthesize(text: string, signal: AbortSignal): AsyncIterable<TtsChunk>;
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
  /** End the utterance and resolve its final transcript. */
  finish(): Promise<Transcript>;
  /** Drop the current utterance, if any, without a result. */
  cancel(): void;
  close(): void;
}

export interface SttProvider {
  readonly name: string;
  ready(): Promise<void>;
  /** `onPartial` receives the hypothesis so far while the caller speaks, where the provider has one. */
  openSession(opts: { callId: string; onPartial?: (text: string) => void }): SttSession;
  close(): Promise<void>;
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
}

export interface AgentProvider {
  readonly name: string;
  /** Stream the reply as text deltas. */
  respond(input: AgentTurnInput): AsyncIterable<string>;
}
