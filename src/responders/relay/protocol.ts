import { z } from "zod";

/**
 * Twilio's ConversationRelay WebSocket protocol, from Twilio's side (Parley plays Twilio). The wire shapes follow
 * Twilio's "WebSocket messages" reference: JSON text frames, one message per frame, discriminated by `type`.
 */

// ---- Parley -> app ----

/** First frame after the socket opens. Every value is a string (apps' parsers expect that). */
export interface SetupMessage {
  type: "setup";
  sessionId: string;
  accountSid: string;
  parentCallSid: string;
  callSid: string;
  from: string;
  to: string;
  forwardedFrom: string;
  callType: string;
  callerName: string;
  direction: string;
  callStatus: string;
  customParameters: Record<string, string>;
}

export interface PromptMessage {
  type: "prompt";
  voicePrompt: string;
  lang: string;
  last: boolean;
}

export interface DtmfMessage {
  type: "dtmf";
  digit: string;
}

export interface InterruptMessage {
  type: "interrupt";
  utteranceUntilInterrupt: string;
  /** An integer, as the reference recommends (apps parse numbers and strings alike). */
  durationUntilInterruptMs: number;
}

export interface ErrorMessage {
  type: "error";
  description: string;
}

export type ParleyToApp = SetupMessage | PromptMessage | DtmfMessage | InterruptMessage | ErrorMessage;

// ---- app -> Parley ----

/** `interruptible` takes Twilio's modes or the legacy booleans (true = any, false = none). */
const InterruptMode = z.enum(["none", "dtmf", "speech", "any"]);
export type InterruptMode = z.infer<typeof InterruptMode>;
const Interruptible = z.union([z.boolean(), InterruptMode]);
export type InterruptibleSetting = z.infer<typeof Interruptible>;

/** Unknown keys are ignored (real apps add their own fields); known keys must have the right types. */
const AppText = z.object({
  type: z.literal("text"),
  token: z.string(),
  last: z.boolean().optional(),
  lang: z.string().min(1).optional(),
  interruptible: Interruptible.optional(),
  preemptible: z.boolean().optional(),
});

const AppPlay = z.object({
  type: z.literal("play"),
  source: z.url({ protocol: /^https?$/, error: "source must be an http(s) URL" }),
  /** 0 means 1000 times (Twilio's maximum). */
  loop: z.number().int().min(0).max(1000).optional(),
  preemptible: z.boolean().optional(),
  interruptible: Interruptible.optional(),
});

const AppSendDigits = z.object({
  type: z.literal("sendDigits"),
  digits: z.string().regex(/^[0-9w#*]+$/, "digits must be non-empty and only 0-9, w, # and *"),
});

const AppLanguage = z
  .strictObject({
    type: z.literal("language"),
    ttsLanguage: z.string().min(1).optional(),
    transcriptionLanguage: z.string().min(1).optional(),
  })
  .refine((m) => m.ttsLanguage !== undefined || m.transcriptionLanguage !== undefined, "ttsLanguage or transcriptionLanguage is required");

const AppEnd = z.object({
  type: z.literal("end"),
  /**
   * A string in Twilio's protocol. Apps sometimes send an object; it is kept as JSON text, as the reference
   * recommends, rather than refused.
   */
  handoffData: z.union([z.string(), z.record(z.string(), z.unknown()).transform((o) => JSON.stringify(o))]).optional(),
});

const SCHEMAS = { text: AppText, play: AppPlay, sendDigits: AppSendDigits, language: AppLanguage, end: AppEnd } as const;

export type AppText = z.infer<typeof AppText>;
export type AppPlay = z.infer<typeof AppPlay>;
export type AppSendDigits = z.infer<typeof AppSendDigits>;
export type AppLanguage = z.infer<typeof AppLanguage>;
export type AppEnd = z.infer<typeof AppEnd>;
export type AppToParley = AppText | AppPlay | AppSendDigits | AppLanguage | AppEnd;

export type ParseResult = { ok: true; message: AppToParley } | { ok: false; description: string };

/** How much of a bad frame is quoted back in the error (a runaway app must not make us echo megabytes). */
const QUOTE_CHARS = 200;

/**
 * Validate one frame from the app. Never throws: a bad frame yields the description Twilio would send back
 * ("Invalid message received: …"), naming what is wrong.
 */
export function parseAppMessage(raw: string): ParseResult {
  const quoted = raw.length > QUOTE_CHARS ? `${raw.slice(0, QUOTE_CHARS)}…` : raw;
  const invalid = (why: string): ParseResult => ({ ok: false, description: `Invalid message received: ${quoted} (${why})` });
  let data: unknown;
  try {
    data = JSON.parse(raw);
  } catch {
    return invalid("not JSON");
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) return invalid("not a JSON object");
  const type = (data as { type?: unknown }).type;
  if (typeof type !== "string") return invalid("missing type");
  if (!Object.hasOwn(SCHEMAS, type)) return invalid(`unknown type "${type}"`);
  const result = SCHEMAS[type as keyof typeof SCHEMAS].safeParse(data);
  if (!result.success) {
    const issues = result.error.issues.map((i) => (i.path.length ? `${i.path.join(".")}: ${i.message}` : i.message));
    return invalid(issues.join("; "));
  }
  return { ok: true, message: result.data as AppToParley };
}

/** Twilio's mode for a setting: the legacy booleans are `true` = "any", `false` = "none". */
export function interruptMode(setting: InterruptibleSetting): InterruptMode {
  return setting === true ? "any" : setting === false ? "none" : setting;
}

/** `end.handoffData` for the host: parsed when it is JSON, else the string as the app sent it. */
export function handoffValue(raw: string | undefined): unknown {
  if (raw === undefined) return undefined;
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}
