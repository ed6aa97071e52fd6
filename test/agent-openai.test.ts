/**
 * The OpenAI-compatible agent, driven through the real `openai` client against a local OpenAI-protocol server
 * (test/helpers/openai-mock.ts): the request it sends, streaming, tools, and every fault it must turn into a clear error.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_EMPTY_USER_TEXT, DEFAULT_OPENAI_SYSTEM_PROMPT, OpenAiAgent, loadToolsModule, type AgentTool, type OpenAiAgentOptions } from "../src/providers/agent/openai.ts";
import type { AgentAction, AgentTurnInput, ChatMessage } from "../src/providers/types.ts";
import { OpenAiMock } from "./helpers/openai-mock.ts";

let mock: OpenAiMock;
const unhandled: unknown[] = [];
const onUnhandled = (err: unknown) => unhandled.push(err);

beforeAll(async () => {
  process.on("unhandledRejection", onUnhandled);
  mock = await OpenAiMock.start({ apiKey: "sk-test" });
});
afterAll(async () => {
  await mock.close();
  process.off("unhandledRejection", onUnhandled);
  expect(unhandled).toEqual([]);
});
afterEach(() => {
  mock.requests.length = 0;
  mock.disconnects = 0;
});

function agent(opts: Partial<OpenAiAgentOptions> = {}): OpenAiAgent {
  return new OpenAiAgent({ apiKey: "sk-test", baseURL: mock.url, firstTokenTimeoutMs: 2000, totalTimeoutMs: 5000, ...opts });
}

function turn(userText: string, history: ChatMessage[] = [], signal = new AbortController().signal): AgentTurnInput {
  return { history, userText, signal };
}

/** Everything the agent yields: the text, the actions, and the error it ended with (if any). */
async function collect(items: AsyncIterable<string | AgentAction>) {
  const deltas: string[] = [];
  const actions: AgentAction[] = [];
  let error: Error | undefined;
  try {
    for await (const item of items) {
      if (typeof item === "string") deltas.push(item);
      else actions.push(item);
    }
  } catch (err) {
    error = err as Error;
  }
  return { text: deltas.join(""), deltas, actions, error };
}

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe("request contract", () => {
  it("sends model, stream, the system prompt, the history in order, the user text last, and the tools", async () => {
    const weather: AgentTool = {
      name: "get_weather",
      description: "Current weather for a city.",
      parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
      handler: async () => "sunny",
    };
    mock.reply({ text: "Sure, the weather is sunny." });
    const history: ChatMessage[] = [
      { role: "assistant", content: "Hello! How can I help?" },
      { role: "user", content: "Hi there." },
      { role: "assistant", content: "Hi, what do you" }, // interrupted: only the heard words
    ];
    const out = await collect(agent({ tools: [weather], temperature: 0.3 }).respond(turn("What's the weather in Paris?", history)));
    expect(out.error).toBeUndefined();
    expect(out.text).toBe("Sure, the weather is sunny.");
    expect(out.deltas.length).toBeGreaterThan(1);

    expect(mock.requests).toHaveLength(1);
    const req = mock.requests[0]!;
    expect(req.model).toBe("gpt-4o-mini");
    expect(req.stream).toBe(true);
    expect(req["temperature"]).toBe(0.3);
    expect(req["max_tokens"]).toBe(300); // with a baseURL: the parameter every compatible server knows
    expect(req.messages).toEqual([
      { role: "system", content: DEFAULT_OPENAI_SYSTEM_PROMPT },
      { role: "assistant", content: "Hello! How can I help?" },
      { role: "user", content: "Hi there." },
      { role: "assistant", content: "Hi, what do you" },
      { role: "user", content: "What's the weather in Paris?" },
    ]);
    expect(req.tools?.map((t) => t.type)).toEqual(["function", "function", "function", "function"]);
    const byName = Object.fromEntries((req.tools ?? []).map((t) => [t.function.name, t.function]));
    expect(Object.keys(byName)).toEqual(["end_call", "send_dtmf", "transfer_call", "get_weather"]);
    expect(byName["transfer_call"]!.parameters).toMatchObject({ type: "object", properties: { to: { type: "string" }, mode: { enum: ["cold", "warm"] } } });
    expect(byName["end_call"]!.parameters).toMatchObject({ type: "object", properties: { reason: { type: "string" } } });
    expect(byName["send_dtmf"]!.parameters).toMatchObject({ type: "object", properties: { digits: { type: "string" } }, required: ["digits"] });
    expect(byName["get_weather"]).toEqual({ name: "get_weather", description: "Current weather for a city.", parameters: weather.parameters });
  });

  it("says so when nothing was recognised, and leaves out empty history messages and tools when none are enabled", async () => {
    mock.reply({ text: "Sorry, could you say that again?" });
    const a = agent({ builtinTools: [], systemPrompt: "Be brief.", model: "llama3.2", maxTokensParam: "max_completion_tokens", maxTokens: 50 });
    const out = await collect(a.respond(turn("  ", [{ role: "assistant", content: "" }])));
    expect(out.text).toBe("Sorry, could you say that again?");
    const req = mock.requests[0]!;
    expect(req.model).toBe("llama3.2");
    expect(req.messages).toEqual([
      { role: "system", content: "Be brief." },
      { role: "user", content: DEFAULT_EMPTY_USER_TEXT },
    ]);
    expect(req.tools).toBeUndefined();
    expect(req["max_completion_tokens"]).toBe(50);
    expect(req["max_tokens"]).toBeUndefined();
    expect(req["temperature"]).toBeUndefined();
  });

  it("yields the first delta before the server has sent the rest", async () => {
    const gate = deferred();
    // Role chunk + "Hello" go out; everything after waits for the gate, which opens only once "Hello" came out of the agent.
    mock.reply({ text: ["Hello", " there,", " how can I help?"], hold: { afterChunks: 2, until: gate.promise } });
    const iter = agent().respond(turn("Hi"))[Symbol.asyncIterator]();
    const first = await iter.next();
    expect(first).toEqual({ done: false, value: "Hello" });
    expect(mock.requests).toHaveLength(1);
    gate.resolve();
    const rest: string[] = [];
    for (let r = await iter.next(); !r.done; r = await iter.next()) rest.push(r.value as string);
    expect(rest.join("")).toBe(" there, how can I help?");
  });

  it("ignores the usage chunk (choices: [])", async () => {
    mock.reply({ text: "Okay.", usage: true });
    const out = await collect(agent().respond(turn("Hi")));
    expect(out).toMatchObject({ text: "Okay.", error: undefined });
  });
});

