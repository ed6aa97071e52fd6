import { describe, expect, it } from "vitest";
import pino from "pino";
import { loadConfig } from "../src/config.ts";
import { createProviders } from "../src/providers/select.ts";
import { CAPABILITIES_TEXT, DemoAgent, NO_TRANSFER_TEXT, TRANSFER_TEXT } from "../src/providers/agent/demo.ts";
import type { AgentAction, ChatMessage } from "../src/providers/types.ts";
import { ManualClock } from "../src/util/clock.ts";

// 2023-11-14 22:13:20 UTC
const clock = new ManualClock(1_700_000_000_000);
const agent = new DemoAgent({ clock, timeZone: "UTC" });

async function respond(userText: string, history: ChatMessage[] = [], signal = new AbortController().signal) {
  const deltas: string[] = [];
  const actions: AgentAction[] = [];
  for await (const item of agent.respond({ userText, history, signal })) {
    if (typeof item === "string") deltas.push(item);
    else actions.push(item);
  }
  return { text: deltas.join(""), deltas, actions };
}

describe("DemoAgent", () => {
  it("hands the call to a person when asked (or on 0), with TRANSFER_NUMBER; says why not without one", () => {
    const transferring = new DemoAgent({ clock, canTransfer: true });
    for (const said of ["transfer me to a human", "Can I speak to a person, please?", "I want to talk to someone", "connect me to an operator", "the caller pressed 0"])
      expect(transferring.reply(said), said).toEqual({ text: TRANSFER_TEXT, action: { type: "transfer_call" } });
    expect(transferring.reply("the caller pressed 0 1").action).toBeUndefined();
    expect(transferring.reply("a person walked in").action).toBeUndefined();
    expect(agent.reply("transfer me to a human")).toEqual({ text: NO_TRANSFER_TEXT });
  });

  it("tells the time and the date from its clock", async () => {
    expect((await respond("what time is it")).text).toBe("It's 10:13 PM.");
    expect((await respond("What's the time?")).text).toBe("It's 10:13 PM.");
    clock.advance(3 * 3600_000);
    expect((await respond("excuse me what time is it please")).text).toBe("It's 1:13 AM.");
    expect((await respond("what's the date today")).text).toBe("It's Wednesday, November 15, 2023.");
    expect((await respond("what day is it")).text).toBe("It's Wednesday, November 15, 2023.");
    expect(new DemoAgent({ clock, timeZone: "America/New_York" }).reply("what time is it").text).toBe("It's 8:13 PM.");
  });

  it("repeats after the caller", async () => {
    expect((await respond("repeat after me the quick brown fox")).text).toBe("the quick brown fox.");
    expect((await respond("Say: I'm on the train.")).text).toBe("i'm on the train.");
    expect((await respond("please say hello world")).text).toBe("hello world.");
    expect((await respond("repeat after me")).text).toMatch(/^Repeat what\?/);
  });

  it("says its last answer again", async () => {
    const history: ChatMessage[] = [
      { role: "assistant", content: "Hello! This is Parley." },
      { role: "user", content: "what time is it" },
      { role: "assistant", content: "It's 10:13 PM." },
      { role: "user", content: "say that again" },
    ];
    expect((await respond("say that again", history)).text).toBe("It's 10:13 PM.");
    expect((await respond("repeat that", history)).text).toBe("It's 10:13 PM.");
    expect((await respond("repeat that", [])).text).toMatch(/^I haven't said anything yet/);
  });

  it("says what Parley can do, and that a real LLM is one setting away", async () => {
    for (const q of ["what can you do", "help", "who are you", "are you a robot"]) expect((await respond(q)).text).toBe(CAPABILITIES_TEXT);
    expect(CAPABILITIES_TEXT).toMatch(/OPENAI_API_KEY/);
    expect(CAPABILITIES_TEXT).toMatch(/OPENAI_BASE_URL/);
  });

  it("ends the call after saying goodbye", async () => {
    const r = await respond("goodbye");
    expect(r.text).toBe("Goodbye!");
    expect(r.actions).toEqual([{ type: "end_call", reason: "caller said goodbye" }]);
    expect((await respond("hello")).actions).toEqual([]);
  });

  it("echoes anything else, so ordinary sentences do not trip an intent", async () => {
    const jfk = "and so my fellow americans ask not what your country can do for you ask what you can do for your country";
    expect((await respond(jfk)).text).toBe(`You said: ${jfk}.`);
    expect((await respond("what the weather like")).text).toBe("You said: what the weather like.");
    expect((await respond("they say it will rain")).text).toBe("You said: they say it will rain.");
    expect((await respond("  ")).text).toBe("Sorry, I didn't catch that.");
  });

  it("streams word by word and stops when aborted", async () => {
    const ac = new AbortController();
    const seen: string[] = [];
    for await (const item of agent.respond({ userText: "what can you do", history: [], signal: ac.signal })) {
      seen.push(item as string);
      if (seen.length === 3) ac.abort();
    }
    expect(seen).toEqual(["I'm", " Parley's", " built-in"]);
    const { deltas } = await respond("goodbye now friend");
    expect(deltas.length).toBeGreaterThan(1);
  });
});

describe("choosing the agent", () => {
  const log = pino({ level: "silent" });
  it("the demo is the embedded default; echo stays selectable; a key picks OpenAI", async () => {
    const pick = async (env: Record<string, string>) => {
      const { stt, agent } = await createProviders(loadConfig({ env: { STT_PROVIDER: "null", ...env } }), log);
      await stt.close();
      return agent.name;
    };
    expect(await pick({})).toBe("demo");
    expect(await pick({ AGENT_PROVIDER: "echo" })).toBe("echo");
    expect(await pick({ AGENT_PROVIDER: "demo", OPENAI_API_KEY: "sk-test" })).toBe("demo");
    expect(await pick({ OPENAI_API_KEY: "sk-test" })).toBe("openai");
  });
});
