/**
 * Conversation latency as a caller experiences it, on the embedded providers.
 *
 * Starts Parley as its own process (exactly `npm start`, or uses --url of one already running), then places calls with
 * the Twilio-protocol client that plays real speech in real time and plays Parley's audio on its own clock:
 *   greeting -> question -> reply -> question -> barge-in over the reply -> reply -> hang-up.
 * Reports per call and in summary:
 *   - greeting: first greeting frame received - `start` sent
 *   - reply: first reply frame received - end of the caller's speech (energy end of the clip)
 *   - barge-in: `clear` received - onset of the caller's speech over the reply
 *   - late audio: media frames received after `clear` while the caller still spoke (must be 0)
 *   - stream open: whether the socket stayed open from start to the caller's hang-up
 *
 *   npm run bench:call -- [--calls 5] [--url http://127.0.0.1:3334]
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { MULAW_TO_PCM16 } from "../src/audio/mulaw.ts";
import { clipMulaw } from "../test/helpers/audio.ts";
import { finishedUtterances, speechBounds, TwilioCall } from "../test/helpers/twilio-client.ts";
import { parseCli } from "./cli.ts";
import { machine, startParley, stats } from "./parley-process.ts";
import { num } from "./table.ts";

const USAGE = `
npm run bench:call -- [options]   conversation latency as a caller hears it (embedded providers)

  --calls N      calls, one after another (default 5)
  --url URL      use a Parley already running at URL instead of starting one
  -h, --help     this text
`;
const { values, check } = parseCli("bench:call", USAGE, { calls: { type: "string", default: "5" }, url: { type: "string" } });
const CALLS = check.int("calls", 1);
const energy = (b: number) => MULAW_TO_PCM16[b]!;

interface Result {
  greetingMs: number;
  replyMs: number[];
  bargeInMs: number;
  lateFrames: number;
  streamOpen: boolean;
}


async function oneCall(baseUrl: string, clips: Record<string, Uint8Array>): Promise<Result> {
  const call = new TwilioCall({ baseUrl });
  await call.connect();
  await call.waitFor(() => call.frames.length > 0, 10_000, "greeting");
  const greetingMs = call.frames[0]!.at - call.startSentAt;
  await call.waitFor(() => finishedUtterances(call) >= 1, 20_000, "greeting end");

  const replyMs: number[] = [];
  const ask = async (clip: Uint8Array) => {
    const before = call.frames.length;
    const said = call.say(clip);
    call.silence(1500);
    const speechEnd = said.startsAt + speechBounds(clip, energy).endMs;
    await call.waitFor(() => call.frames.length > before, 20_000, "reply");
    replyMs.push(call.frames[before]!.at - speechEnd);
    return before;
  };

  await ask(clips.weather!);
  await call.waitFor(() => finishedUtterances(call) >= 2, 30_000, "reply end");

  const before = await ask(clips.austen!);
  await call.waitFor(() => call.frames.slice(before).some((f) => f.playedAt !== null), 20_000, "reply heard");
  await new Promise((r) => setTimeout(r, 300));
  const over = call.say(clips.stars!);
  const b = speechBounds(clips.stars!, energy);
  await call.waitFor(() => call.eventsOf("clear").length > 0, 10_000, "clear");
  const clearAt = call.eventsOf("clear")[0]!.at;
  const speechEnd = over.startsAt + b.endMs;
  call.silence(1500);
  const before3 = call.frames.length;
  await call.waitFor(() => call.frames.length > before3, 20_000, "reply after barge-in");
  replyMs.push(call.frames[before3]!.at - speechEnd);
  const lateFrames = call.eventsOf("media", clearAt).filter((e) => e.at < speechEnd).length;
  await call.waitFor(() => finishedUtterances(call) >= 3, 30_000, "last reply end");
  const streamOpen = call.closedBy === null;
  await call.hangUp();
  return { greetingMs, replyMs, bargeInMs: clearAt - (over.startsAt + b.onsetMs), lateFrames, streamOpen };
}

async function main() {
  const clips = {
    weather: await clipMulaw("whats-the-weather-like"),
    austen: await clipMulaw("austen-0880"),
    stars: await clipMulaw("new-home-in-the-stars"),
  };
  const server = values.url ? { url: values.url, child: null } : await startParley();
  const results: Result[] = [];
  try {
    for (let i = 0; i < CALLS; i++) {
      process.stderr.write(`\rcall ${i + 1}/${CALLS} …`);
      results.push(await oneCall(server.url, clips));
    }
    process.stderr.write("\n");
  } finally {
    server.child?.kill("SIGTERM");
  }
  const summary = {
    machine: machine(),
    calls: CALLS,
    greetingFirstFrameMs: stats(results.map((r) => r.greetingMs)),
    replyAfterSpeechEndMs: stats(results.flatMap((r) => r.replyMs)),
    clearAfterBargeInOnsetMs: stats(results.map((r) => r.bargeInMs)),
    lateFramesAfterClear: results.reduce((a, r) => a + r.lateFrames, 0),
    streamOpenWholeCall: results.every((r) => r.streamOpen),
    results,
  };
  mkdirSync("bench/out", { recursive: true });
  writeFileSync("bench/out/call-latency.json", JSON.stringify(summary, null, 2));
  const row = (name: string, s: ReturnType<typeof stats>, target: string) => `| ${name} | ${s.n} | ${num(s.p50)} | ${num(s.p95)} | ${num(s.max)} | ${target} |`;
  console.log(`\nParley conversation latency (${summary.machine.cpu}, ${summary.machine.cores} cores, Node ${process.version})\n`);
  console.log("| measure (ms) | n | p50 | p95 | max | target |\n|---|---|---|---|---|---|");
  console.log(row("first greeting frame after `start`", summary.greetingFirstFrameMs, "≤ 20"));
  console.log(row("reply after end of caller speech", summary.replyAfterSpeechEndMs, "≤ 1200"));
  console.log(row("`clear` after caller starts over a reply", summary.clearAfterBargeInOnsetMs, "≤ 300"));
  console.log(`\naudio of an interrupted turn after clear: ${summary.lateFramesAfterClear} frames (target 0)`);
  console.log(`stream open from start to hang-up on every call: ${summary.streamOpenWholeCall}`);
  console.log("\nwritten: bench/out/call-latency.json");
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
