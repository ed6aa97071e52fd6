import { readFileSync } from "node:fs";
import { z } from "zod";
import { E164 } from "../util/e164.ts";
import { schemaProblem } from "../outcome/extract.ts";

/**
 * What one call is for: its brief, first words, voice, tools, brain and the outcome it must produce. Set per call by
 * the API or MCP, or for inbound calls by the routing table keyed by the dialled number. It lives in the call's record
 * (the `call.created` event), so a resumed, restored or taken-over call keeps it; nothing here is a process global.
 */


const relayUrl = z
  .string()
  .url()
  .refine((u) => /^wss?:\/\//.test(u), "must be a ws:// or wss:// URL");

export const agentSchema = z.union([
  z.literal("llm"),
  z.literal("assistant"),
  z.object({ relay: relayUrl, customParameters: z.record(z.string(), z.string()).optional() }).strict(),
]);

export const sessionSchema = z
  .object({
    /** The brief: what the call is for, in the agent's words (the LLM's instructions for this call). */
    instructions: z.string().min(1).max(20_000).optional(),
    /** The first words: an inbound call's greeting, an outbound call's message. */
    message: z.string().min(1).max(1000).optional(),
    voice: z.string().min(1).max(100).optional(),
    /** BCP-47, e.g. en-US. */
    language: z
      .string()
      .regex(/^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$/, "must be a BCP-47 tag like en-US")
      .optional(),
    /** Names of user tools (from AGENT_TOOLS_MODULE) this call may use; all of them when omitted. */
    tools: z.array(z.string().min(1)).max(64).optional(),
    agent: agentSchema.optional(),
    /** A JSON Schema the call's outcome `data` must satisfy. */
    outcomeSchema: z
      .record(z.string(), z.unknown())
      .superRefine((s, ctx) => {
        const p = schemaProblem(s);
        if (p) ctx.addIssue({ code: "custom", message: `is not a valid JSON Schema: ${p}` });
      })
      .optional(),
    outcomeWebhook: z
      .string()
      .url()
      .refine((u) => /^https?:\/\//.test(u), "must be an http(s) URL")
      .optional(),
    metadata: z.record(z.string(), z.unknown()).optional(),
    /** An assistant-driven call's filler while the assistant thinks. Default "One moment." */
    filler: z.string().min(1).max(200).optional(),
    /** Record the call (a stereo WAV: caller left, Parley right); absent: RECORD_CALLS decides. */
    record: z.boolean().optional(),
    /** Said before the first words when the call is recorded (e.g. "This call is recorded."); default RECORDING_NOTICE. */
    recordingNotice: z.string().min(1).max(500).optional(),
    /** An outbound call answered by a machine: leave `voicemailMessage` after the beep, hang up, or talk; default VOICEMAIL. */
    voicemail: z.enum(["leave", "hangup", "continue"]).optional(),
    /** What is left on voicemail; default the call's message (its first words). */
    voicemailMessage: z.string().min(1).max(1000).optional(),
  })
  .strict();

export type Session = z.infer<typeof sessionSchema>;
export type AgentChoice = NonNullable<Session["agent"]>;

/** The brain a session asks for, with the process default (AGENT_RELAY_URL) applied. */
export function agentOf(session: Session, defaults: { relayUrl?: string }): AgentChoice {
  if (session.agent) return session.agent;
  return defaults.relayUrl ? { relay: defaults.relayUrl } : "llm";
}

/** The voice and language a session asks the providers for (absent: the configured ones). */
export function voiceOf(session: Session): { voice?: string; language?: string } {
  return { ...(session.voice ? { voice: session.voice } : {}), ...(session.language ? { language: session.language } : {}) };
}

/** Zod's issues as one line per problem, naming the field. */
export function sessionProblems(err: z.ZodError, prefix = ""): string[] {
  return err.issues.map((i) => `${prefix}${i.path.join(".") || "(session)"}: ${i.message}`);
}

/** What judges a session's names: the agent's tools, the TTS's voices, the recogniser's languages. */
export interface SessionJudges {
  agent: { toolNames?: string[] };
  tts: { voiceProblem?(choice: { voice?: string; language?: string }): string | undefined };
  stt: { languageProblem?(language: string): string | undefined };
}

/**
 * Check a session against what this process can do: tool names that exist, a voice the TTS has, a language the
 * recogniser and TTS know. A bad one is refused when the session is set, not discovered as silence mid-call.
 */
export function checkSession(session: Session, judges: SessionJudges): string[] {
  const problems: string[] = [];
  const knownTools = judges.agent.toolNames ?? [];
  for (const t of session.tools ?? []) if (!knownTools.includes(t)) problems.push(`tools: unknown tool "${t}" (known: ${knownTools.join(", ") || "none; set AGENT_TOOLS_MODULE"})`);
  const voice = voiceOf(session);
  const ttsProblem = (voice.voice || voice.language) && judges.tts.voiceProblem?.(voice);
  if (ttsProblem) problems.push(`${voice.voice ? "voice" : "language"}: ${ttsProblem}`);
  const sttProblem = voice.language && judges.stt.languageProblem?.(voice.language);
  if (sttProblem) problems.push(`language: ${sttProblem}`);
  return problems;
}

/**
 * Inbound routing: the session for each dialled number (E.164), and `"*"` for any other. Read from a JSON file
 * (ROUTES_FILE) at start, validated whole, so a typo fails the start rather than a call.
 */
export class RoutingTable {
  constructor(private readonly routes: Map<string, Session>) {}

  static empty(): RoutingTable {
    return new RoutingTable(new Map());
  }

  /** Parse and validate a routing table; throws an Error listing every problem. */
  static parse(json: unknown, source = "routes"): RoutingTable {
    if (!json || typeof json !== "object" || Array.isArray(json)) throw new Error(`${source}: must be a JSON object of "<E.164 number>" or "*" to a session`);
    const routes = new Map<string, Session>();
    const problems: string[] = [];
    for (const [number, raw] of Object.entries(json)) {
      if (number !== "*" && !E164.test(number)) {
        problems.push(`${source}: "${number}" is not an E.164 number (like +15551234567) or "*"`);
        continue;
      }
      const parsed = sessionSchema.safeParse(raw);
      if (!parsed.success) problems.push(...sessionProblems(parsed.error, `${source} ${number}: `));
      else routes.set(number, parsed.data);
    }
    if (problems.length) throw new Error(problems.join("\n"));
    return new RoutingTable(routes);
  }

  static load(file: string): RoutingTable {
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(file, "utf8"));
    } catch (err) {
      throw new Error(`ROUTES_FILE ${file}: ${(err as Error).message}`);
    }
    return RoutingTable.parse(json, `ROUTES_FILE ${file}`);
  }

  /** Every route's problems against what this process can do (see checkSession), each naming its number. */
  problems(judges: SessionJudges, source = "routes"): string[] {
    return [...this.routes].flatMap(([number, session]) => checkSession(session, judges).map((p) => `${source} ${number}: ${p}`));
  }

  /** The session for a call to `dialled`: its own route, else the `*` route, else an empty session (the defaults). */
  sessionFor(dialled: string | undefined): Session {
    return (dialled && this.routes.get(dialled)) || this.routes.get("*") || {};
  }

  get size(): number {
    return this.routes.size;
  }
}
