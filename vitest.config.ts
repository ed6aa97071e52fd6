import { defineConfig } from "vitest/config";

// Files that run alone, after every other file has finished. Each starts two Parley processes (real VAD and STT in
// each) behind a load balancer and moves live calls between them while real speech plays at 1x: with three files at
// once on two cores, fleet-failover failed (the STT heard the caller's turn as "" and the drain test's first call went
// to B), so these two keep the machine to themselves. e2e-call (one call through the whole real pipeline) failed
// once in three parallel runs: a reply turn's sttMs was null (no transcript moment bound to the turn) when the STT ran
// late under load (past TRANSCRIPT_TIMEOUT_MS: the turn went on without its words, as it should; the record's
// attribution of a late transcript was fixed in src/call/turn-timeline.ts). relay-interruptible-e2e timed out waiting
// for the relay app's question in a parallel CI run (it had failed the same way once in an all-serial run before):
// its caller speaks through a phrase-list recogniser while a reply plays, and it runs alone too. Its cause under load
// is not found yet (see the README's known limits). recording-e2e checks that each played frame sits in the recording
// within 60 ms of when the caller's clock played it; sharing the cores, one run found a frame outside that.
const SERIAL = ["test/fleet-failover.test.ts", "test/fleet-rolling.test.ts", "test/e2e-call.test.ts", "test/relay-interruptible-e2e.test.ts", "test/recording-e2e.test.ts"];

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    projects: [
      {
        // Most of the long files are real-time e2e calls that mostly wait for speech playing at 1x speed, so three
        // at a time fit on two cores (the suite went from ~19 to ~9 minutes); measured in the ci-speed branch.
        extends: true,
        test: { name: "parallel", include: ["test/**/*.test.ts"], exclude: SERIAL, fileParallelism: true, maxWorkers: 3, sequence: { groupOrder: 0 } },
      },
      {
        extends: true,
        test: { name: "serial", include: SERIAL, fileParallelism: false, sequence: { groupOrder: 1 } },
      },
    ],
  },
});
