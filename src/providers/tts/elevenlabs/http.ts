import { ElevenLabsClient, ElevenLabsError, ElevenLabsTimeoutError } from "@elevenlabs/elevenlabs-js";
import { ElevenLabsTtsError, networkError, statusError } from "./errors.ts";
import { errorMessage } from "../../../util/errors.ts";

export interface HttpSettings {
  apiKey: string;
  baseUrl: string;
  voiceId: string;
  modelId: string;
  languageCode?: string;
  optimizeStreamingLatency?: number;
  voiceSettings: { stability?: number; similarityBoost?: number; style?: number; useSpeakerBoost?: boolean; speed?: number };
  timeoutSeconds: number;
}

/** One piece of an HTTP with-timestamps response. */
export interface HttpPiece {
  mulaw: Uint8Array;
  alignment: unknown;
  normalizedAlignment: unknown;
}

/**
 * `POST /v1/text-to-speech/{voice_id}/stream/with-timestamps?output_format=ulaw_8000` through the official SDK:
 * newline-delimited JSON `{audio_base64, alignment, normalized_alignment}`, which the SDK parses and maps to
 * camelCase. No SDK retries (`maxRetries: 0`): a retry after seconds is worse than an apology on a phone call.
 */
export class HttpSynth {
  private readonly client: ElevenLabsClient;

  constructor(private readonly s: HttpSettings) {
    this.client = new ElevenLabsClient({
      apiKey: s.apiKey,
      baseUrl: s.baseUrl,
      maxRetries: 0,
      timeoutInSeconds: s.timeoutSeconds,
      fetch: fetchEndingWithNewline,
    });
  }

  /** Stream `text`; errors come out as ElevenLabsTtsError. Aborting `signal` ends the iteration quietly. */
  async *stream(text: string, previousText: string | undefined, signal: AbortSignal): AsyncGenerator<HttpPiece> {
    let stream: AsyncIterable<{ audioBase64: string; alignment?: unknown; normalizedAlignment?: unknown }>;
    try {
      stream = await this.client.textToSpeech.streamWithTimestamps(
        this.s.voiceId,
        {
          text,
          modelId: this.s.modelId,
          outputFormat: "ulaw_8000",
          ...(this.s.optimizeStreamingLatency !== undefined ? { optimizeStreamingLatency: this.s.optimizeStreamingLatency } : {}),
          ...(this.s.languageCode ? { languageCode: this.s.languageCode } : {}),
          voiceSettings: this.s.voiceSettings,
          ...(previousText ? { previousText } : {}),
        },
        { abortSignal: signal, maxRetries: 0 },
      );
    } catch (err) {
      if (signal.aborted) return;
      throw this.mapError(err);
    }
    try {
      for await (const piece of stream) {
        if (signal.aborted) return;
        const audio = typeof piece.audioBase64 === "string" ? piece.audioBase64 : "";
        yield { mulaw: new Uint8Array(Buffer.from(audio, "base64")), alignment: piece.alignment, normalizedAlignment: piece.normalizedAlignment };
      }
    } catch (err) {
      if (signal.aborted) return;
      throw this.mapError(err);
    }
  }

  private mapError(err: unknown): ElevenLabsTtsError {
    if (err instanceof ElevenLabsTtsError) return err;
    if (err instanceof ElevenLabsTimeoutError)
      return new ElevenLabsTtsError(`ElevenLabs: the HTTP request timed out after ${this.s.timeoutSeconds} s`, "stall", { cause: err });
    if (err instanceof ElevenLabsError) {
      if (typeof err.statusCode === "number") return statusError(err.statusCode, err.body, this.s);
      return networkError(`cannot reach ${hostOf(this.s.baseUrl)}`, err.cause ?? err);
    }
    // The SDK validates each JSON line (and throws on one it cannot parse) while the body streams.
    const message = errorMessage(err);
    if (/ECONN|ENOTFOUND|EPIPE|socket|terminated|network/i.test(message) || hasSystemCode(err))
      return networkError("the HTTP stream broke", err);
    return new ElevenLabsTtsError(`ElevenLabs: unreadable HTTP stream (${message.slice(0, 200)})`, "protocol", { cause: err });
  }
}

const NEWLINE = new Uint8Array([0x0a]);

/**
 * The SDK parses with-timestamps bodies line by line and silently drops a last JSON line that has no "\n" after it
 * (checked with 2.73.0), which would lose the final chunk of audio. Ending every successful body with a newline makes
 * that impossible; an empty line is skipped by the SDK.
 */
const fetchEndingWithNewline: typeof fetch = async (input, init) => {
  const res = await fetch(input, init);
  if (!res.ok || !res.body) return res;
  const body = res.body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      flush(controller) {
        controller.enqueue(NEWLINE);
      },
    }),
  );
  return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
};

function hasSystemCode(err: unknown): boolean {
  let e: unknown = err;
  for (let i = 0; i < 4 && e; i++) {
    if (typeof (e as { code?: unknown }).code === "string") return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}
