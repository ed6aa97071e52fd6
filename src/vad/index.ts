export { sileroModelPath, VAD_SAMPLE_RATE, VAD_WINDOW_SAMPLES, VAD_CONTEXT_SAMPLES, VAD_INPUT_SAMPLES } from "./model.ts";
export { SileroVadPool, SILERO_POOL_DEFAULTS } from "./silero-pool.ts";
export type { SileroVadPoolOptions, SileroVadPoolStats, VadStream, ProbabilityListener } from "./silero-pool.ts";
export { SpeechDetector, SPEECH_DETECTOR_DEFAULTS } from "./hysteresis.ts";
export type { SpeechDetectorOptions, SpeechEvent } from "./hysteresis.ts";
