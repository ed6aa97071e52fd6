import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Worker threads (VAD, STT, TTS) and real-time e2e calls share two cores: keep files serial so timing stays realistic.
    fileParallelism: false,
    pool: "forks",
  },
});
