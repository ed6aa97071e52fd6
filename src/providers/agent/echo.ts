import type { AgentProvider, AgentTurnInput } from "../types.ts";

export const NOT_CAUGHT_TEXT = "Sorry, I didn't catch that.";

/** The embedded default agent: repeats what it heard, streamed word by word like a real model. */
export class EchoAgent implements AgentProvider {
  readonly name = "echo";

  async *respond({ userText, signal }: AgentTurnInput): AsyncIterable<string> {
    const text = userText.trim() ? `You said: ${userText.trim()}.` : NOT_CAUGHT_TEXT;
    const words = text.split(" ");
    for (let i = 0; i < words.length; i++) {
      if (signal.aborted) return;
      yield i === 0 ? words[i]! : ` ${words[i]}`;
    }
  }
}
