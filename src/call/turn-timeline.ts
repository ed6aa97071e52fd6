import type { TurnLatency } from "../store/call-record.ts";

interface Marks {
  speechEndedAt?: number;
  transcriptAt?: number;
  agentRequestAt?: number;
  agentFirstTextAt?: number;
  ttsRequestAt?: number;
  ttsFirstByteAt?: number;
  firstFrameAt?: number;
}

const diff = (a?: number, b?: number): number | null => (a !== undefined && b !== undefined ? Math.round((b - a) * 10) / 10 : null);

/**
 * The moments of each reply turn, from the caller's end of speech to our first audio frame, for the per-turn latency
 * breakdown. Caller-side moments are collected before the reply turn exists and bound to it when it starts.
 */
export class TurnTimeline {
  private pending: Marks = {};
  private readonly turns = new Map<number, Marks>();

  /**
   * The caller stopped speaking: a new utterance's moments start here. A transcript that came after its turn had
   * begun (the STT slower than TRANSCRIPT_TIMEOUT_MS) belongs to no turn and is dropped, not lent to the next one.
   */
  speechEnded(t: number): void {
    this.pending = { speechEndedAt: t };
  }

  transcript(t: number): void {
    this.pending.transcriptAt = t;
  }

  /** A reply turn begins: it inherits the caller-side moments. */
  beginTurn(turnId: number): void {
    this.turns.set(turnId, this.pending);
    this.pending = {};
  }

  private at(turnId: number): Marks {
    let m = this.turns.get(turnId);
    if (!m) this.turns.set(turnId, (m = {}));
    return m;
  }

  /** Record a moment once per turn; returns true the first time. */
  mark(turnId: number, key: Exclude<keyof Marks, "speechEndedAt" | "transcriptAt">, t: number): boolean {
    const m = this.at(turnId);
    if (m[key] !== undefined) return false;
    m[key] = t;
    return true;
  }

  latency(turnId: number): TurnLatency | undefined {
    const m = this.turns.get(turnId);
    if (!m) return undefined;
    return {
      sttMs: diff(m.speechEndedAt, m.transcriptAt),
      agentMs: diff(m.transcriptAt ?? m.agentRequestAt, m.agentFirstTextAt),
      ttsMs: diff(m.agentFirstTextAt, m.ttsFirstByteAt),
      sendMs: diff(m.ttsFirstByteAt, m.firstFrameAt),
      totalMs: diff(m.speechEndedAt, m.firstFrameAt),
      handoff: {
        sttToAgentMs: diff(m.transcriptAt, m.agentRequestAt),
        agentToTtsMs: diff(m.agentFirstTextAt, m.ttsRequestAt),
        ttsToFrameMs: diff(m.ttsFirstByteAt, m.firstFrameAt),
      },
    };
  }

  end(turnId: number): void {
    this.turns.delete(turnId);
  }
}
