import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CallToolResultSchema, type CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../src/server/app.ts";
import { clipMulaw } from "./helpers/audio.ts";
import { useParley } from "./helpers/harness.ts";
import { OpenAiMock, type MockReply, type RecordedRequest } from "./helpers/openai-mock.ts";
import { finishedUtterances } from "./helpers/twilio-client.ts";
import { TwilioStandIn, waitUntil } from "./helpers/twilio-standin.ts";

/**
 * Issue #12's "done when", over both transports: an MCP client (the official SDK) places a call with a brief and an
 * outcome schema, follows it (get_call while it is live, then wait_for_call with progress), and gets an outcome whose
 * `data` the model filled with structured output and Parley validated against the schema. The stdio side is the real
 * `parley mcp` command (bin/parley.js) as a child process; the HTTP side is `/mcp` on the service; both configured as
 * the README says. The callee is the
 * Twilio stand-in speaking a real recording; the brain, and the outcome's author, is the OpenAI stand-in.
 */

const ROOT = path.resolve(fileURLToPath(new URL("..", import.meta.url)));
const ACCOUNT = "AC0123456789abcdef0123456789abcdef";
const AUTH = "standin-auth-token";
const API_TOKEN = "mcp-outcome-api-token-0123456789";
const BOOKING_SCHEMA = {
  type: "object",
  additionalProperties: false,
  required: ["booked", "day", "time"],
  properties: { booked: { type: "boolean" }, day: { type: ["string", "null"] }, time: { type: ["string", "null"] } },
};

// A user tool, so `tools` in a session names one that exists (as AGENT_TOOLS_MODULE loads it).
const dir = mkdtempSync(path.join(tmpdir(), "parley-mcp-outcome-"));
const toolsModule = path.join(dir, "tools.mjs");
writeFileSync(toolsModule, `export const tools = [{ name: "check_calendar", description: "Free slots.", parameters: { type: "object", properties: {} }, handler: async () => "Tuesday at ten." }];`);

let standIn: TwilioStandIn;
let openai: OpenAiMock;
/** What the model stand-in answers when asked for an outcome (requests with `response_format`); the agent's turns get `AGENT_REPLY`. */
let outcomeAnswer: (req: RecordedRequest) => MockReply = () => ({ status: 500, error: { message: "no outcome scripted" } });
const AGENT_REPLY = "Tuesday at ten works, see you then.";
/** The outcome webhook's receiver: every body POSTed to it. */
const delivered: Record<string, unknown>[] = [];
let receiver: http.Server;
let receiverUrl = "";