describe("tools", () => {
  it("end_call becomes an action after the goodbye text", async () => {
    mock.reply({ text: "Goodbye!", toolCalls: [{ name: "end_call", arguments: { reason: "caller said bye" } }] });
    const items: Array<string | AgentAction> = [];
    for await (const item of agent().respond(turn("Bye"))) items.push(item);
    expect(items).toEqual(["Goodbye!", { type: "end_call", reason: "caller said bye" }]);
    expect(mock.requests).toHaveLength(1); // built-ins need no second request
  });

  it("end_call with no text and no arguments", async () => {
    mock.reply({ toolCalls: [{ name: "end_call", arguments: "" }] });
    const out = await collect(agent().respond(turn("That's all.")));
    expect(out).toEqual({ text: "", deltas: [], actions: [{ type: "end_call" }], error: undefined });
  });

  it("send_dtmf becomes an action; invalid digits go back to the model as an error", async () => {
    mock.reply({ toolCalls: [{ name: "send_dtmf", arguments: { digits: "1 2#" } }] });
    let out = await collect(agent().respond(turn("Press one, two, pound.")));
    expect(out.actions).toEqual([{ type: "send_dtmf", digits: "12#" }]);
    expect(out.error).toBeUndefined();

    mock.reply((req) =>
      req.messages.at(-1)?.role === "tool" ? { text: "Sorry, I could not press that." } : { toolCalls: [{ name: "send_dtmf", arguments: { digits: "abc" } }] },
    );
    out = await collect(agent().respond(turn("Press abc.")));
    expect(out.actions).toEqual([]);
    expect(out.text).toBe("Sorry, I could not press that.");
    expect(mock.requests.at(-1)!.messages.at(-1)).toMatchObject({ role: "tool", content: expect.stringMatching(/^Error: digits must be/) });
  });

  it("transfer_call becomes an action; a number that is not E.164 goes back to the model as an error (and is passed on to be refused on the record)", async () => {
    mock.reply({ toolCalls: [{ name: "transfer_call", arguments: { to: "+1 (555) 010-0077", mode: "warm" } }] });
    let out = await collect(agent().respond(turn("Put me through to Sam.")));
    expect(out.actions).toEqual([{ type: "transfer_call", to: "+15550100077", mode: "warm" }]);
    expect(out.error).toBeUndefined();

    mock.reply((req) =>
      req.messages.at(-1)?.role === "tool" ? { text: "Sorry, that number does not work." } : { toolCalls: [{ name: "transfer_call", arguments: { to: "extension 12" } }] },
    );
    out = await collect(agent().respond(turn("Transfer me to extension 12.")));
    expect(out.actions).toEqual([{ type: "transfer_call", to: "extension12" }]);
    expect(out.text).toBe("Sorry, that number does not work.");
    expect(mock.requests.at(-1)!.messages.at(-1)).toMatchObject({ role: "tool", content: expect.stringMatching(/^Error: "to" must be an E\.164 number/) });

    mock.reply((req) => (req.messages.at(-1)?.role === "tool" ? { text: "Hm." } : { toolCalls: [{ name: "transfer_call", arguments: { to: "+15550100077", mode: "sideways" } }] }));
    out = await collect(agent().respond(turn("Transfer me sideways.")));
    expect(out.actions).toEqual([]); // a bad mode with a good number must not start a transfer
  });

  it("runs a user tool, sends its result back with the tool_call_id, and streams the final text", async () => {
    const seen: unknown[] = [];
    const tool: AgentTool = {
      name: "get_weather",
      description: "Weather",
      parameters: { type: "object", properties: { city: { type: "string" } } },
      handler: async (args, { signal }) => {
        seen.push(args);
        expect(signal).toBeInstanceOf(AbortSignal);
        return { city: "Paris", sky: "sunny" };
      },
    };
    mock.reply((req, n) =>
      n === 0
        ? { text: "Let me check.", toolCalls: [{ id: "call_w1", name: "get_weather", arguments: { city: "Paris" } }] }
        : { text: "It's sunny in Paris." },
    );
    const out = await collect(agent({ tools: [tool] }).respond(turn("Weather in Paris?")));
    expect(out.error).toBeUndefined();
    expect(seen).toEqual([{ city: "Paris" }]);
    expect(out.text).toBe("Let me check. It's sunny in Paris."); // a space between the two rounds
    expect(mock.requests).toHaveLength(2);
    const second = mock.requests[1]!;
    expect(second.messages.slice(-2)).toEqual([
      {
        role: "assistant",
        content: "Let me check.",
        tool_calls: [{ id: "call_w1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } }],
      },
      { role: "tool", tool_call_id: "call_w1", content: '{"city":"Paris","sky":"sunny"}' },
    ]);
    expect(second.messages[0]!.role).toBe("system");
    expect(second.messages.at(-3)).toEqual({ role: "user", content: "Weather in Paris?" });
  });

  it("parallel calls each get their result; a throwing handler and an unknown tool are reported to the model", async () => {
    const ok: AgentTool = { name: "ok_tool", description: "d", parameters: { type: "object" }, handler: async () => "fine" };
    const bad: AgentTool = {
      name: "bad_tool",
      description: "d",
      parameters: { type: "object" },
      handler: async () => {
        throw new Error("database is down");
      },
    };
    mock.reply((req, n) =>
      n === 0
        ? {
            toolCalls: [
              { id: "a", name: "ok_tool" },
              { id: "b", name: "bad_tool" },
              { id: "c", name: "made_up" },
              { id: "d", name: "ok_tool", arguments: "{not json" },
            ],
          }
        : { text: "Sorry, part of that failed." },
    );
    const out = await collect(agent({ tools: [ok, bad] }).respond(turn("Do it.")));
    expect(out.text).toBe("Sorry, part of that failed.");
    const tools = mock.requests[1]!.messages.filter((m) => m.role === "tool");
    expect(tools.map((m) => m.tool_call_id)).toEqual(["a", "b", "c", "d"]);
    expect(tools[0]!.content).toBe("fine");
    expect(tools[1]!.content).toBe('Error: the tool "bad_tool" failed: database is down');
    expect(tools[2]!.content).toBe('Error: there is no tool named "made_up".');
    expect(tools[3]!.content).toMatch(/^Error: the arguments were not valid JSON/);
  });

  it("stops after maxToolRounds with a clear error", async () => {
    const loop: AgentTool = { name: "again", description: "d", parameters: { type: "object" }, handler: async () => "more" };
    mock.reply({ toolCalls: [{ name: "again" }] });
    const out = await collect(agent({ tools: [loop], maxToolRounds: 2 }).respond(turn("Go")));
    expect(out.error?.message).toMatch(/still calls tools after 2 rounds/);
    expect(mock.requests).toHaveLength(3);
  });

  it("a handler that outlives the turn is abandoned at the total timeout, its signal aborted", async () => {
    let handlerSignal: AbortSignal | undefined;
    const slow: AgentTool = {
      name: "slow",
      description: "d",
      parameters: { type: "object" },
      handler: (_args, { signal }) => {
        handlerSignal = signal;
        return new Promise<string>(() => {}); // never settles, ignores the signal
      },
    };
    mock.reply({ text: "One moment.", toolCalls: [{ name: "slow" }] });
    const out = await collect(agent({ tools: [slow], totalTimeoutMs: 300 }).respond(turn("Go")));
    expect(out.text).toBe("One moment.");
    expect(out.error?.message).toMatch(/^OpenAI-compatible agent: reply not finished within 300 ms \(model gpt-4o-mini at http:\/\/127\.0\.0\.1:\d+\/v1\)$/);
    expect(handlerSignal?.aborted).toBe(true);
  });

  it("loadToolsModule imports tools and reports a bad module clearly", async () => {
    const dir = await mkdtemp(join(tmpdir(), "parley-tools-"));
    try {
      const good = join(dir, "good.mjs");
      await writeFile(good, `export const tools = [{ name: "lookup", description: "Look up", parameters: { type: "object", properties: {} }, handler: async () => "found" }];`);
      const tools = await loadToolsModule(good);
      expect(tools.map((t) => t.name)).toEqual(["lookup"]);
      expect(await tools[0]!.handler({}, { signal: new AbortController().signal })).toBe("found");

      await expect(loadToolsModule(join(dir, "missing.mjs"))).rejects.toThrow(/missing\.mjs: no such file/);
      const none = join(dir, "none.mjs");
      await writeFile(none, `export const helpers = 1;`);
      await expect(loadToolsModule(none)).rejects.toThrow(/exports no tools .*found exports: helpers/);
      const broken = join(dir, "broken.mjs");
      await writeFile(broken, `export const tools = [;`);
      await expect(loadToolsModule(broken)).rejects.toThrow(/broken\.mjs: failed to import/);
      const invalid = join(dir, "invalid.mjs");
      await writeFile(invalid, `export const tools = [{ name: "end_call", description: "", parameters: 1 }, { name: "bad name!", description: "x", parameters: {}, handler() {} }];`);
      const err = await loadToolsModule(invalid).catch((e: Error) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toContain('tools[0] (end_call): "end_call" is a built-in tool');
      expect((err as Error).message).toContain("tools[0] (end_call): description must be a non-empty string");
      expect((err as Error).message).toContain("tools[0] (end_call): parameters must be a JSON Schema object");
      expect((err as Error).message).toContain("tools[0] (end_call): handler must be a function");
      expect((err as Error).message).toContain("tools[1] (bad name!): name must be");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("faults", () => {
  const where = String.raw`\(model gpt-4o-mini at http://127\.0\.0\.1:\d+/v1\)`;

  it("401 (wrong key) names the status and the server's message", async () => {
    const out = await collect(agent({ apiKey: "sk-wrong" }).respond(turn("Hi")));
    expect(out.error?.message).toMatch(new RegExp(`^OpenAI-compatible agent: HTTP 401: Incorrect API key provided: sk-\\*\\*\\*\\. .* ${where}$`));
  });

  it("429 and 500 name the status and the server's message, without retrying", async () => {
    mock.reply({ status: 429 });
    let out = await collect(agent().respond(turn("Hi")));
    expect(out.error?.message).toMatch(/HTTP 429: Rate limit reached for gpt-4o-mini/);
    mock.reply({ status: 500, error: { message: "The engine is overloaded." } });
    out = await collect(agent().respond(turn("Hi")));
    expect(out.error?.message).toMatch(new RegExp(`^OpenAI-compatible agent: HTTP 500: The engine is overloaded\\. ${where}$`));
    expect(mock.requests).toHaveLength(2); // maxRetries 0
  });

  it("connection refused", async () => {
    const gone = await OpenAiMock.start();
    const url = gone.url;
    await gone.close();
    const out = await collect(new OpenAiAgent({ apiKey: "sk-test", baseURL: url }).respond(turn("Hi")));
    expect(out.error?.message).toMatch(/^OpenAI-compatible agent: cannot connect: fetch failed: connect ECONNREFUSED 127\.0\.0\.1:\d+ \(model gpt-4o-mini at http:\/\/127\.0\.0\.1:\d+\/v1\)$/);
  });

  it("no first token in time: the request is aborted and the error says so", async () => {
    mock.reply({ text: "Too late.", stallBeforeFirstTokenMs: 10_000 });
    const out = await collect(agent({ firstTokenTimeoutMs: 150 }).respond(turn("Hi")));
    expect(out.text).toBe("");
    expect(out.error?.message).toMatch(new RegExp(`^OpenAI-compatible agent: no response within 150 ms ${where}$`));
    await mock.waitForDisconnects(1); // the request was really aborted
  });

  it("no response headers in time: same first-token error", async () => {
    mock.reply({ text: "Too late.", stallBeforeHeadersMs: 10_000 });
    const out = await collect(agent({ firstTokenTimeoutMs: 150 }).respond(turn("Hi")));
    expect(out.error?.message).toMatch(new RegExp(`^OpenAI-compatible agent: no response within 150 ms ${where}$`));
    await mock.waitForDisconnects(1);
  });

  it("a reply that streams too long hits the total timeout after the text already yielded", async () => {
    mock.reply({ text: "one two three four five six seven eight nine ten", tokenDelayMs: 100 });
    const out = await collect(agent({ firstTokenTimeoutMs: 1000, totalTimeoutMs: 250 }).respond(turn("Count")));
    expect(out.text.startsWith("one")).toBe(true);
    expect(out.text).not.toContain("ten");
    expect(out.error?.message).toMatch(new RegExp(`^OpenAI-compatible agent: reply not finished within 250 ms ${where}$`));
  });

  it("a dropped connection mid-stream: the text already yielded stays, then a clear error", async () => {
    mock.reply({ text: ["Sure,", " let", " me", " see"], dropMidStream: { afterChunks: 3 } });
    const out = await collect(agent().respond(turn("Hi")));
    expect(out.text).toBe("Sure, let");
    expect(out.error?.message).toMatch(new RegExp(`^OpenAI-compatible agent: the stream broke off: terminated: other side closed ${where}$`));
  });

  it("a stream that ends cleanly but early (no finish_reason, no [DONE]) is an error too", async () => {
    mock.reply({ text: ["Sure,", " let", " me", " see"], dropMidStream: { afterChunks: 3, mode: "end" } });
    const out = await collect(agent().respond(turn("Hi")));
    expect(out.text).toBe("Sure, let");
    expect(out.error?.message).toMatch(new RegExp(`^OpenAI-compatible agent: the stream ended before the reply was complete, with no finish_reason ${where}$`));
  });

  it("garbage on the stream is an error (the SDK cannot parse it), after the text already yielded", async () => {
    mock.reply({ text: ["Hello", " there."], garbage: { afterChunks: 2 } });
    const out = await collect(agent().respond(turn("Hi")));
    expect(out.text).toBe("Hello");
    expect(out.error?.message).toMatch(new RegExp(`^OpenAI-compatible agent: malformed stream, a data line is not JSON: .+ ${where}$`));
  });

  it("an error event mid-stream names the server's message", async () => {
    mock.reply({ text: ["Hello", " there."], streamError: { afterChunks: 2, message: "The model overloaded mid-reply." } });
    const out = await collect(agent().respond(turn("Hi")));
    expect(out.text).toBe("Hello");
    expect(out.error?.message).toMatch(new RegExp(`^OpenAI-compatible agent: error during the stream: The model overloaded mid-reply\\. ${where}$`));
  });

  it("abort via the signal stops the stream at once, without an error", async () => {
    const gate = deferred();
    mock.reply({ text: ["Hello", " there."], hold: { afterChunks: 2, until: gate.promise } });
    const ac = new AbortController();
    const items: Array<string | AgentAction> = [];
    let error: unknown;
    const done = (async () => {
      try {
        for await (const item of agent().respond(turn("Hi", [], ac.signal))) {
          items.push(item);
          if (item === "Hello") setImmediate(() => ac.abort()); // abort while the agent waits for more
        }
      } catch (err) {
        error = err;
      }
    })();
    await done;
    expect(items).toEqual(["Hello"]);
    expect(error).toBeUndefined();
    await mock.waitForDisconnects(1);
    gate.resolve();
  });

  it("a consumer that stops iterating early closes the request", async () => {
    const gate = deferred();
    mock.reply({ text: ["Hello", " there."], hold: { afterChunks: 2, until: gate.promise } });
    for await (const item of agent().respond(turn("Hi"))) {
      expect(item).toBe("Hello");
      break;
    }
    await mock.waitForDisconnects(1);
    gate.resolve();
  });

  it("abort before the response headers, and an already-aborted signal, end quietly", async () => {
    mock.reply({ text: "Late.", stallBeforeHeadersMs: 10_000 });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    const out = await collect(agent().respond(turn("Hi", [], ac.signal)));
    expect(out).toEqual({ text: "", deltas: [], actions: [], error: undefined });
    await mock.waitForDisconnects(1);

    const pre = await collect(agent().respond(turn("Hi", [], AbortSignal.abort())));
    expect(pre.error).toBeUndefined();
    expect(mock.requests).toHaveLength(1);
  });

  it("abort while a user tool runs: the handler's signal is aborted and the turn ends quietly", async () => {
    const ac = new AbortController();
    let handlerSignal: AbortSignal | undefined;
    const tool: AgentTool = {
      name: "wait",
      description: "d",
      parameters: { type: "object" },
      handler: (_a, { signal }) =>
        new Promise((_resolve, reject) => {
          handlerSignal = signal;
          setTimeout(() => ac.abort(), 10);
          signal.addEventListener("abort", () => reject(new Error("aborted")));
        }),
    };
    mock.reply({ toolCalls: [{ name: "wait" }] });
    const out = await collect(agent({ tools: [tool] }).respond(turn("Hi", [], ac.signal)));
    expect(out.error).toBeUndefined();
    expect(handlerSignal?.aborted).toBe(true);
    expect(mock.requests).toHaveLength(1);
  });
});
