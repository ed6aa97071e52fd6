/**
 * Function calling for the OpenAI-compatible agent: the built-in call-control tools (`end_call`, `send_dtmf`, `transfer_call`), the
 * shape of user tools, and loading user tools from an ESM module.
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { E164, E164_PATTERN } from "../../../util/e164.ts";
import { errorMessage } from "../../../util/errors.ts";

/** A JSON Schema object describing a tool's arguments (`{ type: "object", properties: {...}, required: [...] }`). */
export type JsonSchema = Record<string, unknown>;

export interface AgentToolContext {
  /** Aborted when the turn ends early (barge-in, hang-up) or times out: stop work and settle promptly. */
  signal: AbortSignal;
}

/**
 * A function the model may call. `handler` receives the arguments the model produced, parsed from JSON but NOT
 * validated against `parameters` (models can produce anything: check what you use). Its result (a string, or an object
 * sent as JSON) goes back to the model, which then goes on with its reply. A handler that throws is reported to the
 * model as a failure, so it can apologise.
 */
export interface AgentTool {
  name: string;
  description: string;
  parameters: JsonSchema;
  handler(args: unknown, ctx: AgentToolContext): Promise<string | object>;
}

export type BuiltinToolName = "end_call" | "send_dtmf" | "transfer_call";
export const BUILTIN_TOOL_NAMES: readonly BuiltinToolName[] = ["end_call", "send_dtmf", "transfer_call"];

/** What the model is told about the built-in tools (the `function` part of an OpenAI tool declaration). */
export const BUILTIN_TOOL_DEFS: Record<BuiltinToolName, { name: string; description: string; parameters: JsonSchema }> = {
  end_call: {
    name: "end_call",
    description:
      "Hang up the phone call. Use it when the conversation is over: the caller said goodbye, asked to end the call, " +
      "or there is nothing left to do. Say a short goodbye in the same reply; the call ends once it has been heard.",
    parameters: {
      type: "object",
      properties: { reason: { type: "string", description: "Why the call ends, in a few words (for the call log)." } },
      additionalProperties: false,
    },
  },
  send_dtmf: {
    name: "send_dtmf",
    description:
      "Press keys on the phone keypad (touch tones), for example to pick an option in an automated phone menu or to " +
      "enter a number the other side asks for.",
    parameters: {
      type: "object",
      properties: {
        digits: { type: "string", pattern: "^[0-9*#]+$", description: "The keys to press, in order: 0-9, * and #." },
      },
      required: ["digits"],
      additionalProperties: false,
    },
  },
  transfer_call: {
    name: "transfer_call",
    description:
      "Hand the call over to a human, when the caller asks for a person or you cannot help. Tell the caller in the same reply " +
      "that you are transferring them. Leave `to` out to use the configured number. If nobody answers, the caller is told and " +
      "stays with you.",
    parameters: {
      type: "object",
      properties: {
        to: { type: "string", pattern: E164_PATTERN, description: "The human's number in E.164 (+ and country code), only if the brief gives one." },
        mode: { type: "string", enum: ["cold", "warm"], description: "cold: connect the caller straight away; warm: brief the human first, then join." },
      },
      additionalProperties: false,
    },
  },
};

/** A transfer from `transfer_call` arguments, or a reason it cannot be (a number that is not E.164, an unknown mode). */
export function parseTransfer(args: unknown): { to?: string; mode?: "cold" | "warm" } | { error: string; to?: string } {
  const a = isRecord(args) ? args : {};
  const to = typeof a["to"] === "string" && a["to"].trim() ? a["to"].replace(/[\s().-]/g, "") : undefined;
  const mode = a["mode"];
  if (to !== undefined && !E164.test(to)) return { to, error: `"to" must be an E.164 number such as +15551234567; got ${JSON.stringify(a["to"]).slice(0, 60)}. Nobody was called.` };
  if (mode !== undefined && mode !== "cold" && mode !== "warm") return { error: `"mode" must be "cold" or "warm"; got ${JSON.stringify(mode).slice(0, 30)}. Nobody was called.` };
  return { ...(to ? { to } : {}), ...(mode ? { mode } : {}) };
}

