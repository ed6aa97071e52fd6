/**
 * Parley as an MCP server: tools that let an AI assistant place phone calls, follow them, speak on them and read what
 * they achieved. Every tool drives the control API through `ParleyApi`; the same server runs over stdio
 * (`parley mcp`) and over Streamable HTTP (`/mcp` on the service).
 *
 * Errors the API reports (unknown call, call not live, bad request) come back as tool errors (`isError: true`) with
 * the API's own message, so the model can read and act on them; nothing a client sends can crash the server.
 */
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { RequestHandlerExtra } from "@modelcontextprotocol/sdk/shared/protocol.js";
import type { CallToolResult, ServerNotification, ServerRequest } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import { ParleyApiError, ParleyUnreachableError, type Agent, type ParleyApi } from "./api.ts";
import { callOut, callShape, callText, listItemOut, listItemShape } from "./views.ts";
import { waitForCall } from "./wait.ts";
import { E164 } from "../util/e164.ts";

export const MCP_SERVER_NAME = "parley";
export const MCP_SERVER_VERSION = "0.1.0";

const callId = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "a call_id as returned by place_call or list_calls (e.g. CA…)").describe("the call's id (call_id from place_call or list_calls)");

/** A result both ways: `structuredContent` for clients that read it, and the same as text for those that do not. */
function ok<T extends Record<string, unknown>>(summary: string, structured: T): CallToolResult {
  return { content: [{ type: "text", text: `${summary}\n\n${JSON.stringify(structured)}` }], structuredContent: structured };
}

function failure(err: unknown): CallToolResult {
  const text =
    err instanceof ParleyApiError
      ? err.message
      : err instanceof ParleyUnreachableError
        ? `${err.message}: is the service running, and is PARLEY_URL right?`
        : `failed: ${err instanceof Error ? err.message : String(err)}`;
  return { content: [{ type: "text", text }], isError: true };
}

/** How often a tool that waits says it still is (clients may reset their request timeout on each progress). */
const HEARTBEAT_MS = 15_000;

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/** Progress notifications for one request: sent only if the client asked (gave a progressToken); `progress` only grows. */
function progressReporter(extra: Extra): (message: string) => Promise<void> {
  const token = extra._meta?.progressToken;
  let step = 0;
  return async (message) => {
    step++;
    if (token !== undefined) await extra.sendNotification({ method: "notifications/progress", params: { progressToken: token, progress: step, message } });
  };
}

/** Run a tool body; whatever it throws becomes a tool error the model can read. */
async function guarded(body: () => Promise<CallToolResult>): Promise<CallToolResult> {
  try {
    return await body();
  } catch (err) {
    return failure(err);
  }
}

