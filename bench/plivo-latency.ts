/**
 * Conversation latency on Plivo, as a caller experiences it, against the Plivo stand-in (test/helpers/plivo-standin.ts),
 * with the same call and the same measures as bench/call-latency.ts on Twilio's protocol, so the two compare:
 *   greeting -> question -> reply -> question -> barge-in over the reply -> reply -> hang-up.
 * Parley runs as its own process (`npm start`, Plivo configured at the stand-in); the stand-in answers each call from
 * Parley's answer URL, opens the Audio Stream, plays `playAudio` on its own clock and echoes checkpoints.
 *   - greeting: first greeting frame received - `start` sent
 *   - reply: first reply frame received - end of the caller's speech (energy end of the clip)
 *   - barge-in: `clearAudio` received - onset of the caller's speech over the reply
 *   - late audio: `playAudio` received after `clearAudio` while the caller still spoke (must be 0)
 *
 *   npm run bench:plivo -- [--calls 5]
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { MULAW_TO_PCM16 } from "../src/audio/mulaw.ts";
import { clipMulaw } from "../test/helpers/audio.ts";
import { PlivoStandIn } from "../test/helpers/plivo-standin.ts";
import { finishedUtterances } from "../test/helpers/plivo-stream.ts";
import { speechBounds } from "../test/helpers/twilio-client.ts";
import { parseCli } from "./cli.ts";
import { machine, startParley, stats } from "./parley-process.ts";
import { num } from "./table.ts";

const USAGE = `
npm run bench:plivo -- [options]   conversation latency on Plivo's protocol, against the Plivo stand-in

  --calls N      calls, one after another (default 5)
  -h, --help     this text
`;
const { check } = parseCli("bench:plivo", USAGE, { calls: { type: "string", default: "5" } });
const CALLS = check.int("calls", 1);
const energy = (b: number) => MULAW_TO_PCM16[b]!;
const AUTH_ID = "MABENCHPLIVO00000000";
const AUTH = "bench-plivo-auth-token";

interface Result {
  greetingMs: number;
  replyMs: number[];
  bargeInMs: number;
  lateFrames: number;
}

async function oneCall(standIn: PlivoStandIn, url: string, clips: Record<string, Uint8Array>): Promise<Result> {
  const call = await standIn.inbound({ answerUrl: `${url}/plivo/answer`, hangupUrl: `${url}/plivo/status`, from: "+15550100020", to: "+15550100001" });
  const s = await call.waitForStream(1);
  await s.waitFor(() => s.frames.length > 0, 10_000, "greeting");
  const greetingMs = s.frames[0]!.at - s.startSentAt;
  await s.waitFor(() => finishedUtterances(s) >= 1, 20_000, "greeting end");

  const replyMs: number[] = [];
  const ask = async (clip: Uint8Array) => {
    const before = s.frames.length;
    const said = s.say(clip);
    s.silence(1500);
    const speechEnd = said.startsAt + speechBounds(clip, energy).endMs;
    await s.waitFor(() => s.frames.length > before, 20_000, "reply");
    replyMs.push(s.frames[before]!.at - speechEnd);
    return before;
  };
  await ask(clips.weather!);
  await s.waitFor(() => finishedUtterances(s) >= 2, 30_000, "reply end");
  const before = await ask(clips.austen!);
  await s.waitFor(() => s.frames.slice(before).some((f) => f.playedAt !== null), 20_000, "reply heard");
  await new Promise((r) => setTimeout(r, 300));
  const over = s.say(clips.stars!);
  const b = speechBounds(clips.stars!, energy);
  await s.waitFor(() => s.eventsOf("clear").length > 0, 10_000, "clearAudio");
  const clearAt = s.eventsOf("clear")[0]!.at;
  const speechEnd = over.startsAt + b.endMs;
  s.silence(1500);
  const before3 = s.frames.length;
  await s.waitFor(() => s.frames.length > before3, 20_000, "reply after barge-in");
  replyMs.push(s.frames[before3]!.at - speechEnd);
  const lateFrames = s.eventsOf("media", clearAt).filter((e) => e.at < speechEnd).length;
  await s.waitFor(() => finishedUtterances(s) >= 3, 30_000, "last reply end");
  await call.callerHangsUp();
  return { greetingMs, replyMs, bargeInMs: clearAt - (over.startsAt + b.onsetMs), lateFrames };
}

async function main() {
  const clips = {
    weather: await clipMulaw("whats-the-weather-like"),
    austen: await clipMulaw("austen-0880"),
    stars: await clipMulaw("new-home-in-the-stars"),
  };
  const standIn = await PlivoStandIn.start({ authId: AUTH_ID, authToken: AUTH });
  const server = await startParley({ PLIVO_AUTH_ID: AUTH_ID, PLIVO_AUTH_TOKEN: AUTH, PLIVO_API_URL: standIn.url, API_TOKEN: "bench-plivo-api-token-0123456789" });
  const results: Result[] = [];
  try {
    for (let i = 0; i < CALLS; i++) {
      process.stderr.write(`\rcall ${i + 1}/${CALLS} …`);
      results.push(await oneCall(standIn, server.url, clips));
    }
    process.stderr.write("\n");
  } finally {
    server.child.kill("SIGTERM");
    await standIn.close();
  }
  const summary = {
    carrier: "plivo",
    machine: machine(),
    calls: CALLS,
    greetingFirstFrameMs: stats(results.map((r) => r.greetingMs)),
    replyAfterSpeechEndMs: stats(results.flatMap((r) => r.replyMs)),
    clearAfterBargeInOnsetMs: stats(results.map((r) => r.bargeInMs)),
    lateFramesAfterClear: results.reduce((a, r) => a + r.lateFrames, 0),
    results,
  };
  mkdirSync("bench/out", { recursive: true });
  writeFileSync("bench/out/plivo-latency.json", JSON.stringify(summary, null, 2));
  const row = (name: string, st: ReturnType<typeof stats>, target: string) => `| ${name} | ${st.n} | ${num(st.p50)} | ${num(st.p95)} | ${num(st.max)} | ${target} |`;
  console.log(`\nParley on Plivo (stand-in): conversation latency (${summary.machine.cpu}, ${summary.machine.cores} cores, Node ${process.version})\n`);
  console.log("| measure (ms) | n | p50 | p95 | max | target |\n|---|---|---|---|---|---|");
  console.log(row("first greeting frame after `start`", summary.greetingFirstFrameMs, "≤ 20"));
  console.log(row("reply after end of caller speech", summary.replyAfterSpeechEndMs, "≤ 1200"));
  console.log(row("`clearAudio` after caller starts over a reply", summary.clearAfterBargeInOnsetMs, "≤ 200"));
  console.log(`\naudio of an interrupted turn after clearAudio: ${summary.lateFramesAfterClear} frames (target 0)`);
  console.log("\nwritten: bench/out/plivo-latency.json");
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