export const TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;
export const MAX_DTMF_DIGITS = 64;

/** The keys to press from `send_dtmf` arguments, or null when they are not 1-64 of 0-9 * # (spaces and dashes are dropped). */
export function parseDtmfDigits(args: unknown): string | null {
  const raw = isRecord(args) ? args["digits"] : undefined;
  const digits = typeof raw === "number" && Number.isSafeInteger(raw) && raw >= 0 ? String(raw) : typeof raw === "string" ? raw.replace(/[\s-]/g, "") : "";
  return /^[0-9*#]+$/.test(digits) && digits.length <= MAX_DTMF_DIGITS ? digits : null;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Checks user tools, reporting every problem at once: names (1-64 of a-z A-Z 0-9 _ -, unique, not a built-in),
 * a description, a JSON-Schema object for parameters, and a handler function.
 */
export function validateTools(tools: unknown, where: string): AgentTool[] {
  if (!Array.isArray(tools)) throw new Error(`${where}: tools must be an array of { name, description, parameters, handler }, got ${describe(tools)}`);
  const problems: string[] = [];
  const seen = new Set<string>();
  tools.forEach((t, i) => {
    const label = isRecord(t) && typeof t["name"] === "string" ? `tools[${i}] (${t["name"]})` : `tools[${i}]`;
    if (!isRecord(t)) {
      problems.push(`${label}: must be an object, got ${describe(t)}`);
      return;
    }
    const name = t["name"];
    if (typeof name !== "string" || !TOOL_NAME.test(name)) problems.push(`${label}: name must be 1-64 characters of a-z, A-Z, 0-9, _ or -`);
    else if ((BUILTIN_TOOL_NAMES as readonly string[]).includes(name)) problems.push(`${label}: "${name}" is a built-in tool`);
    else if (seen.has(name)) problems.push(`${label}: duplicate name "${name}"`);
    if (typeof name === "string") seen.add(name);
    if (typeof t["description"] !== "string" || !t["description"].trim()) problems.push(`${label}: description must be a non-empty string`);
    if (!isRecord(t["parameters"])) problems.push(`${label}: parameters must be a JSON Schema object, e.g. { type: "object", properties: {} }`);
    else if (t["parameters"]["type"] !== undefined && t["parameters"]["type"] !== "object") problems.push(`${label}: parameters.type must be "object"`);
    if (typeof t["handler"] !== "function") problems.push(`${label}: handler must be a function (args, { signal }) => Promise<string | object>`);
  });
  if (problems.length) throw new Error(`${where}: invalid tools:\n  ${problems.join("\n  ")}`);
  return tools as AgentTool[];
}

/**
 * Imports an ESM module (a path, relative to the working directory, or a file: URL) that exports `tools: AgentTool[]`
 * (a default export of the array, or of `{ tools }`, is accepted too). Under `tsx`, TypeScript modules work as well.
 * Throws an Error naming the module and every problem.
 */
export async function loadToolsModule(path: string): Promise<AgentTool[]> {
  if (!path.trim()) throw new Error("Agent tools module: empty path");
  const url = path.startsWith("file:") ? new URL(path) : pathToFileURL(resolve(path));
  const where = `Agent tools module ${url.protocol === "file:" ? decodeURIComponent(url.pathname) : url.href}`;
  if (url.protocol === "file:" && !existsSync(url)) throw new Error(`${where}: no such file`);
  let mod: Record<string, unknown>;
  try {
    mod = (await import(url.href)) as Record<string, unknown>;
  } catch (err) {
    throw new Error(`${where}: failed to import: ${errorMessage(err)}`, { cause: err });
  }
  const def = mod["default"];
  const tools = mod["tools"] ?? (Array.isArray(def) ? def : isRecord(def) ? def["tools"] : undefined);
  if (tools === undefined) {
    throw new Error(`${where}: exports no tools (expected \`export const tools: AgentTool[] = [...]\`; found exports: ${Object.keys(mod).join(", ") || "none"})`);
  }
  return validateTools(tools, where);
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v === "object" ? "an object" : `${typeof v} ${JSON.stringify(v)?.slice(0, 40) ?? ""}`.trim();
}
