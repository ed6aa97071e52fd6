/**
 * A preemptive reply has no side effects: it runs the real OpenAI-compatible agent (the `openai` client against the
 * local OpenAI-protocol server) with a user tool loaded from a module, as AGENT_TOOLS_MODULE loads it. The tool writes
 * each call to a ledger file, a booking that cannot be taken back. A speculation may stream text, but it stops at the
 * tool call until the turn is confirmed: discarded, it has booked nothing; taken over, it books exactly once.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { PreemptiveReply } from "../src/call/preemptive.ts";
import { loadToolsModule, OpenAiAgent } from "../src/providers/agent/openai.ts";
import type { AgentAction } from "../src/providers/types.ts";
import { OpenAiMock, type MockReply } from "./helpers/openai-mock.ts";

let mock: OpenAiMock;
let dir: string;
let ledger: string;
let agent: OpenAiAgent;

beforeAll(async () => {
  mock = await OpenAiMock.start({ apiKey: "sk-test" });
  dir = await mkdtemp(join(tmpdir(), "parley-spec-tools-"));
  ledger = join(dir, "bookings.log");
  const module = join(dir, "tools.mjs");
  await writeFile(
    module,
    `import { appendFileSync } from "node:fs";
export const tools = [{
  name: "book_table",
  description: "Book a table at the restaurant.",
  parameters: { type: "object", properties: { people: { type: "integer" } }, required: ["people"] },
  handler: async (args) => { appendFileSync(${JSON.stringify(ledger)}, JSON.stringify(args) + "\\n"); return "Booked: table 7."; },
}];`,
  );
  agent = new OpenAiAgent({ apiKey: "sk-test", baseURL: mock.url, firstTokenTimeoutMs: 2000, totalTimeoutMs: 10_000, tools: await loadToolsModule(module) });
});
afterAll(async () => {
  await mock.close();
  await rm(dir, { recursive: true, force: true });
});
afterEach(async () => {
  mock.requests.length = 0;
  await rm(ledger, { force: true });
});

/** First the model says something and asks for the tool; once it has the tool's result, it confirms. */
function bookingScript(): void {
  mock.reply((_req, i): MockReply => (i === 0 ? { text: "Let me book that.", toolCalls: [{ name: "book_table", arguments: { people: 2 } }] } : { text: "Done, table seven is yours." }));
}

async function bookings(): Promise<string[]> {
  const text = await readFile(ledger, "utf8").catch(() => "");
  return text.split("\n").filter(Boolean);
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  if (!cond()) throw new Error(`timed out waiting for ${what}`);
}

describe("speculation without side effects", () => {
  it("a discarded speculation streams text but runs no tool", async () => {
    bookingScript();
    const p = new PreemptiveReply(agent);
    p.start("Book a table for two.", []);
    // It holds at the tool call (the old code ran the tool and sent its result back instead).
    await until(() => p.holding || mock.requests.length >= 2, "the speculation to reach the tool call");
    expect(await bookings()).toEqual([]);
    // The caller kept talking: a different turn.
    expect(p.take("Book a table for two. No, wait, for three.", [])).toBeNull();
    await new Promise((r) => setTimeout(r, 50));
    expect(await bookings()).toEqual([]);
    expect(mock.requests).toHaveLength(1);
  });

  it("a confirmed speculation keeps what it said and runs the tool exactly once", async () => {
    bookingScript();
    const p = new PreemptiveReply(agent);
    p.start("Book a table for two.", []);
    await until(() => p.holding || mock.requests.length >= 2, "the speculation to reach the tool call");
    expect(p.holding).toBe(true);
    expect(await bookings()).toEqual([]);
    const taken = p.take("Book a table for two.", [])!;
    expect(taken).not.toBeNull();
    const items: Array<string | AgentAction> = [];
    for await (const item of taken) items.push(item);
    expect(items.join("")).toBe("Let me book that. Done, table seven is yours.");
    expect((await bookings()).map((l) => JSON.parse(l))).toEqual([{ people: 2 }]);
    // One request for the speculation, one with the tool's result: the model was not asked again from scratch.
    expect(mock.requests).toHaveLength(2);
    expect(mock.requests[1]!.messages.at(-1)).toMatchObject({ role: "tool", content: "Booked: table 7." });
  });

  it("a speculation discarded while it holds stops without a tool and without another request", async () => {
    bookingScript();
    const p = new PreemptiveReply(agent);
    p.start("Book a table for two.", []);
    await until(() => p.holding || mock.requests.length >= 2, "the speculation to reach the tool call");
    p.discard();
    await new Promise((r) => setTimeout(r, 50));
    expect(await bookings()).toEqual([]);
    expect(mock.requests).toHaveLength(1);
  });
});
