/**
 * The embedded default agent: a small offline demo. It answers a handful of things a first-time caller tries (the
 * time, the date, "repeat after me ...", "say that again", what it can do, "transfer me to a human", goodbye), says plainly that a real LLM is
 * one setting away, and otherwise repeats what it heard, like the echo agent. Streamed word by word and cancellable,
 * like a real model.
 */
import { systemClock, type Clock } from "../../util/clock.ts";
import type { AgentAction, AgentProvider, AgentTurnInput, ChatMessage } from "../types.ts";
import { NOT_CAUGHT_TEXT } from "./echo.ts";

export const LLM_HINT = "For a real conversation, set OPENAI_API_KEY, or OPENAI_BASE_URL for a local model, and Parley talks to that instead.";

export const CAPABILITIES_TEXT =
  "I'm Parley's built-in demo, running offline. I can tell you the time or the date, repeat after you if you say " +
  "repeat after me and then the words, say my last answer again, and otherwise tell you what I heard. " +
  LLM_HINT;

export interface DemoAgentOptions {
  /** Where the time comes from (tests pass a ManualClock). */
  clock?: Clock;
  /** IANA time zone for the time and date; default the process's (the TZ environment variable). */
  timeZone?: string;
  /** A number to hand calls over to is configured (TRANSFER_NUMBER): "transfer me to a human" transfers. */
  canTransfer?: boolean;
}

export const TRANSFER_TEXT = "Of course. I'll put you through to a person.";
export const NO_TRANSFER_TEXT = "I can't put you through to a person: no TRANSFER_NUMBER is set.";

/** A reply: what to say, and an action to take once it has been heard. */
interface Reply {
  text: string;
  action?: AgentAction;
}

type Intent = { match: RegExp; reply: (m: RegExpMatchArray, history: ChatMessage[]) => Reply | undefined };

export class DemoAgent implements AgentProvider {
  readonly name = "demo";
  private readonly clock: Clock;
  private readonly timeZone: string | undefined;
  private readonly canTransfer: boolean;

  /**
   * Matched in order against the normalised utterance (lower case, no punctuation). Anchored or whole-phrase, so that
   * ordinary sentences ("ask what you can do for your country") fall through to the echo.
   */
  private readonly intents: Intent[] = [
    { match: /^(?:please )?repeat after me\b\s*(.*)$/, reply: (m) => repeatAfter(m[1]!) },
    { match: /^(?:please )?(?:say (?:that|it) again|repeat(?: that| it)?(?: again)?|what did you say|pardon|come again)$/, reply: (_, h) => this.again(h) },
    { match: /^(?:please )?say (.+)$/, reply: (m) => repeatAfter(m[1]!) },
    { match: /\bwhat(?:'s| is)? the time\b|\bwhat time is it\b|\bthe time please\b|\btell me the time\b/, reply: () => ({ text: `It's ${this.time()}.` }) },
    { match: /\bwhat(?:'s| is)? (?:the date|today's date)\b|\bwhat day is (?:it|today)\b/, reply: () => ({ text: `It's ${this.date()}.` }) },
    {
      match: /\bwhat can you do\b|\bwhat do you do\b|\bwho are you\b|\bwhat are you\b|^help\b|\bhelp me\b|\bare you (?:real|a robot|a person|human)\b/,
      reply: () => ({ text: CAPABILITIES_TEXT }),
    },
    {
      // Or 0 on the keypad, the operator key of phone menus (touch tones reach the agent as "the caller pressed 0").
      match: /^the caller pressed 0$|\b(?:transfer|put|connect) me (?:through )?to (?:a |an )?(?:human|person|real person|someone|agent|operator)\b|\b(?:speak|talk) (?:to|with) (?:a |an )?(?:human|person|real person|someone|agent|operator)\b/,
      reply: () => (this.canTransfer ? { text: TRANSFER_TEXT, action: { type: "transfer_call" } } : { text: NO_TRANSFER_TEXT }),
    },
    { match: /^(?:hello|hi|hey)(?: there)?$/, reply: () => ({ text: "Hello! Ask me what I can do, or what time it is." }) },
    { match: /^(?:good ?bye|bye(?: bye)?|hang up|that's all)$/, reply: () => ({ text: "Goodbye!", action: { type: "end_call", reason: "caller said goodbye" } }) },
  ];

  constructor(options: DemoAgentOptions = {}) {
    this.clock = options.clock ?? systemClock;
    this.timeZone = options.timeZone;
    this.canTransfer = options.canTransfer ?? false;
  }

  /** The reply to one utterance, before streaming (exposed for tests and tools). */
  reply(userText: string, history: ChatMessage[] = []): Reply {
    const heard = userText.trim();
    if (!heard) return { text: NOT_CAUGHT_TEXT };
    const said = normalise(heard);
    for (const intent of this.intents) {
      const m = said.match(intent.match);
      const r = m && intent.reply(m, history);
      if (r) return r;
    }
    return { text: `You said: ${heard}.` };
  }

  async *respond({ userText, history, signal }: AgentTurnInput): AsyncIterable<string | AgentAction> {
    const { text, action } = this.reply(userText, history);
    const words = text.split(" ");
    for (let i = 0; i < words.length; i++) {
      if (signal.aborted) return;
      yield i === 0 ? words[i]! : ` ${words[i]}`;
    }
    if (action && !signal.aborted) yield action;
  }

  private time(): string {
    // ICU puts a narrow no-break space before AM/PM: plain spaces for the synthesiser and the transcript.
    return new Intl.DateTimeFormat("en-US", { hour: "numeric", minute: "2-digit", timeZone: this.timeZone }).format(this.clock.now()).replace(/\s/g, " ");
  }

  private date(): string {
    return new Intl.DateTimeFormat("en-US", { weekday: "long", month: "long", day: "numeric", year: "numeric", timeZone: this.timeZone }).format(this.clock.now());
  }

  private again(history: ChatMessage[]): Reply {
    const last = [...history].reverse().find((m) => m.role === "assistant");
    return { text: last ? last.content : "I haven't said anything yet. Ask me what I can do." };
  }
}

/** Lower case, punctuation other than apostrophes to single spaces: "What's the time?" -> "what's the time". */
function normalise(text: string): string {
  return text.toLowerCase().replace(/[’]/g, "'").replace(/[^a-z0-9']+/g, " ").trim();
}

function repeatAfter(words: string): Reply {
  return { text: words.trim() ? `${words.trim()}.` : "Repeat what? Say repeat after me, and then the words." };
}
