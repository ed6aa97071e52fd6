import type { AgentProvider, SttProvider, TtsProvider, VoiceChoice } from "./types.ts";

/**
 * A call was created (its phone rings, or its stream is about to start): each provider that can opens the connection
 * the call's first turn will use, in the background, in the call's voice and language. Failures are the providers' to
 * log; nothing here throws.
 */
export function warmProviders(providers: { stt: SttProvider; tts: TtsProvider; agent: AgentProvider }, callId: string, voice: VoiceChoice = {}): void {
  const warmers = [
    () => providers.stt.warm?.(callId, voice.language),
    () => providers.tts.warm?.(callId, voice),
    () => providers.agent.warm?.(callId),
  ];
  for (const warm of warmers) {
    try {
      void warm()?.catch(() => {});
    } catch {
      // A provider's warm-up must never break a call.
    }
  }
}
