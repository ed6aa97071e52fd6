import type { InboundAudio } from "../call/inbound.ts";
import type { Services } from "../call/services.ts";
import type { Config } from "../config.ts";
import type { Session } from "../session/session.ts";
import type { CallRecorder } from "./recorder.ts";

export const RECORDING_FORMAT = "WAV, 16-bit PCM, 8000 Hz, 2 channels: left the caller, right Parley";

/** Whether a call with this session is recorded: its own `record`, else RECORD_CALLS. */
export function isRecorded(session: Session, config: Pick<Config, "recordCalls">): boolean {
  return session.record ?? config.recordCalls;
}

/** A recorded call's first words: the consent notice (the session's, else RECORDING_NOTICE), then `text`. */
export function withRecordingNotice(text: string, session: Session, config: Pick<Config, "recordCalls" | "recordingNotice">): string {
  const notice = isRecorded(session, config) ? (session.recordingNotice ?? config.recordingNotice) : undefined;
  return notice ? `${notice} ${text}`.trim() : text;
}

/** How a call's recording reports to the call's record. */
export interface RecordingEvents {
  record(type: string, data: Record<string, unknown>): void;
  /** After the call has ended (its journal is closed). */
  afterEnd(type: string, data: Record<string, unknown>): Promise<void>;
}

/**
 * A call's recording as the call sees it: started with the first stream, fed by the stream's taps (inbound frames,
 * outbound frames on the playout clock, clears), finished with the call. A failed write (a full disk) stops the
 * recording and is recorded as `recording.error`; the call goes on.
 */
export class CallRecording {
  private recorder: CallRecorder | null = null;
  private ended = false;

  constructor(
    private readonly services: Services,
    private readonly callSid: string,
    private readonly part: number,
    private readonly events: RecordingEvents,
  ) {}

  /** A media stream started: the recording starts with the first, and the caller's channel follows each. */
  streamStarted(inbound: InboundAudio): void {
    const now = this.services.clock.now();
    if (!this.recorder) {
      this.recorder = this.services.recordings.start(this.callSid, this.part, now, (message, code) => this.failed(message, code));
      this.events.record("recording.started", { path: this.recorder.path, part: this.part, format: RECORDING_FORMAT });
    } else this.recorder.streamStarted(now);
    inbound.tap = this.onCaller;
  }

  readonly onCaller = (mulaw: Uint8Array): void => this.recorder?.caller(mulaw, this.services.clock.now());
  readonly onSent = (mulaw: Uint8Array, startMs: number): void => this.recorder?.played(mulaw, startMs);
  readonly onCut = (now: number): void => void this.recorder?.cut(now);

  /** The call ended (or this process is leaving it): the file is completed in the background. */
  finish(): void {
    const r = this.recorder;
    if (!r || this.ended) return;
    this.ended = true;
    const summary = r.finish();
    if (summary) this.events.record("recording.finished", { path: summary.path, bytes: summary.bytes, durationS: summary.durationS, droppedMs: summary.droppedMs });
    this.services.recordings.finishingUntil(this.callSid, r.done);
  }

  private failed(message: string, code: string | null): void {
    const data = { message: `recording stopped: ${message}`, code, path: this.recorder?.path ?? null, bytes: this.recorder?.durableBytes ?? null };
    this.services.log.error({ callSid: this.callSid, code, err: message }, "call recording failed; the call goes on");
    if (this.ended) this.events.afterEnd("recording.error", data).catch(() => {});
    else this.events.record("recording.error", data);
  }
}
