/**
 * Conversation latency as a caller experiences it, on the embedded providers, on each carrier's protocol.
 *
 * Starts Parley as its own process (exactly `npm start`, or uses --url of one already running), then calls it with a
 * client that plays real speech in real time and plays Parley's audio on its own clock: Twilio's Media Streams
 * directly, or through the Telnyx or Plivo stand-in (test/helpers/), which dial in as those carriers do:
 *   greeting -> question -> reply -> question -> barge-in over the reply -> reply -> hang-up.
 * Reports per call and in summary:
 *   - greeting: first greeting frame received - `start` sent
 *   - reply: first reply frame received - end of the caller's speech (energy end of the clip)
 *   - barge-in: `clear` received - onset of the caller's speech over the reply
 *   - late audio: media frames received after `clear` while the caller still spoke (must be 0)
 *   - stream open: whether the socket stayed open from start to the caller's hang-up
 *
 *   npm run bench:call -- [--calls 5] [--carrier twilio|telnyx|plivo] [--url http://127.0.0.1:3334]
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { MULAW_TO_PCM16 } from "../src/audio/mulaw.ts";
import { clipMulaw } from "../test/helpers/audio.ts";
import { finishedUtterances as plivoFinished, type PlivoStream } from "../test/helpers/plivo-stream.ts";
import { PlivoStandIn } from "../test/helpers/plivo-standin.ts";
import { TelnyxStandIn } from "../test/helpers/telnyx-standin.ts";
import { finishedUtterances as twilioFinished, speechBounds, TwilioCall } from "../test/helpers/twilio-client.ts";
import { parseCli } from "./cli.ts";
import { machine, startParley, stats } from "./parley-process.ts";
import { num } from "./table.ts";

const USAGE = `
npm run bench:call -- [options]   conversation latency as a caller hears it (embedded providers)

  --calls N          calls, one after another (default 5)
  --carrier NAME     twilio (default), telnyx or plivo: the protocol the calls come in on (the latter two through
                     their stand-ins, with Parley configured for them)
  --url URL          use a Parley already running at URL instead of starting one (twilio only)
  -h, --help     this text
`;
const { values, check } = parseCli("bench:call", USAGE, { calls: { type: "string", default: "5" }, url: { type: "string" }, carrier: { type: "string", default: "twilio" } });
const CALLS = check.int("calls", 1);
const CARRIER = check.oneOf("carrier", ["twilio", "telnyx", "plivo"] as const);
const energy = (b: number) => MULAW_TO_PCM16[b]!;

interface Result {
  greetingMs: number;
  replyMs: number[];
  bargeInMs: number;
  lateFrames: number;
  streamOpen: boolean;
}


/** The caller's side of one call, whichever carrier carries it: the same clocks and playout model on each. */
type Stream = TwilioCall | PlivoStream;
interface Dialled {
  call: Stream;
  finished(): number;
  hangUp(): Promise<void>;
}

/** How a call reaches Parley on each carrier, and what Parley must be told about the carrier. */
interface CarrierRig {
  env: Record<string, string>;
  dial(parleyUrl: string): Promise<Dialled>;
  close(): Promise<void>;
}