beforeAll(async () => {
  standIn = await TwilioStandIn.start({ accountSid: ACCOUNT, authToken: AUTH, ringMs: 200 });
  openai = await OpenAiMock.start({ apiKey: "oa-key" });
  openai.reply((req) => (req.response_format ? outcomeAnswer(req) : { text: AGENT_REPLY }));
  receiver = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      delivered.push(JSON.parse(body) as Record<string, unknown>);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/outcome`;
});
afterAll(async () => {
  await Promise.all([standIn?.close(), openai?.close(), new Promise((r) => receiver?.close(r))]);
  rmSync(dir, { recursive: true, force: true });
});
const parley = useParley(() => ({
  TWILIO_ACCOUNT_SID: ACCOUNT,
  TWILIO_AUTH_TOKEN: AUTH,
  TWILIO_API_URL: standIn.url,
  TWILIO_FROM_NUMBER: "+15550100001",
  API_TOKEN,
  OPENAI_API_KEY: "oa-key",
  OPENAI_BASE_URL: openai.url,
  AGENT_TOOLS_MODULE: toolsModule,
}));

let app: App;
let base: string;
beforeAll(async () => {
  ({ app, base } = await parley.start());
});

const clients: Client[] = [];
afterAll(async () => {
  for (const c of clients) await c.close().catch(() => {});
});

/**
 * The clients are configured exactly as the README's MCP section tells an assistant to be, with its placeholders
 * filled in (the checkout's path, this Parley's URL and token), so the documented configuration is what is tested.
 */
interface StdioConfig {
  command: string;
  args: string[];
  env: Record<string, string>;
}
interface HttpConfig {
  type: string;
  url: string;
  headers: Record<string, string>;
}
function readmeConfigs(): { stdio: StdioConfig; http: HttpConfig } {
  const readme = readFileSync(path.join(ROOT, "README.md"), "utf8");
  const start = readme.indexOf("### MCP");
  const section = readme.slice(start, readme.indexOf("\n### ", start + 1));
  const servers = [...section.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => (JSON.parse(m[1]!) as { mcpServers: { parley: unknown } }).mcpServers.parley);
  expect(servers).toHaveLength(2);
  return { stdio: servers.find((s) => "command" in (s as object)) as StdioConfig, http: servers.find((s) => "url" in (s as object)) as HttpConfig };
}

async function httpClient(): Promise<Client> {
  const { http: cfg } = readmeConfigs();
  expect(cfg.type).toBe("http");
  expect(cfg.headers).toEqual({ Authorization: "Bearer <your API_TOKEN>" });
  const url = new URL(new URL(cfg.url).pathname, base);
  const client = new Client({ name: "parley-outcome-test", version: "0" });
  await client.connect(new StreamableHTTPClientTransport(url, { requestInit: { headers: { Authorization: cfg.headers.Authorization!.replace("<your API_TOKEN>", API_TOKEN) } } }));
  clients.push(client);
  return client;
}

/** The `parley mcp` command itself, launched as the README's config says, from another directory (as assistants do). */
async function cliClient(): Promise<Client> {
  const { stdio: cfg } = readmeConfigs();
  expect(cfg.command).toBe("node");
  expect(Object.keys(cfg.env).sort()).toEqual(["API_TOKEN", "PARLEY_URL"]);
  const args = cfg.args.map((a) => a.replace("/path/to/parley", ROOT));
  const client = new Client({ name: "parley-outcome-test", version: "0" });
  await client.connect(new StdioClientTransport({ command: process.execPath, args, cwd: dir, env: { PARLEY_URL: base, API_TOKEN }, stderr: "pipe" }));
  clients.push(client);
  return client;
}

const text = (r: CallToolResult): string => r.content.map((c) => (c.type === "text" ? c.text : "")).join("");
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const structured = (r: CallToolResult): any => {
  expect(r.isError, text(r)).toBeFalsy();
  return r.structuredContent;
};
async function call(client: Client, name: string, args: Record<string, unknown>): Promise<CallToolResult> {
  return (await client.callTool({ name, arguments: args }, CallToolResultSchema, { timeout: 60_000 })) as CallToolResult;
}
async function callWithProgress(client: Client, name: string, args: Record<string, unknown>) {
  const progress: { progress: number; message?: string }[] = [];
  const result = (await client.callTool({ name, arguments: args }, CallToolResultSchema, {
    timeout: 60_000,
    resetTimeoutOnProgress: true,
    onprogress: (p) => progress.push({ progress: p.progress, ...(p.message ? { message: p.message } : {}) }),
  })) as CallToolResult;
  return { result, progress };
}
/** The model stand-in's outcome requests for one call, found by its brief. */
const outcomeRequests = (brief: string) => openai.requests.filter((r) => r.response_format && String(r.messages[0]?.content).includes(brief));

describe.each([
  ["stdio (the parley mcp command)", cliClient, "+15550100011"],
  ["Streamable HTTP (/mcp)", httpClient, "+15550100021"],
])("an MCP client over %s", (transportName, connect, number) => {
  let client: Client;
  beforeAll(async () => {
    client = await connect();
  }, 60_000);

  it("places a call with a brief and an outcome schema, follows it, and gets the data the model filled, validated", async () => {
    const brief = `Book Sam a dental cleaning next Tuesday (${transportName}).`;
    const data = { booked: true, day: "Tuesday", time: "10:00" };
    outcomeAnswer = () => ({ text: JSON.stringify({ summary: "Sam is booked for a cleaning on Tuesday at ten.", data }) });

    const placed = structured(await call(client, "place_call", { to: number, message: "Hi, I'm calling to book a cleaning for Sam.", instructions: brief, outcome_schema: BOOKING_SCHEMA }));
    const sid = placed.call_id as string;
    const stream = await standIn.call(sid).waitForStream(1);
    await stream.waitFor(() => finishedUtterances(stream) >= 1, 20_000, "the opening line");

    // Follow it while it is live.
    const live = structured(await call(client, "get_call", { call_id: sid }));
    expect(live).toMatchObject({ call_id: sid, live: true, outcome: null, to: number, mode: "conversation" });
    expect(live.state).toMatch(/^live\./);
    expect(live.session).toMatchObject({ instructions: brief, outcomeSchema: BOOKING_SCHEMA });
    expect(live.transcript).toEqual([{ role: "parley", text: "Hi, I'm calling to book a cleaning for Sam." }]);

    // Wait for the end while the callee talks (a real recording), the agent answers, and the callee hangs up.
    const waiting = callWithProgress(client, "wait_for_call", { call_id: sid, timeout_s: 90 });
    stream.say(await clipMulaw("whats-the-weather-like"));
    stream.silence(1500);
    await stream.waitFor(() => finishedUtterances(stream) >= 2, 30_000, "the agent's reply");
    const runtime = app.manager.get(sid)!;
    await waitUntil(() => runtime.record.turns.some((t) => t.role === "assistant" && t.text === AGENT_REPLY), 10_000, "the reply in the record");
    await standIn.call(sid).hangUp();

    const { result, progress } = await waiting;
    const done = structured(result);
    expect(done).toMatchObject({ ended: true, live: false, state: "ended", call_id: sid });
    expect(done.note).toBeUndefined();
    const heard = done.transcript.find((l: { role: string }) => l.role === "caller")?.text as string;
    expect(heard).toMatch(/weather/);
    expect(done.transcript.map((l: { role: string; text: string }) => [l.role, l.text])).toEqual([
      ["parley", "Hi, I'm calling to book a cleaning for Sam."],
      ["caller", heard],
      ["parley", AGENT_REPLY],
    ]);
    // The outcome: the model's data, which passed the schema (else data would be null with data_error).
    expect(done.outcome).toMatchObject({ summary: "Sam is booked for a cleaning on Tuesday at ten.", summary_source: "model", data, data_error: null, end_reason: done.end_reason });
    expect(text(result)).toContain(`Data: ${JSON.stringify(data)}`);

    // Progress while it waited: in order, what was said, the end, then the outcome.
    expect(progress.map((p) => p.progress)).toEqual(progress.map((_, i) => i + 1));
    const lines = progress.map((p) => p.message);
    expect(lines).toContain(`caller: ${heard}`);
    expect(lines).toContain(`parley: ${AGENT_REPLY}`);
    expect(lines).toContain(`call ended: ${done.end_reason}`);
    expect(lines.at(-1)).toBe("outcome written");

    // The model was given the brief (for the conversation, and for the outcome) and asked for the schema.
    const agentTurns = openai.requests.filter((r) => !r.response_format && String(r.messages[0]?.content).includes(brief));
    expect(agentTurns.length).toBeGreaterThanOrEqual(1);
    const [asked, ...more] = outcomeRequests(brief);
    expect(more).toHaveLength(0); // valid the first time: asked once
    const rf = asked!.response_format as { type: string; json_schema: { strict: boolean; schema: { properties: { data: unknown } } } };
    expect(rf.type).toBe("json_schema");
    expect(rf.json_schema.strict).toBe(true);
    expect(rf.json_schema.schema.properties.data).toEqual(BOOKING_SCHEMA);
    expect(asked!.messages[0]!.content).toContain(`The call's brief was: ${brief}`);
    expect(asked!.messages[1]!.content).toContain(`Caller: ${heard}`);

    // And it stays readable afterwards.
    expect(structured(await call(client, "get_call", { call_id: sid })).outcome).toMatchObject({ data, data_error: null });
  }, 120_000);

  it("data that does not satisfy the schema: asked again once, then the outcome says so and carries no data", async () => {
    const brief = `Confirm Sam's appointment (${transportName}).`;
    outcomeAnswer = () => ({ text: JSON.stringify({ summary: "Reminded Sam of the appointment.", data: { booked: "yes" } }) });

    const sid = structured(await call(client, "place_call", { to: number, mode: "notify", message: "Your cleaning is on Tuesday at ten.", instructions: brief, outcome_schema: BOOKING_SCHEMA })).call_id as string;
    const { result, progress } = await callWithProgress(client, "wait_for_call", { call_id: sid, timeout_s: 60 });
    const done = structured(result);
    expect(done).toMatchObject({ ended: true, end_reason: "message delivered" });
    expect(done.outcome).toMatchObject({ summary: "Reminded Sam of the appointment.", summary_source: "model", data: null });
    expect(done.outcome.data_error).toMatch(/^the model's data does not match outcomeSchema: .*(data\/booked must be boolean|must have required property 'day')/);
    // A client that reads only the text is told too.
    expect(text(result)).toContain(`Data not filled: ${done.outcome.data_error}`);
    expect(text(result)).not.toContain("Data: ");
    expect(progress.at(-1)?.message).toBe("outcome written");
    const asked = outcomeRequests(brief);
    expect(asked).toHaveLength(2);
    expect(asked[1]!.messages.at(-1)!.content).toMatch(/does not match the schema/);
  }, 90_000);

  it("place_call sets the whole session: language, tools, metadata, outcome_webhook, filler and recording reach the call", async () => {
    outcomeAnswer = () => ({ text: JSON.stringify({ summary: "Told them the table is ready.", data: null }) });
    const metadata = { order: `A-${number}`, seats: 2 };
    const sid = structured(
      await call(client, "place_call", {
        to: number,
        mode: "notify",
        message: "Your table is ready.",
        language: "en-GB",
        tools: ["check_calendar"],
        metadata,
        outcome_webhook: receiverUrl,
        filler: "Let me check.",
        record: true,
        recording_notice: "This call is recorded.",
      }),
    ).call_id as string;
    const done = structured(await call(client, "wait_for_call", { call_id: sid, timeout_s: 60 }));
    expect(done.session).toEqual({
      language: "en-GB",
      tools: ["check_calendar"],
      metadata,
      outcomeWebhook: receiverUrl,
      filler: "Let me check.",
      record: true,
      recordingNotice: "This call is recorded.",
    });
    // The webhook got the outcome, with the metadata.
    await waitUntil(() => delivered.some((d) => d.callSid === sid), 10_000, "the outcome webhook");
    expect(delivered.find((d) => d.callSid === sid)).toMatchObject({ callSid: sid, summary: "Told them the table is ready.", metadata });
  }, 90_000);

  it("a session the service refuses, or malformed fields, come back as tool errors and place no call", async () => {
    const before = standIn.calls.length;
    const unknownTool = await call(client, "place_call", { to: number, message: "hi", tools: ["launch_rockets"] });
    expect(unknownTool.isError).toBe(true);
    expect(text(unknownTool)).toMatch(/tools: unknown tool "launch_rockets" \(known: check_calendar\)/);
    const badLanguage = await call(client, "place_call", { to: number, message: "hi", language: "English" });
    expect(text(badLanguage)).toMatch(/Input validation error[\s\S]*BCP-47/);
    const badWebhook = await call(client, "place_call", { to: number, message: "hi", outcome_webhook: "ftp://example.com/x" });
    expect(text(badWebhook)).toMatch(/Input validation error[\s\S]*http\(s\) URL/);
    const badFiller = await call(client, "place_call", { to: number, message: "hi", filler: "" });
    expect(badFiller.isError).toBe(true);
    expect(standIn.calls.length).toBe(before);
  }, 30_000);
});

describe("place_call's input schema", () => {
  it("lists the whole session, each field described", async () => {
    const client = await httpClient();
    const place = (await client.listTools()).tools.find((t) => t.name === "place_call")!;
    const props = place.inputSchema.properties as Record<string, { description?: string }>;
    for (const f of ["language", "tools", "metadata", "outcome_webhook", "filler", "record", "recording_notice"]) expect(props[f]?.description, f).toMatch(/\w{4}/);
    expect(place.inputSchema.required).toEqual(["to"]);
  });
});
