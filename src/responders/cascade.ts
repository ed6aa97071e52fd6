import type { AgentProvider } from "../providers/types.ts";
import type { CallerTurn, Responder, ResponderItem } from "./responder.ts";

/**
 * The STT → LLM → TTS cascade: the configured agent (an OpenAI-compatible model, or the embedded one) answers each
 * turn with this call's brief and tools; Parley's own TTS speaks it. It may speculate (start on a stable transcript
 * before the turn is confirmed) because the agent defers tool calls until the turn is confirmed.
 */
export class CascadeResponder implements Responder {
  readonly kind = "cascade" as const;
  readonly speculates = true;

  constructor(
    private readonly agent: AgentProvider,
    private readonly session: { instructions?: string; tools?: string[] } = {},
  ) {}

  respond(turn: CallerTurn): AsyncIterable<ResponderItem> {
    return this.agent.respond({
      history: turn.history,
      userText: turn.userText,
      signal: turn.signal,
      ...(this.session.instructions ? { instructions: this.session.instructions } : {}),
      ...(this.session.tools ? { tools: this.session.tools } : {}),
    });
  }

  close(): void {}
}