async function rig(): Promise<CarrierRig> {
  if (CARRIER === "telnyx") {
    const standIn = await TelnyxStandIn.start({ ringMs: 150 });
    return {
      env: { TELNYX_API_KEY: standIn.apiKey, TELNYX_PUBLIC_KEY: standIn.publicKey, TELNYX_CONNECTION_ID: "2811212257810187875", TELNYX_API_URL: standIn.url, API_TOKEN: "bench-call-api-token-0123456789" },
      dial: async (url) => {
        const c = await standIn.inbound({ webhookUrl: `${url}/telnyx/webhook`, from: "+15550100020", to: "+15550100001" });
        const call = await standIn.waitForStream(c, 1);
        return { call, finished: () => twilioFinished(call), hangUp: () => standIn.hangUp(c) };
      },
      close: () => standIn.close(),
    };
  }
  if (CARRIER === "plivo") {
    const AUTH_ID = "MABENCHPLIVO00000000";
    const AUTH = "bench-plivo-auth-token";
    const standIn = await PlivoStandIn.start({ authId: AUTH_ID, authToken: AUTH });
    return {
      env: { PLIVO_AUTH_ID: AUTH_ID, PLIVO_AUTH_TOKEN: AUTH, PLIVO_API_URL: standIn.url, API_TOKEN: "bench-call-api-token-0123456789" },
      dial: async (url) => {
        const c = await standIn.inbound({ answerUrl: `${url}/plivo/answer`, hangupUrl: `${url}/plivo/status`, from: "+15550100020", to: "+15550100001" });
        const call = await c.waitForStream(1);
        return { call, finished: () => plivoFinished(call), hangUp: () => c.callerHangsUp() };
      },
      close: () => standIn.close(),
    };
  }
  return {
    env: {},
    dial: async (baseUrl) => {
      const call = new TwilioCall({ baseUrl });
      await call.connect();
      return { call, finished: () => twilioFinished(call), hangUp: () => call.hangUp() };
    },
    close: async () => {},
  };
}

async function oneCall(baseUrl: string, carrier: CarrierRig, clips: Record<string, Uint8Array>): Promise<Result> {
  const { call, finished, hangUp } = await carrier.dial(baseUrl);
  await call.waitFor(() => call.frames.length > 0, 10_000, "greeting");
  const greetingMs = call.frames[0]!.at - call.startSentAt;
  await call.waitFor(() => finished() >= 1, 20_000, "greeting end");

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
  await call.waitFor(() => finished() >= 2, 30_000, "reply end");

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
  await call.waitFor(() => finished() >= 3, 30_000, "last reply end");
  const streamOpen = call.closedBy === null;
  await hangUp();
  return { greetingMs, replyMs, bargeInMs: clearAt - (over.startsAt + b.onsetMs), lateFrames, streamOpen };
}

async function main() {
  const clips = {
    weather: await clipMulaw("whats-the-weather-like"),
    austen: await clipMulaw("austen-0880"),
    stars: await clipMulaw("new-home-in-the-stars"),
  };
  const carrier = await rig();
  const server = values.url && CARRIER === "twilio" ? { url: values.url, child: null } : await startParley(carrier.env);
  const results: Result[] = [];
  try {
    for (let i = 0; i < CALLS; i++) {
      process.stderr.write(`\rcall ${i + 1}/${CALLS} …`);
      results.push(await oneCall(server.url, carrier, clips));
    }
    process.stderr.write("\n");
  } finally {
    server.child?.kill("SIGTERM");
    await carrier.close();
  }
  const summary = {
    carrier: CARRIER,
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
  const out = `bench/out/call-latency${CARRIER === "twilio" ? "" : `-${CARRIER}`}.json`;
  writeFileSync(out, JSON.stringify(summary, null, 2));
  const row = (name: string, s: ReturnType<typeof stats>, target: string) => `| ${name} | ${s.n} | ${num(s.p50)} | ${num(s.p95)} | ${num(s.max)} | ${target} |`;
  console.log(`\nParley conversation latency on ${CARRIER} (${summary.machine.cpu}, ${summary.machine.cores} cores, Node ${process.version})\n`);
  console.log("| measure (ms) | n | p50 | p95 | max | target |\n|---|---|---|---|---|---|");
  console.log(row("first greeting frame after `start`", summary.greetingFirstFrameMs, "≤ 20"));
  console.log(row("reply after end of caller speech", summary.replyAfterSpeechEndMs, "≤ 1200"));
  console.log(row("`clear` after caller starts over a reply", summary.clearAfterBargeInOnsetMs, "≤ 300"));
  console.log(`\naudio of an interrupted turn after clear: ${summary.lateFramesAfterClear} frames (target 0)`);
  console.log(`stream open from start to hang-up on every call: ${summary.streamOpenWholeCall}`);
  console.log(`\nwritten: ${out}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
