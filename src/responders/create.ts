import type { Config } from "../config.ts";
import type { AgentProvider } from "../providers/types.ts";
import { agentOf, type Session } from "../session/session.ts";
import { AssistantResponder } from "./assistant.ts";
import { CascadeResponder } from "./cascade.ts";
import type { Responder } from "./responder.ts";

export const DEFAULT_FILLER = "One moment.";

/** The brain a call's session asks for. */
export function createResponder(session: Session, deps: { config: Config; agent: AgentProvider }): Responder {
  const choice = agentOf(session, { relayUrl: deps.config.agentRelayUrl });
  if (choice === "assistant")
    return new AssistantResponder({ filler: session.filler ?? DEFAULT_FILLER, fillerAfterMs: deps.config.assistantFillerMs, maxWaitMs: deps.config.assistantMaxWaitMs });
  if (choice === "llm") return new CascadeResponder(deps.agent, session);
  throw new Error(`no ConversationRelay bridge in this build for ${choice.relay}`);
}
