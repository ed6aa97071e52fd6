import type { AgentProvider, SttProvider, TtsProvider } from "./types.ts";

/**
 * A call was created (its phone rings, or its stream is about to start): each provider that can opens the connection
 * the call's first turn will use, in the background. Failures are the providers' to log; nothing here throws.
 */
export function warmProviders(providers: { stt: SttProvider; tts: TtsProvider; agent: AgentProvider }, callId: string): void {
  for (const p of [providers.stt, providers.tts, providers.agent]) {
    try {
      void p.warm?.(callId).catch(() => {});
    } catch {
      // A provider's warm-up must never break a call.
    }
  }
}
