import { Ajv, type ValidateFunction } from "ajv";
import OpenAI from "openai";
import { errorMessage } from "../util/errors.ts";
import { transcriptSummary, transcriptText, type TranscriptLine } from "./outcome.ts";

/** What the outcome needs from a model: a summary, and `data` filled to the schema. */
export interface Extraction {
  summary: string;
  summarySource: "model" | "transcript";
  data: unknown;
  dataError: string | null;
}

export interface ExtractionInput {
  transcript: TranscriptLine[];
  /** The call's brief, so the summary says how the call went against it. */
  instructions?: string;
  schema?: Record<string, unknown>;
  endReason: string | null;
  signal?: AbortSignal;
}

export interface OutcomeExtractor {
  readonly name: string;
  extract(input: ExtractionInput): Promise<Extraction>;
}

const ajv = new Ajv({ allErrors: true, strict: false });
const compiled = new WeakMap<object, ValidateFunction>();

/** Check a JSON Schema compiles (for request validation); returns the compiler's message when it does not. */
export function schemaProblem(schema: unknown): string | null {
  if (!schema || typeof schema !== "object" || Array.isArray(schema)) return "must be a JSON Schema object";
  try {
    validatorFor(schema as Record<string, unknown>);
    return null;
  } catch (err) {
    return errorMessage(err);
  }
}

function validatorFor(schema: Record<string, unknown>): ValidateFunction {
  let v = compiled.get(schema);
  if (!v) compiled.set(schema, (v = ajv.compile(schema)));
  return v;
}

/** Validate `data` against `schema`: null when valid, else what is wrong. */
export function validateData(schema: Record<string, unknown>, data: unknown): string | null {
  const v = validatorFor(schema);
  return v(data) ? null : ajv.errorsText(v.errors, { dataVar: "data" });
}

/** Without a model: the summary is made from the transcript and says so; `data` cannot be filled honestly. */
export class TranscriptExtractor implements OutcomeExtractor {
  readonly name = "transcript";
  async extract(input: ExtractionInput): Promise<Extraction> {
    return {
      summary: transcriptSummary(input.transcript, input.endReason),
      summarySource: "transcript",
      data: null,
      dataError: input.schema ? "no language model is configured to fill outcomeSchema (set OPENAI_API_KEY or OPENAI_BASE_URL)" : null,
    };
  }
}

export interface ModelExtractorOptions {
  apiKey: string;
  baseURL?: string;
  model: string;
  timeoutMs?: number;
}

/**
 * An OpenAI-compatible model fills the outcome with structured output (`response_format: json_schema`, strict), so
 * the answer is shaped by the schema; it is still validated here, since not every compatible server enforces it. An
 * answer that does not validate is asked for once more with the validator's message; after that `data` is null with
 * the reason, and the summary is kept.
 */
export class ModelExtractor implements OutcomeExtractor {
  readonly name = "model";
  private readonly client: OpenAI;

  constructor(private readonly opts: ModelExtractorOptions) {
    this.client = new OpenAI({ apiKey: opts.apiKey || "no-key", baseURL: opts.baseURL, maxRetries: 1, timeout: opts.timeoutMs ?? 30_000 });
  }

  async extract(input: ExtractionInput): Promise<Extraction> {
    const schema = {
      type: "object",
      additionalProperties: false,
      required: ["summary", "data"],
      properties: { summary: { type: "string", description: "Two or three sentences: what happened on the call and how it ended." }, data: input.schema ?? { type: "null" } },
    };
    const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [
      {
        role: "system",
        content: [
          "You write the outcome of a phone call from its transcript. Use only what the transcript says; never invent details.",
          input.instructions ? `The call's brief was: ${input.instructions}` : "",
          input.schema ? "Fill `data` to the given schema from the transcript; where the transcript does not say, use null if the schema allows it." : "Set `data` to null.",
        ]
          .filter(Boolean)
          .join("\n"),
      },
      { role: "user", content: `The call ended: ${input.endReason ?? "unknown"}.\nTranscript:\n${transcriptText(input.transcript) || "(nothing was said)"}` },
    ];
    let lastProblem = "";
    for (let attempt = 0; attempt < 2; attempt++) {
      const text = await this.complete(messages, schema, input.signal);
      let parsed: { summary?: unknown; data?: unknown };
      try {
        parsed = JSON.parse(text) as typeof parsed;
      } catch {
        lastProblem = `the model's answer is not JSON: ${text.slice(0, 120)}`;
        messages.push({ role: "assistant", content: text }, { role: "user", content: `That was not valid JSON. Answer again with JSON only.` });
        continue;
      }
      const summary = typeof parsed.summary === "string" && parsed.summary.trim() ? parsed.summary.trim() : null;
      if (!summary) {
        lastProblem = "the model's answer has no summary";
        messages.push({ role: "assistant", content: text }, { role: "user", content: "The summary is missing. Answer again." });
        continue;
      }
      if (!input.schema) return { summary, summarySource: "model", data: null, dataError: null };
      const problem = validateData(input.schema, parsed.data);
      if (!problem) return { summary, summarySource: "model", data: parsed.data, dataError: null };
      lastProblem = `the model's data does not match outcomeSchema: ${problem}`;
      if (attempt === 1) return { summary, summarySource: "model", data: null, dataError: lastProblem };
      messages.push({ role: "assistant", content: text }, { role: "user", content: `Your data does not match the schema: ${problem}. Answer again.` });
    }
    throw new Error(lastProblem);
  }

  /** Streamed, so a slow model shows progress to the timeout rather than nothing; the text is the whole answer. */
  private async complete(messages: OpenAI.Chat.ChatCompletionMessageParam[], schema: Record<string, unknown>, signal?: AbortSignal): Promise<string> {
    const stream = await this.client.chat.completions.create(
      {
        model: this.opts.model,
        messages,
        stream: true,
        response_format: { type: "json_schema", json_schema: { name: "call_outcome", schema, strict: true } },
      },
      { signal },
    );
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
    return text;
  }
}
