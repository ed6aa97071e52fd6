import { readFileSync } from "node:fs";
import type { Logger } from "pino";
import { chosenProviders, type Config } from "../config.ts";
import { DemoAgent } from "./agent/demo.ts";
import { EchoAgent } from "./agent/echo.ts";
import { loadToolsModule, OpenAiAgent } from "./agent/openai.ts";
import { DeepgramStt } from "./stt/deepgram.ts";
import { SphinxStt } from "./stt/sphinx.ts";
import { POCKETSPHINX_INSTALL_HINT, PocketSphinxStt, pocketsphinxProblem } from "./stt/pocketsphinx.ts";
import { ElevenLabsTts } from "./tts/elevenlabs.ts";
import { EspeakTts } from "./tts/espeak.ts";
import type { AgentProvider, SttProvider, TtsProvider } from "./types.ts";
import { NullStt, NullTts } from "./null.ts";

/** The providers this configuration asks for: cloud ones where their keys are set, embedded ones otherwise. */
export async function createProviders(config: Config, log: Logger): Promise<{ stt: SttProvider; tts: TtsProvider; agent: AgentProvider }> {
  const chosen = chosenProviders(config);
  const providerLog = (provider: string) => {
    const child = log.child({ provider });
    return { warn: (o: Record<string, unknown>, m: string) => child.warn(o, m), info: (o: Record<string, unknown>, m: string) => child.info(o, m), debug: (o: Record<string, unknown>, m: string) => child.debug(o, m) };
  };

  const pocketsphinx = { library: config.pocketsphinxLibrary, modelDir: config.pocketsphinxModelDir, maxHmmPerFrame: config.pocketsphinxMaxHmmPerFrame };
  let sttChoice = chosen.stt;
  // Automatic dictation: Debian's PocketSphinx where it is installed (far more accurate), else SoundSwallower.
  if (config.sttProvider === "auto" && sttChoice === "sphinx" && config.sttMode === "open") {
    const problem = await pocketsphinxProblem(pocketsphinx);
    if (problem) log.warn({ problem }, `speech recognition: using SoundSwallower, which mishears most open speech; for better dictation: ${POCKETSPHINX_INSTALL_HINT}`);
    else sttChoice = "pocketsphinx";
  }

  const stt: SttProvider =
    sttChoice === "null"
      ? new NullStt()
      : sttChoice === "pocketsphinx"
      ? new PocketSphinxStt(pocketsphinx)
      : sttChoice === "deepgram"
      ? new DeepgramStt({ apiKey: config.deepgramApiKey!, url: config.deepgramUrl, model: config.deepgramModel, logger: providerLog("deepgram") })
      : new SphinxStt({
          mode: config.sttMode,
          phrases: config.sttPhrases,
          grammar: config.sttGrammarFile ? readFileSync(config.sttGrammarFile, "utf8") : undefined,
        });

  const tts: TtsProvider =
    chosen.tts === "null"
      ? new NullTts()
      : chosen.tts === "elevenlabs"
      ? new ElevenLabsTts({
          apiKey: config.elevenlabsApiKey!,
          url: config.elevenlabsUrl,
          voiceId: config.elevenlabsVoiceId,
          modelId: config.elevenlabsModel,
          ...(config.elevenlabsLatency !== undefined ? { optimizeStreamingLatency: config.elevenlabsLatency as 0 | 1 | 2 | 3 | 4 } : {}),
          logger: providerLog("elevenlabs"),
        })
      : new EspeakTts({ voice: config.ttsVoice, rate: config.ttsRate });

  const agent: AgentProvider =
    chosen.agent === "openai"
      ? new OpenAiAgent({
          apiKey: config.openaiApiKey ?? "",
          baseURL: config.openaiBaseUrl,
          model: config.openaiModel,
          ...(config.agentPrompt ? { systemPrompt: config.agentPrompt } : {}),
          firstTokenTimeoutMs: config.agentTimeoutMs,
          tools: config.agentToolsModule ? await loadToolsModule(config.agentToolsModule) : [],
        })
      : chosen.agent === "echo"
      ? new EchoAgent()
      : new DemoAgent({ canTransfer: !!config.transferNumber });

  log.info({ stt: stt.name, tts: tts.name, agent: agent.name }, "providers chosen");
  return { stt, tts, agent };
}