export function createMcpServer(api: ParleyApi): McpServer {
  const server = new McpServer({ name: MCP_SERVER_NAME, version: MCP_SERVER_VERSION }, { instructions: INSTRUCTIONS });

  server.registerTool(
    "place_call",
    {
      title: "Place a phone call",
      description:
        "Dial a phone number and start a call. Returns at once with the call_id while the phone rings; follow it with wait_for_call (to get the result when it ends) or get_call. " +
        "mode 'notify' speaks `message` and hangs up; 'conversation' (default) speaks `message` as the opening line, then talks with the person following `instructions`. " +
        "Give `outcome_schema` (a JSON Schema object) to get structured data back from the conversation, e.g. {\"type\":\"object\",\"properties\":{\"confirmed\":{\"type\":\"boolean\"}}}; the data is checked against it, and the outcome's data_error says why when it could not be filled. " +
        "`metadata` comes back with the outcome; `outcome_webhook` is POSTed the outcome when the call ends.",
      inputSchema: {
        to: z.string().regex(E164, "an E.164 number: + then country code and number, e.g. +15551234567").describe("number to call, E.164 (+15551234567)"),
        from: z.string().regex(E164, "an E.164 number").optional().describe("caller ID to show; defaults to the service's number"),
        message: z.string().min(1).max(1000).optional().describe("what to say as soon as the call is answered"),
        instructions: z.string().min(1).max(20000).optional().describe("what the call is for and how to conduct it (for the voice agent in conversation mode)"),
        mode: z.enum(["conversation", "notify"]).optional().describe("conversation (default): talk; notify: say the message and hang up"),
        agent: z
          .union([z.enum(["llm", "assistant"]), z.object({ relay: z.string().regex(/^wss?:\/\//, "a ws:// or wss:// URL") })])
          .optional()
          .describe("who talks: 'llm' (Parley's own voice agent, default), 'assistant' (you, turn by turn with ask/say), or {relay: 'wss://…'} (a ConversationRelay app)"),
        outcome_schema: z.record(z.string(), z.unknown()).optional().describe("JSON Schema of the data to extract from the conversation when it ends"),
        voice: z.string().min(1).max(100).optional().describe("text-to-speech voice name"),
        // The rest of the session (src/session/session.ts), so a whole call can be set up from here; the control API
        // validates each again (e.g. tool names against AGENT_TOOLS_MODULE) and its message comes back as a tool error.
        language: z
          .string()
          .regex(/^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$/, "a BCP-47 tag like en-US")
          .optional()
          .describe("the call's language, BCP-47 (e.g. en-US)"),
        tools: z.array(z.string().min(1)).max(64).optional().describe("names of the service's user tools the voice agent may use on this call; all of them when omitted"),
        metadata: z.record(z.string(), z.unknown()).optional().describe("anything of yours (e.g. an order id); kept in the call's record and returned with its outcome"),
        outcome_webhook: z
          .string()
          .url()
          .regex(/^https?:\/\//, "an http(s) URL")
          .optional()
          .describe("an http(s) URL the outcome is POSTed to (signed) when the call ends"),
        filler: z.string().min(1).max(200).optional().describe("agent 'assistant' only: what is said while you think between turns (default \"One moment.\")"),
        record: z.boolean().optional().describe("record the call: a stereo WAV (callee left, Parley right), fetched from the API's /api/calls/{id}/recording; default: the service's RECORD_CALLS"),
        recording_notice: z.string().min(1).max(500).optional().describe("said before the first words of a recorded call (e.g. \"This call is recorded.\")"),
        voicemail: z
          .enum(["leave", "hangup", "continue"])
          .optional()
          .describe("if an answering machine picks up: leave voicemail_message after the beep, hang up, or talk as to a person (default: the service's VOICEMAIL)"),
        voicemail_message: z.string().min(1).max(1000).optional().describe("what to leave on voicemail (default: message)"),
      },
      outputSchema: { call_id: z.string(), state: z.string(), live: z.boolean() },
      annotations: { destructiveHint: false, idempotentHint: false, openWorldHint: true },
    },
    (args) =>
      guarded(async () => {
        const call = await api.placeCall({
          to: args.to,
          ...(args.from !== undefined ? { from: args.from } : {}),
          ...(args.message !== undefined ? { message: args.message } : {}),
          ...(args.instructions !== undefined ? { instructions: args.instructions } : {}),
          ...(args.mode !== undefined ? { mode: args.mode } : {}),
          ...(args.agent !== undefined ? { agent: args.agent as Agent } : {}),
          ...(args.outcome_schema !== undefined ? { outcomeSchema: args.outcome_schema } : {}),
          ...(args.voice !== undefined ? { voice: args.voice } : {}),
          ...(args.language !== undefined ? { language: args.language } : {}),
          ...(args.tools !== undefined ? { tools: args.tools } : {}),
          ...(args.metadata !== undefined ? { metadata: args.metadata } : {}),
          ...(args.outcome_webhook !== undefined ? { outcomeWebhook: args.outcome_webhook } : {}),
          ...(args.filler !== undefined ? { filler: args.filler } : {}),
          ...(args.record !== undefined ? { record: args.record } : {}),
          ...(args.recording_notice !== undefined ? { recordingNotice: args.recording_notice } : {}),
          ...(args.voicemail !== undefined ? { voicemail: args.voicemail } : {}),
          ...(args.voicemail_message !== undefined ? { voicemailMessage: args.voicemail_message } : {}),
        });
        const out = callOut(call);
        return ok(`Calling ${args.to}: call_id ${out.call_id}, ${out.state}. Use wait_for_call to get the result when it ends.`, {
          call_id: out.call_id,
          state: out.state,
          live: out.live,
        });
      }),
  );

  server.registerTool(
    "get_call",
    {
      title: "Get a call",
      description: "A call's current state, its transcript so far (as the person heard it), and, once it has ended, its outcome (summary and extracted data). Does not wait: use wait_for_call to wait for the end.",
      inputSchema: { call_id: callId },
      outputSchema: callShape,
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    ({ call_id }) =>
      guarded(async () => {
        const out = callOut(await api.getCall(call_id));
        return ok(callText(out), out);
      }),
  );

  server.registerTool(
    "list_calls",
    {
      title: "List calls",
      description: "Recent calls, newest first: id, state, numbers, when, and why each ended. Filter with state ('live', 'ended', or a state name such as 'listening').",
      inputSchema: {
        state: z.string().min(1).max(64).optional().describe("'live', 'ended', or a state name such as listening"),
        direction: z.enum(["inbound", "outbound", "browser"]).optional(),
        limit: z.number().int().min(1).max(200).optional().describe("at most this many calls (default 50)"),
      },
      outputSchema: { calls: z.array(listItemShape) },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    (args) =>
      guarded(async () => {
        const calls = await api.listCalls({
          ...(args.state !== undefined ? { state: args.state } : {}),
          ...(args.direction !== undefined ? { direction: args.direction } : {}),
          ...(args.limit !== undefined ? { limit: args.limit } : {}),
        });
        const out = calls.slice(0, args.limit ?? 50).map(listItemOut);
        return ok(`${out.length} call${out.length === 1 ? "" : "s"}.`, { calls: out });
      }),
  );

  server.registerTool(
    "ask",
    {
      title: "Ask the person on the call",
      description:
        "Say `text` on a live call and wait for the person's spoken reply, which is returned as text. Only for calls placed with agent 'assistant' (you lead the conversation). " +
        "status: 'answered' (reply holds what they said), 'silence' (no answer before the timeout), 'interrupted' (they talked over you; reply holds what they said), 'ended' (the call ended).",
      inputSchema: {
        call_id: callId,
        text: z.string().min(1).max(1000).describe("what to say"),
        timeout_s: z.number().min(1).max(300).optional().describe("how long to wait for a reply after speaking (default: the service's)"),
      },
      outputSchema: { reply: z.string().nullable(), status: z.enum(["answered", "silence", "ended", "interrupted"]) },
      annotations: { destructiveHint: false, openWorldHint: true },
    },
    ({ call_id, text, timeout_s }, extra) =>
      guarded(async () => {
        // A reply can take longer than a client's request timeout: keep it informed, so it can keep waiting.
        const report = progressReporter(extra);
        const beat = setInterval(() => void report("waiting for the reply").catch(() => {}), HEARTBEAT_MS);
        const r = await api.ask(call_id, { text, ...(timeout_s !== undefined ? { timeoutMs: Math.round(timeout_s * 1000) } : {}) }).finally(() => clearInterval(beat));
        const reply = r.reply ?? null;
        return ok(reply ? `${r.status}: "${reply}"` : r.status, { reply, status: r.status });
      }),
  );

  server.registerTool(
    "say",
    {
      title: "Say something on a call",
      description: "Speak `text` on a live call without waiting for a reply: at the next pause, or at once (cutting off what is being said) with interrupt: true.",
      inputSchema: {
        call_id: callId,
        text: z.string().min(1).max(1000).describe("what to say"),
        interrupt: z.boolean().optional().describe("stop what is being said now instead of waiting for a pause"),
      },
      outputSchema: { ok: z.boolean() },
      annotations: { destructiveHint: false, openWorldHint: true },
    },
    ({ call_id, text, interrupt }) =>
      guarded(async () => {
        await api.speak(call_id, { text, ...(interrupt !== undefined ? { interrupt } : {}) });
        return ok(`Queued on ${call_id}.`, { ok: true });
      }),
  );

  server.registerTool(
    "send_dtmf",
    {
      title: "Press phone keys",
      description: "Press keys on a live call (touch tones, played at the next pause), e.g. to get through a phone menu. digits: 0-9, * and #.",
      inputSchema: {
        call_id: callId,
        // As the control API accepts them: it has no pause characters (w), so neither does the tool.
        digits: z.string().regex(/^[0-9*#]{1,64}$/, "only 0-9, * and #, 1 to 64 of them").describe("keys to press, e.g. '1' or '1234#'"),
      },
      outputSchema: { ok: z.boolean() },
      annotations: { destructiveHint: false, openWorldHint: true },
    },
    ({ call_id, digits }) =>
      guarded(async () => {
        await api.dtmf(call_id, digits);
        return ok(`Sending ${digits} on ${call_id}.`, { ok: true });
      }),
  );

  server.registerTool(
    "transfer_call",
    {
      title: "Hand a call over to a human",
      description:
        "Transfer a live call to a person's phone number. mode 'cold': the caller hears `announcement`, then is connected straight to the number. " +
        "mode 'warm': Parley first calls the number and briefs the person (`briefing`, or a summary of the call so far), then joins the two calls; " +
        "if nobody answers, the caller is told and the call goes on with the agent. Returns at once: get_call's transfer field says how it went.",
      inputSchema: {
        call_id: callId,
        to: z.string().min(1).max(64).optional().describe("E.164 number of the human, e.g. +15551234567 (default: the service's TRANSFER_NUMBER)"),
        mode: z.enum(["cold", "warm"]).optional().describe("default: the service's TRANSFER_MODE"),
        announcement: z.string().min(1).max(500).optional().describe("said to the caller first"),
        briefing: z.string().min(1).max(1000).optional().describe("warm: said to the human before the calls are joined"),
      },
      outputSchema: { ok: z.boolean(), mode: z.string(), to: z.string() },
      annotations: { destructiveHint: true, openWorldHint: true },
    },
    ({ call_id, to, mode, announcement, briefing }) =>
      guarded(async () => {
        const r = await api.transfer(call_id, {
          ...(to !== undefined ? { to } : {}),
          ...(mode !== undefined ? { mode } : {}),
          ...(announcement !== undefined ? { announcement } : {}),
          ...(briefing !== undefined ? { briefing } : {}),
        });
        return ok(`Transferring ${call_id} to ${r.to} (${r.mode}).`, { ok: true, mode: r.mode, to: r.to });
      }),
  );

  server.registerTool(
    "hang_up",
    {
      title: "Hang up a call",
      description: "End a live call, after saying `message` (or a short goodbye) once what is being said has finished.",
      inputSchema: { call_id: callId, message: z.string().min(1).max(1000).optional().describe("last words before hanging up") },
      outputSchema: { ok: z.boolean() },
      annotations: { destructiveHint: true, idempotentHint: true, openWorldHint: true },
    },
    ({ call_id, message }) =>
      guarded(async () => {
        await api.hangup(call_id, message);
        return ok(`Hanging up ${call_id}.`, { ok: true });
      }),
  );

  server.registerTool(
    "wait_for_call",
    {
      title: "Wait for a call to end",
      description:
        "Wait until a call has ended and return its outcome (summary, extracted data, transcript), reporting progress (state changes, what is said) while it waits. " +
        "If it is still going at the timeout, returns the call as it stands with ended: false; call wait_for_call again to keep waiting.",
      inputSchema: { call_id: callId, timeout_s: z.number().min(1).max(3600).optional().describe("how long to wait, in seconds (default 120)") },
      outputSchema: { ended: z.boolean().describe("false: timed out, the call is still going"), note: z.string().optional(), ...callShape },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    ({ call_id, timeout_s }, extra) =>
      guarded(async () => {
        const progress = progressReporter(extra);
        const r = await waitForCall(api, call_id, { timeoutMs: Math.round((timeout_s ?? 120) * 1000), signal: extra.signal, progress, heartbeatMs: HEARTBEAT_MS });
        const out = callOut(r.call);
        const head = r.ended ? "The call has ended." : `Still going after ${timeout_s ?? 120} s (not ended): call wait_for_call again to keep waiting.`;
        return ok([head, r.note, callText(out)].filter(Boolean).join("\n"), { ended: r.ended, ...(r.note ? { note: r.note } : {}), ...out });
      }),
  );

  return server;
}

const INSTRUCTIONS = `Parley places and runs phone calls. Typical use:
1. place_call {to, message, instructions?, outcome_schema?} returns a call_id at once.
2. wait_for_call {call_id} returns the outcome when the call ends (call it again if it times out).
To lead the conversation yourself, place the call with agent "assistant" and use ask (speak and hear the reply), say, send_dtmf and hang_up.
To hand a live call to a person, transfer_call {call_id, to, mode}.`;
