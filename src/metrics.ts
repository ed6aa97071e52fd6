import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { RecordEvent, TurnLatency } from "./store/call-record.ts";

const LATENCY_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000];

/**
 * Prometheus metrics, derived from the same timestamped call events as the call record: every event a call records
 * passes through `observe`, so the two can never disagree.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly calls = new Counter({ name: "parley_calls_total", help: "Calls created, by direction", labelNames: ["direction"], registers: [this.registry] });
  private readonly ended = new Counter({ name: "parley_calls_ended_total", help: "Calls ended, by reason", labelNames: ["reason"], registers: [this.registry] });
  private readonly bargeIns = new Counter({ name: "parley_barge_ins_total", help: "Utterances interrupted, by what interrupted them", labelNames: ["by"], registers: [this.registry] });
  private readonly protocolErrors = new Counter({ name: "parley_protocol_errors_total", help: "Malformed Media Stream messages, by kind", labelNames: ["kind"], registers: [this.registry] });
  private readonly providerErrors = new Counter({ name: "parley_provider_errors_total", help: "STT, TTS and agent failures", labelNames: ["stage"], registers: [this.registry] });
  private readonly turnLatency = new Histogram({
    name: "parley_turn_latency_ms",
    help: "Per reply turn: stt (VAD end -> final transcript), agent (-> first text), tts (-> first audio), send (-> first frame), total (VAD end -> first frame)",
    labelNames: ["stage"],
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  private readonly handoff = new Histogram({
    name: "parley_handoff_ms",
    help: "Parley's own time at each hand-off: stt_to_agent, agent_to_tts, tts_to_frame",
    labelNames: ["stage"],
    buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 50, 100],
    registers: [this.registry],
  });
  readonly liveCalls = new Gauge({ name: "parley_live_calls", help: "Calls in progress", registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: "parley_" });
  }

  observe(e: RecordEvent): void {
    switch (e.type) {
      case "call.created":
        this.calls.inc({ direction: String(e.direction ?? "inbound") });
        break;
      case "call.ended":
        this.ended.inc({ reason: String(e.reason ?? "ended") });
        break;
      case "barge-in":
        this.bargeIns.inc({ by: String(e.by ?? "speech") });
        break;
      case "protocol.error":
        this.protocolErrors.inc({ kind: String(e.kind ?? "unknown") }, typeof e.count === "number" ? e.count : 1);
        break;
      case "stt.error":
      case "tts.error":
      case "agent.error":
        this.providerErrors.inc({ stage: e.type.slice(0, -6) });
        break;
      case "turn": {
        const latency = (e.turn as { latency?: TurnLatency } | undefined)?.latency;
        if (!latency) break;
        for (const stage of ["stt", "agent", "tts", "send", "total"] as const) {
          const v = latency[`${stage}Ms`];
          if (v !== null && v >= 0) this.turnLatency.observe({ stage }, v);
        }
        const h = latency.handoff;
        if (h) {
          if (h.sttToAgentMs !== null && h.sttToAgentMs >= 0) this.handoff.observe({ stage: "stt_to_agent" }, h.sttToAgentMs);
          if (h.agentToTtsMs !== null) this.handoff.observe({ stage: "agent_to_tts" }, h.agentToTtsMs);
          if (h.ttsToFrameMs !== null) this.handoff.observe({ stage: "tts_to_frame" }, h.ttsToFrameMs);
        }
        break;
      }
    }
  }
}
